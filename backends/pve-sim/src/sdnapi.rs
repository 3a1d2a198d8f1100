//! HTTP wiring of the SDN core ([`crate::sdn`]): the SDN directory on disk,
//! its lock, flavours and the dry-run marker.
//!
//! The SDN directory ([`crate::SimConfig::sdn_dir`], by default
//! `<interfaces>.sdn/`) plays `/etc/pve/sdn`: every request reads the files,
//! and a successful write replaces the changed ones atomically, so a Perl and
//! a Rust instance pointed at the same directory see each other's writes.
//! Writes (and the apply) hold an exclusive lock on `<sdn dir>.lock` — next
//! to the directory, so a dry run creates nothing inside it — like PVE's
//! cluster-wide SDN lock.
//!
//! The Rust flavour honours `X-PVE-Dry-Run: 1` on writes: full validation,
//! the same answer, nothing written. The Perl flavour ignores the header.
//!
//! The apply (`PUT /cluster/sdn`) commits `.running-config` and, as the
//! `reloadnetworkall` worker runs `pvesh set /nodes/{node}/network` on every
//! node, also applies this node's pending `interfaces.new`.

use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http::{Method, Request, Response};
use hyper::body::Incoming;

use crate::auth::Principal;
use crate::netapi::{apply_pending, lock, write_atomic};
use crate::network::{ApiError, Flavour, Host, MutateOptions, TaskInfo};
use crate::respond::{self, ApiFailure, Format, SimBody};
use crate::sdn::api::{self, SdnParams};
use crate::sdn::{Out, SdnFile, SdnFiles, SdnOutcome, Section};
use crate::server::{Flavor, SimState, read_param_list};

/// One SDN API operation.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Index,
    Apply,
    ZonesList,
    ZoneCreate,
    ZoneGet(String),
    ZoneUpdate(String),
    ZoneDelete(String),
    VnetsList,
    VnetCreate,
    VnetGet(String),
    VnetUpdate(String),
    VnetDelete(String),
    SubnetsList(String),
    SubnetCreate(String),
    SubnetGet(String, String),
    SubnetUpdate(String, String),
    SubnetDelete(String, String),
    ObjectsList(Section),
    ObjectGet(Section, String),
}

impl Op {
    fn route(method: &Method, segs: &[String]) -> Option<Op> {
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let o = |x: &str| x.to_string();
        Some(match (method.clone(), s.as_slice()) {
            (Method::GET, []) => Op::Index,
            (Method::PUT, []) => Op::Apply,
            (Method::GET, ["zones"]) => Op::ZonesList,
            (Method::POST, ["zones"]) => Op::ZoneCreate,
            (Method::GET, ["zones", z]) => Op::ZoneGet(o(z)),
            (Method::PUT, ["zones", z]) => Op::ZoneUpdate(o(z)),
            (Method::DELETE, ["zones", z]) => Op::ZoneDelete(o(z)),
            (Method::GET, ["vnets"]) => Op::VnetsList,
            (Method::POST, ["vnets"]) => Op::VnetCreate,
            (Method::GET, ["vnets", v]) => Op::VnetGet(o(v)),
            (Method::PUT, ["vnets", v]) => Op::VnetUpdate(o(v)),
            (Method::DELETE, ["vnets", v]) => Op::VnetDelete(o(v)),
            (Method::GET, ["vnets", v, "subnets"]) => Op::SubnetsList(o(v)),
            (Method::POST, ["vnets", v, "subnets"]) => Op::SubnetCreate(o(v)),
            (Method::GET, ["vnets", v, "subnets", n]) => Op::SubnetGet(o(v), o(n)),
            (Method::PUT, ["vnets", v, "subnets", n]) => Op::SubnetUpdate(o(v), o(n)),
            (Method::DELETE, ["vnets", v, "subnets", n]) => Op::SubnetDelete(o(v), o(n)),
            (Method::GET, [kind]) => Op::ObjectsList(section_of(kind)?),
            (Method::GET, [kind, id]) => Op::ObjectGet(section_of(kind)?, o(id)),
            _ => return None,
        })
    }

    fn mutates(&self) -> bool {
        matches!(
            self,
            Op::Apply
                | Op::ZoneCreate
                | Op::ZoneUpdate(_)
                | Op::ZoneDelete(_)
                | Op::VnetCreate
                | Op::VnetUpdate(_)
                | Op::VnetDelete(_)
                | Op::SubnetCreate(_)
                | Op::SubnetUpdate(..)
                | Op::SubnetDelete(..)
        )
    }
}

fn section_of(kind: &str) -> Option<Section> {
    match kind {
        "controllers" => Some(Section::Controllers),
        "ipams" => Some(Section::Ipams),
        "dns" => Some(Section::Dns),
        _ => None,
    }
}

