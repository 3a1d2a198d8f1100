//! The migration engine: for a request to a migrated route, choose the
//! backends by the node's phase ([`plan`]), forward, mirror, fall back,
//! compare with the rules engine, record evidence and trip ([`trip`]).
//!
//! Every request that is not a migrated route of *this* node (or a
//! cluster-wide SDN route) never reaches this module's logic: it streams to
//! pveproxy exactly as in `perl-only`.
//!
//! How each [`Plan`] runs:
//!
//! * [`Plan::Perl`]: streamed to Perl, nothing else.
//! * [`Plan::PerlWithShadow`]: the Rust call is spawned first (bounded by
//!   `shadow.max_in_flight`, `shadow.timeout_ms`, `shadow.sample`), Perl's
//!   answer streams to the client while a copy is kept; the comparison runs
//!   after both are in, off the request path.
//! * [`Plan::RustRead`]: Rust and Perl are asked at once. A Rust failure
//!   (connect error, timeout, 5xx, malformed JSON) is answered with Perl's
//!   answer (fallback); otherwise Perl's answer (waited for at most
//!   `shadow.timeout_ms`) is compared first, and a critical difference is
//!   also answered by Perl — Rust never serves a read Perl would have refused.
//! * [`Plan::RustWrite`]: Rust alone. Re-sent to Perl only when Rust provably
//!   never received it (connect refused, TLS failure); anything ambiguous is a
//!   502 saying the write may have been applied. After a successful write,
//!   both backends are read and compared (`read_after_write` evidence).

pub mod plan;
mod tee;
pub mod trip;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::ext::ReasonPhrase;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use pve_migration_rules::{
    ApiFormat, Comparison, Endpoint, EndpointClass, Exchange, RuleSet, SkipReason, Verdict,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

pub use plan::Plan;
pub use trip::{RustOutcome, TripController, TripRecord, TripState};

use crate::body::{self, Body};
use crate::config::{Config, ShadowConfig, StoreBodies};
use crate::contract::{sha256_hex, verdict_name};
use crate::error::GatewayError;
use crate::evidence::{EvidenceRecord, Recorder, SideRecord, StoredBodies};
use crate::logfmt::Line;
use crate::metrics::{BackendLabels, ContractLabels, Metrics, ReasonLabels, RequestLabels};
use crate::phase::Phase;
use crate::proxy::{self, ClientInfo, DRY_RUN_HEADER};
use crate::trace::TraceContext;
use crate::upstream::{Upstream, UpstreamError};

/// The Rust copy of a request shadowed behind Perl.
enum Mirror {
    /// Sent beside Perl's request (reads).
    Running(tokio::task::JoinHandle<Result<Answer, CallError>>),
    /// A write's dry-run copy, answered before Perl's write went.
    Answered(Result<Result<Answer, CallError>, tokio::task::JoinError>),
    /// A write's dry-run copy not answered by `shadow.write_order_ms`.
    Raced(tokio::task::JoinHandle<Result<Answer, CallError>>),
}

impl Mirror {
    fn abort(self) {
        match self {
            Mirror::Running(h) | Mirror::Raced(h) => h.abort(),
            Mirror::Answered(_) => {}
        }
    }

    /// The copy's answer, or why it is not compared; a raced one is still
    /// awaited (its connection and slot are released normally).
    async fn outcome(self) -> Result<Answer, SkipReason> {
        let result = match self {
            Mirror::Running(h) => h.await,
            Mirror::Answered(r) => r,
            Mirror::Raced(h) => {
                let _ = h.await;
                return Err(SkipReason::Raced);
            }
        };
        match result {
            Ok(Ok(a)) => Ok(a),
            Ok(Err(CallError::Timeout)) => Err(SkipReason::Timeout),
            Ok(Err(CallError::TooLarge(..))) => Err(SkipReason::TooLarge),
            Ok(Err(_)) | Err(_) => Err(SkipReason::BackendError),
        }
    }
}

/// Settings that a configuration reload may change.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// This node's configured phase (cluster default or `[nodes.NAME]`).
    pub configured: Phase,
    /// Shadow bounds.
    pub shadow: ShadowConfig,
    /// Log every decision (fallbacks and trips are always logged).
    pub log_decisions: bool,
    /// Evidence body policy.
    pub store_bodies: StoreBodies,
    /// Rust answer deadline when Rust is primary.
    pub rust_timeout: Duration,
    /// Perl answer deadline for the reference/fallback call of a Rust-served read.
    pub perl_timeout: Duration,
    /// Configuration digest for evidence.
    pub digest: String,
}

impl EngineSettings {
    /// The engine-relevant part of a configuration.
    pub fn from_config(config: &Config) -> Self {
        Self {
            configured: config.configured_phase(),
            shadow: config.shadow.clone(),
            log_decisions: config.log_migration_decisions,
            store_bodies: config.evidence.store_bodies,
            rust_timeout: config
                .rust
                .as_ref()
                .map_or(Duration::from_secs(10), |r| r.timeout),
            perl_timeout: config.perl.timeout,
            digest: config.digest.clone(),
        }
    }
}

/// Type-only hits kept per evidence record.
const MAX_TYPE_ONLY_IN_RECORD: usize = 50;

/// Why the Rust side was bailed out (label values of `pve_network_fallback_total`).
mod reason {
    pub(super) const CONNECT: &str = "rust_connect";
    pub(super) const TIMEOUT: &str = "rust_timeout";
    pub(super) const SERVER_ERROR: &str = "rust_5xx";
    pub(super) const MALFORMED: &str = "rust_malformed_json";
    pub(super) const CRITICAL: &str = "critical_mismatch";
    pub(super) const CLOSED: &str = "rust_connection_closed";
}

/// The migration engine, shared by all connections.
#[derive(Debug)]
pub struct Engine {
    node: String,
    routing: ArcSwap<Routing>,
    settings: ArcSwap<EngineSettings>,
    trip: TripController,
    shadow_slots: Arc<Semaphore>,
    recorder: Recorder,
    metrics: Arc<Metrics>,
    sample_state: AtomicU64,
    recorded: tokio::sync::Notify,
    recent: Recent,
    compare_cache: CompareCache,
    pending: Arc<Pending>,
}

