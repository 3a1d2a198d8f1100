//! The HTTPS listener: TLS 1.2/1.3 with the node certificate (reloaded when
//! its files change), HTTP/1.1 and h2, and pveproxy's response framing.
//!
//! Headers in pveproxy's order: `Cache-Control: max-age=0`, `Connection`
//! (`Keep-Alive`, or `close` for every status >= 400: pveproxy ends the
//! connection after an error), `Date`, `Pragma: no-cache`, `Server:
//! pve-api-daemon/3.0`, `Content-Length`, `Content-Type:
//! application/json;charset=UTF-8`, `Expires` (= `Date`). HTTP/1 header names
//! go out in title case, and the reason phrase carries the error message.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pve_migration_certs::reload::{CertSource, ReloadingCertResolver};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, Backend, MAX_BODY};

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the certificate files are compared with what is served.
const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The certificate or key could not be loaded.
    #[error(transparent)]
    Cert(#[from] pve_migration_certs::CertError),
    /// The listener's address could not be read.
    #[error("listener: {0}")]
    Listener(std::io::Error),
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves `backend` on an already bound `listener` with the certificate
    /// from `cert`.
    ///
    /// # Errors
    ///
    /// When the certificate cannot be loaded.
    pub fn start(
        listener: TcpListener,
        cert: CertSource,
        backend: Arc<Backend>,
    ) -> Result<Server, StartError> {
        let resolver = Arc::new(ReloadingCertResolver::load(cert)?);
        let tls = TlsAcceptor::from(Arc::new(pve_migration_certs::server_config(
            resolver.clone(),
        )));
        let addr = listener.local_addr().map_err(StartError::Listener)?;
        let (shutdown, rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, tls, resolver, backend, rx));
        Ok(Server {
            addr,
            shutdown,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for open connections to finish their
    /// requests (at most `grace`).
    pub async fn shutdown(mut self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let _ = tokio::time::timeout(grace, &mut self.task).await;
    }
}

impl Drop for Server {
    /// A server dropped without [`Server::shutdown`] stops at once (tests
    /// that end early must not leave it serving).
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: TlsAcceptor,
    resolver: Arc<ReloadingCertResolver>,
    backend: Arc<Backend>,
    mut shutdown: watch::Receiver<bool>,
) {
    // every connection holds a clone; when all are gone, draining is done
    let (drain_tx, mut drain_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut cert_check = tokio::time::interval(CERT_CHECK_INTERVAL);
    cert_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = cert_check.tick() => {
                let r = resolver.clone();
                let _ = tokio::task::spawn_blocking(move || r.check()).await;
                continue;
            }
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.clone();
        let backend = backend.clone();
        let drain = drain_tx.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _drain = drain;
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let service = hyper::service::service_fn(move |req| {
                let backend = backend.clone();
                async move { Ok::<_, Infallible>(respond(&backend, req).await) }
            });
            let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(hyper_util::rt::TokioTimer::new())
                .title_case_headers(true)
                .header_read_timeout(Duration::from_secs(30));
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(drain_tx);
    let _ = drain_rx.recv().await;
}

async fn read_body(req: Request<Incoming>) -> (http::request::Parts, Option<Bytes>) {
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return (parts, None);
    }
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .ok()
        .map(|b| b.to_bytes());
    (parts, body)
}

async fn respond(backend: &Arc<Backend>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let version = req.version();
    let (parts, body) = read_body(req).await;
    let request = api::Request {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
    };
    let answer = std::panic::AssertUnwindSafe(backend.handle(request))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| api::Response {
            status: 500,
            reason: "internal error".into(),
            body: Some((
                "{\"data\":null,\"message\":\"internal error\\n\"}".into(),
                true,
            )),
            delay: None,
        });
    if let Some(d) = answer.delay {
        tokio::time::sleep(d).await;
    }
    frame(answer, version)
}

/// pveproxy's framing of an answer.
pub fn frame(answer: api::Response, version: http::Version) -> Response<Full<Bytes>> {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let date = HeaderValue::from_str(&date).expect("an HTTP date is ASCII");
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (body, json) = answer.body.unwrap_or_default();
    let len = body.len();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if !answer.reason.is_empty()
        && let Ok(r) = hyper::ext::ReasonPhrase::try_from(answer.reason.into_bytes())
    {
        resp.extensions_mut().insert(r);
    }
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=0"));
    if version < http::Version::HTTP_2 {
        let conn = if status.as_u16() >= 400 {
            "close"
        } else {
            "Keep-Alive"
        };
        h.insert(header::CONNECTION, HeaderValue::from_static(conn));
    }
    h.insert(header::DATE, date.clone());
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static("pve-api-daemon/3.0"),
    );
    if len > 0 {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    if json {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json;charset=UTF-8"),
        );
    }
    h.insert(header::EXPIRES, date);
    resp
}
