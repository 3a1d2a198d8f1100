//! The real Rust backend (`pve-network-rs`) over HTTPS on a node root:
//! authentication failures with pveproxy's status and reason phrase, the
//! response framing, dry runs that change nothing, the lock shared with a
//! second writer, apply as a task with a backup first, the phase guard.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pve_migration_certs::testca::TestCa;
use pve_migration_tests::node::{NodeRoot, RustBackend, TOKEN_SECRET};
use pve_migration_tests::{INTERFACES, Resp, TestClient, request, within};

const NET: &str = "/api2/json/nodes/pve1/network";
const TOKEN: &str = "PVEAPIToken=root@pam!ci=00000000-0000-0000-0000-000000000000";

struct Node {
    _dir: tempfile::TempDir,
    root: NodeRoot,
    backend: RustBackend,
    client: TestClient,
    cert: (std::path::PathBuf, std::path::PathBuf),
}

async fn node() -> Node {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("pve-network-rs test CA").expect("CA");
    let leaf = ca.issue(&["localhost", "127.0.0.1"]).expect("leaf");
    let cert = (dir.path().join("node.pem"), dir.path().join("node.key"));
    leaf.write(&cert.0, &cert.1).expect("write cert");
    let root = NodeRoot::create(&dir.path().join("root"), INTERFACES);
    let backend = RustBackend::start(&root, "pve1", (&cert.0, &cert.1)).await;
    Node {
        _dir: dir,
        root,
        backend,
        client: TestClient::new(&ca),
        cert,
    }
}

impl Node {
    async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], form: &str) -> Resp {
        let mut h = headers.to_vec();
        if !form.is_empty() {
            h.push(("content-type", "application/x-www-form-urlencoded"));
        }
        self.client
            .send(
                self.backend.addr(),
                request(method, path, &h, Bytes::from(form.to_owned())),
            )
            .await
    }

    async fn token(&self, method: &str, path: &str, form: &str) -> Resp {
        self.call(method, path, &[("authorization", TOKEN)], form)
            .await
    }
}

fn assert_401(r: &Resp, reason: &str) {
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (401, reason));
    assert!(r.body.is_empty(), "401 bodies are empty: {:?}", r.body);
    assert_eq!(r.headers["connection"], "close");
}

fn assert_403(r: &Resp, reason: &str) {
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (403, reason));
    assert_eq!(
        r.json(),
        serde_json::json!({"data": null, "message": format!("{reason}\n")})
    );
}

#[tokio::test]
async fn pveproxy_framing_and_wire_format() {
    let n = node().await;
    let r = n.token("GET", NET, "").await;
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (200, "OK"));
    for (h, v) in [
        ("cache-control", "max-age=0"),
        ("connection", "Keep-Alive"),
        ("pragma", "no-cache"),
        ("server", "pve-api-daemon/3.0"),
        ("content-type", "application/json;charset=UTF-8"),
    ] {
        assert_eq!(r.headers[h], v, "{h}");
    }
    assert_eq!(r.headers["date"], r.headers["expires"]);
    let body = r.json();
    let vmbr0 = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["iface"] == "vmbr0")
        .unwrap()
        .clone();
    // Perl's value types: strings from the file, numbers for flags
    assert_eq!(vmbr0["bridge_fd"], "0");
    assert_eq!(vmbr0["netmask"], "24");
    assert_eq!(vmbr0["autostart"], 1);
    assert_eq!(
        vmbr0["active"],
        serde_json::Value::Null,
        "vmbr0 is not up in links.json"
    );
    let eno1 = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["iface"] == "eno1")
        .unwrap();
    assert_eq!(
        (eno1["exists"].clone(), eno1["active"].clone()),
        (1.into(), 1.into())
    );

    let r = n.token("GET", &format!("{NET}/vmbr7"), "").await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (400, "Parameter verification failed.")
    );
    assert_eq!(r.headers["connection"], "close");
    assert_eq!(
        r.json(),
        serde_json::json!({"data": null, "errors": {"iface": "interface does not exist"},
                           "message": "Parameter verification failed.\n"})
    );
    let r = n
        .token("GET", "/api2/extjs/nodes/pve1/network/vmbr7", "")
        .await;
    assert_eq!((r.status.as_u16(), r.reason().as_str()), (200, "OK"));
    assert_eq!(
        r.json(),
        serde_json::json!({"data": null, "errors": {"iface": "interface does not exist"},
                           "message": "Parameter verification failed.\n", "status": "400", "success": 0})
    );
    let r = n
        .token("GET", "/api2/json/nodes/pve1/network/vmbr0/x", "")
        .await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (
            501,
            "Method 'GET /nodes/pve1/network/vmbr0/x' not implemented"
        )
    );
    let r = n.token("HEAD", NET, "").await;
    assert_eq!(
        (r.status.as_u16(), r.reason().as_str()),
        (501, "method 'HEAD' not available")
    );
    let r = n.token("GET", "/api2/json/nodes/pve2/network", "").await;
    assert_eq!(r.status, 500);
    assert_eq!(
        r.reason(),
        "this Rust network backend serves node 'pve1' only, not 'pve2' (no proxying to other nodes)"
    );
    // the same over HTTP/2
    let mut h2 = n.client.h2(n.backend.addr()).await;
    let resp = within(
        "h2",
        h2.send_request(request(
            "GET",
            NET,
            &[("authorization", TOKEN)],
            Bytes::new(),
        )),
    )
    .await
    .expect("h2 response");
    let resp = pve_migration_tests::read(resp).await;
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.json()["data"].as_array().unwrap().len(),
        body["data"].as_array().unwrap().len()
    );
}

