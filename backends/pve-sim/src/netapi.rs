//! HTTP wiring of the network core ([`crate::network`]): the files on disk,
//! the write lock, flavours and the dry-run marker.
//!
//! The interfaces file and its pending copy `interfaces.new` are read from
//! disk on every request and written back after a successful change, so two
//! simulators (a Perl and a Rust flavour) pointed at the same file see each
//! other's writes, as the real backends on one node do. Changes take an
//! exclusive lock on `interfaces.lock` next to the file (waiting at most
//! [`LOCK_TIMEOUT`]), like PVE's network lock.
//!
//! The Rust flavour honours `X-PVE-Dry-Run: 1` on writes: full validation and
//! the same answer, nothing written. The Perl flavour ignores the header, as
//! pveproxy ignores headers it does not know.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, UNIX_EPOCH};

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::auth::Principal;
use crate::network::{
    self, ApiError, FileEffect, FileState, FileTime, Flavour, MutateOptions, NetworkFiles, Outcome,
    Params, SimHost, TaskInfo,
};
use crate::respond::{self, ApiFailure, Format, SimBody};
use crate::server::{Flavor, SimState, read_params};

/// How long a write waits for the network lock.
pub(crate) const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

fn mtime(path: &Path) -> std::io::Result<FileTime> {
    let m = std::fs::metadata(path)?.modified()?;
    let d = m.duration_since(UNIX_EPOCH).unwrap_or_default();
    Ok(FileTime {
        secs: d.as_secs() as i64,
        nanos: d.subsec_nanos(),
    })
}

fn pending_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".new");
    PathBuf::from(p)
}

/// Reads the interfaces file and `interfaces.new` (when present).
fn load(path: &Path) -> std::io::Result<NetworkFiles> {
    let interfaces = FileState {
        text: std::fs::read_to_string(path)?,
        mtime: mtime(path)?,
    };
    let pending_path = pending_path(path);
    let pending = match std::fs::read_to_string(&pending_path) {
        Ok(text) => Some(FileState {
            text,
            mtime: mtime(&pending_path)?,
        }),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(NetworkFiles {
        interfaces,
        pending,
    })
}

/// Writes a file atomically (temporary file + rename), like PVE's file_set_contents.
pub(crate) fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

fn store(path: &Path, effect: &FileEffect) -> std::io::Result<()> {
    let pending = pending_path(path);
    match effect {
        FileEffect::WritePending(text) => write_atomic(&pending, text),
        FileEffect::RemovePending => match std::fs::remove_file(&pending) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
        FileEffect::ApplyPending => match std::fs::rename(&pending, path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    }
}

/// Applies the pending `interfaces.new` (what `PUT /nodes/{node}/network`
/// does; the SDN reload worker runs it on every node), under the network lock.
pub(crate) fn apply_pending(path: &Path) -> Result<(), ApiError> {
    let _lock = lock(path)?;
    store(path, &FileEffect::ApplyPending)
        .map_err(|e| ApiError::internal(format!("unable to write '{}' - {e}", path.display())))
}

/// Takes an exclusive lock on `<path>.lock`, waiting up to [`LOCK_TIMEOUT`]
/// (the network lock for the interfaces file, the SDN lock for the SDN
/// directory).
pub(crate) fn lock(path: &Path) -> Result<File, ApiError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| {
            ApiError::internal(format!(
                "can't open lock file '{}' - {e}",
                lock_path.display()
            ))
        })?;
    let deadline = Instant::now() + LOCK_TIMEOUT;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ApiError::internal(format!(
                    "can't lock file '{}' - got timeout",
                    lock_path.display()
                )));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(ApiError::internal(format!(
                    "can't lock file '{}' - {e}",
                    lock_path.display()
                )));
            }
        }
    }
}

/// The network API operation a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    List,
    Create,
    Apply,
    Revert,
    Get,
    Update,
    Delete,
}

impl Op {
    fn mutates(self) -> bool {
        !matches!(self, Op::List | Op::Get)
    }
}

/// The renderer for one answer.
///
/// The Perl flavour's shuffle is seeded from the configured seed, the request
/// and the file contents: different requests and states see different key and
/// list orders (as from different Perl processes), while the same request on
/// the same state answers byte for byte the same, so pass-through can be
/// compared exactly and tests are reproducible.
fn flavour(st: &SimState, request: &str, files: &NetworkFiles) -> Flavour {
    match st.config.flavor {
        Flavor::Perl => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ st.config.seed;
            for part in [request, &files.interfaces.text, files.effective_text()] {
                for b in part.bytes() {
                    h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
            }
            Flavour::perl(h)
        }
        Flavor::Rust => Flavour::rust_with(st.config.divergences.clone()),
    }
}

