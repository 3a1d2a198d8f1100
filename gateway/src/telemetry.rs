//! Logging and OpenTelemetry.
//!
//! The daemon logs with `tracing` to stderr (journald). When
//! `telemetry.otlp_endpoint` is set, spans are also exported over OTLP/HTTP
//! (protobuf) to `<endpoint>/v1/traces`: a server span per request, client
//! spans `perl`/`rust` per backend call, a `compare` span, and a separate
//! `shadow` span linked to the request for mirrored work. The exporter posts
//! with the gateway's own hyper client on the gateway's runtime (no second
//! HTTP stack); plain `http://` collectors (the usual local agent) are supported.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::TelemetryConfig;

/// Posts OTLP batches with hyper on the gateway's runtime, whatever executor
/// the SDK's batch thread polls the future with.
#[derive(Debug, Clone)]
struct OtlpHttp {
    client: Client<HttpConnector, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttp {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.runtime.spawn(async move {
            let result = async {
                let (parts, body) = request.into_parts();
                let resp = tokio::time::timeout(
                    Duration::from_secs(10),
                    client.request(http::Request::from_parts(parts, Full::new(body))),
                )
                .await
                .map_err(|_| HttpError::from("OTLP export timed out"))??;
                let (parts, body) = resp.into_parts();
                let body = body.collect().await?.to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            }
            .await;
            let _ = tx.send(result);
        });
        rx.await
            .map_err(|_| HttpError::from("OTLP export task ended"))?
    }
}

/// Keeps the exporter alive; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("telemetry.otlp_endpoint: {0}")]
pub struct TelemetryError(String);

/// Installs the global subscriber: stderr logs at `level` (or `RUST_LOG`),
/// plus span export when configured. Call inside the runtime.
///
/// # Errors
/// When the OTLP exporter cannot be built.
pub fn init(config: &TelemetryConfig, level: &str) -> Result<Telemetry, TelemetryError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Per-layer filters: the request spans are DEBUG, so without an OTLP
    // endpoint nobody is interested in them and they cost next to nothing.
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    let Some(endpoint) = &config.otlp_endpoint else {
        tracing_subscriber::registry().with(fmt).init();
        return Ok(Telemetry { provider: None });
    };
    let http = OtlpHttp {
        client: Client::builder(TokioExecutor::new()).build_http(),
        runtime: tokio::runtime::Handle::current(),
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| TelemetryError(e.to_string()))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("pve-network-migration");
    let spans = tracing_subscriber::filter::Targets::new()
        .with_target("pve_network_migration", tracing::Level::DEBUG);
    tracing_subscriber::registry()
        .with(fmt)
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(spans),
        )
        .init();
    Ok(Telemetry {
        provider: Some(provider),
    })
}

impl Telemetry {
    /// Flushes and stops the exporter (blocking; call off the runtime's worker threads).
    pub fn shutdown(self) {
        if let Some(p) = self.provider
            && let Err(e) = p.shutdown()
        {
            eprintln!("pve-network-migration: flushing spans failed: {e}");
        }
    }
}
