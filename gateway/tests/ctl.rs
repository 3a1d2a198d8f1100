//! `migration-ctl` against a running gateway: every command, exit codes,
//! concurrent edits, non-root peers, reload of a broken and a fixed file, and
//! exact metric values after a scripted run.

use std::process::{Command, Output};

use bytes::Bytes;
use pve_migration_tests::{
    Rig, RigOptions, RustOptions, TOKEN, admin, request, run_bounded, within,
};

const CTL: &str = env!("CARGO_BIN_EXE_migration-ctl");
const NET: &str = "/api2/json/nodes/pve1/network";

/// The configuration tail every test here uses: two more nodes, with comments.
const NODES: &str = "\n# pve2 is the canary\n[nodes.pve2]\nphase = \"shadow\" # since Monday\n\n[nodes.pve3]\n# stays on Perl\nphase = \"perl-only\"\n";

async fn rig(phase: &str, rust_down: bool) -> Rig {
    Rig::start_with(RigOptions {
        phase: Some(phase.into()),
        rust: Some(RustOptions {
            down: rust_down,
            ..RustOptions::default()
        }),
        extra_toml: NODES.into(),
        ..RigOptions::default()
    })
    .await
}

/// Runs migration-ctl off the async runtime.
async fn ctl(rig: &Rig, args: &[&str]) -> Output {
    let sock = rig.admin_socket();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        run_bounded(Command::new(CTL).arg("--socket").arg(&sock).args(&args))
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stdout(o)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_exit_codes() {
    let healthy = rig("shadow", false).await;
    let out = ctl(&healthy, &["health"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout(&out).contains("node pve1: healthy"),
        "{}",
        stdout(&out)
    );
    let h = json(&ctl(&healthy, &["health", "--json"]).await);
    assert_eq!(h["configured_phase"], "shadow");
    assert_eq!(h["rust"]["reachable"], true);
    assert!(h["certificate_days_left"].as_i64().unwrap() > 300);

    let degraded = rig("rust-read-only", true).await;
    degraded
        .client
        .get(degraded.gw(), NET, &[("authorization", TOKEN)])
        .await;
    let out = ctl(&degraded, &["health"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let text = stdout(&out);
    assert!(
        text.contains("DEGRADED") && text.contains("TRIPPED"),
        "{text}"
    );
    assert!(
        text.contains("rust") && text.contains("UNREACHABLE"),
        "{text}"
    );
    assert!(text.contains("1 fallbacks"), "{text}");

    let out = tokio::task::spawn_blocking(|| {
        run_bounded(Command::new(CTL).args(["--socket", "/nonexistent/control.sock", "health"]))
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot connect"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_get_set_keeps_the_file_and_refuses_concurrent_edits() {
    let rig = rig("perl-only", false).await;
    let v = json(&ctl(&rig, &["phase", "get", "--json"]).await);
    assert_eq!(
        (v["configured"].as_str(), v["nodes"]["pve2"].as_str()),
        (Some("perl-only"), Some("shadow"))
    );
    let before = std::fs::read_to_string(rig.config_file()).unwrap();

    // Another node's phase: only its section changes, comments stay.
    let out = ctl(&rig, &["phase", "set", "rust-read-only", "--node", "pve2"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = std::fs::read_to_string(rig.config_file()).unwrap();
    assert!(
        after.contains(
            "# pve2 is the canary\n[nodes.pve2]\nphase = \"rust-read-only\" # since Monday"
        ),
        "{after}"
    );
    assert!(
        after.contains("[nodes.pve3]\n# stays on Perl\nphase = \"perl-only\""),
        "{after}"
    );
    assert_eq!(
        after.replace("rust-read-only\" # since", "shadow\" # since"),
        before,
        "nothing else changed"
    );
    assert_eq!(
        rig.gateway.engine().phases().0.as_str(),
        "perl-only",
        "pve1 is unchanged"
    );

    // This node: applied at once.
    let out = ctl(&rig, &["phase", "set", "shadow"]).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(rig.gateway.engine().phases().0.as_str(), "shadow");
    assert!(
        std::fs::read_to_string(rig.config_file())
            .unwrap()
            .contains("[nodes.pve1]\nphase = \"shadow\"")
    );

    // An edit based on a stale read is refused.
    let (status, body) = admin(
        &rig.admin_socket(),
        "POST",
        "/phase",
        Some(serde_json::json!({"phase": "rust-full", "expect_digest": "0000000000000000"})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("changed since it was read"),
        "{body}"
    );
    assert_eq!(rig.gateway.engine().phases().0.as_str(), "shadow");

    let out = ctl(&rig, &["phase", "set", "rust-everything"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown phase 'rust-everything'"),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trip_status_reset_evidence_and_diagnostics() {
    let rig = rig("rust-read-only", true).await;
    rig.client
        .get(rig.gw(), NET, &[("authorization", TOKEN)])
        .await;
    let out = ctl(&rig, &["trip", "status"]).await;
    assert!(stdout(&out).starts_with("TRIPPED at"), "{}", stdout(&out));
    assert!(stdout(&out).contains("rust_connect"), "{}", stdout(&out));
    let out = ctl(&rig, &["trip", "reset"]).await;
    assert!(
        stdout(&out).contains("trip lifted; phase rust-read-only applies again"),
        "{}",
        stdout(&out)
    );
    assert_eq!(
        json(&ctl(&rig, &["trip", "status", "--json"]).await)["state"],
        "armed"
    );

    let out = ctl(&rig, &["evidence", "summary", "--since", "1h", "--json"]).await;
    assert_eq!(out.status.code(), Some(0));
    assert!(json(&out).is_array());
    let out = ctl(&rig, &["evidence", "summary", "--since", "soon"]).await;
    assert_eq!(out.status.code(), Some(1));

    let file = rig.dir.path().join("diag.tar.gz");
    let out = ctl(&rig, &["diagnostics", "--output", file.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(
        std::fs::File::open(&file).unwrap(),
    ));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().display().to_string();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut entry, &mut text).unwrap();
        assert!(
            !text.contains("PVEAPIToken") && !text.contains("00000000-0000-0000-0000-000000000000"),
            "{name}"
        );
        names.push(name);
    }
    for want in [
        "health.json",
        "migration.toml",
        "migration.log.tail",
        "evidence-summary.json",
        "metrics.txt",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(want)),
            "{want} missing from {names:?}"
        );
    }
    let out = ctl(&rig, &["completions", "bash"]).await;
    assert!(stdout(&out).contains("migration-ctl"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_root_peers_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let own = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
        .unwrap();
    let setpriv = std::path::Path::new("/usr/bin/setpriv");
    assert_eq!(
        own, 0,
        "this test checks SO_PEERCRED refusal and needs root to switch users"
    );
    assert!(
        setpriv.exists(),
        "setpriv (util-linux) is needed to run a client as nobody"
    );
    let rig = rig("perl-only", false).await;
    // Open the file system permissions, so only the peer check stands in the way.
    std::fs::set_permissions(rig.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(rig.admin_socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let sock = rig.admin_socket();
    let out = tokio::task::spawn_blocking(move || {
        run_bounded(
            Command::new(setpriv)
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    CTL,
                    "--socket",
                ])
                .arg(&sock)
                .arg("health"),
        )
    })
    .await
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is this user root?"),
        "{out:?}"
    );
    // Root still gets in.
    assert_eq!(ctl(&rig, &["trip", "status"]).await.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_config_keeps_the_old_one_and_health_says_why() {
    let rig = rig("shadow", false).await;
    let control = rig.gateway.control().clone();
    let good = std::fs::read_to_string(rig.config_file()).unwrap();

    let reloaded = control.reloaded().notified();
    std::fs::write(
        rig.config_file(),
        good.replace(
            "phase = \"shadow\"\nperl_api",
            "phase = \"rust-everywhere\"\nperl_api",
        ),
    )
    .unwrap();
    within("the poller sees the broken file", reloaded).await;
    assert_eq!(control.reload_status().result, "error");
    assert_eq!(
        rig.gateway.engine().phases().0.as_str(),
        "shadow",
        "the last good config stays"
    );
    let ok = rig
        .client
        .get(rig.gw(), NET, &[("authorization", TOKEN)])
        .await;
    assert_eq!(ok.status, 200, "still serving");
    let out = ctl(&rig, &["health"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("unknown phase 'rust-everywhere'"),
        "{}",
        stdout(&out)
    );

    let reloaded = control.reloaded().notified();
    std::fs::write(
        rig.config_file(),
        good.replace(
            "phase = \"shadow\"\nperl_api",
            "phase = \"rust-read-only\"\nperl_api",
        ),
    )
    .unwrap();
    within("the poller picks up the fix", reloaded).await;
    assert_eq!(control.reload_status().result, "ok");
    assert_eq!(rig.gateway.engine().phases().0.as_str(), "rust-read-only");
    assert_eq!(ctl(&rig, &["health"]).await.status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_a_scripted_run() {
    let rig = Rig::start_with(RigOptions {
        phase: Some("shadow".into()),
        rust: Some(RustOptions::default()),
        extra_toml: "[telemetry]\nmetrics_listen = \"127.0.0.1:0\"\n".into(),
        ..RigOptions::default()
    })
    .await;
    let h = [
        ("authorization", TOKEN),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    for _ in 0..3 {
        rig.client
            .get(rig.gw(), NET, &[("authorization", TOKEN)])
            .await;
    }
    rig.client
        .get(
            rig.gw(),
            &format!("{NET}/vmbr0"),
            &[("authorization", TOKEN)],
        )
        .await;
    rig.client
        .send(
            rig.gw(),
            request(
                "POST",
                NET,
                &h,
                Bytes::from_static(b"iface=vmbr9&type=bridge"),
            ),
        )
        .await;
    rig.client
        .get(rig.gw(), "/api2/json/version", &[("authorization", TOKEN)])
        .await;
    rig.evidence_until("five compared", |r| r.len() >= 5).await;
    rig.log_until(5).await;

    let (status, _) = admin(&rig.admin_socket(), "GET", "/metrics", None).await;
    assert_eq!(status, 200);
    // Scrape like Prometheus does: plain HTTP on telemetry.metrics_listen.
    let addr = rig.gateway.metrics_addr().expect("metrics listener");
    let text = within("scrape", async {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        tcp.read_to_string(&mut out).await.unwrap();
        out
    })
    .await;
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    for line in [
        "pve_network_requests_total{route_class=\"read\",served_by=\"perl\",status=\"200\"} 4",
        "pve_network_requests_total{route_class=\"write\",served_by=\"perl\",status=\"200\"} 1",
        "pve_network_requests_total{route_class=\"passthrough\",served_by=\"perl\",status=\"200\"} 1",
        "pve_network_contract_total{endpoint=\"node.network.list\",verdict=\"type-only\"} 3",
        "pve_network_contract_total{endpoint=\"node.network.iface.get\",verdict=\"type-only\"} 1",
        "pve_network_phase{phase=\"shadow\"} 1",
        "pve_network_tripped 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing `{line}` in\n{text}"
        );
    }
    assert!(
        !text.contains("pve_network_fallback_total{"),
        "no fallback happened:\n{text}"
    );
}
