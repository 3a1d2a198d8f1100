//! The admin API `migration-ctl` talks to: HTTP/1.1 over a Unix socket
//! (mode 0600). Peers are identified with `SO_PEERCRED`; only root (and the
//! gateway's own user, for unprivileged test runs) may use it.
//!
//! | method | path | answer |
//! |---|---|---|
//! | GET | `/health` | [`Health`](crate::control::Health) |
//! | GET | `/phase` | [`PhaseView`](crate::control::PhaseView) |
//! | POST | `/phase` | `{"phase", "node"?, "cluster"?, "expect_digest"?}` → `PhaseView`; 409 when the file changed |
//! | GET | `/trip` | `{"state": "armed"｜"tripped", "trip"?}` |
//! | POST | `/trip/reset` | `{"lifted"?, "configured", "effective"}` |
//! | POST | `/reload` | [`ReloadStatus`](crate::control::ReloadStatus) |
//! | GET | `/evidence/summary?since=15m&endpoint=ID` | `[SummaryRow]` |
//! | GET | `/metrics` | OpenMetrics text |
//! | GET | `/diagnostics` | a tar.gz bundle |
//!
//! Errors are JSON `{"error": "…"}` with a fitting status.

use std::convert::Infallible;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::body::{self, Body};
use crate::control::{Control, PhaseSetError};
use crate::engine::TripState;

/// Why the admin socket could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("admin socket {}: {source}", path.display())]
pub struct AdminError {
    /// The socket path.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

/// The user ids allowed on the socket: root and the gateway's own.
fn allowed_uids() -> [u32; 2] {
    let own = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0);
    [0, own]
}

/// Binds the socket and serves until `shutdown`.
///
/// # Errors
/// When the directory or the socket cannot be created.
pub async fn start(
    path: &Path,
    control: Arc<Control>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AdminError> {
    let err = |source| AdminError {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(err)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    // A socket left by a previous run (nobody answers on it any more).
    if std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
    let listener = UnixListener::bind(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    let allowed = allowed_uids();
    let path = path.to_owned();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        continue;
                    }
                },
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let uid = stream.peer_cred().map(|c| c.uid()).ok();
            if !uid.is_some_and(|u| allowed.contains(&u)) {
                tracing::warn!(uid = ?uid, "admin connection refused: peer is not root");
                drop(stream);
                continue;
            }
            let control = control.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let control = control.clone();
                    async move { Ok::<_, Infallible>(route(&control, req).await) }
                });
                let mut b = http1::Builder::new();
                b.timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(30));
                let _ = b.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
        let _ = std::fs::remove_file(&path);
    });
    Ok(())
}

fn json_response(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let bytes = serde_json::to_vec_pretty(value).unwrap_or_default();
    let mut r = Response::new(body::full(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, &json!({ "error": message.into() }))
}

/// `15m`, `2h`, `30s`, `1d` → a duration.
pub fn parse_since(s: &str) -> Option<Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PhaseSet {
    phase: String,
    node: Option<String>,
    #[serde(default)]
    cluster: bool,
    expect_digest: Option<String>,
}

async fn route(control: &Control, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let param = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let engine = control.engine();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/health") => json_response(StatusCode::OK, &control.health().await),
        (Method::GET, "/phase") => json_response(StatusCode::OK, &control.phase_view()),
        (Method::POST, "/phase") => {
            let body = match req.into_body().collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
            };
            let set: PhaseSet = match serde_json::from_slice(&body) {
                Ok(s) => s,
                Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid request: {e}")),
            };
            let node = match (set.cluster, &set.node) {
                (true, Some(_)) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "give either a node or the cluster default",
                    );
                }
                (true, None) => None,
                (false, Some(n)) => Some(n.clone()),
                (false, None) => Some(control.config().node.clone()),
            };
            match control
                .set_phase(&set.phase, node.as_deref(), set.expect_digest.as_deref())
                .await
            {
                Ok(view) => json_response(StatusCode::OK, &view),
                Err(e @ PhaseSetError::Conflict { .. }) => {
                    error(StatusCode::CONFLICT, e.to_string())
                }
                Err(e @ PhaseSetError::Io { .. }) => {
                    error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
                }
                Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
            }
        }
        (Method::GET, "/trip") => {
            let (configured, effective) = engine.phases();
            match engine.trip().state() {
                TripState::Armed => json_response(
                    StatusCode::OK,
                    &json!({"state": "armed", "configured": configured.as_str(), "effective": effective.as_str()}),
                ),
                TripState::Tripped(r) => json_response(
                    StatusCode::OK,
                    &json!({"state": "tripped", "trip": r, "configured": configured.as_str(), "effective": effective.as_str()}),
                ),
            }
        }
        (Method::POST, "/trip/reset") => match engine.reset_trip() {
            Ok(lifted) => {
                let (configured, effective) = engine.phases();
                json_response(
                    StatusCode::OK,
                    &json!({"lifted": lifted, "configured": configured.as_str(), "effective": effective.as_str()}),
                )
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        (Method::POST, "/reload") => json_response(StatusCode::OK, &control.reload().await),
        (Method::GET, "/evidence/summary") => {
            let since = match param("since") {
                None => None,
                Some(s) => match parse_since(&s) {
                    Some(d) => Some(SystemTime::now() - d),
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            format!("invalid since '{s}' (e.g. 15m, 2h, 1d)"),
                        );
                    }
                },
            };
            engine.recorder().flush().await;
            let dir = control.config().evidence.dir.clone();
            let endpoint = param("endpoint");
            let rows = tokio::task::spawn_blocking(move || {
                crate::evidence::summary(&dir, since, endpoint.as_deref())
            })
            .await
            .unwrap_or_default();
            json_response(StatusCode::OK, &rows)
        }
        (Method::GET, "/metrics") => metrics_response(engine.metrics()),
        (Method::GET, "/diagnostics") => match diagnostics(control).await {
            Ok(bytes) => {
                let mut r = Response::new(body::full(bytes));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/gzip"),
                );
                r
            }
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no such admin resource: {} {path}", req.method()),
        ),
    }
}

