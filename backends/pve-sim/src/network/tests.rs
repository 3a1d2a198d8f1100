//! Unit tests of the API operations, in both flavours.

use serde_json::{Value as J, json};

use super::api::*;
use super::write::HEADER;
use super::*;

const T0: FileTime = FileTime {
    secs: 1_700_000_000,
    nanos: 0,
};
const T1: FileTime = FileTime {
    secs: 1_700_000_060,
    nanos: 0,
};

fn base() -> String {
    format!(
        "{HEADER}auto lo\niface lo inet loopback\n\n\
         iface eno1 inet manual\n\tmtu 9000\n\n\
         iface eno2 inet manual\n\n\
         iface eno3 inet manual\n\n\
         auto vmbr0\niface vmbr0 inet static\n\taddress 192.168.1.10/24\n\tgateway 192.168.1.1\n\
         \tbridge-ports eno1\n\tbridge-stp off\n\tbridge-fd 0\n\n\
         source /etc/network/interfaces.d/*\n"
    )
}

/// A PVE-written file with an OVS bridge (and no source lines).
fn ovs_base() -> String {
    format!(
        "{HEADER}auto lo\niface lo inet loopback\n\n\
         iface eno1 inet manual\n\tmtu 9000\n\n\
         iface eno2 inet manual\n\n\
         auto eno3\niface eno3 inet manual\n\tovs_type OVSPort\n\tovs_bridge vmbr5\n\n\
         auto vmbr0\niface vmbr0 inet static\n\taddress 192.168.1.10/24\n\tgateway 192.168.1.1\n\
         \tbridge-ports eno1\n\tbridge-stp off\n\tbridge-fd 0\n\n\
         auto vmbr5\niface vmbr5 inet manual\n\tovs_type OVSBridge\n\tovs_ports eno3\n\n"
    )
}

const VMBR1: &str = "auto vmbr1\niface vmbr1 inet static\n\taddress 10.0.0.1/24\n\
                     \tbridge-ports eno2\n\tbridge-stp off\n\tbridge-fd 0\n\n";

fn files() -> NetworkFiles {
    NetworkFiles::new(base(), T0)
}

fn host() -> Host {
    Host::simulated()
}

fn p(kv: &[(&str, &str)]) -> Params {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn real() -> MutateOptions {
    MutateOptions::default()
}

fn body(outcome: &Outcome, flavour: &Flavour) -> J {
    serde_json::from_str(&outcome.render(flavour)).expect("valid JSON")
}

fn entry<'a>(list: &'a J, iface: &str) -> &'a J {
    list["data"]
        .as_array()
        .expect("array")
        .iter()
        .find(|e| e["iface"] == iface)
        .unwrap_or_else(|| panic!("{iface} not listed"))
}

fn written(outcome: &Outcome) -> &str {
    match &outcome.effect {
        Some(FileEffect::WritePending(t)) => t,
        other => panic!("expected a pending write, got {other:?}"),
    }
}

fn param_err(err: &ApiError, key: &str) -> String {
    assert_eq!(err.status, 400, "{err:?}");
    assert_eq!(err.message, "Parameter verification failed.");
    err.errors
        .get(key)
        .unwrap_or_else(|| panic!("no error for {key}: {err:?}"))
        .clone()
}

fn created() -> NetworkFiles {
    let mut f = files();
    let out = create(
        &f,
        &host(),
        &p(&[
            ("iface", "vmbr1"),
            ("type", "bridge"),
            ("cidr", "10.0.0.1/24"),
            ("bridge_ports", "eno2"),
            ("autostart", "1"),
        ]),
        real(),
    )
    .unwrap();
    assert!(f.commit(&out, T1));
    f
}

#[test]
fn base_files_are_pve_written() {
    for text in [base(), ovs_base()] {
        let f = NetworkFiles::new(text.clone(), T0);
        let written = write_interfaces(&f.read(&host()), &WriteOptions::default()).unwrap();
        assert_eq!(written, text);
    }
}

// ---------------------------------------------------------------------------
// list

