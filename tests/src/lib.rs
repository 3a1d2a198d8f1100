//! The end-to-end rig: a test CA, simulated backends and the gateway, all
//! in-process on loopback port 0, plus a TLS HTTP client that reports exactly
//! what came over the wire (status, reason phrase, headers, body bytes).
//!
//! A test needs one line to get a running system: `let rig = Rig::start().await;`.
//! [`node`] builds a node root for the real Rust backend and runs it.

pub mod node;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::ext::ReasonPhrase;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pve_migration_certs::testca::TestCa;
use pve_network_migration::body::Body;
use pve_network_migration::config::{Config, Overrides};
use pve_network_migration::server::Gateway;
use pve_sim::{SimConfig, SimHandle};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The password of `root@pam` on every simulator.
pub const ROOT_PASSWORD: &str = "secret";
/// The API token every simulator knows.
pub const TOKEN: &str = "PVEAPIToken=root@pam!ci=00000000-0000-0000-0000-000000000000";

/// A small but realistic node (see [`pve_sim::EXAMPLE_INTERFACES`]).
pub const INTERFACES: &str = pve_sim::EXAMPLE_INTERFACES;

/// Bounds every network wait in tests, so a bug fails instead of hanging.
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Runs a command to its end and returns its output, bounded like every
/// wait in the tests: a command still running after 60 s is killed and the
/// test fails (a daemon that should have refused to start does not hang the
/// suite). Stdin is empty; stdout and stderr are captured.
pub fn run_bounded(cmd: &mut std::process::Command) -> std::process::Output {
    use std::process::Stdio;
    let what = format!("{cmd:?}");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    wait_bounded(child, &what)
}

/// Waits for a child's end (collecting what it captured), at most 60 s; then
/// it is killed and the test fails. For synchronous tests; async ones use
/// `tokio::process` with `kill_on_drop`.
pub fn wait_bounded(child: std::process::Child, what: &str) -> std::process::Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.unwrap_or_else(|e| panic!("{what}: {e}")),
        Err(_) => {
            // The waiting thread has not reaped it, so the pid is still ours.
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("timed out: {what} did not exit within 60 s");
        }
    }
}

/// Waits (event-driven, no polling sleeps) until `cond` holds for a simulator's counters.
pub async fn wait_until(
    sim: &SimHandle,
    what: &str,
    cond: impl Fn(&pve_sim::server::Stats) -> bool,
) {
    let stats = sim.stats();
    within(what, async {
        loop {
            // Registered before the check, so no notification is lost in between.
            let notified = stats.arrived.notified();
            if cond(stats) {
                return;
            }
            notified.await;
        }
    })
    .await;
}

