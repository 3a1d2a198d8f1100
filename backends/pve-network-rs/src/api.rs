//! One API request, the way pveproxy and pvedaemon handle it, in their
//! order — each step is where the request can end:
//!
//! 1. method: only `GET`, `POST`, `PUT`, `DELETE` (`501 method 'HEAD' not
//!    available`);
//! 2. `/api2/FORMAT/PATH` (`501 no such uri`);
//! 3. authentication ([`crate::auth`]; `401`, empty body, 3 s delay);
//! 4. body rules: a body only on `POST`/`PUT` (`501 Unexpected content for
//!    method 'GET'`), at most 512 KiB (`501 for data too large`), form or
//!    JSON (`506 upload 'Content-Type '…' not implemented`);
//! 5. format `json` or `extjs` (`501 no formatter for uri …`);
//! 6. parameters (query over body, see [`pve_network_core::params`]);
//! 7. the handler for method and path (`501 Method 'M /path' not
//!    implemented`);
//! 8. a body or query `node`/`iface` that differs from the path (`400 …
//!    duplicate parameter (already defined in URI) with conflicting
//!    values!`);
//! 9. permission on `/nodes/{node}` (`403 Permission check failed
//!    (/nodes/pve1, Sys.Modify)`; the list needs no privilege);
//! 10. this node only (`500`: the backend does not proxy to other nodes);
//! 11. the phase guard for real writes ([`crate::guard`], `403`);
//! 12. schema and handler ([`pve_network_core::api`]) under the network
//!     lock for create, update and delete; `X-PVE-Dry-Run: 1` answers the
//!     same and writes nothing (an apply then starts no task).

use std::sync::Arc;
use std::time::Duration;

use pve_network_core::api::{self as ops, ApiError, Host, MutateOptions, Operation, Outcome};
use pve_network_core::fs::{self as netfs, LOCK_TIMEOUT};
use pve_network_core::params::{ParamValue, RawParams};
use pve_network_core::wire::{self, Format};
use pve_network_core::{FileEffect, ResponseData, Value};

use crate::auth::usercfg::{UserConfig, normalize_path};
use crate::auth::{AuthFailure, Authenticator, Credentials, FAILURE_DELAY, Identity, acl};
use crate::guard::PhaseGuard;
use crate::links::LinkSource;
use crate::paths::HostPaths;
use crate::worker::TaskSpawner;

/// The largest request body pveproxy reads.
pub const MAX_BODY: usize = 512 * 1024;

/// A request as the server read it.
#[derive(Debug)]
pub struct Request {
    /// The method.
    pub method: http::Method,
    /// The path as sent (percent-encoded).
    pub path: String,
    /// The query string.
    pub query: Option<String>,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body (`None` when it was larger than [`MAX_BODY`]).
    pub body: Option<bytes::Bytes>,
}

/// An answer before HTTP framing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Body and whether it is JSON (`application/json;charset=UTF-8`); no
    /// body means no `Content-Length` either.
    pub body: Option<(String, bool)>,
    /// Hold the answer back this long (failed authentication).
    pub delay: Option<Duration>,
}

impl Response {
    fn plain(status: u16, message: &str) -> Self {
        Self {
            status,
            reason: wire::reason_phrase(message),
            body: Some((message.to_string(), false)),
            delay: None,
        }
    }

    fn empty(status: u16, reason: &str) -> Self {
        Self {
            status,
            reason: reason.to_string(),
            body: None,
            delay: None,
        }
    }

    fn wire(w: wire::WireResponse) -> Self {
        Self {
            status: w.status,
            reason: w.reason,
            body: Some((w.body, true)),
            delay: None,
        }
    }

    fn error(format: Format, e: &ApiError) -> Self {
        Self::wire(wire::error(format, e))
    }
}

/// The backend of one node.
#[derive(Debug)]
pub struct Backend {
    node: String,
    paths: HostPaths,
    links: LinkSource,
    auth: Authenticator,
    guard: PhaseGuard,
    tasks: TaskSpawner,
    cache: crate::snapshot::SnapshotCache,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `^/api2/+([a-z][a-z0-9]+)(/.*)?$`
fn split_api_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/api2/")?.trim_start_matches('/');
    let (fmt, rel) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut chars = fmt.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && fmt.len() >= 2
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    ok.then_some((fmt, rel))
}

