//! A fake node root for the Rust backend: the files a Proxmox VE node has
//! where the backend looks for them (`--root`), real RSA keys for tickets,
//! and the backend running in-process on a port-0 listener.
//!
//! ```text
//! ROOT/etc/network/interfaces            the node's network file
//! ROOT/etc/pve/user.cfg                  root@pam and the token root@pam!ci
//! ROOT/etc/pve/priv/token.cfg            the token's secret (see [`TOKEN_SECRET`])
//! ROOT/etc/pve/authkey.pub               ticket key (and priv/authkey.key)
//! ROOT/etc/pve/priv/pve-www.key          CSRF secret
//! ROOT/usr/share/ifupdown2/              ifupdown2 "installed"
//! ROOT/usr/sbin/ifreload                 -V: a Proxmox version; otherwise the
//!                                        arguments are appended to ROOT/ifreload.calls
//!                                        and it exits with ROOT/ifreload.exit (default 0)
//! ROOT/links.json                        lo, eno1-eno4 up (`ip -details -json link show`)
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use pve_migration_certs::reload::CertSource;
use pve_network_rs::api::Backend;
use pve_network_rs::auth::ticket::{self, TicketSigner};
use pve_network_rs::links::LinkSource;
use pve_network_rs::paths::HostPaths;
use pve_network_rs::server::Server;
use pve_network_rs::worker::TaskSpawner;

/// The secret of `root@pam!ci` (the same as the simulators' [`crate::TOKEN`]).
pub const TOKEN_SECRET: &str = "00000000-0000-0000-0000-000000000000";

/// `user.cfg` of a fresh node root: root and its token `ci`.
pub const USER_CFG: &str = "user:root@pam:1:0:::root@example.invalid:::\ntoken:root@pam!ci:0:0::\n";

