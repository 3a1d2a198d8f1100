//! Forwarding one request to an upstream and its response back, byte for byte
//! where HTTP allows: status, reason phrase, end-to-end headers and the body
//! stream pass unchanged; only hop-by-hop headers (RFC 9110 §7.6.1) are
//! dropped and the forwarding headers added. WebSocket upgrades (noVNC,
//! xterm.js) are completed on both sides and then spliced.

use std::net::{IpAddr, SocketAddr};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::body::{self, Body};
use crate::error::GatewayError;
use crate::upstream::{Upstream, UpstreamError};

/// The dry-run marker only the gateway may set (docs/design.md, invariant 5).
pub const DRY_RUN_HEADER: HeaderName = HeaderName::from_static("x-pve-dry-run");

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Facts about the client connection a request arrived on.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// The gateway address it connected to.
    pub local: SocketAddr,
    /// `X-Forwarded-For` for this client, rendered once per connection.
    forwarded_for: HeaderValue,
}

impl ClientInfo {
    /// The facts of one accepted connection.
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Self {
        let forwarded_for = HeaderValue::from_str(&unmapped(peer.ip()).to_string())
            .expect("an IP is a valid header value");
        Self {
            peer,
            local,
            forwarded_for,
        }
    }

    /// The client IP as pveproxy should log it (IPv4-mapped IPv6 as IPv4).
    pub fn ip(&self) -> IpAddr {
        unmapped(self.peer.ip())
    }
}

/// An IPv4-mapped IPv6 address as IPv4; others unchanged.
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Removes hop-by-hop headers: those named in `Connection` and the fixed set.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    const FIXED: [&HeaderName; 6] = [
        &header::CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRANSFER_ENCODING,
        &header::UPGRADE,
    ];
    // Most messages carry none of them: one pass over the names is cheaper
    // than six hashed removals.
    if !headers.keys().any(|k| FIXED.contains(&k)) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in FIXED {
        headers.remove(name);
    }
}

/// The protocol a request asks to switch to (HTTP/1.1 `Connection: upgrade`),
/// when it is one pveproxy speaks: `websocket`. Any other upgrade (`h2c` in
/// particular, a way past the proxy to the backend) is dropped with the other
/// hop-by-hop headers and the request is forwarded as a plain one.
fn upgrade_protocol(req: &Request<Incoming>) -> Option<HeaderValue> {
    if req.version() != Version::HTTP_11 {
        return None;
    }
    let wants = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    let proto = req.headers().get(header::UPGRADE)?;
    let websocket = proto.to_str().is_ok_and(|p| {
        p.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    });
    (wants && websocket).then(|| HeaderValue::from_static("websocket"))
}

/// Builds the upstream request head from the client's.
///
/// `Host` is kept as the client sent it (for HTTP/2 clients, taken from the
/// `:authority`), `X-Forwarded-For` is *set* to the connecting address —
/// not appended to: the gateway is the edge, and pveproxy trusts this header
/// from loopback (`PROXY_REAL_IP_ALLOW_FROM`), so a client-supplied value
/// must never reach it. A client's `X-PVE-Dry-Run` is removed: only the
/// gateway may turn a write into a no-op.
pub(crate) fn upstream_head(
    upstream: &Upstream,
    parts: &http::request::Parts,
    client: &ClientInfo,
) -> http::request::Builder {
    let mut headers = parts.headers.clone();
    strip_hop_by_hop(&mut headers);
    headers.remove(&DRY_RUN_HEADER);
    if !headers.contains_key(header::HOST)
        && let Some(authority) = parts.uri.authority()
        && let Ok(v) = HeaderValue::from_str(authority.as_str())
    {
        headers.insert(header::HOST, v);
    }
    headers.insert(X_FORWARDED_FOR.clone(), client.forwarded_for.clone());
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(upstream.uri_with(parts.uri.path_and_query()))
        .version(Version::HTTP_11);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    builder
}

/// Forwards a request, streaming both bodies; upstream failures become 502s.
pub(crate) async fn forward(
    upstream: &Upstream,
    mut req: Request<Incoming>,
    client: &ClientInfo,
) -> Response<Body> {
    let upgrade = upgrade_protocol(&req);
    let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
    let (parts, incoming) = req.into_parts();
    let mut builder = upstream_head(upstream, &parts, client);
    if let (Some(proto), Some(h)) = (&upgrade, builder.headers_mut()) {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, proto.clone());
    }
    let upstream_req = match builder.body(body::incoming(incoming)) {
        Ok(r) => r,
        Err(e) => {
            return GatewayError::bad_request(format!("invalid request: {e}")).into_response();
        }
    };
    match upstream.send(upstream_req).await {
        Ok(resp) => match client_upgrade {
            Some(client_upgrade) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                splice_upgrade(resp, client_upgrade)
            }
            _ => relay_response(resp),
        },
        Err(e) => upstream_failure(&e),
    }
}

/// The response for a failed upstream exchange.
pub(crate) fn upstream_failure(e: &UpstreamError) -> Response<Body> {
    tracing::warn!(error = %e, "upstream request failed");
    GatewayError::upstream(e).into_response()
}

/// Passes an upstream response on, keeping its reason phrase and body stream.
pub(crate) fn relay_response(resp: Response<Incoming>) -> Response<Body> {
    let (mut parts, incoming) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body::incoming(incoming))
}

/// Completes a protocol switch on both sides and copies bytes until either closes.
fn splice_upgrade(
    mut resp: Response<Incoming>,
    client_upgrade: hyper::upgrade::OnUpgrade,
) -> Response<Body> {
    let upstream_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client_upgrade, upstream_upgrade) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "protocol upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(up, down, "upgraded connection closed"),
            Err(e) => tracing::debug!(error = %e, "upgraded connection ended"),
        }
    });
    let (parts, _) = resp.into_parts();
    // Connection/Upgrade stay: they are the 101's point.
    Response::from_parts(parts, body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_end_to_end_headers_stay() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret-Hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::COOKIE, HeaderValue::from_static("PVEAuthCookie=x"));
        h.insert("csrfpreventiontoken", HeaderValue::from_static("t"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["cookie", "csrfpreventiontoken"]);
    }
}