/// `/nodes/{node}/network[/{iface}]` with PVE's `\S+` path parameters.
fn route(rel: &str) -> Option<(String, Option<String>)> {
    let rest = rel.strip_prefix("/nodes/")?;
    let mut parts = rest.split('/');
    let node = parts.next()?;
    if parts.next()? != "network" {
        return None;
    }
    let iface = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let param = |s: &str| !s.is_empty() && !s.contains(char::is_whitespace);
    if !param(node) || iface.is_some_and(|i| !param(i)) {
        return None;
    }
    Some((node.to_string(), iface.map(str::to_string)))
}

fn body_rule(req: &Request) -> Option<Response> {
    let Some(body) = &req.body else {
        return Some(Response::plain(501, "for data too large"));
    };
    let m = &req.method;
    if !body.is_empty() && m != http::Method::POST && m != http::Method::PUT {
        return Some(Response::plain(
            501,
            &format!("Unexpected content for method '{m}'"),
        ));
    }
    if !body.is_empty()
        && let Some(ct) = req.headers.get(http::header::CONTENT_TYPE)
    {
        let full = String::from_utf8_lossy(ct.as_bytes()).into_owned();
        let base = full.split([';', ',']).next().unwrap_or("").trim();
        if base != "application/x-www-form-urlencoded" && base != "application/json" {
            return Some(Response::plain(
                506,
                &format!("upload 'Content-Type '{full}' not implemented"),
            ));
        }
    }
    None
}

impl Backend {
    /// The backend of `node` on the host `paths`, the kernel read from
    /// `links`, apply tasks run by `tasks`.
    pub fn new(
        node: impl Into<String>,
        paths: HostPaths,
        links: LinkSource,
        tasks: TaskSpawner,
    ) -> Self {
        let node = node.into();
        Self {
            auth: Authenticator::new(crate::auth::AuthPaths::in_pve_dir(&paths.pve_dir())),
            guard: PhaseGuard::new(node.clone(), paths.clone()),
            node,
            paths,
            links,
            tasks,
            cache: crate::snapshot::SnapshotCache::new(),
        }
    }

