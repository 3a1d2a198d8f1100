//! Fallback and trip (docs/design.md, Fallback and trip) with a Rust backend that is down, and the
//! secrets rule (docs/design.md, Comparison and evidence): nothing on disk ever holds a credential.

use bytes::Bytes;
use pve_migration_tests::{Resp, Rig, RigOptions, RustOptions, TOKEN, request};
use pve_sim::Fault;

const NET: &str = "/api2/json/nodes/pve1/network";

async fn rig(phase: &str, rust: RustOptions, extra: &str) -> Rig {
    Rig::start_with(RigOptions {
        phase: Some(phase.into()),
        rust: Some(rust),
        extra_toml: extra.into(),
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

#[tokio::test]
async fn rust_down_falls_back_trips_and_stays_tripped_across_restart() {
    let mut rig = rig(
        "rust-read-only",
        RustOptions {
            down: true,
            ..RustOptions::default()
        },
        "",
    )
    .await;
    let direct = rig
        .client
        .get(rig.perl_addr(), NET, &[("authorization", TOKEN)])
        .await;

    let resp = send(&rig, "GET", NET, &[("authorization", TOKEN)], "").await;
    assert_eq!(resp.status, 200, "the client still gets an answer");
    assert_eq!(resp.body, direct.body, "Perl's correct answer");
    let (configured, effective) = rig.gateway.engine().phases();
    assert_eq!(
        (configured.as_str(), effective.as_str()),
        ("rust-read-only", "perl-only")
    );

    let log = rig.log_until(2).await;
    let fallback = log
        .lines()
        .find(|l| l.contains("used_fallback=true"))
        .expect(&log);
    assert!(
        fallback.contains("served_by=perl") && fallback.contains("reason=rust_connect"),
        "{fallback}"
    );
    assert!(fallback.contains("trace_id="), "{fallback}");
    let trip = log.lines().find(|l| l.contains("event=trip")).expect(&log);
    assert!(trip.contains("from=rust-read-only to=perl-only"), "{trip}");

    let metrics = rig.gateway.engine().metrics().encode();
    assert!(
        metrics
            .lines()
            .any(|l| l == "pve_network_fallback_total{reason=\"rust_connect\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l == "pve_network_tripped 1"),
        "{metrics}"
    );
    assert!(
        metrics
            .lines()
            .any(|l| l == "pve_network_phase{phase=\"perl-only\"} 1"),
        "{metrics}"
    );

    // Later requests never try Rust as primary.
    let again = send(&rig, "GET", NET, &[("authorization", TOKEN)], "").await;
    assert_eq!(again.body, direct.body);
    assert!(
        !rig.migration_log()
            .await
            .lines()
            .last()
            .unwrap()
            .contains("used_fallback=true")
    );

    // The trip is on disk: a restarted gateway starts tripped.
    let state = std::fs::read_to_string(rig.dir.path().join("state/trip.json")).unwrap();
    assert!(state.contains("rust_connect"), "{state}");
    rig.restart_gateway().await;
    assert_eq!(rig.gateway.engine().phases().1.as_str(), "perl-only");
    let after = send(&rig, "GET", NET, &[("authorization", TOKEN)], "").await;
    assert_eq!(after.body, direct.body);

    // Re-arming lifts it.
    let lifted = rig.gateway.engine().reset_trip().unwrap().unwrap();
    assert_eq!(lifted.effective_phase, "perl-only");
    assert_eq!(rig.gateway.engine().phases().1.as_str(), "rust-read-only");
}

#[tokio::test]
async fn write_falls_back_to_perl_only_when_rust_never_received_it() {
    let rig = rig(
        "rust-basic-write",
        RustOptions {
            down: true,
            ..RustOptions::default()
        },
        "",
    )
    .await;
    let resp = send(
        &rig,
        "POST",
        NET,
        &[("authorization", TOKEN)],
        "iface=vmbr7&type=bridge",
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.reason());
    let perl = rig.perl().stats().recent();
    assert_eq!(
        perl.iter().filter(|r| r.method == "POST").count(),
        1,
        "Perl carried the write out once"
    );
    let pending = std::fs::read_to_string(rig.dir.path().join("interfaces.new")).unwrap();
    assert!(pending.contains("iface vmbr7"), "{pending}");
    let log = rig.log_until(1).await;
    assert!(
        log.contains("used_fallback=true") && log.contains("reason=rust_connect"),
        "{log}"
    );
}

#[tokio::test]
async fn secrets_never_reach_disk() {
    let rig = rig(
        "shadow",
        RustOptions {
            divergences: vec!["rename-bridge-ports".into()],
            ..RustOptions::default()
        },
        "[evidence]\nstore_bodies = \"on-mismatch\"\n",
    )
    .await;
    let (cookie, csrf) = rig.client.login(rig.gw()).await;
    let ticket = cookie.trim_start_matches("PVEAuthCookie=").to_owned();
    let token_secret = TOKEN.rsplit('=').next().unwrap();
    let password = "hunter2-very-secret";
    let auth = [
        ("cookie", cookie.as_str()),
        ("csrfpreventiontoken", csrf.as_str()),
    ];

    // A mismatching read (the Rust flavour renames bridge_ports): its bodies are stored.
    let list = send(&rig, "GET", NET, &auth, "").await;
    assert_eq!(list.status, 200);
    // Query secrets (pveproxy rejects the unknown parameter; the path is still logged).
    send(
        &rig,
        "GET",
        &format!("{NET}?vncticket={password}"),
        &auth,
        "",
    )
    .await;
    // A write with a password field in its body, and an API-token request.
    // Rust's dry-run fails, so the write is a mismatch and its request body
    // is stored with the evidence (redacted).
    rig.rust()
        .set_faults([Fault::parse("error-rate=1").unwrap().writes_only()])
        .await
        .unwrap();
    send(
        &rig,
        "PUT",
        &format!("{NET}/vmbr0"),
        &auth,
        &format!("type=bridge&password={password}"),
    )
    .await;
    rig.rust().set_faults([]).await.unwrap();
    send(
        &rig,
        "GET",
        &format!("{NET}/vmbr0?password={password}"),
        &[("authorization", TOKEN)],
        "",
    )
    .await;

    let records = rig.evidence_until("four compared", |r| r.len() >= 4).await;
    assert!(
        records
            .iter()
            .any(|r| r.verdict == "mismatch" && r.bodies.is_some()),
        "{records:?}"
    );
    let put = records
        .iter()
        .find(|r| r.method == "PUT")
        .expect("the PUT was compared");
    assert_eq!(
        put.bodies.as_ref().map(|b| &b.request),
        Some(&serde_json::json!({"type": "bridge", "password": "<redacted>"})),
        "{put:?}"
    );
    let mut files = Vec::new();
    let mut stack = vec![
        rig.dir.path().join("state"),
        rig.dir.path().join("migration.log"),
    ];
    while let Some(p) = stack.pop() {
        if p.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        } else {
            files.push(p);
        }
    }
    // What was written: the log, the fingerprints and an evidence segment
    // (each scanned below).
    let names: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "migration.log",
        "fingerprints.json",
        "segment-000000000001.jsonl",
    ] {
        assert!(names.contains(want), "{want} missing: {names:?}");
    }
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        for secret in [
            ticket.as_str(),
            csrf.as_str(),
            token_secret,
            password,
            "PVEAuthCookie",
            "PVEAPIToken",
        ] {
            assert!(
                !text.contains(secret),
                "{} contains a secret ({secret})",
                f.display()
            );
        }
    }
    assert!(
        records
            .iter()
            .any(|r| r.path.contains("vncticket=<redacted>"))
    );
}
