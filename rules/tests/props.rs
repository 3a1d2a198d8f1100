//! Property tests: normalisation is idempotent, the patch maps normalised
//! Perl onto normalised Rust, equal inputs match, fingerprints do not depend
//! on key or list order, and nothing panics.

use proptest::prelude::*;
use pve_migration_rules::{ApiFormat, Comparison, Endpoint, Exchange, RuleSet, Verdict};
use serde_json::{Map, Value, json};

fn rules() -> &'static RuleSet {
    static RULES: std::sync::OnceLock<RuleSet> = std::sync::OnceLock::new();
    RULES.get_or_init(RuleSet::with_defaults)
}

fn endpoint(id: &str) -> &'static Endpoint {
    rules().endpoint(id).unwrap()
}

const KEYS: &[&str] = &[
    "data",
    "iface",
    "mtu",
    "active",
    "autostart",
    "exists",
    "changes",
    "families",
    "altnames",
    "digest",
    "message",
    "errors",
    "zone",
    "a~b",
    "x/y",
    "",
];
const STRINGS: &[&str] = &[
    "",
    "0",
    "1",
    "9000",
    "1.5",
    "-3",
    "09",
    "abc",
    "vmbr0",
    "nic1",
    "inet",
    "inet6",
    "UPID:pve1:00001A2B:0003C4D5:6650F1A2:srvreload:networking:root@pam:",
    "UPID:pve1:00009999:00AAAAAA:6650F1FF:srvreload:networking:root@pam:",
    "--- a\t1\n+++ b\t2\n@@ -1 +1 @@\n-x\n+y\n",
    "--- a\t3\n+++ b\t4\n@@ -1 +1 @@\n-x\n+y\n",
];

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-3i64..10_000).prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e6f64..1.0e6).prop_map(Value::from),
        prop::sample::select(STRINGS).prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(4, 48, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..5).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// A pveproxy-like body: `{"data": …}` plus maybe `changes`/`message`.
fn body() -> impl Strategy<Value = Value> {
    (
        json_value(),
        prop::option::of(prop::sample::select(STRINGS)),
        prop::option::of(prop::sample::select(STRINGS)),
    )
        .prop_map(|(data, changes, message)| {
            let mut m = Map::new();
            m.insert("data".into(), data);
            if let Some(c) = changes {
                m.insert("changes".into(), c.into());
            }
            if let Some(msg) = message {
                m.insert("message".into(), msg.into());
            }
            Value::Object(m)
        })
}

/// One network interface, rendered the Perl way and the Rust way.
#[derive(Debug, Clone)]
struct Iface {
    mtu: Option<u16>,
    active: bool,
    autostart: bool,
    exists: bool,
    bridge_fd: Option<u8>,
    kind: &'static str,
    inet6: bool,
    comments: Option<&'static str>,
}

fn iface() -> impl Strategy<Value = Iface> {
    (
        prop::option::of(576u16..9216),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::option::of(0u8..30),
        prop::sample::select(&["eth", "bridge", "bond", "vlan"][..]),
        any::<bool>(),
        prop::option::of(prop::sample::select(&["uplink", "storage"][..])),
    )
        .prop_map(
            |(mtu, active, autostart, exists, bridge_fd, kind, inet6, comments)| Iface {
                mtu,
                active,
                autostart,
                exists,
                bridge_fd,
                kind,
                inet6,
                comments,
            },
        )
}

fn render(name: usize, i: &Iface, perl: bool) -> Value {
    let mut m = Map::new();
    m.insert("iface".into(), format!("if{name}").into());
    m.insert("type".into(), i.kind.into());
    m.insert("method".into(), "manual".into());
    m.insert("priority".into(), (name + 3).into());
    let families: Vec<Value> = if i.inet6 {
        if perl {
            vec!["inet6".into(), "inet".into()]
        } else {
            vec!["inet".into(), "inet6".into()]
        }
    } else {
        vec!["inet".into()]
    };
    m.insert("families".into(), families.into());
    if let Some(c) = i.comments {
        m.insert("comments".into(), c.into());
    }
    if let Some(mtu) = i.mtu {
        let v = if perl {
            mtu.to_string().into()
        } else {
            mtu.into()
        };
        m.insert("mtu".into(), v);
    }
    if let Some(fd) = i.bridge_fd {
        let v = if perl {
            fd.to_string().into()
        } else {
            fd.into()
        };
        m.insert("bridge_fd".into(), v);
    }
    for (k, on) in [
        ("active", i.active),
        ("autostart", i.autostart),
        ("exists", i.exists),
    ] {
        if perl {
            if on {
                m.insert(k.into(), 1.into());
            }
        } else {
            m.insert(k.into(), on.into());
        }
    }
    Value::Object(m)
}