    /// The node this backend serves.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Answers one request.
    pub async fn handle(self: &Arc<Self>, req: Request) -> Response {
        let m = &req.method;
        if !matches!(m.as_str(), "GET" | "POST" | "PUT" | "DELETE") {
            return Response::empty(501, &format!("method '{m}' not available"));
        }
        let path = crate::auth::ticket::uri_unescape(&req.path);
        let Some((fmt, rel)) = split_api_path(&path) else {
            return Response::plain(501, "no such uri");
        };
        let creds = Credentials::from_headers(&req.headers);
        let identity = match self.auth.authenticate(m, &creds, now()) {
            Ok(i) => i,
            Err(f) => return self.auth_failure(&req, &f),
        };
        if let Some(r) = body_rule(&req) {
            return r;
        }
        let Some(format) = Format::from_segment(fmt) else {
            return Response::plain(501, &format!("no formatter for uri {rel}, {fmt}"));
        };
        let ct = req
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let body = req.body.as_deref().unwrap_or_default();
        let raw = match RawParams::collect(m.as_str(), req.query.as_deref(), ct, body) {
            Ok(r) => r,
            Err(e) => return Response::plain(500, &format!("{e}\n")),
        };
        let not_implemented =
            || Response::error(format, &ApiError::not_implemented(m.as_str(), rel));
        let Some((node, iface)) = route(rel) else {
            return not_implemented();
        };
        let Some(op) = Operation::route(m.as_str(), iface.is_some()) else {
            return not_implemented();
        };
        if let Some(e) = duplicate_uri_param(&raw, &node, iface.as_deref()) {
            return Response::error(format, &e);
        }
        let users = self.auth.user_config();
        if let Some(e) = permission(&users, &identity, op, &node) {
            return Response::error(format, &e);
        }
        if node != self.node && node != "localhost" {
            return Response::error(
                format,
                &ApiError::internal(format!(
                    "this Rust network backend serves node '{}' only, not '{node}' (no proxying to other nodes)",
                    self.node
                )),
            );
        }
        let dry_run = req
            .headers
            .get("x-pve-dry-run")
            .is_some_and(|v| v.as_bytes() == b"1");
        if op.mutates()
            && !dry_run
            && let Err(reason) = self.guard.allow(op)
        {
            tracing::warn!(operation = op.name(), user = %identity.userid, %reason, "write refused by phase");
            return Response::error(format, &ApiError::with_status(403, reason));
        }
        let params = match ops::normalize_params(op, &raw) {
            Ok(p) => p,
            Err(e) => return Response::error(format, &e),
        };
        let this = self.clone();
        let iface2 = iface.clone();
        let user = identity.userid.clone();
        let result = tokio::task::spawn_blocking(move || {
            this.run(op, iface2.as_deref(), &params, &user, &users, dry_run)
        })
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("internal error: {e}"))));
        match result {
            Ok(outcome) => {
                tracing::debug!(operation = op.name(), user = %identity.userid, dry_run, "ok");
                Response::wire(wire::success(format, &outcome))
            }
            Err(e) => {
                tracing::info!(operation = op.name(), user = %identity.userid, status = e.status, error = %e.message, "failed");
                Response::error(format, &e)
            }
        }
    }

    fn auth_failure(&self, req: &Request, f: &AuthFailure) -> Response {
        tracing::warn!(
            method = %req.method,
            path = %req.path,
            reason = f.detail(),
            "authentication failure"
        );
        Response {
            delay: Some(FAILURE_DELAY),
            ..Response::empty(401, f.reason())
        }
    }

    fn snapshot(&self) -> Result<Arc<crate::snapshot::Snapshot>, ApiError> {
        self.cache.load(&self.node, &self.paths, &self.links)
    }

    fn run(
        &self,
        op: Operation,
        iface: Option<&str>,
        params: &ops::Params,
        user: &str,
        users: &UserConfig,
        dry_run: bool,
    ) -> Result<Outcome, ApiError> {
        let net = &self.paths.network;
        let opts = MutateOptions { dry_run };
        let iface = iface.unwrap_or("");
        match op {
            Operation::List => {
                let snap = self.snapshot()?;
                let mut out = ops::list(&snap.files, &snap.host, params)?;
                out.changes = snap.changes(|f| crate::diff::changes(&self.paths, f));
                self.decorate_list(&mut out, &snap.host, user, users);
                Ok(out)
            }
            Operation::Get => {
                let snap = self.snapshot()?;
                let mut out = ops::get(&snap.files, &snap.host, iface, params)?;
                if let (ResponseData::Object(d), pve_network_core::Links::Known(links)) =
                    (&mut out.data, &snap.host.links)
                    && let Some(names) = links.altnames_of(iface)
                {
                    d.set(
                        "altnames",
                        Value::List(names.into_iter().map(Some).collect()),
                    );
                }
                Ok(out)
            }
            Operation::Create | Operation::Update | Operation::Delete => {
                // a dry run changes nothing, so like a read it takes no lock
                // (and creates no lock file)
                let _lock = if dry_run {
                    None
                } else {
                    Some(netfs::lock(&net.lock, LOCK_TIMEOUT)?)
                };
                let snap = self.snapshot()?;
                let (files, host) = (&snap.files, &snap.host);
                let out = match op {
                    Operation::Create => ops::create(files, host, params, opts)?,
                    Operation::Update => ops::update(files, host, iface, params, opts)?,
                    _ => ops::delete(files, host, iface, params, opts)?,
                };
                self.commit(&out)?;
                Ok(out)
            }
            Operation::Revert => {
                let snap = self.snapshot()?;
                let out = ops::revert(&snap.files, &snap.host, params, opts)?;
                self.commit(&out)?;
                Ok(out)
            }
            Operation::Apply => {
                let snap = self.snapshot()?;
                let paths = &self.paths;
                let request = ops::prepare_apply(&snap.host, params, || {
                    crate::worker::ifreload_version(&paths.ifreload())
                })?;
                let upid = if dry_run {
                    crate::worker::dry_run_upid(&self.node, user)
                } else {
                    self.tasks.start(&self.node, user, &request)?
                };
                Ok(Outcome {
                    data: ResponseData::Upid(upid),
                    changes: None,
                    effect: Some(FileEffect::ApplyPending),
                    dry_run,
                })
            }
        }
    }

    fn commit(&self, out: &Outcome) -> Result<(), ApiError> {
        if let (Some(effect), false) = (&out.effect, out.dry_run) {
            netfs::carry_out(&self.paths.network, effect)?;
        }
        Ok(())
    }

    /// The list's permission filter and altnames, as PVE's index adds them.
    fn decorate_list(&self, out: &mut Outcome, host: &Host, user: &str, users: &UserConfig) {
        let ResponseData::List(items) = &mut out.data else {
            return;
        };
        let links = match &host.links {
            pve_network_core::Links::Known(l) => Some(l),
            pve_network_core::Links::FromApplied { .. } => None,
        };
        for (name, d) in items.iter_mut() {
            let kind = d.kind();
            let hidden = (kind == "bridge" || kind == "OVSBridge")
                && user != "root@pam"
                && !acl::can_access_sdn_bridge(users, user, "localnetwork", name);
            if hidden {
                // PVE deletes the entry, then sets its altnames on what is
                // left: a hidden bridge with altnames shows only those
                *d = pve_network_core::Iface::new();
            }
            if let Some(names) = links.and_then(|l| l.altnames_of(name)) {
                d.set(
                    "altnames",
                    Value::List(names.into_iter().map(Some).collect()),
                );
            }
        }
        items.retain(|(_, d)| !d.is_empty());
    }
}

