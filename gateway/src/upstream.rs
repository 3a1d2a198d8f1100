//! Upstream backends: a keep-alive pool of verified TLS connections (HTTP/1.1,
//! as pveproxy speaks nothing else) and an error type that says whether the
//! backend can have seen the request.
//!
//! That distinction is what makes write fallback safe (docs/design.md, invariant 3):
//! a request may be re-sent elsewhere only when the connection was refused or
//! the TLS handshake failed, i.e. not a single request byte left the gateway.
//!
//! Each backend has at most `limits.upstream_max_connections_per_backend`
//! open connections (busy, idle in the pool, or carrying an upgraded
//! WebSocket). A request finding all of them busy waits up to
//! `limits.upstream_queue_timeout_ms` for one, then gets `503 Service
//! Unavailable` naming the limit: a slow or stuck pveproxy cannot make the
//! gateway open connections without end, nor keep clients waiting without end.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::body::Body;
use crate::config::{BackendConfig, Limits};

/// Which backend an upstream is; used in errors, logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// pveproxy and the Perl network API behind it.
    Perl,
    /// The Rust network backend.
    Rust,
}

impl Backend {
    /// `perl` or `rust`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Perl => "perl",
            Backend::Rust => "rust",
        }
    }
}

/// What went wrong talking to an upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// TCP connection refused: nothing listens.
    ConnectRefused,
    /// TCP connect plus TLS handshake did not finish in time.
    ConnectTimeout,
    /// Another connect-time failure (unreachable network, …).
    Connect(String),
    /// The TLS handshake failed (certificate not trusted, protocol mismatch).
    Tls(String),
    /// The connection closed or was reset after the request was (partly) sent.
    Closed(String),
    /// No response head within the allowed time.
    Timeout,
    /// The upstream sent something that is not HTTP/1.1.
    Protocol(String),
    /// The client's request body broke off or was malformed (a bad chunk)
    /// while it was streamed to the backend: the client's fault, not the
    /// backend's.
    RequestBody(String),
    /// Every allowed connection to the backend is open and busy, and none
    /// became free within `limits.upstream_queue_timeout_ms`.
    Saturated {
        /// `limits.upstream_max_connections_per_backend`.
        limit: usize,
        /// How long the request waited.
        waited: Duration,
    },
}

impl UpstreamErrorKind {
    /// True when the backend provably never received any byte of the request.
    pub fn never_sent(&self) -> bool {
        matches!(
            self,
            UpstreamErrorKind::ConnectRefused
                | UpstreamErrorKind::ConnectTimeout
                | UpstreamErrorKind::Connect(_)
                | UpstreamErrorKind::Tls(_)
                | UpstreamErrorKind::Saturated { .. }
        )
    }

    /// Short snake_case label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            UpstreamErrorKind::ConnectRefused => "connect_refused",
            UpstreamErrorKind::ConnectTimeout => "connect_timeout",
            UpstreamErrorKind::Connect(_) => "connect_error",
            UpstreamErrorKind::Tls(_) => "tls_error",
            UpstreamErrorKind::Closed(_) => "connection_closed",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Protocol(_) => "protocol_error",
            UpstreamErrorKind::Saturated { .. } => "saturated",
            UpstreamErrorKind::RequestBody(_) => "request_body",
        }
    }
}

/// An upstream failure, naming the backend and its address (never credentials).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} backend {addr}: {}", backend.as_str(), describe(kind))]
pub struct UpstreamError {
    /// Which backend.
    pub backend: Backend,
    /// `host:port` it was reached at.
    pub addr: String,
    /// What happened.
    pub kind: UpstreamErrorKind,
}