fn host(st: &SimState) -> SimHost {
    SimHost {
        node: st.config.node.clone(),
        ..SimHost::default()
    }
}

/// Serves `/nodes/{node}/network[/{iface}]`.
pub(crate) async fn handle(
    st: std::sync::Arc<SimState>,
    format: Format,
    req: Request<Incoming>,
    iface: Option<String>,
    principal: &Principal,
) -> Response<SimBody> {
    let op = match (req.method().clone(), iface.is_some()) {
        (Method::GET, false) => Op::List,
        (Method::POST, false) => Op::Create,
        (Method::PUT, false) => Op::Apply,
        (Method::DELETE, false) => Op::Revert,
        (Method::GET, true) => Op::Get,
        (Method::PUT, true) => Op::Update,
        (Method::DELETE, true) => Op::Delete,
        (m, _) => {
            let rel = req
                .uri()
                .path()
                .splitn(4, '/')
                .nth(3)
                .unwrap_or("")
                .to_owned();
            return respond::plain_error(501, &format!("Method '{m} /{rel}' not implemented"));
        }
    };
    let dry_run = st.config.flavor == Flavor::Rust
        && req
            .headers()
            .get("x-pve-dry-run")
            .is_some_and(|v| v.as_bytes() == b"1");
    if op.mutates() {
        if dry_run {
            st.stats.dry_runs.fetch_add(1, Ordering::SeqCst);
        } else {
            st.stats.writes.fetch_add(1, Ordering::SeqCst);
        }
        st.stats.arrived.notify_waiters();
    }
    let request_line = format!("{} {}", req.method(), req.uri());
    let params: Params = match read_params(req).await {
        Ok(p) => p.into_iter().collect(),
        Err(f) => return respond::failure(format, &f),
    };
    let task = TaskInfo {
        pid: std::process::id(),
        pstart: 0x1000 + u64::from(std::process::id() % 0x1000),
        starttime: crate::auth::now(),
        user: principal.userid().to_owned(),
    };
    let path = st.config.interfaces.clone();
    let host = host(&st);
    let opts = MutateOptions { dry_run };
    let state = st.clone();
    let result =
        tokio::task::spawn_blocking(move || -> Result<(Outcome, Flavour), (ApiError, Flavour)> {
            let fallback = || Flavour::rust_with(state.config.divergences.clone());
            let _lock = if op.mutates() {
                Some(lock(&path).map_err(|e| (e, fallback()))?)
            } else {
                None
            };
            let files = load(&path).map_err(|e| {
                (
                    ApiError::internal(format!("unable to read '{}' - {e}", path.display())),
                    fallback(),
                )
            })?;
            let flavour = flavour(&state, &request_line, &files);
            let iface = iface.as_deref().unwrap_or("");
            let outcome = match op {
                Op::List => network::api::list(&files, &host, &params),
                Op::Get => network::api::get(&files, &host, iface, &params),
                Op::Create => network::api::create(&files, &host, &params, opts),
                Op::Update => network::api::update(&files, &host, iface, &params, opts),
                Op::Delete => network::api::delete(&files, &host, iface, &params, opts),
                Op::Revert => network::api::revert(&files, &host, &params, opts),
                Op::Apply => network::api::apply(&files, &host, &params, &task, opts),
            }
            .map_err(|e| (e, flavour.clone()))?;
            if let (Some(effect), false) = (&outcome.effect, outcome.dry_run) {
                store(&path, effect).map_err(|e| {
                    (
                        ApiError::internal(format!("unable to write '{}' - {e}", path.display())),
                        flavour.clone(),
                    )
                })?;
            }
            Ok((outcome, flavour))
        })
        .await;
    match result {
        Ok(Ok((outcome, flavour))) => respond::success_body(format, outcome.render(&flavour)),
        Ok(Err((e, flavour))) => {
            let e = e.for_flavour(&flavour);
            let failure = ApiFailure {
                status: e.status,
                message: e.message,
                errors: e.errors.into_iter().map(|(k, v)| (k, v.into())).collect(),
            };
            respond::failure(format, &failure)
        }
        Err(e) => respond::failure(
            format,
            &ApiFailure::new(500, format!("internal error: {e}")),
        ),
    }
}
