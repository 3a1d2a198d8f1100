//! `contract-test` against real simulators over TLS on loopback: exit codes,
//! patches, authentication (token, user + password file, wrong password),
//! unreachable backends, dry-run writes, suites, `--output` and `replay`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pve_migration_tests::{
    ROOT_PASSWORD, Rig, RigOptions, RustOptions, TOKEN, run_bounded, within,
};
use pve_network_migration::evidence::EvidenceRecord;

const CT: &str = env!("CARGO_BIN_EXE_contract-test");
const NET: &str = "/api2/json/nodes/pve1/network";

async fn rig(divergences: &[&str]) -> Rig {
    rig_in_phase(divergences, "perl-only").await
}

async fn rig_in_phase(divergences: &[&str], phase: &str) -> Rig {
    Rig::start_with(RigOptions {
        phase: Some(phase.into()),
        rust: Some(RustOptions {
            divergences: divergences.iter().map(|d| d.to_string()).collect(),
            ..RustOptions::default()
        }),
        ..RigOptions::default()
    })
    .await
}

/// The token as `contract-test --token` takes it (without `PVEAPIToken=`).
fn token() -> &'static str {
    TOKEN.strip_prefix("PVEAPIToken=").unwrap()
}

/// `--node pve1 --perl-url … --rust-url … --ca …` for a rig.
fn backends(rig: &Rig) -> Vec<String> {
    vec![
        "--node".into(),
        "pve1".into(),
        "--perl-url".into(),
        rig.perl().url(),
        "--rust-url".into(),
        rig.rust().url(),
        "--ca".into(),
        rig.ca_path.display().to_string(),
    ]
}

fn with_token(rig: &Rig) -> Vec<String> {
    let mut a = backends(rig);
    a.extend(["--token".into(), token().into()]);
    a
}

/// Runs contract-test off the async runtime, without PVE_PASSWORD unless given.
async fn ct(args: Vec<String>, env: &[(&str, &str)]) -> Output {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    within(
        "contract-test",
        tokio::task::spawn_blocking(move || {
            let mut c = Command::new(CT);
            c.args(&args).env_remove("PVE_PASSWORD");
            for (k, v) in env {
                c.env(k, v);
            }
            run_bounded(&mut c)
        }),
    )
    .await
    .unwrap()
}

fn args(base: &[String], more: &[&str]) -> Vec<String> {
    base.iter()
        .cloned()
        .chain(more.iter().map(|s| s.to_string()))
        .collect()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn show(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    )
}

/// Every stdout line as JSON.
fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{}", show(o))))
        .collect()
}