/// Comparisons still running after their request was answered (the shadow
/// of a Perl-served request finishes after the client has its answer).
/// Shutdown waits for them, so their evidence is written, not lost.
#[derive(Debug, Default)]
struct Pending {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// One pending comparison; dropped when it is recorded (or given up).
struct PendingGuard(Arc<Pending>);

impl PendingGuard {
    fn new(p: &Arc<Pending>) -> Self {
        p.count.fetch_add(1, Ordering::SeqCst);
        Self(p.clone())
    }
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A finished comparison, with its evidence renderings.
#[derive(Debug)]
struct Compared {
    cmp: Comparison,
    verdict: String,
    patch: Option<serde_json::Value>,
    type_only: Vec<serde_json::Value>,
}

/// Recent comparisons by their complete inputs: endpoint, format, statuses,
/// reasons and compared headers form the key; the bodies are compared byte
/// for byte (cheaper than hashing them). A hit also carries the bodies'
/// SHA-256, so an unchanged answer is hashed once, not per request.
/// Bounded in entries and bytes; cleared when full.
#[derive(Debug, Default)]
struct CompareCache {
    inner: std::sync::Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    map: std::collections::HashMap<String, Vec<Arc<CachedCompare>>>,
    entries: usize,
    bytes: usize,
}

/// One memoised comparison.
#[derive(Debug)]
struct CachedCompare {
    perl_body: Bytes,
    rust_body: Bytes,
    perl_sha: String,
    rust_sha: String,
    done: Arc<Compared>,
}

const COMPARE_CACHE_ENTRIES: usize = 512;
/// Entries kept per key (the most recent): bounds the byte comparisons of a lookup.
const COMPARE_CACHE_PER_KEY: usize = 8;
/// Body bytes the cache may hold (copies of the two answers per entry).
const COMPARE_CACHE_BYTES: usize = 64 << 20;

impl CompareCache {
    fn get(&self, key: &str, perl: &[u8], rust: &[u8]) -> Option<Arc<CachedCompare>> {
        // The bodies are compared outside the lock: they can be megabytes.
        let candidates = self
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map
            .get(key)?
            .clone();
        candidates
            .into_iter()
            .rev()
            .find(|c| c.perl_body == perl && c.rust_body == rust)
    }

    fn put(&self, key: String, value: Arc<CachedCompare>) {
        let size = value.perl_body.len() + value.rust_body.len();
        if size > COMPARE_CACHE_BYTES / 4 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.entries >= COMPARE_CACHE_ENTRIES || inner.bytes + size > COMPARE_CACHE_BYTES {
            *inner = CacheInner::default();
        }
        let list = inner.map.entry(key).or_default();
        let evicted = if list.len() >= COMPARE_CACHE_PER_KEY {
            let old = list.remove(0);
            Some(old.perl_body.len() + old.rust_body.len())
        } else {
            None
        };
        list.push(value);
        match evicted {
            Some(old) => inner.bytes -= old,
            None => inner.entries += 1,
        }
        inner.bytes += size;
    }

    fn clear(&self) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner()) = CacheInner::default();
    }
}

/// The rules and the backends; swapped as a whole by a configuration reload,
/// so one request always sees one consistent set.
#[derive(Debug)]
pub struct Routing {
    /// Routes and comparison rules.
    pub rules: Arc<RuleSet>,
    /// pveproxy.
    pub perl: Upstream,
    /// The Rust backend, when configured.
    pub rust: Option<Upstream>,
}

/// Fallbacks and real differences of the last 15 minutes (for `health`).
#[derive(Debug, Default)]
struct Recent {
    fallbacks: std::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>,
    mismatches: std::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>,
}

const RECENT: Duration = Duration::from_secs(15 * 60);

impl Recent {
    fn push(q: &std::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>) {
        let now = tokio::time::Instant::now();
        let mut q = q.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(now);
        while q.front().is_some_and(|t| now.duration_since(*t) > RECENT) {
            q.pop_front();
        }
    }

    fn count(q: &std::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>) -> usize {
        let now = tokio::time::Instant::now();
        let q = q.lock().unwrap_or_else(|p| p.into_inner());
        q.iter()
            .filter(|t| now.duration_since(**t) <= RECENT)
            .count()
    }
}

/// A complete backend answer (body collected).
#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    reason: Option<ReasonPhrase>,
    headers: http::HeaderMap,
    body: Bytes,
    latency: Duration,
}

impl Answer {
    fn reason_str(&self) -> String {
        self.reason
            .as_ref()
            .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
            .unwrap_or_else(|| self.status.canonical_reason().unwrap_or("").to_owned())
    }

    fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(body::full(self.body));
        *resp.status_mut() = self.status;
        *resp.headers_mut() = self.headers;
        if let Some(r) = self.reason {
            resp.extensions_mut().insert(r);
        }
        resp
    }

    fn is_json(&self) -> bool {
        self.headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"))
    }

    /// Why this answer is not acceptable from a primary Rust backend.
    fn failure(&self) -> Option<&'static str> {
        if self.status.is_server_error() {
            Some(reason::SERVER_ERROR)
        } else if self.is_json()
            && serde_json::from_slice::<serde::de::IgnoredAny>(&self.body).is_err()
        {
            Some(reason::MALFORMED)
        } else {
            None
        }
    }

    fn side(&self, dry_run: bool, body_sha256: String) -> SideRecord {
        SideRecord {
            status: self.status.as_u16(),
            reason: self.reason_str(),
            latency_ms: self.latency.as_secs_f64() * 1000.0,
            body_sha256,
            dry_run,
        }
    }
}

/// A backend call that did not produce a complete answer.
#[derive(Debug)]
enum CallError {
    Upstream(UpstreamError),
    Timeout,
    /// The body is larger than the comparison limit; what was read and the rest.
    TooLarge(http::response::Parts, Bytes, Incoming),
    Body(String),
}

/// The per-request facts every stage needs.
#[derive(Debug, Clone)]
struct Ctx {
    routing: Arc<Routing>,
    /// The request's server span.
    span: tracing::Span,
    /// Fallback for backend `traceparent`s when spans are not exported.
    trace: TraceContext,
    /// The trace id written to logs and evidence.
    trace_id: String,
    endpoint: Arc<str>,
    class: EndpointClass,
    format: ApiFormat,
    phase: Phase,
    configured: Phase,
    method: String,
    path: String,
    path_redacted: String,
    request_content_type: Option<String>,
}

/// Reads a body up to `cap` bytes; beyond it, returns what was read and the rest.
async fn collect_capped(
    mut body: Incoming,
    cap: usize,
) -> Result<Bytes, (Bytes, Option<Incoming>, String)> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    buf.extend_from_slice(d);
                    if buf.len() > cap {
                        return Err((buf.freeze(), Some(body), String::new()));
                    }
                }
            }
            Err(e) => return Err((buf.freeze(), None, e.to_string())),
        }
    }
    Ok(buf.freeze())
}

/// A body made of an already-read prefix followed by the rest of the stream.
fn prefixed(prefix: Bytes, rest: Incoming) -> Body {
    let head = futures_util::stream::once(async move {
        Ok::<_, crate::body::BoxError>(hyper::body::Frame::data(prefix))
    });
    let tail =
        http_body_util::BodyStream::new(rest.map_err(|e| Box::new(e) as crate::body::BoxError));
    let stream = futures_util::StreamExt::chain(head, tail);
    http_body_util::StreamBody::new(stream).boxed_unsync()
}

