//! PVE's section config files (`/etc/pve/sdn/*.cfg`) and the running
//! configuration (`/etc/pve/sdn/.running-config`, JSON).
//!
//! A section config is a list of sections:
//!
//! ```text
//! vlan: lab
//!         bridge vmbr0
//!         ipam pve
//!
//! ```
//!
//! (the property lines start with a tab).
//!
//! parsed like `PVE::SectionConfig::parse_config` (comment lines skipped, a
//! blank line ends a section, unknown types and keys are skipped with the
//! value typed by the key's schema) and written like its `write_config`
//! (required options first, then the optional ones, each group sorted; one
//! blank line after every section). The digest is the SHA-1 of the raw text,
//! as PVE's.

use std::collections::BTreeMap;

use serde_json::{Map, Value as J};

use super::schema::{Kind, Section, kind_of, known_type, options};
use crate::network::model::split_list;

/// One property value, typed like `SectionConfig::check_value` leaves it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SdnValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean (Perl keeps `1`/`0`).
    Bool(bool),
    /// A node list (`nodes`, `exitnodes`), sorted.
    Nodes(Vec<String>),
    /// An array property (`dhcp-range`).
    List(Vec<String>),
}

impl SdnValue {
    /// Perl truthiness (`""`, `"0"`, `0` are false; references are true).
    pub fn truthy(&self) -> bool {
        match self {
            SdnValue::Str(s) => !s.is_empty() && s != "0",
            SdnValue::Int(i) => *i != 0,
            SdnValue::Bool(b) => *b,
            SdnValue::Nodes(_) | SdnValue::List(_) => true,
        }
    }

    /// The value as Perl compares it with `eq` (`None` for arrays, which
    /// Perl compares by reference address and so never equal another one).
    pub fn perl_string(&self) -> Option<String> {
        match self {
            SdnValue::Str(s) => Some(s.clone()),
            SdnValue::Int(i) => Some(i.to_string()),
            SdnValue::Bool(b) => Some(if *b { "1" } else { "0" }.to_string()),
            SdnValue::Nodes(n) => Some(n.join(",")),
            SdnValue::List(_) => None,
        }
    }

    /// The text of a string or number value.
    pub fn text(&self) -> String {
        match self {
            SdnValue::List(l) => l.join(","),
            other => other.perl_string().unwrap_or_default(),
        }
    }

    /// Decodes a parameter or file value of the given kind (`None` when it
    /// does not type-check).
    pub(crate) fn decode(kind: Kind, v: &str) -> Option<SdnValue> {
        match kind {
            Kind::Str | Kind::List => Some(SdnValue::Str(v.to_string())),
            Kind::Int => {
                let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                v.trim_start_matches('+').parse().ok().map(SdnValue::Int)
            }
            Kind::Bool => match v {
                "1" => Some(SdnValue::Bool(true)),
                "0" => Some(SdnValue::Bool(false)),
                _ => None,
            },
            Kind::Nodes => Some(SdnValue::Nodes(decode_nodes(v))),
        }
    }

    /// The value in `.running-config` (Perl's `to_json` of the parsed hash).
    fn to_json(&self) -> J {
        match self {
            SdnValue::Str(s) => J::from(s.clone()),
            SdnValue::Int(i) => J::from(*i),
            SdnValue::Bool(b) => J::from(i64::from(*b)),
            SdnValue::Nodes(n) => J::Object(n.iter().map(|n| (n.clone(), J::from(1))).collect()),
            SdnValue::List(l) => J::Array(l.iter().map(|s| J::from(s.clone())).collect()),
        }
    }

