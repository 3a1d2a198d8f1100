//! Routing: every migrated method is covered, everything else is not.

use pve_migration_rules::{ApiFormat, EndpointClass, RuleSet};

/// `(method, path below /api2/{format}, endpoint id, class, expected params)`.
type Row = (
    &'static str,
    &'static str,
    &'static str,
    EndpointClass,
    &'static [(&'static str, &'static str)],
);

const TABLE: &[Row] = {
    use EndpointClass::{Apply as A, Read as R, Write as W};
    &[
        (
            "GET",
            "/nodes/pve1/network",
            "node.network.list",
            R,
            &[("node", "pve1")],
        ),
        (
            "POST",
            "/nodes/pve1/network",
            "node.network.create",
            W,
            &[("node", "pve1")],
        ),
        (
            "PUT",
            "/nodes/pve1/network",
            "node.network.reload",
            A,
            &[("node", "pve1")],
        ),
        (
            "DELETE",
            "/nodes/pve1/network",
            "node.network.revert",
            W,
            &[("node", "pve1")],
        ),
        (
            "GET",
            "/nodes/pve1/network/vmbr0",
            "node.network.iface.get",
            R,
            &[("node", "pve1"), ("iface", "vmbr0")],
        ),
        (
            "PUT",
            "/nodes/pve1/network/vmbr0",
            "node.network.iface.update",
            W,
            &[("iface", "vmbr0")],
        ),
        (
            "DELETE",
            "/nodes/pve1/network/bond0.100",
            "node.network.iface.delete",
            W,
            &[("iface", "bond0.100")],
        ),
        ("GET", "/cluster/sdn", "sdn.index", R, &[]),
        ("PUT", "/cluster/sdn", "sdn.apply", A, &[]),
        ("GET", "/cluster/sdn/zones", "sdn.zones.list", R, &[]),
        ("POST", "/cluster/sdn/zones", "sdn.zones.create", W, &[]),
        (
            "GET",
            "/cluster/sdn/zones/zone1",
            "sdn.zones.zone.get",
            R,
            &[("zone", "zone1")],
        ),
        (
            "PUT",
            "/cluster/sdn/zones/zone1",
            "sdn.zones.zone.update",
            W,
            &[("zone", "zone1")],
        ),
        (
            "DELETE",
            "/cluster/sdn/zones/zone1",
            "sdn.zones.zone.delete",
            W,
            &[("zone", "zone1")],
        ),
        ("GET", "/cluster/sdn/vnets", "sdn.vnets.list", R, &[]),
        ("POST", "/cluster/sdn/vnets", "sdn.vnets.create", W, &[]),
        (
            "GET",
            "/cluster/sdn/vnets/vnet1",
            "sdn.vnets.vnet.get",
            R,
            &[("vnet", "vnet1")],
        ),
        (
            "PUT",
            "/cluster/sdn/vnets/vnet1",
            "sdn.vnets.vnet.update",
            W,
            &[],
        ),
        (
            "DELETE",
            "/cluster/sdn/vnets/vnet1",
            "sdn.vnets.vnet.delete",
            W,
            &[],
        ),
        (
            "GET",
            "/cluster/sdn/vnets/vnet1/subnets",
            "sdn.vnets.subnets.list",
            R,
            &[("vnet", "vnet1")],
        ),
        (
            "POST",
            "/cluster/sdn/vnets/vnet1/subnets",
            "sdn.vnets.subnets.create",
            W,
            &[("vnet", "vnet1")],
        ),
        (
            "GET",
            "/cluster/sdn/vnets/vnet1/subnets/zone1-10.0.0.0-24",
            "sdn.vnets.subnets.subnet.get",
            R,
            &[("vnet", "vnet1"), ("subnet", "zone1-10.0.0.0-24")],
        ),
        (
            "PUT",
            "/cluster/sdn/vnets/vnet1/subnets/s1",
            "sdn.vnets.subnets.subnet.update",
            W,
            &[],
        ),
        (
            "DELETE",
            "/cluster/sdn/vnets/vnet1/subnets/s1",
            "sdn.vnets.subnets.subnet.delete",
            W,
            &[],
        ),
        (
            "GET",
            "/cluster/sdn/controllers",
            "sdn.controllers.list",
            R,
            &[],
        ),
        (
            "POST",
            "/cluster/sdn/controllers",
            "sdn.controllers.create",
            W,
            &[],
        ),
        (
            "GET",
            "/cluster/sdn/controllers/evpn1",
            "sdn.controllers.controller.get",
            R,
            &[("controller", "evpn1")],
        ),
        (
            "PUT",
            "/cluster/sdn/controllers/evpn1",
            "sdn.controllers.controller.update",
            W,
            &[],
        ),
        (
            "DELETE",
            "/cluster/sdn/controllers/evpn1",
            "sdn.controllers.controller.delete",
            W,
            &[],
        ),
        ("GET", "/cluster/sdn/ipams", "sdn.ipams.list", R, &[]),
        ("POST", "/cluster/sdn/ipams", "sdn.ipams.create", W, &[]),
        (
            "GET",
            "/cluster/sdn/ipams/pve",
            "sdn.ipams.ipam.get",
            R,
            &[("ipam", "pve")],
        ),
        (
            "PUT",
            "/cluster/sdn/ipams/pve",
            "sdn.ipams.ipam.update",
            W,
            &[],
        ),
        (
            "DELETE",
            "/cluster/sdn/ipams/pve",
            "sdn.ipams.ipam.delete",
            W,
            &[],
        ),
        ("GET", "/cluster/sdn/dns", "sdn.dns.list", R, &[]),
        ("POST", "/cluster/sdn/dns", "sdn.dns.create", W, &[]),
        (
            "GET",
            "/cluster/sdn/dns/pdns1",
            "sdn.dns.dns.get",
            R,
            &[("dns", "pdns1")],
        ),
        (
            "PUT",
            "/cluster/sdn/dns/pdns1",
            "sdn.dns.dns.update",
            W,
            &[],
        ),
        (
            "DELETE",
            "/cluster/sdn/dns/pdns1",
            "sdn.dns.dns.delete",
            W,
            &[],
        ),
        ("POST", "/cluster/sdn/lock", "sdn.lock.acquire", W, &[]),
        ("DELETE", "/cluster/sdn/lock", "sdn.lock.release", W, &[]),
        ("POST", "/cluster/sdn/rollback", "sdn.rollback", W, &[]),
        ("GET", "/cluster/sdn/dry-run", "sdn.dry-run", R, &[]),
    ]
};

