//! The simulator's TLS listener and request dispatch.
//!
//! HTTP/1.1 only, as pveproxy. Every request is recorded (method, path,
//! selected headers) so tests can assert what a backend actually received.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::ServerConfig;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_rustls::TlsAcceptor;

use crate::auth::{Auth, AuthError, Principal};
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
}

impl SimConfig {
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
    /// Network API writes that were carried out (not dry-run).
    pub writes: AtomicU64,
    /// Network API writes answered as a dry-run (`X-PVE-Dry-Run: 1`, Rust flavour).
    pub dry_runs: AtomicU64,
    recent: Mutex<VecDeque<Received>>,
    /// Notified whenever a request arrives.
    pub arrived: Notify,
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
        };
        let mut recent = self.recent.lock().expect("not poisoned");
        if recent.len() == 1024 {
            recent.pop_front();
        }
        recent.push_back(r);
        drop(recent);
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.arrived.notify_waiters();
    }
}

/// Shared simulator state.
#[derive(Debug)]
pub struct SimState {
    /// Settings.
    pub config: SimConfig,
    /// Authentication.
    pub auth: Auth,
    /// Counters.
    pub stats: Stats,
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
    let state = Arc::new(SimState {
        auth: Auth::new(&config.auth_key, &config.users, &config.tokens),
        config,
        stats: Stats::default(),
    });
    let (shutdown, mut stop) = watch::channel(false);
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(pair) => pair,
                    Err(_) => continue,
                },
                _ = stop.wait_for(|s| *s) => return,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let st = st.clone();
            let mut stop = stop.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req| {
                    let st = st.clone();
                    async move { Ok::<_, Infallible>(dispatch(st, req, peer).await) }
                });
                let mut builder = http1::Builder::new();
                builder.timer(TokioTimer::new()).title_case_headers(true);
                let conn = builder
                    .serve_connection(TokioIo::new(tls), svc)
                    .with_upgrades();
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
            });
        }
    });
    Ok(SimHandle {
        addr,
        state,
        shutdown,
    })
}

/// Splits `/api2/{format}/{rest}`.
fn api_path(path: &str) -> Option<(Format, &str)> {
    let rest = path.strip_prefix("/api2/")?;
    let (format, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let format = match format {
        "json" => Format::Json,
        "extjs" => Format::Extjs,
        _ => return None,
    };
    Some((format, rest.trim_end_matches('/')))
}

async fn dispatch(
    st: Arc<SimState>,
    req: Request<Incoming>,
    _peer: SocketAddr,
) -> Response<SimBody> {
    st.stats.record(&req);
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

    let principal = match st.auth.authenticate(&method, req.headers()) {
        Ok(p) => p,
        Err(e) => return unauthorized(format, e),
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
            let v = match v {
                Value::String(s) => s,
                Value::Bool(b) => {
                    if b {
                        "1".into()
                    } else {
                        "0".into()
                    }
                }
                other => other.to_string(),
            };
            params.push((k, v));
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
