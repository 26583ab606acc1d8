//! The process around the pipeline: [`app`] starts it, serves it and drains it; [`parts`]
//! builds every shared part once from the configuration; [`admin`] answers `/metrics`,
//! `/healthz` and `/readyz`; [`rotation`] reloads the signing secrets while running;
//! [`shutdown`] says when to stop; [`malloc`] tunes glibc's allocator for librdkafka;
//! [`telemetry`] installs logging and the span exporter.

pub mod admin;
#[cfg(feature = "kafka")]
pub mod app;
pub mod malloc;
pub mod parts;
pub mod rotation;
pub mod shutdown;
pub mod telemetry;
