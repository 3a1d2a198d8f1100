//! The simulator's TLS listener, fault injection and request dispatch.
//!
//! HTTP/1.1 only, as pveproxy. Every request is recorded (method, path,
//! selected headers) so tests can assert what a backend actually received.
//!
//! One request goes through [`serve`]: the control endpoint `/_sim/…` is
//! answered first (never recorded, never faulted); everything else is
//! recorded in [`Stats`], then the active faults are planned
//! ([`crate::faults`]), the request is dispatched to its handler (unless the
//! plan says `500`), and the answer is delayed, reset or cut as planned.
//!
//! The accept loop also obeys the `refuse` fault: it drops the listening
//! socket while the fault is set and binds the same address again when it is
//! cleared.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, header};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth::{Auth, AuthError, Principal};
use crate::conn::{ConnControl, FaultIo, WriteMode};
use crate::faults::{Fault, FaultKind, FaultState, Plan, Shape};
use crate::respond::{self, ApiFailure, Format, SimBody};

/// Which backend the simulator plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// pveproxy + PVE's Perl network code.
    #[default]
    Perl,
    /// The Rust port.
    Rust,
}

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind (port 0 for tests).
    pub listen: SocketAddr,
    /// Certificate chain (PEM file).
    pub tls_cert: PathBuf,
    /// Private key (PEM file).
    pub tls_key: PathBuf,
    /// Node name this simulator is.
    pub node: String,
    /// `(userid, password)` pairs.
    pub users: Vec<(String, String)>,
    /// `(user@realm!tokenid, secret)` pairs.
    pub tokens: Vec<(String, String)>,
    /// Key shared by simulators that must accept each other's tickets.
    pub auth_key: String,
    /// The `/etc/network/interfaces` file.
    pub interfaces: PathBuf,
    /// Which backend to play.
    pub flavor: Flavor,
    /// Seed of the Perl flavour's key and list order shuffle.
    pub seed: u64,
    /// Named divergences of the Rust flavour.
    pub divergences: crate::network::Divergences,
    /// The SDN configuration directory (PVE's `/etc/pve/sdn`); `None` means
    /// `<interfaces>.sdn` next to the interfaces file (see [`SimConfig::sdn_dir`]).
    pub sdn_dir: Option<PathBuf>,
    /// Faults active from the start (see [`crate::faults`]).
    pub faults: Vec<Fault>,
    /// The secret of the control endpoint `/_sim/faults`; `None` disables
    /// the endpoint (it answers 404).
    pub control_secret: Option<String>,
    /// A node's `/etc/pve` with its real ticket keys: tickets and CSRF tokens
    /// are then PVE's own (see [`crate::auth::Auth::with_pve_keys`]), so the
    /// Rust backend on the same node accepts the simulator's logins.
    pub pve_keys: Option<PathBuf>,
}

impl SimConfig {
    /// The SDN configuration directory: [`SimConfig::sdn_dir`] or, by default,
    /// `<interfaces>.sdn` (e.g. `/tmp/x/interfaces.sdn/`), so two simulators
    /// pointed at the same interfaces file share their SDN state too.
    pub fn sdn_dir(&self) -> PathBuf {
        self.sdn_dir.clone().unwrap_or_else(|| {
            let mut p = self.interfaces.as_os_str().to_owned();
            p.push(".sdn");
            PathBuf::from(p)
        })
    }

    /// Defaults for tests: loopback, node `pve1`, user `root@pam` / `secret`,
    /// token `root@pam!ci` / `00000000-0000-0000-0000-000000000000`.
    pub fn for_tests(tls_cert: PathBuf, tls_key: PathBuf, interfaces: PathBuf) -> Self {
        Self {
            listen: "127.0.0.1:0".parse().expect("literal"),
            tls_cert,
            tls_key,
            node: "pve1".into(),
            users: vec![("root@pam".into(), "secret".into())],
            tokens: vec![(
                "root@pam!ci".into(),
                "00000000-0000-0000-0000-000000000000".into(),
            )],
            auth_key: "pve-sim".into(),
            interfaces,
            flavor: Flavor::Perl,
            seed: 0,
            divergences: crate::network::Divergences::none(),
            sdn_dir: None,
            faults: Vec::new(),
            control_secret: None,
            pve_keys: None,
        }
    }
}

