//! docs/design.md's invariants and its trip, each with a misbehaving backend
//! (pve-sim fault injection).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use pve_migration_tests::{Resp, Rig, RigOptions, RustOptions, TOKEN, request};
use pve_sim::Fault;

const NET: &str = "/api2/json/nodes/pve1/network";

async fn rig(phase: &str, extra: &str) -> Rig {
    Rig::start_with(RigOptions {
        phase: Some(phase.into()),
        rust: Some(RustOptions::default()),
        extra_toml: extra.into(),
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

fn fault(s: &str) -> Fault {
    Fault::parse(s).unwrap()
}

/// Invariant 1: in every phase, the backend that is not the primary of a
/// write or an apply never receives it without the dry-run marker.
#[tokio::test]
async fn non_primary_never_gets_an_unmarked_mutation() {
    for phase in [
        "perl-only",
        "shadow",
        "rust-read-only",
        "rust-basic-write",
        "rust-full",
    ] {
        let rig = rig(phase, "").await;
        // Client-supplied markers are stripped too (invariant 5): try to sneak one in.
        let sneaky = [
            ("authorization", TOKEN),
            ("content-type", "application/x-www-form-urlencoded"),
            ("x-pve-dry-run", "1"),
        ];
        let r = rig
            .client
            .send(
                rig.gw(),
                request(
                    "POST",
                    NET,
                    &sneaky,
                    Bytes::from_static(b"iface=vmbr9&type=bridge"),
                ),
            )
            .await;
        assert_eq!(r.status, 200, "{phase}: {}", r.reason());
        send(
            &rig,
            "PUT",
            &format!("{NET}/vmbr9"),
            "type=bridge&comments=x",
        )
        .await;
        send(&rig, "DELETE", &format!("{NET}/vmbr9"), "").await;
        send(&rig, "PUT", NET, "").await;
        send(
            &rig,
            "PUT",
            "/api2/json/cluster/sdn/zones/nope",
            "type=simple",
        )
        .await;
        let (perl, rust) = (rig.perl().stats(), rig.rust().stats());
        let unmarked = |s: &pve_sim::server::Stats| s.unmarked_mutations.load(Ordering::SeqCst);
        let (write_primary, apply_primary) = match phase {
            "rust-basic-write" => ("rust", "perl"),
            "rust-full" => ("rust", "rust"),
            _ => ("perl", "perl"),
        };
        // Writes (4, incl. the SDN one) and the apply each reached exactly one backend unmarked.
        let expected_perl =
            4 * u64::from(write_primary == "perl") + u64::from(apply_primary == "perl");
        let expected_rust =
            4 * u64::from(write_primary == "rust") + u64::from(apply_primary == "rust");
        assert_eq!(
            (unmarked(perl), unmarked(rust)),
            (expected_perl, expected_rust),
            "{phase}"
        );
        assert_eq!(
            perl.marked_mutations.load(Ordering::SeqCst),
            0,
            "{phase}: Perl never gets a dry-run"
        );
        for r in perl.recent() {
            assert_eq!(
                r.dry_run, None,
                "{phase}: the client's marker never reached pveproxy"
            );
        }
    }
}

/// Invariant 2: a shadow that does not answer does not hold up the primary;
/// overflow beyond `max_in_flight` is dropped and counted. Rust answers
/// after 60 s, longer than the test's bound on every request, so a primary
/// that waited for its shadow would fail the test instead of being slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_shadow_never_delays_the_primary() {
    let rig = rig(
        "shadow",
        "[shadow]\nmax_in_flight = 1\ntimeout_ms = 120000\n",
    )
    .await;
    let get = |rig: &Rig| {
        let (c, gw) = (rig.client.clone(), rig.gw());
        async move {
            let r = c.get(gw, NET, &[("authorization", TOKEN)]).await;
            assert_eq!(r.status, 200);
        }
    };
    for i in 1..=3 {
        get(&rig).await;
        // Each mirror is done (its slot free again) once compared.
        rig.evidence_until("baseline compared", |r| r.len() >= i)
            .await;
    }
    rig.rust()
        .set_faults([fault("latency=60000")])
        .await
        .unwrap();
    for _ in 0..5 {
        get(&rig).await;
    }
    // The first of the five took the one slot and still waits for Rust;
    // the other four were not sent.
    pve_migration_tests::wait_until(rig.rust(), "the mirror reached Rust", |s| {
        s.requests.load(Ordering::SeqCst) >= 4
    })
    .await;
    assert_eq!(rig.rust().stats().requests.load(Ordering::SeqCst), 4);
    assert_eq!(rig.evidence().await.len(), 3, "no comparison finished");
    let text = rig.gateway.engine().metrics().encode();
    assert!(
        text.lines()
            .any(|l| l == "pve_network_shadow_skipped_total{reason=\"overloaded\"} 4"),
        "{text}"
    );
}

/// Invariant 3: Rust took the write and reset the connection: 502, and Perl
/// never received it (no double apply).
#[tokio::test]
async fn ambiguous_rust_write_failure_is_502_and_not_resent() {
    let rig = rig("rust-basic-write", "").await;
    rig.rust()
        .set_faults([fault("reset-before-head").writes_only()])
        .await
        .unwrap();
    let r = send(&rig, "POST", NET, "iface=vmbr9&type=bridge").await;
    assert_eq!(r.status, 502);
    assert!(
        r.reason().starts_with("rust backend 127.0.0.1:"),
        "{}",
        r.reason()
    );
    assert!(
        r.reason().contains("may have been applied"),
        "{}",
        r.reason()
    );
    assert_eq!(
        rig.perl().stats().unmarked_mutations.load(Ordering::SeqCst),
        0,
        "Perl never got the write"
    );
    assert_eq!(
        rig.rust()
            .stats()
            .fault_hits
            .reset_before_head
            .load(Ordering::SeqCst),
        1
    );
    let log = rig.log_until(1).await;
    assert!(log.contains("reason=rust_connection_closed"), "{log}");
    // The failure counts towards the trip.
    assert_eq!(rig.gateway.engine().phases().1.as_str(), "perl-only");
}

/// Invariant 4: one side 2xx, the other 401 → critical, immediate trip, and
/// a Rust-served read never hands out what Perl refused.
#[tokio::test]
async fn auth_divergence_is_critical_and_trips_at_once() {
    for phase in ["shadow", "rust-read-only"] {
        let rig = rig(phase, "").await;
        rig.rust().set_faults([fault("auth-bypass")]).await.unwrap();
        let r = rig.client.get(rig.gw(), NET, &[]).await;
        assert_eq!(r.status, 401, "{phase}: the client gets Perl's refusal");
        let records = rig.evidence_until("compared", |r| !r.is_empty()).await;
        assert_eq!(records[0].verdict, "critical", "{phase}");
        assert_eq!(records[0].critical.as_deref(), Some("auth_divergence"));
        assert_eq!(
            rig.gateway.engine().phases().1.as_str(),
            "perl-only",
            "{phase}: tripped"
        );
        let log = rig.log_until(2).await;
        assert!(
            log.contains("event=trip") && log.contains("critical difference"),
            "{log}"
        );
    }
}

/// docs/design.md, Fallback and trip: one Rust 5xx in rust-read-only → Perl's correct answer, trip to
/// perl-only, Rust never primary again, and the trip survives a restart.
#[tokio::test]
async fn one_rust_5xx_trips_the_node() {
    let mut rig = rig("rust-read-only", "").await;
    let direct = rig
        .client
        .get(rig.perl_addr(), NET, &[("authorization", TOKEN)])
        .await;
    rig.rust()
        .set_faults([fault("error-rate=1")])
        .await
        .unwrap();
    let r = send(&rig, "GET", NET, "").await;
    assert_eq!(
        (r.status.as_u16(), &r.body),
        (200, &direct.body),
        "Perl's answer"
    );
    assert_eq!(rig.gateway.engine().phases().1.as_str(), "perl-only");
    let text = rig.gateway.engine().metrics().encode();
    assert!(
        text.lines()
            .any(|l| l == "pve_network_fallback_total{reason=\"rust_5xx\"} 1"),
        "{text}"
    );

    let rust_before = rig.rust().stats().requests.load(Ordering::SeqCst);
    for _ in 0..3 {
        send(&rig, "GET", NET, "").await;
    }
    rig.restart_gateway().await;
    assert_eq!(rig.gateway.engine().phases().1.as_str(), "perl-only");
    send(&rig, "GET", NET, "").await;
    assert_eq!(
        rig.rust().stats().requests.load(Ordering::SeqCst),
        rust_before,
        "Rust is not contacted any more"
    );
}

/// The other fallback reasons: malformed JSON and a timeout.
#[tokio::test]
async fn malformed_json_and_timeout_fall_back() {
    for (f, why) in [
        ("malformed-json", "rust_malformed_json"),
        ("latency=3000", "rust_timeout"),
    ] {
        let rig = Rig::start_with(RigOptions {
            phase: Some("rust-read-only".into()),
            rust: Some(RustOptions {
                timeout_ms: Some(300),
                ..RustOptions::default()
            }),
            ..RigOptions::default()
        })
        .await;
        rig.rust().set_faults([fault(f)]).await.unwrap();
        let r = send(&rig, "GET", NET, "").await;
        assert_eq!(r.status, 200);
        assert!(
            String::from_utf8_lossy(&r.body).contains(r#""bridge_fd":"0""#),
            "Perl served"
        );
        let log = rig.log_until(1).await;
        assert!(
            log.contains(&format!("used_fallback=true reason={why}")),
            "{log}"
        );
    }
}
