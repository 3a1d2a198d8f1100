//! The backend's cost per request on a 200-interface node (the layout of
//! PVE's own performance fixture: 100 NICs, 20 LACP bonds, 40 bridges, 40
//! VLANs, generated here), links from a file:
//!
//! * `core_*`: the network model alone (parse, validate, write, render);
//! * `handler_*`: a whole request through [`Backend::handle`] — credentials,
//!   files read from disk, the lock for writes, the answer rendered — but no
//!   TLS or HTTP;
//! * `https_*`: one request over a kept-alive HTTPS connection to the
//!   running server, client included.
//!
//! `cargo bench -p pve-network-rs` (targets: GET ≤ 0.5 ms and create ≤ 1 ms
//! per handler call; see docs/backend.md for the figures measured).

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use divan::{Bencher, black_box};
use http_body_util::{BodyExt, Full};
use pve_migration_certs::reload::CertSource;
use pve_migration_certs::testca::TestCa;
use pve_network_core::{
    FileTime, Format, Host, HostState, MutateOptions, NetworkFiles, Params, api, wire,
};
use pve_network_rs::api::{Backend, Request};
use pve_network_rs::links::LinkSource;
use pve_network_rs::paths::HostPaths;
use pve_network_rs::server::Server;
use pve_network_rs::worker::TaskSpawner;

// the daemon's allocator
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    divan::main();
}

const TOKEN: &str = "PVEAPIToken=root@pam!bench=00000000-0000-0000-0000-000000000000";

/// The 200-interface file (plus lo) laid out like PVE's perf fixture.
fn interfaces_200() -> String {
    let mut o: Vec<String> = vec![
        "auto lo".into(),
        "iface lo inet loopback".into(),
        String::new(),
    ];
    for n in 1..=100 {
        o.push(format!("iface eno{n} inet manual"));
        o.push(String::new());
    }
    for b in 0..20 {
        let (s1, s2) = (5 + 2 * b, 6 + 2 * b);
        o.extend([
            format!("auto bond{b}"),
            format!("iface bond{b} inet manual"),
            format!("\tbond-slaves eno{s1} eno{s2}"),
            "\tbond-miimon 100".into(),
            "\tbond-mode 802.3ad".into(),
            "\tbond-xmit-hash-policy layer3+4".into(),
            "\tmtu 9000".into(),
            String::new(),
        ]);
    }
    for n in 0..40 {
        let ports = match n {
            0 => "eno1".to_string(),
            1..=20 => format!("bond{}", n - 1),
            21..=23 => format!("eno{}", n - 19),
            _ => "none".to_string(),
        };
        o.push(format!("auto vmbr{n}"));
        o.push(format!("iface vmbr{n} inet static"));
        if n == 0 {
            o.extend([
                "\taddress 192.0.2.10/24".into(),
                "\tgateway 192.0.2.1".into(),
            ]);
        } else {
            o.push(format!("\taddress 10.{n}.0.1/24"));
        }
        o.extend([
            format!("\tbridge-ports {ports}"),
            "\tbridge-stp off".into(),
            "\tbridge-fd 0".into(),
        ]);
        if n == 1 {
            o.extend([
                "\tbridge-vlan-aware yes".into(),
                "\tbridge-vids 2-4094".into(),
            ]);
        }
        if (1..=20).contains(&n) {
            o.push("\tmtu 9000".into());
        }
        o.push(format!("#bridge {n}"));
        o.push(String::new());
    }
    for v in 10..50 {
        o.extend([
            format!("auto vmbr1.{v}"),
            format!("iface vmbr1.{v} inet static"),
            format!("\taddress 172.16.{v}.2/24"),
            format!("#vlan {v}"),
            String::new(),
        ]);
    }
    o.push("source /etc/network/interfaces.d/*".into());
    o.join("\n") + "\n"
}

const LINKS: &str = r#"[{"ifname":"lo","link_type":"loopback","flags":["LOOPBACK","UP"]},
 {"ifname":"eno1","link_type":"ether","flags":["UP"]},{"ifname":"eno2","link_type":"ether","flags":["UP"]},
 {"ifname":"eno3","link_type":"ether","flags":["UP"]},{"ifname":"eno4","link_type":"ether","flags":["UP"]},
 {"ifname":"vmbr0","link_type":"ether","flags":["UP"],"linkinfo":{"info_kind":"bridge"}}]"#;

struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    backend: Arc<Backend>,
    ca: TestCa,
    cert: (PathBuf, PathBuf),
}

static NODE: LazyLock<Node> = LazyLock::new(|| {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let w = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w("etc/network/interfaces", &interfaces_200());
    w(
        "etc/pve/user.cfg",
        "user:root@pam:1:0:::\ntoken:root@pam!bench:0:0::\n",
    );
    w(
        "etc/pve/priv/token.cfg",
        "root@pam!bench 00000000-0000-0000-0000-000000000000\n",
    );
    w("usr/share/ifupdown2/ifupdown2", "");
    w("links.json", LINKS);
    let paths = HostPaths::new(&root);
    let links = LinkSource::File(root.join("links.json"));
    let tasks = TaskSpawner::new("/nonexistent", paths.clone(), links.clone());
    let backend = Arc::new(Backend::new("pve", paths, links, tasks));
    let ca = TestCa::new("bench CA").unwrap();
    let cert = (dir.path().join("c.pem"), dir.path().join("c.key"));
    ca.issue(&["localhost", "127.0.0.1"])
        .unwrap()
        .write(&cert.0, &cert.1)
        .unwrap();
    Node {
        _dir: dir,
        root,
        backend,
        ca,
        cert,
    }
});

