//! bp-relay receives Authvia business-process webhooks and publishes each one to Kafka,
//! answering 2xx only once the broker has acknowledged the record.
//!
//! # Layout
//! From the top of the house down; a module uses only modules below it (no cycle).
//! - [`app`]: builds the live service from a [`Config`] (or checks it, for `check-config`),
//!   runs it until shutdown, then drains. Owns the embedded mock cluster of the quick start.
//! - [`parts`]: builds every shared part once (authenticator, replay guard, redrive memory,
//!   body budget, ingress); the app serves them, tests and benches build the same.
//! - [`http`]: the webhook ingress: routes, body limit, the handler; logs and counts each
//!   failure once. [`admin`]: `/metrics`, `/healthz`, `/readyz` on their own listener.
//!   [`server`]: the accept loop both listeners share, and the bounds of each connection
//!   (count, deadlines, buffers).
//! - [`response`]: JSON answers, and the one place an [`error::Error`] becomes one.
//!   [`body_budget`]: the request body bytes all requests may hold at once. [`rotation`]:
//!   reloads the signing secrets files while running.
//! - [`error`]: every way a request can fail, with its status and code. [`metrics`]: the
//!   request-side metrics, one typed method per event. [`sign`]: the demo client.
//! - [`signature`]: authentication: Authvia's HMAC signature with the keys in force (rotated
//!   with a grace period), the timestamp window, and the signed headers the demo client, tests
//!   and benches send. A genuine signing older than the window passes only as the original
//!   signing of a delivery answered 5xx.
//! - [`kafka`]: the publisher over librdkafka, error classification, client settings,
//!   statistics and client metrics, the topics' durability check, the embedded mock cluster.
//!   [`redrive`]: the memory of deliveries answered 5xx (their signings, and where their records
//!   landed, if they did). [`telemetry`]: logs, spans, trace export.
//! - [`publish`]: what the ingress needs from a publisher and the words of its answers (where
//!   a record landed, why it did not, its late fate), free of librdkafka; an in-memory one for
//!   tests and the HTTP-side benchmark. [`config`]: every flag and environment variable, in
//!   groups (listeners, signing, routes, Kafka, lifecycle, telemetry), each with its own rules.
//! - [`record`]: the record contract (CloudEvents Kafka binding, binary mode) and the choice of
//!   topic, including dead-letter routing.
//! - [`replay`]: the replay guard, in memory or in Redis.
//! - [`route`]: the webhook URL paths, each a `Route`. [`webhook`]: the domain:
//!   `Webhook::parse` finds the key and checks known fields. [`health`]: readiness. [`traceparent`]: trace context. [`samples`]: the sample
//!   deliveries of `docs/examples/`.

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

pub mod admin;
pub mod app;
pub mod body_budget;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod parts;
pub mod publish;
pub mod record;
pub mod redrive;
pub mod replay;
pub mod response;
pub mod rotation;
pub mod route;
pub mod samples;
pub mod server;
pub mod sign;
pub mod signature;
pub mod telemetry;
pub mod traceparent;
pub mod webhook;

/// The README's tables, for the unit tests that hold them to the code.
#[cfg(test)]
mod readme;

pub use app::App;
pub use config::Config;
