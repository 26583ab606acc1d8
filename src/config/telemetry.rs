//! Logs and span export.

use clap::ValueEnum;

use super::ConfigError;

/// Log output and the optional OTLP span export.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Telemetry")]
pub struct Telemetry {
    /// Log format: json when stdout is not a terminal, pretty when it is (auto).
    #[arg(long, env = "BP_RELAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// Which answered requests are logged at info: every failure and dead letter (failures;
    /// 2xx answers are logged at debug), or every request (all).
    #[arg(long, env = "BP_RELAY_ACCESS_LOG", value_enum, default_value_t = AccessLog::Failures)]
    pub access_log: AccessLog,

    /// OTLP/HTTP collector to export request spans to, e.g. http://otel-collector:4318 (spans
    /// go to <URL>/v1/traces as protobuf). Unset: nothing is exported.
    #[arg(long, env = "BP_RELAY_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<http::Uri>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// json off a terminal, pretty on one.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// Which answered requests get an info-level log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccessLog {
    /// Every non-2xx answer (warn for 401 and 5xx) and every dead letter (warn); 2xx answers
    /// are logged at debug.
    Failures,
    /// Every request, 2xx answers included, at info: costs about as much CPU as the rest of
    /// the request's own work.
    All,
}

impl Telemetry {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let Some(endpoint) = &self.otlp_endpoint else {
            return Ok(());
        };
        // The exporter speaks plain HTTP only (no second TLS stack); the URL is not echoed, as
        // user:password@ would be a credential.
        let plain_http = endpoint.scheme() == Some(&http::uri::Scheme::HTTP);
        let has_userinfo = endpoint
            .authority()
            .is_some_and(|authority| authority.as_str().contains('@'));
        if !plain_http || endpoint.host().is_none() || has_userinfo || endpoint.query().is_some() {
            return Err(ConfigError::new(
                "--otlp-endpoint must be a plain http:// URL of an OTLP/HTTP collector, e.g. http://otel-collector:4318 (no TLS, credentials or query)",
            ));
        }
        Ok(())
    }
}
