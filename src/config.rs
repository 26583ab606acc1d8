//! Every setting of the relay: one clap-derived [`Config`] made of groups, each with its own
//! `--help` heading and its own rules, plus the rules between groups in [`Config::validate`].
//!
//! Every field is a `--flag` with a `BP_RELAY_*` environment variable. Nothing here touches the
//! network. File-backed secrets are read by [`SecretLists::read`] and [`Kafka::sasl_password`],
//! which `App::build` calls before any port is bound, so every configuration mistake ends the
//! process with exit code 64 and one line.

use std::{path::Path, time::Duration};

use secrecy::SecretString;

mod authentication;
mod kafka;
mod lifecycle;
mod listeners;
mod rules;
mod telemetry;
mod topics;

pub use authentication::{Authentication, RouteSecrets, SecretList, SecretLists};
pub use kafka::{
    librdkafka_property, Compression, Kafka, KafkaOption, SaslMechanism, SecurityProtocol,
    AUTHVIA_DEADLINE, LATE_LANDING_MESSAGE_TIMEOUT, RESERVED_OPTIONS, STATISTICS_INTERVAL,
};
pub use lifecycle::Lifecycle;
pub use listeners::Listeners;
pub use rules::{Pointer, Rules};
pub use telemetry::{AccessLog, LogFormat, Telemetry};
pub use topics::Topics;

/// The relay's configuration. Field docs become `--help` and the README's table.
// No `#[command]` attributes: the binary flattens this into its own command line twice (the
// relay's flags and `check-config`'s), and a flattened struct's attributes would override them.
#[derive(Debug, Clone, clap::Parser)]
pub struct Config {
    /// Where the relay listens.
    #[command(flatten)]
    pub listeners: Listeners,
    /// How deliveries are authenticated.
    #[command(flatten)]
    pub authentication: Authentication,
    /// Where each kind of delivery is published.
    #[command(flatten)]
    pub topics: Topics,
    /// What a delivery must look like to be published.
    #[command(flatten)]
    pub rules: Rules,
    /// How the relay reaches Kafka.
    #[command(flatten)]
    pub kafka: Kafka,
    /// Startup, readiness and shutdown.
    #[command(flatten)]
    pub lifecycle: Lifecycle,
    /// Logs and spans.
    #[command(flatten)]
    pub telemetry: Telemetry,
}

/// A configuration mistake: printed as one line, exit code 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// A mistake described by `message`, which names the flag and, unless secret, the value.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl Config {
    /// Checks every group's rules and the rules between groups. `App::build` and
    /// `app::check` call it; nothing else needs to.
    ///
    /// # Errors
    /// The first rule broken, as one human-readable line.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listeners.validate()?;
        self.authentication.validate()?;
        self.topics.validate().map_err(ConfigError::new)?;
        self.kafka.validate()?;
        self.lifecycle.validate()?;
        self.telemetry.validate()?;
        if self.lifecycle.shutdown_grace < self.kafka.ack_timeout {
            return Err(ConfigError::new(
                "--shutdown-grace must be at least --ack-timeout, or in-flight requests cannot finish",
            ));
        }
        // The largest record (body plus headers) must fit an empty queue, or it is refused forever.
        let largest_record = self.listeners.max_body.as_u64() + RECORD_HEADROOM;
        if self.kafka.kafka_queue_max_bytes.as_u64() < largest_record {
            return Err(ConfigError::new(format!(
                "--kafka-queue-max-bytes must be at least --max-body + 64KiB ({}), or the largest delivery never fits the queue",
                bytesize::ByteSize::b(largest_record)
            )));
        }
        Ok(())
    }

    /// How long librdkafka tries to deliver a record (`message.timeout.ms`): as given, else
    /// long enough for a 503'd record to land and be remembered while this relay answers
    /// redrives with such records, else the request's own budget (a 503 then mostly means "not
    /// in Kafka", and a record another replica's retry writes again is rarely a duplicate).
    pub fn message_timeout(&self) -> Duration {
        let answers_from_memory =
            self.authentication.single_writer && !self.authentication.redrive_horizon.is_zero();
        self.kafka
            .kafka_message_timeout
            .unwrap_or(if answers_from_memory {
                LATE_LANDING_MESSAGE_TIMEOUT
            } else {
                self.kafka.ack_timeout
            })
    }
}