fn patch_paths(v: &serde_json::Value) -> Vec<String> {
    v["patch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap().to_owned())
        .collect()
}

fn read_jsonl(path: &Path) -> Vec<EvidenceRecord> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_backends_are_type_only_and_exit_0() {
    let rig = rig(&[]).await;
    let out = ct(
        args(&with_token(&rig), &["--endpoint", "/nodes/{node}/network"]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(
        text.contains("GET /api2/json/nodes/pve1/network → node.network.list"),
        "{text}"
    );
    assert!(text.contains("verdict      type-only"), "{text}");
    assert!(text.contains("fingerprint  "), "{text}");
    assert!(!text.contains("patch (RFC 6902"), "{text}");

    // --json: one object per request; a full /api2/json path works too.
    let out = ct(args(&with_token(&rig), &["--endpoint", NET, "--json"]), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    let v = &lines[0];
    assert_eq!(v["verdict"], "type-only");
    assert_eq!(v["endpoint"], "node.network.list");
    assert_eq!(v["path"], NET);
    assert_eq!(v["perl"]["status"], 200);
    assert_eq!(v["rust"]["status"], 200);
    assert!(v["type_only"].as_u64().unwrap() > 0, "{v}");
    let by_kind: u64 = v["type_only_kinds"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(by_kind, v["type_only"].as_u64().unwrap(), "{v}");
    assert_eq!(v["patch"], serde_json::json!([]));
    assert_eq!(v["fingerprint"].as_str().unwrap().len(), 16);

    // Both sides got the same trace id.
    let trace = v["trace_id"].as_str().unwrap();
    for sim in [rig.perl(), rig.rust()] {
        assert!(
            sim.stats().recent().iter().any(|r| r.path == NET),
            "both backends were asked"
        );
    }
    assert_eq!(trace.len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_divergence_exits_1_with_the_patch() {
    let rig = rig(&["rename-bridge-ports"]).await;
    let out = ct(
        args(&with_token(&rig), &["--endpoint", "/nodes/{node}/network"]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("verdict      mismatch"), "{text}");
    assert!(text.contains("patch (RFC 6902"), "{text}");
    assert!(text.contains("bridge_ports"), "{text}");

    let out = ct(
        args(
            &with_token(&rig),
            &["--endpoint", "/nodes/{node}/network", "--json"],
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v = &json_lines(&out)[0];
    assert_eq!(v["verdict"], "mismatch");
    let paths = patch_paths(v);
    assert!(
        paths.iter().any(|p| p.starts_with("/body/data/")
            && p.ends_with("/bridge_ports")
            && p.split('/').nth(3).unwrap().parse::<usize>().is_ok()),
        "{paths:?}"
    );

    // One interface, in the extjs format.
    let out = ct(
        args(
            &with_token(&rig),
            &[
                "--endpoint",
                "/api2/extjs/nodes/pve1/network/vmbr0",
                "--json",
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let v = &json_lines(&out)[0];
    assert_eq!(v["endpoint"], "node.network.iface.get");
    assert!(
        patch_paths(v).contains(&"/body/data/bridge_ports".to_owned()),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_login_with_password_file_or_env_and_a_wrong_password() {
    let rig = rig(&[]).await;
    let pw = rig.dir.path().join("pw");
    std::fs::write(&pw, format!("{ROOT_PASSWORD}\n")).unwrap();
    let user = |extra: &[&str]| {
        let mut a = backends(&rig);
        a.extend(["--user".into(), "root@pam".into()]);
        args(&a, extra)
    };

    let out = ct(
        user(&[
            "--password-file",
            pw.to_str().unwrap(),
            "--endpoint",
            "/nodes/{node}/network",
        ]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    for sim in [rig.perl(), rig.rust()] {
        let recent = sim.stats().recent();
        assert!(
            recent
                .iter()
                .any(|r| r.method == "POST" && r.path == "/api2/json/access/ticket"),
            "logged in to each backend"
        );
    }

    let out = ct(
        user(&["--endpoint", "/nodes/{node}/network"]),
        &[("PVE_PASSWORD", ROOT_PASSWORD)],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // No password at all.
    let out = ct(user(&["--endpoint", "/nodes/{node}/network"]), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("PVE_PASSWORD"), "{}", show(&out));

    // A wrong password: exit 2, the backend and URL named, the password never printed.
    let wrong = rig.dir.path().join("wrong");
    std::fs::write(&wrong, "hunter2-wrong\n").unwrap();
    let out = ct(
        user(&[
            "--password-file",
            wrong.to_str().unwrap(),
            "--endpoint",
            "/nodes/{node}/network",
        ]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains("login as root@pam failed"), "{err}");
    assert!(err.contains("401 authentication failure"), "{err}");
    assert!(
        err.contains(&format!("perl backend {}", rig.perl().url()))
            || err.contains(&format!("rust backend {}", rig.rust().url())),
        "{err}"
    );
    assert!(!show(&out).contains("hunter2"), "{}", show(&out));

    // The password is not a flag.
    let out = ct(user(&["--password", "x", "--endpoint", NET]), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));

    // A wrong token: both sides refuse, which is an error, not a "match".
    let mut a = backends(&rig);
    a.extend([
        "--token".into(),
        "root@pam!ci=11111111-1111-1111-1111-111111111111".into(),
        "--endpoint".into(),
        NET.into(),
    ]);
    let out = ct(a, &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("both backends refused the credentials"),
        "{}",
        show(&out)
    );
    assert!(!show(&out).contains("11111111-1111"), "{}", show(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_exits_2_naming_it() {
    let rig = rig(&[]).await;
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("https://{}", l.local_addr().unwrap())
    };
    let mut a = with_token(&rig);
    let i = a.iter().position(|s| s == "--rust-url").unwrap();
    a[i + 1] = closed.clone();
    let out = ct(args(&a, &["--endpoint", NET]), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("rust backend {closed}")), "{err}");
    assert!(err.contains("cannot connect"), "{err}");

    // With a user, the login already names it.
    let pw = rig.dir.path().join("pw");
    std::fs::write(&pw, ROOT_PASSWORD).unwrap();
    let mut a = backends(&rig);
    a[i + 1] = closed.clone();
    let out = ct(
        args(
            &a,
            &[
                "--user",
                "root@pam",
                "--password-file",
                pw.to_str().unwrap(),
                "--endpoint",
                NET,
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!("rust backend {closed}")),
        "{}",
        show(&out)
    );

    // A certificate that does not match the pinned fingerprint.
    let out = ct(
        args(
            &with_token(&rig),
            &[
                "--perl-fingerprint",
                &["AB"; 32].join(":"),
                "--endpoint",
                NET,
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains(&format!("perl backend {}", rig.perl().url())),
        "{}",
        show(&out)
    );
    assert!(
        stderr(&out).contains("TLS") && stderr(&out).contains("--perl-fingerprint"),
        "{}",
        show(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmigrated_paths_and_bad_arguments_exit_2() {
    let rig = rig(&[]).await;
    let out = ct(
        args(&with_token(&rig), &["--endpoint", "/nodes/{node}/qemu"]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("/api2/json/nodes/pve1/qemu: not a migrated endpoint"),
        "{}",
        show(&out)
    );
    let out = ct(
        args(&with_token(&rig), &["--endpoint", NET, "--data", "novalue"]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = ct(with_token(&rig), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let out = ct(args(&backends(&rig), &["--endpoint", NET]), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("no credentials"), "{}", show(&out));
    assert_eq!(
        rig.perl()
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    assert_eq!(
        rig.rust()
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_only_as_dry_run() {
    use std::sync::atomic::Ordering::SeqCst;
    let rig = rig(&[]).await;
    let interfaces = rig.dir.path().join("interfaces");
    let before = std::fs::read(&interfaces).unwrap();
    let write = [
        "--endpoint",
        "/nodes/{node}/network",
        "--method",
        "POST",
        "--data",
        "iface=vmbr9",
        "--data",
        "type=bridge",
    ];

    let out = ct(args(&with_token(&rig), &write), &[]).await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("--dry-run"), "{}", show(&out));
    assert_eq!(rig.perl().stats().requests.load(SeqCst), 0, "nothing sent");
    assert_eq!(rig.rust().stats().requests.load(SeqCst), 0, "nothing sent");

    // With a user (ticket + CSRF token on the write) and --dry-run.
    let pw = rig.dir.path().join("pw");
    std::fs::write(&pw, ROOT_PASSWORD).unwrap();
    let mut a = args(&backends(&rig), &write);
    a.extend(
        [
            "--dry-run",
            "--json",
            "--user",
            "root@pam",
            "--password-file",
        ]
        .map(String::from),
    );
    a.push(pw.display().to_string());
    let out = ct(a, &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = &json_lines(&out)[0];
    assert_eq!(v["endpoint"], "node.network.create");
    assert_eq!(v["class"], "write");
    assert_eq!(
        (
            v["perl"]["dry_run"].as_bool(),
            v["rust"]["dry_run"].as_bool()
        ),
        (Some(true), Some(true))
    );
    assert_eq!(
        (v["perl"]["status"].as_u64(), v["rust"]["status"].as_u64()),
        (Some(200), Some(200)),
        "{v}"
    );
    assert!(
        stderr(&out).contains("X-PVE-Dry-Run: 1") && stderr(&out).contains("for real"),
        "{}",
        show(&out)
    );

    assert_eq!(
        std::fs::read(&interfaces).unwrap(),
        before,
        "interfaces file unchanged"
    );
    let rust = rig.rust().stats();
    assert_eq!(
        (rust.dry_runs.load(SeqCst), rust.writes.load(SeqCst)),
        (1, 0)
    );
    let marked = |sim: &pve_sim::SimHandle| {
        sim.stats()
            .recent()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == NET)
            .map(|r| r.dry_run)
            .collect::<Vec<_>>()
    };
    assert_eq!(marked(rig.rust()), vec![Some("1".to_owned())]);
    assert_eq!(marked(rig.perl()), vec![Some("1".to_owned())]);
    // The Perl flavour ignores the marker, as pveproxy does: it wrote the
    // pending file. This is what the --dry-run help warns about.
    assert_eq!(rig.perl().stats().writes.load(SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suites_run_every_request_and_exit_with_the_worst() {
    let rig = rig(&["rename-bridge-ports"]).await;
    let suite = rig.dir.path().join("suite.toml");
    std::fs::write(
        &suite,
        r#"
[[request]]
name = "list"
path = "/nodes/{node}/network"

[[request]]
name = "bonds"
method = "GET"
path = "/nodes/{node}/network"
data = { type = "bond" }

[[request]]
name = "eno1"
path = "/api2/json/nodes/pve1/network/eno1"
"#,
    )
    .unwrap();
    let out = ct(
        args(&with_token(&rig), &["--suite", suite.to_str().unwrap()]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let text = stdout(&out);
    let table: Vec<&str> = text.lines().take(4).collect();
    assert!(
        table[0].starts_with("#") && table[0].contains("VERDICT"),
        "{text}"
    );
    assert!(
        table[1].starts_with("list") && table[1].contains("mismatch"),
        "{text}"
    );
    assert!(
        table[2].starts_with("bonds")
            && table[2].contains("?type=bond")
            && table[2].contains("type-only"),
        "{text}"
    );
    assert!(
        table[3].starts_with("eno1") && table[3].contains("node.network.iface.get"),
        "{text}"
    );
    assert!(
        text.contains("#list:"),
        "the mismatch's patch follows: {text}"
    );

    let out = ct(
        args(
            &with_token(&rig),
            &["--suite", suite.to_str().unwrap(), "--json"],
        ),
        &[],
    )
    .await;
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["name"], "bonds");

    // An unmigrated path anywhere in the suite: exit 2 before anything is sent.
    let bad = rig.dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[request]]\npath = \"/nodes/{node}/network\"\n[[request]]\npath = \"/version\"\n",
    )
    .unwrap();
    let before = rig
        .perl()
        .stats()
        .requests
        .load(std::sync::atomic::Ordering::SeqCst);
    let out = ct(
        args(&with_token(&rig), &["--suite", bad.to_str().unwrap()]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(
        stderr(&out).contains("/api2/json/version"),
        "{}",
        show(&out)
    );
    assert_eq!(
        rig.perl()
            .stats()
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        before
    );
    // An unknown key names itself.
    std::fs::write(
        &bad,
        "[[request]]\npath = \"/nodes/{node}/network\"\nmethd = \"GET\"\n",
    )
    .unwrap();
    let out = ct(
        args(&with_token(&rig), &["--suite", bad.to_str().unwrap()]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr(&out).contains("methd"), "{}", show(&out));
}

/// `--rust-url` and `--rust-ca` of another rig.
fn rust_of(base: &[String], other: &Rig) -> Vec<String> {
    let mut a = base.to_vec();
    let i = a.iter().position(|s| s == "--rust-url").unwrap();
    a[i + 1] = other.rust().url();
    a.extend(["--rust-ca".into(), other.ca_path.display().to_string()]);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_then_replay_reports_the_fix() {
    let broken = rig(&["rename-bridge-ports"]).await;
    let fixed = rig(&[]).await;
    let out_file: PathBuf = broken.dir.path().join("results.jsonl");
    let out = ct(
        args(
            &with_token(&broken),
            &[
                "--endpoint",
                "/nodes/{node}/network",
                "--output",
                out_file.to_str().unwrap(),
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    let records = read_jsonl(&out_file);
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (
            r.verdict.as_str(),
            r.method.as_str(),
            r.path.as_str(),
            r.endpoint.as_str()
        ),
        ("mismatch", "GET", NET, "node.network.list")
    );
    assert!(r.perl.as_ref().unwrap().body_sha256.len() == 64);
    assert!(
        r.patch
            .as_ref()
            .unwrap()
            .to_string()
            .contains("bridge_ports")
    );
    let old_fp = r.fingerprint.clone();

    // Still broken: exit 1, "still mismatch".
    let replay =
        |base: Vec<String>| args(&base, &["replay", "--evidence", out_file.to_str().unwrap()]);
    let out = ct(replay(with_token(&broken)), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(stdout(&out).contains("still mismatch"), "{}", show(&out));
    assert!(stdout(&out).contains("0 of 1 fixed"), "{}", show(&out));

    // Against a Rust backend without the divergence: fixed, exit 0.
    let out = ct(replay(rust_of(&with_token(&broken), &fixed)), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = stdout(&out);
    assert!(text.contains("fixed"), "{text}");
    assert!(text.contains(&old_fp), "{text}");
    assert!(text.contains("1 of 1 fixed"), "{text}");

    let mut a = rust_of(&with_token(&broken), &fixed);
    a.push("--json".into());
    let out = ct(replay(a), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let v = &json_lines(&out)[0];
    assert_eq!(
        (
            v["endpoint"].as_str(),
            v["path"].as_str(),
            v["old_verdict"].as_str(),
            v["verdict"].as_str(),
            v["fixed"].as_bool()
        ),
        (
            Some("node.network.list"),
            Some(NET),
            Some("mismatch"),
            Some("type-only"),
            Some(true)
        )
    );
    assert_eq!(v["old_fingerprint"], old_fp.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reads_the_gateways_evidence_and_skips_writes_and_redacted_paths() {
    // The gateway in shadow records the mismatch of a divergent Rust backend.
    let broken = rig_in_phase(&["rename-bridge-ports"], "shadow").await;
    let fixed = rig(&[]).await;
    let resp = broken
        .client
        .get(broken.gw(), NET, &[("authorization", TOKEN)])
        .await;
    assert_eq!(resp.status, 200);
    let records = broken
        .evidence_until("a mismatch", |r| r.iter().any(|r| r.is_mismatch()))
        .await;
    let recorded = records.iter().find(|r| r.is_mismatch()).unwrap().clone();
    assert_eq!(recorded.path, NET);
    let dir = broken.dir.path().join("state/evidence");

    let out = ct(
        args(
            &rust_of(&with_token(&broken), &fixed),
            &[
                "replay",
                "--evidence",
                dir.to_str().unwrap(),
                "--since",
                "1h",
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(stdout(&out).contains("1 of 1 fixed"), "{}", show(&out));

    // A store with a write and a redacted path next to a replayable GET.
    let crafted = broken.dir.path().join("crafted");
    std::fs::create_dir(&crafted).unwrap();
    let mut post = recorded.clone();
    post.method = "POST".into();
    let mut secret = recorded.clone();
    secret.path = format!("{NET}?ticket=<redacted>");
    let mut matched = recorded.clone();
    matched.verdict = "match".into();
    matched.path = format!("{NET}/vmbr0");
    let lines: String = [&recorded, &recorded, &post, &secret, &matched]
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    std::fs::write(crafted.join("segment-000000000001.jsonl"), lines).unwrap();
    let before = broken.perl().stats().recent().len();
    let mut a = rust_of(&with_token(&broken), &fixed);
    a.push("--json".into());
    let out = ct(
        args(&a, &["replay", "--evidence", crafted.to_str().unwrap()]),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let lines = json_lines(&out);
    let skipped: Vec<_> = lines
        .iter()
        .filter(|v| v.get("skipped").is_some())
        .collect();
    assert_eq!(skipped.len(), 2, "{lines:?}");
    assert!(skipped.iter().any(|v| v["method"] == "POST"));
    assert!(
        skipped
            .iter()
            .any(|v| v["skipped"].as_str().unwrap().contains("<redacted>"))
    );
    let replayed: Vec<_> = lines.iter().filter(|v| v.get("state").is_some()).collect();
    assert_eq!(replayed.len(), 1, "duplicates are replayed once: {lines:?}");
    assert_eq!(replayed[0]["records"], 2);
    assert_eq!(replayed[0]["state"], "fixed");
    let sent: Vec<_> = broken.perl().stats().recent()[before..]
        .iter()
        .map(|r| (r.method.to_string(), r.path.clone()))
        .collect();
    assert_eq!(
        sent,
        vec![("GET".to_owned(), NET.to_owned())],
        "only the GET was re-sent"
    );

    // A missing store is an error.
    let out = ct(
        args(
            &with_token(&broken),
            &["replay", "--evidence", "/nonexistent/evidence"],
        ),
        &[],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
}
