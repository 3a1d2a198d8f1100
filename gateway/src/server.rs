//! Listeners, TLS, connection handling and graceful shutdown (stages 1–4 of
//! [`crate::stack`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pve_migration_certs::reload::{ReloadOutcome, ReloadingCertResolver};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::access::AccessPolicy;
use crate::body::{self, Body};
use crate::config::{Config, Limits};
use crate::control::Control;
use crate::engine::Engine;
use crate::evidence::Recorder;
use crate::metrics::Metrics;
use crate::proxy::ClientInfo;
use crate::stack::Pipeline;
use crate::upstream::{Backend, Upstream};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A passed listener has no address (it is not a bound TCP socket).
    #[error("listener passed to the gateway: {0}")]
    Listener(std::io::Error),
    /// The served certificate could not be loaded.
    #[error("server certificate: {0}")]
    Certificate(#[from] pve_migration_certs::CertError),
    /// The access policy file is invalid.
    #[error("access policy: {0}")]
    Access(#[from] crate::access::AccessError),
    /// An upstream could not be set up.
    #[error("{0}")]
    Upstream(#[from] crate::upstream::UpstreamSetupError),
    /// The rule files are invalid.
    #[error("rules: {0}")]
    Rules(String),
    /// The evidence store or migration.log cannot be opened.
    #[error("evidence: {0}")]
    Evidence(#[from] crate::evidence::EvidenceError),
    /// The trip state cannot be read.
    #[error("{0}")]
    Trip(#[from] crate::engine::trip::TripError),
    /// The metrics listener cannot be bound.
    #[error("telemetry.metrics_listen {addr}: {source}")]
    Metrics {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The state directory could not be created.
    #[error("state directory {}: {source}", path.display())]
    StateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A certificate reload that did something (changes and rejections; not "unchanged").
#[derive(Debug, Clone)]
pub enum CertEvent {
    /// A new certificate is served; its SHA-256 fingerprint.
    Reloaded(String),
    /// The files changed but were rejected; why.
    Rejected(String),
}

/// How a shutdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Every connection finished within the grace period.
    pub drained: bool,
}

/// Resolves once shutdown has been requested.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}

/// Requests of one connection: how many are being answered and when that
/// number last changed, for the HTTP/2 idle limit.
#[derive(Debug)]
struct Activity {
    start: tokio::time::Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `start` to the last change of `in_flight`.
    changed_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            in_flight: AtomicUsize::new(0),
            changed_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.changed_ms.store(ms, Ordering::Relaxed);
    }

    /// Resolves once no request has been in flight for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let since = self.start + Duration::from_millis(self.changed_ms.load(Ordering::Relaxed));
            let deadline = since + limit;
            if tokio::time::Instant::now() >= deadline {
                if self.in_flight.load(Ordering::Relaxed) == 0 {
                    return;
                }
                // A long request: look again a limit later.
                tokio::time::sleep(limit).await;
            } else {
                tokio::time::sleep_until(deadline).await;
            }
        }
    }
}

/// One request being answered; marks it answered when dropped (also when
/// the client goes away).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.touch();
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// State shared by the accept loops and the background tasks.
struct Shared {
    acceptor: TlsAcceptor,
    engine: Arc<Engine>,
    pipeline: Arc<Pipeline>,
    limits: Limits,
    access: Arc<ArcSwap<AccessPolicy>>,
    control: Arc<Control>,
    metrics_addr: Option<SocketAddr>,
    certs: Arc<ReloadingCertResolver>,
    cert_events: broadcast::Sender<CertEvent>,
    connections: Arc<Semaphore>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    shutdown: watch::Sender<bool>,
    accept_loops: JoinSet<()>,
    drain_tx: Option<mpsc::Sender<()>>,
    drain_rx: mpsc::Receiver<()>,
}

/// The TLS settings pveproxy clients expect: TLS 1.2 and 1.3, ALPN h2 + http/1.1.
fn server_tls(resolver: Arc<ReloadingCertResolver>) -> ServerConfig {
    pve_migration_certs::server_config(resolver)
}

impl Gateway {
    /// Binds the listeners and starts serving.
    ///
    /// # Errors
    /// See [`StartError`]; nothing is left running on error.
    pub async fn start(config: Config) -> Result<Gateway, StartError> {
        let mut listeners = Vec::new();
        for addr in &config.listen.addresses {
            // tokio's bind: SO_REUSEADDR and a backlog of 1024
            let l = TcpListener::bind(addr)
                .await
                .and_then(TcpListener::into_std)
                .map_err(|source| StartError::Bind {
                    addr: *addr,
                    source,
                })?;
            listeners.push(l);
        }
        Self::start_on(config, listeners).await
    }

    /// Starts serving on listeners bound by someone else — systemd's socket
    /// activation (see [`crate::listen`]) or a test that keeps the port —
    /// instead of `listen.addresses`. The listeners stay open in whoever
    /// passed them when this gateway stops, so a successor can take over
    /// without refusing a connection.
    ///
    /// # Errors
    /// See [`StartError`]; nothing is left running on error.
    pub async fn start_on(
        config: Config,
        listeners: Vec<std::net::TcpListener>,
    ) -> Result<Gateway, StartError> {
        let listeners = listeners
            .into_iter()
            .map(|l| {
                let addr = l.local_addr().map_err(StartError::Listener)?;
                l.set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(l))
                    .map_err(|source| StartError::Bind { addr, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        std::fs::create_dir_all(&config.state_dir).map_err(|source| StartError::StateDir {
            path: config.state_dir.clone(),
            source,
        })?;
        let certs = Arc::new(ReloadingCertResolver::load(config.listen.cert.clone())?);
        let access = AccessPolicy::from_file(&config.access_file)?;
        let perl = Upstream::new(Backend::Perl, &config.perl, &config.limits)?;
        let rust = match &config.rust {
            Some(r) => Some(Upstream::new(Backend::Rust, r, &config.limits)?),
            None => None,
        };
        let rules = Arc::new(load_rules(&config.rule_files)?);
        let metrics = Arc::new(Metrics::new());
        let recorder = Recorder::start(&config.evidence, &config.migration_log, metrics.clone())?;
        let engine = Arc::new(Engine::new(&config, rules, perl, rust, recorder, metrics)?);

        let addrs = listeners
            .iter()
            .map(|l| l.local_addr().expect("bound listener has an address"))
            .collect::<Vec<_>>();

        let access = Arc::new(ArcSwap::from_pointee(access));
        let control = Arc::new(Control::new(
            config.clone(),
            engine.clone(),
            access.clone(),
            certs.clone(),
        ));
        let (shutdown, _) = watch::channel(false);
        // The node's API matters more than the operator's socket: a gateway
        // whose admin socket cannot be bound (another instance holds it) still
        // serves, and says so loudly.
        if let Err(e) =
            crate::admin::start(&config.admin_socket, control.clone(), shutdown.subscribe()).await
        {
            tracing::error!(error = %e, "admin socket unavailable: migration-ctl cannot reach this gateway");
        }
        let metrics_addr = match config.telemetry.metrics_listen {
            Some(addr) => {
                Some(start_metrics_listener(addr, engine.clone(), shutdown.subscribe()).await?)
            }
            None => None,
        };
        let shared = Arc::new(Shared {
            acceptor: TlsAcceptor::from(Arc::new(server_tls(certs.clone()))),
            pipeline: Arc::new(Pipeline::new(engine.clone())),
            engine,
            limits: config.limits.clone(),
            access,
            control: control.clone(),
            metrics_addr,
            certs,
            cert_events: broadcast::channel(16).0,
            connections: Arc::new(Semaphore::new(config.limits.max_connections)),
        });
        let (drain_tx, drain_rx) = mpsc::channel(1);
        let mut accept_loops = JoinSet::new();
        for listener in listeners {
            accept_loops.spawn(accept_loop(
                listener,
                shared.clone(),
                shutdown.subscribe(),
                drain_tx.clone(),
            ));
        }
        tokio::spawn(cert_poller(
            shared.clone(),
            config.listen.cert_check_interval,
            shutdown.subscribe(),
        ));
        tokio::spawn(config_poller(
            control,
            config.config_check_interval,
            shutdown.subscribe(),
        ));
        for addr in &addrs {
            tracing::info!(%addr, node = %config.node, phase = %config.configured_phase(), "listening");
        }
        Ok(Gateway {
            addrs,
            shared,
            shutdown,
            accept_loops,
            drain_tx: Some(drain_tx),
            drain_rx,
        })
    }

    /// The bound addresses (resolves port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The migration engine (phases, trip, evidence, metrics).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    /// The served certificate's resolver.
    pub fn certificates(&self) -> &Arc<ReloadingCertResolver> {
        &self.shared.certs
    }

    /// Certificate reload events (changes and rejections).
    pub fn cert_events(&self) -> broadcast::Receiver<CertEvent> {
        self.shared.cert_events.subscribe()
    }

    /// The bound `telemetry.metrics_listen` address, if any.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.shared.metrics_addr
    }

    /// The live configuration, reload, health and phase operations.
    pub fn control(&self) -> &Arc<Control> {
        &self.shared.control
    }

    /// SIGHUP: reload the configuration (with the access policy), re-read the
    /// certificate files and reopen migration.log (after logrotate).
    /// Anything invalid keeps what was in force.
    pub async fn reload(&self) -> crate::control::ReloadStatus {
        check_certificates(&self.shared).await;
        self.shared.engine.recorder().reopen_log();
        self.shared.control.reload().await
    }

    /// Stops accepting: listeners are closed when this returns; connections
    /// finish their in-flight requests and then close.
    pub async fn stop_accepting(&mut self) {
        let _ = self.shutdown.send(true);
        while self.accept_loops.join_next().await.is_some() {}
        self.drain_tx = None;
    }

    /// Stops accepting and waits up to `limits.shutdown_grace` for in-flight requests.
    pub async fn shutdown(mut self) -> ShutdownReport {
        self.drain().await
    }

    /// Like [`Gateway::shutdown`], leaving the (stopped) value in place.
    pub async fn drain(&mut self) -> ShutdownReport {
        self.stop_accepting().await;
        let grace = self.shared.limits.shutdown_grace;
        // recv() yields None once every connection task dropped its sender.
        let drained = tokio::time::timeout(grace, self.drain_rx.recv())
            .await
            .is_ok();
        if !drained {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "shutdown grace period over, closing remaining connections"
            );
        }
        // Comparisons of answered requests finish within the shadow timeout;
        // their evidence is written before the process goes.
        let shadow_timeout = self.shared.control.config().shadow.timeout;
        if !self
            .shared
            .engine
            .settle(shadow_timeout + Duration::from_secs(1))
            .await
        {
            tracing::warn!("comparisons still running at shutdown are not recorded");
        }
        ShutdownReport { drained }
    }
}

/// The shipped rules plus the operator's files, in order.
pub(crate) fn load_rules(
    files: &[std::path::PathBuf],
) -> Result<pve_migration_rules::RuleSet, StartError> {
    if files.is_empty() {
        return Ok(pve_migration_rules::RuleSet::with_defaults());
    }
    let mut layers = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| StartError::Rules(format!("{}: {e}", f.display())))?;
        layers.push((f.display().to_string(), text));
    }
    let refs: Vec<(&str, &str)> = layers
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    pve_migration_rules::RuleSet::load(&refs).map_err(|e| StartError::Rules(e.to_string()))
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    drain: mpsc::Sender<()>,
) {
    loop {
        let permit = tokio::select! {
            p = shared.connections.clone().acquire_owned() => p.expect("semaphore is never closed"),
            _ = stopped(&mut shutdown) => return,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut shutdown) => return,
        };
        if !shared.access.load().permits(peer.ip()) {
            tracing::debug!(%peer, "connection denied by access policy");
            drop(tcp);
            continue;
        }
        let local = tcp
            .local_addr()
            .unwrap_or_else(|_| listener.local_addr().expect("bound"));
        let _ = tcp.set_nodelay(true);
        tokio::spawn(serve_connection(
            tcp,
            ClientInfo::new(peer, local),
            shared.clone(),
            shutdown.clone(),
            permit,
            drain.clone(),
        ));
    }
}

