//! JSON renderings of API results: the Perl flavour (what pveproxy sends) and
//! the Rust flavour (what a careful Rust port sends).
//!
//! **Perl flavour.** Values keep the type Perl stored: strings from the file
//! stay JSON strings (`"mtu":"9000"`, `"netmask":"24"`), flags and `priority`
//! are numbers (`"active":1`, absent when false), `families` is an array.
//! Object keys and the interface list come out in Perl hash order, i.e. in an
//! arbitrary order that changes between requests; the simulator shuffles them
//! with a seedable generator ([`Flavour::Perl`]) so tests are reproducible. The
//! JSON text is produced by this module (not through `serde_json::Map`, which
//! would sort the keys), so the shuffled order really goes on the wire.
//!
//! **Rust flavour.** The same data typed ([`NetworkInterface`]): numbers as
//! numbers, `active`/`autostart`/`exists` always present as booleans, the list
//! sorted by interface name and all object keys sorted. [`Divergence`]s
//! deliberately break that rendering in realistic ways, so the gateway's
//! comparison machinery has something to find.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use pve_network_core::wire;
use pve_network_core::{ApiError, Iface, Outcome, ResponseData, Value};

// ---------------------------------------------------------------------------
// randomness

/// SplitMix64: a tiny, good-enough generator for shuffling.
#[derive(Clone, Debug)]
pub(crate) struct PerlRng(u64);

impl PerlRng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Fisher-Yates shuffle.
    pub(crate) fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            v.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------
// JSON text

/// A JSON document whose object keys are written in the given order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Int(i) => out.push_str(&i.to_string()),
            Json::Num(n) => out.push_str(&n.to_string()),
            Json::Str(s) => write_str(s, out),
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(k, out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }

    pub(crate) fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    /// From a serde value, with object keys sorted.
    pub(crate) fn sorted(v: &serde_json::Value) -> Self {
        match v {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(b) => Json::Bool(*b),
            serde_json::Value::Number(n) => Json::Num(n.clone()),
            serde_json::Value::String(s) => Json::Str(s.clone()),
            serde_json::Value::Array(a) => Json::Arr(a.iter().map(Json::sorted).collect()),
            serde_json::Value::Object(o) => {
                let mut entries: Vec<(String, Json)> = o
                    .iter()
                    .map(|(k, v)| (k.clone(), Json::sorted(v)))
                    .collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Json::Obj(entries)
            }
        }
    }
}

/// JSON string escaping as both JSON::XS and serde_json do it (`\n`, `\t`, …,
/// other control characters as `\u00XX`, UTF-8 as is).
fn write_str(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string()));
}

// ---------------------------------------------------------------------------
// flavours and divergences

/// A deliberate, realistic deviation of the Rust flavour from PVE's output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Divergence {
    /// `rename-bridge-ports`: interface objects carry `bridge-ports` instead
    /// of `bridge_ports` (the port copied the file's spelling).
    RenameBridgePorts,
    /// `missing-changes`: the list response has no top-level `changes` even
    /// when there are pending changes (the port forgot the result attribute).
    MissingChanges,
    /// `different-error-message`: unknown interfaces are reported as
    /// `no such network interface` instead of `interface does not exist`.
    DifferentErrorMessage,
    /// `mtu-as-string-typo`: `mtu` is rendered as a JSON string like Perl
    /// does (a field typed `String` by mistake).
    MtuAsStringTypo,
    /// `flags-omitted-when-false`: `active`, `autostart` and `exists` are left
    /// out when false (a `skip_serializing_if` too many).
    FlagsOmittedWhenFalse,
}

impl Divergence {
    /// Every divergence.
    pub const ALL: [Divergence; 5] = [
        Divergence::RenameBridgePorts,
        Divergence::MissingChanges,
        Divergence::DifferentErrorMessage,
        Divergence::MtuAsStringTypo,
        Divergence::FlagsOmittedWhenFalse,
    ];