/// Reads every SDN file (a missing directory or file is empty).
fn load(dir: &Path) -> std::io::Result<SdnFiles> {
    let mut files = SdnFiles::default();
    for f in SdnFile::ALL {
        match std::fs::read_to_string(dir.join(f.file_name())) {
            Ok(text) => files.set(f, text),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(files)
}

fn store(dir: &Path, writes: &[(SdnFile, String)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (f, text) in writes {
        write_atomic(&dir.join(f.file_name()), text)?;
    }
    Ok(())
}

/// The renderer: Perl's shuffle is seeded from the configured seed, the
/// request and the files, like the network API's (see `netapi`).
fn flavour(st: &SimState, request: &str, files: &SdnFiles) -> Flavour {
    match st.config.flavor {
        Flavor::Perl => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ st.config.seed;
            let texts = SdnFile::ALL.map(|f| files.get(f));
            for part in std::iter::once(request).chain(texts) {
                for b in part.bytes() {
                    h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
                }
            }
            Flavour::perl(h)
        }
        Flavor::Rust => Flavour::rust_with(st.config.divergences.clone()),
    }
}

fn run(
    op: &Op,
    files: &SdnFiles,
    host: &Host,
    params: &SdnParams,
    task: &TaskInfo,
    opts: MutateOptions,
) -> Result<SdnOutcome, ApiError> {
    match op {
        Op::Index => api::index(params),
        Op::Apply => api::apply(files, host, params, task, opts),
        Op::ZonesList => api::zones_list(files, params),
        Op::ZoneCreate => api::zone_create(files, params, opts),
        Op::ZoneGet(z) => api::zone_get(files, z, params),
        Op::ZoneUpdate(z) => api::zone_update(files, z, params, opts),
        Op::ZoneDelete(z) => api::zone_delete(files, z, params, opts),
        Op::VnetsList => api::vnets_list(files, params),
        Op::VnetCreate => api::vnet_create(files, params, opts),
        Op::VnetGet(v) => api::vnet_get(files, v, params),
        Op::VnetUpdate(v) => api::vnet_update(files, v, params, opts),
        Op::VnetDelete(v) => api::vnet_delete(files, v, params, opts),
        Op::SubnetsList(v) => api::subnets_list(files, v, params),
        Op::SubnetCreate(v) => api::subnet_create(files, v, params, opts),
        Op::SubnetGet(v, s) => api::subnet_get(files, v, s, params),
        Op::SubnetUpdate(v, s) => api::subnet_update(files, v, s, params, opts),
        Op::SubnetDelete(v, s) => api::subnet_delete(files, v, s, params, opts),
        Op::ObjectsList(sec) => api::objects_list(files, *sec, params),
        Op::ObjectGet(sec, id) => api::object_get(files, *sec, id, params),
    }
}

/// Serves `/cluster/sdn[/…]` (`segs`: the path after `cluster/sdn`).
pub(crate) async fn handle(
    st: Arc<SimState>,
    format: Format,
    req: Request<Incoming>,
    segs: Vec<String>,
    principal: &Principal,
) -> Response<SimBody> {
    let Some(op) = Op::route(req.method(), &segs) else {
        let mut rel = String::from("/cluster/sdn");
        for s in &segs {
            rel.push('/');
            rel.push_str(s);
        }
        return respond::plain_error(
            501,
            &format!("Method '{} {rel}' not implemented", req.method()),
        );
    };
    let dry_run = st.config.flavor == Flavor::Rust
        && req
            .headers()
            .get("x-pve-dry-run")
            .is_some_and(|v| v.as_bytes() == b"1");
    if op.mutates() {
        let counter = if dry_run {
            &st.stats.dry_runs
        } else {
            &st.stats.writes
        };
        counter.fetch_add(1, Ordering::SeqCst);
        st.stats.arrived.notify_waiters();
    }
    let request_line = format!("{} {}", req.method(), req.uri());
    let params = match read_param_list(req).await {
        Ok(p) => p,
        Err(f) => return respond::failure(format, &f),
    };
    let task = TaskInfo {
        pid: std::process::id(),
        pstart: 0x1000 + u64::from(std::process::id() % 0x1000),
        starttime: crate::auth::now(),
        user: principal.userid().to_owned(),
    };
    let dir = st.config.sdn_dir();
    let interfaces = st.config.interfaces.clone();
    let host = Host {
        node: st.config.node.clone(),
        ..Host::simulated()
    };
    let state = st.clone();
    let result = tokio::task::spawn_blocking(move || {
        let fallback = || Flavour::rust_with(state.config.divergences.clone());
        let _lock = if op.mutates() {
            Some(lock(&dir).map_err(|e| (e, fallback()))?)
        } else {
            None
        };
        let files = load(&dir).map_err(|e| {
            (
                ApiError::internal(format!("unable to read '{}' - {e}", dir.display())),
                fallback(),
            )
        })?;
        let flavour = flavour(&state, &request_line, &files);
        let outcome = run(
            &op,
            &files,
            &host,
            &params,
            &task,
            MutateOptions { dry_run },
        )
        .map_err(|e| (e, flavour.clone()))?;
        if !outcome.dry_run && !outcome.writes.is_empty() {
            store(&dir, &outcome.writes).map_err(|e| {
                (
                    ApiError::internal(format!("unable to write '{}' - {e}", dir.display())),
                    flavour.clone(),
                )
            })?;
            if op == Op::Apply {
                apply_pending(&interfaces).map_err(|e| (e, flavour.clone()))?;
            }
        }
        Ok::<(Out, Flavour), (ApiError, Flavour)>((outcome.data, flavour))
    })
    .await;
    match result {
        Ok(Ok((data, flavour))) => respond::success_body(format, data.render(&flavour)),
        Ok(Err((e, _flavour))) => {
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
