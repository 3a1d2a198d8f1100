//! A small HTTPS client for the operator tools and the demo (not the proxy
//! path, which uses the pooled [`crate::upstream::Upstream`]): one request per
//! connection, the whole answer read, the reason phrase kept.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use hyper::ext::ReasonPhrase;
use hyper_util::rt::TokioIo;
use pve_migration_certs::upstream::{UpstreamTrust, client_config};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::body::{self, Body};

/// An answer as it came over the wire.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// The reason phrase (the canonical one when the server sent that).
    pub reason: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON, `Null` when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A client error (connect, TLS, HTTP).
#[derive(Debug, thiserror::Error)]
#[error("{addr}: {message}")]
pub struct ClientError {
    /// Where it tried to go.
    pub addr: String,
    /// What went wrong.
    pub message: String,
}

/// An HTTPS/1.1 client with a fixed trust configuration.
#[derive(Clone)]
pub struct HttpsClient {
    tls: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for HttpsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsClient")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl HttpsClient {
    /// A client verifying servers as `trust` says, expecting the name `server_name`.
    ///
    /// # Errors
    /// When the trust configuration cannot be loaded or the name is invalid.
    pub fn new(trust: &UpstreamTrust, server_name: &str) -> Result<Self, ClientError> {
        let err = |message: String| ClientError {
            addr: server_name.to_owned(),
            message,
        };
        let config = client_config(trust, &[b"http/1.1"]).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            tls: TlsConnector::from(Arc::new(config)),
            server_name: ServerName::try_from(server_name.to_owned())
                .map_err(|e| err(e.to_string()))?,
        })
    }

    /// Opens a TLS connection and performs the HTTP/1.1 handshake.
    ///
    /// # Errors
    /// Connect, TLS or handshake failures.
    pub async fn connect(
        &self,
        addr: SocketAddr,
    ) -> Result<hyper::client::conn::http1::SendRequest<Body>, ClientError> {
        let err = |message: String| ClientError {
            addr: addr.to_string(),
            message,
        };
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| err(e.to_string()))?;
        let tls = self
            .tls
            .connect(self.server_name.clone(), tcp)
            .await
            .map_err(|e| err(format!("TLS: {e}")))?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| err(e.to_string()))?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        Ok(send)
    }

    /// Sends one request on a new connection and reads the whole answer.
    ///
    /// # Errors
    /// Connect, TLS or HTTP failures.
    pub async fn send(&self, addr: SocketAddr, req: Request<Body>) -> Result<Answer, ClientError> {
        let mut send = self.connect(addr).await?;
        let resp = send.send_request(req).await.map_err(|e| ClientError {
            addr: addr.to_string(),
            message: e.to_string(),
        })?;
        read_answer(resp).await.map_err(|message| ClientError {
            addr: addr.to_string(),
            message,
        })
    }
}

/// Reads a response completely.
///
/// # Errors
/// When the body cannot be read.
pub async fn read_answer(resp: http::Response<hyper::body::Incoming>) -> Result<Answer, String> {
    let reason = resp
        .extensions()
        .get::<ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .unwrap_or_else(|| resp.status().canonical_reason().unwrap_or("").to_owned());
    let (parts, incoming) = resp.into_parts();
    let body = incoming
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Answer {
        status: parts.status,
        reason,
        headers: parts.headers,
        body,
    })
}

/// Builds a request with `Host: localhost` and the given headers and body.
pub fn request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body_bytes: Bytes,
) -> Request<Body> {
    let mut b = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    if !body_bytes.is_empty() {
        b = b.header("content-length", body_bytes.len());
    }
    b.body(body::full(body_bytes))
        .expect("method, path and headers are valid")
}