    /// The divergence's name, as accepted by [`FromStr`].
    pub fn name(self) -> &'static str {
        match self {
            Divergence::RenameBridgePorts => "rename-bridge-ports",
            Divergence::MissingChanges => "missing-changes",
            Divergence::DifferentErrorMessage => "different-error-message",
            Divergence::MtuAsStringTypo => "mtu-as-string-typo",
            Divergence::FlagsOmittedWhenFalse => "flags-omitted-when-false",
        }
    }

    /// What the divergence does.
    pub fn description(self) -> &'static str {
        match self {
            Divergence::RenameBridgePorts => {
                "interface objects use the key `bridge-ports` instead of `bridge_ports`"
            }
            Divergence::MissingChanges => "the list response omits the top-level `changes`",
            Divergence::DifferentErrorMessage => {
                "`interface does not exist` becomes `no such network interface`"
            }
            Divergence::MtuAsStringTypo => "`mtu` is rendered as a JSON string",
            Divergence::FlagsOmittedWhenFalse => {
                "`active`, `autostart` and `exists` are omitted when false"
            }
        }
    }
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown divergence name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown divergence '{0}' (known: rename-bridge-ports, missing-changes, different-error-message, mtu-as-string-typo, flags-omitted-when-false)"
)]
pub struct UnknownDivergence(pub String);

impl FromStr for Divergence {
    type Err = UnknownDivergence;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Divergence::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownDivergence(s.to_string()))
    }
}

/// A set of divergences.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Divergences(BTreeSet<Divergence>);

impl Divergences {
    /// No divergences.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parse a comma- or space-separated list of names (empty = none).
    pub fn parse_list(s: &str) -> Result<Self, UnknownDivergence> {
        s.split([',', ' '])
            .filter(|n| !n.is_empty())
            .map(Divergence::from_str)
            .collect()
    }

    /// Whether the set contains `d`.
    pub fn contains(&self, d: Divergence) -> bool {
        self.0.contains(&d)
    }

    /// Add a divergence.
    pub fn insert(&mut self, d: Divergence) {
        self.0.insert(d);
    }

    /// The divergences in name order.
    pub fn iter(&self) -> impl Iterator<Item = Divergence> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<Divergence> for Divergences {
    fn from_iter<T: IntoIterator<Item = Divergence>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// Which implementation's output to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flavour {
    /// pveproxy: Perl types, hash order shuffled with this seed. Use a
    /// different seed per request to mimic Perl's per-process randomisation.
    Perl {
        /// Seed of the shuffle.
        seed: u64,
    },
    /// A Rust port: typed values, stable order, optionally with divergences.
    Rust {
        /// Deliberate deviations.
        divergences: Divergences,
    },
}

impl Flavour {
    /// The Perl flavour with a seed.
    pub fn perl(seed: u64) -> Self {
        Flavour::Perl { seed }
    }

    /// The faithful Rust flavour.
    pub fn rust() -> Self {
        Flavour::Rust {
            divergences: Divergences::none(),
        }
    }

    /// The Rust flavour with divergences.
    pub fn rust_with(divergences: Divergences) -> Self {
        Flavour::Rust { divergences }
    }

