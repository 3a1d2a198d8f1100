//! `pve-network-migration demo`: the whole migration on loopback, no Proxmox
//! needed.
//!
//! A throw-away CA, a Perl-flavour and a Rust-flavour pve-sim sharing one
//! interfaces file (a node with a bond, a VLAN-aware bridge and a VLAN), and
//! the gateway start in a temporary directory. A scripted walk then drives
//! representative traffic through every phase, changing phases the way
//! `migration-ctl phase set` does (editing migration.toml through the admin
//! socket), injects a Rust fault, watches the automatic trip, and re-arms the
//! node with the admin API's `trip reset`. The report is read back from what
//! operators read: `migration.log`, the evidence store and the metrics.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use pve_migration_certs::testca::TestCa;
use pve_migration_certs::upstream::UpstreamTrust;
use pve_sim::{Fault, SimConfig, SimHandle};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::client::{Answer, HttpsClient, read_answer, request};
use crate::config::{Config, Overrides};
use crate::evidence::SummaryRow;
use crate::server::Gateway;

/// The demo user's password and API token.
const PASSWORD: &str = "demo";
const TOKEN_ID: &str = "root@pam!demo";
const TOKEN_SECRET: &str = "d3m0d3m0-0000-4000-8000-000000000000";
const NET: &str = "/api2/json/nodes/pve1/network";

/// What to do after the walk.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Keep everything running and print commands to try.
    pub serve: bool,
    /// Work directory (default: a new temporary directory, removed at the end).
    pub dir: Option<PathBuf>,
}

/// One phase of the walk, as `migration.log` and the evidence tell it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhaseReport {
    /// The phase.
    pub phase: String,
    /// Migrated requests logged in this phase.
    pub requests: u64,
    /// Requests per serving backend.
    pub served_by: BTreeMap<String, u64>,
    /// Compared exchanges per verdict.
    pub verdicts: BTreeMap<String, u64>,
    /// Fallbacks to Perl.
    pub fallbacks: u64,
}

/// What the walk observed; the printed report is made from it and tests assert on it.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// Steps and their one-line outcome, in order.
    pub steps: Vec<(String, String)>,
    /// Per phase, in walk order.
    pub phases: Vec<PhaseReport>,
    /// The most frequent evidence fingerprints with an exemplar patch.
    pub fingerprints: Vec<SummaryRow>,
    /// The trip line of migration.log, if the node tripped.
    pub trip: Option<String>,
    /// Whether the admin API's trip reset re-armed the node.
    pub reset: bool,
    /// The gateway's address.
    pub gateway: Option<SocketAddr>,
    /// Where the files are.
    pub dir: PathBuf,
}

struct Env {
    sim_perl: SimHandle,
    sim_rust: SimHandle,
    gateway: Gateway,
    client: HttpsClient,
    ca_path: PathBuf,
    admin: PathBuf,
}

async fn setup(dir: &Path) -> anyhow::Result<Env> {
    let ca = TestCa::new("pve-network-migration demo CA")?;
    let ca_path = dir.join("ca.pem");
    ca.write_cert(&ca_path)?;
    let names = ["localhost", "127.0.0.1"];
    ca.issue(&names)?
        .write(&dir.join("sim.pem"), &dir.join("sim.key"))?;
    ca.issue(&names)?
        .write(&dir.join("gateway.pem"), &dir.join("gateway.key"))?;
    let interfaces = dir.join("interfaces");
    std::fs::write(&interfaces, pve_sim::EXAMPLE_INTERFACES)?;

    let sim = |flavor| {
        let mut c =
            SimConfig::for_tests(dir.join("sim.pem"), dir.join("sim.key"), interfaces.clone());
        c.users = vec![("root@pam".into(), PASSWORD.into())];
        c.tokens = vec![(TOKEN_ID.into(), TOKEN_SECRET.into())];
        c.flavor = flavor;
        c
    };
    let perl_config = sim(pve_sim::Flavor::Perl);
    let sim_perl = pve_sim::start(perl_config)
        .await
        .context("starting the Perl-flavour pve-sim")?;
    let mut rust_config = sim(pve_sim::Flavor::Rust);
    // A realistic porting slip: one error message worded differently.
    rust_config.divergences = pve_sim::network::Divergences::parse_list("different-error-message")?;
    let sim_rust = pve_sim::start(rust_config)
        .await
        .context("starting the Rust-flavour pve-sim")?;

    let admin = dir.join("control.sock");
    let toml = format!(
        r#"# The demo's migration.toml; phases are changed the way migration-ctl does.
node = "pve1"
phase = "perl-only"
perl_api_base_url = "{perl}"
state_dir = "{dir}/state"

[listen]
addresses = ["127.0.0.1:0"]
tls_cert = "{dir}/gateway.pem"
tls_key = "{dir}/gateway.key"

[backends.perl]
ca = "{dir}/ca.pem"

[backends.rust]
url = "{rust}"
ca = "{dir}/ca.pem"

[access]
pveproxy_defaults = "{dir}/pveproxy"

[log]
migration_log = "{dir}/migration.log"

[admin]
socket = "{admin}"

[telemetry]
metrics_listen = "127.0.0.1:0"

[nodes.pve1]
phase = "perl-only"
"#,
        perl = sim_perl.url(),
        rust = sim_rust.url(),
        dir = dir.display(),
        admin = admin.display(),
    );
    let config_path = dir.join("migration.toml");
    std::fs::write(&config_path, &toml)?;
    let config = Config::load(&config_path, &Overrides::default())?;
    let gateway = Gateway::start(config)
        .await
        .context("starting the gateway")?;
    let client = HttpsClient::new(&UpstreamTrust::CaFile(ca_path.clone()), "localhost")?;
    Ok(Env {
        sim_perl,
        sim_rust,
        gateway,
        client,
        ca_path,
        admin,
    })
}