/// Calls the gateway's admin API over its Unix socket: (status, JSON body).
pub async fn admin(
    sock: &std::path::Path,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (StatusCode, serde_json::Value) {
    let method: http::Method = method.parse().expect("method");
    let (status, bytes) = within(
        "admin call",
        pve_network_migration::admin::call(sock, method, path, body.as_ref()),
    )
    .await
    .expect("admin socket");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

/// Options for [`Rig::start_with`].
#[derive(Debug, Default, Clone)]
pub struct RigOptions {
    /// Contents of the pveproxy defaults file (access policy), if any.
    pub pveproxy_defaults: Option<String>,
    /// Extra TOML appended to the gateway's configuration.
    pub extra_toml: String,
    /// Extra `key = value` lines of its `[limits]` section.
    pub limits_toml: String,
    /// Do not start the Perl simulator (the gateway points at a closed port).
    pub perl_down: bool,
    /// The cluster-wide phase (default `perl-only`).
    pub phase: Option<String>,
    /// Start a Rust-flavour simulator on the same interfaces file and configure it.
    pub rust: Option<RustOptions>,
}

/// The Rust backend of a rig.
#[derive(Debug, Default, Clone)]
pub struct RustOptions {
    /// Named divergences of the Rust flavour (see pve-sim).
    pub divergences: Vec<String>,
    /// Configure it, but start nothing (connections are refused).
    pub down: bool,
    /// `[backends.rust] timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// The real backend (`pve-network-rs`, in-process on a node root)
    /// instead of the Rust-flavour simulator; the Perl simulator then uses
    /// the node root's interfaces file, lock and ticket keys.
    pub real: bool,
}

/// A running system: CA, Perl simulator, gateway.
#[derive(Debug)]
pub struct Rig {
    /// Temporary directory with certificates, interfaces file, state.
    pub dir: tempfile::TempDir,
    /// The test CA.
    pub ca: TestCa,
    /// The CA certificate file.
    pub ca_path: PathBuf,
    /// The Perl-flavour simulator (absent with `perl_down`).
    pub perl: Option<SimHandle>,
    /// The Rust-flavour simulator (with `rust`, unless `down` or `real`).
    pub rust: Option<SimHandle>,
    /// The node root of the real Rust backend (with `rust.real`).
    pub node: Option<node::NodeRoot>,
    /// The real Rust backend (with `rust.real`).
    pub backend: Option<node::RustBackend>,
    /// The gateway.
    pub gateway: Gateway,
    /// The gateway's configuration (for restarts).
    pub config: Config,
    /// The gateway's served certificate and key files.
    pub gw_cert: (PathBuf, PathBuf),
    /// The client trusting the test CA.
    pub client: TestClient,
    /// The gateway's listening socket (see [`Rig::restart_gateway`]).
    listener: std::net::TcpListener,
    /// Ports of backends that are down: bound, never listening, so
    /// connections are refused and no other process can take the port.
    _reserved: Vec<tokio::net::TcpSocket>,
}

/// A loopback port that refuses connections and stays ours: bound, not
/// listening. Returns the socket (keep it) and its `https://` URL.
fn refusing_port() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let url = format!("https://{}", socket.local_addr().expect("addr"));
    (socket, url)
}

impl Rig {
    /// CA + Perl simulator + gateway in `perl-only`, everything on loopback port 0.
    pub async fn start() -> Rig {
        Self::start_with(RigOptions::default()).await
    }

    /// Like [`Rig::start`] with options.
    pub async fn start_with(opts: RigOptions) -> Rig {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let ca = TestCa::new("pve-network-migration test CA").expect("CA");
        let ca_path = d.join("ca.pem");
        ca.write_cert(&ca_path).expect("write CA");
        let leaf = ca.issue(&["localhost", "127.0.0.1"]).expect("leaf");
        let (sim_cert, sim_key) = (d.join("sim.pem"), d.join("sim.key"));
        leaf.write(&sim_cert, &sim_key).expect("write sim cert");
        let gw = ca.issue(&["localhost", "127.0.0.1"]).expect("leaf");
        let gw_cert = (d.join("gw.pem"), d.join("gw.key"));
        gw.write(&gw_cert.0, &gw_cert.1).expect("write gw cert");
        let real = opts.rust.as_ref().is_some_and(|r| r.real && !r.down);
        let node = real.then(|| {
            let n = node::NodeRoot::create(&d.join("node"), INTERFACES);
            n.links_like_simulator(INTERFACES);
            n
        });
        let interfaces = match &node {
            Some(n) => n.path("/etc/network/interfaces"),
            None => {
                let p = d.join("interfaces");
                std::fs::write(&p, INTERFACES).expect("write interfaces");
                p
            }
        };

        let mut reserved = Vec::new();
        let (perl, perl_url) = if opts.perl_down {
            let (socket, url) = refusing_port();
            reserved.push(socket);
            (None, url)
        } else {
            let mut c = SimConfig::for_tests(sim_cert, sim_key, interfaces.clone());
            c.pve_keys = node.as_ref().map(|n| n.path("/etc/pve"));
            let sim = pve_sim::start(c).await.expect("start pve-sim");
            let url = sim.url();
            (Some(sim), url)
        };

        let mut backend = None;
        let (rust, rust_toml) = match &opts.rust {
            None => (None, String::new()),
            Some(r) => {
                let (sim, url) = if let Some(n) = &node {
                    let b = node::RustBackend::start(
                        n,
                        "pve1",
                        (&d.join("sim.pem"), &d.join("sim.key")),
                    )
                    .await;
                    let url = b.url();
                    backend = Some(b);
                    (None, url)
                } else if r.down {
                    let (socket, url) = refusing_port();
                    reserved.push(socket);
                    (None, url)
                } else {
                    let mut c = SimConfig::for_tests(
                        d.join("sim.pem"),
                        d.join("sim.key"),
                        interfaces.clone(),
                    );
                    c.flavor = pve_sim::Flavor::Rust;
                    c.divergences =
                        pve_sim::network::Divergences::parse_list(&r.divergences.join(","))
                            .expect("known divergences");
                    let sim = pve_sim::start(c).await.expect("start rust pve-sim");
                    let url = sim.url();
                    (Some(sim), url)
                };
                (
                    sim,
                    format!(
                        "[backends.rust]\nurl = \"{url}\"\nca = \"{}\"\n{}",
                        ca_path.display(),
                        r.timeout_ms
                            .map(|t| format!("timeout_ms = {t}\n"))
                            .unwrap_or_default()
                    ),
                )
            }
        };
        let access = d.join("pveproxy");
        if let Some(text) = &opts.pveproxy_defaults {
            std::fs::write(&access, text).expect("write pveproxy defaults");
        }
        let toml = format!(
            r#"
node = "pve1"
phase = "{phase}"
perl_api_base_url = "{perl_url}"
state_dir = "{state}"

[listen]
addresses = ["127.0.0.1:0"]
tls_cert = "{cert}"
tls_key = "{key}"
cert_check_interval_ms = 50

[backends.perl]
ca = "{ca}"

[access]
pveproxy_defaults = "{access}"

[log]
migration_log = "{log}"

[admin]
socket = "{sock}"
config_check_interval_ms = 50

[limits]
shutdown_grace_ms = 10000
{limits}

{rust_toml}
{extra}
"#,
            phase = opts.phase.as_deref().unwrap_or("perl-only"),
            state = d.join("state").display(),
            cert = gw_cert.0.display(),
            key = gw_cert.1.display(),
            ca = ca_path.display(),
            access = access.display(),
            log = d.join("migration.log").display(),
            sock = d.join("control.sock").display(),
            extra = opts.extra_toml,
            limits = opts.limits_toml,
        );
        let config_path = d.join("migration.toml");
        std::fs::write(&config_path, &toml).expect("write migration.toml");
        let config = Config::load(&config_path, &Overrides::default()).expect("valid config");
        // The rig holds the listening socket, as systemd's socket unit does,
        // and hands the gateway a duplicate: a restart keeps the port bound.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind gateway port");
        let gateway = Gateway::start_on(
            config.clone(),
            vec![listener.try_clone().expect("duplicate listener")],
        )
        .await
        .expect("start gateway");
        let client = TestClient::new(&ca);
        Rig {
            dir,
            ca,
            ca_path,
            perl,
            rust,
            node,
            backend,
            gateway,
            config,
            gw_cert,
            client,
            listener,
            _reserved: reserved,
        }
    }

    /// Stops the gateway and starts a new one with the same configuration,
    /// state directory and listening socket (a socket-activated restart:
    /// clients connecting in between wait in the accept queue).
    pub async fn restart_gateway(&mut self) {
        within("shutdown", self.gateway.drain()).await;
        self.gateway = Gateway::start_on(
            self.config.clone(),
            vec![self.listener.try_clone().expect("duplicate listener")],
        )
        .await
        .expect("restart gateway");
    }

    /// The gateway's listening socket, held by the rig.
    pub fn listener(&self) -> &std::net::TcpListener {
        &self.listener
    }

    /// The admin socket.
    pub fn admin_socket(&self) -> PathBuf {
        self.dir.path().join("control.sock")
    }

    /// The configuration file.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("migration.toml")
    }

    /// The gateway's address.
    pub fn gw(&self) -> SocketAddr {
        self.gateway.local_addrs()[0]
    }

    /// The Perl simulator's address.
    pub fn perl_addr(&self) -> SocketAddr {
        self.perl.as_ref().expect("perl simulator running").addr()
    }

    /// The Perl simulator.
    pub fn perl(&self) -> &SimHandle {
        self.perl.as_ref().expect("perl simulator running")
    }

    /// The Rust simulator.
    pub fn rust(&self) -> &SimHandle {
        self.rust.as_ref().expect("rust simulator running")
    }

    /// Waits until every queued evidence record and log line is on disk.
    pub async fn flush(&self) {
        within("evidence flush", self.gateway.engine().recorder().flush()).await;
    }

    /// All evidence records written so far.
    pub async fn evidence(&self) -> Vec<pve_network_migration::evidence::EvidenceRecord> {
        self.flush().await;
        pve_network_migration::evidence::read_records(&self.dir.path().join("state/evidence"))
            .records
    }

    /// Waits (event-driven) until the evidence satisfies `pred`; returns it.
    pub async fn evidence_until(
        &self,
        what: &str,
        pred: impl Fn(&[pve_network_migration::evidence::EvidenceRecord]) -> bool,
    ) -> Vec<pve_network_migration::evidence::EvidenceRecord> {
        let engine = self.gateway.engine().clone();
        within(what, async {
            loop {
                let notified = engine.recorded().notified();
                let records = self.evidence().await;
                if pred(&records) {
                    return records;
                }
                notified.await;
            }
        })
        .await
    }

    /// Waits (event-driven) until migration.log has at least `lines` lines.
    pub async fn log_until(&self, lines: usize) -> String {
        let engine = self.gateway.engine().clone();
        within("migration.log lines", async {
            loop {
                let notified = engine.recorded().notified();
                let log = self.migration_log().await;
                if log.lines().count() >= lines {
                    return log;
                }
                notified.await;
            }
        })
        .await
    }

    /// The contents of migration.log.
    pub async fn migration_log(&self) -> String {
        self.flush().await;
        std::fs::read_to_string(self.dir.path().join("migration.log")).unwrap_or_default()
    }
}

