//! Shared rig of the HTTP-level tests: a test CA, simulators on loopback
//! port 0 with real TLS, and a small HTTP/1.1 client that reports exactly
//! what came over the wire (status, reason phrase, headers, body), plus a raw
//! TLS exchange for the connection-breaking faults.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::ext::ReasonPhrase;
use hyper_util::rt::TokioIo;
use pve_migration_certs::testca::TestCa;
use pve_sim::{Flavor, SimConfig, SimHandle};
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The API token every test simulator knows.
pub const TOKEN: &str = "PVEAPIToken=root@pam!ci=00000000-0000-0000-0000-000000000000";
/// The control secret of [`Env::start_with_control`].
pub const SECRET: &str = "let-me-in";

/// Bounds every network wait, so a bug fails instead of hanging.
pub async fn within<F: std::future::Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// Waits (event-driven) until `cond` holds for a simulator's counters.
pub async fn wait_until(
    sim: &SimHandle,
    what: &str,
    cond: impl Fn(&pve_sim::server::Stats) -> bool,
) {
    let stats = sim.stats();
    within(what, async {
        loop {
            let notified = stats.arrived.notified();
            if cond(stats) {
                return;
            }
            notified.await;
        }
    })
    .await;
}

/// A temporary node: certificates, an interfaces file, the SDN directory.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub interfaces: PathBuf,
    pub client: Client,
}

impl Env {
    /// Writes a CA, a leaf for `localhost`/`127.0.0.1` and the example
    /// interfaces file.
    pub fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = TestCa::new("pve-sim test CA").expect("CA");
        let leaf = ca.issue(&["localhost", "127.0.0.1"]).expect("leaf");
        let certs = dir.path().join("certs");
        std::fs::create_dir(&certs).expect("certs dir");
        let (cert, key) = (certs.join("sim.pem"), certs.join("sim.key"));
        leaf.write(&cert, &key).expect("write leaf");
        let node = dir.path().join("node");
        std::fs::create_dir(&node).expect("node dir");
        let interfaces = node.join("interfaces");
        std::fs::write(&interfaces, pve_sim::EXAMPLE_INTERFACES).expect("write interfaces");
        Env {
            client: Client::new(&ca),
            dir,
            cert,
            key,
            interfaces,
        }
    }

    /// The default configuration of a simulator of this node.
    pub fn config(&self, flavor: Flavor) -> SimConfig {
        let mut c =
            SimConfig::for_tests(self.cert.clone(), self.key.clone(), self.interfaces.clone());
        c.flavor = flavor;
        c
    }

    /// Starts a simulator of this node.
    pub async fn start(&self, flavor: Flavor) -> SimHandle {
        self.start_with(flavor, |_| {}).await
    }

    /// Starts a simulator with a changed configuration.
    pub async fn start_with(
        &self,
        flavor: Flavor,
        change: impl FnOnce(&mut SimConfig),
    ) -> SimHandle {
        let mut c = self.config(flavor);
        change(&mut c);
        pve_sim::start(c).await.expect("start pve-sim")
    }

    /// Starts a simulator with the control endpoint enabled ([`SECRET`]).
    pub async fn start_with_control(&self, flavor: Flavor) -> SimHandle {
        self.start_with(flavor, |c| c.control_secret = Some(SECRET.into()))
            .await
    }

    /// The SDN directory (the default: `interfaces.sdn` next to the file).
    pub fn sdn_dir(&self) -> PathBuf {
        self.config(Flavor::Perl).sdn_dir()
    }

    /// Every file of the node (interfaces, interfaces.new, the SDN directory),
    /// except lock files, with its contents.
    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        snapshot_into(&self.dir.path().join("node"), &mut out);
        out
    }
}

fn snapshot_into(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let path = e.expect("dir entry").path();
        if path.is_dir() {
            out.insert(path.clone(), b"<dir>".to_vec());
            snapshot_into(&path, out);
        } else if path.extension().is_none_or(|x| x != "lock") {
            out.insert(path.clone(), std::fs::read(&path).expect("read file"));
        }
    }
}

/// How a request authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No credentials.
    None,
    /// The API token.
    Token,
    /// A ticket cookie, with the CSRF token on writes.
    Ticket { cookie: String, csrf: String },
}

/// A request under construction.
#[derive(Debug, Clone)]
pub struct Req {
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Bytes,
    auth: Auth,
}

/// A request with the API token.
pub fn req(method: &str, path: &str) -> Req {
    Req {
        method: method.parse().expect("method"),
        path: path.to_string(),
        headers: Vec::new(),
        body: Bytes::new(),
        auth: Auth::Token,
    }
}

impl Req {
    pub fn auth(mut self, auth: &Auth) -> Self {
        self.auth = auth.clone();
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }

    /// The dry-run marker.
    pub fn dry_run(self) -> Self {
        self.header("X-PVE-Dry-Run", "1")
    }

    /// A form-encoded body (what proxmoxer sends).
    pub fn form(mut self, kv: &[(&str, &str)]) -> Self {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in kv {
            s.append_pair(k, v);
        }
        self.body = Bytes::from(s.finish());
        self.header("Content-Type", "application/x-www-form-urlencoded")
    }

    /// A JSON body.
    pub fn json(mut self, v: &Value) -> Self {
        self.body = Bytes::from(v.to_string());
        self.header("Content-Type", "application/json")
    }

