//! The `pve-sim` binary: flag errors name the problem, and the flags reach
//! the simulator (faults, scope, control secret, SDN directory, flavour).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use common::{Env, SECRET, req, within};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_pve-sim");

async fn run_fails(args: &[&str]) -> String {
    let out = within(
        "pve-sim exits",
        tokio::process::Command::new(BIN)
            .args([
                "--tls-cert",
                "/nonexistent.pem",
                "--tls-key",
                "/nonexistent.key",
            ])
            .args(args)
            .env("NO_COLOR", "1")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run pve-sim");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn bad_flag_values_are_named() {
    let e = run_fails(&["--fault", "error-rate=2"]).await;
    assert!(e.contains("error-rate must be between 0 and 1"), "{e}");
    let e = run_fails(&["--fault", "latency=soon"]).await;
    assert!(e.contains("invalid latency 'soon'"), "{e}");
    let e = run_fails(&["--fault", "explode"]).await;
    assert!(e.contains("unknown fault kind 'explode'"), "{e}");
    let e = run_fails(&["--fault", "refuse", "--fault-scope", "reads"]).await;
    assert!(e.contains("invalid fault scope 'reads'"), "{e}");
}

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn flags_reach_the_simulator() {
    let env = Env::new();
    let sdn_dir = env.dir.path().join("sdn-elsewhere");
    let mut child = Command::new(BIN)
        .args(["--listen", "127.0.0.1:0", "--flavor", "rust"])
        .arg("--tls-cert")
        .arg(&env.cert)
        .arg("--tls-key")
        .arg(&env.key)
        .arg("--interfaces")
        .arg(&env.interfaces)
        .arg("--sdn-dir")
        .arg(&sdn_dir)
        .args([
            "--token",
            "root@pam!ci=00000000-0000-0000-0000-000000000000",
        ])
        .args(["--fault", "latency=5", "--fault-scope", "writes"])
        .args(["--control-secret", SECRET])
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pve-sim");
    let stderr = child.stderr.take().expect("stderr");
    let _running = Running(child);
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let line = strip_ansi(&line);
            if let Some(addr) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .and_then(|a| a.parse::<SocketAddr>().ok())
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr);
            }
        }
    });
    let addr = within("pve-sim to listen", rx)
        .await
        .expect("listening line");

    let state = env
        .client
        .send(
            addr,
            req("GET", "/_sim/faults").header("X-Sim-Control-Secret", SECRET),
        )
        .await
        .expect(200)
        .json();
    assert_eq!(
        state["faults"],
        json!([{"kind": "latency", "value": "5", "scope": "writes"}])
    );
    env.client
        .send(
            addr,
            req("POST", "/api2/json/cluster/sdn/zones")
                .form(&[("zone", "lab"), ("type", "simple")]),
        )
        .await
        .expect(200);
    assert!(sdn_dir.join("zones.cfg").exists());
    // the Rust flavour: typed values
    let vmbr0 = env
        .client
        .send(addr, req("GET", "/api2/json/nodes/pve1/network/vmbr0"))
        .await
        .expect(200)
        .data();
    assert_eq!(vmbr0["bridge_fd"], 0);
}
