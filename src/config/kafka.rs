//! How the relay reaches Kafka: brokers, security, producer bounds and timeouts, and the
//! librdkafka pass-through. The Kafka client settings are derived from this group alone.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use bytesize::ByteSize;
use clap::ValueEnum;
use secrecy::{ExposeSecret, SecretString};

use super::{parse_secret, read_secret_file, ConfigError};

/// Authvia's hard limit: a delivery is failed unless answered within five seconds.
pub const AUTHVIA_DEADLINE: Duration = Duration::from_secs(5);

/// How often librdkafka reports statistics (queue fill, broker state, RTT).
pub const STATISTICS_INTERVAL: Duration = Duration::from_secs(1);

/// The message timeout of a relay that answers a redrive with a record that landed after its
/// 503: the producer keeps a 503'd record this long, so that it lands (and is remembered)
/// rather than times out in flight, its fate unknown. Measured on the fault matrix's paused,
/// minority and slow brokers: every 503'd record landed and was caught, no duplicate, against
/// 36, 0 and 3 % caught and 35, 1 and 301 duplicates with the ack timeout (docs/reliability.md).
pub const LATE_LANDING_MESSAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest --kafka-message-timeout: beyond it a 503'd record could land long after
/// Authvia's retry stored it again, and a record could wait in memory that long.
pub const MAX_MESSAGE_TIMEOUT: Duration = Duration::from_secs(300);

/// librdkafka properties the relay sets itself and that `--kafka-option` may not override:
/// each would weaken "2xx means durable" or break the relay's own logic. Keys with a flag of
/// their own (timeouts, compression, linger, queue bounds, security) are set through the flag.
pub const RESERVED_OPTIONS: &[(&str, &str)] = &[
    ("acks", "2xx means every in-sync replica has the record"),
    (
        "request.required.acks",
        "2xx means every in-sync replica has the record",
    ),
    (
        "enable.idempotence",
        "retries must not duplicate or reorder records",
    ),
    (
        "enable.gapless.guarantee",
        "the relay handles idempotence failures itself",
    ),
    (
        "max.in.flight.requests.per.connection",
        "the relay keeps one request in flight per broker, so batches grow with the load",
    ),
    (
        "max.in.flight",
        "the relay keeps one request in flight per broker, so batches grow with the load",
    ),
    (
        "retries",
        "idempotence needs unbounded retries within message.timeout.ms",
    ),
    (
        "message.send.max.retries",
        "idempotence needs unbounded retries within message.timeout.ms",
    ),
    (
        "partitioner",
        "records must land where the Java client puts the same key",
    ),
    (
        "partitioner_cb",
        "records must land where the Java client puts the same key",
    ),
    (
        "transactional.id",
        "the relay is not a transactional producer",
    ),
    (
        "statistics.interval.ms",
        "readiness and the queue and broker metrics depend on it",
    ),
    ("dr_cb", "answers wait for the delivery report"),
    ("dr_msg_cb", "answers wait for the delivery report"),
    (
        "delivery.report.only.error",
        "answers wait for every delivery report",
    ),
    (
        "produce.offset.report",
        "the answer names the record's offset",
    ),
    ("bootstrap.servers", "use --kafka-brokers"),
    ("metadata.broker.list", "use --kafka-brokers"),
    ("message.timeout.ms", "use --kafka-message-timeout"),
    ("delivery.timeout.ms", "use --kafka-message-timeout"),
    ("linger.ms", "use --kafka-linger"),
    ("queue.buffering.max.ms", "use --kafka-linger"),
    ("compression.type", "use --kafka-compression"),
    ("compression.codec", "use --kafka-compression"),
    (
        "queue.buffering.max.messages",
        "use --kafka-queue-max-messages",
    ),
    ("queue.buffering.max.kbytes", "use --kafka-queue-max-bytes"),
    ("message.max.bytes", "derived from --max-body"),
    ("security.protocol", "use --kafka-security-protocol"),
    ("sasl.mechanism", "use --kafka-sasl-mechanism"),
    ("sasl.mechanisms", "use --kafka-sasl-mechanism"),
    ("sasl.username", "use --kafka-sasl-username"),
    ("sasl.password", "use --kafka-sasl-password-file"),
    ("ssl.ca.location", "use --kafka-ssl-ca-location"),
    (
        "ssl.certificate.location",
        "use --kafka-ssl-certificate-location",
    ),
    ("ssl.key.location", "use --kafka-ssl-key-location"),
];

