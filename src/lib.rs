//! bp-relay receives Authvia business-process webhooks and publishes each one to Kafka,
//! answering 2xx only once the broker has acknowledged the record.
//!
//! # Layout
//! - [`config`]: every flag and environment variable, and the rules between them.
//! - [`app`]: builds the live service from a config and runs it until shutdown, then drains.
//! - [`http`]: the webhook ingress: routes, body limit, handler, errors to responses.
//! - [`admin`]: `/metrics`, `/healthz`, `/readyz` on their own listener.
//! - [`signature`] and [`replay`]: Authvia's HMAC signature, timestamp window, replay guard.
//! - [`webhook`]: the domain: `Webhook::parse` finds the key and checks known fields.
//! - [`record`]: the record contract (CloudEvents Kafka binding, binary mode).
//! - [`kafka`]: the publisher, error classification, client settings, statistics, mock cluster.
//! - [`error`]: the request-path error with its status and code.
//! - [`metrics`], [`health`], [`telemetry`], [`traceparent`]: observability.
//! - [`sign`]: the `bp-relay sign` demo client.

pub mod admin;
pub mod app;
pub mod config;
pub mod error;
pub mod health;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod record;
pub mod replay;
pub mod sign;
pub mod signature;
pub mod telemetry;
pub mod traceparent;
pub mod webhook;

pub use app::App;
pub use config::Config;
