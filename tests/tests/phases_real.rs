//! The phase rows that hand work to Rust, against the real backend
//! (`pve-network-rs` on a node root) with the Perl simulator on the same
//! interfaces file, lock and ticket keys — as the two backends of one node.

use bytes::Bytes;
use pve_migration_tests::{Resp, Rig, RigOptions, RustOptions, TOKEN, request};

const NET: &str = "/api2/json/nodes/pve1/network";

async fn rig(phase: &str) -> Rig {
    Rig::start_with(RigOptions {
        phase: Some(phase.into()),
        rust: Some(RustOptions {
            real: true,
            ..RustOptions::default()
        }),
        ..RigOptions::default()
    })
    .await
}

async fn send(rig: &Rig, method: &str, path: &str, headers: &[(&str, &str)], form: &str) -> Resp {
    let mut h = headers.to_vec();
    if !form.is_empty() {
        h.push(("content-type", "application/x-www-form-urlencoded"));
    }
    rig.client
        .send(
            rig.gw(),
            request(method, path, &h, Bytes::from(form.to_owned())),
        )
        .await
}

fn pending(rig: &Rig) -> String {
    rig.node.as_ref().unwrap().files().1.unwrap_or_default()
}

#[tokio::test]
async fn rust_read_only_row_with_the_real_backend() {
    let rig = rig("rust-read-only").await;
    let auth = [("authorization", TOKEN)];
    let read = send(&rig, "GET", NET, &auth, "").await;
    assert_eq!(read.status, 200, "{}", read.reason());
    let write = send(
        &rig,
        "POST",
        NET,
        &auth,
        "iface=vmbr9&type=bridge&autostart=1",
    )
    .await;
    assert_eq!(
        (write.status.as_u16(), write.body.as_ref()),
        (200, &b"{\"data\":null}"[..])
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
    assert_eq!(
        list.verdict, "match",
        "the real backend answers in Perl's wire format: {list:?}"
    );
    let create = records
        .iter()
        .find(|r| r.endpoint == "node.network.create")
        .unwrap();
    assert_eq!(create.served_by, "perl");
    assert!(create.rust.as_ref().unwrap().dry_run);
    // Perl wrote it once; Rust's copy was a dry run
    assert_eq!(pending(&rig).matches("iface vmbr9 inet manual").count(), 1);
    let log = rig.log_until(2).await;
    assert!(
        log.contains("endpoint=node.network.list method=GET"),
        "{log}"
    );
    assert!(log.contains("served_by=rust"), "{log}");
}

#[tokio::test]
async fn rust_basic_write_row_with_the_real_backend() {
    let rig = rig("rust-basic-write").await;
    let auth = [("authorization", TOKEN)];
    let write = send(
        &rig,
        "POST",
        NET,
        &auth,
        "iface=vmbr9&type=bridge&autostart=1",
    )
    .await;
    assert_eq!(write.status, 200, "{}", write.reason());
    assert!(pending(&rig).contains("auto vmbr9\niface vmbr9 inet manual\n"));
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
    assert_eq!(
        check.verdict, "match",
        "both read the same files: {check:?}"
    );
    let log = rig.log_until(1).await;
    assert!(
        log.lines()
            .any(|l| l.contains("endpoint=node.network.create method=POST")
                && l.contains(" served_by=rust ")
                && l.contains(" used_fallback=false ")),
        "{log}"
    );
    // apply stays with Perl in this phase
    let apply = send(&rig, "PUT", NET, &auth, "").await;
    assert_eq!(apply.status, 200);
    assert!(pending(&rig).is_empty(), "Perl applied");
}

/// What a proxmoxer client does: log in (through the gateway to Perl), then
/// write with the ticket and the CSRF token — now served by the real Rust
/// backend, which accepts the ticket because both use the node's keys.
#[tokio::test]
async fn proxmoxer_style_writes_through_the_real_backend() {
    let rig = rig("rust-basic-write").await;
    let (cookie, csrf) = rig.client.login(rig.gw()).await;
    let auth = [
        ("cookie", cookie.as_str()),
        ("csrfpreventiontoken", csrf.as_str()),
    ];
    let steps = [
        (
            "POST",
            NET.to_string(),
            "iface=vmbr9&type=bridge&autostart=1&cidr=192.0.2.9/24",
        ),
        (
            "PUT",
            format!("{NET}/vmbr9"),
            "type=bridge&cidr=192.0.2.19/24&comments=moved",
        ),
        ("GET", format!("{NET}/vmbr9"), ""),
        ("DELETE", format!("{NET}/vmbr0.50"), ""),
    ];
    let mut answers = Vec::new();
    for (m, p, f) in &steps {
        let r = send(&rig, m, p, &auth, f).await;
        assert_eq!(r.status, 200, "{m} {p}: {}", r.reason());
        answers.push(r);
    }
    let got = answers[2].json();
    assert_eq!(got["data"]["cidr"], "192.0.2.19/24");
    assert_eq!(got["data"]["comments"], "moved\n");
    let file = pending(&rig);
    assert!(
        file.contains("iface vmbr9 inet static\n\taddress 192.0.2.19/24\n"),
        "{file}"
    );
    assert!(!file.contains("vmbr0.50"), "{file}");
    let log = rig.log_until(4).await;
    for endpoint in [
        "node.network.create",
        "node.network.iface.update",
        "node.network.iface.get",
        "node.network.iface.delete",
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains(&format!("endpoint={endpoint} "))
                    && l.contains(" served_by=rust ")
                    && l.contains(" used_fallback=false ")),
            "{endpoint}: {log}"
        );
    }
    // without the CSRF token the real backend refuses like pveproxy
    let r = send(
        &rig,
        "DELETE",
        &format!("{NET}/vmbr9"),
        &[("cookie", cookie.as_str())],
        "",
    )
    .await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (401, "Permission denied - invalid csrf token")
    );
}
