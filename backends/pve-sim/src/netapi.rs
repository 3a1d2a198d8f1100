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
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;

use crate::auth::Principal;
use crate::network::fs::{self, NetworkPaths};
use crate::network::{
    self, ApiError, Flavour, Host, Links, MutateOptions, NetworkFiles, Operation, Outcome, Params,
    RenderError, RenderOutcome, TaskInfo,
};
use crate::respond::{self, ApiFailure, Format, SimBody};
use crate::server::{Flavor, SimState, read_params};

/// How long a write waits for the network lock.
pub(crate) const LOCK_TIMEOUT: Duration = Duration::from_secs(10);

/// Writes a file atomically (temporary file + rename), like PVE's file_set_contents.
pub(crate) fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Applies the pending `interfaces.new` (what `PUT /nodes/{node}/network`
/// does; the SDN reload worker runs it on every node), under the network lock.
pub(crate) fn apply_pending(path: &Path) -> Result<(), ApiError> {
    let paths = NetworkPaths::for_file(path);
    let _lock = fs::lock(&paths.lock, fs::LOCK_TIMEOUT)?;
    fs::rename_pending(&paths).map(|_| ())
}

/// Takes an exclusive lock on `<path>.lock`, waiting up to [`LOCK_TIMEOUT`]
/// (the SDN lock for the SDN directory).
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

fn host(st: &SimState) -> Host {
    Host {
        node: st.config.node.clone(),
        links: Links::FromApplied {
            extra_nics: Vec::new(),
        },
        ..Host::simulated()
    }
}

/// What the simulated `ifreload -V` prints.
pub(crate) fn ifreload_version() -> Result<Option<String>, ApiError> {
    Ok(Some("ifupdown2:3.3.0-1+pmx9".to_string()))
}

/// Serves `/nodes/{node}/network[/{iface}]`.
pub(crate) async fn handle(
    st: std::sync::Arc<SimState>,
    format: Format,
    req: Request<Incoming>,
    iface: Option<String>,
    principal: &Principal,
) -> Response<SimBody> {
    let op = match Operation::route(req.method().as_str(), iface.is_some()) {
        Some(op) => op,
        None => {
            let m = req.method().clone();
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
            let paths = NetworkPaths::for_file(&path);
            // A dry run changes nothing: like a read it does not wait for the
            // lock (it must answer from the state it finds, not from the one
            // a write it waited for leaves behind).
            let _lock = if op.mutates() && !opts.dry_run {
                Some(fs::lock(&paths.lock, fs::LOCK_TIMEOUT).map_err(|e| (e, fallback()))?)
            } else {
                None
            };
            let files = fs::read(&paths).map_err(|e| (e, fallback()))?;
            let flavour = flavour(&state, &request_line, &files);
            let iface = iface.as_deref().unwrap_or("");
            let outcome = match op {
                Operation::List => network::api::list(&files, &host, &params),
                Operation::Get => network::api::get(&files, &host, iface, &params),
                Operation::Create => network::api::create(&files, &host, &params, opts),
                Operation::Update => network::api::update(&files, &host, iface, &params, opts),
                Operation::Delete => network::api::delete(&files, &host, iface, &params, opts),
                Operation::Revert => network::api::revert(&files, &host, &params, opts),
                Operation::Apply => {
                    network::api::apply(&files, &host, &params, ifreload_version, &task, opts)
                }
            }
            .map_err(|e| (e, flavour.clone()))?;
            if let (Some(effect), false) = (&outcome.effect, outcome.dry_run) {
                fs::carry_out(&paths, effect).map_err(|e| (e, flavour.clone()))?;
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