    fn from_json(kind: Kind, v: &J) -> Option<SdnValue> {
        match (kind, v) {
            (_, J::Object(o)) => Some(SdnValue::Nodes(o.keys().cloned().collect())),
            (_, J::Array(a)) => Some(SdnValue::List(
                a.iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect(),
            )),
            (Kind::Bool, J::Number(n)) => Some(SdnValue::Bool(n.as_f64() != Some(0.0))),
            (Kind::Bool, J::Bool(b)) => Some(SdnValue::Bool(*b)),
            (_, J::Number(n)) => n
                .as_i64()
                .map(SdnValue::Int)
                .or_else(|| Some(SdnValue::Str(n.to_string()))),
            (_, J::String(s)) => Some(SdnValue::Str(s.clone())),
            (_, J::Bool(b)) => Some(SdnValue::Int(i64::from(*b))),
            (_, J::Null) => None,
        }
    }
}

/// A node name as PVE checks it (`pve-node`).
pub(crate) fn is_node_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// `decode_value` of `nodes`: the valid names of the list, as a set.
pub(crate) fn decode_nodes(v: &str) -> Vec<String> {
    let mut nodes: Vec<String> = split_list(v)
        .into_iter()
        .filter(|n| is_node_name(n))
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// One section: `type` plus its properties.
pub type SdnObject = BTreeMap<String, SdnValue>;

/// The `type` of a section object.
pub fn object_type(obj: &SdnObject) -> String {
    obj.get("type").map(SdnValue::text).unwrap_or_default()
}

/// A parsed section config file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SectionConfig {
    /// Sections by id.
    pub ids: BTreeMap<String, SdnObject>,
    /// Ids in file order (new sections are appended).
    pub order: Vec<String>,
    /// SHA-1 (hex) of the file text.
    pub digest: String,
}

/// SHA-1 hex digest, as `Digest::SHA::sha1_hex`.
pub fn sha1_hex(text: &str) -> String {
    let d = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        text.as_bytes(),
    );
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `^(\S+):\s*(\S+)\s*$`
fn section_header(line: &str) -> Option<(&str, &str)> {
    let (kind, rest) = line.split_once(':')?;
    if kind.is_empty() || kind.chars().any(char::is_whitespace) {
        return None;
    }
    let id = rest.trim();
    if id.is_empty() || id.chars().any(char::is_whitespace) {
        return None;
    }
    Some((kind, id))
}

/// `^\s+(\S+)(\s+(.*\S))?\s*$`
fn property_line(line: &str) -> Option<(&str, Option<&str>)> {
    if !line.starts_with(char::is_whitespace) {
        return None;
    }
    let t = line.trim();
    if t.is_empty() {
        return None;
    }
    match t.split_once(char::is_whitespace) {
        Some((k, v)) => Some((k, Some(v.trim_start()))),
        None => Some((t, None)),
    }
}