#[test]
fn list_perl_flavour() {
    let out = list(&files(), &host(), &Params::new()).unwrap();
    assert_eq!(out.changes, None);
    assert_eq!(out.effect, None);
    let b = body(&out, &Flavour::perl(42));
    assert!(b.get("changes").is_none());
    let names: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["iface"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4);
    assert!(!names.contains(&"lo"), "the loopback is hidden");

    let br = entry(&b, "vmbr0");
    assert_eq!(br["bridge_fd"], "0");
    assert_eq!(br["netmask"], "24");
    assert_eq!(br["active"], 1);
    assert_eq!(br["autostart"], 1);
    assert_eq!(br["priority"], 6);
    assert_eq!(br["families"], json!(["inet"]));
    assert_eq!(br["cidr"], "192.168.1.10/24");
    assert_eq!(br["method"], "static");
    assert_eq!(br["method6"], "manual");
    assert_eq!(br["type"], "bridge");
    assert!(br.get("exists").is_none());

    let eno1 = entry(&b, "eno1");
    assert_eq!(eno1["mtu"], "9000");
    assert_eq!(eno1["exists"], 1);
    assert!(eno1.get("active").is_none(), "flags are absent when false");
    assert!(eno1.get("autostart").is_none());
}

#[test]
fn list_perl_order_is_seeded() {
    let out = list(&files(), &host(), &Params::new()).unwrap();
    assert_eq!(out.render(&Flavour::perl(7)), out.render(&Flavour::perl(7)));
    let orders: std::collections::BTreeSet<String> = (0..16)
        .map(|seed| {
            let b = body(&out, &Flavour::perl(seed));
            b["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["iface"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect();
    assert!(orders.len() > 1, "hash order must vary with the seed");
}

#[test]
fn list_rust_flavour() {
    let out = list(&files(), &host(), &Params::new()).unwrap();
    let text = out.render(&Flavour::rust());
    let b: J = serde_json::from_str(&text).unwrap();
    let names: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["iface"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["eno1", "eno2", "eno3", "vmbr0"]);
    let br = entry(&b, "vmbr0");
    assert_eq!(br["bridge_fd"], 0);
    assert_eq!(br["netmask"], 24);
    assert_eq!(br["active"], true);
    assert_eq!(br["exists"], false);
    assert_eq!(br["bridge_vlan_aware"], false);
    let eno1 = entry(&b, "eno1");
    assert_eq!(eno1["mtu"], 9000);
    assert_eq!(eno1["active"], false);
    assert_eq!(eno1["autostart"], false);
    assert_eq!(eno1["exists"], true);
    assert_eq!(
        text,
        out.render(&Flavour::rust()),
        "the Rust flavour is stable"
    );
    assert!(text.starts_with("{\"data\":[{\"active\":false,\"autostart\":false,\"exists\":true,"));
}

#[test]
fn list_type_filters() {
    let names = |t: &str| -> Vec<String> {
        let out = list(&created(), &host(), &p(&[("type", t)])).unwrap();
        match out.data {
            ResponseData::List(items) => items.into_iter().map(|(n, _)| n).collect(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(names("bridge"), vec!["vmbr0", "vmbr1"]);
    assert_eq!(names("any_bridge"), vec!["vmbr0", "vmbr1"]);
    assert_eq!(names("any_local_bridge"), vec!["vmbr0", "vmbr1"]);
    assert_eq!(names("eth"), vec!["eno1", "eno2", "eno3"]);
    assert!(names("bond").is_empty());
    assert!(names("vnet").is_empty());
    assert_eq!(names("include_sdn").len(), 5);

    let err = list(&files(), &host(), &p(&[("type", "vmbr")])).unwrap_err();
    assert_eq!(
        param_err(&err, "type"),
        "value 'vmbr' does not have a value in the enumeration 'bridge, bond, eth, alias, vlan, \
         fabric, OVSBridge, OVSBond, OVSPort, OVSIntPort, vnet, any_bridge, any_local_bridge, include_sdn'"
    );
    let err = list(&files(), &host(), &p(&[("verbose", "1")])).unwrap_err();
    assert_eq!(
        param_err(&err, "verbose"),
        "property is not defined in schema and the schema does not allow additional properties"
    );
}

#[test]
fn list_any_bridge_includes_ovs_bridges() {
    let f = NetworkFiles::new(ovs_base(), T0);
    let out = list(&f, &host(), &p(&[("type", "any_bridge")])).unwrap();
    let ResponseData::List(items) = out.data else {
        panic!()
    };
    let names: Vec<&str> = items.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, vec!["vmbr0", "vmbr5"]);
    let out = list(&f, &host(), &p(&[("type", "OVSPort")])).unwrap();
    assert!(matches!(out.data, ResponseData::List(ref l) if l.len() == 1 && l[0].0 == "eno3"));
}

#[test]
fn list_reports_pending_changes() {
    let f = created();
    let out = list(&f, &host(), &Params::new()).unwrap();
    let expected = "--- /etc/network/interfaces\t2023-11-14 22:13:20.000000000 +0000\n\
                    +++ /etc/network/interfaces.new\t2023-11-14 22:14:20.000000000 +0000\n\
                    @@ -27,4 +27,11 @@\n \tbridge-stp off\n \tbridge-fd 0\n \n\
                    +auto vmbr1\n+iface vmbr1 inet static\n+\taddress 10.0.0.1/24\n\
                    +\tbridge-ports eno2\n+\tbridge-stp off\n+\tbridge-fd 0\n+\n \
                    source /etc/network/interfaces.d/*\n";
    assert_eq!(out.changes.as_deref(), Some(expected));
    assert_eq!(body(&out, &Flavour::perl(1))["changes"], expected);
    assert_eq!(body(&out, &Flavour::rust())["changes"], expected);
    let missing = Flavour::rust_with([Divergence::MissingChanges].into_iter().collect());
    assert!(body(&out, &missing).get("changes").is_none());

    // the new bridge is configured but not up until applied
    let b = body(&out, &Flavour::perl(3));
    let br = entry(&b, "vmbr1");
    assert_eq!(br["address"], "10.0.0.1");
    assert_eq!(br["netmask"], "24");
    assert_eq!(br["autostart"], 1);
    assert!(br.get("active").is_none());
}

// ---------------------------------------------------------------------------
// get

#[test]
fn get_interface() {
    let out = get(&files(), &host(), "vmbr0", &Params::new()).unwrap();
    let perl = body(&out, &Flavour::perl(5));
    assert!(perl["data"].get("iface").is_none());
    assert_eq!(perl["data"]["bridge_ports"], "eno1");
    assert_eq!(perl["data"]["gateway"], "192.168.1.1");
    let rust = body(&out, &Flavour::rust());
    assert!(rust["data"].get("iface").is_none());
    assert_eq!(rust["data"]["bridge_fd"], 0);
    assert!(rust.get("changes").is_none());

    // the loopback is only hidden from the list
    let out = get(&files(), &host(), "lo", &Params::new()).unwrap();
    assert_eq!(body(&out, &Flavour::perl(0))["data"]["type"], "loopback");
}

#[test]
fn get_errors() {
    let err = get(&files(), &host(), "vmbr7", &Params::new()).unwrap_err();
    assert_eq!(param_err(&err, "iface"), "interface does not exist");
    let r = err.render(&Flavour::perl(9));
    assert_eq!(r.status, 400);
    assert_eq!(r.reason, "Parameter verification failed.");
    let b: J = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        b,
        json!({"data": null, "errors": {"iface": "interface does not exist"}})
    );
    let divergent = Flavour::rust_with([Divergence::DifferentErrorMessage].into_iter().collect());
    let r = err.render(&divergent);
    assert_eq!(
        r.body,
        "{\"data\":null,\"errors\":{\"iface\":\"no such network interface\"}}"
    );
    assert_eq!(
        err.render(&Flavour::rust()).body,
        "{\"data\":null,\"errors\":{\"iface\":\"interface does not exist\"}}"
    );

    let err = get(&files(), &host(), "9vmbr", &Params::new()).unwrap_err();
    assert_eq!(
        param_err(&err, "iface"),
        "invalid format - invalid network interface name '9vmbr'\n"
    );
    let err = get(&files(), &host(), "abcdefghijklmnopqrstu", &Params::new()).unwrap_err();
    assert_eq!(
        param_err(&err, "iface"),
        "value may only be 20 characters long"
    );
}

// ---------------------------------------------------------------------------
// create

#[test]
fn create_bridge_writes_pending_file() {
    let f = files();
    let out = create(
        &f,
        &host(),
        &p(&[
            ("iface", "vmbr1"),
            ("type", "bridge"),
            ("cidr", "10.0.0.1/24"),
            ("bridge_ports", "eno2"),
            ("autostart", "1"),
            ("node", "pve"),
        ]),
        real(),
    )
    .unwrap();
    assert_eq!(out.data, ResponseData::Null);
    let expected = base().replace(
        "source /etc/network/interfaces.d/*\n",
        &format!("{VMBR1}source /etc/network/interfaces.d/*\n"),
    );
    assert_eq!(written(&out), expected);
    assert_eq!(out.render(&Flavour::perl(1)), "{\"data\":null}");
    assert_eq!(out.render(&Flavour::rust()), "{\"data\":null}");

    let mut f2 = f.clone();
    assert!(f2.commit(&out, T1));
    assert_eq!(f2.interfaces, f.interfaces, "the applied file is untouched");
    assert_eq!(f2.pending.as_ref().unwrap().text, expected);
    assert_eq!(f2.pending.as_ref().unwrap().mtime, T1);
}

#[test]
fn create_vlan_bond_and_ipv6() {
    let f = files();
    let out = create(
        &f,
        &host(),
        &p(&[
            ("iface", "bond0"),
            ("type", "bond"),
            ("slaves", "eno3 eno2"),
            ("bond_mode", "802.3ad"),
            ("bond_xmit_hash_policy", "layer3+4"),
            ("mtu", "9000"),
        ]),
        real(),
    )
    .unwrap();
    let text = written(&out);
    assert!(
        text.contains("auto eno2\niface eno2 inet manual\n\nauto eno3\niface eno3 inet manual\n\n")
    );
    assert!(text.contains(
        "iface bond0 inet manual\n\tbond-slaves eno3 eno2\n\tbond-miimon 100\n\
         \tbond-mode 802.3ad\n\tbond-xmit-hash-policy layer3+4\n\tmtu 9000\n\n"
    ));

    let out = create(
        &f,
        &host(),
        &p(&[
            ("iface", "vmbr0.30"),
            ("type", "vlan"),
            ("cidr6", "fd00:30::2/64"),
            ("gateway6", "fd00:30::1"),
            ("comments", "storage"),
        ]),
        real(),
    )
    .unwrap();
    assert!(written(&out).contains(
        "iface vmbr0.30 inet6 static\n\taddress fd00:30::2/64\n\tgateway fd00:30::1\n#storage\n\n"
    ));

    let out = create(
        &f,
        &host(),
        &p(&[
            ("iface", "vlan40"),
            ("type", "vlan"),
            ("vlan-raw-device", "eno3"),
            ("address", "10.40.0.2"),
            ("netmask", "255.255.255.0"),
        ]),
        real(),
    )
    .unwrap();
    assert!(
        written(&out).contains(
            "iface vlan40 inet static\n\taddress 10.40.0.2/24\n\tvlan-raw-device eno3\n\n"
        )
    );
}

#[test]
fn create_parameter_errors() {
    let f = files();
    let h = host();
    let err = create(&f, &h, &Params::new(), real()).unwrap_err();
    assert_eq!(
        param_err(&err, "iface"),
        "property is missing and it is not optional"
    );
    assert_eq!(
        param_err(&err, "type"),
        "property is missing and it is not optional"
    );

    let err = create(
        &f,
        &h,
        &p(&[
            ("iface", "vmbr1"),
            ("type", "switch"),
            ("mtu", "100"),
            ("autostart", "yes"),
            ("bridge_ports", "eno1 9x"),
            ("gateway", "10.0.0.256"),
            ("cidr", "10.0.0.1"),
            ("address6", "fd00::1"),
            ("bogus", "1"),
        ]),
        real(),
    )
    .unwrap_err();
    assert_eq!(
        param_err(&err, "type"),
        "value 'switch' does not have a value in the enumeration 'bridge, bond, eth, alias, \
         vlan, fabric, OVSBridge, OVSBond, OVSPort, OVSIntPort, vnet, unknown'"
    );
    assert_eq!(
        param_err(&err, "mtu"),
        "value must have a minimum value of 1280"
    );
    assert_eq!(
        param_err(&err, "autostart"),
        "type check ('boolean') failed - got 'yes'"
    );
    assert_eq!(
        param_err(&err, "bridge_ports"),
        "invalid format - invalid network interface name '9x'\n"
    );
    assert_eq!(
        param_err(&err, "gateway"),
        "invalid format - value does not look like a valid IPv4 address\n"
    );
    assert_eq!(
        param_err(&err, "cidr"),
        "invalid format - value does not look like a valid IPv4 CIDR network\n"
    );
    assert_eq!(
        param_err(&err, "netmask6"),
        "missing property required by 'address6'"
    );
    assert_eq!(
        param_err(&err, "bogus"),
        "property is not defined in schema and the schema does not allow additional properties"
    );
    assert_eq!(err.errors.len(), 8);

    let err = create(&f, &h, &p(&[("iface", "1abc"), ("type", "eth")]), real()).unwrap_err();
    assert_eq!(
        param_err(&err, "iface"),
        "invalid format - invalid network interface name '1abc'\n"
    );
}

#[test]
fn create_semantic_errors() {
    let f = files();
    let h = host();
    let c = |kv: &[(&str, &str)]| create(&f, &h, &p(kv), real()).unwrap_err();

    let err = c(&[("iface", "vmbr0"), ("type", "bridge")]);
    assert_eq!(param_err(&err, "iface"), "interface already exists");

    let err = c(&[
        ("iface", "vmbr1"),
        ("type", "bridge"),
        ("cidr", "10.0.0.1/24"),
        ("gateway", "10.0.0.254"),
    ]);
    assert_eq!(
        param_err(&err, "gateway"),
        "Default gateway already exists on interface 'vmbr0'."
    );

    let err = c(&[
        ("iface", "vmbr1"),
        ("type", "bridge"),
        ("bridge_ports", "eno2 eno1"),
    ]);
    assert_eq!(
        param_err(&err, "bridge_ports"),
        "eno1 is already used on interface 'vmbr0'."
    );

    let err = c(&[
        ("iface", "bond0"),
        ("type", "bond"),
        ("slaves", "eno1;eno3"),
    ]);
    assert_eq!(
        param_err(&err, "slaves"),
        "eno1 is already used on interface 'vmbr0'."
    );

    let err = c(&[
        ("iface", "vmbr1"),
        ("type", "bridge"),
        ("cidr", "10.0.0.1/24"),
        ("address", "10.0.0.1"),
        ("netmask", "255.255.255.0"),
    ]);
    assert_eq!(param_err(&err, "address"), "address conflicts with cidr");

    let err = c(&[
        ("iface", "vmbr1"),
        ("type", "bridge"),
        ("cidr6", "2001:db8::5/64"),
    ]);
    assert_eq!(
        param_err(&err, "address"),
        "2001:db8::5 with type 'DOCUMENTATION', cannot be used as host IPv6 address."
    );
    let err = c(&[
        ("iface", "vmbr1"),
        ("type", "bridge"),
        ("cidr6", "ff02::5/64"),
    ]);
    assert_eq!(
        param_err(&err, "address"),
        "ff02::5 with type 'MULTICAST', cannot be used as host IPv6 address."
    );

    let err = c(&[("iface", "vmbr1"), ("type", "bridge"), ("bridge_vids", ",")]);
    assert_eq!(param_err(&err, "bridge_vids"), "VLAN list items are empty");

    let err = c(&[("iface", "mgmt1"), ("type", "OVSIntPort")]);
    assert_eq!(param_err(&err, "ovs_bridge"), "parameter is required");
    let err = c(&[
        ("iface", "mgmt1"),
        ("type", "OVSIntPort"),
        ("ovs_bridge", "vmbr9"),
    ]);
    assert_eq!(
        param_err(&err, "ovs_bridge"),
        "bridge 'vmbr9' does not exist"
    );
    let err = c(&[
        ("iface", "mgmt1"),
        ("type", "OVSIntPort"),
        ("ovs_bridge", "vmbr0"),
    ]);
    assert_eq!(
        param_err(&err, "ovs_bridge"),
        "interface 'vmbr0' is no OVS bridge"
    );

    // failures of the writer are plain errors (HTTP 500 with PVE's message)
    let err = c(&[
        ("iface", "vmbr1"),
        ("type", "bridge"),
        ("bridge_ports", "tap9i0"),
    ]);
    assert_eq!(err.status, 500);
    assert_eq!(
        err.message,
        "bridge 'vmbr1' - unable to find bridge port 'tap9i0'"
    );
    assert!(err.errors.is_empty());
    let r = err.render(&Flavour::perl(0));
    assert_eq!(
        (r.status, r.reason.as_str(), r.body.as_str()),
        (
            500,
            "bridge 'vmbr1' - unable to find bridge port 'tap9i0'",
            "{\"data\":null}"
        )
    );

    let no_ovs = Host {
        openvswitch: false,
        ..host()
    };
    let err = create(
        &f,
        &no_ovs,
        &p(&[("iface", "vmbr5"), ("type", "OVSBridge")]),
        real(),
    )
    .unwrap_err();
    assert_eq!(err.status, 500);
    assert_eq!(
        err.message,
        "Open VSwitch is not installed (need package 'openvswitch-switch')"
    );
}

// ---------------------------------------------------------------------------
// update

#[test]
fn update_interface() {
    let f = files();
    let out = update(
        &f,
        &host(),
        "vmbr0",
        &p(&[
            ("type", "bridge"),
            ("cidr", "192.168.1.11/24"),
            ("gateway", "192.168.1.1"),
            ("bridge_ports", "eno1"),
            ("bridge_vlan_aware", "1"),
            ("comments", "uplink"),
        ]),
        real(),
    )
    .unwrap();
    assert_eq!(
        written(&out),
        base().replace(
            "\taddress 192.168.1.10/24\n\tgateway 192.168.1.1\n\tbridge-ports eno1\n\
             \tbridge-stp off\n\tbridge-fd 0\n",
            "\taddress 192.168.1.11/24\n\tgateway 192.168.1.1\n\tbridge-ports eno1\n\
             \tbridge-stp off\n\tbridge-fd 0\n\tbridge-vlan-aware yes\n\tbridge-vids 2-4094\n#uplink\n"
        )
    );
}

#[test]
fn update_recomputes_families_and_method_from_the_request() {
    // like PVE: without address in the request the interface becomes manual
    let out = update(
        &files(),
        &host(),
        "vmbr0",
        &p(&[("type", "bridge"), ("mtu", "1500")]),
        real(),
    )
    .unwrap();
    assert!(written(&out).contains(
        "auto vmbr0\niface vmbr0 inet manual\n\taddress 192.168.1.10/24\n\tgateway 192.168.1.1\n\
         \tbridge-ports eno1\n\tbridge-stp off\n\tbridge-fd 0\n\tmtu 1500\n\n"
    ));

    // delete removes properties; an IPv6-only update switches the family
    let out = update(
        &files(),
        &host(),
        "vmbr0",
        &p(&[
            ("type", "bridge"),
            ("delete", "cidr,gateway"),
            ("cidr6", "fd00:1::10/64"),
            ("bridge_ports", "eno1"),
        ]),
        real(),
    )
    .unwrap();
    assert!(written(&out).contains(
        "auto vmbr0\niface vmbr0 inet6 static\n\taddress fd00:1::10/64\n\
         \tbridge-ports eno1\n\tbridge-stp off\n\tbridge-fd 0\n\n"
    ));
}

#[test]
fn update_keeps_bridge_vids_as_given() {
    // PVE only space-separates bridge_vids after copying it on update
    let out = update(
        &files(),
        &host(),
        "vmbr0",
        &p(&[
            ("type", "bridge"),
            ("cidr", "192.168.1.10/24"),
            ("bridge_vlan_aware", "1"),
            ("bridge_vids", "10,20"),
        ]),
        real(),
    )
    .unwrap();
    assert!(written(&out).contains("\tbridge-vlan-aware yes\n\tbridge-vids 10,20\n"));
    // while create normalises it
    let out = create(
        &files(),
        &host(),
        &p(&[
            ("iface", "vmbr2"),
            ("type", "bridge"),
            ("bridge_vlan_aware", "1"),
            ("bridge_vids", "10,20;30"),
        ]),
        real(),
    )
    .unwrap();
    assert!(written(&out).contains("\tbridge-vids 10 20 30\n"));
}

#[test]
fn update_errors() {
    let f = created();
    let h = host();
    let err = update(&f, &h, "vmbr9", &p(&[("type", "bridge")]), real()).unwrap_err();
    assert_eq!(param_err(&err, "iface"), "interface does not exist");

    let err = update(&f, &h, "vmbr1", &p(&[("mtu", "1500")]), real()).unwrap_err();
    assert_eq!(
        param_err(&err, "type"),
        "property is missing and it is not optional"
    );

    let err = update(
        &f,
        &h,
        "vmbr1",
        &p(&[("type", "bridge"), ("delete", "mtu,9bad")]),
        real(),
    )
    .unwrap_err();
    assert_eq!(
        param_err(&err, "delete"),
        "invalid format - invalid configuration ID '9bad'\n"
    );

    let err = update(
        &f,
        &h,
        "vmbr1",
        &p(&[
            ("type", "bridge"),
            ("cidr", "10.0.0.1/24"),
            ("gateway", "10.0.0.254"),
        ]),
        real(),
    )
    .unwrap_err();
    assert_eq!(
        param_err(&err, "gateway"),
        "Default gateway already exists on interface 'vmbr0'."
    );

    let err = update(
        &f,
        &h,
        "vmbr1",
        &p(&[("type", "bridge"), ("bridge_ports", "eno1")]),
        real(),
    )
    .unwrap_err();
    assert_eq!(
        param_err(&err, "bridge_ports"),
        "eno1 is already used on interface 'vmbr0'."
    );

    let err = update(
        &f,
        &h,
        "vmbr1",
        &p(&[("type", "bridge"), ("cidr6", "ffff:ffff:ffff:ffff::/64")]),
        real(),
    )
    .unwrap_err();
    assert_eq!(
        param_err(&err, "address"),
        "ffff:ffff:ffff:ffff:: with type 'ANYCAST', cannot be used as host IPv6 address."
    );

    // a bridge port cannot carry an address
    let err = update(
        &f,
        &h,
        "eno2",
        &p(&[("type", "eth"), ("cidr", "10.9.0.1/24")]),
        real(),
    )
    .unwrap_err();
    assert_eq!(err.status, 500);
    assert_eq!(
        err.message,
        "iface eno2 - ip address can't be set on interface if bridged in vmbr1"
    );
}

// ---------------------------------------------------------------------------
// delete

#[test]
fn delete_interface() {
    let f = created();
    let out = delete(&f, &host(), "vmbr1", &Params::new(), real()).unwrap();
    assert_eq!(written(&out), base());

    let err = delete(&f, &host(), "vmbr9", &Params::new(), real()).unwrap_err();
    assert_eq!(param_err(&err, "iface"), "interface does not exist");

    // removing a port that is still in use fails in the writer
    let err = delete(&f, &host(), "eno1", &Params::new(), real()).unwrap_err();
    assert_eq!(err.status, 500);
    assert_eq!(
        err.message,
        "bridge 'vmbr0' - unable to find bridge port 'eno1'"
    );
}

#[test]
fn ovs_internal_ports_join_and_leave_their_bridge() {
    let text = ovs_base();
    let mut f = NetworkFiles::new(text.clone(), T0);
    let out = create(
        &f,
        &host(),
        &p(&[
            ("iface", "mgmt1"),
            ("type", "OVSIntPort"),
            ("ovs_bridge", "vmbr5"),
            ("ovs_tag", "7"),
            ("cidr", "10.7.0.2/24"),
        ]),
        real(),
    )
    .unwrap();
    let new = written(&out).to_string();
    assert!(new.contains(
        "\tovs_bridge vmbr5\n\n\
         auto mgmt1\niface mgmt1 inet static\n\taddress 10.7.0.2/24\n\tovs_type OVSIntPort\n\
         \tovs_bridge vmbr5\n\tovs_options tag=7\n\n\
         auto vmbr0\n"
    ));
    assert!(new.ends_with(
        "auto vmbr5\niface vmbr5 inet manual\n\tovs_type OVSBridge\n\tovs_ports eno3 mgmt1\n\n"
    ));
    f.commit(&out, T1);
    let got = get(&f, &host(), "mgmt1", &Params::new()).unwrap();
    let b = body(&got, &Flavour::rust());
    assert_eq!(b["data"]["ovs_tag"], 7);
    assert_eq!(b["data"]["type"], "OVSIntPort");

    let out = delete(&f, &host(), "mgmt1", &Params::new(), real()).unwrap();
    assert_eq!(written(&out), text);
}

// ---------------------------------------------------------------------------
// revert and apply

#[test]
fn revert_drops_pending_changes() {
    let mut f = created();
    let out = revert(&f, &host(), &Params::new(), real()).unwrap();
    assert_eq!(out.data, ResponseData::Null);
    assert_eq!(out.effect, Some(FileEffect::RemovePending));
    assert!(f.commit(&out, T1));
    assert_eq!(f, files());
    assert_eq!(list(&f, &host(), &Params::new()).unwrap().changes, None);
    let err = revert(&f, &host(), &p(&[("force", "1")]), real()).unwrap_err();
    assert!(err.errors.contains_key("force"));
}

fn task() -> TaskInfo {
    TaskInfo {
        pid: 0x1234,
        pstart: 0xABCDEF,
        starttime: 1_700_000_000,
        user: "root@pam".into(),
    }
}

#[test]
fn apply_moves_pending_over_the_file() {
    let mut f = created();
    let pending = f.pending.clone().unwrap();
    let out = apply(
        &f,
        &host(),
        &Params::new(),
        crate::netapi::ifreload_version,
        &task(),
        real(),
    )
    .unwrap();
    let upid = "UPID:pve:00001234:00ABCDEF:6553F100:srvreload:networking:root@pam:";
    assert_eq!(out.data, ResponseData::Upid(upid.into()));
    assert_eq!(
        out.render(&Flavour::perl(3)),
        format!("{{\"data\":\"{upid}\"}}")
    );
    assert_eq!(
        out.render(&Flavour::rust()),
        format!("{{\"data\":\"{upid}\"}}")
    );
    assert!(f.commit(&out, T1));
    assert_eq!(f.interfaces, pending);
    assert_eq!(f.pending, None);

    // applied: no changes any more and the new bridge is up
    let l = list(&f, &host(), &Params::new()).unwrap();
    assert_eq!(l.changes, None);
    assert_eq!(entry(&body(&l, &Flavour::perl(1)), "vmbr1")["active"], 1);

    let err = apply(
        &f,
        &host(),
        &p(&[("regenerate-frr", "maybe")]),
        crate::netapi::ifreload_version,
        &task(),
        real(),
    )
    .unwrap_err();
    assert_eq!(
        param_err(&err, "regenerate-frr"),
        "type check ('boolean') failed - got 'maybe'"
    );
    let classic = Host {
        ifupdown2: false,
        ..host()
    };
    let err = apply(
        &f,
        &classic,
        &Params::new(),
        crate::netapi::ifreload_version,
        &task(),
        real(),
    )
    .unwrap_err();
    assert_eq!(err.status, 500);
    assert_eq!(
        err.message,
        "you need ifupdown2 to reload network configuration"
    );
}

// ---------------------------------------------------------------------------
// dry runs

#[test]
fn dry_run_answers_the_same_without_side_effects() {
    let f = created();
    let h = host();
    let dry = MutateOptions { dry_run: true };
    type Op<'a> = Box<dyn Fn(MutateOptions) -> Result<Outcome, ApiError> + 'a>;
    let ops: Vec<(&str, Op<'_>)> = vec![
        (
            "create",
            Box::new(|o| {
                create(
                    &f,
                    &h,
                    &p(&[
                        ("iface", "vmbr2"),
                        ("type", "bridge"),
                        ("bridge_ports", "eno3"),
                    ]),
                    o,
                )
            }),
        ),
        (
            "create-error",
            Box::new(|o| create(&f, &h, &p(&[("iface", "vmbr0"), ("type", "bridge")]), o)),
        ),
        (
            "update",
            Box::new(|o| {
                update(
                    &f,
                    &h,
                    "vmbr1",
                    &p(&[
                        ("type", "bridge"),
                        ("bridge_ports", "eno2"),
                        ("mtu", "1400"),
                    ]),
                    o,
                )
            }),
        ),
        (
            "delete",
            Box::new(|o| delete(&f, &h, "vmbr1", &Params::new(), o)),
        ),
        ("revert", Box::new(|o| revert(&f, &h, &Params::new(), o))),
        (
            "apply",
            Box::new(|o| {
                apply(
                    &f,
                    &h,
                    &Params::new(),
                    crate::netapi::ifreload_version,
                    &task(),
                    o,
                )
            }),
        ),
    ];
    for (name, op) in ops {
        let real_run = op(real());
        let dry_run = op(dry);
        match (real_run, dry_run) {
            (Ok(r), Ok(d)) => {
                assert!(d.dry_run && !r.dry_run, "{name}");
                assert_eq!(d.data, r.data, "{name}");
                assert_eq!(d.effect, r.effect, "{name}");
                assert_eq!(d.render(&Flavour::perl(1)), r.render(&Flavour::perl(1)));
                let mut copy = f.clone();
                assert!(!copy.commit(&d, T1), "{name}: a dry run writes nothing");
                assert_eq!(copy, f, "{name}");
                assert!(copy.commit(&r, T1), "{name}: the real run writes");
                assert_ne!(copy, f, "{name}");
            }
            (Err(r), Err(d)) => assert_eq!(r, d, "{name}"),
            (r, d) => panic!("{name}: {r:?} vs {d:?}"),
        }
    }
}

#[test]
fn all_divergences_parse_and_apply_to_list() {
    let f = created();
    let out = list(&f, &host(), &Params::new()).unwrap();
    let all: Divergences = Divergence::ALL.into_iter().collect();
    let b = body(&out, &Flavour::rust_with(all));
    assert!(b.get("changes").is_none());
    let br = entry(&b, "vmbr1");
    assert_eq!(br["bridge-ports"], "eno2");
    assert!(br.get("bridge_ports").is_none());
    assert!(br.get("active").is_none());
    assert!(br.get("exists").is_none());
    assert_eq!(entry(&b, "eno1")["mtu"], "9000");
}