/// What came back, as the client saw it.
#[derive(Debug, Clone)]
pub struct Resp {
    /// HTTP version of the response.
    pub version: Version,
    /// Status code.
    pub status: StatusCode,
    /// The reason phrase as sent (`None` when it was the canonical one).
    pub reason: Option<String>,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body bytes.
    pub body: Bytes,
}

impl Resp {
    /// The reason phrase as it appeared on the wire.
    pub fn reason(&self) -> String {
        self.reason
            .clone()
            .unwrap_or_else(|| self.status.canonical_reason().unwrap_or("").to_owned())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// A TLS HTTP client trusting the test CA.
#[derive(Clone)]
pub struct TestClient {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TestClient")
    }
}

impl TestClient {
    /// A client that trusts `ca`.
    pub fn new(ca: &TestCa) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for cert in pve_migration_certs::pem::parse_chain("ca".as_ref(), ca.cert_pem().as_bytes())
            .expect("CA PEM")
        {
            roots.add(cert).expect("CA cert");
        }
        let mut config =
            rustls::ClientConfig::builder_with_provider(pve_migration_certs::provider())
                .with_safe_default_protocol_versions()
                .expect("versions")
                .with_root_certificates(roots)
                .with_no_client_auth();
        // Every connection does a full handshake, so it sees the certificate
        // served now (a resumed session reports the original one).
        config.resumption = rustls::client::Resumption::disabled();
        Self {
            config: Arc::new(config),
        }
    }