async fn serve_connection(
    tcp: TcpStream,
    client: ClientInfo,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
    _drain: mpsc::Sender<()>,
) {
    let limits = &shared.limits;
    let mut first = [0u8; 1];
    match tokio::time::timeout(limits.handshake_timeout, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => {}
        _ => return,
    }
    if first[0] != 0x16 {
        // Not a TLS handshake record: a browser typed http://host:8006.
        serve_redirect(tcp, client.local, limits).await;
        return;
    }
    let tls =
        match tokio::time::timeout(limits.handshake_timeout, shared.acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(peer = %client.peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(peer = %client.peer, "TLS handshake timed out");
                return;
            }
        };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let client = Arc::new(client);
    let pipeline = shared.pipeline.clone();
    // Only HTTP/2 needs the count (for its idle limit); HTTP/1.1 idles out
    // by the header timeout.
    let activity = h2.then(|| Arc::new(Activity::new()));
    let counted = activity.clone();
    // Signalled when a request arrives (a stored permit once one has).
    let request_seen = Arc::new(tokio::sync::Notify::new());
    let seen = request_seen.clone();
    let svc = service_fn(move |req: Request<Incoming>| {
        let pipeline = pipeline.clone();
        let client = client.clone();
        let in_flight = counted.clone().map(InFlight::begin);
        seen.notify_one();
        async move {
            let resp = pipeline.handle(req, &client).await;
            drop(in_flight);
            Ok::<_, Infallible>(resp)
        }
    });
    let io = TokioIo::new(tls);
    if let Some(activity) = activity {
        let mut builder = http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32)
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(Duration::from_secs(20));
        let conn = builder.serve_connection(io, svc);
        tokio::pin!(conn);
        // Without requests for the header timeout: a GOAWAY (streams still
        // sending their bodies finish first).
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = activity.idle_for(limits.header_timeout) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
            _ = stopped(&mut shutdown) => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    } else {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .max_buf_size(limits.max_header_bytes)
            .title_case_headers(true);
        let conn = builder.serve_connection(io, svc).with_upgrades();
        tokio::pin!(conn);
        let finished = tokio::select! {
            _ = conn.as_mut() => true,
            _ = stopped(&mut shutdown) => false,
        };
        if finished {
            return;
        }
        // Stopping. HTTP/1.1 closes an idle connection at once, and a
        // connection whose first request is still on its way counts as idle:
        // its client, which connected before the stop (possibly while the
        // previous process was stopping, see crate::listen), would see the
        // connection closed without an answer. It gets the handshake timeout
        // to send that request, which is then answered with
        // `Connection: close`. Between requests of a kept-alive connection
        // the close is the usual race HTTP clients retry.
        let waited = tokio::select! {
            _ = conn.as_mut() => None,
            r = tokio::time::timeout(limits.handshake_timeout, request_seen.notified()) => Some(r),
        };
        if waited.is_some() {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// pveproxy's answer to plain HTTP on its TLS port: a redirect to https, then close.
async fn serve_redirect(tcp: TcpStream, local: SocketAddr, limits: &Limits) {
    let svc = service_fn(move |req: Request<Incoming>| async move {
        Ok::<_, Infallible>(redirect_response(&req, local))
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout)
        .keep_alive(false)
        .title_case_headers(true);
    let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
}

fn redirect_response(req: &Request<Incoming>, local: SocketAddr) -> Response<Body> {
    let status = if req.method() == Method::GET || req.method() == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && !h.contains(['/', '@', ' ', '\\']))
        .map(str::to_owned)
        .unwrap_or_else(|| local.to_string());
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let location = format!("https://{host}{path}");
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

async fn check_certificates(shared: &Arc<Shared>) {
    let certs = shared.certs.clone();
    let outcome = match tokio::task::spawn_blocking(move || certs.check()).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "certificate check task failed");
            return;
        }
    };
    let event = match outcome {
        ReloadOutcome::Unchanged => return,
        ReloadOutcome::Reloaded(info) => CertEvent::Reloaded(info.fingerprint),
        ReloadOutcome::Rejected(e) => CertEvent::Rejected(e.to_string()),
    };
    let _ = shared.cert_events.send(event);
}

async fn config_poller(
    control: Arc<Control>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => { control.reload_if_changed().await; }
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// Serves `/metrics` over plain HTTP (for Prometheus; bind it to loopback).
async fn start_metrics_listener(
    addr: SocketAddr,
    engine: Arc<Engine>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<SocketAddr, StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Metrics { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StartError::Metrics { addr, source })?;
    tokio::spawn(async move {
        loop {
            let tcp = tokio::select! {
                r = listener.accept() => match r { Ok((t, _)) => t, Err(_) => continue },
                _ = stopped(&mut shutdown) => return,
            };
            let engine = engine.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let engine = engine.clone();
                    async move {
                        Ok::<_, Infallible>(if req.uri().path() == "/metrics" {
                            crate::admin::metrics_response(engine.metrics())
                        } else {
                            let mut r = Response::new(body::empty());
                            *r.status_mut() = StatusCode::NOT_FOUND;
                            r
                        })
                    }
                });
                let mut b = http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30));
                let _ = b.serve_connection(TokioIo::new(tcp), svc).await;
            });
        }
    });
    Ok(bound)
}

async fn cert_poller(shared: Arc<Shared>, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => check_certificates(&shared).await,
            _ = stopped(&mut shutdown) => return,
        }
    }
}