static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
});

fn request(method: &str, path: &str, form: &str) -> Request {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::AUTHORIZATION, TOKEN.parse().unwrap());
    if !form.is_empty() {
        headers.insert(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
    }
    Request {
        method: method.parse().unwrap(),
        path: path.into(),
        query: None,
        headers,
        body: Some(Bytes::from(form.to_owned())),
    }
}

fn host() -> Host {
    Host::new("pve", HostState::from_ip_json(LINKS).unwrap())
}

fn files() -> NetworkFiles {
    NetworkFiles::new(interfaces_200(), FileTime::from_secs(1_700_000_000))
}

#[divan::bench]
fn core_list(b: Bencher<'_, '_>) {
    let (files, host) = (files(), host());
    b.bench(|| {
        let out = api::list(black_box(&files), &host, &Params::new()).unwrap();
        let body = wire::success(Format::Json, &out).body;
        assert!(body.len() > 20_000);
        body
    });
}

fn create_params() -> Params {
    [
        ("iface", "vmbr99"),
        ("type", "bridge"),
        ("bridge_ports", "eno100"),
        ("cidr", "10.99.0.1/24"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Parse, validate and write the new file, in memory.
#[divan::bench]
fn core_create(b: Bencher<'_, '_>) {
    let (files, host, params) = (files(), host(), create_params());
    b.bench(|| api::create(black_box(&files), &host, &params, MutateOptions::default()).unwrap());
}

/// The same with the parse cached, as the daemon has it: validation and
/// writing only.
#[divan::bench]
fn core_create_cached(b: Bencher<'_, '_>) {
    let (host, params) = (host(), create_params());
    let files = files().with_parsed(&host);
    b.bench(|| api::create(black_box(&files), &host, &params, MutateOptions::default()).unwrap());
}

#[divan::bench]
fn handler_get_list(b: Bencher<'_, '_>) {
    let node = &*NODE;
    b.bench(|| {
        let r = RT.block_on(node.backend.handle(request(
            "GET",
            "/api2/json/nodes/pve/network",
            "",
        )));
        assert_eq!(r.status, 200);
        r
    });
}

#[divan::bench]
fn handler_get_one(b: Bencher<'_, '_>) {
    let node = &*NODE;
    b.bench(|| {
        let r = RT.block_on(node.backend.handle(request(
            "GET",
            "/api2/json/nodes/pve/network/vmbr1",
            "",
        )));
        assert_eq!(r.status, 200);
        r
    });
}

/// A real create (lock, read, validate, write `interfaces.new` with fsync);
/// the pending file is removed between iterations, outside the timing.
#[divan::bench]
fn handler_create(b: Bencher<'_, '_>) {
    let node = &*NODE;
    let pending = node.root.join("etc/network/interfaces.new");
    b.with_inputs(|| {
        let _ = std::fs::remove_file(&pending);
        request(
            "POST",
            "/api2/json/nodes/pve/network",
            "iface=vmbr99&type=bridge&bridge_ports=eno100&cidr=10.99.0.1/24",
        )
    })
    .bench_local_values(|req| {
        let r = RT.block_on(node.backend.handle(req));
        assert_eq!(r.status, 200, "{}", r.reason);
        r
    });
    let _ = std::fs::remove_file(&pending);
}

type Client = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(addr: std::net::SocketAddr, ca: &TestCa) -> Client {
    let mut roots = rustls::RootCertStore::empty();
    for c in
        pve_migration_certs::pem::parse_chain(Path::new("ca"), ca.cert_pem().as_bytes()).unwrap()
    {
        roots.add(c).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(pve_migration_certs::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").unwrap(),
            tcp,
        )
        .await
        .unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

#[divan::bench]
fn https_get_list(b: Bencher<'_, '_>) {
    let node = &*NODE;
    let (server, mut client) = RT.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::start(
            listener,
            CertSource::Files {
                cert: node.cert.0.clone(),
                key: node.cert.1.clone(),
            },
            node.backend.clone(),
        )
        .unwrap();
        let client = connect(server.local_addr(), &node.ca).await;
        (server, client)
    });
    b.bench_local(|| {
        RT.block_on(async {
            let req = http::Request::get("/api2/json/nodes/pve/network")
                .header("host", "localhost")
                .header("authorization", TOKEN)
                .body(Full::new(Bytes::new()))
                .unwrap();
            client.ready().await.unwrap();
            let resp = client.send_request(req).await.unwrap();
            assert_eq!(resp.status(), 200);
            resp.into_body().collect().await.unwrap().to_bytes().len()
        })
    });
    drop(server);
}