fn describe(kind: &UpstreamErrorKind) -> String {
    match kind {
        UpstreamErrorKind::ConnectRefused => "connection refused".into(),
        UpstreamErrorKind::ConnectTimeout => "connect timed out".into(),
        UpstreamErrorKind::Connect(e) => format!("connect failed: {e}"),
        UpstreamErrorKind::Tls(e) => format!("TLS handshake failed: {e}"),
        UpstreamErrorKind::Closed(e) => {
            format!("connection closed before a complete response: {e}")
        }
        UpstreamErrorKind::Timeout => "no response in time".into(),
        UpstreamErrorKind::Protocol(e) => format!("invalid response: {e}"),
        UpstreamErrorKind::RequestBody(e) => format!("invalid request body: {e}"),
        UpstreamErrorKind::Saturated { limit, waited } => format!(
            "all {limit} connections busy for {} ms (limits.upstream_max_connections_per_backend)",
            waited.as_millis()
        ),
    }
}

/// The connector's own error, found again in the client error's source chain.
#[derive(Debug, thiserror::Error)]
#[error("{0:?}")]
struct ConnectError(UpstreamErrorKind);

/// A TLS connection to one backend, holding one of the backend's connection
/// slots until it is closed.
#[derive(Debug)]
pub(crate) struct UpstreamIo {
    io: TokioIo<TlsStream<TcpStream>>,
    _slot: OwnedSemaphorePermit,
}

impl Connection for UpstreamIo {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl hyper::rt::Read for UpstreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// Connects to the configured backend address whatever the request URI says,
/// so a crafted request can never make the gateway connect elsewhere.
#[derive(Clone)]
struct Connector {
    addr: Arc<str>,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    timeout: Duration,
    /// One permit per connection that may be open.
    slots: Arc<Semaphore>,
    max_connections: usize,
    queue_timeout: Duration,
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpstreamIo;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamIo, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            // While this waits, the pool may hand the request a connection
            // that became idle; the slot is then used for a spare one.
            let waiting = tokio::time::Instant::now();
            let slot = tokio::time::timeout(this.queue_timeout, this.slots.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or(ConnectError(UpstreamErrorKind::Saturated {
                    limit: this.max_connections,
                    waited: waiting.elapsed(),
                }))?;
            let connect = async {
                let tcp = TcpStream::connect(&*this.addr).await.map_err(|e| {
                    ConnectError(match e.kind() {
                        std::io::ErrorKind::ConnectionRefused => UpstreamErrorKind::ConnectRefused,
                        _ => UpstreamErrorKind::Connect(e.to_string()),
                    })
                })?;
                let _ = tcp.set_nodelay(true);
                let tls = this
                    .tls
                    .connect(this.server_name.clone(), tcp)
                    .await
                    .map_err(|e| ConnectError(UpstreamErrorKind::Tls(e.to_string())))?;
                Ok(UpstreamIo {
                    io: TokioIo::new(tls),
                    _slot: slot,
                })
            };
            tokio::time::timeout(this.timeout, connect)
                .await
                .unwrap_or(Err(ConnectError(UpstreamErrorKind::ConnectTimeout)))
        })
    }
}

/// One backend: its address and a connection pool.
#[derive(Clone)]
pub struct Upstream {
    backend: Backend,
    scheme_authority: Arc<str>,
    authority: http::uri::Authority,
    addr: Arc<str>,
    client: Client<Connector, Body>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("backend", &self.backend)
            .field("addr", &self.addr)
            .finish()
    }
}

/// An upstream that cannot be set up (bad CA file, unusable server name).
#[derive(Debug, thiserror::Error)]
#[error("{} backend: {message}", backend.as_str())]
pub struct UpstreamSetupError {
    /// Which backend.
    pub backend: Backend,
    /// What is wrong.
    pub message: String,
}

