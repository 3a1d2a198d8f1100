//! The control endpoint `/_sim/faults`: set and clear faults at run time.
//!
//! * `GET` shows the active faults and the hit counters,
//! * `PUT` or `POST` replaces them from JSON
//!   (`{"faults": ["latency=200", {"kind": "reset-before-head", "scope": "writes"}]}`,
//!   see [`crate::faults::parse_fault_request`]),
//! * `DELETE` clears them.
//!
//! It is reachable only from loopback peers and only with the header
//! `X-Sim-Control-Secret` equal to the configured secret
//! ([`crate::SimConfig::control_secret`]); without a configured secret it does
//! not exist (404). A peer that is not loopback, or a missing or wrong secret,
//! gets 403. Control requests are neither recorded nor faulted, and the
//! answers are plain JSON (not pveproxy's envelope).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::faults::parse_fault_request;
use crate::respond::{self, SimBody};
use crate::server::SimState;

/// The header carrying the control secret.
pub const SECRET_HEADER: &str = "x-sim-control-secret";

/// Why a control request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denied {
    /// No secret configured: the endpoint does not exist.
    Disabled,
    /// Not from loopback.
    NotLoopback,
    /// Missing or wrong secret.
    BadSecret,
}

fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// The access check, separate so it can be tested without sockets.
fn check_access(secret: Option<&str>, peer: SocketAddr, headers: &HeaderMap) -> Result<(), Denied> {
    let secret = secret.ok_or(Denied::Disabled)?;
    if !is_loopback(peer.ip()) {
        return Err(Denied::NotLoopback);
    }
    let given = headers
        .get(SECRET_HEADER)
        .map(HeaderValue::as_bytes)
        .ok_or(Denied::BadSecret)?;
    aws_lc_rs::constant_time::verify_slices_are_equal(given, secret.as_bytes())
        .map_err(|_| Denied::BadSecret)
}

fn reply(status: StatusCode, body: &Value) -> Response<SimBody> {
    let text = format!("{body}\n");
    let len = text.len();
    let mut r = Response::new(respond::full(text));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error(status: StatusCode, message: &str) -> Response<SimBody> {
    reply(status, &json!({ "error": message }))
}

fn state_json(st: &SimState) -> Value {
    let hits = &st.stats.fault_hits;
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::SeqCst);
    json!({
        "faults": st.faults().iter().map(|f| f.to_json()).collect::<Vec<_>>(),
        "seed": st.config.seed,
        "hits": {
            "latency": n(&hits.latency),
            "delay": n(&hits.delay),
            "error-rate": n(&hits.error_rate),
            "reset-before-head": n(&hits.reset_before_head),
            "reset-after-head": n(&hits.reset_after_head),
            "malformed-json": n(&hits.malformed_json),
            "refuse": n(&hits.refuse),
            "auth-bypass": n(&hits.auth_bypass),
        },
    })
}

/// Serves `/_sim/…`.
pub(crate) async fn handle(
    st: &Arc<SimState>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<SimBody> {
    match check_access(st.config.control_secret.as_deref(), peer, req.headers()) {
        Ok(()) => {}
        Err(Denied::Disabled) => return error(StatusCode::NOT_FOUND, "not found"),
        Err(Denied::NotLoopback) => {
            return error(
                StatusCode::FORBIDDEN,
                "the control endpoint is only reachable from loopback",
            );
        }
        Err(Denied::BadSecret) => {
            return error(
                StatusCode::FORBIDDEN,
                "missing or wrong X-Sim-Control-Secret",
            );
        }
    }
    if req.uri().path().trim_end_matches('/') != "/_sim/faults" {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    let faults = match *req.method() {
        Method::GET => return reply(StatusCode::OK, &state_json(st)),
        Method::DELETE => Vec::new(),
        Method::PUT | Method::POST => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("reading the body failed: {e}"),
                    );
                }
            };
            match parse_fault_request(&body) {
                Ok(f) => f,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.0),
            }
        }
        _ => {
            let mut r = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, PUT, POST, DELETE"),
            );
            return r;
        }
    };
    match st.set_faults(faults).await {
        Ok(()) => reply(StatusCode::OK, &state_json(st)),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(secret: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(s) = secret {
            h.insert(SECRET_HEADER, HeaderValue::from_str(s).unwrap());
        }
        h
    }

    #[test]
    fn access_rules() {
        let lo: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let lo6: SocketAddr = "[::1]:5000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        let ok = headers(Some("s3cret"));
        assert_eq!(check_access(None, lo, &ok), Err(Denied::Disabled));
        assert_eq!(check_access(Some("s3cret"), lo, &ok), Ok(()));
        assert_eq!(check_access(Some("s3cret"), lo6, &ok), Ok(()));
        assert_eq!(check_access(Some("s3cret"), mapped, &ok), Ok(()));
        assert_eq!(
            check_access(Some("s3cret"), remote, &ok),
            Err(Denied::NotLoopback)
        );
        assert_eq!(
            check_access(Some("s3cret"), lo, &headers(None)),
            Err(Denied::BadSecret)
        );
        assert_eq!(
            check_access(Some("s3cret"), lo, &headers(Some("s3cre"))),
            Err(Denied::BadSecret)
        );
    }
}
