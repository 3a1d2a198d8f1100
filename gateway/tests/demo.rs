//! The README's main job: `pve-network-migration demo` runs to the end and
//! reports every step.

use pve_network_migration::demo::{DemoOptions, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_walks_every_step() {
    let mut out = Vec::new();
    let report = run(&DemoOptions::default(), &mut out)
        .await
        .expect("demo succeeds");
    let text = String::from_utf8(out).unwrap();
    let names: Vec<&str> = report.steps.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "login",
            "GET version",
            "GET version without credentials",
            "GET unknown path",
            "upload",
            "websocket",
            "plain http"
        ],
        "{text}"
    );
    assert!(report.steps[4].1.starts_with("256 MiB streamed"), "{text}");
    assert!(report.steps[5].1.starts_with("10 frames"), "{text}");
    assert!(
        text.contains("401 No ticket (identical direct and via gateway)"),
        "{text}"
    );
}
