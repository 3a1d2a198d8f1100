//! The README's main job: `pve-network-migration demo` walks every phase and
//! its report shows what an operator must see.

use pve_network_migration::demo::{DemoOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_walks_every_phase_trips_and_resets() {
    let mut out = Vec::new();
    let started = std::time::Instant::now();
    let report = run(&DemoOptions::default(), &mut out)
        .await
        .expect("demo succeeds");
    let text = String::from_utf8(out).unwrap();
    eprintln!(
        "{text}\n(demo took {:.1} s)",
        started.elapsed().as_secs_f64()
    );

    let phases: Vec<&str> = report.phases.iter().map(|p| p.phase.as_str()).collect();
    for want in ["perl-only", "shadow", "rust-read-only", "rust-basic-write"] {
        assert!(
            phases.contains(&want),
            "phase {want} missing: {phases:?}\n{text}"
        );
    }
    let phase = |name: &str| report.phases.iter().find(|p| p.phase == name).unwrap();
    assert!(
        phase("shadow")
            .verdicts
            .get("type-only")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{text}"
    );
    assert!(
        phase("shadow")
            .verdicts
            .get("mismatch")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{text}"
    );
    assert!(
        phase("rust-read-only")
            .served_by
            .get("rust")
            .copied()
            .unwrap_or(0)
            >= 1,
        "{text}"
    );
    let fallbacks: u64 = report.phases.iter().map(|p| p.fallbacks).sum();
    assert_eq!(fallbacks, 1, "exactly one fallback\n{text}");
    let trip = report.trip.as_deref().expect("the node tripped");
    assert!(
        trip.contains("from=rust-basic-write to=perl-only"),
        "{trip}"
    );
    assert!(report.reset, "the trip was reset\n{text}");
    assert!(
        report
            .fingerprints
            .iter()
            .any(|f| f.verdict == "mismatch" && f.exemplar.is_some()),
        "{text}"
    );
    assert!(
        text.contains("report") && text.contains("migration.log"),
        "{text}"
    );
}