/// librdkafka's aliases (`_RK_C_ALIAS` in its `rdkafka_conf.c`) and the property each stands
/// for: an option is checked, and passed on, under the property librdkafka sets.
const ALIASES: &[(&str, &str)] = &[
    ("bootstrap.servers", "metadata.broker.list"),
    ("max.in.flight", "max.in.flight.requests.per.connection"),
    ("sasl.mechanism", "sasl.mechanisms"),
    (
        "sasl.oauthbearer.client.credentials.client.id",
        "sasl.oauthbearer.client.id",
    ),
    (
        "sasl.oauthbearer.client.credentials.client.secret",
        "sasl.oauthbearer.client.secret",
    ),
    ("max.partition.fetch.bytes", "fetch.message.max.bytes"),
    ("linger.ms", "queue.buffering.max.ms"),
    ("retries", "message.send.max.retries"),
    ("compression.type", "compression.codec"),
    ("acks", "request.required.acks"),
    ("delivery.timeout.ms", "message.timeout.ms"),
    ("enable.auto.commit", "auto.commit.enable"),
];

/// Global properties whose own name begins with `topic.`: librdkafka finds these before it
/// would strip the prefix (it strips `topic.` only from a name no global property has).
const GLOBAL_TOPIC_PROPERTIES: &[&str] = &[
    "topic.metadata.refresh.interval.ms",
    "topic.metadata.refresh.fast.interval.ms",
    "topic.metadata.refresh.fast.cnt",
    "topic.metadata.refresh.sparse",
    "topic.metadata.propagation.max.ms",
    "topic.blacklist",
];

/// librdkafka's test properties (`test.mock.num.brokers` replaces the brokers with an
/// in-memory mock cluster): none may reach a relay that answers 2xx for durable records.
const TEST_PREFIX: &str = "test.";

/// The property librdkafka sets for `key`: as `rd_kafka_conf_set` reads it, a name no global
/// property has loses one leading `topic.` (the default topic configuration), and an alias
/// stands for its target.
pub fn librdkafka_property(key: &str) -> &str {
    let name = if GLOBAL_TOPIC_PROPERTIES.contains(&key) {
        key
    } else {
        key.strip_prefix("topic.").unwrap_or(key)
    };
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == name)
        .map_or(name, |(_, target)| target)
}

/// Why `property` (a librdkafka property, see [`librdkafka_property`]) is reserved, if it is.
fn reserved(property: &str) -> Option<&'static str> {
    if property.starts_with(TEST_PREFIX) {
        return Some("librdkafka's test settings replace the brokers or inject faults (test.mock.num.brokers answers from an in-memory mock: 2xx for records that are not durable)");
    }
    RESERVED_OPTIONS
        .iter()
        .find(|(key, _)| librdkafka_property(key) == property)
        .map(|(_, why)| *why)
}

/// The Kafka connection and producer settings.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Kafka")]
pub struct Kafka {
    /// Kafka bootstrap servers, comma-separated host:port. Required unless --embedded-kafka.
    #[arg(long, env = "BP_RELAY_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,

    /// Run against librdkafka's in-process mock cluster (a demo, not durable).
    #[arg(long, env = "BP_RELAY_EMBEDDED_KAFKA", value_parser = super::on_off())]
    pub embedded_kafka: bool,

