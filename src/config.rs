//! Every setting of the relay: one clap-derived [`Config`], each field a `--flag` with a
//! `BP_RELAY_*` environment variable, plus the cross-field rules in [`Config::validate`].
//!
//! Nothing here touches the network. File-backed secrets are read by [`Config::signing_secrets`]
//! and [`Config::sasl_password`], which `App::build` calls before any port is bound, so every
//! configuration mistake ends the process with exit code 64 and one line.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use bytesize::ByteSize;
use clap::{Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};

use crate::{sign, webhook::Pointer};

mod kafka;

pub use kafka::{Compression, KafkaOption, SaslMechanism, SecurityProtocol};

/// Authvia's hard limit: a delivery is failed unless answered within five seconds.
pub const AUTHVIA_DEADLINE: Duration = Duration::from_secs(5);

/// The command line: `bp-relay [FLAGS]` runs the relay, `bp-relay sign ...` sends a signed
/// sample delivery to a running relay.
#[derive(Debug, Parser)]
#[command(name = "bp-relay", version, about, long_about = None)]
pub struct Cli {
    /// A helper subcommand; without one, the relay runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The relay's settings.
    #[command(flatten)]
    pub config: Config,
}

/// Subcommands besides running the relay.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Sign a JSON file the way Authvia does and POST it to a relay (a demo and smoke test).
    Sign(sign::Args),
    /// Check the configuration (flags, environment, secret files, librdkafka properties) and
    /// exit: 0 when the relay would start with it, 64 with one line when not. Contacts no broker.
    CheckConfig,
}

