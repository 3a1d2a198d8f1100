//! Responses the way pveproxy formats them.
//!
//! * Headers: `Server: pve-api-daemon/3.0`, `Cache-Control: max-age=0`,
//!   `Pragma: no-cache`, `Expires` = `Date`, `Content-Type:
//!   application/json;charset=UTF-8`, and `Connection: Keep-Alive`, or
//!   `close` for every status >= 400 (pveproxy stops keep-alive after errors).
//! * `/api2/json/`: `{"data": …}`; on error the status code carries the
//!   class, the **reason phrase carries the message**, and the body is
//!   `{"data":null,"message":"…\n"}` plus `"errors"` for parameter errors.
//! * `/api2/extjs/`: always HTTP 200 with `success` (1/0); on error
//!   `message`, `status` and `errors` in the body.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use hyper::ext::ReasonPhrase;
use serde_json::Value;

/// The response body type of the simulator.
pub type SimBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// Wraps bytes as a body.
pub fn full(bytes: impl Into<Bytes>) -> SimBody {
    use http_body_util::BodyExt;
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// The API result format, from the second path segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `/api2/json/`
    Json,
    /// `/api2/extjs/`
    Extjs,
}

/// An API error: status, message (reason phrase) and per-parameter errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// The message (first line becomes the reason phrase).
    pub message: String,
    /// Per-parameter messages.
    pub errors: serde_json::Map<String, Value>,
}

impl ApiFailure {
    /// An error without per-parameter messages.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            errors: serde_json::Map::new(),
        }
    }
}

/// Adds pveproxy's standard headers.
pub fn pve_headers(resp: &mut Response<SimBody>, content_type: &'static str) {
    let status = resp.status();
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    let h = resp.headers_mut();
    let date = HeaderValue::from_str(&date).expect("HTTP date is ASCII");
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=0"));
    h.insert(
        header::CONNECTION,
        HeaderValue::from_static(if status.as_u16() >= 400 {
            "close"
        } else {
            "Keep-Alive"
        }),
    );
    h.insert(header::DATE, date.clone());
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static("pve-api-daemon/3.0"),
    );
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::EXPIRES, date);
}

fn with_reason(status: u16, message: &str, body: String) -> Response<SimBody> {
    let len = body.len();
    let mut resp = Response::new(full(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let first = message.lines().next().unwrap_or("").trim_end();
    if !first.is_empty()
        && let Ok(r) = ReasonPhrase::try_from(first.to_owned())
    {
        resp.extensions_mut().insert(r);
    }
    pve_headers(&mut resp, "application/json;charset=UTF-8");
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// A success whose `data` is already rendered JSON text (so a Perl-flavour
/// renderer can control key order); `extra` members (e.g. `changes`) follow.
pub fn success_raw(format: Format, data_json: &str, extra: &[(&str, String)]) -> Response<SimBody> {
    let mut body = String::with_capacity(data_json.len() + 32);
    body.push('{');
    if format == Format::Extjs {
        body.push_str("\"success\":1,");
    }
    body.push_str("\"data\":");
    body.push_str(data_json);
    for (k, v) in extra {
        body.push_str(&format!(",{}:{}", Value::from(*k), v));
    }
    body.push('}');
    with_reason(200, "OK", body)
}

/// A success whose whole `{"data":…}` body is already rendered (by the
/// network core); extjs gets `"success":1` added in front.
pub fn success_body(format: Format, body: String) -> Response<SimBody> {
    let body = match (format, body.strip_prefix('{')) {
        (Format::Extjs, Some(rest)) => format!("{{\"success\":1,{rest}"),
        _ => body,
    };
    with_reason(200, "OK", body)
}

/// A success with a `serde_json` value as `data`.
pub fn success(format: Format, data: &Value) -> Response<SimBody> {
    success_raw(format, &data.to_string(), &[])
}

/// An error in pveproxy's format for `format`.
pub fn failure(format: Format, f: &ApiFailure) -> Response<SimBody> {
    let mut message = f.message.clone();
    if !message.ends_with('\n') {
        message.push('\n');
    }
    let mut obj = serde_json::Map::new();
    obj.insert("data".into(), Value::Null);
    if !f.errors.is_empty() {
        obj.insert("errors".into(), Value::Object(f.errors.clone()));
    }
    obj.insert("message".into(), Value::from(message));
    match format {
        Format::Json => with_reason(f.status, &f.message, Value::Object(obj).to_string()),
        Format::Extjs => {
            obj.insert("status".into(), Value::from(f.status));
            obj.insert("success".into(), Value::from(0));
            with_reason(200, "OK", Value::Object(obj).to_string())
        }
    }
}

/// A plain error without a formatted body (pveproxy's `error()`), e.g. 501.
pub fn plain_error(status: u16, message: &str) -> Response<SimBody> {
    let mut resp = with_reason(status, message, String::new());
    resp.headers_mut().remove(header::CONTENT_TYPE);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn text(r: Response<SimBody>) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test]
    async fn json_and_extjs_errors() {
        let mut f = ApiFailure::new(400, "Parameter verification failed.");
        f.errors
            .insert("iface".into(), Value::from("interface does not exist"));
        let r = failure(Format::Json, &f);
        assert_eq!(r.status(), 400);
        assert_eq!(
            r.extensions().get::<ReasonPhrase>().unwrap().as_bytes(),
            b"Parameter verification failed."
        );
        assert_eq!(r.headers()["connection"], "close");
        let body: Value = serde_json::from_str(&text(r).await).unwrap();
        assert_eq!(body["errors"]["iface"], "interface does not exist");
        assert_eq!(body["message"], "Parameter verification failed.\n");

        let r = failure(Format::Extjs, &f);
        assert_eq!(r.status(), 200);
        let body: Value = serde_json::from_str(&text(r).await).unwrap();
        assert_eq!(body["success"], 0);
        assert_eq!(body["status"], 400);
    }
}