/// One request as the simulator received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// HTTP method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// `Host` header.
    pub host: Option<String>,
    /// `X-Forwarded-For` header.
    pub forwarded_for: Option<String>,
    /// `X-Forwarded-Proto` header.
    pub forwarded_proto: Option<String>,
    /// `X-PVE-Dry-Run` header.
    pub dry_run: Option<String>,
    /// Every header as received.
    pub headers: http::HeaderMap,
}

/// Counters a test can read.
#[derive(Debug, Default)]
pub struct Stats {
    /// Requests received.
    pub requests: AtomicU64,
    /// Body bytes received by the upload endpoint.
    pub upload_bytes: AtomicU64,
    /// Upload requests whose head has arrived (body may still be streaming).
    pub uploads_started: AtomicU64,
    /// WebSocket sessions that ended (either side closed).
    pub ws_closed: AtomicU64,
    /// Network and SDN API writes that were carried out (not dry-run), counted
    /// when the handler runs (after authentication).
    pub writes: AtomicU64,
    /// Network and SDN API writes answered as a dry-run (`X-PVE-Dry-Run: 1`,
    /// Rust flavour only), counted when the handler runs.
    pub dry_runs: AtomicU64,
    /// Requests that are not `GET`/`HEAD` to `/api2/*/nodes/*/network*` or
    /// `/api2/*/cluster/sdn*` that arrived **without** `X-PVE-Dry-Run: 1`
    /// (both flavours, counted on arrival, before authentication or any fault).
    pub unmarked_mutations: AtomicU64,
    /// The same requests **with** `X-PVE-Dry-Run: 1`.
    pub marked_mutations: AtomicU64,
    /// How often each fault changed what a request saw.
    pub fault_hits: FaultHits,
    recent: Mutex<VecDeque<Received>>,
    /// Notified whenever a counter changes (a request arrives, an upload
    /// starts, a session closes, a fault hits).
    pub arrived: Notify,
}

/// Per fault kind, how many requests it hit (`refuse`: how often the
/// listening socket was closed).
#[derive(Debug, Default)]
pub struct FaultHits {
    /// Answers held back by `latency`.
    pub latency: AtomicU64,
    /// Requests held back by `delay` before they were carried out.
    pub delay: AtomicU64,
    /// Requests answered `500` by `error-rate`.
    pub error_rate: AtomicU64,
    /// Connections reset by `reset-before-head`.
    pub reset_before_head: AtomicU64,
    /// Connections reset by `reset-after-head`.
    pub reset_after_head: AtomicU64,
    /// Bodies cut by `malformed-json`.
    pub malformed_json: AtomicU64,
    /// Times the listening socket was closed by `refuse`.
    pub refuse: AtomicU64,
    /// Requests answered without authentication by `auth-bypass`.
    pub auth_bypass: AtomicU64,
}

/// Whether a request is a network or SDN API mutation (for
/// [`Stats::unmarked_mutations`]): not `GET`/`HEAD`, to
/// `/api2/*/nodes/*/network*` or `/api2/*/cluster/sdn*`.
pub fn is_mutation(method: &Method, path: &str) -> bool {
    if *method == Method::GET || *method == Method::HEAD {
        return false;
    }
    let Some(rest) = path.strip_prefix("/api2/") else {
        return false;
    };
    let Some((_format, rest)) = rest.split_once('/') else {
        return false;
    };
    if rest.starts_with("cluster/sdn") {
        return true;
    }
    rest.strip_prefix("nodes/")
        .and_then(|r| r.split_once('/'))
        .is_some_and(|(_node, r)| r.starts_with("network"))
}

impl Stats {
    /// The last requests received (up to 1024), oldest first.
    pub fn recent(&self) -> Vec<Received> {
        self.recent
            .lock()
            .expect("not poisoned")
            .iter()
            .cloned()
            .collect()
    }

    fn record(&self, req: &Request<Incoming>) {
        let get = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let r = Received {
            method: req.method().clone(),
            path: req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default(),
            host: get("host"),
            forwarded_for: get("x-forwarded-for"),
            forwarded_proto: get("x-forwarded-proto"),
            dry_run: get("x-pve-dry-run"),
            headers: req.headers().clone(),
        };
        if is_mutation(&r.method, req.uri().path()) {
            if r.dry_run.as_deref() == Some("1") {
                self.marked_mutations.fetch_add(1, Ordering::SeqCst);
            } else {
                self.unmarked_mutations.fetch_add(1, Ordering::SeqCst);
            }
        }
        let mut recent = self.recent.lock().expect("not poisoned");
        if recent.len() == 1024 {
            recent.pop_front();
        }
        recent.push_back(r);
        drop(recent);
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.arrived.notify_waiters();
    }

