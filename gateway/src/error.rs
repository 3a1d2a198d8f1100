//! Gateway errors and the one table that turns them into HTTP responses.
//!
//! Every error carries its [`ErrorSource`] (pingora's idea), so later stages
//! can count only what the Rust backend did when deciding about a trip, and
//! never blame Rust for a client that hung up.
//!
//! Responses follow pveproxy's convention: the message is the HTTP reason
//! phrase (proxmoxer and the web UI show it), the body is empty.

use http::{HeaderValue, Response, StatusCode, header};
use hyper::ext::ReasonPhrase;

use crate::body::{self, Body};
use crate::upstream::{Backend, UpstreamError};

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client (bad request, went away).
    Downstream,
    /// pveproxy / the Perl backend.
    UpstreamPerl,
    /// The Rust backend.
    UpstreamRust,
    /// The gateway itself.
    Internal,
}

/// An error answered by the gateway itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct GatewayError {
    /// Who caused it.
    pub origin: ErrorSource,
    /// The status sent to the client.
    pub status: StatusCode,
    /// The reason phrase sent to the client.
    pub message: String,
}

impl GatewayError {
    /// Maps an upstream failure (see the table in the module docs of [`crate::upstream`]).
    ///
    /// An upstream failure is `502 Bad Gateway`, or `503 Service
    /// Unavailable` when every connection to the backend was busy, with a
    /// reason phrase that names the backend, its address and what happened,
    /// so an operator reading a browser error knows which process to look at.
    /// A request body that broke off on the client's side is the client's
    /// `400 Bad Request`.
    pub fn upstream(e: &UpstreamError) -> Self {
        if let crate::upstream::UpstreamErrorKind::RequestBody(why) = &e.kind {
            return Self::bad_request(format!("invalid request body: {why}"));
        }
        Self {
            origin: match e.backend {
                Backend::Perl => ErrorSource::UpstreamPerl,
                Backend::Rust => ErrorSource::UpstreamRust,
            },
            status: match e.kind {
                crate::upstream::UpstreamErrorKind::Saturated { .. } => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                _ => StatusCode::BAD_GATEWAY,
            },
            message: e.to_string(),
        }
    }

    /// A malformed client request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            origin: ErrorSource::Downstream,
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// The response the client gets.
    pub fn into_response(self) -> Response<Body> {
        let mut resp = Response::new(body::empty());
        *resp.status_mut() = self.status;
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        if let Ok(reason) = ReasonPhrase::try_from(sanitize_reason(&self.message)) {
            resp.extensions_mut().insert(reason);
        }
        resp
    }
}

/// Reason phrases may hold only visible ASCII, space and tab (RFC 9112 §4).
pub(crate) fn sanitize_reason(message: &str) -> String {
    let first_line = message.lines().next().unwrap_or("");
    first_line
        .chars()
        .map(|c| {
            if c == '\t' || (' '..='~').contains(&c) {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::UpstreamErrorKind;

    #[test]
    fn upstream_errors_are_502_with_a_telling_reason() {
        let e = UpstreamError {
            backend: Backend::Perl,
            addr: "127.0.0.1:8006".into(),
            kind: UpstreamErrorKind::ConnectRefused,
        };
        let resp = GatewayError::upstream(&e).into_response();
        assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
        let reason = resp.extensions().get::<ReasonPhrase>().unwrap();
        assert_eq!(
            reason.as_bytes(),
            b"perl backend 127.0.0.1:8006: connection refused"
        );
    }

    #[test]
    fn reason_is_one_clean_line() {
        assert_eq!(sanitize_reason("bad\r\nthing"), "bad");
        assert_eq!(sanitize_reason("caf\u{e9}"), "caf?");
    }
}