#[tokio::test]
async fn authentication_failures_answer_like_pveproxy() {
    let mut n = node().await;
    n.root.write_user_cfg(
        "user:root@pam:1:0:::\ntoken:root@pam!ci:0:0::\n\
         user:audit@pve:1:0:::\nuser:off@pve:0:0:::\n\
         token:audit@pve!old:1000:0::\ntoken:audit@pve!sep:0:1::\n\
         acl:1:/nodes:audit@pve:PVEAuditor:\n",
    );
    n.root.add_token_secret("audit@pve!old", "1111");
    n.root.add_token_secret("audit@pve!sep", "2222");
    let now = pve_migration_tests::node::now();
    let fresh = n.root.ticket("root@pam");
    let audit = n.root.ticket("audit@pve");
    let expired = n.root.ticket_at("root@pam", now - 7300);
    let future = n.root.ticket_at("root@pam", now + 600);
    let other_key = {
        let (private, _) = pve_migration_tests::node::rsa_key_pair();
        pve_network_rs::auth::ticket::TicketSigner::from_pem(private.as_bytes())
            .unwrap()
            .ticket("root@pam", now)
    };
    let disabled = n.root.ticket("off@pve");
    let cookie = |t: &str| NodeRoot::cookie(t);
    let form = "iface=vmbr5&type=bridge";

    struct Case {
        what: &'static str,
        method: &'static str,
        headers: Vec<(&'static str, String)>,
        form: &'static str,
        reason: &'static str,
    }
    let case = |what, method, headers, form, reason| Case {
        what,
        method,
        headers,
        form,
        reason,
    };
    const FAILED: &str = "Authentication failed!";
    let cases = vec![
        case("no credentials", "GET", vec![], "", "No ticket"),
        case(
            "expired ticket",
            "GET",
            vec![("cookie", cookie(&expired))],
            "",
            FAILED,
        ),
        case(
            "ticket from the future",
            "GET",
            vec![("cookie", cookie(&future))],
            "",
            FAILED,
        ),
        case(
            "wrong key",
            "GET",
            vec![("cookie", cookie(&other_key))],
            "",
            FAILED,
        ),
        case(
            "disabled user",
            "GET",
            vec![("cookie", cookie(&disabled))],
            "",
            FAILED,
        ),
        case(
            "write without CSRF token",
            "POST",
            vec![("cookie", cookie(&fresh))],
            form,
            "Permission denied - invalid csrf token",
        ),
        case(
            "write with another user's CSRF token",
            "POST",
            vec![
                ("cookie", cookie(&fresh)),
                ("csrfpreventiontoken", n.root.csrf("audit@pve")),
            ],
            form,
            "Permission denied - invalid csrf token",
        ),
        case(
            "unknown token",
            "GET",
            vec![("authorization", "PVEAPIToken=root@pam!nope=xyz".into())],
            "",
            FAILED,
        ),
        case(
            "wrong token secret",
            "GET",
            vec![("authorization", "PVEAPIToken=root@pam!ci=wrong".into())],
            "",
            FAILED,
        ),
        case(
            "expired token",
            "GET",
            vec![("authorization", "PVEAPIToken=audit@pve!old=1111".into())],
            "",
            FAILED,
        ),
        case(
            "PBS-style token separator",
            "GET",
            vec![(
                "authorization",
                format!("PVEAPIToken=root@pam!ci:{TOKEN_SECRET}"),
            )],
            "",
            FAILED,
        ),
    ];
    let started = Instant::now();
    let results = futures_util::future::join_all(cases.iter().map(|c| {
        let headers: Vec<(&str, &str)> = c.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let n = &n;
        async move { n.call(c.method, NET, &headers, c.form).await }
    }))
    .await;
    for (c, r) in cases.iter().zip(&results) {
        assert_eq!(
            (r.status.as_u16(), r.reason().as_str()),
            (401, c.reason),
            "{}",
            c.what
        );
        assert_401(r, c.reason);
    }
    // pveproxy holds every failed authentication back for 3 s
    assert!(
        started.elapsed() >= Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );

    // authorisation: 403 with PVE's message, no delay
    let r = n
        .call(
            "POST",
            NET,
            &[
                ("cookie", &cookie(&audit)),
                ("csrfpreventiontoken", &n.root.csrf("audit@pve")),
            ],
            form,
        )
        .await;
    assert_403(&r, "Permission check failed (/nodes/pve1, Sys.Modify)");
    let r = n
        .call(
            "GET",
            &format!("{NET}/vmbr0"),
            &[("cookie", &cookie(&audit))],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "PVEAuditor has Sys.Audit");
    // a privilege-separated token without an ACL of its own has nothing
    let sep = [("authorization", "PVEAPIToken=audit@pve!sep=2222")];
    let r = n.call("GET", &format!("{NET}/vmbr0"), &sep, "").await;
    assert_403(&r, "Permission check failed (/nodes/pve1, Sys.Audit)");
    // ... but may list (any user may), without the bridges it may not see
    let r = n.call("GET", NET, &sep, "").await;
    assert_eq!(r.status, 200);
    let names: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["iface"].as_str().unwrap().to_string())
        .collect();
    assert!(!names.contains(&"vmbr0".to_string()), "{names:?}");
    assert!(names.contains(&"eno1".to_string()), "{names:?}");

    // key rotation: the old key still verifies what it signed before the
    // rotation, not what it signed after it
    let old = n.root.rotate_key(600);
    let before = old.ticket("root@pam", now - 700);
    let after = old.ticket("root@pam", now - 100);
    let r = n
        .call("GET", NET, &[("cookie", &cookie(&before))], "")
        .await;
    assert_eq!(
        r.status,
        200,
        "a ticket made before the rotation: {}",
        r.reason()
    );
    let r = n.call("GET", NET, &[("cookie", &cookie(&after))], "").await;
    assert_401(&r, "Authentication failed!");
    let r = n
        .call(
            "GET",
            NET,
            &[("cookie", &cookie(&n.root.ticket("root@pam")))],
            "",
        )
        .await;
    assert_eq!(r.status, 200, "the new key");

    // and the happy path with a ticket: write with the CSRF token
    let t = n.root.ticket("root@pam");
    let csrf = n.root.csrf("root@pam");
    let r = n
        .call(
            "POST",
            NET,
            &[("cookie", &cookie(&t)), ("csrfpreventiontoken", &csrf)],
            form,
        )
        .await;
    assert_eq!(
        (r.status.as_u16(), r.body.as_ref()),
        (200, &b"{\"data\":null}"[..])
    );
}

