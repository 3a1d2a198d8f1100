//! docs/design.md's phase table, one test per row: which backend served reads, writes and
//! applies, which one was mirrored (and with the dry-run marker), and what
//! evidence was written. Two simulators, Perl and Rust flavour, share one
//! interfaces file like the real backends on one node.

use bytes::Bytes;
use pve_migration_tests::{Resp, Rig, RigOptions, RustOptions, TOKEN, request};
use pve_sim::SimHandle;

const NET: &str = "/api2/json/nodes/pve1/network";

async fn rig(phase: &str) -> Rig {
    Rig::start_with(RigOptions {
        phase: Some(phase.into()),
        rust: Some(RustOptions::default()),
        ..RigOptions::default()
    })
    .await
}

async fn send(rig: &Rig, method: &str, path: &str, form: &str) -> Resp {
    let mut headers = vec![("authorization", TOKEN)];
    if !form.is_empty() {
        headers.push(("content-type", "application/x-www-form-urlencoded"));
    }
    rig.client
        .send(
            rig.gw(),
            request(method, path, &headers, Bytes::from(form.to_owned())),
        )
        .await
}

/// Network requests a simulator received: (method, carried the dry-run marker).
fn network_requests(sim: &SimHandle) -> Vec<(String, bool)> {
    sim.stats()
        .recent()
        .into_iter()
        .filter(|r| r.path.contains("/network"))
        .map(|r| (r.method.to_string(), r.dry_run.as_deref() == Some("1")))
        .collect()
}

