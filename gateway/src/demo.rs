//! `pve-network-migration demo`: the whole system on loopback, no Proxmox
//! needed. A throw-away CA, a simulated pveproxy (pve-sim) and the gateway
//! start in a temporary directory; a scripted walk sends representative
//! traffic through the gateway and prints what happened.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use pve_migration_certs::testca::TestCa;
use pve_migration_certs::upstream::UpstreamTrust;
use pve_sim::{SimConfig, SimHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::client::{HttpsClient, read_answer, request};
use crate::config::{Config, Overrides};
use crate::server::Gateway;

/// The demo user's password and API token.
const PASSWORD: &str = "demo";
const TOKEN_ID: &str = "root@pam!demo";
const TOKEN_SECRET: &str = "d3m0d3m0-0000-4000-8000-000000000000";

/// What to do after the walk.
#[derive(Debug, Clone, Default)]
pub struct DemoOptions {
    /// Keep everything running and print commands to try.
    pub serve: bool,
    /// Work directory (default: a new temporary directory, removed at the end).
    pub dir: Option<PathBuf>,
}

/// What the walk observed; the report is printed from it and tests assert on it.
#[derive(Debug, Clone, Default)]
pub struct DemoReport {
    /// Steps run and their one-line outcome.
    pub steps: Vec<(String, String)>,
    /// Gateway address.
    pub gateway: Option<SocketAddr>,
}

struct Env {
    dir: PathBuf,
    sim: SimHandle,
    gateway: Gateway,
    client: HttpsClient,
    ca_path: PathBuf,
}

async fn setup(dir: &Path) -> anyhow::Result<Env> {
    let ca = TestCa::new("pve-network-migration demo CA")?;
    let ca_path = dir.join("ca.pem");
    ca.write_cert(&ca_path)?;
    let names = ["localhost", "127.0.0.1"];
    ca.issue(&names)?
        .write(&dir.join("perl.pem"), &dir.join("perl.key"))?;
    ca.issue(&names)?
        .write(&dir.join("gateway.pem"), &dir.join("gateway.key"))?;
    let interfaces = dir.join("interfaces");
    std::fs::write(&interfaces, pve_sim::EXAMPLE_INTERFACES)?;

    let mut sim_config =
        SimConfig::for_tests(dir.join("perl.pem"), dir.join("perl.key"), interfaces);
    sim_config.users = vec![("root@pam".into(), PASSWORD.into())];
    sim_config.tokens = vec![(TOKEN_ID.into(), TOKEN_SECRET.into())];
    let sim = pve_sim::start(sim_config)
        .await
        .context("starting the simulated pveproxy")?;

    let toml = format!(
        r#"node = "pve1"
phase = "perl-only"
perl_api_base_url = "{perl}"
state_dir = "{dir}/state"
[listen]
addresses = ["127.0.0.1:0"]
tls_cert = "{dir}/gateway.pem"
tls_key = "{dir}/gateway.key"
[backends.perl]
ca = "{dir}/ca.pem"
[access]
pveproxy_defaults = "{dir}/pveproxy"
[log]
migration_log = "{dir}/migration.log"
[admin]
socket = "{dir}/control.sock"
"#,
        perl = sim.url(),
        dir = dir.display()
    );
    let config_path = dir.join("migration.toml");
    std::fs::write(&config_path, &toml)?;
    let config = Config::load(&config_path, &Overrides::default())?;
    let gateway = Gateway::start(config)
        .await
        .context("starting the gateway")?;
    let client = HttpsClient::new(&UpstreamTrust::CaFile(ca_path.clone()), "localhost")?;
    Ok(Env {
        dir: dir.to_owned(),
        sim,
        gateway,
        client,
        ca_path,
    })
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
    let env = setup(&dir).await?;
    let gw = env.gateway.local_addrs()[0];
    let perl = env.sim.addr();
    let mut report = DemoReport {
        gateway: Some(gw),
        ..DemoReport::default()
    };
    writeln!(
        out,
        "pve-network-migration demo (work dir {})",
        env.dir.display()
    )?;
    writeln!(out, "  simulated pveproxy  https://{perl}")?;
    writeln!(out, "  gateway (perl-only) https://{gw}\n")?;

    let mut step = |out: &mut dyn Write, name: &str, outcome: String| -> anyhow::Result<()> {
        writeln!(out, "  [{}] {name}: {outcome}", report.steps.len() + 1)?;
        report.steps.push((name.to_owned(), outcome));
        Ok(())
    };

    // 1. Ticket login through the gateway, like the web UI and proxmoxer.
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
    let ticket = login.json()["data"]["ticket"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let cookie = format!("PVEAuthCookie={ticket}");
    step(
        out,
        "login",
        format!("ticket for {}", login.json()["data"]["username"]),
    )?;

    // 2. Same answer direct and through the gateway, reason phrases included.
    for (label, path, auth) in [
        ("GET version", "/api2/json/version", Some(cookie.as_str())),
        (
            "GET version without credentials",
            "/api2/json/version",
            None,
        ),
        (
            "GET unknown path",
            "/api2/json/nodes/pve1/does-not-exist",
            Some(cookie.as_str()),
        ),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|c| vec![("cookie", c)]).unwrap_or_default();
        let direct = env
            .client
            .send(perl, request("GET", path, &headers, Bytes::new()))
            .await?;
        let via = env
            .client
            .send(gw, request("GET", path, &headers, Bytes::new()))
            .await?;
        let same =
            direct.status == via.status && direct.reason == via.reason && direct.body == via.body;
        if !same {
            bail!(
                "GET {path}: direct {} {} differs from gateway {} {}",
                direct.status,
                direct.reason,
                via.status,
                via.reason
            );
        }
        step(
            out,
            label,
            format!(
                "{} {} (identical direct and via gateway)",
                via.status.as_u16(),
                via.reason
            ),
        )?;
    }

    // 3. An ISO-sized upload streams through.
    let size: u64 = 256 << 20;
    let started = Instant::now();
    let uploaded = upload(
        &env.client,
        gw,
        &format!("PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}"),
        size,
    )
    .await?;
    let secs = started.elapsed().as_secs_f64();
    step(
        out,
        "upload",
        format!(
            "{} MiB streamed in {secs:.2} s ({:.0} MiB/s)",
            uploaded >> 20,
            (uploaded >> 20) as f64 / secs
        ),
    )?;

    // 4. A console WebSocket (noVNC) through the gateway.
    let echoed = websocket(&env, gw, &cookie).await?;
    step(
        out,
        "websocket",
        format!("{echoed} frames echoed through the gateway"),
    )?;

    // 5. Plain HTTP on the TLS port.
    let location = plain_http(gw).await?;
    step(out, "plain http", format!("301 → {location}"))?;

    writeln!(
        out,
        "\nEverything above went through the gateway in phase perl-only: it was invisible."
    )?;
    if opts.serve {
        writeln!(
            out,
            "\nServing until Ctrl-C. Try:\n  curl --cacert {ca} -H 'Authorization: PVEAPIToken={TOKEN_ID}={TOKEN_SECRET}' https://localhost:{port}/api2/json/version\n  curl -i --cacert {ca} https://localhost:{port}/api2/json/version",
            ca = env.ca_path.display(),
            port = gw.port()
        )?;
        out.flush()?;
        tokio::signal::ctrl_c().await?;
    }
    env.gateway.shutdown().await;
    Ok(report)
}

async fn upload(
    client: &HttpsClient,
    gw: SocketAddr,
    token: &str,
    size: u64,
) -> anyhow::Result<u64> {
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
        .header("authorization", token)
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
