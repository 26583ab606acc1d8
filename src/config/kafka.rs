//! The Kafka-related value types of the configuration: how to reach the brokers and the
//! librdkafka pass-through.

use std::{fmt, str::FromStr};

use clap::ValueEnum;

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

    pub(super) fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    pub(super) fn uses_tls(self) -> bool {
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
    /// Property value.
    pub value: String,
}

impl KafkaOption {
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
        let value = if self.is_sensitive() { "[redacted]" } else { &self.value };
        write!(f, "{}={}", self.key, value)
    }
}
