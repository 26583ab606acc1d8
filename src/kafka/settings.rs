//! librdkafka settings derived from the Kafka group of the configuration: the relay's
//! durability defaults, security, then the user's pass-through properties (which cannot touch
//! the reserved ones, see [`crate::config::RESERVED_OPTIONS`]).

use rdkafka::ClientConfig;
use secrecy::ExposeSecret;

use crate::config::{ConfigError, Kafka, RECORD_HEADROOM, STATISTICS_INTERVAL};

/// librdkafka's own default for `message.max.bytes`.
const LIBRDKAFKA_MESSAGE_MAX: u64 = 1_000_000;

/// The longest wait before librdkafka tries a broker that is down again
/// (`reconnect.backoff.max.ms`): what a broker that is back waits at most for the relay.
const RECONNECT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// The producer configuration for `config`, with `brokers` as bootstrap servers, for records
/// whose value is at most `max_body` bytes, kept at most `message_timeout` by the producer
/// ([`crate::config::Config::message_timeout`]).
///
/// # Errors
/// The SASL password file cannot be read.
pub fn client_config(
    config: &Kafka,
    brokers: &str,
    max_body: u64,
    message_timeout: std::time::Duration,
) -> Result<ClientConfig, ConfigError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", brokers)
        .set("client.id", "bp-relay")
        // 2xx means durable: every in-sync replica has the record, without duplicates or
        // reordering from the producer's own retries.
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // Same partition as the Java client's default partitioner for the same key.
        .set("partitioner", "murmur2_random")
        .set("compression.type", config.kafka_compression.as_librdkafka())
        // librdkafka takes fractions of a millisecond: 500us stays 0.5, not 0.
        .set(
            "linger.ms",
            (config.kafka_linger.as_secs_f64() * 1000.0).to_string(),
        )
        // How long a record answered 503 may still land (see docs/reliability.md). A produce
        // request times out at the lower of socket.timeout.ms (60 s) and its records' remaining
        // time, so a record is given up only with its request, and a broker that answers
        // nothing for 60 s loses its connection (socket.max.fails 1) whatever this is.
        .set(
            "message.timeout.ms",
            message_timeout.as_millis().to_string(),
        )
        .set(
            "queue.buffering.max.messages",
            config.kafka_queue_max_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            queue_max_kbytes(config).to_string(),
        )
        .set("message.max.bytes", message_max_bytes(max_body).to_string())
        .set(
            "statistics.interval.ms",
            STATISTICS_INTERVAL.as_millis().to_string(),
        )
        // Recovery after an outage (docs/reliability.md, "Recovery after every broker
        // returns"): a broker that is down is tried again 100 ms (reconnect.backoff.ms) after
        // it went, the wait doubling up to this cap, which librdkafka's jitter never exceeds.
        // So a broker that is back is connected within 2 s (librdkafka's default cap, 10 s,
        // alone would miss the 3 s target). While every broker is down librdkafka also tries
        // a bootstrap address every 50 ms (reconnect.backoff.ms / 2) whenever it wants
        // metadata, which the readiness probe asks for every second: in the measured outages
        // the first connection came at most 1 s after the last refused attempt.
        // socket.connection.setup.timeout.ms stays librdkafka's 30 s: a stopped or restarting
        // broker refuses at once (no attempt hung in any measured outage), and one attempt
        // that hangs holds only its own broker, not the others.
        .set(
            "reconnect.backoff.max.ms",
            RECONNECT_BACKOFF_MAX.as_millis().to_string(),
        )
        // SO_KEEPALIVE on the kernel's timers (first probe after 2 h idle unless the host lowers
        // net.ipv4.tcp_keepalive_time): it lets the kernel close an idle connection whose peer
        // vanished. No part of recovery: a connection with a request in flight is dropped when
        // the request times out (socket.max.fails 1), and a broker that stops closes its own.
        .set("socket.keepalive.enable", "true")
        // Produce requests are small and latency-bound: Nagle's algorithm would hold one back
        // until the broker's delayed ACK (tens of ms), the tail of every answer.
        .set("socket.nagle.disable", "true")
        // One produce request in flight per broker: records that arrive meanwhile ride in the next
        // one, so batches grow with the load (measured in docs/benchmarks.md: 5 in flight, with
        // or without a linger, cost more CPU per delivery than 1).
        .set("max.in.flight.requests.per.connection", "1")
        // A closed idle connection is routine, not a problem worth a log line.
        .set("log.connection.close", "false")
        .set(
            "security.protocol",
            config.kafka_security_protocol.as_librdkafka(),
        );
    if let Some(mechanism) = config.kafka_sasl_mechanism {
        client.set("sasl.mechanism", mechanism.as_librdkafka());
    }
    if let Some(username) = &config.kafka_sasl_username {
        client.set("sasl.username", username);
    }
    if let Some(password) = config.sasl_password()? {
        client.set("sasl.password", password.expose_secret());
    }
    for (key, path) in [
        ("ssl.ca.location", &config.kafka_ssl_ca_location),
        (
            "ssl.certificate.location",
            &config.kafka_ssl_certificate_location,
        ),
        ("ssl.key.location", &config.kafka_ssl_key_location),
    ] {
        if let Some(path) = path {
            client.set(key, path.to_string_lossy());
        }
    }
    // Under the property librdkafka sets, so that no other spelling of it is in the map.
    for option in &config.kafka_options {
        client.set(option.property(), &option.value);
    }
    Ok(client)
}