/// Serialises with object keys in a seed-determined order.
fn shuffled_text(v: &Value, seed: &mut u64) -> String {
    fn next(seed: &mut u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed
    }
    match v {
        Value::Object(m) => {
            let mut items: Vec<_> = m.iter().collect();
            for i in (1..items.len()).rev() {
                let j = (next(seed) % (i as u64 + 1)) as usize;
                items.swap(i, j);
            }
            let parts: Vec<String> = items
                .into_iter()
                .map(|(k, x)| format!("{}:{}", Value::from(k.as_str()), shuffled_text(x, seed)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(|x| shuffled_text(x, seed)).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut s = seed | 1;
    for i in (1..items.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        items.swap(i, (s % (i as u64 + 1)) as usize);
    }
}

fn compare(ep: &Endpoint, format: ApiFormat, perl: &[u8], rust: &[u8]) -> Comparison {
    let ct = [("content-type", "application/json;charset=UTF-8")];
    let p = Exchange::new(200, perl).with_headers(&ct).with_reason("OK");
    let r = Exchange::new(200, rust).with_headers(&ct).with_reason("OK");
    ep.compare(format, &p, &r, None)
}

const ENDPOINTS: &[&str] = &[
    "node.network.list",
    "node.network.iface.get",
    "node.network.reload",
    "sdn.zones.list",
    "sdn.vnets.subnets.subnet.get",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn normalisation_is_idempotent(
        a in body(), b in body(), which in prop::sample::select(ENDPOINTS)
    ) {
        let ep = endpoint(which);
        let pa = serde_json::to_vec(&a).unwrap();
        let pb = serde_json::to_vec(&b).unwrap();
        let (mut x, mut y) = ep.envelopes(&Exchange::new(200, &pa), &Exchange::new(200, &pb));
        ep.normalise_pair(&mut x, &mut y);
        let (x1, y1) = (x.clone(), y.clone());
        let again = ep.normalise_pair(&mut x, &mut y);
        prop_assert!(again.is_empty(), "second pass reported {:?}", again);
        prop_assert_eq!(&x, &x1);
        prop_assert_eq!(&y, &y1);

        // The single-sided steps alone are idempotent too.
        let (mut s, _) = ep.envelopes(&Exchange::new(200, &pa), &Exchange::new(200, &pa));
        ep.normalise(&mut s);
        let s1 = s.clone();
        ep.normalise(&mut s);
        prop_assert_eq!(s, s1);
    }

    #[test]
    fn patch_maps_normalised_perl_onto_normalised_rust(
        a in body(), b in body(), which in prop::sample::select(ENDPOINTS),
        sa in 200u16..206, sb in prop::sample::select(vec![200u16, 204, 400, 401, 500]),
    ) {
        let ep = endpoint(which);
        let pa = serde_json::to_vec(&a).unwrap();
        let pb = serde_json::to_vec(&b).unwrap();
        let perl = Exchange::new(sa, &pa);
        let rust = Exchange::new(sb, &pb);
        let cmp = ep.compare(ApiFormat::Json, &perl, &rust, None);
        let (mut x, mut y) = ep.envelopes(&perl, &rust);
        ep.normalise_pair(&mut x, &mut y);
        // The patch is exactly json-patch's diff of the normalised envelopes.
        prop_assert_eq!(&cmp.patch, &json_patch::diff(&x, &y));
        json_patch::patch(&mut x, &cmp.patch).unwrap();
        prop_assert_eq!(x, y);
        prop_assert_eq!(cmp.patch.is_empty(), matches!(cmp.verdict, Verdict::Match | Verdict::TypeOnly));
    }

    #[test]
    fn equal_inputs_always_match(
        a in body(), which in prop::sample::select(ENDPOINTS),
        status in prop::sample::select(vec![200u16, 400, 401, 403, 500]),
        extjs in any::<bool>(), seed in any::<u64>(),
    ) {
        let ep = endpoint(which);
        let format = if extjs { ApiFormat::Extjs } else { ApiFormat::Json };
        let text = serde_json::to_vec(&a).unwrap();
        let mut s = seed | 1;
        let other = shuffled_text(&a, &mut s);
        let ct = [("content-type", "application/json")];
        let perl = Exchange::new(status, &text).with_headers(&ct).with_reason("Reason ");
        let rust = Exchange::new(status, other.as_bytes()).with_headers(&ct).with_reason("Reason");
        let cmp = ep.compare(format, &perl, &rust, None);
        prop_assert_eq!(cmp.verdict, Verdict::Match);
        prop_assert!(cmp.patch.is_empty());
        prop_assert!(cmp.type_only.is_empty());
    }

    #[test]
    fn typed_rust_rendering_is_type_only(
        ifaces in prop::collection::vec(iface(), 0..12), seed in any::<u64>(),
    ) {
        let ep = endpoint("node.network.list");
        let perl: Vec<Value> = ifaces.iter().enumerate().map(|(n, i)| render(n, i, true)).collect();
        let mut rust: Vec<Value> = ifaces.iter().enumerate().map(|(n, i)| render(n, i, false)).collect();
        shuffle(&mut rust, seed);
        let mut s = seed | 1;
        let p = shuffled_text(&json!({"data": perl}), &mut s);
        let r = shuffled_text(&json!({"data": rust}), &mut s);
        let cmp = compare(ep, ApiFormat::Json, p.as_bytes(), r.as_bytes());
        prop_assert!(cmp.patch.is_empty(), "patch {}", cmp.patch);
        prop_assert!(matches!(cmp.verdict, Verdict::TypeOnly | Verdict::Match));
    }

    #[test]
    fn fingerprint_ignores_key_and_list_order(
        ifaces in prop::collection::vec(iface(), 1..10),
        changed in prop::collection::vec(any::<bool>(), 1..10),
        seed_a in any::<u64>(), seed_b in any::<u64>(),
    ) {
        let ep = endpoint("node.network.list");
        let perl: Vec<Value> = ifaces.iter().enumerate().map(|(n, i)| render(n, i, true)).collect();
        let rust: Vec<Value> = ifaces
            .iter()
            .enumerate()
            .map(|(n, i)| {
                let mut i = i.clone();
                if changed.get(n).copied().unwrap_or(false) {
                    i.mtu = Some(1234);
                    i.comments = None;
                }
                render(n, &i, false)
            })
            .collect();
        let run = |seed: u64| {
            let (mut p, mut r) = (perl.clone(), rust.clone());
            shuffle(&mut p, seed);
            shuffle(&mut r, seed.rotate_left(7));
            let mut s = seed | 1;
            let pt = shuffled_text(&json!({"data": p}), &mut s);
            let rt = shuffled_text(&json!({"data": r}), &mut s);
            compare(ep, ApiFormat::Json, pt.as_bytes(), rt.as_bytes())
        };
        let (x, y) = (run(seed_a), run(seed_b));
        prop_assert_eq!(&x.fingerprint, &y.fingerprint);
        prop_assert_eq!(x.verdict, y.verdict);
        prop_assert_eq!(&x.patch, &y.patch);
        prop_assert_eq!(&x.type_only, &y.type_only);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(
        a in prop::collection::vec(any::<u8>(), 0..256),
        b in prop::collection::vec(any::<u8>(), 0..256),
        which in prop::sample::select(ENDPOINTS),
        sa in any::<u16>(), sb in any::<u16>(),
    ) {
        let ep = endpoint(which);
        let cmp = ep.compare(ApiFormat::Extjs, &Exchange::new(sa, &a), &Exchange::new(sb, &b), None);
        prop_assert_eq!(cmp.fingerprint.len(), 16);
        prop_assert_eq!(cmp.verdict == Verdict::Match, a == b && sa == sb);
    }
}

#[test]
fn fingerprints_are_stable_across_runs() {
    // Fixed inputs must give this exact fingerprint in every build and run.
    let ep = endpoint("node.network.list");
    let perl = br#"{"data":[{"iface":"vmbr0","mtu":"9000","active":1},{"iface":"nic0"}]}"#;
    let rust =
        br#"{"data":[{"iface":"nic0","comments":"x"},{"active":true,"iface":"vmbr0","mtu":1500}]}"#;
    let cmp = compare(ep, ApiFormat::Json, perl, rust);
    assert_eq!(cmp.verdict, Verdict::Mismatch);
    // = sha256("pve-migration-rules fingerprint v1\nnode.network.list\n\
    //   add /body/data/*/comments\nreplace /body/data/*/mtu\n\
    //   type-only number-bool /body/data/*/active")[..16], computed independently.
    assert_eq!(cmp.fingerprint, "a037ec55e121a9d9");

    // The same kind of difference in another element: same fingerprint.
    let perl =
        br#"{"data":[{"iface":"vmbr0","mtu":"9000","active":1},{"iface":"nic0","comments":"x"}]}"#;
    let rust =
        br#"{"data":[{"iface":"nic0","comments":"x"},{"active":true,"iface":"vmbr0","mtu":1400}]}"#;
    let other = compare(ep, ApiFormat::Json, perl, rust);
    let rust2 =
        br#"{"data":[{"iface":"nic0","comments":"y"},{"active":true,"iface":"vmbr0","mtu":9000}]}"#;
    let third = compare(ep, ApiFormat::Json, perl, rust2);
    assert_eq!(other.patch.len(), 1);
    assert_eq!(third.patch.len(), 1);
    assert_ne!(other.fingerprint, cmp.fingerprint);
    assert_ne!(other.fingerprint, third.fingerprint);
}

#[test]
fn deep_and_huge_inputs_do_not_panic() {
    let ep = endpoint("node.network.list");
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_obj = format!("{}1{}", "{\"data\":".repeat(5_000), "}".repeat(5_000));
    let huge = br#"{"data":[{"iface":"a","mtu":1e400,"x":123456789012345678901234567890}]}"#;
    let big = br#"{"data":[{"iface":"a","mtu":"123456789012345678901234567890"}]}"#;
    for (a, b) in [
        (deep.as_bytes(), deep.as_bytes()),
        (deep.as_bytes(), &b"{}"[..]),
        (deep_obj.as_bytes(), deep.as_bytes()),
        (&huge[..], &big[..]),
        (&big[..], &huge[..]),
        (&b"\xff\xfe"[..], &b"null"[..]),
    ] {
        let cmp = compare(ep, ApiFormat::Json, a, b);
        assert_eq!(cmp.fingerprint.len(), 16);
        if a == b {
            assert_eq!(cmp.verdict, Verdict::Match);
        }
    }
}
