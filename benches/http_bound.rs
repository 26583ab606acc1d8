//! The HTTP-side upper bound of `benches/compare.sh`: bp-relay exactly as shipped (same
//! flags, listeners, verification, parsing, metrics and logs) with a publisher that answers at
//! once instead of waiting for Kafka. Not a product: built only with `--features bench`.
//!
//! `cargo build --release --features bench --bin bp-relay-http-bound`, then run it with the
//! flags of `bp-relay` (`--kafka-brokers` is required by the config but never contacted).

use std::process::ExitCode;

use bp_relay::{
    ingress::publish::Memory,
    process::{shutdown, telemetry},
    App, Config,
};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::try_parse() {
        Ok(config) => config,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 64 } else { 0 });
        }
    };
    let Ok(telemetry) = telemetry::init(config.telemetry.log_format, None) else {
        return ExitCode::from(70);
    };
    let app = match App::build_with(&config, Memory::discarding()).await {
        Ok(app) => app,
        Err(error) => {
            eprintln!("bp-relay-http-bound: {error}");
            return ExitCode::from(error.exit_code());
        }
    };
    tracing::warn!(ingress = %app.ingress_addr(), admin = %app.admin_addr(), "HTTP-side bound started: records are discarded, nothing reaches Kafka.");
    // Its publisher never fails: there is no producer to give up on.
    let _ = app.run(shutdown::signal()).await;
    telemetry.shutdown().await;
    ExitCode::SUCCESS
}