impl SectionConfig {
    /// Parses a file of `section` (an empty text is an empty config).
    pub fn parse(section: Section, text: &str) -> Self {
        let mut cfg = SectionConfig {
            digest: sha1_hex(text),
            ..Default::default()
        };
        let lines: Vec<&str> = text
            .split('\n')
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            i += 1;
            if line.is_empty() {
                continue;
            }
            let Some((kind, id)) = section_header(line) else {
                continue;
            };
            let kind = if section.lowercase_type() {
                kind.to_lowercase()
            } else {
                kind.to_string()
            };
            let opts = options(section, &kind);
            let skip = !known_type(section, &kind);
            let mut obj = SdnObject::new();
            while i < lines.len() && !lines[i].is_empty() {
                let line = lines[i];
                i += 1;
                if skip {
                    continue;
                }
                let Some((key, value)) = property_line(line) else {
                    continue;
                };
                if opts.is_some_and(|o| !o.iter().any(|(k, _)| *k == key)) {
                    continue; // unexpected property: skipped with a warning
                }
                let k = kind_of(section, key);
                let value = match (k, value) {
                    (Kind::Bool, None) => Some(SdnValue::Bool(true)),
                    (_, None) => None,
                    (_, Some(v)) => SdnValue::decode(k, v),
                };
                let Some(value) = value else {
                    continue;
                };
                match (k, obj.get_mut(key)) {
                    (Kind::List, Some(SdnValue::List(l))) => l.push(value.text()),
                    (Kind::List, None) => {
                        obj.insert(key.to_string(), SdnValue::List(vec![value.text()]));
                    }
                    (_, Some(_)) => {} // duplicate attribute: skipped
                    (_, None) => {
                        obj.insert(key.to_string(), value);
                    }
                }
            }
            if skip {
                continue;
            }
            // check_config(create): a section without a required option is dropped
            if let Some(opts) = opts
                && opts.iter().any(|(k, req)| *req && !obj.contains_key(*k))
            {
                continue;
            }
            obj.insert("type".to_string(), SdnValue::Str(kind));
            if !cfg.ids.contains_key(id) {
                cfg.order.push(id.to_string());
            }
            cfg.ids.insert(id.to_string(), obj);
        }
        cfg
    }

    /// Adds or replaces a section (new ones go to the end of the file).
    pub fn insert(&mut self, id: &str, obj: SdnObject) {
        if !self.ids.contains_key(id) {
            self.order.push(id.to_string());
        }
        self.ids.insert(id.to_string(), obj);
    }

    /// Removes a section.
    pub fn remove(&mut self, id: &str) {
        self.ids.remove(id);
        self.order.retain(|o| o != id);
    }

    /// The file text, as `SectionConfig::write_config` writes it.
    pub fn write(&self, section: Section) -> String {
        let mut out = String::new();
        for id in &self.order {
            let Some(obj) = self.ids.get(id) else {
                continue;
            };
            let kind = object_type(obj);
            out.push_str(&format!("{kind}: {id}\n"));
            let keys: Vec<(&str, bool)> = match options(section, &kind) {
                Some(opts) => {
                    let mut k: Vec<(&str, bool)> = opts.to_vec();
                    k.sort_by_key(|(name, req)| (!*req, *name));
                    k
                }
                None => obj
                    .keys()
                    .filter(|k| *k != "type")
                    .map(|k| (k.as_str(), false))
                    .collect(),
            };
            for (key, _) in keys {
                let Some(v) = obj.get(key) else {
                    continue;
                };
                match v {
                    SdnValue::List(items) => {
                        for item in items {
                            out.push_str(&format!("\t{key} {item}\n"));
                        }
                    }
                    other => {
                        let text = other.text();
                        if !text.is_empty() {
                            out.push_str(&format!("\t{key} {text}\n"));
                        }
                    }
                }
            }
            out.push('\n');
        }
        out
    }
}

/// `/etc/pve/sdn/.running-config`: what the last apply committed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunningConfig {
    /// The commit counter (`None` before the first apply).
    pub version: Option<i64>,
    /// The committed sections (zones, vnets, subnets, controllers).
    pub sections: BTreeMap<Section, BTreeMap<String, SdnObject>>,
}

impl RunningConfig {
    /// Parses the JSON (an empty or broken file is an empty config, as in PVE).
    pub fn parse(text: &str) -> Self {
        let Ok(J::Object(root)) = serde_json::from_str::<J>(text) else {
            return Self::default();
        };
        let mut cfg = RunningConfig {
            version: root.get("version").and_then(J::as_i64),
            ..Default::default()
        };
        for section in Section::ALL {
            let Some(key) = section.running_key() else {
                continue;
            };
            let Some(J::Object(ids)) = root.get(key).and_then(|s| s.get("ids")) else {
                continue;
            };
            let mut objs = BTreeMap::new();
            for (id, obj) in ids {
                let J::Object(obj) = obj else {
                    continue;
                };
                let o: SdnObject = obj
                    .iter()
                    .filter_map(|(k, v)| {
                        SdnValue::from_json(kind_of(section, k), v).map(|v| (k.clone(), v))
                    })
                    .collect();
                objs.insert(id.clone(), o);
            }
            cfg.sections.insert(section, objs);
        }
        cfg
    }

    /// The committed objects of a section (empty when none).
    pub fn section(&self, section: Section) -> BTreeMap<String, SdnObject> {
        self.sections.get(&section).cloned().unwrap_or_default()
    }

