//! The `bp-relay` binary: parse the configuration (exit 64 on a bad value), start telemetry,
//! build the app and run it until SIGTERM or SIGINT. Everything else lives in the library.

use std::process::ExitCode;

use bp_relay::{
    config::{Cli, Command},
    kafka::EmbeddedKafka,
    telemetry, App,
};
use clap::Parser;
use tracing::{error, info, warn};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bp-relay: cannot start the async runtime: {error}");
            return ExitCode::from(71);
        }
    };
    match cli.command {
        Some(Command::Sign(args)) => match runtime.block_on(bp_relay::sign::run(args)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(error) => {
                eprintln!("bp-relay sign: {error:#}");
                ExitCode::FAILURE
            }
        },
        Some(Command::CheckConfig) => runtime.block_on(check_config(&cli.config)),
        None => runtime.block_on(serve(cli.config)),
    }
}

/// `--help` and `--version` print and exit 0; any bad flag or value is one line and exit 64.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    let rendered = error.to_string();
    let first_line = rendered.lines().next().unwrap_or("invalid arguments").trim_start_matches("error: ");
    eprintln!("bp-relay: {first_line} (see --help)");
    ExitCode::from(64)
}

async fn check_config(config: &bp_relay::Config) -> ExitCode {
    let result = config.validate().map_err(bp_relay::app::BuildError::from).and_then(|()| {
        // The embedded cluster's address is only known once it runs; any address checks the rest.
        let brokers = config.kafka_brokers.as_deref().unwrap_or("127.0.0.1:9092");
        bp_relay::app::check(config, brokers)
    });
    match result {
        Ok(()) => {
            println!("bp-relay: configuration OK");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bp-relay: {error}");
            ExitCode::from(64)
        }
    }
}

async fn serve(config: bp_relay::Config) -> ExitCode {
    if let Err(error) = config.validate() {
        eprintln!("bp-relay: {error}");
        return ExitCode::from(64);
    }
    let telemetry = match telemetry::init(config.log_format, config.otlp_endpoint.as_ref()) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("bp-relay: {error}");
            return ExitCode::from(70);
        }
    };
    // The mock cluster must outlive the app: it is dropped at the end of this function.
    let (embedded, brokers) = match start_embedded(&config) {
        Ok(pair) => pair,
        Err(code) => return code,
    };
    let app = match App::build(&config, &brokers).await {
        Ok(app) => app,
        Err(error) => {
            error!(%error, "Startup failed.");
            eprintln!("bp-relay: {error}");
            return ExitCode::from(error.exit_code());
        }
    };
    info!(ingress = %app.ingress_addr(), admin = %app.admin_addr(), version = env!("CARGO_PKG_VERSION"), "bp-relay started.");
    app.run(shutdown_signal()).await;
    drop(embedded);
    // After the drain, so the spans of the last requests are exported too.
    telemetry.shutdown().await;
    ExitCode::SUCCESS
}

fn start_embedded(config: &bp_relay::Config) -> Result<(Option<EmbeddedKafka>, String), ExitCode> {
    let Some(brokers) = &config.kafka_brokers else {
        let topics = [config.topic.as_str(), config.actions_topic.as_str(), config.dead_letter_topic.as_str()];
        let embedded = EmbeddedKafka::start(&topics).map_err(|error| {
            eprintln!("bp-relay: cannot start the embedded Kafka: {error}");
            ExitCode::from(70)
        })?;
        let brokers = embedded.bootstrap_servers();
        warn!(bootstrap = %brokers, ?topics, "Embedded Kafka (in-memory mock cluster) started: for demos only, nothing is durable. Read records with: kcat -C -b {brokers} -t {} -J -e", topics[0]);
        return Ok((Some(embedded), brokers));
    };
    Ok((None, brokers.clone()))
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                warn!(%error, "Cannot listen for SIGTERM; only SIGINT will stop the relay.");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => info!("SIGINT received."),
            _ = terminate.recv() => info!("SIGTERM received."),
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
