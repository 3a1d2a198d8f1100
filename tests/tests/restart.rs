//! Restarts that refuse nothing: the listening socket is held outside the
//! gateway (by systemd's socket unit; here by the test) and passed to each
//! start as `LISTEN_FDS`, while clients keep sending requests through a
//! SIGTERM of the running gateway and the start of the next one.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use pve_migration_tests::node::workspace_exe;
use pve_migration_tests::{Rig, RigOptions, RustOptions, TOKEN, TestClient, request, within};
use tokio::net::UnixDatagram;
use tokio::sync::Notify;

/// How systemd starts a socket-activated service, with `sh` in its place:
/// the socket (given as stdin) becomes descriptor 3 and `LISTEN_PID` is the
/// pid the gateway will have (`exec` keeps it).
const ACTIVATE: &str = r#"exec 3<&0 0</dev/null; export LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=https; exec "$0" "$@""#;

/// A gateway child process; killed if the test ends without stopping it.
struct Child {
    child: tokio::process::Child,
    stderr: PathBuf,
}

impl Child {
    fn spawn(config: &Path, socket: OwnedFd, notify: &Path, stderr: PathBuf) -> Child {
        let log = std::fs::File::create(&stderr).expect("stderr file");
        let child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(ACTIVATE)
            .arg(workspace_exe(
                "pve-network-migration",
                "pve-network-migration",
            ))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::from(socket))
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .env("NOTIFY_SOCKET", notify)
            .env("RUST_LOG", "info")
            .kill_on_drop(true)
            .spawn()
            .expect("spawn gateway");
        Child { child, stderr }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, as `systemctl stop` sends, then waits for the exit.
    async fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running");
        let sent = tokio::process::Command::new("/bin/sh")
            .args(["-c", "kill -TERM \"$1\"", "sh", &pid.to_string()])
            .status()
            .await
            .expect("kill");
        assert!(sent.success(), "kill -TERM {pid}");
        within("gateway exits after SIGTERM", self.child.wait())
            .await
            .expect("wait")
    }
}

/// Waits for `READY=1` on the notification socket (`Type=notify`).
async fn ready(notify: &UnixDatagram, child: &Child) {
    let mut buf = [0u8; 512];
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let n = notify.recv(&mut buf).await.expect("notify recv");
            if String::from_utf8_lossy(&buf[..n])
                .lines()
                .any(|l| l == "READY=1")
            {
                return;
            }
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "gateway never sent READY=1; its stderr:\n{}",
        child.stderr()
    );
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    retried: AtomicU64,
    max_latency_ms: AtomicU64,
    failures: std::sync::Mutex<Vec<String>>,
    changed: Notify,
}

impl Tally {
    fn record(&self, started: Instant, result: Result<u16, String>) {
        let ms = started.elapsed().as_millis() as u64;
        self.max_latency_ms.fetch_max(ms, Ordering::Relaxed);
        match result {
            Ok(200) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok(status) => self
                .failures
                .lock()
                .expect("lock")
                .push(format!("status {status}")),
            Err(e) => self.failures.lock().expect("lock").push(e),
        }
        self.changed.notify_waiters();
    }

    async fn until_ok(&self, what: &str, n: u64) {
        within(what, async {
            loop {
                let changed = self.changed.notified();
                if self.ok.load(Ordering::Relaxed) >= n {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }
}

const PATH: &str = "/api2/json/nodes/pve1/network";

/// One GET on a new connection.
async fn fresh_get(client: &TestClient, addr: std::net::SocketAddr) -> Result<u16, String> {
    let tls = client
        .connect(addr, &[b"http/1.1"])
        .await
        .map_err(|e| format!("TLS connect: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let resp = send
        .send_request(request(
            "GET",
            PATH,
            &[("authorization", TOKEN)],
            Bytes::new(),
        ))
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

/// GETs on one kept-alive connection. A request that gets no answer because
/// the server closed the idle connection at that moment is retried once on
/// a new connection, as HTTP clients do for idempotent requests (RFC 9110
/// §9.2.2); the retry is counted.
async fn keepalive_loop(
    client: TestClient,
    addr: std::net::SocketAddr,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
) {
    let mut conn: Option<
        hyper::client::conn::http1::SendRequest<pve_network_migration::body::Body>,
    > = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            if let Some(s) = conn.as_mut()
                && s.ready().await.is_err()
            {
                conn = None;
            }
            let send = match conn.as_mut() {
                Some(s) => s,
                None => match client.connect(addr, &[b"http/1.1"]).await {
                    Ok(tls) => match hyper::client::conn::http1::handshake(TokioIo::new(tls)).await
                    {
                        Ok((s, c)) => {
                            tokio::spawn(c);
                            conn.insert(s)
                        }
                        Err(e) => break Err(format!("keep-alive handshake: {e}")),
                    },
                    Err(e) => break Err(format!("keep-alive TLS connect: {e}")),
                },
            };
            let req = request("GET", PATH, &[("authorization", TOKEN)], Bytes::new());
            match send.send_request(req).await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    break match resp.into_body().collect().await {
                        Ok(_) => Ok(status),
                        Err(e) => Err(format!("keep-alive body: {e}")),
                    };
                }
                Err(_) if attempt == 1 => {
                    tally.retried.fetch_add(1, Ordering::Relaxed);
                    conn = None;
                }
                Err(e) => break Err(format!("keep-alive request (retried): {e}")),
            }
        };
        tally.record(started, result);
    }
}

/// The rig's configuration for a child gateway, with its own admin socket,
/// state and log (the rig's in-process gateway keeps its own).
fn child_config(rig: &Rig) -> PathBuf {
    let d = rig.dir.path();
    let toml = std::fs::read_to_string(rig.config_file())
        .expect("config")
        .replace("control.sock", "child.sock")
        .replace(
            &d.join("state").display().to_string(),
            &d.join("child-state").display().to_string(),
        )
        .replace("migration.log", "child-migration.log");
    let config = d.join("child.toml");
    std::fs::write(&config, toml).expect("write child config");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn socket_activated_restart_refuses_nothing() {
    let rig = Rig::start().await;
    let d = rig.dir.path();
    let config = child_config(&rig);

    // systemd's part: the socket, bound once, outliving every gateway.
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    let notify_path = d.join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    let fd = || OwnedFd::from(socket.try_clone().expect("dup"));

    let mut first = Child::spawn(&config, fd(), &notify_path, d.join("first.stderr"));
    ready(&notify, &first).await;
    assert!(
        first.stderr().lines().any(|l| l.ends_with(&format!(
            " INFO pve_network_migration: listening socket passed by systemd addr={addr} name=https"
        ))),
        "the first gateway must serve the passed socket; its stderr:\n{}",
        first.stderr()
    );

    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut loops = Vec::new();
    for _ in 0..2 {
        let (client, tally, stop) = (rig.client.clone(), tally.clone(), stop.clone());
        loops.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                let r = tokio::time::timeout(Duration::from_secs(30), fresh_get(&client, addr))
                    .await
                    .unwrap_or_else(|_| Err("no answer within 30 s".to_string()));
                tally.record(started, r);
            }
        }));
    }
    loops.push(tokio::spawn(keepalive_loop(
        rig.client.clone(),
        addr,
        tally.clone(),
        stop.clone(),
    )));