/// The Perl flavour renders file values as strings, the Rust flavour typed.
fn served_by_perl(resp: &Resp) -> bool {
    let body = String::from_utf8_lossy(&resp.body);
    assert!(body.contains("bridge_fd"), "{body}");
    body.contains(r#""bridge_fd":"0""#)
}

async fn read_write_apply(rig: &Rig) -> (Resp, Resp, Resp) {
    let read = send(rig, "GET", NET, "").await;
    assert_eq!(read.status, 200, "{}", read.reason());
    let write = send(rig, "POST", NET, "iface=vmbr9&type=bridge&autostart=1").await;
    assert_eq!(write.status, 200, "{} {:?}", write.reason(), write.body);
    let apply = send(rig, "PUT", NET, "").await;
    assert_eq!(apply.status, 200, "{}", apply.reason());
    (read, write, apply)
}

#[tokio::test]
async fn perl_only_row() {
    let rig = rig("perl-only").await;
    let (read, _, apply) = read_write_apply(&rig).await;
    assert!(served_by_perl(&read));
    assert!(
        apply.json()["data"]
            .as_str()
            .unwrap()
            .starts_with("UPID:pve1:")
    );
    assert_eq!(
        network_requests(rig.perl()),
        [
            ("GET".into(), false),
            ("POST".into(), false),
            ("PUT".into(), false)
        ]
    );
    assert!(
        network_requests(rig.rust()).is_empty(),
        "Rust is not contacted"
    );
    let log = rig.log_until(3).await;
    assert_eq!(
        log.lines()
            .filter(|l| l.contains(" served_by=perl ") && l.contains(" used_fallback=false "))
            .count(),
        3,
        "{log}"
    );
    assert!(
        log.contains("endpoint=node.network.reload method=PUT"),
        "{log}"
    );
    assert!(rig.evidence().await.is_empty());
}

#[tokio::test]
async fn shadow_row() {
    let rig = rig("shadow").await;
    let (read, _, _) = read_write_apply(&rig).await;
    assert!(served_by_perl(&read), "Perl serves");
    let records = rig
        .evidence_until("three exchanges compared", |r| r.len() >= 3)
        .await;
    assert_eq!(
        network_requests(rig.perl()),
        [
            ("GET".into(), false),
            ("POST".into(), false),
            ("PUT".into(), false)
        ]
    );
    // Rust sees a mirrored read and dry-run copies of the write and the apply.
    assert_eq!(
        network_requests(rig.rust()),
        [
            ("GET".into(), false),
            ("POST".into(), true),
            ("PUT".into(), true)
        ]
    );

    let list = records
        .iter()
        .find(|r| r.endpoint == "node.network.list")
        .unwrap();
    assert_eq!(list.served_by, "perl");
    assert_eq!(list.phase, "shadow");
    assert_eq!(
        list.verdict, "type-only",
        "Perl strings vs Rust numbers: {list:?}"
    );
    assert!(!list.type_only.is_empty());
    let create = records
        .iter()
        .find(|r| r.endpoint == "node.network.create")
        .unwrap();
    assert!(create.rust.as_ref().unwrap().dry_run);
    assert!(!create.perl.as_ref().unwrap().dry_run);
    for r in &records {
        assert_eq!(r.trace_id.len(), 32);
        assert!(!r.config_digest.is_empty());
    }
}

#[tokio::test]
async fn rust_read_only_row() {
    let rig = rig("rust-read-only").await;
    let (read, _, _) = read_write_apply(&rig).await;
    assert!(!served_by_perl(&read), "Rust serves reads");
    assert_eq!(
        network_requests(rig.perl()),
        [
            ("GET".into(), false),
            ("POST".into(), false),
            ("PUT".into(), false)
        ]
    );
    // Rust: the read, a dry-run of the write, nothing of the apply.
    assert_eq!(
        network_requests(rig.rust()),
        [("GET".into(), false), ("POST".into(), true)]
    );
    let records = rig
        .evidence_until("read and write compared", |r| r.len() >= 2)
        .await;
    let list = records
        .iter()
        .find(|r| r.endpoint == "node.network.list")
        .unwrap();
    assert_eq!(list.served_by, "rust");
    assert!(!list.used_fallback);
    let log = rig.log_until(3).await;
    assert!(
        log.contains("endpoint=node.network.list method=GET"),
        "{log}"
    );
    assert!(log.contains("served_by=rust"), "{log}");
}

#[tokio::test]
async fn rust_basic_write_row() {
    let rig = rig("rust-basic-write").await;
    let (read, write, _) = read_write_apply(&rig).await;
    assert!(!served_by_perl(&read));
    assert_eq!(write.json()["data"], serde_json::Value::Null);
    // Rust carries out the write; Perl never sees it (only the read-after-write GET).
    let rust_reqs = network_requests(rig.rust());
    assert!(
        rust_reqs.starts_with(&[("GET".into(), false), ("POST".into(), false)]),
        "{rust_reqs:?}"
    );
    let perl_reqs = network_requests(rig.perl());
    assert!(
        perl_reqs.iter().all(|(m, _)| m == "GET" || m == "PUT"),
        "{perl_reqs:?}"
    );
    assert_eq!(
        perl_reqs.iter().filter(|(m, _)| m == "PUT").count(),
        1,
        "apply stays with Perl"
    );
    let records = rig
        .evidence_until("read-after-write check", |r| {
            r.iter().any(|r| r.kind == "read_after_write")
        })
        .await;
    let check = records
        .iter()
        .find(|r| r.kind == "read_after_write")
        .unwrap();
    assert_eq!(check.endpoint, "node.network.list");
    // Both read the same files: the new bridge is pending on both sides.
    assert!(
        matches!(check.verdict.as_str(), "match" | "type-only"),
        "{check:?}"
    );
}

#[tokio::test]
async fn rust_full_row() {
    let rig = rig("rust-full").await;
    let (_, _, apply) = read_write_apply(&rig).await;
    assert!(
        apply.json()["data"]
            .as_str()
            .unwrap()
            .starts_with("UPID:pve1:")
    );
    let rust_reqs = network_requests(rig.rust());
    assert!(
        rust_reqs.contains(&("PUT".into(), false)),
        "Rust applies: {rust_reqs:?}"
    );
    let perl_reqs = network_requests(rig.perl());
    assert!(
        perl_reqs.iter().all(|(m, _)| m == "GET"),
        "Perl only reads: {perl_reqs:?}"
    );
}

#[tokio::test]
async fn other_nodes_and_non_network_paths_pass_through() {
    let rig = rig("rust-full").await;
    let other = send(&rig, "GET", "/api2/json/nodes/pve2/network", "").await;
    assert_eq!(other.status, 500, "pveproxy's answer for an unknown node");
    let version = send(&rig, "GET", "/api2/json/version", "").await;
    assert_eq!(version.status, 200);
    assert!(network_requests(rig.rust()).is_empty());
    assert!(
        rig.rust().stats().recent().is_empty(),
        "Rust sees nothing of it"
    );
}