/// The relay's configuration. Field docs become `--help` and the README's table.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the webhook ingress (HTTP/1.1 and h2c).
    #[arg(long, env = "BP_RELAY_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address of the admin listener: /metrics, /healthz, /readyz.
    #[arg(long, env = "BP_RELAY_ADMIN_LISTEN", default_value = "0.0.0.0:9090")]
    pub admin_listen: SocketAddr,

    /// Kafka bootstrap servers, comma-separated host:port. Required unless --embedded-kafka.
    #[arg(long, env = "BP_RELAY_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Run against librdkafka's in-process mock cluster (a demo, not durable).
    #[arg(long, env = "BP_RELAY_EMBEDDED_KAFKA")]
    pub embedded_kafka: bool,

    /// Topic for business_processes.update deliveries.
    #[arg(long, env = "BP_RELAY_TOPIC", default_value = "authvia.business-processes")]
    pub topic: String,

    /// Topic for business_processes_actions.update deliveries.
    #[arg(
        long,
        env = "BP_RELAY_ACTIONS_TOPIC",
        default_value = "authvia.business-process-actions"
    )]
    pub actions_topic: String,

    /// Topic for authenticated deliveries that are not a valid business process or action.
    #[arg(
        long,
        env = "BP_RELAY_DEAD_LETTER_TOPIC",
        default_value = "authvia.webhooks.dead-letter"
    )]
    pub dead_letter_topic: String,

    /// JSON pointer to the process id in a business process (the record key).
    #[arg(long, env = "BP_RELAY_KEY_POINTER", default_value = "/id")]
    pub key_pointer: Pointer,

    /// JSON pointer to the owning process id in an action (the record key).
    #[arg(long, env = "BP_RELAY_ACTIONS_KEY_POINTER", default_value = "/businessProcess")]
    pub actions_key_pointer: Pointer,

    /// JSON pointer to the process version, copied to the `ce_processversion` header.
    #[arg(long, env = "BP_RELAY_VERSION_POINTER", default_value = "/version")]
    pub version_pointer: Pointer,

    /// Top-level fields a business process must have (names Authvia has not confirmed).
    #[arg(
        long,
        env = "BP_RELAY_REQUIRED_FIELDS",
        value_delimiter = ',',
        default_value = "id,partner,merchant,customer,status,expiration,actions,addresses"
    )]
    pub required_fields: Vec<String>,

    /// Top-level fields an action must have.
    #[arg(
        long,
        env = "BP_RELAY_ACTIONS_REQUIRED_FIELDS",
        value_delimiter = ',',
        default_value = "id,type,status"
    )]
    pub actions_required_fields: Vec<String>,

    /// Subscription signing secrets, comma-separated; several are accepted during rotation.
    #[arg(long, env = "BP_RELAY_SIGNING_SECRETS", value_delimiter = ',', value_parser = parse_secret, hide_env_values = true)]
    pub signing_secrets: Vec<SecretString>,

    /// File with signing secrets, one per line (as a Kubernetes Secret is mounted).
    #[arg(long, env = "BP_RELAY_SIGNING_SECRETS_FILE")]
    pub signing_secrets_file: Option<PathBuf>,

    /// Accepted distance between X-AUTHVIA-TIMESTAMP and now, in the past and the future.
    #[arg(long, env = "BP_RELAY_SIGNATURE_TOLERANCE", default_value = "5m", value_parser = humantime::parse_duration)]
    pub signature_tolerance: Duration,

    /// Signed (value, timestamp) pairs remembered by the replay guard (memory bound).
    #[arg(long, env = "BP_RELAY_REPLAY_CAPACITY", default_value_t = 100_000)]
    pub replay_capacity: u64,

    /// Accept unsigned deliveries. For local experiments only: logs a warning at startup.
    #[arg(long, env = "BP_RELAY_INSECURE_SKIP_SIGNATURE")]
    pub insecure_skip_signature: bool,

    /// Largest accepted request body; larger requests get 413 before the body is read.
    #[arg(long, env = "BP_RELAY_MAX_BODY", default_value = "1MiB")]
    pub max_body: ByteSize,

    /// Requests handled at once; more are answered 503 with Retry-After (memory bound).
    #[arg(long, env = "BP_RELAY_MAX_INFLIGHT", default_value_t = 1024)]
    pub max_inflight: usize,

    /// How long a request may wait for the broker's acknowledgement (must stay below 5s).
    #[arg(long, env = "BP_RELAY_ACK_TIMEOUT", default_value = "4s", value_parser = humantime::parse_duration)]
    pub ack_timeout: Duration,

    /// Budget for draining on SIGTERM: in-flight requests and the producer flush.
    #[arg(long, env = "BP_RELAY_SHUTDOWN_GRACE", default_value = "20s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// How long startup waits for the brokers and for the topics to exist (they may be created
    /// together with the relay).
    #[arg(long, env = "BP_RELAY_STARTUP_TIMEOUT", default_value = "15s", value_parser = humantime::parse_duration)]
    pub startup_timeout: Duration,

    /// Time a broker may stay unreachable before /readyz reports not ready.
    #[arg(long, env = "BP_RELAY_BROKER_DOWN_GRACE", default_value = "3s", value_parser = humantime::parse_duration)]
    pub broker_down_grace: Duration,

    /// Producer queue fill (0..1, messages or bytes) above which /readyz reports not ready.
    #[arg(long, env = "BP_RELAY_QUEUE_HIGH_WATER", default_value_t = 0.8)]
    pub queue_high_water: f64,

    /// librdkafka queue.buffering.max.messages: records waiting for the broker at most.
    #[arg(long, env = "BP_RELAY_KAFKA_QUEUE_MAX_MESSAGES", default_value_t = 100_000)]
    pub kafka_queue_max_messages: u32,

    /// librdkafka queue.buffering.max.kbytes, as a size: bytes waiting for the broker at most.
    #[arg(long, env = "BP_RELAY_KAFKA_QUEUE_MAX_BYTES", default_value = "256MiB")]
    pub kafka_queue_max_bytes: ByteSize,

    /// librdkafka linger.ms: how long the producer waits to batch records.
    #[arg(long, env = "BP_RELAY_KAFKA_LINGER", default_value = "5ms", value_parser = humantime::parse_duration)]
    pub kafka_linger: Duration,

    /// Record batch compression.
    #[arg(long, env = "BP_RELAY_KAFKA_COMPRESSION", value_enum, default_value_t = Compression::Lz4)]
    pub kafka_compression: Compression,

    /// How the relay talks to the brokers.
    #[arg(long, env = "BP_RELAY_KAFKA_SECURITY_PROTOCOL", value_enum, default_value_t = SecurityProtocol::Plaintext)]
    pub kafka_security_protocol: SecurityProtocol,

    /// SASL mechanism (with sasl_plaintext or sasl_ssl).
    #[arg(long, env = "BP_RELAY_KAFKA_SASL_MECHANISM", value_enum)]
    pub kafka_sasl_mechanism: Option<SaslMechanism>,

    /// SASL username.
    #[arg(long, env = "BP_RELAY_KAFKA_SASL_USERNAME")]
    pub kafka_sasl_username: Option<String>,

    /// SASL password (prefer --kafka-sasl-password-file).
    #[arg(long, env = "BP_RELAY_KAFKA_SASL_PASSWORD", value_parser = parse_secret, hide_env_values = true)]
    pub kafka_sasl_password: Option<SecretString>,

    /// File holding the SASL password.
    #[arg(long, env = "BP_RELAY_KAFKA_SASL_PASSWORD_FILE")]
    pub kafka_sasl_password_file: Option<PathBuf>,

    /// CA bundle (PEM) to verify the brokers' certificates.
    #[arg(long, env = "BP_RELAY_KAFKA_SSL_CA_LOCATION")]
    pub kafka_ssl_ca_location: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, env = "BP_RELAY_KAFKA_SSL_CERTIFICATE_LOCATION")]
    pub kafka_ssl_certificate_location: Option<PathBuf>,

    /// Client private key (PEM) for mutual TLS.
    #[arg(long, env = "BP_RELAY_KAFKA_SSL_KEY_LOCATION")]
    pub kafka_ssl_key_location: Option<PathBuf>,

    /// Any librdkafka property as key=value, applied after the relay's own (repeatable;
    /// the environment form separates several with ';').
    #[arg(
        long = "kafka-option",
        env = "BP_RELAY_KAFKA_OPTIONS",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub kafka_options: Vec<KafkaOption>,

    /// CloudEvents `source` attribute of every record.
    #[arg(long, env = "BP_RELAY_CE_SOURCE", default_value = "urn:authvia:webhooks")]
    pub ce_source: String,

    /// Log format: json when stdout is not a terminal, pretty when it is (auto).
    #[arg(long, env = "BP_RELAY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// OTLP/HTTP collector to export request spans to, e.g. http://otel-collector:4318 (spans
    /// go to <URL>/v1/traces as protobuf). Unset: nothing is exported.
    #[arg(long, env = "BP_RELAY_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<http::Uri>,
}

