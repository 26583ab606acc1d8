//! bp-relay receives Authvia business-process webhooks and publishes each one to Kafka,
//! answering 2xx only once the broker has acknowledged the record.
//!
//! # Layout
//! Four rooms and two shared floors; a module uses only modules beside or below it (no cycle).
//! - [`process`]: the running service — [`process::app`] builds it from a [`config::Config`]
//!   (or checks it, for `check-config`), serves until shutdown, then drains;
//!   [`process::parts`] builds every shared part once; the admin listener, secrets rotation,
//!   logging and span export.
//! - [`kafka`]: the publisher over librdkafka — error classification, client settings,
//!   statistics and client metrics, the topics' durability check, the embedded mock cluster
//!   (behind the `kafka` feature, on by default).
//! - [`demo`]: `bp-relay sign`, the demo client, and the sample deliveries.
//! - [`ingress`]: the request pipeline, from the socket to the answer — connection bounds,
//!   routes, body budget, authentication (signature, replay guard, redrive memory), parsing,
//!   the record contract, publishing, answers and errors, the access log, request metrics.
//!   Free of librdkafka: [`ingress::publish`] is what it needs from a publisher.
//! - [`health`]: readiness, written by the publisher and the process, read by the ingress and
//!   the admin listener.
//! - [`config`]: every flag and environment variable, in groups (listeners, authentication,
//!   topics, rules, Kafka, lifecycle, telemetry), each with its own checks.

// The house's floor (linkerd2-proxy sets the same): idioms of the edition, no unsafe code
// outside the test hook that injects a fatal librdkafka error and the call that gives
// librdkafka its bootstrap servers again (src/kafka/generation.rs), no debugging leftovers.
#![deny(
    rust_2018_idioms,
    unsafe_code,
    clippy::dbg_macro,
    clippy::todo,
    clippy::unimplemented
)]

pub mod config;
pub mod demo;
pub mod health;
pub mod ingress;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod process;

/// The README's tables, for the unit tests that hold them to the code.
#[cfg(test)]
mod readme;

pub use config::Config;
#[cfg(feature = "kafka")]
pub use process::app::App;