    /// The request's whole budget, from arrival to answer: a record the broker has not
    /// acknowledged by then is answered 503. Below 5s.
    #[arg(long, env = "BP_RELAY_ACK_TIMEOUT", default_value = "4s", value_parser = super::parse_duration)]
    pub ack_timeout: Duration,

    /// librdkafka message.timeout.ms: how long the producer keeps trying a record after its
    /// request was answered 503. Default: 60s while this relay answers a redrive with a record
    /// that landed after its 503 (--single-writer and the redrive memory on), else --ack-timeout.
    #[arg(long, env = "BP_RELAY_KAFKA_MESSAGE_TIMEOUT", value_parser = super::parse_duration)]
    pub kafka_message_timeout: Option<Duration>,

    /// librdkafka queue.buffering.max.messages: records waiting for the broker at most.
    #[arg(
        long,
        env = "BP_RELAY_KAFKA_QUEUE_MAX_MESSAGES",
        default_value_t = 100_000
    )]
    pub kafka_queue_max_messages: u32,

    /// librdkafka queue.buffering.max.kbytes, as a size: bytes waiting for the broker at most.
    #[arg(long, env = "BP_RELAY_KAFKA_QUEUE_MAX_BYTES", default_value = "256MiB", value_parser = super::parse_size)]
    pub kafka_queue_max_bytes: ByteSize,

    /// librdkafka linger.ms: how long a partition's first record waits for others to share its
    /// batch. Records that arrive while a request is in flight are batched into the next one
    /// anyway. 1 ms fills batches from about 4,000 deliveries/s on, cutting the relay's and the
    /// broker's CPU per delivery by a quarter there; 0 saves about 1.3 ms of median latency at
    /// low rates (docs/benchmarks.md, "What the producer defaults trade").
    #[arg(long, env = "BP_RELAY_KAFKA_LINGER", default_value = "1ms", value_parser = super::parse_duration)]
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

    /// Any other librdkafka property as key=value, applied after the relay's own (repeatable;
    /// the environment form separates several with ';'). Properties the relay owns are refused.
    #[arg(
        long = "kafka-option",
        env = "BP_RELAY_KAFKA_OPTIONS",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub kafka_options: Vec<KafkaOption>,
}

impl Kafka {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.validate_target()?;
        self.validate_timeouts()?;
        self.validate_security()?;
        self.validate_options()?;
        if self.kafka_queue_max_messages == 0 {
            return Err(ConfigError::new(
                "--kafka-queue-max-messages must be at least 1",
            ));
        }
        Ok(())
    }

    fn validate_target(&self) -> Result<(), ConfigError> {
        match (&self.kafka_brokers, self.embedded_kafka) {
            (Some(_), true) => Err(ConfigError::new("--kafka-brokers and --embedded-kafka exclude each other")),
            (None, false) => Err(ConfigError::new(
                "--kafka-brokers (BP_RELAY_KAFKA_BROKERS) is required, or --embedded-kafka for a demo",
            )),
            (Some(brokers), false) if brokers.trim().is_empty() => Err(ConfigError::new("--kafka-brokers must not be empty")),
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
        if self.kafka_linger * 2 >= self.ack_timeout {
            // A record lingering longer would leave too little of the budget for the broker.
            return Err(ConfigError::new(format!(
                "--kafka-linger must be less than half of --ack-timeout ({}), got {}",
                humantime::format_duration(self.ack_timeout),
                humantime::format_duration(self.kafka_linger)
            )));
        }
        match self.kafka_message_timeout {
            Some(timeout) if timeout < self.ack_timeout || timeout > MAX_MESSAGE_TIMEOUT => {
                Err(ConfigError::new(format!(
                    "--kafka-message-timeout must be between --ack-timeout and {}, got {}",
                    humantime::format_duration(MAX_MESSAGE_TIMEOUT),
                    humantime::format_duration(timeout)
                )))
            }
            _ => Ok(()),
        }
    }

    fn validate_security(&self) -> Result<(), ConfigError> {
        let protocol = self.kafka_security_protocol;
        let has_password =
            self.kafka_sasl_password.is_some() || self.kafka_sasl_password_file.is_some();
        if protocol.uses_sasl() {
            if self.kafka_sasl_mechanism.is_none()
                || self.kafka_sasl_username.is_none()
                || !has_password
            {
                return Err(ConfigError::new(format!(
                    "--kafka-security-protocol {} needs --kafka-sasl-mechanism, --kafka-sasl-username and a password (--kafka-sasl-password-file)",
                    protocol.as_librdkafka()
                )));
            }
        } else if self.kafka_sasl_mechanism.is_some()
            || self.kafka_sasl_username.is_some()
            || has_password
        {
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

    fn validate_options(&self) -> Result<(), ConfigError> {
        for (index, option) in self.kafka_options.iter().enumerate() {
            let property = option.property();
            if let Some(why) = reserved(property) {
                let listed = RESERVED_OPTIONS.iter().any(|(key, _)| *key == option.key);
                let read_as = if listed || property == option.key {
                    String::new()
                } else {
                    format!(" (librdkafka reads it as {property})")
                };
                return Err(ConfigError::new(format!(
                    "--kafka-option {}{read_as} is reserved: {why}",
                    option.key
                )));
            }
            // One spelling per property: which of two would win depends on no order.
            if let Some(earlier) = self.kafka_options[..index]
                .iter()
                .find(|earlier| earlier.property() == property)
            {
                return Err(ConfigError::new(format!(
                    "--kafka-option {} and {} both set librdkafka's {property}: give it once",
                    earlier.key, option.key
                )));
            }
        }
        Ok(())
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
                Ok(Some(SecretString::from(
                    text.expose_secret()
                        .trim_end_matches(['\r', '\n'])
                        .to_owned(),
                )))
            }
            (None, None) => Ok(None),
        }
    }
}