/// A configuration mistake: printed as one line, exit code 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
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

fn parse_secret(s: &str) -> Result<SecretString, String> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err("a secret must not be empty".to_owned());
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

impl Config {
    /// Checks the rules that span several fields. Called before anything is bound.
    ///
    /// # Errors
    /// The first rule broken, as one human-readable line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_kafka_target()?;
        self.validate_timeouts()?;
        self.validate_signing()?;
        self.validate_sasl()?;
        self.validate_limits()?;
        self.validate_topics()?;
        self.validate_otlp()
    }

    fn validate_kafka_target(&self) -> Result<(), ConfigError> {
        match (&self.kafka_brokers, self.embedded_kafka) {
            (Some(_), true) => Err(ConfigError::new(
                "--kafka-brokers and --embedded-kafka exclude each other",
            )),
            (None, false) => Err(ConfigError::new(
                "--kafka-brokers (BP_RELAY_KAFKA_BROKERS) is required, or --embedded-kafka for a demo",
            )),
            (Some(brokers), false) if brokers.trim().is_empty() => {
                Err(ConfigError::new("--kafka-brokers must not be empty"))
            }
            _ => Ok(()),
        }
    }

    fn validate_timeouts(&self) -> Result<(), ConfigError> {
        if self.ack_timeout.is_zero() || self.ack_timeout >= AUTHVIA_DEADLINE {
            return Err(ConfigError::new(format!(
                "--ack-timeout must be above 0 and below 5s (Authvia's deadline), got {}",
                humantime::format_duration(self.ack_timeout)
            )));
        }
        if self.signature_tolerance.is_zero() {
            return Err(ConfigError::new("--signature-tolerance must be above 0"));
        }
        if self.shutdown_grace < self.ack_timeout {
            return Err(ConfigError::new(
                "--shutdown-grace must be at least --ack-timeout, or in-flight requests cannot finish",
            ));
        }
        if self.kafka_linger >= self.ack_timeout {
            return Err(ConfigError::new("--kafka-linger must be well below --ack-timeout"));
        }
        Ok(())
    }

    fn validate_signing(&self) -> Result<(), ConfigError> {
        let has_secrets = !self.signing_secrets.is_empty() || self.signing_secrets_file.is_some();
        match (has_secrets, self.insecure_skip_signature) {
            (false, false) => Err(ConfigError::new(
                "no signing secret: set --signing-secrets or --signing-secrets-file (or, for local experiments only, --insecure-skip-signature)",
            )),
            (true, true) => Err(ConfigError::new(
                "--insecure-skip-signature contradicts the signing secrets given; drop one",
            )),
            _ => Ok(()),
        }
    }

    fn validate_sasl(&self) -> Result<(), ConfigError> {
        let protocol = self.kafka_security_protocol;
        let has_password =
            self.kafka_sasl_password.is_some() || self.kafka_sasl_password_file.is_some();
        if protocol.uses_sasl() {
            if self.kafka_sasl_mechanism.is_none() || self.kafka_sasl_username.is_none() || !has_password {
                return Err(ConfigError::new(format!(
                    "--kafka-security-protocol {} needs --kafka-sasl-mechanism, --kafka-sasl-username and a password (--kafka-sasl-password-file)",
                    protocol.as_librdkafka()
                )));
            }
        } else if self.kafka_sasl_mechanism.is_some() || self.kafka_sasl_username.is_some() || has_password {
            return Err(ConfigError::new(
                "SASL settings given but --kafka-security-protocol is not sasl_plaintext or sasl_ssl",
            ));
        }
        let has_tls_files = self.kafka_ssl_ca_location.is_some()
            || self.kafka_ssl_certificate_location.is_some()
            || self.kafka_ssl_key_location.is_some();
        if has_tls_files && !protocol.uses_tls() {
            return Err(ConfigError::new(
                "TLS files given but --kafka-security-protocol is not ssl or sasl_ssl",
            ));
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        if self.max_body.as_u64() == 0 || self.max_body > ByteSize::mib(64) {
            return Err(ConfigError::new("--max-body must be between 1B and 64MiB"));
        }
        if self.max_inflight == 0 {
            return Err(ConfigError::new("--max-inflight must be at least 1"));
        }
        if self.replay_capacity == 0 {
            return Err(ConfigError::new("--replay-capacity must be at least 1"));
        }
        if !(self.queue_high_water > 0.0 && self.queue_high_water <= 1.0) {
            return Err(ConfigError::new("--queue-high-water must be in (0, 1]"));
        }
        if self.kafka_queue_max_messages == 0 || self.kafka_queue_max_bytes < self.max_body {
            return Err(ConfigError::new(
                "--kafka-queue-max-messages must be at least 1 and --kafka-queue-max-bytes at least --max-body",
            ));
        }
        Ok(())
    }

    fn validate_topics(&self) -> Result<(), ConfigError> {
        for (flag, topic) in [
            ("--topic", &self.topic),
            ("--actions-topic", &self.actions_topic),
            ("--dead-letter-topic", &self.dead_letter_topic),
        ] {
            if topic.is_empty() || topic.len() > 249 || !topic.chars().all(is_topic_char) {
                return Err(ConfigError::new(format!(
                    "{flag} {topic:?} is not a valid Kafka topic name (letters, digits, '.', '_', '-', at most 249)"
                )));
            }
        }
        if self.dead_letter_topic == self.topic || self.dead_letter_topic == self.actions_topic {
            return Err(ConfigError::new(
                "--dead-letter-topic must differ from the business-process topics",
            ));
        }
        Ok(())
    }

    fn validate_otlp(&self) -> Result<(), ConfigError> {
        let Some(endpoint) = &self.otlp_endpoint else {
            return Ok(());
        };
        // The exporter speaks plain HTTP only (no second TLS stack); the URL is not echoed, as
        // user:password@ would be a credential.
        let plain_http = endpoint.scheme() == Some(&http::uri::Scheme::HTTP);
        let has_userinfo = endpoint.authority().is_some_and(|authority| authority.as_str().contains('@'));
        if !plain_http || endpoint.host().is_none() || has_userinfo || endpoint.query().is_some() {
            return Err(ConfigError::new(
                "--otlp-endpoint must be a plain http:// URL of an OTLP/HTTP collector, e.g. http://otel-collector:4318 (no TLS, credentials or query)",
            ));
        }
        Ok(())
    }

    /// The signing secrets from the flag and the file together.
    ///
    /// # Errors
    /// The secrets file cannot be read or holds no secret.
    pub fn signing_secrets(&self) -> Result<Vec<SecretString>, ConfigError> {
        let mut secrets = self.signing_secrets.clone();
        if let Some(path) = &self.signing_secrets_file {
            let text = read_secret_file(path, "--signing-secrets-file")?;
            let from_file: Vec<SecretString> = text
                .expose_secret()
                .lines()
                .flat_map(|line| line.split(','))
                .filter_map(|secret| parse_secret(secret).ok())
                .collect();
            if from_file.is_empty() {
                return Err(ConfigError::new(format!(
                    "--signing-secrets-file {} holds no secret",
                    path.display()
                )));
            }
            secrets.extend(from_file);
        }
        Ok(secrets)
    }

    /// The SASL password from the flag or the file.
    ///
    /// # Errors
    /// The password file cannot be read.
    pub fn sasl_password(&self) -> Result<Option<SecretString>, ConfigError> {
        match (&self.kafka_sasl_password, &self.kafka_sasl_password_file) {
            (Some(password), _) => Ok(Some(password.clone())),
            (None, Some(path)) => {
                let text = read_secret_file(path, "--kafka-sasl-password-file")?;
                Ok(Some(SecretString::from(text.expose_secret().trim_end_matches(['\r', '\n']).to_owned())))
            }
            (None, None) => Ok(None),
        }
    }
}