impl Env {
    fn gw(&self) -> SocketAddr {
        self.gateway.local_addrs()[0]
    }

    async fn token(&self, method: &str, path: &str, form: &str) -> anyhow::Result<Answer> {
        let token = format!("PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}");
        let mut headers = vec![("authorization", token.as_str())];
        if !form.is_empty() {
            headers.push(("content-type", "application/x-www-form-urlencoded"));
        }
        Ok(self
            .client
            .send(
                self.gw(),
                request(method, path, &headers, Bytes::from(form.to_owned())),
            )
            .await?)
    }

    /// The admin API, as migration-ctl calls it.
    async fn admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let (status, bytes) = crate::admin::call(&self.admin, method, path, body.as_ref()).await?;
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("admin API {path}: {status} {}", v["error"]);
        }
        Ok(v)
    }

    /// `migration-ctl phase set PHASE`: reads the file digest, then sets.
    async fn phase_set(&self, phase: &str) -> anyhow::Result<()> {
        let view = self.admin(Method::GET, "/phase", None).await?;
        let set = json!({"phase": phase, "expect_digest": view["file_digest"]});
        self.admin(Method::POST, "/phase", Some(set)).await?;
        Ok(())
    }

    /// Waits until the background comparisons of `phase` have all been logged.
    async fn settle(&self, logged_at_least: usize) -> anyhow::Result<()> {
        let engine = self.gateway.engine();
        let log = self.gateway.control().config().migration_log.clone();
        tokio::time::timeout(std::time::Duration::from_secs(20), async {
            loop {
                let notified = engine.recorded().notified();
                engine.recorder().flush().await;
                let lines = std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .lines()
                    .count();
                if lines >= logged_at_least {
                    return;
                }
                notified.await;
            }
        })
        .await
        .context("background comparisons did not finish")
    }
}