#[tokio::test]
async fn dry_runs_answer_the_same_and_change_nothing() {
    let n = node().await;
    let dry = [("authorization", TOKEN), ("x-pve-dry-run", "1")];
    let writes = [
        (
            "POST",
            NET.to_string(),
            "iface=vmbr5&type=bridge&bridge_ports=eno2&cidr=10.5.0.1/24&autostart=1",
        ),
        ("POST", NET.to_string(), "iface=vmbr0&type=bridge"),
        (
            "PUT",
            format!("{NET}/vmbr0"),
            "type=bridge&mtu=9000&bridge_ports=eno1",
        ),
        ("DELETE", format!("{NET}/vmbr0.50"), ""),
        ("DELETE", NET.to_string(), ""),
        ("PUT", NET.to_string(), ""),
    ];
    let before = n.root.snapshot();
    for (m, p, f) in &writes {
        let r = n.call(m, p, &dry, f).await;
        assert!(
            r.status == 200 || r.status == 400,
            "{m} {p}: {}",
            r.reason()
        );
    }
    let after = n.root.snapshot();
    let changed: Vec<_> = after
        .iter()
        .filter(|f| !before.contains(f))
        .chain(before.iter().filter(|f| !after.contains(f)))
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert!(
        changed.is_empty(),
        "a dry run leaves every file byte-identical: {changed:?}"
    );
    assert!(
        !n.root.path("/ifreload.calls").exists(),
        "a dry-run apply starts no task"
    );
    // the dry run answered what the real write answers
    for (m, p, f) in &writes[..4] {
        let d = n.call(m, p, &dry, f).await;
        let real = n.token(m, p, f).await;
        assert_eq!(
            (d.status, d.reason(), d.body.clone()),
            (real.status, real.reason(), real.body.clone()),
            "{m} {p}"
        );
        n.token("DELETE", NET, "").await;
    }
}