/// The duplicate-parameter rule: a body or query `node`/`iface` must equal
/// the path's (checked in sorted order, the first conflict reported).
fn duplicate_uri_param(raw: &RawParams, node: &str, iface: Option<&str>) -> Option<ApiError> {
    const MSG: &str = "duplicate parameter (already defined in URI) with conflicting values!";
    for (key, value) in raw.iter() {
        let uri = match key.as_str() {
            "node" => Some(node),
            "iface" => iface,
            _ => None,
        };
        let Some(uri) = uri else { continue };
        let same = matches!(value, ParamValue::Str(v) if v == uri);
        if !same {
            return Some(ApiError::param(key, MSG));
        }
    }
    None
}

/// The method's permission on `/nodes/{node}`.
fn permission(users: &UserConfig, who: &Identity, op: Operation, node: &str) -> Option<ApiError> {
    let privilege = op.privilege()?;
    if who.userid == "root@pam" {
        return None;
    }
    let node_path = if node.is_empty() { "-" } else { node };
    let path = normalize_path(&format!("/nodes/{node_path}")).unwrap_or_default();
    let granted =
        !path.is_empty() && acl::permissions(users, &who.userid, &path).contains(privilege);
    (!granted).then(|| {
        ApiError::with_status(
            403,
            format!("Permission check failed ({path}, {privilege})\n"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            split_api_path("/api2/json/nodes/pve/network"),
            Some(("json", "/nodes/pve/network"))
        );
        assert_eq!(split_api_path("/api2//extjs"), Some(("extjs", "/")));
        assert_eq!(split_api_path("/api2/x/nodes"), None);
        assert_eq!(split_api_path("/api2/JSON/nodes"), None);
        assert_eq!(split_api_path("/api2"), None);
        assert_eq!(route("/nodes/pve/network"), Some(("pve".into(), None)));
        assert_eq!(
            route("/nodes/pve/network/vmbr0"),
            Some(("pve".into(), Some("vmbr0".into())))
        );
        assert_eq!(route("/nodes/pve/network/vmbr0/extra"), None);
        assert_eq!(route("/nodes/pve/network/"), None);
        assert_eq!(route("/nodes/pve/tasks"), None);
    }

    #[test]
    fn duplicate_parameters() {
        let raw = RawParams::from_pairs([("iface", "vmbr9"), ("type", "bridge")]);
        let e = duplicate_uri_param(&raw, "pve", Some("vmbr0")).unwrap();
        assert_eq!(
            e.errors["iface"],
            "duplicate parameter (already defined in URI) with conflicting values!"
        );
        let raw = RawParams::from_pairs([("iface", "vmbr0"), ("node", "pve")]);
        assert!(duplicate_uri_param(&raw, "pve", Some("vmbr0")).is_none());
        // a body iface on the collection is an ordinary parameter
        let raw = RawParams::from_pairs([("iface", "vmbr0")]);
        assert!(duplicate_uri_param(&raw, "pve", None).is_none());
    }

    #[test]
    fn permission_messages() {
        let users = UserConfig::parse(
            "user:audit@pve:1:\nacl:1:/nodes:audit@pve:PVEAuditor:\nuser:none@pve:1:\n",
        );
        let who = |u: &str| Identity {
            userid: u.into(),
            method: crate::auth::Method::Ticket,
        };
        assert!(permission(&users, &who("audit@pve"), Operation::Get, "pve1").is_none());
        let e = permission(&users, &who("audit@pve"), Operation::Create, "pve1").unwrap();
        assert_eq!(
            (e.status, e.message.as_str()),
            (403, "Permission check failed (/nodes/pve1, Sys.Modify)")
        );
        let e = permission(&users, &who("none@pve"), Operation::Get, "pve1").unwrap();
        assert_eq!(
            e.message,
            "Permission check failed (/nodes/pve1, Sys.Audit)"
        );
        assert!(permission(&users, &who("none@pve"), Operation::List, "pve1").is_none());
        assert!(permission(&users, &who("root@pam"), Operation::Apply, "pve1").is_none());
    }
}
