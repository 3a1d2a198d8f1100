//! Round-trip tests over the interfaces fixtures.
//!
//! Every `tests/fixtures/interfaces/NAME.interfaces` is parsed and written the
//! way PVE does. If `NAME.expected` exists the written text must equal it
//! exactly (hand-written files that PVE normalises); otherwise the fixture is
//! a PVE-written file and must come back byte-identical. In both cases
//! parse → write → parse → write must be stable.
//!
//! Set `PVE_SIM_BLESS=1` to (re)write the `.expected` files of fixtures that
//! already have one (review the diff before committing).

use std::collections::BTreeMap;
use std::path::PathBuf;

use pve_sim::network::{
    Config, HostState, Value, WriteOptions, parse_interfaces, write_interfaces,
};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interfaces")
}

struct Fixture {
    name: String,
    input: String,
    expected: Option<(PathBuf, String)>,
}

fn fixtures() -> Vec<Fixture> {
    let mut out = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(fixture_dir())
        .expect("fixture dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "interfaces"))
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let input = std::fs::read_to_string(&path).expect("fixture");
        let exp_path = path.with_extension("expected");
        let expected = std::fs::read_to_string(&exp_path)
            .ok()
            .map(|text| (exp_path, text));
        out.push(Fixture {
            name,
            input,
            expected,
        });
    }
    out
}

fn parse(text: &str) -> Config {
    parse_interfaces(text, &HostState::derived_from_file(text, &[]))
}

fn write(config: &Config) -> String {
    write_interfaces(config, &WriteOptions::default()).expect("PVE writes this file")
}

#[test]
fn at_least_fifteen_fixtures() {
    assert!(fixtures().len() >= 15);
}

#[test]
fn fixtures_round_trip_like_pve() {
    let bless = std::env::var_os("PVE_SIM_BLESS").is_some();
    for f in fixtures() {
        let first = parse(&f.input);
        let written = write(&first);
        match &f.expected {
            Some((path, expected)) => {
                if bless {
                    std::fs::write(path, &written).expect("bless");
                } else {
                    assert_eq!(
                        written,
                        *expected,
                        "{}: written text differs from {}",
                        f.name,
                        path.display()
                    );
                }
            }
            None => assert_eq!(
                written, f.input,
                "{}: a PVE-written file must round-trip byte-identically",
                f.name
            ),
        }

        let second = parse(&written);
        let rewritten = write(&second);
        assert_eq!(rewritten, written, "{}: writing is not stable", f.name);
        assert_eq!(
            parse(&rewritten),
            second,
            "{}: parsing is not stable",
            f.name
        );
    }
}

fn s(v: &str) -> Value {
    Value::str(v)
}

fn ifaces(name: &str) -> BTreeMap<String, pve_sim::network::Iface> {
    let text = std::fs::read_to_string(fixture_dir().join(format!("{name}.interfaces"))).unwrap();
    parse(&text).ifaces
}

#[test]
fn every_bond_mode_is_covered() {
    let cases = [
        ("bond-balance-rr", "bond0", "balance-rr"),
        ("bond-active-backup", "bond0", "active-backup"),
        ("bond-balance-xor", "bond0", "balance-xor"),
        ("bond-broadcast", "bond2", "broadcast"),
        ("bond-802.3ad", "bond0", "802.3ad"),
        ("bond-balance-tlb", "bond1", "balance-tlb"),
        ("bond-balance-alb", "bond0", "balance-alb"),
    ];
    for (file, bond, mode) in cases {
        let i = ifaces(file);
        assert_eq!(i[bond].get("type"), Some(&s("bond")), "{file}");
        assert_eq!(i[bond].get("bond_mode"), Some(&s(mode)), "{file}");
    }
}

#[test]
fn fixture_semantics() {
    let i = ifaces("vlan-dot");
    assert_eq!(i["vmbr0.20"].get("type"), Some(&s("vlan")));
    assert_eq!(i["vmbr0.20"].get("vlan-raw-device"), Some(&s("vmbr0")));
    let i = ifaces("vlan-raw-device");
    assert_eq!(i["vlan10"].get("vlan-id"), Some(&s("10")));
    assert_eq!(i["mgmt"].get("vlan-id"), Some(&s("30")));
    let i = ifaces("alias");
    assert_eq!(i["eno1:1"].get("type"), Some(&s("alias")));
    assert_eq!(i["eno1:0"].get("cidr"), Some(&s("198.51.100.11/24")));
    let i = ifaces("ovs");
    assert_eq!(i["vmbr1"].get("type"), Some(&s("OVSBridge")));
    assert_eq!(i["eno1"].get("type"), Some(&s("OVSPort")));
    assert_eq!(i["mgmt0"].get("type"), Some(&s("OVSIntPort")));
    assert_eq!(i["mgmt0"].get("ovs_tag"), Some(&s("20")));
    assert_eq!(i["bond0"].get("type"), Some(&s("OVSBond")));
    assert_eq!(i["bond0"].get("bond_mode"), Some(&s("lacp-balance-tcp")));
    let i = ifaces("ifupdown2-typeless");
    assert_eq!(i["vmbr1"].get("families"), Some(&Value::List(vec![None])));
    assert_eq!(i["vmbr1"].get("cidr6"), Some(&s("fccc::a:1/64")));
    let i = ifaces("ipv6");
    assert_eq!(i["vmbr1"].get("method6"), Some(&s("auto")));
    assert_eq!(i["eno2"].get("cidr6"), Some(&s("fd00:2::10/64")));
    let i = ifaces("unknown-types");
    assert_eq!(i["wg0"].get("type"), Some(&s("unknown")));
    assert_eq!(i["dummy0"].get("type"), Some(&s("dummy")));
    let i = ifaces("vxlan");
    assert_eq!(i["vxlan11"].get("type"), Some(&s("vxlan")));
}