    /// Counts a fault hit and wakes waiters.
    pub(crate) fn hit(&self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::SeqCst);
        self.arrived.notify_waiters();
    }
}

/// The state of the listening socket.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListenStatus {
    Listening,
    /// Closed by the `refuse` fault.
    Closed,
    /// Re-binding after `refuse` failed.
    BindFailed(String),
    /// The simulator was stopped.
    Stopped,
}

/// Between fault setters and the accept loop: the wanted `refuse` state with
/// a generation, and the accept loop's answer for that generation.
#[derive(Debug)]
struct ListenControl {
    want: watch::Sender<(bool, u64)>,
    status: watch::Sender<(ListenStatus, u64)>,
}

/// Shared simulator state.
#[derive(Debug)]
pub struct SimState {
    /// Settings, with `listen` set to the bound address (port 0 resolved),
    /// which `refuse` binds again.
    pub config: SimConfig,
    /// Authentication.
    pub auth: Auth,
    /// Counters.
    pub stats: Stats,
    pub(crate) faults: FaultState,
    listen: ListenControl,
}

impl SimState {
    /// The active faults.
    pub fn faults(&self) -> Vec<Fault> {
        self.faults.get()
    }

    /// Replaces the active faults. Returns once the listening socket is in
    /// the state they ask for (closed while `refuse` is set, bound again when
    /// it is not).
    ///
    /// # Errors
    /// When the address cannot be bound again after `refuse`, or the
    /// simulator has been stopped.
    pub async fn set_faults(&self, faults: Vec<Fault>) -> io::Result<()> {
        let refuse = faults.iter().any(|f| f.kind == FaultKind::Refuse);
        self.faults.set(faults);
        let mut generation = 0;
        self.listen.want.send_modify(|w| {
            w.0 = refuse;
            w.1 += 1;
            generation = w.1;
        });
        let mut status = self.listen.status.subscribe();
        let (state, _) = status
            .wait_for(|(_, g)| *g >= generation)
            .await
            .map_err(|_| io::Error::other("the simulator is stopped"))?
            .clone();
        match state {
            ListenStatus::Listening | ListenStatus::Closed => Ok(()),
            ListenStatus::BindFailed(e) => Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                format!("binding {} again failed: {e}", self.config.listen),
            )),
            ListenStatus::Stopped => Err(io::Error::other("the simulator is stopped")),
        }
    }
}

/// A running simulator.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    shutdown: watch::Sender<bool>,
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Counters and the request log.
    pub fn stats(&self) -> &Stats {
        &self.state.stats
    }

    /// The shared state.
    pub fn state(&self) -> &Arc<SimState> {
        &self.state
    }

    /// The active faults.
    pub fn faults(&self) -> Vec<Fault> {
        self.state.faults()
    }

    /// Replaces the active faults (see [`crate::faults`]); with `refuse` the
    /// listening socket is closed when this returns, without it the socket is
    /// bound (to the same port) when this returns.
    ///
    /// ```no_run
    /// # async fn f(sim: &pve_sim::SimHandle) -> std::io::Result<()> {
    /// use pve_sim::faults::Fault;
    /// let reset = Fault::parse("reset-before-head").expect("valid").writes_only();
    /// sim.set_faults([reset]).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// When the port cannot be bound again or the simulator is stopped.
    pub async fn set_faults(&self, faults: impl IntoIterator<Item = Fault>) -> io::Result<()> {
        self.state.set_faults(faults.into_iter().collect()).await
    }

    /// Removes every fault (binding the port again after `refuse`).
    ///
    /// # Errors
    /// As [`SimHandle::set_faults`].
    pub async fn clear_faults(&self) -> io::Result<()> {
        self.state.set_faults(Vec::new()).await
    }

    /// Stops accepting and closes connections.
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