impl Upstream {
    /// Sets up the pool for a backend.
    ///
    /// # Errors
    /// When the trust configuration cannot be loaded or the server name is invalid.
    pub fn new(
        backend: Backend,
        config: &BackendConfig,
        limits: &Limits,
    ) -> Result<Self, UpstreamSetupError> {
        let err = |message: String| UpstreamSetupError { backend, message };
        let authority = config
            .url
            .authority()
            .ok_or_else(|| err("URL has no host".into()))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(443);
        let addr: Arc<str> = if host.contains(':') {
            format!("[{host}]:{port}").into()
        } else {
            format!("{host}:{port}").into()
        };
        let name = config.server_name.as_deref().unwrap_or(host).to_owned();
        let server_name = ServerName::try_from(name.clone())
            .map_err(|_| err(format!("invalid TLS server name '{name}'")))?;
        let tls = pve_migration_certs::upstream::client_config(&config.trust, &[b"http/1.1"])
            .map_err(|e| err(e.to_string()))?;
        if config.trust == pve_migration_certs::upstream::UpstreamTrust::Insecure {
            tracing::warn!(backend = backend.as_str(), %addr, "upstream certificate verification is DISABLED by configuration");
        }
        let connector = Connector {
            addr: addr.clone(),
            server_name,
            tls: TlsConnector::from(Arc::new(tls)),
            timeout: config.connect_timeout,
            slots: Arc::new(Semaphore::new(limits.upstream_max_connections)),
            max_connections: limits.upstream_max_connections,
            queue_timeout: limits.upstream_queue_timeout,
        };
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(limits.upstream_idle_timeout)
            .pool_max_idle_per_host(limits.upstream_max_idle)
            .http1_title_case_headers(true)
            .set_host(false)
            .retry_canceled_requests(true)
            .build(connector);
        Ok(Self {
            backend,
            scheme_authority: format!("https://{authority}").into(),
            authority: authority.clone(),
            addr,
            client,
        })
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `host:port`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The absolute URI for a request path (`/api2/json/…?query`).
    pub(crate) fn uri_for(&self, path_and_query: &str) -> Uri {
        let s = format!("{}{}", self.scheme_authority, path_and_query);
        s.parse().unwrap_or_else(|_| {
            // Unreachable for paths hyper accepted; fall back to the root.
            format!("{}/", self.scheme_authority)
                .parse()
                .expect("scheme and authority were validated")
        })
    }

    /// The absolute URI for a client request's path and query, without
    /// re-parsing them (the per-request form of [`Upstream::uri_for`]).
    pub(crate) fn uri_with(&self, path_and_query: Option<&http::uri::PathAndQuery>) -> Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTPS);
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(
            path_and_query
                .cloned()
                .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/")),
        );
        Uri::from_parts(parts).unwrap_or_else(|_| self.uri_for("/"))
    }

    /// Sends a request (URI already absolute, see [`Upstream::uri_for`]).
    ///
    /// # Errors
    /// An [`UpstreamError`] classified by whether the request can have been received.
    pub async fn send(&self, req: Request<Body>) -> Result<Response<Incoming>, UpstreamError> {
        self.client
            .request(req)
            .await
            .map_err(|e| self.classify(&e))
    }

    fn classify(&self, e: &hyper_util::client::legacy::Error) -> UpstreamError {
        let kind = find_source::<ConnectError>(e)
            .map(|c| c.0.clone())
            .or_else(|| {
                find_source::<hyper::Error>(e).map(|h| {
                    if h.is_user() {
                        // hyper's "user" errors: the request body we were
                        // streaming failed, i.e. the client's side
                        UpstreamErrorKind::RequestBody(leaf_message(h))
                    } else if h.is_timeout() {
                        UpstreamErrorKind::Timeout
                    } else if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                        UpstreamErrorKind::Closed(h.to_string())
                    } else if h.is_parse() || h.is_parse_status() {
                        UpstreamErrorKind::Protocol(h.to_string())
                    } else {
                        UpstreamErrorKind::Closed(leaf_message(h))
                    }
                })
            })
            .unwrap_or_else(|| {
                if e.is_connect() {
                    UpstreamErrorKind::Connect(leaf_message(e))
                } else {
                    UpstreamErrorKind::Closed(leaf_message(e))
                }
            });
        UpstreamError {
            backend: self.backend,
            addr: self.addr.to_string(),
            kind,
        }
    }
}

fn find_source<'a, T: std::error::Error + 'static>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<T>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// The innermost error message (the OS error, usually).
fn leaf_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