/// The queue bound in librdkafka's unit, rounded up: never below what the flag promised.
fn queue_max_kbytes(config: &Kafka) -> u64 {
    config.kafka_queue_max_bytes.as_u64().div_ceil(1024)
}

fn message_max_bytes(max_body: u64) -> u64 {
    (max_body + RECORD_HEADROOM).max(LIBRDKAFKA_MESSAGE_MAX)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::Config;

    fn settings(extra: &[&str]) -> ClientConfig {
        let args = [
            "bp-relay",
            "--kafka-brokers",
            "k:9092",
            "--signing-secrets",
            "s",
        ]
        .iter()
        .chain(extra);
        let config = Config::try_parse_from(args).unwrap();
        client_config(
            &config.kafka,
            "k:9092",
            config.listeners.max_body.as_u64(),
            config.message_timeout(),
        )
        .unwrap()
    }

    #[test]
    fn durability_defaults_are_set() {
        let client = settings(&[]);
        assert_eq!(client.get("acks"), Some("all"));
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("partitioner"), Some("murmur2_random"));
        assert_eq!(client.get("message.timeout.ms"), Some("60000"));
        assert_eq!(client.get("compression.type"), Some("lz4"));
        assert_eq!(client.get("socket.nagle.disable"), Some("true"));
        assert_eq!(client.get("linger.ms"), Some("1"));
        assert_eq!(
            client.get("max.in.flight.requests.per.connection"),
            Some("1")
        );
        // A 1 MiB body plus headers must fit.
        assert_eq!(client.get("message.max.bytes"), Some("1114112"));
    }

    #[test]
    fn a_returning_broker_is_retried_within_the_cap_and_the_request_timeouts_stay_librdkafkas() {
        let client = settings(&[]);
        let millis = |key: &str| client.get(key).map(|value| value.parse::<u64>().unwrap());
        // Recovery: a broker that is back waits at most this long for the next attempt, well
        // within the 3 s recovery target, and the first attempt is soon after the loss.
        let cap = millis("reconnect.backoff.max.ms").unwrap();
        assert_eq!(cap, RECONNECT_BACKOFF_MAX.as_millis() as u64);
        assert!(cap <= 2_000, "{cap}");
        assert!(millis("reconnect.backoff.ms").unwrap_or(100) <= cap);
        // The redrive's relations (docs/reliability.md): a produce request times out at the
        // lower of librdkafka's socket.timeout.ms (60 s) and its records' remaining time, and
        // one timed-out request drops the connection (socket.max.fails 1). The relay does not
        // move them, nor the connection setup bound (30 s) recovery was measured with.
        for kept in [
            "socket.timeout.ms",
            "socket.max.fails",
            "socket.connection.setup.timeout.ms",
            "api.version.request.timeout.ms",
        ] {
            assert_eq!(client.get(kept), None, "{kept}");
        }
        assert_eq!(client.get("socket.keepalive.enable"), Some("true"));
    }

    #[test]
    fn pass_through_options_reach_librdkafka_and_flags_set_their_keys() {
        let client = settings(&[
            "--kafka-linger",
            "2500us",
            "--kafka-option",
            "debug=broker,topic",
            "--kafka-option",
            "socket.keepalive.enable=false",
        ]);
        assert_eq!(client.get("linger.ms"), Some("2.5"));
        assert_eq!(client.get("debug"), Some("broker,topic"));
        assert_eq!(client.get("socket.keepalive.enable"), Some("false"));
    }

    #[test]
    fn one_spelling_per_property_reaches_librdkafka() {
        let client = settings(&[
            "--kafka-option",
            "topic.request.timeout.ms=1000",
            "--kafka-option",
            "topic.metadata.refresh.interval.ms=5000",
        ]);
        assert_eq!(client.get("request.timeout.ms"), Some("1000"));
        assert_eq!(client.get("topic.request.timeout.ms"), None);
        assert_eq!(
            client.get("topic.metadata.refresh.interval.ms"),
            Some("5000"),
            "a global property named topic.* keeps its name"
        );
        let mut properties: Vec<&str> = client
            .config_map()
            .keys()
            .map(|key| crate::config::librdkafka_property(key))
            .collect();
        let count = properties.len();
        properties.sort_unstable();
        properties.dedup();
        assert_eq!(properties.len(), count, "{properties:?}");
    }

    #[test]
    fn the_queue_bound_is_rounded_up_to_whole_kibibytes() {
        let client = settings(&["--max-body", "1000B", "--kafka-queue-max-bytes", "66537B"]);
        assert_eq!(client.get("queue.buffering.max.kbytes"), Some("65"));
    }

    #[test]
    fn sasl_settings_reach_librdkafka() {
        let dir = tempfile::tempdir().unwrap();
        let password = dir.path().join("password");
        std::fs::write(&password, "pw\n").unwrap();
        let client = settings(&[
            "--kafka-security-protocol",
            "sasl-ssl",
            "--kafka-sasl-mechanism",
            "SCRAM-SHA-512",
            "--kafka-sasl-username",
            "relay",
            "--kafka-sasl-password-file",
            password.to_str().unwrap(),
        ]);
        assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(client.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(client.get("sasl.username"), Some("relay"));
        assert_eq!(client.get("sasl.password"), Some("pw"));
    }
}