impl Engine {
    /// Builds the engine.
    ///
    /// # Errors
    /// When the trip state cannot be read.
    pub fn new(
        config: &Config,
        rules: Arc<RuleSet>,
        perl: Upstream,
        rust: Option<Upstream>,
        recorder: Recorder,
        metrics: Arc<Metrics>,
    ) -> Result<Self, trip::TripError> {
        let trip = TripController::load(&config.state_dir, config.trip.clone())?;
        let settings = EngineSettings::from_config(config);
        let lifted = trip.lift_if_superseded(settings.configured)?;
        if let Some(r) = lifted {
            tracing::info!(configured = %settings.configured, was = %r.configured_phase, "trip lifted: the node's phase was changed");
        }
        let engine = Self {
            node: config.node.clone(),
            routing: ArcSwap::from_pointee(Routing { rules, perl, rust }),
            shadow_slots: Arc::new(Semaphore::new(config.shadow.max_in_flight)),
            settings: ArcSwap::from_pointee(settings),
            trip,
            recorder,
            metrics,
            sample_state: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
            recorded: tokio::sync::Notify::new(),
            recent: Recent::default(),
            compare_cache: CompareCache::default(),
            pending: Arc::default(),
        };
        engine.publish_phase();
        Ok(engine)
    }

    /// The trip controller (for `migration-ctl trip status/reset`).
    pub fn trip(&self) -> &TripController {
        &self.trip
    }