#[test]
fn every_default_route() {
    let rules = RuleSet::with_defaults();
    for (method, path, id, class, params) in TABLE {
        for format in ["json", "extjs"] {
            let full = format!("/api2/{format}{path}");
            let m = rules
                .route(method, &full)
                .unwrap_or_else(|| panic!("{method} {full} not routed"));
            assert_eq!(m.endpoint().id(), *id, "{method} {full}");
            assert_eq!(m.endpoint().class(), *class, "{method} {full}");
            assert_eq!(m.format().as_str(), format);
            for (name, value) in *params {
                assert_eq!(m.param(name), Some(*value), "{method} {full} {name}");
            }
        }
    }
    // Every enabled default endpoint appears in the table.
    for ep in rules.endpoints() {
        assert!(
            TABLE.iter().any(|(_, _, id, _, _)| *id == ep.id()),
            "{} not covered by the table",
            ep.id()
        );
    }
}

#[test]
fn pveproxy_path_handling() {
    let rules = RuleSet::with_defaults();
    let id = |m: &str, p: &str| rules.route(m, p).map(|r| r.endpoint().id().to_owned());
    let list = Some("node.network.list".to_owned());
    assert_eq!(id("GET", "/api2/json/nodes/pve1/network/"), list);
    assert_eq!(id("GET", "/api2/json//nodes/pve1//network"), list);
    assert_eq!(id("GET", "/api2/json/nodes/pve1/network?type=bridge"), list);
    assert_eq!(id("GET", "/api2/extjs/nodes/pve1/network/"), list);

    let m = rules
        .route("GET", "/api2/json/nodes/pve%2D1/network/vmbr0%2E5")
        .unwrap();
    assert_eq!(m.param("node"), Some("pve%2D1"));
    assert_eq!(m.param("iface"), Some("vmbr0%2E5"));
    assert_eq!(m.format(), ApiFormat::Json);
    assert_eq!(m.params().len(), 2);
    assert_eq!(m.param("nope"), None);
}