/// Record batch compression codecs (both fast enough for the hot path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    /// lz4: cheapest CPU.
    Lz4,
    /// zstd: smaller batches.
    Zstd,
}

/// librdkafka `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecurityProtocol {
    /// No TLS, no SASL.
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS.
    #[value(name = "sasl_plaintext", alias = "sasl-plaintext")]
    SaslPlaintext,
    /// SASL over TLS (managed Kafka services).
    #[value(name = "sasl_ssl", alias = "sasl-ssl")]
    SaslSsl,
}

/// librdkafka `sasl.mechanism`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SaslMechanism {
    /// PLAIN (Confluent Cloud API keys).
    #[value(name = "PLAIN")]
    Plain,
    /// SCRAM-SHA-256.
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    /// SCRAM-SHA-512 (Amazon MSK).
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SecurityProtocol {
    /// The librdkafka spelling.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

impl SaslMechanism {
    /// The librdkafka spelling.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl Compression {
    /// The librdkafka spelling.
    pub fn as_librdkafka(self) -> &'static str {
        match self {
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// One librdkafka property passed through verbatim (`key=value`).
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaOption {
    /// Property name, e.g. `socket.keepalive.enable`.
    pub key: String,
    pub value: String,
}

impl KafkaOption {
    /// The librdkafka property this option sets, whichever spelling it was given in.
    pub fn property(&self) -> &str {
        librdkafka_property(&self.key)
    }

    /// Whether the value may be a credential and must never be printed.
    pub fn is_sensitive(&self) -> bool {
        ["password", "secret", "key", "jaas", "token", "credential"]
            .iter()
            .any(|word| self.key.contains(word))
    }
}

impl FromStr for KafkaOption {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => Ok(Self {
                key: key.trim().to_owned(),
                value: value.to_owned(),
            }),
            _ => Err("expected key=value (a librdkafka property)".to_owned()),
        }
    }
}

// Values may be credentials (sasl.password passed through): Debug shows keys only.
impl fmt::Debug for KafkaOption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let value = if self.is_sensitive() {
            "[redacted]"
        } else {
            &self.value
        };
        write!(f, "{}={}", self.key, value)
    }
}