#[tokio::test]
async fn a_second_writer_never_loses_an_update() {
    let n = node().await;
    // the second writer: a Perl-flavour simulator on the same file and lock
    let mut c = pve_sim::SimConfig::for_tests(
        n.cert.0.clone(),
        n.cert.1.clone(),
        n.root.path("/etc/network/interfaces"),
    );
    c.node = "pve1".into();
    let sim = pve_sim::start(c).await.expect("pve-sim");
    let sim_addr = sim.addr();
    let n = &n;
    let rust = (0..12).map(|i| async move {
        n.token("POST", NET, &format!("iface=vmbr{}&type=bridge", 10 + i))
            .await
    });
    let perl = (0..12).map(|i| {
        let client = n.client.clone();
        async move {
            client
                .send(
                    sim_addr,
                    request(
                        "POST",
                        NET,
                        &[
                            ("authorization", TOKEN),
                            ("content-type", "application/x-www-form-urlencoded"),
                        ],
                        Bytes::from(format!("iface=vmbr{}&type=bridge", 40 + i)),
                    ),
                )
                .await
        }
    });
    let (a, b) = futures_util::future::join(
        futures_util::future::join_all(rust),
        futures_util::future::join_all(perl),
    )
    .await;
    for r in a.iter().chain(&b) {
        assert_eq!(r.status, 200, "{}", r.reason());
    }
    let (_, pending) = n.root.files();
    let pending = pending.expect("interfaces.new");
    for i in (10..22).chain(40..52) {
        assert!(
            pending.contains(&format!("iface vmbr{i} inet manual")),
            "vmbr{i} lost:\n{pending}"
        );
    }
}

fn task_log(root: &NodeRoot, upid: &str) -> String {
    let u = pve_network_rs::task::Upid::decode(upid).expect("a UPID");
    std::fs::read_to_string(u.log_path(&root.path("/var/log/pve/tasks"))).expect("task log")
}