    fn has(&self, d: Divergence) -> bool {
        matches!(self, Flavour::Rust { divergences } if divergences.contains(d))
    }
}

// ---------------------------------------------------------------------------
// the typed interface

/// One interface as a Rust port returns it (`GET /nodes/{node}/network[/…]`).
///
/// Known properties are typed; anything else (unknown keys, or values that do
/// not parse as their type) ends up in `extra` as it was.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// Interface name (only in list entries).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub iface: Option<String>,
    /// Interface type (`unknown` when PVE could not tell).
    #[serde(rename = "type")]
    pub kind: String,
    /// Whether the link is up.
    #[serde(default)]
    pub active: bool,
    /// Whether it is started on boot.
    #[serde(default)]
    pub autostart: bool,
    /// Whether the physical device exists.
    #[serde(default)]
    pub exists: bool,
    /// Address families with a stanza (`inet`, `inet6`).
    #[serde(default)]
    pub families: Vec<String>,
    /// IPv4 configuration method.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub method: Option<String>,
    /// IPv6 configuration method.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub method6: Option<String>,
    /// Position in the file.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub priority: Option<u32>,
    /// IPv4 address.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub address: Option<String>,
    /// IPv4 prefix length.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub netmask: Option<u8>,
    /// IPv4 address with prefix.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cidr: Option<String>,
    /// IPv4 gateway.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gateway: Option<String>,
    /// IPv6 address.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub address6: Option<String>,
    /// IPv6 prefix length.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub netmask6: Option<u8>,
    /// IPv6 address with prefix.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cidr6: Option<String>,
    /// IPv6 gateway.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub gateway6: Option<String>,
    /// MTU.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mtu: Option<u32>,
    /// Bridge ports (space separated).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bridge_ports: Option<String>,
    /// Spanning tree (`on`/`off`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bridge_stp: Option<String>,
    /// Forward delay.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bridge_fd: Option<u32>,
    /// VLAN awareness (present for bridges).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bridge_vlan_aware: Option<bool>,
    /// Allowed VLANs of a VLAN-aware bridge.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bridge_vids: Option<String>,
    /// Bond slaves (space separated).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub slaves: Option<String>,
    /// Bond mode.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bond_mode: Option<String>,
    /// Bond link monitoring interval.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bond_miimon: Option<u32>,
    /// Bond transmit hash policy.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bond_xmit_hash_policy: Option<String>,
    /// Primary slave of an active-backup bond.
    #[serde(
        rename = "bond-primary",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub bond_primary: Option<String>,
    /// Parent of a VLAN.
    #[serde(
        rename = "vlan-raw-device",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub vlan_raw_device: Option<String>,
    /// VLAN tag.
    #[serde(rename = "vlan-id", skip_serializing_if = "Option::is_none", default)]
    pub vlan_id: Option<u16>,
    /// VLAN protocol.
    #[serde(
        rename = "vlan-protocol",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub vlan_protocol: Option<String>,
    /// OVS type as written in the file.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ovs_type: Option<String>,
    /// Ports of an OVS bridge.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ovs_ports: Option<String>,
    /// Bridge of an OVS port.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ovs_bridge: Option<String>,
    /// Slaves of an OVS bond.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ovs_bonds: Option<String>,
    /// Remaining OVS options.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ovs_options: Option<String>,
    /// VLAN tag of an OVS port.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub ovs_tag: Option<u16>,
    /// VXLAN id.
    #[serde(rename = "vxlan-id", skip_serializing_if = "Option::is_none", default)]
    pub vxlan_id: Option<u32>,
    /// VXLAN multicast group.
    #[serde(
        rename = "vxlan-svcnodeip",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub vxlan_svcnodeip: Option<String>,
    /// VXLAN device.
    #[serde(
        rename = "vxlan-physdev",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub vxlan_physdev: Option<String>,
    /// VXLAN local tunnel address.
    #[serde(
        rename = "vxlan-local-tunnelip",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub vxlan_local_tunnelip: Option<String>,
    /// VXLAN unicast peers.
    #[serde(
        rename = "vxlan-remoteip",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub vxlan_remoteip: Option<Vec<String>>,
    /// Uplink id.
    #[serde(rename = "uplink-id", skip_serializing_if = "Option::is_none", default)]
    pub uplink_id: Option<String>,
    /// Link type (`dummy`).
    #[serde(rename = "link-type", skip_serializing_if = "Option::is_none", default)]
    pub link_type: Option<String>,
    /// Comments (one per line).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub comments: Option<String>,
    /// IPv6 comments (PVE merges them into `comments` when reading).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub comments6: Option<String>,
    /// Unknown options of the `inet` stanza.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub options: Option<Vec<String>>,
    /// Unknown options of the `inet6` stanza.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub options6: Option<Vec<String>>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

fn value_to_serde(v: &Value) -> serde_json::Value {
    match v {
        Value::Str(s) => serde_json::Value::String(s.clone()),
        Value::Int(i) => serde_json::Value::from(*i),
        Value::List(l) => serde_json::Value::Array(
            l.iter()
                .map(|x| match x {
                    Some(s) => serde_json::Value::String(s.clone()),
                    None => serde_json::Value::Null,
                })
                .collect(),
        ),
        Value::Null => serde_json::Value::Null,
    }
}

fn scalar_str(v: &Value) -> Option<String> {
    match v {
        Value::Str(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

fn scalar_num<T: FromStr + TryFrom<i64>>(v: &Value) -> Option<T> {
    match v {
        Value::Str(s) => s.parse().ok(),
        Value::Int(i) => T::try_from(*i).ok(),
        _ => None,
    }
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::List(l) => Some(l.iter().flatten().cloned().collect()),
        _ => None,
    }
}

impl NetworkInterface {
    /// Type an interface hash (`name` becomes `iface`, for list entries).
    pub fn from_iface(name: Option<&str>, d: &Iface) -> Self {
        let mut out = NetworkInterface {
            iface: name.map(str::to_string),
            kind: Some(d.kind().into_owned())
                .filter(|k| !k.is_empty())
                .unwrap_or_else(|| "unknown".into()),
            ..Default::default()
        };
        for (k, v) in d.iter() {
            let fits = match k.as_str() {
                "type" => true,
                "active" => set(&mut out.active, Some(v.is_true())),
                "autostart" => set(&mut out.autostart, Some(v.is_true())),
                "exists" => set(&mut out.exists, Some(v.is_true())),
                "families" => set(&mut out.families, string_list(v)),
                "method" => set_opt(&mut out.method, scalar_str(v)),
                "method6" => set_opt(&mut out.method6, scalar_str(v)),
                "priority" => set_opt(&mut out.priority, scalar_num(v)),
                "address" => set_opt(&mut out.address, scalar_str(v)),
                "netmask" => set_opt(&mut out.netmask, scalar_num(v)),
                "cidr" => set_opt(&mut out.cidr, scalar_str(v)),
                "gateway" => set_opt(&mut out.gateway, scalar_str(v)),
                "address6" => set_opt(&mut out.address6, scalar_str(v)),
                "netmask6" => set_opt(&mut out.netmask6, scalar_num(v)),
                "cidr6" => set_opt(&mut out.cidr6, scalar_str(v)),
                "gateway6" => set_opt(&mut out.gateway6, scalar_str(v)),
                "mtu" => set_opt(&mut out.mtu, scalar_num(v)),
                "bridge_ports" => set_opt(&mut out.bridge_ports, scalar_str(v)),
                "bridge_stp" => set_opt(&mut out.bridge_stp, scalar_str(v)),
                "bridge_fd" => set_opt(&mut out.bridge_fd, scalar_num(v)),
                "bridge_vlan_aware" => set_opt(
                    &mut out.bridge_vlan_aware,
                    v.is_defined().then(|| v.is_true()),
                ),
                "bridge_vids" => set_opt(&mut out.bridge_vids, scalar_str(v)),
                "slaves" => set_opt(&mut out.slaves, scalar_str(v)),
                "bond_mode" => set_opt(&mut out.bond_mode, scalar_str(v)),
                "bond_miimon" => set_opt(&mut out.bond_miimon, scalar_num(v)),
                "bond_xmit_hash_policy" => set_opt(&mut out.bond_xmit_hash_policy, scalar_str(v)),
                "bond-primary" => set_opt(&mut out.bond_primary, scalar_str(v)),
                "vlan-raw-device" => set_opt(&mut out.vlan_raw_device, scalar_str(v)),
                "vlan-id" => set_opt(&mut out.vlan_id, scalar_num(v)),
                "vlan-protocol" => set_opt(&mut out.vlan_protocol, scalar_str(v)),
                "ovs_type" => set_opt(&mut out.ovs_type, scalar_str(v)),
                "ovs_ports" => set_opt(&mut out.ovs_ports, scalar_str(v)),
                "ovs_bridge" => set_opt(&mut out.ovs_bridge, scalar_str(v)),
                "ovs_bonds" => set_opt(&mut out.ovs_bonds, scalar_str(v)),
                "ovs_options" => set_opt(&mut out.ovs_options, scalar_str(v)),
                "ovs_tag" => set_opt(&mut out.ovs_tag, scalar_num(v)),
                "vxlan-id" => set_opt(&mut out.vxlan_id, scalar_num(v)),
                "vxlan-svcnodeip" => set_opt(&mut out.vxlan_svcnodeip, scalar_str(v)),
                "vxlan-physdev" => set_opt(&mut out.vxlan_physdev, scalar_str(v)),
                "vxlan-local-tunnelip" => set_opt(&mut out.vxlan_local_tunnelip, scalar_str(v)),
                "vxlan-remoteip" => set_opt(&mut out.vxlan_remoteip, string_list(v)),
                "uplink-id" => set_opt(&mut out.uplink_id, scalar_str(v)),
                "link-type" => set_opt(&mut out.link_type, scalar_str(v)),
                "comments" => set_opt(&mut out.comments, scalar_str(v)),
                "comments6" => set_opt(&mut out.comments6, scalar_str(v)),
                "options" => set_opt(&mut out.options, string_list(v)),
                "options6" => set_opt(&mut out.options6, string_list(v)),
                _ => false,
            };
            if !fits {
                out.extra.insert(k.clone(), value_to_serde(v));
            }
        }
        if (out.kind == "bridge" || out.kind == "OVSBridge") && out.bridge_vlan_aware.is_none() {
            out.bridge_vlan_aware = Some(false);
        }
        out
    }

    /// The JSON value with the given flavour's divergences applied.
    fn to_json(&self, flavour: &Flavour) -> Json {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        if let serde_json::Value::Object(o) = &mut v {
            if flavour.has(Divergence::RenameBridgePorts)
                && let Some(p) = o.remove("bridge_ports")
            {
                o.insert("bridge-ports".into(), p);
            }
            if flavour.has(Divergence::MtuAsStringTypo)
                && let Some(m) = o.get_mut("mtu")
                && let serde_json::Value::Number(n) = m
            {
                *m = serde_json::Value::String(n.to_string());
            }
            if flavour.has(Divergence::FlagsOmittedWhenFalse) {
                for flag in ["active", "autostart", "exists"] {
                    if o.get(flag) == Some(&serde_json::Value::Bool(false)) {
                        o.remove(flag);
                    }
                }
            }
        }
        Json::sorted(&v)
    }
}

fn set<T>(slot: &mut T, v: Option<T>) -> bool {
    match v {
        Some(v) => {
            *slot = v;
            true
        }
        None => false,
    }
}

fn set_opt<T>(slot: &mut Option<T>, v: Option<T>) -> bool {
    let ok = v.is_some();
    if ok {
        *slot = v;
    }
    ok
}

// ---------------------------------------------------------------------------
// Perl flavour

/// The core's canonical (Perl wire format) rendering with object keys and
/// the interface list in a seeded Perl-hash-like order.
fn shuffled(v: &serde_json::Value, rng: &mut PerlRng) -> Json {
    match v {
        serde_json::Value::Array(items) => {
            let mut out: Vec<Json> = items.iter().map(|x| shuffled(x, rng)).collect();
            // only lists built from hashes (the interface list) are unordered
            if items.iter().all(serde_json::Value::is_object) {
                rng.shuffle(&mut out);
            }
            Json::Arr(out)
        }
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(String, Json)> = m
                .iter()
                .map(|(k, v)| (k.clone(), shuffled(v, rng)))
                .collect();
            rng.shuffle(&mut entries);
            Json::Obj(entries)
        }
        other => Json::sorted(other),
    }
}

fn perl_object(name: Option<&str>, d: &Iface, rng: &mut PerlRng) -> Json {
    shuffled(&wire::interface_json(name, d), rng)
}

fn rust_data(data: &ResponseData, flavour: &Flavour) -> Json {
    match data {
        ResponseData::Null => Json::Null,
        ResponseData::Upid(u) => Json::Str(u.clone()),
        ResponseData::Object(d) => NetworkInterface::from_iface(None, d).to_json(flavour),
        ResponseData::List(items) => Json::Arr(
            items
                .iter()
                .map(|(name, d)| NetworkInterface::from_iface(Some(name), d).to_json(flavour))
                .collect(),
        ),
    }
}

/// Render one interface hash on its own (`name` adds the `iface` key).
pub fn render_interface(name: Option<&str>, d: &Iface, flavour: &Flavour) -> String {
    match flavour {
        Flavour::Perl { seed } => perl_object(name, d, &mut PerlRng::new(*seed)).to_text(),
        Flavour::Rust { .. } => NetworkInterface::from_iface(name, d)
            .to_json(flavour)
            .to_text(),
    }
}

/// Renders an operation's outcome in a flavour.
pub trait RenderOutcome {
    /// The response body (`{"data":…}`, with `changes` for the list).
    fn render(&self, flavour: &Flavour) -> String;
}

impl RenderOutcome for Outcome {
    fn render(&self, flavour: &Flavour) -> String {
        match flavour {
            Flavour::Perl { seed } => {
                let mut rng = PerlRng::new(*seed);
                let members = serde_json::Value::Object(wire::outcome_members(self));
                shuffled(&members, &mut rng).to_text()
            }
            Flavour::Rust { .. } => {
                let mut entries = Vec::new();
                if let Some(c) = &self.changes
                    && !flavour.has(Divergence::MissingChanges)
                {
                    entries.push(("changes".to_string(), Json::Str(c.clone())));
                }
                entries.push(("data".to_string(), rust_data(&self.data, flavour)));
                Json::Obj(entries).to_text()
            }
        }
    }
}

/// An error as the HTTP layer sends it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedError {
    /// HTTP status.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// JSON body: `{"data":null}` plus `errors` for parameter errors.
    pub body: String,
}

const NOT_EXIST: &str = "interface does not exist";
const NOT_EXIST_DIVERGENT: &str = "no such network interface";

/// Renders an operation's error in a flavour.
pub trait RenderError {
    /// The error as the given flavour reports it (divergences applied).
    fn for_flavour(&self, flavour: &Flavour) -> ApiError;
    /// Status, reason phrase and body for the given flavour.
    fn render(&self, flavour: &Flavour) -> RenderedError;
}

impl RenderError for ApiError {
    fn for_flavour(&self, flavour: &Flavour) -> ApiError {
        let mut e = self.clone();
        if flavour.has(Divergence::DifferentErrorMessage) {
            for v in e.errors.values_mut() {
                if v == NOT_EXIST {
                    *v = NOT_EXIST_DIVERGENT.to_string();
                }
            }
            if e.message == NOT_EXIST {
                e.message = NOT_EXIST_DIVERGENT.to_string();
            }
        }
        e
    }