    tally
        .until_ok("requests through the first gateway", 30)
        .await;
    let restart = Instant::now();
    let status = first.terminate().await;
    assert!(
        status.success(),
        "first gateway: {status}\n{}",
        first.stderr()
    );
    let during_stop = tally.ok.load(Ordering::Relaxed);
    let mut second = Child::spawn(&config, fd(), &notify_path, d.join("second.stderr"));
    ready(&notify, &second).await;
    let gap = restart.elapsed();
    tally
        .until_ok("requests through the second gateway", during_stop + 30)
        .await;
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        within("client loop ends", l).await.expect("client loop");
    }
    let status = second.terminate().await;
    assert!(
        status.success(),
        "second gateway: {status}\n{}",
        second.stderr()
    );

    let failures = tally.failures.lock().expect("lock").clone();
    eprintln!(
        "restart: {} requests answered 200, {} failed, {} keep-alive retries, \
         stop-to-ready {} ms, slowest request {} ms",
        tally.ok.load(Ordering::Relaxed),
        failures.len(),
        tally.retried.load(Ordering::Relaxed),
        gap.as_millis(),
        tally.max_latency_ms.load(Ordering::Relaxed),
    );
    assert_eq!(failures, Vec::<String>::new(), "failed requests");
}

#[tokio::test]
async fn a_passed_socket_that_is_not_a_tcp_listener_is_refused() {
    let rig = Rig::start().await;
    let d = rig.dir.path();
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let notify_path = d.join("notify");
    let _notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    let mut child = Child::spawn(
        &rig.config_file(),
        OwnedFd::from(udp),
        &notify_path,
        d.join("stderr"),
    );
    let status = within("gateway exits", child.child.wait())
        .await
        .expect("wait");
    assert_eq!(status.code(), Some(2), "{}", child.stderr());
    assert_eq!(
        child.stderr(),
        "pve-network-migration: socket activation: file descriptor 3 (https) is not a listening \
         TCP socket: not a stream socket (pve-network-migration.socket may only have \
         ListenStream= entries with IP addresses)\n"
    );
}

/// Comparisons finish after the client has its answer; a SIGTERM right
/// after the last answer must still leave every record on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_the_evidence_of_every_answered_request() {
    let rig = Rig::start_with(RigOptions {
        phase: Some("shadow".into()),
        rust: Some(RustOptions::default()),
        ..RigOptions::default()
    })
    .await;
    let d = rig.dir.path();
    let config = child_config(&rig);
    // A grace period shorter than Rust's answers: the comparisons outlast
    // the connections' drain.
    let toml = std::fs::read_to_string(&config).expect("config");
    std::fs::write(
        &config,
        toml.replace("shutdown_grace_ms = 10000", "shutdown_grace_ms = 100"),
    )
    .expect("config");
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = socket.local_addr().expect("addr");
    let notify_path = d.join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("notify socket");
    let mut gw = Child::spawn(
        &config,
        OwnedFd::from(socket.try_clone().expect("dup")),
        &notify_path,
        d.join("stderr"),
    );
    ready(&notify, &gw).await;
    // Rust answers each mirror a second after Perl answered the client
    // (within the shadow timeout of 2 s): at the SIGTERM the last
    // comparisons are still running.
    rig.rust()
        .set_faults([pve_sim::Fault::parse("latency=1000").expect("fault")])
        .await
        .expect("faults");
    const N: usize = 30;
    for _ in 0..N {
        assert_eq!(fresh_get(&rig.client, addr).await, Ok(200));
    }
    let status = gw.terminate().await;
    assert!(status.success(), "{status}\n{}", gw.stderr());
    let mut records = 0;
    for entry in std::fs::read_dir(d.join("child-state/evidence")).expect("evidence dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            records += std::fs::read_to_string(&path)
                .expect("segment")
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count();
        }
    }
    assert_eq!(
        records,
        N,
        "evidence records on disk after SIGTERM\n{}",
        gw.stderr()
    );
}