/// A client call to the admin socket (what `migration-ctl` and the demo use).
///
/// # Errors
/// When the socket cannot be reached or the connection breaks (for a peer
/// that is not allowed, the gateway closes the connection without an answer).
pub async fn call(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(StatusCode, Bytes)> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    let bytes = body.map(|b| Bytes::from(b.to_string())).unwrap_or_default();
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body::full(bytes))
        .map_err(std::io::Error::other)?;
    let resp = send
        .send_request(req)
        .await
        .map_err(std::io::Error::other)?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(std::io::Error::other)?
        .to_bytes();
    Ok((status, body))
}

/// The metrics in the text format Prometheus scrapes.
pub fn metrics_response(metrics: &crate::metrics::Metrics) -> Response<Body> {
    let mut r = Response::new(body::full(Bytes::from(metrics.encode())));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

/// The configuration text with secret-looking values replaced.
fn redacted_config(text: &str) -> String {
    let Ok(mut doc) = text.parse::<toml_edit::DocumentMut>() else {
        return "# (the configuration file does not parse; not included)\n".into();
    };
    fn walk(table: &mut dyn toml_edit::TableLike) {
        for (key, item) in table.iter_mut() {
            if crate::redact::is_secret_key(key.get()) && item.is_value() {
                *item = toml_edit::value(crate::redact::REDACTED);
            } else if let Some(t) = item.as_table_like_mut() {
                walk(t);
            }
        }
    }
    walk(doc.as_table_mut());
    doc.to_string()
}

/// A tar.gz with health, the redacted configuration, the end of
/// migration.log, the evidence summary of the last day, metrics and the trip state.
async fn diagnostics(control: &Control) -> std::io::Result<Vec<u8>> {
    let engine = control.engine();
    let config = control.config();
    let health = serde_json::to_vec_pretty(&control.health().await)?;
    engine.recorder().flush().await;
    let config_text = match &config.source {
        Some(p) => redacted_config(&tokio::fs::read_to_string(p).await.unwrap_or_default()),
        None => format!("# no configuration file; flags: {:?}\n", config.overrides),
    };
    let log_tail = tokio::fs::read_to_string(&config.migration_log)
        .await
        .map(|t| {
            let lines: Vec<&str> = t.lines().collect();
            let start = lines.len().saturating_sub(1000);
            lines[start..].join("\n") + "\n"
        })
        .unwrap_or_default();
    let dir = config.evidence.dir.clone();
    let summary = tokio::task::spawn_blocking(move || {
        crate::evidence::summary(
            &dir,
            Some(SystemTime::now() - Duration::from_secs(86_400)),
            None,
        )
    })
    .await
    .unwrap_or_default();
    let trip = match engine.trip().state() {
        TripState::Tripped(r) => serde_json::to_value(r).unwrap_or(Value::Null),
        TripState::Armed => json!({"state": "armed"}),
    };
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("health.json", health),
        ("migration.toml", config_text.into_bytes()),
        ("migration.log.tail", log_tail.into_bytes()),
        (
            "evidence-summary.json",
            serde_json::to_vec_pretty(&summary)?,
        ),
        ("metrics.txt", engine.metrics().encode().into_bytes()),
        ("trip.json", serde_json::to_vec_pretty(&trip)?),
    ];
    tokio::task::spawn_blocking(move || {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::default(),
        ));
        let mtime = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_mtime(mtime);
            h.set_cksum();
            tar.append_data(
                &mut h,
                format!("pve-network-migration-diagnostics/{name}"),
                data.as_slice(),
            )?;
        }
        let mut gz = tar.into_inner()?;
        gz.flush()?;
        gz.finish()
    })
    .await
    .map_err(std::io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_redaction() {
        assert_eq!(parse_since("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_since("1d"), Some(Duration::from_secs(86_400)));
        assert_eq!(parse_since("15"), None);
        assert_eq!(parse_since("m"), None);
        let out = redacted_config(
            "node = \"pve1\"\n[backends.rust]\nurl = \"https://x\"\napi_token_secret = \"s3cr3t\" # note\n",
        );
        assert!(
            out.contains("node = \"pve1\"") && !out.contains("s3cr3t"),
            "{out}"
        );
    }
}