/// The link state of a fresh node: `lo` and four NICs, all up.
pub const LINKS: &str = r#"[
 {"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"link_type":"loopback"},
 {"ifindex":2,"ifname":"eno1","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"link_type":"ether"},
 {"ifindex":3,"ifname":"eno2","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"link_type":"ether"},
 {"ifindex":4,"ifname":"eno3","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"link_type":"ether"},
 {"ifindex":5,"ifname":"eno4","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"link_type":"ether"}
]
"#;

/// `ip -details -json link show` output for a kernel view.
pub fn links_json(state: &pve_network_core::HostState) -> String {
    let links: Vec<serde_json::Value> = state
        .links()
        .enumerate()
        .map(|(i, l)| {
            let mut flags = vec![if l.link_type == "loopback" {
                "LOOPBACK"
            } else {
                "BROADCAST"
            }];
            if l.up {
                flags.extend(["UP", "LOWER_UP"]);
            }
            let mut v = serde_json::json!({
                "ifindex": i + 1,
                "ifname": l.name,
                "flags": flags,
                "link_type": l.link_type,
            });
            if let Some(kind) = &l.kind {
                v["linkinfo"] = serde_json::json!({ "info_kind": kind });
            }
            v
        })
        .collect();
    serde_json::to_string_pretty(&links).expect("JSON") + "\n"
}

/// A PEM document of one DER object.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A fresh 2048-bit RSA key pair: (private key PEM, public key PEM).
pub fn rsa_key_pair() -> (String, String) {
    let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("RSA key");
    let private = kp.as_der().expect("PKCS#8");
    let public = kp.public_key().as_der().expect("SPKI");
    (
        pem("PRIVATE KEY", private.as_ref()),
        pem("PUBLIC KEY", public.as_ref()),
    )
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn set_mtime(path: &Path, secs: i64) {
    let t = UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(t))
        .expect("set mtime");
}

/// A node's files under a temporary root.
#[derive(Debug)]
pub struct NodeRoot {
    /// The root directory (`--root`).
    pub root: PathBuf,
    signer: TicketSigner,
    csrf_secret: String,
}

impl NodeRoot {
    /// Lays out a node root in `root` (created) with `interfaces` as
    /// `/etc/network/interfaces`.
    pub fn create(root: &Path, interfaces: &str) -> NodeRoot {
        let w = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, text).expect("write");
        };
        w("etc/network/interfaces", interfaces);
        w("etc/pve/user.cfg", USER_CFG);
        w(
            "etc/pve/priv/token.cfg",
            &format!("root@pam!ci {TOKEN_SECRET}\n"),
        );
        let (private, public) = rsa_key_pair();
        w("etc/pve/priv/authkey.key", &private);
        w("etc/pve/authkey.pub", &public);
        // an hour old, like a key in use (a key younger than a ticket limits it)
        set_mtime(&root.join("etc/pve/authkey.pub"), now() - 3600);
        let www = format!("www-key-{}\n", now());
        w("etc/pve/priv/pve-www.key", &www);
        w("usr/share/ifupdown2/__init__.py", "");
        let calls = root.join("ifreload.calls");
        let exit = root.join("ifreload.exit");
        w(
            "usr/sbin/ifreload",
            &format!(
                "#!/bin/sh\nif [ \"$1\" = -V ]; then echo 'ifupdown2:3.3.0-1+pmx9'; exit 0; fi\n\
                 echo \"ifreload $*\" >> '{}'\nif [ -f '{e}' ]; then exit $(cat '{e}'); fi\nexit 0\n",
                calls.display(),
                e = exit.display()
            ),
        );
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            root.join("usr/sbin/ifreload"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        w("links.json", LINKS);
        for d in ["var/log/pve/tasks", "var/lib/pve-network-rs/backups", "run"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        NodeRoot {
            root: root.to_path_buf(),
            signer: TicketSigner::from_pem(private.as_bytes()).expect("signer"),
            csrf_secret: ticket::csrf_secret(www.as_bytes()),
        }
    }

    /// Replaces `links.json` with the kernel view the simulator derives
    /// from `applied` (so the real backend and a simulator on the same file
    /// agree on `exists` and `active`).
    pub fn links_like_simulator(&self, applied: &str) {
        let state = pve_network_core::HostState::derived_from_file(applied, &[]);
        std::fs::write(self.path("/links.json"), links_json(&state)).expect("links.json");
    }

    /// A host path on this root.
    pub fn path(&self, host: &str) -> PathBuf {
        self.root.join(host.trim_start_matches('/'))
    }

    /// Replaces `/etc/pve/user.cfg`.
    pub fn write_user_cfg(&self, text: &str) {
        std::fs::write(self.path("/etc/pve/user.cfg"), text).expect("user.cfg");
    }

    /// Adds a token secret to `/etc/pve/priv/token.cfg`.
    pub fn add_token_secret(&self, tokenid: &str, secret: &str) {
        let p = self.path("/etc/pve/priv/token.cfg");
        let mut text = std::fs::read_to_string(&p).unwrap_or_default();
        text.push_str(&format!("{tokenid} {secret}\n"));
        std::fs::write(p, text).expect("token.cfg");
    }

    /// A ticket for `user` issued now with the node's key.
    pub fn ticket(&self, user: &str) -> String {
        self.ticket_at(user, now())
    }

    /// A ticket for `user` issued at `time`.
    pub fn ticket_at(&self, user: &str, time: i64) -> String {
        self.signer.ticket(user, time)
    }

    /// A CSRF token for `user` issued now.
    pub fn csrf(&self, user: &str) -> String {
        ticket::csrf_token(&self.csrf_secret, user, now())
    }

    /// The `Cookie` header value carrying `ticket`.
    pub fn cookie(ticket: &str) -> String {
        let escaped: String = ticket
            .chars()
            .map(|c| match c {
                ':' => "%3A".to_string(),
                '+' => "%2B".to_string(),
                '/' => "%2F".to_string(),
                '=' => "%3D".to_string(),
                c => c.to_string(),
            })
            .collect();
        format!("PVEAuthCookie={escaped}")
    }

    /// Rotates the ticket key `rotated_ago` seconds ago as PVE does: the old
    /// public key becomes `authkey.pub.old` (mtime = the rotation), a new
    /// pair takes its place. Returns a signer of the old key.
    pub fn rotate_key(&mut self, rotated_ago: i64) -> TicketSigner {
        let pub_path = self.path("/etc/pve/authkey.pub");
        let old_path = self.path("/etc/pve/authkey.pub.old");
        std::fs::rename(&pub_path, &old_path).expect("rotate");
        set_mtime(&old_path, now() - rotated_ago);
        let (private, public) = rsa_key_pair();
        std::fs::write(self.path("/etc/pve/priv/authkey.key"), &private).expect("key");
        std::fs::write(&pub_path, &public).expect("pub");
        set_mtime(&pub_path, now() - rotated_ago);
        std::mem::replace(
            &mut self.signer,
            TicketSigner::from_pem(private.as_bytes()).expect("signer"),
        )
    }

    /// The interfaces file and its pending copy.
    pub fn files(&self) -> (String, Option<String>) {
        (
            std::fs::read_to_string(self.path("/etc/network/interfaces")).unwrap_or_default(),
            std::fs::read_to_string(self.path("/etc/network/interfaces.new")).ok(),
        )
    }

    /// Every file below the root with its content, for "nothing changed"
    /// assertions.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        fn walk(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
            let mut entries: Vec<_> = std::fs::read_dir(dir)
                .map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect())
                .unwrap_or_default();
            entries.sort();
            for p in entries {
                if p.is_dir() {
                    walk(&p, out);
                } else {
                    let bytes = std::fs::read(&p).unwrap_or_default();
                    out.push((p, bytes));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &mut out);
        out
    }
}

/// The daemon binary (built next to the test binaries), which runs apply
/// workers.
pub fn daemon_exe() -> PathBuf {
    workspace_exe("pve-network-rs-daemon", "pve-network-rs")
}

/// A binary of the workspace, built next to the test binaries (`cargo test
/// --workspace` builds every package's binaries).
pub fn workspace_exe(name: &str, package: &str) -> PathBuf {
    let me = std::env::current_exe().expect("test binary");
    let dir = me.parent().and_then(Path::parent).expect("target dir");
    let exe = dir.join(name);
    assert!(
        exe.exists(),
        "{} is missing: build it with `cargo build -p {package}` (cargo test --workspace does)",
        exe.display()
    );
    exe
}

/// The Rust backend serving a [`NodeRoot`] in-process.
#[derive(Debug)]
pub struct RustBackend {
    server: Option<Server>,
    addr: std::net::SocketAddr,
}

impl RustBackend {
    /// Starts `pve-network-rs` for `node` on `root` with the certificate
    /// files, listening on a fresh loopback port; links from
    /// `ROOT/links.json`.
    pub async fn start(root: &NodeRoot, node: &str, cert: (&Path, &Path)) -> RustBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let paths = HostPaths::new(&root.root);
        let links = LinkSource::File(root.path("/links.json"));
        let tasks = TaskSpawner::new(daemon_exe(), paths.clone(), links.clone());
        let backend = Arc::new(Backend::new(node, paths, links, tasks));
        let server = Server::start(
            listener,
            CertSource::Files {
                cert: cert.0.to_path_buf(),
                key: cert.1.to_path_buf(),
            },
            backend,
        )
        .expect("start pve-network-rs");
        let addr = server.local_addr();
        RustBackend {
            server: Some(server),
            addr,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// `https://ADDR`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Stops it (its port then refuses connections).
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_secs(5)).await;
        }
    }
}