    fn render(&self, flavour: &Flavour) -> RenderedError {
        let e = self.for_flavour(flavour);
        let errors: Vec<(String, Json)> = e
            .errors
            .iter()
            .map(|(k, v)| (k.clone(), Json::Str(v.clone())))
            .collect();
        let body = match flavour {
            Flavour::Perl { seed } => {
                let mut rng = PerlRng::new(*seed);
                let mut entries = vec![("data".to_string(), Json::Null)];
                if !errors.is_empty() {
                    let mut errors = errors;
                    rng.shuffle(&mut errors);
                    entries.push(("errors".to_string(), Json::Obj(errors)));
                }
                rng.shuffle(&mut entries);
                Json::Obj(entries)
            }
            Flavour::Rust { .. } => {
                let mut entries = vec![("data".to_string(), Json::Null)];
                if !errors.is_empty() {
                    entries.push(("errors".to_string(), Json::Obj(errors)));
                }
                Json::Obj(entries)
            }
        };
        RenderedError {
            status: e.status,
            reason: e.message.clone(),
            body: body.to_text(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bridge() -> Iface {
        [
            ("type", Value::str("bridge")),
            ("mtu", Value::str("9000")),
            ("bridge_fd", Value::str("0")),
            ("bridge_ports", Value::str("eno1")),
            ("netmask", Value::str("24")),
            ("priority", Value::Int(4)),
            ("active", Value::Int(1)),
            ("families", Value::List(vec![Some("inet".into())])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    #[test]
    fn shuffle_is_seeded_and_a_permutation() {
        let mut a: Vec<u32> = (0..20).collect();
        let mut b = a.clone();
        PerlRng::new(7).shuffle(&mut a);
        PerlRng::new(7).shuffle(&mut b);
        assert_eq!(a, b);
        let mut c: Vec<u32> = (0..20).collect();
        PerlRng::new(8).shuffle(&mut c);
        assert_ne!(a, c);
        a.sort();
        assert_eq!(a, (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn perl_interface_keeps_perl_types_and_shuffles_keys() {
        let d = bridge();
        let out = render_interface(Some("vmbr0"), &d, &Flavour::perl(1));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["mtu"], "9000");
        assert_eq!(v["bridge_fd"], "0");
        assert_eq!(v["netmask"], "24");
        assert_eq!(v["priority"], 4);
        assert_eq!(v["active"], 1);
        assert_eq!(v["iface"], "vmbr0");
        assert_eq!(v["families"], serde_json::json!(["inet"]));
        assert!(v.get("autostart").is_none());
        // some seed produces an order that is not sorted
        let sorted_keys = |s: &str| {
            let keys: Vec<String> = serde_json::from_str::<serde_json::Value>(s)
                .unwrap()
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            let pos: Vec<usize> = keys
                .iter()
                .map(|k| s.find(&format!("\"{k}\":")).unwrap())
                .collect();
            pos.windows(2).all(|w| w[0] < w[1])
        };
        assert!((0..10).any(|seed| !sorted_keys(&render_interface(
            Some("vmbr0"),
            &d,
            &Flavour::perl(seed)
        ))));
        assert!(sorted_keys(&render_interface(
            Some("vmbr0"),
            &d,
            &Flavour::rust()
        )));
    }

    #[test]
    fn rust_interface_is_typed() {
        let out = render_interface(Some("vmbr0"), &bridge(), &Flavour::rust());
        assert_eq!(
            out,
            "{\"active\":true,\"autostart\":false,\"bridge_fd\":0,\"bridge_ports\":\"eno1\",\
             \"bridge_vlan_aware\":false,\"exists\":false,\"families\":[\"inet\"],\"iface\":\"vmbr0\",\
             \"mtu\":9000,\"netmask\":24,\"priority\":4,\"type\":\"bridge\"}"
        );
    }

    #[test]
    fn divergences() {
        let all: Divergences = Divergence::ALL.into_iter().collect();
        let out = render_interface(None, &bridge(), &Flavour::rust_with(all));
        assert_eq!(
            out,
            "{\"active\":true,\"bridge-ports\":\"eno1\",\"bridge_fd\":0,\"bridge_vlan_aware\":false,\
             \"families\":[\"inet\"],\"mtu\":\"9000\",\"netmask\":24,\"priority\":4,\"type\":\"bridge\"}"
        );
        assert_eq!(
            Divergences::parse_list("missing-changes, mtu-as-string-typo").unwrap(),
            [Divergence::MissingChanges, Divergence::MtuAsStringTypo]
                .into_iter()
                .collect()
        );
        assert!(Divergences::parse_list("nope").is_err());
        for d in Divergence::ALL {
            assert_eq!(d.name().parse::<Divergence>().unwrap(), d);
            assert!(!d.description().is_empty());
        }
    }

    #[test]
    fn unparsable_typed_values_go_to_extra() {
        let mut d = bridge();
        d.set_str("mtu", "jumbo");
        d.set_str("x-custom", "1");
        let n = NetworkInterface::from_iface(None, &d);
        assert_eq!(n.mtu, None);
        assert_eq!(n.extra["mtu"], "jumbo");
        assert_eq!(n.extra["x-custom"], "1");
    }
}
