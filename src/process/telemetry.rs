//! Logging and tracing: structured `tracing` events, JSON off a terminal and human-readable on
//! one, filtered by `RUST_LOG` (default `info`). Request spans carry ids and outcomes, never bodies
//! or secrets.
//!
//! With `--otlp-endpoint`, the same spans are also exported over OTLP/HTTP (protobuf, batched),
//! and each request span joins the sender's W3C trace. Without it, no exporter, thread or task
//! exists.

use std::{
    io::IsTerminal,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use opentelemetry::{trace::TracerProvider as _, KeyValue};
use opentelemetry_http::{hyper::HyperClient, Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
use tokio::runtime::Handle;
use tracing::{info, warn};
use tracing_subscriber::{
    filter::filter_fn, fmt, layer::SubscriberExt as _, util::SubscriberInitExt as _, EnvFilter,
    Layer as _,
};

use crate::{config::LogFormat, ingress::access::REQUEST_TARGET};

/// How long shutdown waits for the last spans to reach the collector.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(3);

/// Bound on one export request to the collector.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Keeps span export running until [`SpanExport::shutdown`]. Logging itself needs no guard.
#[must_use = "call shutdown() at exit, or the spans of the last requests are lost"]
pub struct SpanExport {
    provider: Option<SdkTracerProvider>,
}

/// The span exporter could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the OTLP exporter: {0}")]
pub struct SpanExportError(String);

/// Installs the global subscriber, plus the OTLP span exporter when `otlp_endpoint` is set.
/// Call once, from `main`, inside the tokio runtime: exports run on it.
///
/// # Errors
/// The exporter cannot be built, or there is no tokio runtime to run it on.
pub fn init(
    format: LogFormat,
    otlp_endpoint: Option<&http::Uri>,
) -> Result<SpanExport, SpanExportError> {
    let provider = otlp_endpoint.map(tracer_provider).transpose()?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Request spans are at debug level, so without export (and without RUST_LOG=debug) no layer
    // wants them and they cost nothing; the exporter takes them whatever RUST_LOG says.
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stdout().is_terminal(),
    };
    let spans = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("bp-relay"))
            .with_filter(filter_fn(|metadata| {
                metadata.is_span() && metadata.target() == REQUEST_TARGET
            }))
    });
    let logs = if json {
        fmt::layer()
            .with_target(true)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .boxed()
    } else {
        fmt::layer().with_target(true).boxed()
    };
    tracing_subscriber::registry()
        .with(spans)
        .with(logs.with_filter(filter))
        .init();
    Ok(SpanExport { provider })
}

impl SpanExport {
    /// Exports the spans still buffered and stops the exporter, within [`FLUSH_BUDGET`].
    /// Does nothing when spans are not exported.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else {
            return;
        };
        // The SDK blocks until its batch thread has exported, and that export runs on this
        // runtime: wait on a blocking thread, not on a worker.
        let flushed =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_BUDGET)).await;
        match flushed {
            Ok(Ok(())) => info!("Span export stopped."),
            Ok(Err(error)) => {
                warn!(%error, "Span export stopped; the last spans may not have been exported.")
            }
            Err(error) => warn!(%error, "Span export did not stop cleanly."),
        }
    }
}

fn tracer_provider(endpoint: &http::Uri) -> Result<SdkTracerProvider, SpanExportError> {
    let runtime = Handle::try_current().map_err(|error| SpanExportError(error.to_string()))?;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(traces_url(endpoint))
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(CollectorClient {
            hyper: HyperClient::with_default_connector(EXPORT_TIMEOUT, None),
            runtime,
            failing: AtomicBool::new(false),
        })
        .build()
        .map_err(|error| SpanExportError(error.to_string()))?;
    let resource = Resource::builder()
        .with_service_name("bp-relay")
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// `<endpoint>/v1/traces`, the OTLP/HTTP path, keeping any path prefix of the endpoint.
fn traces_url(endpoint: &http::Uri) -> String {
    let base = endpoint.to_string();
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// The exporter's HTTP client. The SDK exports from its own batch thread, which has no tokio
/// runtime for hyper, so each request is run on the relay's runtime. It logs when the collector
/// starts and stops failing, not every failed batch.
#[derive(Debug)]
struct CollectorClient {
    hyper: HyperClient,
    runtime: Handle,
    failing: AtomicBool,
}

#[async_trait::async_trait]
impl HttpClient for CollectorClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let hyper = self.hyper.clone();
        let result = match self
            .runtime
            .spawn(async move { hyper.send_bytes(request).await })
            .await
        {
            Ok(result) => result,
            Err(error) => Err(Box::new(error) as HttpError),
        };
        let failure = match &result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("collector answered {}", response.status())),
            Err(error) => Some(error.to_string()),
        };
        match failure {
            Some(error) if !self.failing.swap(true, Ordering::Relaxed) => {
                warn!(%error, "Cannot export spans to the OTLP collector; spans are dropped while it fails.");
            }
            None if self.failing.swap(false, Ordering::Relaxed) => {
                info!("Exporting spans to the OTLP collector again.")
            }
            _ => {}
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_go_to_the_v1_traces_path_below_the_endpoint() {
        let url = |text: &str| traces_url(&text.parse().unwrap());
        assert_eq!(
            url("http://otel-collector:4318"),
            "http://otel-collector:4318/v1/traces"
        );
        assert_eq!(
            url("http://otel-collector:4318/"),
            "http://otel-collector:4318/v1/traces"
        );
        assert_eq!(
            url("http://gateway:80/otlp/"),
            "http://gateway:80/otlp/v1/traces"
        );
    }
}
