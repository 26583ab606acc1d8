//! The black-box tests of bp-relay against a real Apache Kafka broker, as one test binary (it
//! needs the `kafka-tests` feature; `scripts/test.sh` starts the broker and turns it on).
//!
//! Each module is one concern; `helpers` is the harness they share: a relay of the test's own
//! on fresh topics (`spawn_relay`), the binary as a child process, a broker of the test's own,
//! and bounded waits. Environment: `BP_RELAY_TEST_KAFKA` (the shared broker, default
//! 127.0.0.1:9092), `BP_RELAY_KAFKA_SCRIPT` (scripts/kafka.sh, for dedicated brokers),
//! `TEST_LOG=1` (show the in-process relays' logs, filtered by `RUST_LOG`).

mod authentication;
mod backpressure;
mod binary;
mod dead_letter;
mod durability;
mod fatal;
mod helpers;
mod http_errors;
mod java_consumer;
mod otlp;
mod outage;
mod publish;
mod redrive;
mod replay;
mod rotation;
mod sasl;
mod startup;