#[tokio::test]
async fn apply_is_a_task_with_a_backup_first() {
    let n = node().await;
    let applied_before = std::fs::read(n.root.path("/etc/network/interfaces")).unwrap();
    let r = n
        .token(
            "POST",
            NET,
            "iface=vmbr5&type=bridge&bridge_ports=eno3&autostart=1",
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.reason());
    let (_, pending) = n.root.files();
    let pending = pending.unwrap();
    let r = n.token("PUT", NET, "").await;
    assert_eq!(r.status, 200, "{}", r.reason());
    let upid = r.json()["data"].as_str().unwrap().to_string();
    let u = pve_network_rs::task::Upid::decode(&upid).unwrap();
    assert_eq!(
        (
            u.node.as_str(),
            u.worker_type.as_str(),
            u.id.as_str(),
            u.user.as_str()
        ),
        ("pve1", "srvreload", "networking", "root@pam!ci")
    );
    assert_ne!(
        u.pid,
        std::process::id(),
        "the worker is a process of its own"
    );
    assert!(u.pstart > 0);
    // the task finished before the answer: the file is applied
    assert_eq!(n.root.files(), (pending.clone(), None));
    assert_eq!(
        std::fs::read_to_string(n.root.path("/ifreload.calls")).unwrap(),
        "ifreload -a\n"
    );
    let log = task_log(&n.root, &upid);
    assert!(log.ends_with("TASK OK\n"), "{log}");
    // the backup holds the running file as it was
    let backups: Vec<_> = std::fs::read_dir(n.root.path("/var/lib/pve-network-rs/backups"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(
        std::fs::read(backups[0].join("interfaces")).unwrap(),
        applied_before
    );
    assert_eq!(
        std::fs::read_to_string(backups[0].join("interfaces.new")).unwrap(),
        pending
    );
    assert_eq!(
        std::fs::read_to_string(backups[0].join("task")).unwrap(),
        format!("{upid}\n")
    );
    let log_line = log.lines().next().unwrap();
    assert_eq!(
        log_line,
        format!(
            "backup of /etc/network/interfaces: /var/lib/pve-network-rs/backups/{}",
            backups[0].file_name().unwrap().to_string_lossy()
        )
    );
    // PVE's task lists
    let index = std::fs::read_to_string(n.root.path("/var/log/pve/tasks/index")).unwrap();
    let line = index.lines().next().unwrap();
    assert!(
        line.starts_with(&format!("{upid} ")) && line.ends_with(" OK"),
        "{index}"
    );

    // a failing ifreload fails the task with PVE's message
    std::fs::write(n.root.path("/ifreload.exit"), "1\n").unwrap();
    let r = n.token("PUT", NET, "").await;
    let upid = r.json()["data"].as_str().unwrap().to_string();
    let log = task_log(&n.root, &upid);
    assert!(
        log.ends_with("TASK ERROR: command 'ifreload -a' failed: exit code 1\n"),
        "{log}"
    );
    assert_eq!(
        std::fs::read_dir(n.root.path("/var/lib/pve-network-rs/backups"))
            .unwrap()
            .count(),
        2,
        "every apply backs up first"
    );
}

fn write_phase(root: &Path, toml: &str) {
    let p = root.join("etc/pve/network/migration.toml");
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, toml).unwrap();
}

#[tokio::test]
async fn the_phase_guards_real_writes() {
    let n = node().await;
    write_phase(&n.root.root, "phase = \"shadow\"\nstate_dir = \"/state\"\n");
    let form = "iface=vmbr5&type=bridge";
    let r = n.token("POST", NET, form).await;
    assert_403(
        &r,
        "Permission check failed (node 'pve1' is in phase 'shadow'; the Rust backend carries out configuration writes only from phase 'rust-basic-write')",
    );
    // the gateway's dry-run copy is always answered
    let r = n
        .call(
            "POST",
            NET,
            &[("authorization", TOKEN), ("x-pve-dry-run", "1")],
            form,
        )
        .await;
    assert_eq!(r.status, 200);
    // reads are never restricted
    assert_eq!(n.token("GET", NET, "").await.status, 200);

    write_phase(
        &n.root.root,
        "phase = \"shadow\"\nstate_dir = \"/state\"\n[nodes.pve1]\nphase = \"rust-basic-write\"\n",
    );
    assert_eq!(n.token("POST", NET, form).await.status, 200);
    let r = n.token("PUT", NET, "").await;
    assert_403(
        &r,
        "Permission check failed (node 'pve1' is in phase 'rust-basic-write'; the Rust backend carries out apply only from phase 'rust-full')",
    );
    // a trip holds the node lower
    std::fs::create_dir_all(n.root.path("/state")).unwrap();
    std::fs::write(
        n.root.path("/state/trip.json"),
        r#"{"effective_phase":"perl-only"}"#,
    )
    .unwrap();
    let r = n.token("DELETE", &format!("{NET}/vmbr5"), "").await;
    assert_403(
        &r,
        "Permission check failed (node 'pve1' is in phase 'perl-only' (tripped from 'rust-basic-write'); the Rust backend carries out configuration writes only from phase 'rust-basic-write')",
    );
}