fn log_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Runs the walk, printing progress to `out`.
///
/// # Errors
/// When a component cannot start or a step does not behave as it must.
pub async fn run(opts: &DemoOptions, out: &mut dyn Write) -> anyhow::Result<DemoReport> {
    let tmp;
    let dir = match &opts.dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            tmp = tempfile::Builder::new()
                .prefix("pve-network-migration-demo.")
                .tempdir()?;
            tmp.path().to_owned()
        }
    };
    let started = Instant::now();
    let env = setup(&dir).await?;
    let gw = env.gw();
    let config = env.gateway.control().config();
    let log_path = config.migration_log.clone();
    let mut report = DemoReport {
        gateway: Some(gw),
        dir: dir.clone(),
        ..DemoReport::default()
    };
    writeln!(
        out,
        "pve-network-migration demo — work dir {}",
        dir.display()
    )?;
    writeln!(
        out,
        "  Perl backend (pve-sim, perl flavour)  https://{}",
        env.sim_perl.addr()
    )?;
    writeln!(
        out,
        "  Rust backend (pve-sim, rust flavour)  https://{}",
        env.sim_rust.addr()
    )?;
    writeln!(
        out,
        "  gateway                               https://{gw}\n"
    )?;

    let mut step = |out: &mut dyn Write, name: &str, outcome: String| -> anyhow::Result<()> {
        writeln!(out, "  [{:>2}] {name}: {outcome}", report.steps.len() + 1)?;
        report.steps.push((name.to_owned(), outcome));
        Ok(())
    };

    // ── perl-only: the gateway is invisible ──────────────────────────────
    writeln!(out, "phase perl-only — everything streams to Perl")?;
    let login = env
        .client
        .send(
            gw,
            request(
                "POST",
                "/api2/json/access/ticket",
                &[("content-type", "application/x-www-form-urlencoded")],
                Bytes::from(format!("username=root%40pam&password={PASSWORD}")),
            ),
        )
        .await?;
    if login.status != 200 {
        bail!(
            "login through the gateway failed: {} {}",
            login.status,
            login.reason
        );
    }
    let cookie = format!(
        "PVEAuthCookie={}",
        login.json()["data"]["ticket"].as_str().unwrap_or_default()
    );
    step(
        out,
        "login",
        format!("ticket for {}", login.json()["data"]["username"]),
    )?;
    let direct = env
        .client
        .send(
            env.sim_perl.addr(),
            request("GET", NET, &[("cookie", &cookie)], Bytes::new()),
        )
        .await?;
    let via = env
        .client
        .send(
            gw,
            request("GET", NET, &[("cookie", &cookie)], Bytes::new()),
        )
        .await?;
    if direct.body != via.body || direct.status != via.status {
        bail!("perl-only: the gateway changed the answer");
    }
    step(
        out,
        "GET network",
        format!(
            "{} bytes, identical direct and through the gateway",
            via.body.len()
        ),
    )?;
    let unknown = env.token("GET", &format!("{NET}/vmbr9"), "").await?;
    step(
        out,
        "GET unknown interface",
        format!(
            "{} {} (reason phrase kept)",
            unknown.status.as_u16(),
            unknown.reason
        ),
    )?;
    let size = 64u64 << 20;
    let t = Instant::now();
    let uploaded = upload(&env.client, gw, size).await?;
    step(
        out,
        "ISO upload",
        format!(
            "{} MiB streamed in {:.2} s",
            uploaded >> 20,
            t.elapsed().as_secs_f64()
        ),
    )?;
    let echoed = websocket(&env, gw, &cookie).await?;
    step(out, "noVNC websocket", format!("{echoed} frames echoed"))?;
    let location = plain_http(gw).await?;
    step(out, "plain http", format!("301 → {location}"))?;

    // ── shadow: Perl serves, Rust is compared ────────────────────────────
    env.phase_set("shadow").await?;
    writeln!(
        out,
        "\nphase shadow — Perl serves, Rust is mirrored (writes as dry-runs)"
    )?;
    let before = log_lines(&log_path);
    for path in [
        NET.to_owned(),
        format!("{NET}/vmbr0"),
        format!("{NET}/bond0"),
        format!("{NET}/vmbr9"),
    ] {
        env.token("GET", &path, "").await?;
    }
    let w = env
        .token(
            "POST",
            NET,
            "iface=vmbr7&type=bridge&autostart=1&comments=demo",
        )
        .await?;
    step(
        out,
        "create vmbr7",
        format!(
            "{} from Perl; Rust validated a dry-run copy",
            w.status.as_u16()
        ),
    )?;
    env.settle(before + 5).await?;
    let dry = env
        .sim_rust
        .stats()
        .dry_runs
        .load(std::sync::atomic::Ordering::SeqCst);
    step(
        out,
        "shadow",
        format!("5 requests compared; Rust answered {dry} dry-run write(s), wrote nothing"),
    )?;

    // ── rust-read-only: Rust serves reads ────────────────────────────────
    env.phase_set("rust-read-only").await?;
    writeln!(
        out,
        "\nphase rust-read-only — Rust serves reads, Perl answers alongside for comparison"
    )?;
    let before = log_lines(&log_path);
    let list = env.token("GET", NET, "").await?;
    let typed = String::from_utf8_lossy(&list.body).contains(r#""bridge_fd":0"#);
    step(
        out,
        "GET network",
        format!(
            "served by {}",
            if typed { "Rust (typed values)" } else { "Perl" }
        ),
    )?;
    env.token("GET", &format!("{NET}/vmbr0"), "").await?;
    env.settle(before + 2).await?;

    // ── rust-basic-write: Rust writes, read-after-write checks ───────────
    env.phase_set("rust-basic-write").await?;
    writeln!(
        out,
        "\nphase rust-basic-write — Rust carries out config writes, both are read back and compared"
    )?;
    let before = log_lines(&log_path);
    let a = env
        .token(
            "PUT",
            &format!("{NET}/vmbr7"),
            "type=bridge&comments=changed%20by%20rust",
        )
        .await?;
    let b = env
        .token("POST", NET, "iface=vmbr8&type=bridge&bridge_vlan_aware=1")
        .await?;
    let c = env.token("DELETE", &format!("{NET}/vmbr8"), "").await?;
    step(
        out,
        "writes",
        format!(
            "update {}, create {}, delete {} — each checked by reading both backends",
            a.status.as_u16(),
            b.status.as_u16(),
            c.status.as_u16()
        ),
    )?;
    let apply = env.token("PUT", NET, "").await?;
    step(
        out,
        "apply",
        format!(
            "{} by Perl (apply stays with Perl in this phase)",
            apply.status.as_u16()
        ),
    )?;
    env.settle(before + 4).await?;

    // ── a Rust fault: fallback and automatic trip ────────────────────────
    writeln!(out, "\nfault — the Rust backend starts answering 500")?;
    env.sim_rust
        .set_faults([Fault::parse("error-rate=1")?])
        .await?;
    let before = log_lines(&log_path);
    let answer = env.token("GET", NET, "").await?;
    step(
        out,
        "GET network",
        format!(
            "{} — the client still gets a correct answer (from Perl)",
            answer.status.as_u16()
        ),
    )?;
    env.settle(before + 2).await?;
    let (configured, effective) = env.gateway.engine().phases();
    step(
        out,
        "automatic trip",
        format!("configured {configured}, effective {effective}"),
    )?;
    let after = env.token("GET", NET, "").await?;
    step(
        out,
        "next request",
        format!(
            "{} served by Perl; Rust is no longer primary",
            after.status.as_u16()
        ),
    )?;

    // ── the operator re-arms ─────────────────────────────────────────────
    env.sim_rust.clear_faults().await?;
    let reset = env.admin(Method::POST, "/trip/reset", None).await?;
    report.reset = !reset["lifted"].is_null() && reset["effective"] == "rust-basic-write";
    step(
        out,
        "migration-ctl trip reset",
        format!(
            "effective phase {}",
            reset["effective"].as_str().unwrap_or("?")
        ),
    )?;

    // ── the report ───────────────────────────────────────────────────────
    env.gateway.engine().recorder().flush().await;
    let log = std::fs::read_to_string(&log_path)?;
    let ev = config.evidence.dir.clone();
    report.phases = phase_reports(&log, &crate::evidence::read_records(&ev).records);
    report.trip = log
        .lines()
        .find(|l| l.contains("event=trip"))
        .map(str::to_owned);
    report.fingerprints = crate::evidence::summary(&ev, None, None)
        .into_iter()
        .filter(|r| r.verdict != "match")
        .take(5)
        .collect();

    writeln!(out, "\nreport")?;
    writeln!(
        out,
        "  {:<17} {:>8}  {:<15} {:<58} {:>9}",
        "phase", "requests", "served by", "verdicts", "fallbacks"
    )?;
    for p in &report.phases {
        let fmt = |m: &BTreeMap<String, u64>| {
            m.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            out,
            "  {:<17} {:>8}  {:<15} {:<58} {:>9}",
            p.phase,
            p.requests,
            fmt(&p.served_by),
            fmt(&p.verdicts),
            p.fallbacks
        )?;
    }
    if let Some(t) = &report.trip {
        writeln!(out, "\n  trip: {}", t.trim())?;
    }
    writeln!(
        out,
        "\n  top evidence fingerprints (differences that are not a plain match):"
    )?;
    for f in &report.fingerprints {
        writeln!(
            out,
            "    {:>4} × {} {} [{}]",
            f.count, f.endpoint, f.verdict, f.fingerprint
        )?;
        if let Some(p) = &f.exemplar {
            writeln!(
                out,
                "         patch: {}",
                serde_json::to_string(p).unwrap_or_default()
            )?;
        }
    }
    writeln!(out, "\n  evidence      {}", ev.display())?;
    writeln!(out, "  migration.log {}", log_path.display())?;
    writeln!(
        out,
        "  metrics       http://{}/metrics and the admin socket",
        env.gateway
            .metrics_addr()
            .map(|a| a.to_string())
            .unwrap_or_default()
    )?;
    writeln!(out, "  admin socket  {}", env.admin.display())?;
    writeln!(
        out,
        "\nfinished in {:.1} s",
        started.elapsed().as_secs_f64()
    )?;

    if opts.serve {
        writeln!(
            out,
            "\nServing until Ctrl-C. Try:\n  curl --cacert {ca} -H 'Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}' https://localhost:{port}{NET}\n  migration-ctl --socket {sock} health\n  migration-ctl --socket {sock} phase set shadow\n  migration-ctl --socket {sock} evidence summary --since 1h\n  curl http://{metrics}/metrics",
            ca = env.ca_path.display(),
            port = gw.port(),
            sock = env.admin.display(),
            metrics = env
                .gateway
                .metrics_addr()
                .map(|a| a.to_string())
                .unwrap_or_default(),
        )?;
        out.flush()?;
        tokio::signal::ctrl_c().await?;
    }
    env.gateway.shutdown().await;
    Ok(report)
}

