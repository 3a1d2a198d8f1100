//! Benchmarks: route lookup (hit and miss) and the comparison of a ~1 MiB
//! interface list, Perl-typed against Rust-typed and shuffled.

use std::sync::LazyLock;

use divan::{Bencher, black_box};
use pve_migration_rules::{ApiFormat, Exchange, RuleSet, Verdict};
use serde_json::{Map, Value, json};

fn main() {
    divan::main();
}

static RULES: LazyLock<RuleSet> = LazyLock::new(RuleSet::with_defaults);

#[divan::bench(args = [
    "/api2/json/nodes/pve1/network/vmbr0",
    "/api2/extjs/cluster/sdn/vnets/vnet1/subnets/zone1-10.0.0.0-24/",
])]
fn route_hit(path: &str) {
    let m = RULES.route(black_box("GET"), black_box(path));
    assert!(black_box(m).is_some());
}

#[divan::bench(args = [
    "/api2/json/nodes/pve1/qemu/100/status/current",
    "/api2/json/cluster/sdn/zones/zone1/extra",
    "/api2/htmljs/nodes/pve1/network",
])]
fn route_miss(path: &str) {
    let m = RULES.route(black_box("GET"), black_box(path));
    assert!(black_box(m).is_none());
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One interface in pveproxy's Perl rendering or a typed Rust rendering.
fn iface(n: usize, perl: bool) -> Value {
    let num = |v: u64| if perl { json!(v.to_string()) } else { json!(v) };
    let flag = |on: bool| if perl { json!(1) } else { json!(on) };
    let mut m = Map::new();
    m.insert("iface".into(), json!(format!("vmbr{n}")));
    m.insert("type".into(), json!("bridge"));
    m.insert("method".into(), json!("static"));
    m.insert("method6".into(), json!("manual"));
    m.insert(
        "cidr".into(),
        json!(format!("10.{}.{}.1/24", n / 256 % 256, n % 256)),
    );
    m.insert(
        "address".into(),
        json!(format!("10.{}.{}.1", n / 256 % 256, n % 256)),
    );
    m.insert("netmask".into(), json!("24"));
    m.insert("gateway".into(), json!("10.0.0.254"));
    m.insert("priority".into(), json!(n + 3));
    m.insert("families".into(), json!(["inet"]));
    m.insert("bridge_ports".into(), json!(format!("nic{n}")));
    m.insert("bridge_stp".into(), json!("off"));
    m.insert("bridge_fd".into(), num(0));
    m.insert("mtu".into(), num(1500 + (n as u64 % 8000)));
    m.insert(
        "comments".into(),
        json!(format!("bridge number {n} for the benchmark")),
    );
    m.insert("active".into(), flag(true));
    m.insert("autostart".into(), flag(true));
    if n.is_multiple_of(3) {
        m.insert("bridge_vlan_aware".into(), flag(true));
        m.insert("bridge_vids".into(), json!("2-4094"));
    } else if !perl {
        m.insert("bridge_vlan_aware".into(), json!(false));
    }
    Value::Object(m)
}

/// Serialises with object keys in random order (as Perl does).
fn shuffled_text(v: &Value, rng: &mut Rng, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut items: Vec<_> = m.iter().collect();
            for i in (1..items.len()).rev() {
                items.swap(i, (rng.next() % (i as u64 + 1)) as usize);
            }
            out.push('{');
            for (i, (k, x)) in items.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::from(k.as_str()).to_string());
                out.push(':');
                shuffled_text(x, rng, out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                shuffled_text(x, rng, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn list_body(count: usize, perl: bool, seed: u64) -> Vec<u8> {
    let mut rng = Rng(seed);
    let mut items: Vec<Value> = (0..count).map(|n| iface(n, perl)).collect();
    for i in (1..items.len()).rev() {
        items.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let mut out = String::new();
    shuffled_text(&json!({ "data": items }), &mut rng, &mut out);
    out.into_bytes()
}

/// (Perl body, Rust body), each about 1 MiB.
static MIB_LISTS: LazyLock<(Vec<u8>, Vec<u8>)> = LazyLock::new(|| {
    let mut count = 1000;
    loop {
        let perl = list_body(count, true, 0x9E37_79B9_7F4A_7C15);
        if perl.len() >= 1 << 20 {
            let rust = list_body(count, false, 0xD1B5_4A32_D192_ED03);
            eprintln!(
                "1 MiB case: {count} interfaces, Perl body {} bytes, Rust body {} bytes",
                perl.len(),
                rust.len()
            );
            return (perl, rust);
        }
        count += 100;
    }
});

#[divan::bench(sample_count = 30)]
fn compare_1mib_interface_list(bencher: Bencher<'_, '_>) {
    let (perl, rust) = &*MIB_LISTS;
    let ep = RULES.endpoint("node.network.list").unwrap();
    let ct = [("content-type", "application/json;charset=UTF-8")];
    let p = Exchange::new(200, perl).with_headers(&ct);
    let r = Exchange::new(200, rust).with_headers(&ct);
    let cmp = RULES.compare(ep, ApiFormat::Json, &p, &r, None);
    assert_eq!(cmp.verdict, Verdict::TypeOnly);
    bencher.bench(|| {
        black_box(RULES.compare(ep, ApiFormat::Json, black_box(&p), black_box(&r), None))
    });
}