    /// Opens a TLS connection offering the given ALPN protocols.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
    ) -> std::io::Result<TlsStream<TcpStream>> {
        self.connect_from(addr, alpn, None).await
    }

    /// Like [`TestClient::connect`], from a chosen local address (e.g. 127.0.0.2).
    pub async fn connect_from(
        &self,
        addr: SocketAddr,
        alpn: &[&[u8]],
        from: Option<SocketAddr>,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = match from {
            Some(local) => {
                let s = tokio::net::TcpSocket::new_v4()?;
                s.bind(local)?;
                s.connect(addr).await?
            }
            None => TcpStream::connect(addr).await?,
        };
        let mut config = (*self.config).clone();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
    }

    /// An HTTP/1.1 connection.
    pub async fn h1(&self, addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Body> {
        let tls = self
            .connect(addr, &[b"http/1.1"])
            .await
            .expect("TLS connect");
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        send
    }

    /// An HTTP/2 connection (ALPN h2 only).
    pub async fn h2(&self, addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Body> {
        let tls = self.connect(addr, &[b"h2"]).await.expect("TLS connect");
        assert_eq!(
            tls.get_ref().1.alpn_protocol(),
            Some(&b"h2"[..]),
            "server must select h2"
        );
        let (send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(conn);
        send
    }

    /// Sends one request on a fresh HTTP/1.1 connection and reads the whole answer.
    pub async fn send(&self, addr: SocketAddr, req: Request<Body>) -> Resp {
        let mut send = self.h1(addr).await;
        within("response", async {
            let resp = send.send_request(req).await.expect("response");
            read(resp).await
        })
        .await
    }

    /// `GET path` with optional extra headers.
    pub async fn get(&self, addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.send(addr, request("GET", path, headers, Bytes::new()))
            .await
    }

    /// Logs in as `root@pam` and returns (cookie header value, CSRF token).
    pub async fn login(&self, addr: SocketAddr) -> (String, String) {
        let resp = self
            .send(
                addr,
                request(
                    "POST",
                    "/api2/json/access/ticket",
                    &[("content-type", "application/x-www-form-urlencoded")],
                    Bytes::from(format!("username=root%40pam&password={ROOT_PASSWORD}")),
                ),
            )
            .await;
        assert_eq!(resp.status, 200, "login: {}", resp.reason());
        let data = &resp.json()["data"];
        (
            format!("PVEAuthCookie={}", data["ticket"].as_str().expect("ticket")),
            data["CSRFPreventionToken"]
                .as_str()
                .expect("csrf")
                .to_owned(),
        )
    }
}

pub use pve_network_migration::client::request;

/// Reads a response completely.
pub async fn read(resp: http::Response<hyper::body::Incoming>) -> Resp {
    let reason = resp
        .extensions()
        .get::<ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Resp {
        version: parts.version,
        status: parts.status,
        reason,
        headers: parts.headers,
        body,
    }
}
