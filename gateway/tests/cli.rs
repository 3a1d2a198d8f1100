//! The daemon as a process: exit codes, configuration errors on stderr, and
//! SIGTERM draining in-flight requests while refusing new connections.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use pve_migration_certs::testca::TestCa;
use pve_migration_tests::{TOKEN, TestClient, read, run_bounded, wait_until, within};
use pve_sim::SimConfig;

const BIN: &str = env!("CARGO_BIN_EXE_pve-network-migration");

fn run_with_config(dir: &Path, toml: &str) -> (Option<i32>, String) {
    let path = dir.join("migration.toml");
    std::fs::write(&path, toml).unwrap();
    let out = run_bounded(Command::new(BIN).args(["serve", "--config"]).arg(&path));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn malformed_config_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run_with_config(
        dir.path(),
        "node = \"pve1\"\n[listen]\naddresses = [\"127.0.0.1:0\"]\n[shadow]\nmax_in_flite = 3\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("migration.toml"), "{err}");
    assert!(
        err.contains("line 5") && err.contains("unknown field `max_in_flite`"),
        "{err}"
    );

    let (code, err) = run_with_config(
        dir.path(),
        "node = \"pve1\"\nphase = \"rust-only\"\n[listen]\naddresses = [\"127.0.0.1:0\"]\n",
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("migration.toml: phase: unknown phase 'rust-only'"),
        "{err}"
    );

    let out = run_bounded(Command::new(BIN).args([
        "serve",
        "--node",
        "pve1",
        "--listen",
        "127.0.0.1:0",
        "--perl-url",
        "http://127.0.0.1:8006",
    ]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--perl-url: perl_api_base_url"), "{err}");
}

#[test]
fn unusable_certificate_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let toml = format!(
        "node = \"pve1\"\nstate_dir = \"{}\"\n[listen]\naddresses = [\"127.0.0.1:0\"]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n[admin]\nsocket = \"/nonexistent/admin.sock\"\n",
        d.join("state").display(),
        d.join("missing.pem").display(),
        d.join("missing.key").display()
    );
    let (code, err) = run_with_config(d, &toml);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("missing.pem"), "{err}");
}

/// Reads the child's stderr until a line contains `needle` (at most 60 s);
/// returns that line.
async fn wait_for_line(
    lines: &mut tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>,
    needle: &str,
) -> String {
    within(&format!("the gateway logs '{needle}'"), async {
        while let Some(line) = lines.next_line().await.expect("stderr") {
            eprintln!("gateway: {line}");
            if line.contains(needle) {
                return line;
            }
        }
        panic!("gateway exited before logging '{needle}'");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_and_refuses_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = TestCa::new("cli test CA").unwrap();
    ca.write_cert(&d.join("ca.pem")).unwrap();
    ca.issue(&["localhost", "127.0.0.1"])
        .unwrap()
        .write(&d.join("gw.pem"), &d.join("gw.key"))
        .unwrap();
    ca.issue(&["localhost", "127.0.0.1"])
        .unwrap()
        .write(&d.join("sim.pem"), &d.join("sim.key"))
        .unwrap();
    std::fs::write(d.join("interfaces"), pve_migration_tests::INTERFACES).unwrap();
    let sim = pve_sim::start(SimConfig::for_tests(
        d.join("sim.pem"),
        d.join("sim.key"),
        d.join("interfaces"),
    ))
    .await
    .unwrap();
    let toml = format!(
        r#"node = "pve1"
perl_api_base_url = "{url}"
state_dir = "{d}/state"
[listen]
addresses = ["127.0.0.1:0"]
tls_cert = "{d}/gw.pem"
tls_key = "{d}/gw.key"
[backends.perl]
ca = "{d}/ca.pem"
[access]
pveproxy_defaults = "{d}/pveproxy"
[log]
migration_log = "{d}/migration.log"
[admin]
socket = "{d}/control.sock"
"#,
        url = sim.url(),
        d = d.display()
    );
    std::fs::write(d.join("migration.toml"), toml).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(d.join("migration.toml"))
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stderr.take().unwrap()));
    let listening = wait_for_line(&mut lines, "listening").await;
    let addr: SocketAddr = listening
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("addr= in the listening line")
        .parse()
        .unwrap();

    // A slow upload: the head and a first chunk now, the rest after SIGTERM.
    let client = TestClient::new(&ca);
    let (chunk_tx, chunk_rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(chunk_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::io::Error>(Frame::data(b)), rx))
    });
    let body = StreamBody::new(stream)
        .map_err(|e| Box::new(e) as pve_network_migration::body::BoxError)
        .boxed_unsync();
    let req = Request::post("/api2/json/nodes/pve1/storage/local/upload")
        .header("host", "localhost")
        .header("authorization", TOKEN)
        .header("content-length", 6)
        .body(body)
        .unwrap();
    let mut h1 = client.h1(addr).await;
    let in_flight = tokio::spawn(async move { read(h1.send_request(req).await.unwrap()).await });
    chunk_tx.send(Bytes::from_static(b"abc")).await.unwrap();
    wait_until(&sim, "upload reaches pveproxy", |s| {
        s.uploads_started.load(Ordering::SeqCst) == 1
    })
    .await;

    let kill = run_bounded(
        Command::new("kill").args(["-TERM", &child.id().expect("running").to_string()]),
    );
    assert!(kill.status.success());
    let stopped = wait_for_line(&mut lines, "stopped accepting").await;
    assert!(stopped.contains("stopped accepting"));
    let rest = tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("gateway: {l}");
        }
    });

    // New connections are refused while the old request is still running.
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "{refused:?}"
    );

    chunk_tx.send(Bytes::from_static(b"def")).await.unwrap();
    drop(chunk_tx);
    let resp = within("in-flight request completes", in_flight)
        .await
        .unwrap();
    assert_eq!(resp.status, 200, "{}", resp.reason());
    assert_eq!(resp.json()["data"]["bytes"], 6);

    let status = within("the gateway exits", child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
    within("stderr ends", rest).await.unwrap();
}