    /// The recorder (flush before reading evidence in tests and tools).
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Waits until no comparison is pending (at most `limit`), then until
    /// everything recorded is written and fsync'd: what shutdown does so
    /// that no evidence of an answered request is lost. False when
    /// comparisons were still running at the limit.
    pub async fn settle(&self, limit: Duration) -> bool {
        let settled = tokio::time::timeout(limit, async {
            loop {
                let idle = self.pending.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.pending.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await
        .is_ok();
        self.recorder.flush().await;
        settled
    }

    /// Notified whenever an evidence record or decision line has been queued
    /// (lets tests and tools wait for background comparisons without polling).
    pub fn recorded(&self) -> &tokio::sync::Notify {
        &self.recorded
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Fallbacks and mismatches (including critical) of the last 15 minutes.
    pub fn recent_counts(&self) -> (usize, usize) {
        (
            Recent::count(&self.recent.fallbacks),
            Recent::count(&self.recent.mismatches),
        )
    }

    /// The rules and backends in force.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing.load_full()
    }

    /// Swaps rules and backends (configuration reload); requests in flight
    /// finish with the set they started with.
    pub fn set_routing(&self, routing: Routing) {
        self.routing.store(Arc::new(routing));
        // New rules: earlier verdicts no longer hold.
        self.compare_cache.clear();
    }

    /// This gateway's node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The configured and the effective phase of this node.
    pub fn phases(&self) -> (Phase, Phase) {
        let configured = self.settings.load().configured;
        (configured, self.trip.effective(configured))
    }

    /// Re-arms a tripped node (what `migration-ctl trip reset` calls).
    ///
    /// # Errors
    /// When the trip state file cannot be removed.
    pub fn reset_trip(&self) -> Result<Option<TripRecord>, trip::TripError> {
        let lifted = self.trip.reset()?;
        if let Some(r) = &lifted {
            let mut line = Line::now();
            line.field("event", "trip_reset")
                .field("node", &self.node)
                .field("phase", &self.settings.load().configured.to_string())
                .field("was", &r.effective_phase);
            self.recorder.log_always(line.finish());
            tracing::info!(node = %self.node, "trip reset, the configured phase applies again");
        }
        self.publish_phase();
        Ok(lifted)
    }

    /// Applies reloadable settings.
    pub fn apply_settings(&self, config: &Config) {
        let settings = EngineSettings::from_config(config);
        self.trip.set_config(config.trip.clone());
        match self.trip.lift_if_superseded(settings.configured) {
            Ok(Some(_)) => {
                tracing::info!(configured = %settings.configured, "trip lifted: the node's phase was changed")
            }
            Ok(None) => {}
            Err(e) => tracing::error!(error = %e, "cannot clear the trip state"),
        }
        self.settings.store(Arc::new(settings));
        self.publish_phase();
    }

    fn publish_phase(&self) {
        let (_, effective) = self.phases();
        let tripped = matches!(self.trip.state(), TripState::Tripped(_));
        self.metrics.set_phase(effective, tripped);
    }

    /// Handles one request: migrated routes per plan, everything else pass-through.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        client: &ClientInfo,
    ) -> Response<Body> {
        let routing = self.routing.load_full();
        let span = server_span(&req, &self.node);
        let Some((endpoint, format)) = migrated_route(&routing.rules, &self.node, &req) else {
            let resp = proxy::forward(&routing.perl, req, client)
                .instrument(span.clone())
                .await;
            span.record("http.response.status_code", resp.status().as_u16());
            self.count_request("passthrough", "perl", resp.status());
            return resp;
        };
        span.record("otel.name", endpoint.id());
        span.record("migration.endpoint", endpoint.id());
        let settings = self.settings.load_full();
        let configured = settings.configured;
        let phase = self.trip.effective(configured);
        let class = endpoint.class();
        let plan = match routing.rust {
            Some(_) => Plan::for_request(phase, class),
            None => Plan::Perl,
        };
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        span.record("migration.phase", phase.as_str());
        let trace = TraceContext::from_header(req.headers().get("traceparent"));
        let ctx = Ctx {
            routing: routing.clone(),
            trace_id: trace_id_of(&span, &trace),
            span,
            trace,
            endpoint: endpoint.id().into(),
            class,
            format,
            phase,
            configured,
            method: req.method().as_str().to_owned(),
            path_redacted: crate::redact::path(&path),
            path,
            request_content_type: req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        };
        if plan == Plan::Perl {
            let started = Instant::now();
            let perl_span = client_span(&ctx, "perl");
            let resp = proxy::forward(&routing.perl, req, client)
                .instrument(perl_span)
                .await;
            self.observe_apply(&ctx, "perl", started);
            self.decision(&ctx, &settings, "perl", resp.status(), false, None, None);
            return resp;
        }

        let (parts, incoming) = req.into_parts();
        let body = match collect_capped(incoming, settings.shadow.max_body_bytes).await {
            Ok(b) => b,
            Err((prefix, Some(rest), _)) => {
                // Too large to compare: the phase's primary serves it alone.
                self.skipped(&ctx, &settings, SkipReason::TooLarge);
                let upstream = match plan {
                    Plan::RustRead | Plan::RustWrite => {
                        routing.rust.as_ref().unwrap_or(&routing.perl)
                    }
                    _ => &routing.perl,
                };
                let r = upstream_request(
                    upstream,
                    &parts,
                    client,
                    traceparent(&ctx.span, &ctx.trace),
                    false,
                    prefixed(prefix, rest),
                );
                let resp = match upstream.send(r).await {
                    Ok(resp) => proxy::relay_response(resp),
                    Err(e) => proxy::upstream_failure(&e),
                };
                self.decision(
                    &ctx,
                    &settings,
                    upstream.backend().as_str(),
                    resp.status(),
                    false,
                    None,
                    Some("skipped(too_large)"),
                );
                return resp;
            }
            Err((_, None, e)) => {
                return GatewayError::bad_request(format!("reading the request body failed: {e}"))
                    .into_response();
            }
        };
        let rust = routing
            .rust
            .as_ref()
            .expect("plans other than Perl need the Rust backend");
        match plan {
            Plan::PerlWithShadow { dry_run } => {
                self.perl_with_shadow(ctx, settings, parts, body, client, rust, dry_run)
                    .await
            }
            Plan::RustRead => {
                self.rust_read(ctx, settings, parts, body, client, rust)
                    .await
            }
            Plan::RustWrite => {
                self.rust_write(ctx, settings, parts, body, client, rust)
                    .await
            }
            Plan::Perl => unreachable!("handled above"),
        }
    }

    fn admit_shadow(&self, shadow: &ShadowConfig) -> Result<OwnedSemaphorePermit, SkipReason> {
        if shadow.sample < 1.0 {
            // xorshift: cheap, lock-free, good enough to pick a fraction.
            let mut x = self.sample_state.load(Ordering::Relaxed);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.sample_state.store(x, Ordering::Relaxed);
            if (x >> 11) as f64 / (1u64 << 53) as f64 >= shadow.sample {
                return Err(SkipReason::SampledOut);
            }
        }
        self.shadow_slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| SkipReason::Overloaded)
    }

    #[allow(clippy::too_many_arguments)]
    async fn perl_with_shadow(
        self: &Arc<Self>,
        ctx: Ctx,
        settings: Arc<EngineSettings>,
        parts: http::request::Parts,
        body: Bytes,
        client: &ClientInfo,
        rust: &Upstream,
        dry_run: bool,
    ) -> Response<Body> {
        // Write ordering (docs/design.md, invariant 6): both backends read
        // the same files, so a write's dry-run copy goes first and Perl's
        // write only when Rust has answered it, or after
        // `shadow.write_order_ms`; past the deadline the comparison is
        // `skipped(raced)`, as its two answers saw different states. Reads
        // are never held back.
        let mirror = match self.admit_shadow(&settings.shadow) {
            Ok(permit) => {
                // Its own span in the request's trace, linked to the request:
                // it outlives the response and must not stretch its span.
                let span = tracing::debug_span!(
                    parent: None,
                    "shadow",
                    "otel.kind" = "client",
                    "peer.service" = "rust",
                    "migration.dry_run" = dry_run,
                    "migration.endpoint" = &*ctx.endpoint,
                );
                let request = ctx.span.context().span().span_context().clone();
                if request.is_valid() {
                    let _ = span.set_parent(
                        opentelemetry::Context::new().with_remote_span_context(request.clone()),
                    );
                    span.add_link(request);
                }
                let req = upstream_request(
                    rust,
                    &parts,
                    client,
                    traceparent(&span, &ctx.trace),
                    dry_run,
                    body::full(body.clone()),
                );
                let rust = rust.clone();
                let (timeout, cap) = (settings.shadow.timeout, settings.shadow.max_body_bytes);
                let handle = tokio::spawn(
                    async move {
                        let r = call(&rust, req, timeout, cap).await;
                        drop(permit);
                        r
                    }
                    .instrument(span),
                );
                Some(if dry_run {
                    let mut handle = handle;
                    match tokio::time::timeout(settings.shadow.write_order, &mut handle).await {
                        Ok(done) => Mirror::Answered(done),
                        Err(_) => Mirror::Raced(handle),
                    }
                } else {
                    Mirror::Running(handle)
                })
            }
            Err(reason) => {
                self.skipped(&ctx, &settings, reason);
                None
            }
        };
        let started = Instant::now();
        let perl_span = client_span(&ctx, "perl");
        let req = upstream_request(
            &ctx.routing.perl,
            &parts,
            client,
            traceparent(&perl_span, &ctx.trace),
            false,
            body::full(body.clone()),
        );
        let resp = match ctx.routing.perl.send(req).instrument(perl_span).await {
            Ok(r) => r,
            Err(e) => {
                if let Some(m) = mirror {
                    m.abort();
                }
                let resp = proxy::upstream_failure(&e);
                self.decision(&ctx, &settings, "perl", resp.status(), false, None, None);
                return resp;
            }
        };
        self.observe_backend("perl", started.elapsed());
        self.observe_apply(&ctx, "perl", started);
        let Some(mirror) = mirror else {
            let resp = proxy::relay_response(resp);
            self.decision(&ctx, &settings, "perl", resp.status(), false, None, None);
            return resp;
        };
        let (mut head, incoming) = resp.into_parts();
        proxy::strip_hop_by_hop(&mut head.headers);
        let (tee, copy) = tee::tee(incoming, settings.shadow.max_body_bytes);
        let status = head.status;
        let perl_meta = (
            head.status,
            head.extensions.get::<ReasonPhrase>().cloned(),
            head.headers.clone(),
        );
        let engine = self.clone();
        let request_body = body;
        let pending = PendingGuard::new(&self.pending);
        tokio::spawn(async move {
            let _pending = pending;
            let perl = match copy.await {
                Ok(tee::Copy::Complete(b)) => Ok(Answer {
                    status: perl_meta.0,
                    reason: perl_meta.1,
                    headers: perl_meta.2,
                    body: b,
                    latency: started.elapsed(),
                }),
                Ok(tee::Copy::TooLarge) => Err(SkipReason::TooLarge),
                Ok(tee::Copy::Aborted) | Err(_) => Err(SkipReason::BackendError),
            };
            let rust = mirror.outcome().await;
            let verdict = match (perl, rust) {
                (Ok(p), Ok(r)) => {
                    let cmp = engine.compare_and_record(
                        &ctx,
                        &settings,
                        "exchange",
                        &p,
                        &r,
                        dry_run,
                        "perl",
                        false,
                        None,
                        &request_body,
                    );
                    verdict_name(cmp)
                }
                (Err(reason), _) | (_, Err(reason)) => {
                    engine.skipped(&ctx, &settings, reason);
                    verdict_name(Verdict::Skipped(reason))
                }
            };
            engine.decision(&ctx, &settings, "perl", status, false, None, Some(&verdict));
        });
        Response::from_parts(head, tee.boxed_unsync())
    }

    async fn rust_read(
        self: &Arc<Self>,
        ctx: Ctx,
        settings: Arc<EngineSettings>,
        parts: http::request::Parts,
        body: Bytes,
        client: &ClientInfo,
        rust: &Upstream,
    ) -> Response<Body> {
        let cap = settings.shadow.max_body_bytes;
        let perl_span = client_span(&ctx, "perl");
        let perl_req = upstream_request(
            &ctx.routing.perl,
            &parts,
            client,
            traceparent(&perl_span, &ctx.trace),
            false,
            body::full(body.clone()),
        );
        let perl_upstream = ctx.routing.perl.clone();
        let perl_timeout = settings.perl_timeout;
        let mut perl_task = tokio::spawn(
            async move { call(&perl_upstream, perl_req, perl_timeout, cap).await }
                .instrument(perl_span),
        );
        let rust_span = client_span(&ctx, "rust");
        let rust_req = upstream_request(
            rust,
            &parts,
            client,
            traceparent(&rust_span, &ctx.trace),
            false,
            body::full(body.clone()),
        );
        let rust_result = call(rust, rust_req, settings.rust_timeout, cap)
            .instrument(rust_span)
            .await;

        let failure = match &rust_result {
            Ok(a) => a.failure(),
            Err(CallError::Timeout) => Some(reason::TIMEOUT),
            Err(CallError::Upstream(e)) if e.kind.never_sent() => Some(reason::CONNECT),
            Err(CallError::Upstream(_) | CallError::Body(_)) => Some(reason::CLOSED),
            Err(CallError::TooLarge(..)) => None,
        };
        let rust_answer = match rust_result {
            Err(CallError::TooLarge(head, prefix, rest)) => {
                // Too large to check or compare: Rust's answer streams as it is.
                perl_task.abort();
                self.skipped(&ctx, &settings, SkipReason::TooLarge);
                self.rust_outcome(&ctx, RustOutcome::Ok, "");
                let resp = Response::from_parts(head, prefixed(prefix, rest));
                self.decision(
                    &ctx,
                    &settings,
                    "rust",
                    resp.status(),
                    false,
                    None,
                    Some("skipped(too_large)"),
                );
                return resp;
            }
            Ok(a) => Some(a),
            Err(_) => None,
        };

        if let Some(why) = failure {
            // Fallback: Perl's answer to the same read, already in flight.
            let perl = (&mut perl_task).await;
            let resp = match perl {
                Ok(Ok(p)) => {
                    if let Some(r) = &rust_answer {
                        self.compare_and_record(
                            &ctx,
                            &settings,
                            "exchange",
                            &p,
                            r,
                            false,
                            "perl",
                            true,
                            Some(why),
                            &body,
                        );
                    } else {
                        self.skipped(&ctx, &settings, SkipReason::BackendError);
                    }
                    p.into_response()
                }
                Ok(Err(CallError::Upstream(e))) => proxy::upstream_failure(&e),
                Ok(Err(_)) | Err(_) => GatewayError::upstream(&UpstreamError {
                    backend: crate::upstream::Backend::Perl,
                    addr: ctx.routing.perl.addr().to_owned(),
                    kind: crate::upstream::UpstreamErrorKind::Timeout,
                })
                .into_response(),
            };
            self.fallback(&ctx, why);
            self.decision(
                &ctx,
                &settings,
                "perl",
                resp.status(),
                true,
                Some(why),
                None,
            );
            self.rust_outcome(&ctx, RustOutcome::Failed, why);
            return resp;
        }
        let rust_answer = rust_answer.expect("no failure means an answer");

        // Compare with Perl before answering: a critical difference is answered by Perl.
        let perl = tokio::time::timeout(settings.shadow.timeout, &mut perl_task).await;
        match perl {
            Ok(Ok(Ok(p))) => {
                let cmp = self.compare_and_record(
                    &ctx,
                    &settings,
                    "exchange",
                    &p,
                    &rust_answer,
                    false,
                    "rust",
                    false,
                    None,
                    &body,
                );
                if cmp == Verdict::Critical {
                    self.fallback(&ctx, reason::CRITICAL);
                    let resp = p.into_response();
                    self.decision(
                        &ctx,
                        &settings,
                        "perl",
                        resp.status(),
                        true,
                        Some(reason::CRITICAL),
                        Some("critical"),
                    );
                    return resp;
                }
                self.rust_outcome(&ctx, RustOutcome::Ok, "");
                let resp = rust_answer.into_response();
                self.decision(
                    &ctx,
                    &settings,
                    "rust",
                    resp.status(),
                    false,
                    None,
                    Some(&verdict_name(cmp)),
                );
                resp
            }
            other => {
                let reason = if other.is_err() {
                    SkipReason::Timeout
                } else {
                    SkipReason::BackendError
                };
                perl_task.abort();
                self.skipped(&ctx, &settings, reason);
                self.rust_outcome(&ctx, RustOutcome::Ok, "");
                let resp = rust_answer.into_response();
                self.decision(
                    &ctx,
                    &settings,
                    "rust",
                    resp.status(),
                    false,
                    None,
                    Some(&verdict_name(Verdict::Skipped(reason))),
                );
                resp
            }
        }
    }

    async fn rust_write(
        self: &Arc<Self>,
        ctx: Ctx,
        settings: Arc<EngineSettings>,
        parts: http::request::Parts,
        body: Bytes,
        client: &ClientInfo,
        rust: &Upstream,
    ) -> Response<Body> {
        let started = Instant::now();
        let rust_span = client_span(&ctx, "rust");
        let req = upstream_request(
            rust,
            &parts,
            client,
            traceparent(&rust_span, &ctx.trace),
            false,
            body::full(body.clone()),
        );
        let result = call(
            rust,
            req,
            settings.rust_timeout,
            settings.shadow.max_body_bytes,
        )
        .instrument(rust_span)
        .await;
        self.observe_apply(&ctx, "rust", started);
        let may_be_applied = "the write may have been applied; it was not re-sent";
        let (resp, outcome) = match result {
            Ok(a) => match a.failure() {
                None => {
                    if a.status.is_success() {
                        // Before answering: the client's next request (an apply,
                        // typically) must not race the check.
                        self.read_after_write(&ctx, &settings, &parts, client).await;
                    }
                    (a.into_response(), None)
                }
                Some(reason::MALFORMED) => {
                    let e = GatewayError {
                        origin: crate::error::ErrorSource::UpstreamRust,
                        status: StatusCode::BAD_GATEWAY,
                        message: format!(
                            "rust backend {}: malformed JSON answer ({may_be_applied})",
                            rust.addr()
                        ),
                    };
                    (e.into_response(), Some(reason::MALFORMED))
                }
                Some(why) => (a.into_response(), Some(why)),
            },
            Err(CallError::Upstream(e)) if e.kind.never_sent() => {
                // Rust never saw a byte of it: Perl may safely carry the write out.
                let perl_span = client_span(&ctx, "perl");
                let req = upstream_request(
                    &ctx.routing.perl,
                    &parts,
                    client,
                    traceparent(&perl_span, &ctx.trace),
                    false,
                    body::full(body.clone()),
                );
                let resp = match ctx.routing.perl.send(req).instrument(perl_span).await {
                    Ok(r) => proxy::relay_response(r),
                    Err(e) => proxy::upstream_failure(&e),
                };
                self.fallback(&ctx, reason::CONNECT);
                self.decision(
                    &ctx,
                    &settings,
                    "perl",
                    resp.status(),
                    true,
                    Some(reason::CONNECT),
                    None,
                );
                self.rust_outcome(&ctx, RustOutcome::Failed, reason::CONNECT);
                return resp;
            }
            Err(CallError::Upstream(e)) => {
                let mut g = GatewayError::upstream(&e);
                g.message = format!("{e} ({may_be_applied})");
                (g.into_response(), Some(reason::CLOSED))
            }
            Err(CallError::Body(e)) => {
                let g = GatewayError {
                    origin: crate::error::ErrorSource::UpstreamRust,
                    status: StatusCode::BAD_GATEWAY,
                    message: format!(
                        "rust backend {}: answer broke off: {e} ({may_be_applied})",
                        rust.addr()
                    ),
                };
                (g.into_response(), Some(reason::CLOSED))
            }
            Err(CallError::Timeout) => {
                let g = GatewayError {
                    origin: crate::error::ErrorSource::UpstreamRust,
                    status: StatusCode::BAD_GATEWAY,
                    message: format!(
                        "rust backend {}: no answer within {} ms ({may_be_applied})",
                        rust.addr(),
                        settings.rust_timeout.as_millis()
                    ),
                };
                (g.into_response(), Some(reason::TIMEOUT))
            }
            Err(CallError::TooLarge(head, prefix, rest)) => {
                (Response::from_parts(head, prefixed(prefix, rest)), None)
            }
        };
        match outcome {
            None => self.rust_outcome(&ctx, RustOutcome::Ok, ""),
            Some(why) => {
                self.metrics
                    .rust_failures
                    .get_or_create(&ReasonLabels { reason: why.into() })
                    .inc();
                self.rust_outcome(&ctx, RustOutcome::Failed, why);
            }
        }
        self.decision(&ctx, &settings, "rust", resp.status(), false, outcome, None);
        resp
    }

    /// After a successful Rust write: read the affected collection from both
    /// backends (they share the node's files) and record the comparison.
    /// Bounded by `shadow.timeout_ms`; a failed check is counted, never fails the write.
    async fn read_after_write(
        &self,
        ctx: &Ctx,
        settings: &Arc<EngineSettings>,
        parts: &http::request::Parts,
        client: &ClientInfo,
    ) {
        let Some(rust) = ctx.routing.rust.clone() else {
            return;
        };
        let path = parts.uri.path();
        let endpoint = ctx.routing.rules.endpoint(&ctx.endpoint);
        let collection = match endpoint.map(|e| e.path().ends_with('}')) {
            Some(true) => path.rsplit_once('/').map_or(path, |(c, _)| c),
            _ => path,
        };
        let Some(m) = ctx.routing.rules.route("GET", collection) else {
            return;
        };
        let (Some(get), format) = (ctx.routing.rules.endpoint(m.endpoint().id()), m.format())
        else {
            return;
        };
        let Ok(uri) = collection.parse::<http::Uri>() else {
            return;
        };
        let mut head = Request::get(uri)
            .body(())
            .expect("a GET with a valid URI")
            .into_parts()
            .0;
        for name in [header::HOST, header::COOKIE, header::AUTHORIZATION] {
            if let Some(v) = parts.headers.get(&name) {
                head.headers.insert(name, v.clone());
            }
        }
        let mut check = ctx.clone();
        check.endpoint = get.id().into();
        check.class = get.class();
        check.format = format;
        check.method = "GET".into();
        check.path = collection.to_owned();
        check.path_redacted = crate::redact::path(collection);
        let (perl_span, rust_span) = (client_span(ctx, "perl"), client_span(ctx, "rust"));
        let (perl_req, rust_req) = (
            upstream_request(
                &ctx.routing.perl,
                &head,
                client,
                traceparent(&perl_span, &ctx.trace),
                false,
                body::empty(),
            ),
            upstream_request(
                &rust,
                &head,
                client,
                traceparent(&rust_span, &ctx.trace),
                false,
                body::empty(),
            ),
        );
        let (t, cap) = (settings.shadow.timeout, settings.shadow.max_body_bytes);
        let (p, r) = tokio::join!(
            call(&ctx.routing.perl, perl_req, t, cap).instrument(perl_span),
            call(&rust, rust_req, t, cap).instrument(rust_span)
        );
        match (p, r) {
            (Ok(p), Ok(r)) => {
                self.compare_and_record(
                    &check,
                    settings,
                    "read_after_write",
                    &p,
                    &r,
                    false,
                    "none",
                    false,
                    None,
                    &Bytes::new(),
                );
            }
            (Err(CallError::Timeout), _) | (_, Err(CallError::Timeout)) => {
                self.skipped(&check, settings, SkipReason::Timeout)
            }
            _ => self.skipped(&check, settings, SkipReason::BackendError),
        }
    }

    /// Compares two answers, records the evidence and trips on a critical verdict.
    #[allow(clippy::too_many_arguments)]
    fn compare_and_record(
        &self,
        ctx: &Ctx,
        settings: &EngineSettings,
        kind: &str,
        perl: &Answer,
        rust: &Answer,
        rust_dry_run: bool,
        served_by: &str,
        used_fallback: bool,
        fallback_reason: Option<&str>,
        request_body: &Bytes,
    ) -> Verdict {
        let Some(endpoint) = ctx.routing.rules.endpoint(&ctx.endpoint) else {
            return Verdict::Skipped(SkipReason::BackendError);
        };
        let (pr, rr) = (perl.reason_str(), rust.reason_str());
        // The comparison is a pure function of these inputs and the bodies: a
        // node's configuration changes rarely, so most answers were seen before.
        let key = {
            let mut k = format!(
                "{}\0{}\0{}\0{pr}\0{}\0{rr}",
                ctx.endpoint,
                ctx.format.as_str(),
                perl.status,
                rust.status
            );
            for name in endpoint.headers() {
                for a in [perl, rust] {
                    k.push('\0');
                    k.push_str(
                        a.headers
                            .get(name.as_str())
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or(""),
                    );
                }
            }
            k
        };
        let compare_span = tracing::debug_span!(
            parent: &ctx.span,
            "compare",
            "contract.endpoint" = &*ctx.endpoint,
            "contract.kind" = kind,
            "contract.verdict" = tracing::field::Empty,
            "contract.fingerprint" = tracing::field::Empty,
            "contract.cached" = tracing::field::Empty,
        );
        let cached = self.compare_cache.get(&key, &perl.body, &rust.body);
        compare_span.record("contract.cached", cached.is_some());
        let entry = match cached {
            Some(c) => c,
            None => {
                let headers = |a: &Answer| -> Vec<(String, String)> {
                    a.headers
                        .iter()
                        .filter_map(|(k, v)| {
                            Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))
                        })
                        .collect()
                };
                let (ph, rh) = (headers(perl), headers(rust));
                let ph: Vec<(&str, &str)> =
                    ph.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let rh: Vec<(&str, &str)> =
                    rh.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let pe = Exchange::new(perl.status.as_u16(), &perl.body)
                    .with_reason(&pr)
                    .with_headers(&ph);
                let re = Exchange::new(rust.status.as_u16(), &rust.body)
                    .with_reason(&rr)
                    .with_headers(&rh);
                let cmp = compare_span.in_scope(|| endpoint.compare(ctx.format, &pe, &re, None));
                let mut patch = serde_json::to_value(&cmp.patch).ok();
                if let Some(p) = &mut patch {
                    crate::redact::json(p);
                }
                // A large list can have thousands of type-only hits; the record
                // keeps the first ones (the fingerprint identifies the whole set).
                let type_only = cmp
                    .type_only
                    .iter()
                    .take(MAX_TYPE_ONLY_IN_RECORD)
                    .filter_map(|h| serde_json::to_value(h).ok())
                    .map(|mut v| {
                        crate::redact::json(&mut v);
                        v
                    })
                    .collect();
                let done = Arc::new(Compared {
                    verdict: verdict_name(cmp.verdict),
                    cmp,
                    patch,
                    type_only,
                });
                let entry = Arc::new(CachedCompare {
                    perl_body: Bytes::copy_from_slice(&perl.body),
                    rust_body: Bytes::copy_from_slice(&rust.body),
                    perl_sha: sha256_hex(&perl.body),
                    rust_sha: sha256_hex(&rust.body),
                    done,
                });
                self.compare_cache.put(key, entry.clone());
                entry
            }
        };
        let done = &entry.done;
        let cmp = &done.cmp;
        let verdict = done.verdict.clone();
        compare_span.record("contract.verdict", verdict.as_str());
        compare_span.record("contract.fingerprint", cmp.fingerprint.as_str());
        self.metrics
            .contract
            .get_or_create(&ContractLabels {
                endpoint: ctx.endpoint.to_string(),
                verdict: verdict.clone(),
            })
            .inc();
        let mismatch = matches!(cmp.verdict, Verdict::Mismatch | Verdict::Critical);
        if mismatch {
            Recent::push(&self.recent.mismatches);
        }
        let bodies =
            (mismatch && settings.store_bodies == StoreBodies::OnMismatch).then(|| StoredBodies {
                request: crate::redact::body(request_body, ctx.request_content_type.as_deref()),
                perl: crate::redact::body(&perl.body, Some("application/json")),
                rust: crate::redact::body(&rust.body, Some("application/json")),
            });
        let patch = done.patch.clone();
        let type_only = done.type_only.clone();
        self.recorder.evidence(EvidenceRecord {
            time: crate::evidence::now_rfc3339(),
            trace_id: ctx.trace_id.clone(),
            node: self.node.clone(),
            phase: ctx.phase.to_string(),
            kind: kind.to_owned(),
            endpoint: ctx.endpoint.to_string(),
            method: ctx.method.clone(),
            path: ctx.path_redacted.clone(),
            served_by: served_by.to_owned(),
            used_fallback,
            fallback_reason: fallback_reason.map(str::to_owned),
            perl: Some(perl.side(false, entry.perl_sha.clone())),
            rust: Some(rust.side(rust_dry_run, entry.rust_sha.clone())),
            verdict,
            critical: cmp.critical.map(|c| c.as_str().to_owned()),
            patch,
            type_only,
            fingerprint: cmp.fingerprint.clone(),
            exemplar: false,
            config_digest: settings.digest.clone(),
            bodies,
        });
        self.recorded.notify_waiters();
        if cmp.verdict == Verdict::Critical {
            let why = format!(
                "critical difference on {} ({}): perl {} vs rust {}",
                ctx.endpoint,
                cmp.critical.map_or("critical", |c| c.as_str()),
                perl.status.as_u16(),
                rust.status.as_u16()
            );
            self.trip_now(ctx, &why);
        }
        cmp.verdict
    }

    fn trip_now(&self, ctx: &Ctx, why: &str) {
        match self.trip.trip(ctx.configured, why, &ctx.trace_id) {
            Ok(Some(r)) => self.tripped(&r),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "the node is tripped, but the trip could not be persisted");
                if let TripState::Tripped(r) = self.trip.state() {
                    self.tripped(&r);
                }
            }
        }
    }

    fn rust_outcome(&self, ctx: &Ctx, outcome: RustOutcome, why: &str) {
        match self
            .trip
            .observe(outcome, ctx.configured, why, &ctx.trace_id)
        {
            Ok(Some(r)) => self.tripped(&r),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "the node is tripped, but the trip could not be persisted");
                if let TripState::Tripped(r) = self.trip.state() {
                    self.tripped(&r);
                }
            }
        }
    }

    /// Event: the node tripped. Log line, metric and tracing event together.
    fn tripped(&self, r: &TripRecord) {
        let mut line = Line::now();
        line.field("event", "trip")
            .field("node", &self.node)
            .field("from", &r.configured_phase)
            .field("to", &r.effective_phase)
            .field("reason", &r.reason)
            .field("trace_id", &r.trace_id);
        self.recorder.log_always(line.finish());
        self.publish_phase();
        tracing::warn!(node = %self.node, from = %r.configured_phase, to = %r.effective_phase, reason = %r.reason, trace_id = %r.trace_id, "node tripped back to Perl");
    }

    /// Event: a fallback (metric; the decision line carries `used_fallback=true`).
    fn fallback(&self, ctx: &Ctx, why: &str) {
        Recent::push(&self.recent.fallbacks);
        self.metrics
            .fallback
            .get_or_create(&ReasonLabels { reason: why.into() })
            .inc();
        self.metrics
            .rust_failures
            .get_or_create(&ReasonLabels { reason: why.into() })
            .inc();
        tracing::warn!(endpoint = %ctx.endpoint, reason = why, trace_id = %ctx.trace_id, "fallback to Perl");
    }

    /// Event: a migrated request was not compared.
    fn skipped(&self, ctx: &Ctx, _settings: &EngineSettings, reason: SkipReason) {
        self.metrics
            .shadow_skipped
            .get_or_create(&ReasonLabels {
                reason: reason.as_str().into(),
            })
            .inc();
        self.metrics
            .contract
            .get_or_create(&ContractLabels {
                endpoint: ctx.endpoint.to_string(),
                verdict: verdict_name(Verdict::Skipped(reason)),
            })
            .inc();
    }

    /// Event: the decision for one migrated request (`migration.log` + metric).
    #[allow(clippy::too_many_arguments)]
    fn decision(
        &self,
        ctx: &Ctx,
        settings: &EngineSettings,
        served_by: &'static str,
        status: StatusCode,
        used_fallback: bool,
        why: Option<&str>,
        verdict: Option<&str>,
    ) {
        self.count_request(ctx.class.as_str(), served_by, status);
        ctx.span.record("migration.served_by", served_by);
        ctx.span.record("migration.used_fallback", used_fallback);
        ctx.span
            .record("http.response.status_code", status.as_u16());
        if let Some(why) = why {
            ctx.span.record("migration.reason", why);
        }
        if let Some(v) = verdict {
            ctx.span.record("contract.verdict", v);
        }
        if !(settings.log_decisions || used_fallback || why.is_some()) {
            return;
        }
        let mut line = Line::now();
        line.field("node", &self.node)
            .field("phase", ctx.phase.as_str())
            .field("endpoint", &ctx.endpoint)
            .field("method", &ctx.method)
            .field("path", &ctx.path_redacted)
            .field("served_by", served_by)
            .field("status", status.as_str())
            .field(
                "used_fallback",
                if used_fallback { "true" } else { "false" },
            )
            .field("reason", why.unwrap_or("-"))
            .field("verdict", verdict.unwrap_or("-"))
            .field("trace_id", &ctx.trace_id);
        let line = line.finish();
        if used_fallback || why.is_some() {
            self.recorder.log_always(line);
        } else {
            self.recorder.log(line);
        }
        self.recorded.notify_waiters();
    }

    fn count_request(
        &self,
        route_class: &'static str,
        served_by: &'static str,
        status: StatusCode,
    ) {
        self.metrics
            .requests
            .get_or_create(&RequestLabels {
                route_class,
                served_by,
                status: status.as_u16(),
            })
            .inc();
    }

    fn observe_backend(&self, backend: &str, d: Duration) {
        self.metrics
            .backend_duration
            .get_or_create(&BackendLabels {
                backend: backend.into(),
            })
            .observe(d.as_secs_f64());
    }

    fn observe_apply(&self, ctx: &Ctx, backend: &str, started: Instant) {
        if ctx.class == EndpointClass::Apply {
            self.metrics
                .apply_duration
                .get_or_create(&BackendLabels {
                    backend: backend.into(),
                })
                .observe(started.elapsed().as_secs_f64());
        }
    }
}