fn tls_config(config: &SimConfig) -> anyhow::Result<ServerConfig> {
    let (key, _) = pve_migration_certs::pem::load_certified_key(&config.tls_cert, &config.tls_key)?;
    let mut tls = ServerConfig::builder_with_provider(pve_migration_certs::provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(FixedCert(key)));
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

#[derive(Debug)]
struct FixedCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// Starts a simulator.
///
/// # Errors
/// When the certificate cannot be loaded or the address cannot be bound.
pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&config)?));
    let listener = TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let faults = FaultState::new(config.faults.clone(), config.seed);
    let refusing = faults.refusing();
    let state = Arc::new(SimState {
        auth: match &config.pve_keys {
            None => Auth::new(&config.auth_key, &config.users, &config.tokens),
            Some(dir) => {
                Auth::new(&config.auth_key, &config.users, &config.tokens).with_pve_keys(dir)?
            }
        },
        config: SimConfig {
            listen: addr,
            ..config
        },
        stats: Stats::default(),
        faults,
        listen: ListenControl {
            want: watch::Sender::new((refusing, 0)),
            status: watch::Sender::new((ListenStatus::Listening, 0)),
        },
    });
    let (shutdown, stop) = watch::channel(false);
    let listener = if refusing {
        state.stats.hit(&state.stats.fault_hits.refuse);
        state.listen.status.send_replace((ListenStatus::Closed, 0));
        None
    } else {
        Some(listener)
    };
    // Subscribed here, not in the task: a set_faults right after start must
    // not be missed.
    let want = state.listen.want.subscribe();
    tokio::spawn(accept_loop(state.clone(), listener, acceptor, want, stop));
    Ok(SimHandle {
        addr,
        state,
        shutdown,
    })
}

enum Event {
    Accepted(io::Result<(TcpStream, SocketAddr)>),
    Want,
    Stop,
}

/// Accepts connections; closes and re-binds the listener for `refuse`.
async fn accept_loop(
    st: Arc<SimState>,
    mut listener: Option<TcpListener>,
    acceptor: TlsAcceptor,
    mut want: watch::Receiver<(bool, u64)>,
    mut stop: watch::Receiver<bool>,
) {
    let addr = st.config.listen;
    loop {
        let event = match &listener {
            Some(l) => tokio::select! {
                r = l.accept() => Event::Accepted(r),
                r = want.changed() => if r.is_ok() { Event::Want } else { Event::Stop },
                _ = stop.wait_for(|s| *s) => Event::Stop,
            },
            None => tokio::select! {
                r = want.changed() => if r.is_ok() { Event::Want } else { Event::Stop },
                _ = stop.wait_for(|s| *s) => Event::Stop,
            },
        };
        match event {
            Event::Accepted(Ok((tcp, peer))) => {
                spawn_connection(st.clone(), acceptor.clone(), tcp, peer, stop.clone());
            }
            Event::Accepted(Err(_)) => {}
            Event::Stop => {
                drop(listener);
                st.listen
                    .status
                    .send_replace((ListenStatus::Stopped, u64::MAX));
                return;
            }
            Event::Want => {
                let (refuse, generation) = *want.borrow_and_update();
                let status = if refuse {
                    if listener.take().is_some() {
                        st.stats.hit(&st.stats.fault_hits.refuse);
                    }
                    ListenStatus::Closed
                } else if listener.is_some() {
                    ListenStatus::Listening
                } else {
                    match TcpListener::bind(addr).await {
                        Ok(l) => {
                            listener = Some(l);
                            ListenStatus::Listening
                        }
                        Err(e) => ListenStatus::BindFailed(e.to_string()),
                    }
                };
                st.listen.status.send_replace((status, generation));
            }
        }
    }
}