/// A duration such as `250ms`, `4s` or `5m` (humantime), with one short message when not.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s)
        .map_err(|_| "expected a duration such as 250ms, 4s or 5m".to_owned())
}

/// An on/off flag's value from its environment variable: `true`/`false`, `1`/`0`, `yes`/`no` or
/// `on`/`off` (what operators write in a manifest), anything else refused.
fn on_off() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

/// A size such as `512KiB` or `1MiB`, with one short message when not.
fn parse_size(s: &str) -> Result<bytesize::ByteSize, String> {
    s.parse()
        .map_err(|_| "expected a size such as 512KiB, 1MiB or 256MiB".to_owned())
}

/// Room for a record's headers and framing on top of its body: the Kafka client's
/// `message.max.bytes` and the queue bound both allow it.
pub const RECORD_HEADROOM: u64 = 64 * 1024;

fn parse_secret(s: &str) -> Result<SecretString, String> {
    let trimmed = s.trim();
    if trimmed.is_empty() {
        return Err("a secret must not be empty".to_owned());
    }
    Ok(SecretString::from(trimmed.to_owned()))
}

fn read_secret_file(path: &Path, flag: &str) -> Result<SecretString, ConfigError> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .map_err(|error| ConfigError::new(format!("{flag} {}: {error}", path.display())))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytesize::ByteSize;
    use clap::Parser;
    use secrecy::ExposeSecret;

    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, String> {
        let args = [
            "bp-relay",
            "--kafka-brokers",
            "127.0.0.1:9092",
            "--signing-secrets",
            "s3cret",
        ]
        .iter()
        .chain(extra);
        let config = Config::try_parse_from(args).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    #[test]
    fn defaults_match_the_documented_values() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.listeners.listen.to_string(), "[::]:8080");
        assert_eq!(config.listeners.admin_listen.to_string(), "[::]:9090");
        assert_eq!(config.topics.topic, "authvia.business-processes");
        assert_eq!(
            config.topics.actions_topic,
            "authvia.business-process-actions"
        );
        assert_eq!(
            config.topics.dead_letter_topic,
            "authvia.webhooks.dead-letter"
        );
        assert_eq!(config.rules.key_pointer.as_str(), "/id");
        assert_eq!(
            config.rules.actions_key_pointer.as_str(),
            "/businessProcess"
        );
        assert_eq!(config.kafka.ack_timeout, Duration::from_secs(4));
        assert_eq!(
            config.authentication.signature_tolerance,
            Duration::from_secs(300)
        );
        assert_eq!(config.lifecycle.shutdown_grace, Duration::from_secs(20));
        assert_eq!(config.listeners.max_body, ByteSize::mib(1));
    }

    #[test]
    fn ack_timeout_of_five_seconds_or_more_is_rejected() {
        let error = parse(&["--ack-timeout", "5s"]).unwrap_err();
        assert!(error.contains("--ack-timeout"), "{error}");
        assert!(parse(&["--ack-timeout", "4900ms"]).is_ok());
    }

    #[test]
    fn missing_secret_without_insecure_flag_is_rejected() {
        let config = Config::try_parse_from(["bp-relay", "--kafka-brokers", "k:9092"]).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("--insecure-skip-signature"), "{error}");
        let config = Config::try_parse_from([
            "bp-relay",
            "--kafka-brokers",
            "k:9092",
            "--insecure-skip-signature",
        ])
        .unwrap();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn brokers_or_embedded_kafka_is_required_but_not_both() {
        let config = Config::try_parse_from(["bp-relay", "--signing-secrets", "s"]).unwrap();
        assert!(config.validate().is_err());
        assert!(parse(&["--embedded-kafka"]).is_err());
    }

    #[test]
    fn sasl_protocol_needs_mechanism_user_and_password() {
        assert!(parse(&["--kafka-security-protocol", "sasl-ssl"]).is_err());
        assert!(parse(&[
            "--kafka-security-protocol",
            "sasl-ssl",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-512",
            "--kafka-sasl-username",
            "relay",
            "--kafka-sasl-password",
            "pw",
        ])
        .is_ok());
        assert!(parse(&["--kafka-sasl-username", "relay"]).is_err());
    }

    #[test]
    fn kafka_options_parse_key_value_and_hide_credentials() {
        let config = parse(&[
            "--kafka-option",
            "socket.keepalive.enable=true",
            "--kafka-option",
            "sasl.oauthbearer.client.secret=hunter2",
        ])
        .unwrap();
        assert_eq!(config.kafka.kafka_options[0].key, "socket.keepalive.enable");
        assert_eq!(config.kafka.kafka_options[0].value, "true");
        let printed = format!("{config:?}");
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
        assert!(parse(&["--kafka-option", "novalue"]).is_err());
    }

    #[test]
    fn kafka_options_cannot_weaken_durability_or_bypass_a_flag() {
        for (option, flag_or_reason) in [
            ("acks=1", "in-sync replica"),
            ("enable.idempotence=false", "duplicate"),
            ("partitioner=random", "Java client"),
            ("transactional.id=x", "transactional"),
            ("statistics.interval.ms=0", "readiness"),
            ("linger.ms=20", "--kafka-linger"),
            ("message.timeout.ms=300000", "--kafka-message-timeout"),
        ] {
            let error = parse(&["--kafka-option", option]).unwrap_err();
            let key = option.split('=').next().unwrap();
            assert!(
                error.contains(&format!("--kafka-option {key} is reserved")),
                "{option}: {error}"
            );
            assert!(error.contains(flag_or_reason), "{option}: {error}");
        }
    }

    #[test]
    fn kafka_options_are_checked_under_the_property_librdkafka_sets() {
        for (option, named) in [
            (
                "topic.message.timeout.ms=0",
                "reads it as message.timeout.ms",
            ),
            (
                "topic.delivery.timeout.ms=0",
                "reads it as message.timeout.ms",
            ),
            ("topic.partitioner=random", "Java client"),
            ("topic.acks=1", "in-sync replica"),
            ("topic.request.required.acks=0", "in-sync replica"),
            ("bootstrap.servers=evil:9092", "--kafka-brokers"),
            ("retries=0", "unbounded retries"),
            ("test.mock.num.brokers=3", "in-memory mock"),
            ("test.mock.broker.rtt=10", "test settings"),
            ("topic.test.mock.num.brokers=3", "test settings"),
        ] {
            let error = parse(&["--kafka-option", option]).unwrap_err();
            let key = option.split('=').next().unwrap();
            assert!(
                error.contains(&format!("--kafka-option {key}")) && error.contains("is reserved"),
                "{option}: {error}"
            );
            assert!(error.contains(named), "{option}: {error}");
        }
        for allowed in [
            "topic.metadata.refresh.interval.ms=1000",
            "topic.compression.level=3",
        ] {
            assert!(parse(&["--kafka-option", allowed]).is_ok(), "{allowed}");
        }
    }

    #[test]
    fn two_spellings_of_one_librdkafka_property_are_refused() {
        let error = parse(&[
            "--kafka-option",
            "request.timeout.ms=1000",
            "--kafka-option",
            "topic.request.timeout.ms=2000",
        ])
        .unwrap_err();
        assert!(
            error.contains("both set librdkafka's request.timeout.ms"),
            "{error}"
        );
    }

    #[test]
    fn the_message_timeout_is_at_least_the_ack_timeout_and_bounded() {
        assert_eq!(
            parse(&[]).unwrap().message_timeout(),
            Duration::from_secs(60),
            "long enough to land, for a relay that answers redrives with late records"
        );
        for answers_nothing_from_memory in
            [&["--single-writer", "off"][..], &["--redrive-horizon", "0"]]
        {
            assert_eq!(
                parse(answers_nothing_from_memory)
                    .unwrap()
                    .message_timeout(),
                Duration::from_secs(4),
                "the ack timeout with {answers_nothing_from_memory:?}"
            );
        }
        assert_eq!(
            parse(&["--kafka-message-timeout", "30s"])
                .unwrap()
                .message_timeout(),
            Duration::from_secs(30)
        );
        for too_short_or_long in ["3s", "301s"] {
            let error = parse(&["--kafka-message-timeout", too_short_or_long]).unwrap_err();
            assert!(
                error.contains("--kafka-message-timeout must be between --ack-timeout and 5m"),
                "{error}"
            );
        }
    }

    #[test]
    fn invalid_pointer_and_topic_are_rejected() {
        assert!(parse(&["--key-pointer", "id"]).is_err());
        assert!(parse(&["--topic", "bad topic"]).is_err());
        assert!(parse(&["--dead-letter-topic", "authvia.business-processes"]).is_err());
    }

    #[test]
    fn a_bad_duration_or_size_is_named_once_with_an_example() {
        let error = parse(&["--ack-timeout", "5x"]).unwrap_err();
        assert!(
            error.contains("invalid value '5x' for '--ack-timeout"),
            "{error}"
        );
        assert!(
            error.contains("expected a duration such as 250ms"),
            "{error}"
        );
        let error = parse(&["--max-body", "2XB"]).unwrap_err();
        assert_eq!(error.matches("XB").count(), 1, "{error}");
        assert!(error.contains("expected a size such as"), "{error}");
    }

    #[test]
    fn a_broker_down_grace_shorter_than_two_statistics_intervals_is_refused() {
        let error = parse(&["--broker-down-grace", "1s"]).unwrap_err();
        assert!(
            error.contains("--broker-down-grace must be at least 2s"),
            "{error}"
        );
        assert!(parse(&["--broker-down-grace", "2s"]).is_ok());
    }

    #[test]
    fn rules_between_groups_are_checked() {
        let error = parse(&["--shutdown-grace", "1s"]).unwrap_err();
        assert!(error.contains("--shutdown-grace"), "{error}");
        let error = parse(&["--kafka-queue-max-bytes", "1KiB"]).unwrap_err();
        assert!(error.contains("--max-body"), "{error}");
    }

    #[test]
    fn otlp_export_is_off_by_default_and_needs_a_plain_http_collector_url() {
        assert!(parse(&[]).unwrap().telemetry.otlp_endpoint.is_none());
        let config = parse(&["--otlp-endpoint", "http://otel-collector:4318"]).unwrap();
        assert_eq!(
            config.telemetry.otlp_endpoint.unwrap().to_string(),
            "http://otel-collector:4318/"
        );
        for bad in [
            "https://otel-collector:4318",
            "otel-collector:4318",
            "/v1/traces",
            "http://user:pw@otel-collector:4318",
            "not a url",
        ] {
            let error = parse(&["--otlp-endpoint", bad]).unwrap_err();
            assert!(error.contains("--otlp-endpoint"), "{bad}: {error}");
            assert!(
                !error.contains("pw@"),
                "credentials are not echoed: {error}"
            );
        }
    }

    #[test]
    fn secrets_file_is_read_line_by_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets");
        std::fs::write(&path, "old-secret\nnew-secret\n\n").unwrap();
        let config = Config::try_parse_from([
            "bp-relay",
            "--kafka-brokers",
            "k:9092",
            "--signing-secrets-file",
            path.to_str().unwrap(),
        ])
        .unwrap();
        config.validate().unwrap();
        let secrets = config
            .authentication
            .secret_lists()
            .read()
            .unwrap()
            .processes;
        let exposed: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
        assert_eq!(exposed, ["old-secret", "new-secret"]);
    }

    #[test]
    fn the_actions_route_has_its_own_list_only_when_given_one() {
        let lists = parse(&[]).unwrap().authentication.secret_lists();
        assert!(lists.actions.is_none(), "by default it shares the list");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actions");
        std::fs::write(&path, "from-file\n").unwrap();
        let config = parse(&[
            "--actions-signing-secrets",
            "a1,a2",
            "--actions-signing-secrets-file",
            path.to_str().unwrap(),
        ])
        .unwrap();
        let secrets = config.authentication.secret_lists().read().unwrap();
        let exposed = |list: &[SecretString]| -> Vec<String> {
            list.iter().map(|s| s.expose_secret().to_owned()).collect()
        };
        assert_eq!(exposed(&secrets.processes), ["s3cret"]);
        assert_eq!(
            exposed(secrets.actions.as_deref().unwrap()),
            ["a1", "a2", "from-file"]
        );
    }

    #[test]
    fn an_actions_list_needs_the_processes_list_and_contradicts_skipping_signatures() {
        let only_actions = Config::try_parse_from([
            "bp-relay",
            "--kafka-brokers",
            "k:9092",
            "--actions-signing-secrets",
            "a",
        ])
        .unwrap();
        let error = only_actions.validate().unwrap_err().to_string();
        assert!(
            error.contains("needs the business-processes route's list too: set --signing-secrets"),
            "{error}"
        );
        let skipped = Config::try_parse_from([
            "bp-relay",
            "--kafka-brokers",
            "k:9092",
            "--actions-signing-secrets",
            "a",
            "--insecure-skip-signature",
        ])
        .unwrap();
        let error = skipped.validate().unwrap_err().to_string();
        assert!(error.contains("contradicts"), "{error}");
    }

    #[test]
    fn one_secret_in_both_lists_is_refused_without_echoing_it() {
        let config = parse(&["--actions-signing-secrets", "other,s3cret"]).unwrap();
        let error = config
            .authentication
            .secret_lists()
            .read()
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.starts_with("a secret is in both the business-processes route's list"),
            "{error}"
        );
        assert!(!error.contains("s3cret"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }

    #[test]
    fn an_empty_actions_secrets_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("actions");
        std::fs::write(&path, "\n").unwrap();
        let config = parse(&["--actions-signing-secrets-file", path.to_str().unwrap()]).unwrap();
        let error = config
            .authentication
            .secret_lists()
            .read()
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.starts_with("--actions-signing-secrets-file ")
                && error.ends_with("holds no secret"),
            "{error}"
        );
    }

    #[test]
    fn unreadable_secrets_file_is_a_config_error() {
        let config = Config::try_parse_from([
            "bp-relay",
            "--kafka-brokers",
            "k:9092",
            "--signing-secrets-file",
            "/nonexistent/secrets",
        ])
        .unwrap();
        let error = config
            .authentication
            .secret_lists()
            .read()
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.starts_with("--signing-secrets-file /nonexistent/secrets"),
            "{error}"
        );
    }

    /// The README's flag tables list exactly the relay's flags, each under its `--help` heading,
    /// with its environment variable and its default.
    #[test]
    fn the_readme_flag_tables_are_the_flags() {
        use clap::CommandFactory;

        let command = Config::command();
        let flags: Vec<&clap::Arg> = command
            .get_arguments()
            .filter(|arg| arg.get_long().is_some_and(|long| long != "help"))
            .collect();
        let rows = crate::readme::rows_between("## Configuration", "**`bp-relay sign`**");
        let documented: Vec<String> = rows
            .iter()
            .filter_map(|row| row.code(0))
            .map(str::to_owned)
            .collect();
        let mut expected: Vec<String> = flags
            .iter()
            .map(|arg| format!("--{}", arg.get_long().unwrap()))
            .collect();
        let mut listed = documented.clone();
        expected.sort();
        listed.sort();
        assert_eq!(
            listed, expected,
            "README's flag tables and `bp-relay --help`"
        );
        for arg in flags {
            let flag = format!("--{}", arg.get_long().unwrap());
            let row = rows.iter().find(|row| row.code(0) == Some(&flag)).unwrap();
            assert_eq!(
                row.heading.as_deref(),
                arg.get_help_heading(),
                "{flag}: README heading and --help heading"
            );
            let env = arg.get_env().map(|env| env.to_string_lossy().into_owned());
            assert_eq!(
                row.code(1).map(str::to_owned),
                env,
                "{flag}: environment variable"
            );
            let default: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            let cell = row.cells[2].as_str();
            let on_off = matches!(arg.get_action(), clap::ArgAction::SetTrue);
            match default.as_slice() {
                _ if on_off => assert_eq!(cell, "off", "{flag}: an on/off flag is documented off"),
                [] => assert!(
                    !cell.starts_with('`') || cell.starts_with("`--"),
                    "{flag} has no default, README's {cell:?} reads like one"
                ),
                [value] => assert_eq!(row.code(2), Some(value.as_str()), "{flag}: default"),
                values => assert_eq!(
                    row.code(2).map(str::to_owned),
                    Some(values.join(",")),
                    "{flag}: default"
                ),
            }
        }
    }
}