/// Groups migration.log decision lines by their `phase=` field, in order of
/// appearance; verdicts come from the evidence (including read-after-write checks).
fn phase_reports(log: &str, evidence: &[crate::evidence::EvidenceRecord]) -> Vec<PhaseReport> {
    let mut out: Vec<PhaseReport> = Vec::new();
    for line in log.lines().filter(|l| !l.contains("event=")) {
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k).and_then(|r| r.strip_prefix('=')))
                .unwrap_or("-")
                .to_owned()
        };
        let phase = field("phase");
        let idx = match out.iter().position(|p| p.phase == phase) {
            Some(i) => i,
            None => {
                out.push(PhaseReport {
                    phase: phase.clone(),
                    ..PhaseReport::default()
                });
                out.len() - 1
            }
        };
        let p = &mut out[idx];
        p.requests += 1;
        *p.served_by.entry(field("served_by")).or_default() += 1;
        if field("used_fallback") == "true" {
            p.fallbacks += 1;
        }
    }
    for r in evidence {
        if let Some(p) = out.iter_mut().find(|p| p.phase == r.phase) {
            let key = if r.kind == "read_after_write" {
                format!("{} (read-after-write)", r.verdict)
            } else {
                r.verdict.clone()
            };
            *p.verdicts.entry(key).or_default() += 1;
        }
    }
    out
}

