//! The daemon's real apply path — `PUT /nodes/{node}/network`, the task
//! worker, the real `ifreload -a` of Debian's ifupdown2 — in a network and
//! mount namespace of its own (`unshare -n -m`), with `/etc/network` and
//! `/run/network` bind-mounted from a temporary directory. The kernel here
//! cannot create bridges, bonds or VLANs, but an address on `lo` can be
//! configured and read back (`ip -j addr`, `ifquery -a -c`).
//!
//! Needs root, `unshare`, ifupdown2 and curl (`.ci/run` installs them and
//! sets `PVE_NETWORK_RS_NETNS_TEST=require`, so CI fails instead of
//! skipping). Debian's ifupdown2 is not a Proxmox build, which PVE's version
//! check refuses: the root's `ifreload` answers `-V` with the installed
//! version marked as a Proxmox build and runs the real program otherwise.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use pve_migration_certs::testca::TestCa;
use pve_migration_tests::node::{NodeRoot, TOKEN_SECRET, daemon_exe};
use pve_migration_tests::{run_bounded, wait_bounded};

const ADDRESS: &str = "198.51.100.7";

fn missing_prerequisite() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("not root".into());
    }
    for tool in [
        "/usr/bin/unshare",
        "/usr/sbin/ifreload",
        "/usr/sbin/ifquery",
        "/usr/bin/curl",
    ] {
        if !std::path::Path::new(tool).exists() {
            return Some(format!("{tool} is missing"));
        }
    }
    if !std::path::Path::new("/etc/network/ifupdown2/ifupdown2.conf").exists() {
        return Some("ifupdown2's configuration is missing".into());
    }
    None
}

#[test]
fn apply_runs_the_real_ifreload_in_a_namespace() {
    if let Some(why) = missing_prerequisite() {
        if std::env::var("PVE_NETWORK_RS_NETNS_TEST").as_deref() == Ok("require") {
            panic!("the namespace test cannot run: {why}");
        }
        eprintln!("skipped: {why} (set PVE_NETWORK_RS_NETNS_TEST=require to make this fatal)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = TestCa::new("netns test CA").expect("CA");
    ca.write_cert(&d.join("ca.pem")).expect("CA file");
    ca.issue(&["localhost", "127.0.0.1"])
        .expect("leaf")
        .write(&d.join("node.pem"), &d.join("node.key"))
        .expect("leaf files");
    let node = NodeRoot::create(&d.join("root"), "auto lo\niface lo inet loopback\n");
    let root = &node.root;
    // ifupdown2's own configuration lives below /etc/network, which the
    // namespace replaces
    let status = Command::new("cp")
        .args(["-r", "/etc/network/ifupdown2"])
        .arg(root.join("etc/network/"))
        .status()
        .expect("cp");
    assert!(status.success());
    let version = run_bounded(Command::new("/usr/sbin/ifreload").arg("-V"));
    // "ifupdown2:3.0.0-1.1" → "ifupdown2:3.0.0-1+pmx": the same release,
    // the Debian revision replaced by one PVE's check accepts
    let version = String::from_utf8_lossy(&version.stdout).trim().to_string();
    let upstream = version.split('-').next().unwrap_or(&version).to_string();
    let version = format!("{upstream}-1+pmx");
    std::fs::write(
        root.join("usr/sbin/ifreload"),
        format!("#!/bin/sh\nif [ \"$1\" = -V ]; then echo '{version}'; exit 0; fi\nexec /usr/sbin/ifreload \"$@\"\n"),
    )
    .expect("ifreload wrapper");
    // the pending change: an address on lo
    let pending = format!("auto lo\niface lo inet loopback\n\taddress {ADDRESS}/32\n");
    std::fs::write(root.join("etc/network/interfaces.new"), &pending).expect("interfaces.new");
    std::fs::create_dir_all(d.join("run-network")).expect("run/network");

    let script = format!(
        r#"set -e
mkdir -p /run/network
mount --bind '{root}/etc/network' /etc/network
mount --bind '{run}' /run/network
ip link set lo up
'{daemon}' --root '{root}' --node pve --listen 127.0.0.1:8016 --tls-cert '{d}/node.pem' --tls-key '{d}/node.key' &
pid=$!
read go
curl -s --cacert '{d}/ca.pem' -H 'Authorization: PVEAPIToken=root@pam!ci={secret}' \
     -X PUT https://127.0.0.1:8016/api2/json/nodes/pve/network -o '{d}/apply.json' -w '%{{http_code}}' > '{d}/apply.status'
ip -j addr show dev lo > '{d}/ip.json'
set +e
ifquery -a -c > '{d}/ifquery.txt' 2>&1
echo $? > '{d}/ifquery.rc'
kill $pid
wait $pid
exit 0
"#,
        root = root.display(),
        run = d.join("run-network").display(),
        daemon = daemon_exe().display(),
        d = d.display(),
        secret = TOKEN_SECRET,
    );
    let mut child = Command::new("timeout")
        .args([
            "120",
            "unshare",
            "-n",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
        ])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare");
    // the daemon logs to stderr: wait for it to listen, keep draining after
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("netns: {line}");
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains("listening") => break,
            Ok(_) => continue,
            Err(e) => {
                let _ = child.kill();
                panic!("the daemon did not start in the namespace: {e}");
            }
        }
    }
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"go\n")
        .expect("go");
    let status = wait_bounded(child, "the namespace script").status;
    assert!(status.success(), "namespace script: {status}");

    let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
    assert_eq!(read("apply.status"), "200", "{}", read("apply.json"));
    let upid =
        serde_json::from_str::<serde_json::Value>(&read("apply.json")).expect("JSON")["data"]
            .as_str()
            .expect("a UPID")
            .to_string();
    let u = pve_network_rs::task::Upid::decode(&upid).expect("UPID");
    let log =
        std::fs::read_to_string(u.log_path(&node.path("/var/log/pve/tasks"))).expect("task log");
    assert!(log.ends_with("TASK OK\n"), "{log}");
    assert_eq!(node.files(), (pending, None), "applied");

    let ip: serde_json::Value = serde_json::from_str(&read("ip.json")).expect("ip -j");
    let addrs: Vec<String> = ip[0]["addr_info"]
        .as_array()
        .expect("addr_info")
        .iter()
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
        .collect();
    assert!(addrs.contains(&format!("{ADDRESS}/32")), "{addrs:?}");
    let ifquery = read("ifquery.txt");
    assert_eq!(read("ifquery.rc").trim(), "0", "{ifquery}");
    assert!(
        ifquery
            .lines()
            .any(|l| l.contains(&format!("address {ADDRESS}/32")) && l.ends_with("[pass]")),
        "{ifquery}"
    );
    let backups = std::fs::read_dir(node.path("/var/lib/pve-network-rs/backups"))
        .expect("backups")
        .count();
    assert_eq!(backups, 1);
}