    fn build(&self) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(self.method.clone())
            .uri(&self.path)
            .header("Host", "localhost");
        match &self.auth {
            Auth::None => {}
            Auth::Token => b = b.header("Authorization", TOKEN),
            Auth::Ticket { cookie, csrf } => {
                b = b.header("Cookie", cookie);
                if self.method != Method::GET {
                    b = b.header("CSRFPreventionToken", csrf);
                }
            }
        }
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        b.body(Full::new(self.body.clone())).expect("request")
    }

    /// The request as raw HTTP/1.1 text (for [`Client::raw`]).
    pub fn to_raw(&self) -> Vec<u8> {
        let r = self.build();
        let mut out = format!("{} {} HTTP/1.1\r\n", r.method(), r.uri());
        for (k, v) in r.headers() {
            out.push_str(&format!("{k}: {}\r\n", v.to_str().expect("ascii")));
        }
        out.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    /// The reason phrase as sent.
    pub reason: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// `data` of the body.
    pub fn data(&self) -> Value {
        self.json()["data"].clone()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts a status and returns self.
    #[track_caller]
    pub fn expect(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{} {}: {}",
            self.status,
            self.reason,
            self.text()
        );
        self
    }
}

/// What a raw exchange saw: the bytes and how the stream ended.
#[derive(Debug)]
pub struct Raw {
    pub bytes: Vec<u8>,
    /// `None` for a clean end of stream, else the error kind.
    pub error: Option<std::io::ErrorKind>,
}

impl Raw {
    /// The head (up to the blank line), if it arrived completely.
    pub fn head(&self) -> Option<String> {
        let end = self.bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        Some(String::from_utf8_lossy(&self.bytes[..end]).into_owned())
    }

    /// The body bytes after the head.
    pub fn body(&self) -> &[u8] {
        match self.bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            Some(end) => &self.bytes[end + 4..],
            None => &[],
        }
    }

    /// The Content-Length header of the head.
    pub fn content_length(&self) -> Option<usize> {
        self.head()?.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
    }
}

/// A TLS HTTP/1.1 client trusting the test CA.
#[derive(Clone)]
pub struct Client {
    config: Arc<rustls::ClientConfig>,
}

impl Client {
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
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            config: Arc::new(config),
        }
    }

    /// A TLS connection.
    pub async fn connect(&self, addr: SocketAddr) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(addr).await?;
        TlsConnector::from(self.config.clone())
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
    }

    /// A kept-alive HTTP/1.1 connection.
    pub async fn conn(&self, addr: SocketAddr) -> Conn {
        let tls = self.connect(addr).await.expect("TLS connect");
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .expect("handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn { send }
    }

    /// One request on a fresh connection.
    pub async fn send(&self, addr: SocketAddr, r: Req) -> Resp {
        self.try_send(addr, r).await.expect("response")
    }

    /// One request on a fresh connection; transport errors are returned.
    pub async fn try_send(&self, addr: SocketAddr, r: Req) -> Result<Resp, hyper::Error> {
        let mut c = self.conn(addr).await;
        c.try_send(r).await
    }

    /// Writes raw request bytes over TLS and reads until the stream ends.
    pub async fn raw(&self, addr: SocketAddr, request: &[u8]) -> Raw {
        let mut tls = self.connect(addr).await.expect("TLS connect");
        tls.write_all(request).await.expect("write request");
        tls.flush().await.expect("flush");
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        let error = within("raw exchange", async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) => return None,
                    Ok(n) => bytes.extend_from_slice(&buf[..n]),
                    Err(e) => return Some(e.kind()),
                }
            }
        })
        .await;
        Raw { bytes, error }
    }

    /// Logs in as `root@pam` (form body, as proxmoxer does).
    pub async fn login(&self, addr: SocketAddr) -> Auth {
        let resp = self
            .send(
                addr,
                req("POST", "/api2/json/access/ticket")
                    .auth(&Auth::None)
                    .form(&[("username", "root@pam"), ("password", "secret")]),
            )
            .await
            .expect(200);
        let data = resp.data();
        Auth::Ticket {
            cookie: format!(
                "PVEAuthCookie={}",
                form_urlencoded::byte_serialize(
                    data["ticket"].as_str().expect("ticket").as_bytes()
                )
                .collect::<String>()
            ),
            csrf: data["CSRFPreventionToken"]
                .as_str()
                .expect("csrf")
                .to_string(),
        }
    }
}

/// A kept-alive connection.
pub struct Conn {
    send: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn try_send(&mut self, r: Req) -> Result<Resp, hyper::Error> {
        within("response", async {
            self.send.ready().await?;
            let resp = self.send.send_request(r.build()).await?;
            let reason = resp
                .extensions()
                .get::<ReasonPhrase>()
                .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
                .unwrap_or_else(|| resp.status().canonical_reason().unwrap_or("").to_string());
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok(Resp {
                status: parts.status,
                reason,
                headers: parts.headers,
                body,
            })
        })
        .await
    }

    pub async fn send(&mut self, r: Req) -> Resp {
        self.try_send(r).await.expect("response")
    }
}

/// Both flavours, for tests that run the same steps against each.
pub const FLAVORS: [Flavor; 2] = [Flavor::Perl, Flavor::Rust];

/// Replaces the hex start time of a UPID (`…:XXXXXXXX:type:…`) so two
/// answers of the same apply compare equal.
pub fn mask_upid(s: &str) -> String {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() < 5 || parts[0] != "UPID" {
        return s.to_string();
    }
    let mut p: Vec<String> = parts.iter().map(|x| x.to_string()).collect();
    p[4] = "STARTTIME".into();
    p.join(":")
}
