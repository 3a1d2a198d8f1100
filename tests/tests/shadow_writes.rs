//! Write ordering in `shadow` (docs/design.md, invariant 6): a write's
//! dry-run copy reaches Rust before Perl carries out the write, so both judge
//! the same state; a copy slower than `shadow.write_order_ms` is
//! `skipped(raced)`, and the write waits no longer than that.

use std::time::{Duration, Instant};

use bytes::Bytes;
use pve_migration_tests::{Resp, Rig, RigOptions, RustOptions, TOKEN, request};

const NET: &str = "/api2/json/nodes/pve1/network";

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

/// The scenario that used to give false mismatches: create, update and
/// delete of a new bridge, one after the other, fifteen times, with the real
/// Rust backend and the Perl simulator on the same files and no delay
/// anywhere. Every one of the 45 write comparisons must match.
#[tokio::test]
async fn create_update_delete_compare_as_match_in_shadow() {
    let rig = Rig::start_with(RigOptions {
        phase: Some("shadow".into()),
        rust: Some(RustOptions {
            real: true,
            ..RustOptions::default()
        }),
        ..RigOptions::default()
    })
    .await;
    const ROUNDS: usize = 15;
    for i in 0..ROUNDS {
        for (m, p, f) in [
            (
                "POST",
                NET.to_string(),
                "iface=vmbr9&type=bridge&autostart=1",
            ),
            (
                "PUT",
                format!("{NET}/vmbr9"),
                "type=bridge&cidr=192.0.2.9/24",
            ),
            ("DELETE", format!("{NET}/vmbr9"), ""),
        ] {
            let r = send(&rig, m, &p, f).await;
            assert_eq!(r.status, 200, "round {i}: {m} {p}: {}", r.reason());
        }
    }
    let writes = |r: &pve_network_migration::evidence::EvidenceRecord| {
        matches!(
            r.endpoint.as_str(),
            "node.network.create" | "node.network.iface.update" | "node.network.iface.delete"
        )
    };
    let records = rig
        .evidence_until("45 write comparisons", |r| {
            r.iter().filter(|r| writes(r)).count() >= 3 * ROUNDS
        })
        .await;
    let verdicts: Vec<(String, String)> = records
        .iter()
        .filter(|r| writes(r))
        .map(|r| (r.endpoint.clone(), r.verdict.clone()))
        .collect();
    assert_eq!(verdicts.len(), 3 * ROUNDS);
    for (endpoint, verdict) in &verdicts {
        assert_eq!(verdict, "match", "{endpoint}: {verdicts:?}");
    }
    for r in records.iter().filter(|r| writes(r)) {
        assert!(r.rust.as_ref().unwrap().dry_run, "Rust only saw dry runs");
    }
    assert!(
        !rig.node
            .as_ref()
            .unwrap()
            .files()
            .1
            .unwrap()
            .contains("vmbr9"),
        "Perl's writes, once each"
    );
}

/// A dry run slower than `write_order_ms`: the write goes to Perl after the
/// bound (not after Rust), and its comparison is skipped as raced.
#[tokio::test]
async fn a_slow_dry_run_is_skipped_as_raced_within_the_bound() {
    let rig = Rig::start_with(RigOptions {
        phase: Some("shadow".into()),
        rust: Some(RustOptions::default()),
        extra_toml: "[shadow]\nwrite_order_ms = 300\ntimeout_ms = 5000\n".into(),
        ..RigOptions::default()
    })
    .await;
    rig.rust()
        .set_faults([pve_sim::Fault::parse("latency=3000").unwrap().writes_only()])
        .await
        .unwrap();
    let started = Instant::now();
    let r = send(&rig, "POST", NET, "iface=vmbr9&type=bridge").await;
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.reason());
    eprintln!("the write took {took:?} with a 3 s dry run and write_order_ms = 300");
    assert!(
        took >= Duration::from_millis(300),
        "it waited for the copy: {took:?}"
    );
    assert!(
        took < Duration::from_millis(2000),
        "it did not wait for the 3 s copy: {took:?}"
    );
    let log = rig.log_until(1).await;
    let line = log
        .lines()
        .find(|l| l.contains("endpoint=node.network.create "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains(" verdict=skipped(raced) "), "{line}");
    let text = rig.gateway.engine().metrics().encode();
    assert!(
        text.lines()
            .any(|l| l == "pve_network_shadow_skipped_total{reason=\"raced\"} 1"),
        "{text}"
    );
    // a read is never held back
    let started = Instant::now();
    let r = send(&rig, "GET", NET, "").await;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}
