//! The `bp-relay` binary: parse the command line (exit 64 on a bad flag or value), start
//! telemetry, build the app and run it until SIGTERM or SIGINT. Everything else lives in the
//! library; the subcommands and their arguments live here.

use std::{path::PathBuf, process::ExitCode};

use bp_relay::{
    demo::{samples, sign},
    process::{app, malloc, shutdown, telemetry},
    App, Config,
};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use tracing::{error, info};

/// The command line: `bp-relay [FLAGS]` runs the relay, `bp-relay check-config [FLAGS]` checks
/// the same flags, and `bp-relay sign` is a small client with flags of its own.
#[derive(Debug, Parser)]
#[command(name = "bp-relay", version, about, long_about = None, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign a JSON body the way Authvia does and POST it to a relay (a demo and smoke test).
    Sign(sign::Args),
    /// Check the configuration (flags, environment, secret files, librdkafka properties) and
    /// exit: 0 when the relay would start with it, 64 with one line when not. Contacts no broker.
    CheckConfig(Box<Config>),
}

fn main() -> ExitCode {
    // Before any other thread allocates: librdkafka's broker thread then keeps its buffers.
    let allocator = malloc::tune(|name| std::env::var(name).ok());
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
        Some(Command::Sign(sign)) => match signing_secret(sign.secret, sign.secret_file) {
            Ok(secret) => runtime.block_on(send_signed(&secret, &sign.url, sign.file)),
            Err(code) => code,
        },
        Some(Command::CheckConfig(config)) => check_config(&config),
        None => runtime.block_on(serve(cli.config, allocator)),
    }
}

/// `--help` and `--version` print and exit 0; a bad flag or value prints clap's whole message
/// (what is wrong, the valid values, the usage line) and exits 64.
fn usage_error(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    if error.use_stderr() {
        ExitCode::from(64)
    } else {
        ExitCode::SUCCESS
    }
}

fn check_config(config: &Config) -> ExitCode {
    match app::check(config) {
        Ok(()) => {
            println!("bp-relay: configuration OK");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("bp-relay: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// The secret given, or the first line of the secrets file (66 when it cannot be read or is empty).
fn signing_secret(secret: Option<String>, file: Option<PathBuf>) -> Result<String, ExitCode> {
    let Some(path) = file else {
        // clap requires one of the two.
        return Ok(secret.unwrap_or_default());
    };
    let text = std::fs::read_to_string(&path).map_err(|error| {
        eprintln!("bp-relay sign: {}: {error}", path.display());
        ExitCode::from(66)
    })?;
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| {
            eprintln!("bp-relay sign: {} holds no secret", path.display());
            ExitCode::from(66)
        })
}

async fn send_signed(secret: &str, url: &http::Uri, file: Option<PathBuf>) -> ExitCode {
    let body = match &file {
        Some(path) => match std::fs::read(path) {
            Ok(body) => Bytes::from(body),
            Err(error) => {
                eprintln!("bp-relay sign: {}: {error}", path.display());
                return ExitCode::from(66);
            }
        },
        None => Bytes::from_static(samples::BUSINESS_PROCESS),
    };
    match sign::send(url, secret, body).await {
        Ok(answer) => {
            println!("{} {}", answer.status.as_u16(), answer.body);
            if answer.status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("bp-relay sign: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, allocator: malloc::Tuning) -> ExitCode {
    let telemetry = match telemetry::init(
        config.telemetry.log_format,
        config.telemetry.otlp_endpoint.as_ref(),
    ) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("bp-relay: {error}");
            return ExitCode::from(70);
        }
    };
    let app = match App::build(&config).await {
        Ok(app) => app,
        Err(error) => {
            error!(%error, "Startup failed.");
            eprintln!("bp-relay: {error}");
            return ExitCode::from(error.exit_code());
        }
    };
    info!(ingress = %app.ingress_addr(), admin = %app.admin_addr(), version = env!("CARGO_PKG_VERSION"), ?allocator, "bp-relay started.");
    let outcome = app.run(shutdown::signal()).await;
    // After the drain, so the spans of the last requests are exported too.
    telemetry.shutdown().await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bp-relay: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