/// The server span of a request, continuing the caller's trace (`traceparent`).
fn server_span(req: &Request<Incoming>, node: &str) -> tracing::Span {
    let span = tracing::debug_span!(
        "request",
        "otel.kind" = "server",
        "otel.name" = tracing::field::Empty,
        "http.request.method" = %req.method(),
        "http.response.status_code" = tracing::field::Empty,
        "pve.node" = node,
        "migration.endpoint" = tracing::field::Empty,
        "migration.phase" = tracing::field::Empty,
        "migration.served_by" = tracing::field::Empty,
        "migration.used_fallback" = tracing::field::Empty,
        "migration.reason" = tracing::field::Empty,
        "contract.verdict" = tracing::field::Empty,
    );
    if span.is_disabled() {
        return span;
    }
    let trace = TraceContext::from_header(req.headers().get("traceparent"));
    if let Some(parent) = &trace.parent_span
        && let (Ok(t), Ok(s)) = (TraceId::from_hex(&trace.trace_id), SpanId::from_hex(parent))
    {
        let remote = SpanContext::new(t, s, TraceFlags::SAMPLED, true, TraceState::default());
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    span
}

/// A client span for one backend call, child of the request's span.
fn client_span(ctx: &Ctx, backend: &'static str) -> tracing::Span {
    tracing::debug_span!(
        parent: &ctx.span,
        "backend",
        "otel.kind" = "client",
        "otel.name" = backend,
        "peer.service" = backend,
    )
}

/// The trace id of a span when spans are exported, else the request's own.
fn trace_id_of(span: &tracing::Span, fallback: &TraceContext) -> String {
    let sc = span.context().span().span_context().clone();
    if sc.is_valid() {
        sc.trace_id().to_string()
    } else {
        fallback.trace_id.clone()
    }
}

/// The `traceparent` for a backend call made in `span`.
fn traceparent(span: &tracing::Span, fallback: &TraceContext) -> HeaderValue {
    let sc = span.context().span().span_context().clone();
    if sc.is_valid() {
        HeaderValue::from_str(&format!("00-{}-{}-01", sc.trace_id(), sc.span_id()))
            .expect("hex is a valid header value")
    } else {
        fallback.child_header()
    }
}

/// The endpoint of a migrated route, if the request is one for `node`.
fn migrated_route<'r>(
    rules: &'r RuleSet,
    node: &str,
    req: &Request<Incoming>,
) -> Option<(&'r Endpoint, ApiFormat)> {
    let m = rules.route(req.method().as_str(), req.uri().path())?;
    if m.param("node").is_some_and(|n| n != node) {
        // Another node's API: pveproxy forwards it to that node's gateway.
        return None;
    }
    let id = m.endpoint().id().to_owned();
    let format = m.format();
    rules.endpoint(&id).map(|e| (e, format))
}