fn is_topic_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

fn read_secret_file(path: &PathBuf, flag: &str) -> Result<SecretString, ConfigError> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|error| ConfigError::new(format!("{flag} {}: {error}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, String> {
        let args = ["bp-relay", "--kafka-brokers", "127.0.0.1:9092", "--signing-secrets", "s3cret"]
            .iter()
            .chain(extra);
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        cli.config.validate().map_err(|e| e.to_string())?;
        Ok(cli.config)
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
        assert_eq!(config.admin_listen.to_string(), "0.0.0.0:9090");
        assert_eq!(config.topic, "authvia.business-processes");
        assert_eq!(config.actions_topic, "authvia.business-process-actions");
        assert_eq!(config.dead_letter_topic, "authvia.webhooks.dead-letter");
        assert_eq!(config.key_pointer.as_str(), "/id");
        assert_eq!(config.actions_key_pointer.as_str(), "/businessProcess");
        assert_eq!(config.ack_timeout, Duration::from_secs(4));
        assert_eq!(config.signature_tolerance, Duration::from_secs(300));
        assert_eq!(config.shutdown_grace, Duration::from_secs(20));
        assert_eq!(config.max_body, ByteSize::mib(1));
    }

    #[test]
    fn ack_timeout_of_five_seconds_or_more_is_rejected() {
        let error = parse(&["--ack-timeout", "5s"]).unwrap_err();
        assert!(error.contains("--ack-timeout"), "{error}");
        assert!(parse(&["--ack-timeout", "4900ms"]).is_ok());
    }

    #[test]
    fn missing_secret_without_insecure_flag_is_rejected() {
        let cli = Cli::try_parse_from(["bp-relay", "--kafka-brokers", "k:9092"]).unwrap();
        let error = cli.config.validate().unwrap_err().to_string();
        assert!(error.contains("--insecure-skip-signature"), "{error}");
        let cli = Cli::try_parse_from(["bp-relay", "--kafka-brokers", "k:9092", "--insecure-skip-signature"]).unwrap();
        assert!(cli.config.validate().is_ok());
    }

    #[test]
    fn brokers_or_embedded_kafka_is_required_but_not_both() {
        let cli = Cli::try_parse_from(["bp-relay", "--signing-secrets", "s"]).unwrap();
        assert!(cli.config.validate().is_err());
        assert!(parse(&["--embedded-kafka"]).is_err());
    }

    #[test]
    fn sasl_protocol_needs_mechanism_user_and_password() {
        assert!(parse(&["--kafka-security-protocol", "sasl-ssl"]).is_err());
        assert!(parse(&[
            "--kafka-security-protocol", "sasl-ssl",
            "--kafka-sasl-mechanism", "SCRAM-SHA-512",
            "--kafka-sasl-username", "relay",
            "--kafka-sasl-password", "pw",
        ])
        .is_ok());
        assert!(parse(&["--kafka-sasl-username", "relay"]).is_err());
    }

    #[test]
    fn kafka_options_parse_key_value_and_hide_credentials() {
        let config = parse(&["--kafka-option", "socket.keepalive.enable=true", "--kafka-option", "sasl.password=hunter2"]).unwrap();
        assert_eq!(config.kafka_options[0].key, "socket.keepalive.enable");
        assert_eq!(config.kafka_options[0].value, "true");
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(parse(&["--kafka-option", "novalue"]).is_err());
    }

    #[test]
    fn invalid_pointer_and_topic_are_rejected() {
        assert!(parse(&["--key-pointer", "id"]).is_err());
        assert!(parse(&["--topic", "bad topic"]).is_err());
        assert!(parse(&["--dead-letter-topic", "authvia.business-processes"]).is_err());
    }

    #[test]
    fn otlp_export_is_off_by_default_and_needs_a_plain_http_collector_url() {
        assert!(parse(&[]).unwrap().otlp_endpoint.is_none());
        let config = parse(&["--otlp-endpoint", "http://otel-collector:4318"]).unwrap();
        assert_eq!(config.otlp_endpoint.unwrap().to_string(), "http://otel-collector:4318/");
        for bad in ["https://otel-collector:4318", "otel-collector:4318", "/v1/traces", "http://user:pw@otel-collector:4318", "not a url"] {
            let error = parse(&["--otlp-endpoint", bad]).unwrap_err();
            assert!(error.contains("--otlp-endpoint"), "{bad}: {error}");
            assert!(!error.contains("pw@"), "credentials are not echoed: {error}");
        }
    }

    #[test]
    fn secrets_file_is_read_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(&path, "old-secret\nnew-secret\n\n").unwrap();
        let cli = Cli::try_parse_from(["bp-relay", "--kafka-brokers", "k:9092", "--signing-secrets-file", path.to_str().unwrap()]).unwrap();
        cli.config.validate().unwrap();
        let secrets = cli.config.signing_secrets().unwrap();
        let exposed: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
        assert_eq!(exposed, ["old-secret", "new-secret"]);
    }

    #[test]
    fn unreadable_secrets_file_is_a_config_error() {
        let cli = Cli::try_parse_from(["bp-relay", "--kafka-brokers", "k:9092", "--signing-secrets-file", "/nonexistent/secrets"]).unwrap();
        let error = cli.config.signing_secrets().unwrap_err().to_string();
        assert!(error.starts_with("--signing-secrets-file /nonexistent/secrets"), "{error}");
    }
}