fn spawn_connection(
    st: Arc<SimState>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) {
    let _ = tcp.set_nodelay(true);
    tokio::spawn(async move {
        let Ok(tls) = acceptor.accept(tcp).await else {
            return;
        };
        let ctl = Arc::new(ConnControl::default());
        let io = FaultIo::new(tls, ctl.clone());
        let svc = service_fn(move |req| {
            let st = st.clone();
            let ctl = ctl.clone();
            async move { Ok::<_, Infallible>(serve(st, req, peer, &ctl).await) }
        });
        let mut builder = http1::Builder::new();
        builder.timer(TokioTimer::new()).title_case_headers(true);
        let conn = builder
            .serve_connection(TokioIo::new(io), svc)
            .with_upgrades();
        tokio::pin!(conn);
        tokio::select! {
            _ = conn.as_mut() => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    });
}

/// Splits `/api2/{format}/{rest}`.
pub(crate) fn api_path(path: &str) -> Option<(Format, &str)> {
    let rest = path.strip_prefix("/api2/")?;
    let (format, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let format = match format {
        "json" => Format::Json,
        "extjs" => Format::Extjs,
        _ => return None,
    };
    Some((format, rest.trim_end_matches('/')))
}

/// Whether faults apply to a path: API requests except the login.
fn fault_target(path: &str) -> bool {
    api_path(path).is_some_and(|(_, rel)| rel != "access/ticket")
}

/// One request: control endpoint, recording, faults, dispatch.
async fn serve(
    st: Arc<SimState>,
    req: Request<Incoming>,
    peer: SocketAddr,
    ctl: &ConnControl,
) -> Response<SimBody> {
    if req.uri().path().starts_with("/_sim/") {
        return crate::control::handle(&st, req, peer).await;
    }
    st.stats.record(&req);
    let path = req.uri().path();
    let plan = if fault_target(path) {
        st.faults.plan(req.method())
    } else {
        Plan::default()
    };
    let format = api_path(path).map_or(Format::Json, |(f, _)| f);
    let hits = &st.stats.fault_hits;
    if let Some(delay) = plan.delay {
        tokio::time::sleep(delay).await;
        st.stats.hit(&hits.delay);
    }
    let resp = if plan.shape == Shape::Error {
        st.stats.hit(&hits.error_rate);
        respond::failure(format, &ApiFailure::new(500, "Internal Server Error"))
    } else {
        if plan.auth_bypass {
            st.stats.hit(&hits.auth_bypass);
        }
        dispatch(st.clone(), req, plan.auth_bypass).await
    };
    if let Some(delay) = plan.latency {
        tokio::time::sleep(delay).await;
        st.stats.hit(&hits.latency);
    }
    match plan.shape {
        Shape::Normal | Shape::Error => resp,
        Shape::ResetBeforeHead => {
            st.stats.hit(&hits.reset_before_head);
            ctl.arm(WriteMode::ResetNow);
            resp
        }
        Shape::ResetAfterHead => {
            st.stats.hit(&hits.reset_after_head);
            let len = resp.body().size_hint().exact().unwrap_or(0);
            ctl.arm(WriteMode::truncate(usize::try_from(len / 2).unwrap_or(0)));
            resp
        }
        Shape::MalformedJson => {
            st.stats.hit(&hits.malformed_json);
            malformed(resp).await
        }
    }
}

/// `200 OK` with the first half of the real body (or `{"data":` when the
/// body is too short to cut): never valid JSON.
async fn malformed(resp: Response<SimBody>) -> Response<SimBody> {
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let cut = if body.len() >= 4 {
        body.slice(..body.len() / 2)
    } else {
        bytes::Bytes::from_static(b"{\"data\":")
    };
    let len = cut.len();
    let mut r = Response::new(respond::full(cut));
    respond::pve_headers(&mut r, "application/json;charset=UTF-8");
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}

async fn dispatch(
    st: Arc<SimState>,
    req: Request<Incoming>,
    auth_bypass: bool,
) -> Response<SimBody> {
    let path = req.uri().path().to_owned();
    if path == "/" {
        let mut r = Response::new(respond::full(
            "<!DOCTYPE html><html><head><title>pve-sim</title></head><body>pve-sim</body></html>\n",
        ));
        respond::pve_headers(&mut r, "text/html;charset=UTF-8");
        return r;
    }
    let Some((format, rel)) = api_path(&path) else {
        return respond::plain_error(
            501,
            &format!("Method '{} {}' not implemented", req.method(), path),
        );
    };
    let segs: Vec<&str> = rel.split('/').collect();
    let method = req.method().clone();

    if segs == ["access", "ticket"] {
        return match method {
            Method::POST => login(&st, format, req).await,
            Method::GET => respond::success(format, &Value::Null),
            _ => not_implemented(&method, rel),
        };
    }

    let principal = if auth_bypass {
        Principal::Unchecked
    } else {
        match st.auth.authenticate(&method, req.headers()) {
            Ok(p) => p,
            Err(e) => return unauthorized(format, e),
        }
    };

    match (method.clone(), segs.as_slice()) {
        (Method::GET, ["version"]) => respond::success(
            format,
            &json!({"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325"}),
        ),
        (_, ["nodes", node, ..]) if *node != st.config.node => respond::failure(
            format,
            &ApiFailure::new(
                500,
                format!(
                    "hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"
                ),
            ),
        ),
        (_, ["nodes", _, "network"]) => {
            crate::netapi::handle(st.clone(), format, req, None, &principal).await
        }
        (_, ["nodes", _, "network", iface]) => {
            let iface = (*iface).to_owned();
            crate::netapi::handle(st.clone(), format, req, Some(iface), &principal).await
        }
        (_, ["cluster", "sdn", rest @ ..]) => {
            let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
            crate::sdnapi::handle(st.clone(), format, req, rest, &principal).await
        }
        (Method::GET, ["nodes", _, "qemu", _, "vncwebsocket"]) => crate::ws::echo(st.clone(), req),
        (Method::POST, ["nodes", _, "storage", _, "upload"]) => {
            upload(&st, format, req, &principal).await
        }
        _ => not_implemented(&method, rel),
    }
}

fn not_implemented(method: &Method, rel: &str) -> Response<SimBody> {
    respond::plain_error(501, &format!("Method '{method} /{rel}' not implemented"))
}

fn unauthorized(format: Format, e: AuthError) -> Response<SimBody> {
    respond::failure(format, &ApiFailure::new(401, e.message()))
}

/// Reads a small request body (login forms, API parameters) into key/value pairs.
pub(crate) async fn read_params(
    req: Request<Incoming>,
) -> Result<Vec<(String, String)>, ApiFailure> {
    read_body_params(req, false).await
}

/// Like [`read_params`], but JSON arrays become repeated parameters (PVE's
/// array-typed parameters, e.g. the subnets' `dhcp-range`).
pub(crate) async fn read_param_list(
    req: Request<Incoming>,
) -> Result<Vec<(String, String)>, ApiFailure> {
    read_body_params(req, true).await
}

fn json_scalar(v: Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Bool(b) => Some(if b { "1" } else { "0" }.into()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

async fn read_body_params(
    req: Request<Incoming>,
    expand_arrays: bool,
) -> Result<Vec<(String, String)>, ApiFailure> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = req
        .into_body()
        .collect()
        .await
        .map_err(|e| ApiFailure::new(400, format!("reading request body failed: {e}")))?
        .to_bytes();
    let mut params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    if ct.starts_with("application/json") {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiFailure::new(400, format!("malformed JSON request body: {e}")))?;
        let Value::Object(map) = v else {
            return Err(ApiFailure::new(
                400,
                "malformed JSON request body: expected an object",
            ));
        };
        for (k, v) in map {
            match v {
                Value::Array(items) if expand_arrays => {
                    params.extend(
                        items
                            .into_iter()
                            .filter_map(json_scalar)
                            .map(|i| (k.clone(), i)),
                    );
                }
                // Without array support a null is still a parameter (as before).
                Value::Null if !expand_arrays => params.push((k, "null".into())),
                other => params.extend(json_scalar(other).map(|s| (k, s))),
            }
        }
    } else {
        params.extend(form_urlencoded::parse(&body).into_owned());
    }
    Ok(params)
}

async fn login(st: &SimState, format: Format, req: Request<Incoming>) -> Response<SimBody> {
    let params = match read_params(req).await {
        Ok(p) => p,
        Err(f) => return respond::failure(format, &f),
    };
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let (Some(user), Some(pass)) = (get("username"), get("password")) else {
        let mut f = ApiFailure::new(400, "Parameter verification failed.");
        for k in ["username", "password"] {
            if get(k).is_none() {
                f.errors.insert(
                    k.into(),
                    Value::from("property is missing and it is not optional"),
                );
            }
        }
        return respond::failure(format, &f);
    };
    match st.auth.login(user, pass) {
        Ok(l) => respond::success(
            format,
            &json!({
                "username": l.username,
                "ticket": l.ticket,
                "CSRFPreventionToken": l.csrf,
                "cap": {"nodes": {"Sys.Audit": 1, "Sys.Modify": 1}},
            }),
        ),
        Err(e) => unauthorized(format, e),
    }
}

/// Counts the body without buffering it (an ISO upload is gigabytes).
async fn upload(
    st: &SimState,
    format: Format,
    req: Request<Incoming>,
    principal: &Principal,
) -> Response<SimBody> {
    st.stats.uploads_started.fetch_add(1, Ordering::SeqCst);
    st.stats.arrived.notify_waiters();
    let mut body = req.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    total += d.len() as u64;
                    st.stats
                        .upload_bytes
                        .fetch_add(d.len() as u64, Ordering::SeqCst);
                    st.stats.arrived.notify_waiters();
                }
            }
            Err(e) => {
                return respond::failure(
                    format,
                    &ApiFailure::new(400, format!("upload aborted: {e}")),
                );
            }
        }
    }
    let upid = format!(
        "UPID:{}:{:08X}:{:08X}:{:08X}:imgcopy::{}:",
        st.config.node,
        std::process::id(),
        0x1000u32,
        crate::auth::now() as u32,
        principal.userid()
    );
    respond::success(format, &json!({"upid": upid, "bytes": total}))
}