#[test]
fn not_migrated() {
    let rules = RuleSet::with_defaults();
    for (method, path) in [
        ("GET", "/api2/htmljs/nodes/pve1/network"),
        ("GET", "/api2/png/nodes/pve1/network"),
        ("GET", "/api2/nodes/pve1/network"),
        ("GET", "/nodes/pve1/network"),
        ("GET", "/api3/json/nodes/pve1/network"),
        ("HEAD", "/api2/json/nodes/pve1/network"),
        ("get", "/api2/json/nodes/pve1/network"),
        ("PATCH", "/api2/json/nodes/pve1/network"),
        ("GET", "/api2/json/nodes/pve1/network/vmbr0/extra"),
        ("POST", "/api2/json/nodes/pve1/network/vmbr0"),
        ("GET", "/api2/json/nodes/pve1/status"),
        ("GET", "/api2/json/nodes/pve1"),
        ("GET", "/api2/json/nodes"),
        ("GET", "/api2/json"),
        ("GET", "/api2/json/"),
        ("GET", ""),
        ("GET", "/"),
        ("GET", "/api2/json/cluster/sdn/zones/z1/extra"),
        ("GET", "/api2/json/cluster/sdn/lock"),
        ("PUT", "/api2/json/cluster/sdn/rollback"),
        ("POST", "/api2/json/cluster/sdn/dry-run"),
        ("GET", "/api2/json/cluster/sdn/fabrics"),
        ("GET", "/api2/json/cluster/status"),
        ("GET", "/api2/json/access/ticket"),
    ] {
        assert!(
            rules.route(method, path).is_none(),
            "{method} {path} routed"
        );
    }
    let long = format!("/api2/json{}", "/x".repeat(100));
    assert!(rules.route("GET", &long).is_none());
}

#[test]
fn operator_layers_override_disable_and_add() {
    let site = r#"
[[endpoint]]
id = "node.network.list"
ignore = ["/data/*/comments"]

[[endpoint]]
id = "sdn.dry-run"
enabled = false

[[endpoint]]
id = "site.node.network.type"
method = "GET"
path = "/api2/{format}/nodes/{node}/network-types/{kind}"
class = "read"
"#;
    let rules = RuleSet::load(&[("site.toml", site)]).unwrap();
    let list = rules.endpoint("node.network.list").unwrap();
    assert_eq!(list.ignore().len(), 1);
    // Keys not mentioned are inherited from the defaults.
    assert_eq!(list.sort_rules().len(), 3);
    assert!(list.perl_scalars());
    assert_eq!(list.source(), "site.toml");

    assert!(
        rules
            .route("GET", "/api2/json/cluster/sdn/dry-run")
            .is_none()
    );
    assert!(!rules.endpoint("sdn.dry-run").unwrap().enabled());

    let m = rules
        .route("GET", "/api2/json/nodes/n1/network-types/bridge")
        .unwrap();
    assert_eq!(m.endpoint().id(), "site.node.network.type");
    assert_eq!(m.endpoint().path(), "/nodes/{node}/network-types/{kind}");
    assert_eq!(m.param("kind"), Some("bridge"));
    // New endpoints get the built-in settings, not another file's [defaults].
    assert!(!m.endpoint().perl_scalars());
    assert_eq!(m.endpoint().headers(), ["content-type"]);
}

#[test]
fn file_defaults_apply_to_that_files_new_endpoints() {
    let site = r#"
[defaults]
headers = ["Content-Type", "Cache-Control"]
perl_scalars = true
flags = ["enabled"]

[[endpoint]]
id = "site.a"
method = "GET"
path = "/site/a"
class = "read"

[[endpoint]]
id = "site.b"
method = "GET"
path = "/site/b"
class = "read"
perl_scalars = false
"#;
    let rules = RuleSet::load_without_defaults(&[("site.toml", site)]).unwrap();
    assert!(rules.route("GET", "/api2/json/nodes/x/network").is_none());
    let a = rules.endpoint("site.a").unwrap();
    assert_eq!(a.headers(), ["content-type", "cache-control"]);
    assert!(a.perl_scalars());
    assert_eq!(a.flags().collect::<Vec<_>>(), ["enabled"]);
    assert!(!rules.endpoint("site.b").unwrap().perl_scalars());
}

#[test]
fn from_paths_reads_files() {
    let dir = std::env::temp_dir().join(format!("pve-rules-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("site.toml");
    std::fs::write(
        &file,
        "[[endpoint]]\nid = \"node.network.list\"\nignore = [\"/data/*/comments\"]\n",
    )
    .unwrap();
    let rules = RuleSet::from_paths(&[&file]).unwrap();
    assert_eq!(
        rules.endpoint("node.network.list").unwrap().ignore().len(),
        1
    );
    std::fs::write(
        &file,
        "[[endpoint]]\nid = \"node.network.list\"\nsortby = 1\n",
    )
    .unwrap();
    let err = RuleSet::from_paths(&[&file]).unwrap_err().to_string();
    assert!(
        err.contains("site.toml: endpoint \"node.network.list\": unknown key \"sortby\""),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