async fn upload(client: &HttpsClient, gw: SocketAddr, size: u64) -> anyhow::Result<u64> {
    static CHUNK: [u8; 64 * 1024] = [0x5a; 64 * 1024];
    let chunks = size / CHUNK.len() as u64;
    let stream = futures_util::stream::iter(
        (0..chunks).map(|_| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(&CHUNK)))),
    );
    let body = StreamBody::new(stream)
        .map_err(|e| Box::new(e) as crate::body::BoxError)
        .boxed_unsync();
    let req = Request::post("/api2/json/nodes/pve1/storage/local/upload")
        .header("host", "localhost")
        .header(
            "authorization",
            format!("PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}"),
        )
        .header("content-length", chunks * CHUNK.len() as u64)
        .body(body)?;
    let mut send = client.connect(gw).await?;
    let answer = read_answer(send.send_request(req).await?)
        .await
        .map_err(anyhow::Error::msg)?;
    if answer.status != 200 {
        bail!("upload failed: {} {}", answer.status, answer.reason);
    }
    Ok(answer.json()["data"]["bytes"].as_u64().unwrap_or(0))
}

async fn websocket(env: &Env, gw: SocketAddr, cookie: &str) -> anyhow::Result<usize> {
    let tcp = tokio::net::TcpStream::connect(gw).await?;
    let config = pve_migration_certs::upstream::client_config(
        &UpstreamTrust::CaFile(env.ca_path.clone()),
        &[b"http/1.1"],
    )?;
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(rustls_pki_types::ServerName::try_from("localhost")?, tcp)
        .await?;
    let mut req = "wss://localhost/api2/json/nodes/pve1/qemu/100/vncwebsocket?port=5900"
        .into_client_request()?;
    req.headers_mut().insert("cookie", cookie.parse()?);
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await?;
    let mut echoed = 0;
    for i in 0..10 {
        let text = format!("keystroke {i}");
        ws.send(Message::text(text.clone())).await?;
        match ws.next().await {
            Some(Ok(m)) if m.to_text().ok() == Some(text.as_str()) => echoed += 1,
            other => bail!("websocket echo failed: {other:?}"),
        }
    }
    ws.close(None).await?;
    Ok(echoed)
}

async fn plain_http(gw: SocketAddr) -> anyhow::Result<String> {
    let mut tcp = tokio::net::TcpStream::connect(gw).await?;
    tcp.write_all(format!("GET / HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", gw.port()).as_bytes())
        .await?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).await?;
    text.lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no redirect for plain HTTP: {text}"))
}