/// Builds a backend request: pass-through head rules, plus the trace context,
/// the dry-run marker when asked, and no `Accept-Encoding` (the two answers
/// must be comparable; the client then gets an uncompressed answer, which HTTP
/// allows).
fn upstream_request(
    upstream: &Upstream,
    parts: &http::request::Parts,
    client: &ClientInfo,
    traceparent: HeaderValue,
    dry_run: bool,
    body: Body,
) -> Request<Body> {
    let mut builder = proxy::upstream_head(upstream, parts, client);
    if let Some(h) = builder.headers_mut() {
        h.remove(header::ACCEPT_ENCODING);
        h.insert("traceparent", traceparent);
        if dry_run {
            h.insert(DRY_RUN_HEADER, HeaderValue::from_static("1"));
        }
    }
    builder.body(body).unwrap_or_else(|_| {
        let mut r = Request::new(body::empty());
        *r.uri_mut() = upstream.uri_for("/");
        r
    })
}

/// Sends a request and collects the answer within `timeout`, up to `cap` body bytes.
async fn call(
    upstream: &Upstream,
    req: Request<Body>,
    timeout: Duration,
    cap: usize,
) -> Result<Answer, CallError> {
    let started = Instant::now();
    let fut = async {
        let resp = upstream.send(req).await.map_err(CallError::Upstream)?;
        let (mut head, incoming) = resp.into_parts();
        proxy::strip_hop_by_hop(&mut head.headers);
        match collect_capped(incoming, cap).await {
            Ok(body) => Ok(Answer {
                status: head.status,
                reason: head.extensions.get::<ReasonPhrase>().cloned(),
                headers: head.headers,
                body,
                latency: started.elapsed(),
            }),
            Err((prefix, Some(rest), _)) => Err(CallError::TooLarge(head, prefix, rest)),
            Err((_, None, e)) => Err(CallError::Body(e)),
        }
    };
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or(Err(CallError::Timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(perl: &'static [u8], rust: &'static [u8]) -> Arc<CachedCompare> {
        Arc::new(CachedCompare {
            perl_body: Bytes::from_static(perl),
            rust_body: Bytes::from_static(rust),
            perl_sha: sha256_hex(perl),
            rust_sha: sha256_hex(rust),
            done: Arc::new(Compared {
                cmp: Comparison::skipped("e", SkipReason::BackendError),
                verdict: "match".into(),
                patch: None,
                type_only: Vec::new(),
            }),
        })
    }

    #[test]
    fn compare_cache_matches_bodies_exactly_and_keeps_the_latest_per_key() {
        let cache = CompareCache::default();
        let bodies: Vec<&'static [u8]> =
            vec![b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9"];
        for b in &bodies {
            cache.put("k".into(), entry(b, b"r"));
        }
        // Only the latest COMPARE_CACHE_PER_KEY stay; the accounting follows.
        assert!(cache.get("k", b"0", b"r").is_none());
        assert!(cache.get("k", b"1", b"r").is_none());
        for b in &bodies[2..] {
            let hit = cache.get("k", b, b"r").expect("kept");
            assert_eq!(hit.perl_sha, sha256_hex(b));
        }
        assert!(
            cache.get("k", b"9", b"other").is_none(),
            "both bodies must match"
        );
        assert!(cache.get("other", b"9", b"r").is_none(), "and the key");
        let inner = cache.inner.lock().unwrap();
        assert_eq!(inner.entries, COMPARE_CACHE_PER_KEY);
        assert_eq!(inner.bytes, 2 * COMPARE_CACHE_PER_KEY);
    }
}