    /// The JSON text (keys sorted).
    pub fn write(&self) -> String {
        let mut root = Map::new();
        for section in Section::ALL {
            let Some(key) = section.running_key() else {
                continue;
            };
            let ids: Map<String, J> = self
                .sections
                .get(&section)
                .map(|objs| {
                    objs.iter()
                        .map(|(id, o)| {
                            let obj: Map<String, J> =
                                o.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
                            (id.clone(), J::Object(obj))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut s = Map::new();
            s.insert("ids".into(), J::Object(ids));
            root.insert(key.into(), J::Object(s));
        }
        if let Some(v) = self.version {
            root.insert("version".into(), J::from(v));
        }
        J::Object(root).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONES: &str = "\
# managed by PVE
vlan: lab
\tbridge vmbr0
\tipam pve
\tnodes pve2,pve1,bad_name

simple: Simple1
\tmtu 1450
\tbridge vmbr9

qinq: broken
\tbridge vmbr0

faucet: other
\tdpid 1

evpn: ev
\tcontroller ctl
\tvrf-vxlan 10000
\tadvertise-subnets
\tmac BC:24:11:00:00:01
";

    #[test]
    fn parse_and_write_zones() {
        let cfg = SectionConfig::parse(Section::Zones, ZONES);
        assert_eq!(cfg.digest, sha1_hex(ZONES));
        assert_eq!(cfg.order, ["lab", "Simple1", "ev"]);
        let lab = &cfg.ids["lab"];
        assert_eq!(lab["type"], SdnValue::Str("vlan".into()));
        assert_eq!(
            lab["nodes"],
            SdnValue::Nodes(vec!["pve1".into(), "pve2".into()])
        );
        // an option of another plugin is skipped
        assert!(!cfg.ids["Simple1"].contains_key("bridge"));
        assert_eq!(cfg.ids["Simple1"]["mtu"], SdnValue::Int(1450));
        assert_eq!(cfg.ids["ev"]["advertise-subnets"], SdnValue::Bool(true));
        assert_eq!(
            cfg.write(Section::Zones),
            "vlan: lab\n\tbridge vmbr0\n\tipam pve\n\tnodes pve1,pve2\n\n\
             simple: Simple1\n\tmtu 1450\n\n\
             evpn: ev\n\tcontroller ctl\n\tvrf-vxlan 10000\n\tadvertise-subnets 1\n\tmac BC:24:11:00:00:01\n\n"
        );
        assert_eq!(sha1_hex(""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    }

    #[test]
    fn subnets_keep_arrays() {
        let text = "subnet: lab-10.0.0.0-24\n\tvnet v1\n\
                    \tdhcp-range start-address=10.0.0.10,end-address=10.0.0.20\n\
                    \tdhcp-range start-address=10.0.0.30,end-address=10.0.0.40\n\
                    \tgateway 10.0.0.1\n\tsnat 1\n\n";
        let cfg = SectionConfig::parse(Section::Subnets, text);
        let s = &cfg.ids["lab-10.0.0.0-24"];
        assert_eq!(s["snat"], SdnValue::Bool(true));
        assert!(matches!(&s["dhcp-range"], SdnValue::List(l) if l.len() == 2));
        assert_eq!(cfg.write(Section::Subnets), text);
    }

    #[test]
    fn running_config_round_trip() {
        let zones = SectionConfig::parse(Section::Zones, ZONES);
        let mut running = RunningConfig {
            version: Some(3),
            ..Default::default()
        };
        running.sections.insert(Section::Zones, zones.ids.clone());
        let text = running.write();
        assert!(text.contains(r#""nodes":{"pve1":1,"pve2":1}"#), "{text}");
        assert!(text.contains(r#""advertise-subnets":1"#), "{text}");
        let back = RunningConfig::parse(&text);
        assert_eq!(back.version, Some(3));
        assert_eq!(back.section(Section::Zones), zones.ids);
        assert_eq!(RunningConfig::parse("garbage"), RunningConfig::default());
    }
}
