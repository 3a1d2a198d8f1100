//! Reading `/etc/network/interfaces` the way PVE does.
//!
//! The rules follow PVE's reader (`PVE::Network::Interfaces`, formerly in
//! `PVE::INotify`): stanza boundaries, option aliases, which options are kept
//! per interface and which per address family, type inference and the
//! address/netmask/CIDR normalisation. Kernel information comes from a
//! [`HostState`] instead of `ip link`.

use crate::links::HostState;
use crate::model::{
    Config, Iface, Value, alias_parent, is_perl_space, netmask_bits, perl_split_ws, vlan_dot_parent,
};

/// Bonding modes by their numeric ifenslave id; PVE always stores the name.
pub const BOND_MODES: [(&str, &str); 7] = [
    ("balance-rr", "0"),
    ("active-backup", "1"),
    ("balance-xor", "2"),
    ("broadcast", "3"),
    ("802.3ad", "4"),
    ("balance-tlb", "5"),
    ("balance-alb", "6"),
];

/// Options that are stored on the interface verbatim (after alias mapping).
const SIMPLE_OPTIONS: [&str; 26] = [
    "mtu",
    "ovs_type",
    "ovs_options",
    "ovs_bridge",
    "ovs_bonds",
    "ovs_ports",
    "bridge_fd",
    "bridge_vids",
    "bridge-access",
    "bridge-learning",
    "bridge-arp-nd-suppress",
    "bridge-unicast-flood",
    "bridge-multicast-flood",
    "bridge-disable-mac-learning",
    "bond_miimon",
    "bond_xmit_hash_policy",
    "bond-primary",
    "link-type",
    "uplink-id",
    "vlan-protocol",
    "vlan-raw-device",
    "vlan-id",
    "vxlan-id",
    "vxlan-svcnodeip",
    "vxlan-physdev",
    "vxlan-local-tunnelip",
];

/// Alternative spellings PVE maps to its canonical property names. Note that
/// `vlan-raw-device` is already canonical (with dashes) while the underscore
/// spelling `vlan_raw_device` is *not* an alias: PVE keeps it as an unknown
/// option of the stanza.
fn canonical_option(id: &str) -> &str {
    match id {
        "ovs_mtu" => "mtu",
        "bond-slaves" | "bond_slaves" => "slaves",
        "bond-xmit-hash-policy" => "bond_xmit_hash_policy",
        "bond-mode" => "bond_mode",
        "bond-miimon" => "bond_miimon",
        "bridge-vlan-aware" => "bridge_vlan_aware",
        "bridge-fd" => "bridge_fd",
        "bridge-stp" => "bridge_stp",
        "bridge-ports" => "bridge_ports",
        "bridge-vids" => "bridge_vids",
        other => other,
    }
}

/// Strip leading Perl whitespace.
fn ltrim(s: &str) -> &str {
    s.trim_start_matches(is_perl_space)
}

/// `$line =~ s/\s+$//`.
fn rtrim(s: &str) -> &str {
    s.trim_end_matches(is_perl_space)
}

/// If `line` (after leading whitespace) starts with `keyword` followed by
/// whitespace, return the rest after that whitespace (`\s+(.*)$`).
fn keyword_rest<'a>(line: &'a str, keyword: &str) -> Option<&'a str> {
    let rest = ltrim(line).strip_prefix(keyword)?;
    if !rest.starts_with(is_perl_space) {
        return None;
    }
    Some(ltrim(rest))
}

/// A matched `iface NAME [FAMILY METHOD]` line.
struct StanzaHead {
    name: String,
    family: Option<String>,
    method: Option<String>,
}

/// `m/^\s*iface\s+(\S+)(?:\s+(inet6?)\s+(\S+))?\s*$/`
fn match_iface_line(line: &str) -> Option<StanzaHead> {
    let rest = keyword_rest(line, "iface")?;
    let tokens: Vec<&str> = rest
        .split(is_perl_space)
        .filter(|t| !t.is_empty())
        .collect();
    match tokens.as_slice() {
        [name] => Some(StanzaHead {
            name: (*name).to_string(),
            family: None,
            method: None,
        }),
        [name, family, method] if *family == "inet" || *family == "inet6" => Some(StanzaHead {
            name: (*name).to_string(),
            family: Some((*family).to_string()),
            method: Some((*method).to_string()),
        }),
        _ => None,
    }
}

/// Lines that end a stanza: `iface`, `mapping`, `auto`, `source`,
/// `source-directory` (each followed by whitespace) or anything `allow-`.
fn is_stanza_break(line: &str) -> bool {
    let t = ltrim(line);
    if t.starts_with("allow-") {
        return true;
    }
    ["iface", "mapping", "auto", "source", "source-directory"]
        .iter()
        .any(|kw| {
            t.strip_prefix(kw)
                .is_some_and(|r| r.starts_with(is_perl_space))
        })
}

/// `m/^\s*((\S+)\s+(.+))$/` → (whole option, id, value).
fn match_option(line: &str) -> Option<(&str, &str, &str)> {
    let t = ltrim(line);
    let id_end = t.find(is_perl_space)?;
    let (id, after) = t.split_at(id_end);
    let value = ltrim(after);
    if id.is_empty() || value.is_empty() {
        return None;
    }
    Some((t, id, value))
}

/// Append to a string-valued comment property.
fn push_comment(target: &mut Iface, text: &str) {
    let mut c = if target.truthy("comments") {
        target.text("comments")
    } else {
        String::new()
    };
    c.push_str(text);
    c.push('\n');
    target.set_str("comments", c);
}

fn push_list(target: &mut Iface, key: &str, item: &str) {
    let mut l = target.list(key);
    l.push(Some(item.to_string()));
    target.set(key, Value::List(l));
}

/// Parse the text of an interfaces file like PVE's reader.
///
/// `host` supplies what PVE would ask the kernel (existing NICs, active
/// links). The result contains every interface PVE would report, including
/// `lo` (the API hides it from the list) and the physical NICs of `host` even
/// when the file does not mention them.
pub fn parse_interfaces(text: &str, host: &HostState) -> Config {
    let mut config = Config::default();
    let lines: Vec<&str> = text
        .split_inclusive('\n')
        .map(|l| l.strip_suffix('\n').unwrap_or(l))
        .collect();

    // we try to keep the order of the file; 1 is reserved for lo
    let mut priority: i64 = 2;
    let mut idx = 0;
    let mut redo: Option<&str> = None;

    loop {
        let line: &str = match redo.take() {
            Some(l) => l,
            None => {
                let Some(l) = lines.get(idx) else { break };
                idx += 1;
                l
            }
        };

        if ltrim(line).starts_with('#') {
            continue;
        }

        let autostart_list = keyword_rest(line, "allow-auto")
            .or_else(|| keyword_rest(line, "auto"))
            .or_else(|| keyword_rest(line, "allow-ovs"))
            .or_else(|| keyword_rest(line, "allow-hotplug"));
        if let Some(rest) = autostart_list {
            for name in perl_split_ws(rest) {
                config
                    .ifaces
                    .entry(name)
                    .or_default()
                    .set("autostart", Value::Int(1));
            }
            continue;
        }

        if let Some(head) = match_iface_line(line) {
            let suffix = head
                .family
                .as_deref()
                .map(|f| f.strip_prefix("inet").unwrap_or(f).to_string());
            // by-family settings, merged into the interface with the suffix
            let mut fam = Iface::new();
            if let Some(m) = &head.method {
                fam.set_str("method", m.clone());
            }

            let d = config.ifaces.entry(head.name.clone()).or_default();
            if !d.truthy("priority") {
                d.set("priority", Value::Int(priority));
                priority += 1;
            }
            let mut families = d.list("families");
            families.push(head.family.clone());
            d.set("families", Value::List(families));

            let mut eof = true;
            while let Some(raw) = lines.get(idx) {
                idx += 1;
                let l = rtrim(raw);
                let trimmed = ltrim(l);
                if let Some(comment) = trimmed.strip_prefix('#') {
                    let comment = rtrim(comment);
                    if suffix.is_some() {
                        push_comment(&mut fam, comment);
                    } else {
                        push_comment(d, comment);
                    }
                } else if is_stanza_break(l) {
                    redo = Some(l);
                    eof = false;
                    break;
                } else if let Some((option, id, value)) = match_option(l) {
                    apply_option(d, &mut fam, suffix.as_deref(), option, id, value);
                } else {
                    redo = Some(l);
                    eof = false;
                    break;
                }
            }

            if let Some(suffix) = &suffix {
                for (k, v) in fam.iter() {
                    d.set(format!("{k}{suffix}"), v.clone());
                }
            }
            if eof {
                break;
            }
            continue;
        }

        if line.contains(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            config.options.push((priority, line.to_string()));
            priority += 1;
        }
    }

    finish(&mut config, host);
    config
}

/// Store one `id value` option line of a stanza.
fn apply_option(
    d: &mut Iface,
    fam: &mut Iface,
    suffix: Option<&str>,
    option: &str,
    id: &str,
    value: &str,
) {
    let id = canonical_option(id);
    match id {
        "address" | "netmask" | "broadcast" | "gateway" => {
            if let Some(suffix) = suffix {
                d.set_str(format!("{id}{suffix}"), value);
            } else if id != "netmask" && value.contains(':') {
                // typeless stanza: IPv6 values go to the `6` properties
                d.set_str(format!("{id}6"), value);
            } else {
                d.set_str(id, value);
            }
        }
        _ if SIMPLE_OPTIONS.contains(&id) => d.set_str(id, value),
        "slaves" | "bridge_ports" => {
            let mut devs: Vec<String> = Vec::new();
            for p in perl_split_ws(value) {
                if p == "none" {
                    if id == "bridge_ports" {
                        d.set("is_empty_bridge", Value::Int(1));
                    }
                    continue;
                }
                devs.push(p);
            }
            devs.sort();
            devs.dedup();
            let joined = devs.join(" ");
            if d.truthy(id) {
                if Value::str(joined.clone()).is_true() {
                    let cur = d.text(id);
                    d.set_str(id, format!("{cur} {joined}"));
                }
            } else if Value::str(joined.clone()).is_true() {
                d.set_str(id, joined);
            } else {
                d.set_str(id, "");
            }
        }
        "bridge_stp" => {
            let v = value.trim_matches(is_perl_space).to_ascii_lowercase();
            let on = v == "on" || v == "yes";
            d.set_str(id, if on { "on" } else { "off" });
        }
        // any value, even `no`, makes the bridge VLAN aware (as in PVE)
        "bridge_vlan_aware" => d.set(id, Value::Int(1)),
        "bond_mode" => {
            let name = BOND_MODES
                .iter()
                .find(|(_, num)| *num == value)
                .map_or(value, |(name, _)| name);
            d.set_str(id, name);
        }
        "vxlan-remoteip" => push_list(d, id, value),
        _ => {
            if suffix.is_some() {
                push_list(fam, "options", option);
            } else {
                push_list(d, "options", option);
            }
        }
    }
}

/// OVS options (`k=v` pairs) in their original order.
pub fn parse_ovs_options(data: &str) -> Vec<(String, String)> {
    let mut opts: Vec<(String, String)> = Vec::new();
    for kv in perl_split_ws(data) {
        let Some((k, v)) = kv.split_once('=') else {
            continue;
        };
        if !Value::str(k).is_true() {
            continue;
        }
        if let Some(slot) = opts.iter_mut().find(|(key, _)| key == k) {
            slot.1 = v.to_string();
        } else {
            opts.push((k.to_string(), v.to_string()));
        }
    }
    opts
}

fn store_ovs_options(d: &mut Iface, opts: &[(String, String)]) {
    let joined: Vec<String> = opts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let joined = joined.join(" ");
    if joined.is_empty() {
        d.remove("ovs_options");
    } else {
        d.set_str("ovs_options", joined);
    }
}

/// Remove one key from `ovs_options`, returning its value.
fn extract_ovs_option(d: &mut Iface, name: &str) -> Option<String> {
    let mut opts = parse_ovs_options(&d.text("ovs_options"));
    let pos = opts.iter().position(|(k, _)| k == name);
    let v = pos.map(|p| opts.remove(p).1);
    store_ovs_options(d, &opts);
    v
}

/// Set (truthy value) or delete (`None`/falsy) keys in `ovs_options`.
pub fn set_ovs_option(d: &mut Iface, key: &str, value: Option<&str>) {
    let mut opts = parse_ovs_options(&d.text("ovs_options"));
    match value {
        Some(v) if Value::str(v).is_true() => {
            if let Some(slot) = opts.iter_mut().find(|(k, _)| k == key) {
                slot.1 = v.to_string();
            } else {
                opts.push((key.to_string(), v.to_string()));
            }
        }
        _ => opts.retain(|(k, _)| k != key),
    }
    store_ovs_options(d, &opts);
}

fn extract_tag(d: &mut Iface) {
    if let Some(tag) = extract_ovs_option(d, "tag") {
        d.set_str("ovs_tag", tag);
    }
}

fn is_cidr(addr: &str) -> bool {
    addr.rsplit_once('/')
        .is_some_and(|(_, m)| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
}

/// `m/^(.+)\/(\d+)$/`
fn cidr_split(cidr: &str) -> Option<(String, String)> {
    let (a, m) = cidr.rsplit_once('/')?;
    (!a.is_empty() && !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()))
        .then(|| (a.to_string(), m.to_string()))
}

/// PVE's `_get_cidr`: combine address and netmask (bits or dotted) if possible.
fn get_cidr(addr: &str, mask: Option<&Value>) -> Option<String> {
    if is_cidr(addr) {
        return Some(addr.to_string());
    }
    let mask = mask.filter(|m| m.is_true())?.to_perl_string();
    if !mask.is_empty() && mask.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!("{addr}/{mask}"));
    }
    match netmask_bits(&mask) {
        Some(bits) if bits != 0 => Some(format!("{addr}/{bits}")),
        _ => None,
    }
}

/// Copy the `exists` flag of a VLAN's or alias' parent (creating a phantom
/// parent with `exists = 0` when it is unknown, as PVE does).
fn inherit_exists(config: &mut Config, name: &str, parent: &str) {
    let inherited = match config.ifaces.get(parent) {
        Some(p) => p.get("exists").cloned().unwrap_or(Value::Null),
        None => {
            let mut phantom = Iface::new();
            phantom.set("exists", Value::Int(0));
            config.ifaces.insert(parent.to_string(), phantom);
            Value::Int(0)
        }
    };
    if let Some(d) = config.ifaces.get_mut(name) {
        d.set("exists", inherited);
    }
}

/// Everything PVE does after reading the lines: kernel flags, `lo`, type
/// inference, CIDR normalisation, defaults and the `allow-BRIDGE` clean-up.
fn finish(config: &mut Config, host: &HostState) {
    // A physical NIC marks its stanza as existing, or the stanza of one of
    // its altnames when the file uses that name.
    for link in host.physical() {
        let target = link
            .altnames
            .iter()
            .find(|a| config.ifaces.contains_key(a.as_str()))
            .unwrap_or(&link.name);
        config
            .ifaces
            .entry(target.clone())
            .or_default()
            .set("exists", Value::Int(1));
    }
    for name in host.active() {
        if let Some(d) = config.ifaces.get_mut(name) {
            d.set("active", Value::Int(1));
        }
    }
    if !config.ifaces.contains_key("lo") {
        let mut lo = Iface::new();
        lo.set("priority", Value::Int(1));
        lo.set_str("method", "loopback");
        lo.set_str("type", "loopback");
        lo.set("autostart", Value::Int(1));
        config.ifaces.insert("lo".to_string(), lo);
    }

    // Interfaces created while this loop runs (phantom parents) are not
    // visited, exactly like the Perl loop over a pre-sorted key list.
    let names: Vec<String> = config.ifaces.keys().cloned().collect();
    for name in &names {
        infer_type(config, host, name);
        let Some(d) = config.ifaces.get_mut(name) else {
            continue;
        };
        normalise_addresses(d);
        if !d.truthy("method") {
            d.set_str("method", "manual");
        }
        if !d.truthy("method6") {
            d.set_str("method6", "manual");
        }
        if let Some(c6) = d.remove("comments6")
            && c6.is_true()
        {
            let merged = format!("{}{}", d.text("comments"), c6.to_perl_string());
            d.set_str("comments", merged);
        }
        if !d.truthy("families") {
            d.set("families", Value::List(vec![Some("inet".into())]));
        }
    }

    let ifaces = &config.ifaces;
    let options = std::mem::take(&mut config.options);
    config.options = options
        .into_iter()
        .filter_map(|(pri, line)| {
            if line.starts_with("allow-ovs") && keyword_rest(&line, "allow-ovs").is_some() {
                return None;
            }
            let Some(rest) = line.strip_prefix("allow-") else {
                return Some((pri, line));
            };
            let Some(bridge_end) = rest.find(is_perl_space) else {
                return Some((pri, line));
            };
            let (bridge, after) = rest.split_at(bridge_end);
            if bridge.is_empty() {
                return Some((pri, line));
            }
            let mut ports = perl_split_ws(ltrim(after));
            if let Some(br) = ifaces.get(bridge) {
                let in_ovs: Vec<String> = perl_split_ws(&br.text("ovs_ports"));
                ports.retain(|p| !in_ovs.contains(p));
            }
            (!ports.is_empty()).then(|| (pri, format!("allow-{bridge} {}", ports.join(" "))))
        })
        .collect();
}

fn infer_type(config: &mut Config, host: &HostState, name: &str) {
    let Some(d) = config.ifaces.get_mut(name) else {
        return;
    };
    d.set_str("type", "unknown");

    if d.defined("bridge_ports") || d.truthy("is_empty_bridge") {
        d.remove("is_empty_bridge");
        d.set_str("type", "bridge");
        if !d.defined("bridge_stp") {
            d.set_str("bridge_stp", "off");
        }
        if !d.defined("bridge_fd") && d.is("bridge_stp", "off") {
            d.set("bridge_fd", Value::Int(0));
        }
    } else if d.truthy("ovs_type") && d.is("ovs_type", "OVSBridge") {
        d.set_str("type", "OVSBridge");
    } else if name
        .strip_prefix("bond")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    {
        if !d.truthy("ovs_type") {
            d.set_str("type", "bond");
        } else if d.is("ovs_type", "OVSBond") {
            d.set_str("type", "OVSBond");
            // translate: ovs_options => bond_mode
            let mut mode = extract_ovs_option(d, "bond_mode");
            let lacp = extract_ovs_option(d, "lacp");
            if lacp.as_deref() == Some("active") && mode.as_deref() == Some("balance-slb") {
                mode = Some("lacp-balance-slb".into());
            }
            // balance-tcp needs lacp
            if mode.as_deref() == Some("balance-tcp") {
                mode = Some("lacp-balance-tcp".into());
            }
            d.set("bond_mode", mode.map_or(Value::Null, Value::Str));
            extract_tag(d);
        }
    } else if let Some(parent) = alias_parent(name) {
        d.set_str("type", "alias");
        let parent = parent.to_string();
        inherit_exists(config, name, &parent);
    } else if let Some((dev, id)) = vlan_dot_parent(name) {
        d.set_str("type", "vlan");
        if !d.truthy("vlan-raw-device") {
            d.set_str("vlan-raw-device", dev);
        }
        if Value::str(id).is_true() {
            d.set_str("vlan-id", id);
        }
        let raw = d.text("vlan-raw-device");
        inherit_exists(config, name, &raw);
    } else if d.truthy("vlan-raw-device") {
        d.set_str("type", "vlan");
        if let Some(id) = name.strip_prefix("vlan")
            && !id.is_empty()
            && id.bytes().all(|b| b.is_ascii_digit())
            && Value::str(id).is_true()
        {
            d.set_str("vlan-id", id);
        }
        let raw = d.text("vlan-raw-device");
        inherit_exists(config, name, &raw);
    } else if host.resolve(name).is_some_and(|l| l.is_physical())
        || crate::model::is_physical_nic(name)
    {
        if !d.truthy("ovs_type") {
            d.set_str("type", "eth");
        } else if d.is("ovs_type", "OVSPort") {
            d.set_str("type", "OVSPort");
            extract_tag(d);
        }
    } else if name == "lo" {
        d.set_str("type", "loopback");
    } else if d.truthy("vxlan-id") {
        d.set_str("type", "vxlan");
    } else if d.defined("ovs_type") {
        if d.is("ovs_type", "OVSIntPort") {
            d.set_str("type", "OVSIntPort");
            extract_tag(d);
        }
    } else if d.defined("link-type") && d.is("link-type", "dummy") {
        d.set_str("type", "dummy");
    }
}

/// Map `address`/`netmask` to `cidr` (and the IPv6 counterparts).
fn normalise_addresses(d: &mut Iface) {
    if d.truthy("address") {
        let addr = d.text("address");
        if let Some((base, mask)) = is_cidr(&addr).then(|| cidr_split(&addr)).flatten() {
            d.set_str("cidr", addr.clone());
            d.set_str("address", base);
            d.set_str("netmask", mask);
        } else if let Some(cidr) = get_cidr(&addr, d.get("netmask")) {
            if let Some((_, mask)) = cidr_split(&cidr) {
                d.set_str("netmask", mask);
            }
            d.set_str("cidr", cidr);
        } else {
            // no mask, else we'd got a cidr above
            d.set_str("cidr", format!("{addr}/32"));
        }
    }
    if d.truthy("address6") {
        let addr = d.text("address6");
        if let Some((base, mask)) = is_cidr(&addr).then(|| cidr_split(&addr)).flatten() {
            d.set_str("cidr6", addr.clone());
            d.set_str("address6", base);
            d.set_str("netmask6", mask);
        } else if let Some(cidr) = get_cidr(&addr, d.get("netmask6")) {
            d.set_str("cidr6", cidr);
        } else {
            d.set_str("cidr6", format!("{addr}/128"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        let host = HostState::derived_from_file(text, &[]);
        parse_interfaces(text, &host)
    }

    fn s(v: &str) -> Value {
        Value::str(v)
    }

    #[test]
    fn bridge_with_cidr_and_aliases() {
        let c = parse(
            "auto lo\niface lo inet loopback\n\niface eno1 inet manual\n\n\
             auto vmbr0\niface vmbr0 inet static\n\taddress 192.0.2.10/24\n\tgateway 192.0.2.1\n\
             \tbridge-ports eno1\n\tbridge-stp off\n\tbridge-fd 0\n",
        );
        let br = &c.ifaces["vmbr0"];
        assert_eq!(br.get("type"), Some(&s("bridge")));
        assert_eq!(br.get("address"), Some(&s("192.0.2.10")));
        assert_eq!(br.get("netmask"), Some(&s("24")));
        assert_eq!(br.get("cidr"), Some(&s("192.0.2.10/24")));
        assert_eq!(br.get("gateway"), Some(&s("192.0.2.1")));
        assert_eq!(br.get("bridge_ports"), Some(&s("eno1")));
        assert_eq!(br.get("bridge_fd"), Some(&s("0")));
        assert_eq!(br.get("bridge_stp"), Some(&s("off")));
        assert_eq!(br.get("method"), Some(&s("static")));
        assert_eq!(br.get("method6"), Some(&s("manual")));
        assert_eq!(br.get("priority"), Some(&Value::Int(4)));
        assert_eq!(br.get("autostart"), Some(&Value::Int(1)));
        assert_eq!(br.get("active"), Some(&Value::Int(1)));
        assert_eq!(
            br.get("families"),
            Some(&Value::List(vec![Some("inet".into())]))
        );
        let eno1 = &c.ifaces["eno1"];
        assert_eq!(eno1.get("type"), Some(&s("eth")));
        assert_eq!(eno1.get("exists"), Some(&Value::Int(1)));
        assert_eq!(eno1.get("active"), None);
        assert_eq!(c.ifaces["lo"].get("type"), Some(&s("loopback")));
    }

    #[test]
    fn bridge_defaults_are_numbers() {
        let c = parse("iface vmbr1 inet manual\n\tbridge_ports none\n");
        let br = &c.ifaces["vmbr1"];
        assert_eq!(br.get("type"), Some(&s("bridge")));
        assert_eq!(br.get("bridge_ports"), Some(&s("")));
        assert_eq!(br.get("bridge_fd"), Some(&Value::Int(0)));
        assert_eq!(br.get("bridge_stp"), Some(&s("off")));
        assert!(!br.contains("is_empty_bridge"));
    }

    #[test]
    fn ports_sorted_and_deduplicated_per_line() {
        let c = parse(
            "iface vmbr0 inet manual\n\tbridge-ports eno2 eno1 eno2\n\tbridge-ports eno0\n\
             \niface bond0 inet manual\n\tbond-slaves eno4 eno3\n\tbond-mode 4\n",
        );
        assert_eq!(
            c.ifaces["vmbr0"].get("bridge_ports"),
            Some(&s("eno1 eno2 eno0"))
        );
        assert_eq!(c.ifaces["bond0"].get("slaves"), Some(&s("eno3 eno4")));
        assert_eq!(c.ifaces["bond0"].get("bond_mode"), Some(&s("802.3ad")));
        assert_eq!(c.ifaces["bond0"].get("type"), Some(&s("bond")));
    }

    #[test]
    fn options_comments_and_families() {
        let c = parse(
            "iface eno1 inet static\n\taddress 10.0.0.1\n\tnetmask 255.255.0.0\n\
             \tpost-up echo hi\n# first\n#second  \n\
             iface eno1 inet6 static\n\taddress fd00::1\n\tnetmask 64\n\tpre-up true\n# six\n",
        );
        let d = &c.ifaces["eno1"];
        assert_eq!(
            d.get("families"),
            Some(&Value::List(vec![
                Some("inet".into()),
                Some("inet6".into())
            ]))
        );
        assert_eq!(d.get("netmask"), Some(&s("16")));
        assert_eq!(d.get("cidr"), Some(&s("10.0.0.1/16")));
        assert_eq!(d.get("cidr6"), Some(&s("fd00::1/64")));
        assert_eq!(d.get("netmask6"), Some(&s("64")));
        assert_eq!(
            d.get("options"),
            Some(&Value::List(vec![Some("post-up echo hi".into())]))
        );
        assert_eq!(
            d.get("options6"),
            Some(&Value::List(vec![Some("pre-up true".into())]))
        );
        // comments6 are merged into comments after reading, like PVE does
        assert_eq!(d.get("comments"), Some(&s(" first\nsecond\n six\n")));
        assert!(!d.contains("comments6"));
    }

    #[test]
    fn typeless_stanza() {
        let c = parse(
            "auto vmbr1\niface vmbr1\n\taddress 198.51.100.4/24\n\taddress fd12::a:1/64\n\
             \tgateway 198.51.100.1\n\tgateway fd12::1\n\tbridge-ports none\n# note\n",
        );
        let d = &c.ifaces["vmbr1"];
        assert_eq!(d.get("families"), Some(&Value::List(vec![None])));
        assert_eq!(d.get("cidr"), Some(&s("198.51.100.4/24")));
        assert_eq!(d.get("cidr6"), Some(&s("fd12::a:1/64")));
        assert_eq!(d.get("gateway6"), Some(&s("fd12::1")));
        assert_eq!(d.get("method"), Some(&s("manual")));
        assert_eq!(d.get("comments"), Some(&s(" note\n")));
        assert_eq!(d.get("type"), Some(&s("bridge")));
    }

    #[test]
    fn vlans_and_aliases() {
        let c = parse(
            "iface eno1 inet manual\n\niface eno1.100 inet manual\n\n\
             iface vlan20 inet manual\n\tvlan-raw-device eno1\n\n\
             iface mgmt inet manual\n\tvlan-id 30\n\tvlan-raw-device eno1\n\n\
             iface eno1:1 inet static\n\taddress 10.1.1.1/24\n\n\
             iface vlan6 inet manual\n\tvlan_raw_device eno1\n",
        );
        let v = &c.ifaces["eno1.100"];
        assert_eq!(v.get("type"), Some(&s("vlan")));
        assert_eq!(v.get("vlan-raw-device"), Some(&s("eno1")));
        assert_eq!(v.get("vlan-id"), Some(&s("100")));
        assert_eq!(v.get("exists"), Some(&Value::Int(1)));
        assert_eq!(c.ifaces["vlan20"].get("vlan-id"), Some(&s("20")));
        assert_eq!(c.ifaces["mgmt"].get("type"), Some(&s("vlan")));
        assert_eq!(c.ifaces["eno1:1"].get("type"), Some(&s("alias")));
        // the underscore spelling is not an alias of vlan-raw-device
        let v6 = &c.ifaces["vlan6"];
        assert_eq!(v6.get("type"), Some(&s("unknown")));
        assert_eq!(
            v6.get("options"),
            Some(&Value::List(vec![Some("vlan_raw_device eno1".into())]))
        );
    }

    #[test]
    fn phantom_parent_for_unknown_vlan_parent() {
        let c = parse_interfaces("iface vmbr9.5 inet manual\n", &HostState::empty());
        assert_eq!(c.ifaces["vmbr9.5"].get("exists"), Some(&Value::Int(0)));
        let phantom = &c.ifaces["vmbr9"];
        assert_eq!(phantom.len(), 1);
        assert_eq!(phantom.get("exists"), Some(&Value::Int(0)));
    }

    #[test]
    fn ovs_types_and_allow_lines() {
        let c = parse(
            "allow-vmbr1 eno1 eno9\niface eno1 inet manual\n\tovs_type OVSPort\n\tovs_bridge vmbr1\n\
             \tovs_options tag=10 vlan_mode=access\n\n\
             allow-vmbr1 bond0\niface bond0 inet manual\n\tovs_bonds eno2 eno3\n\tovs_type OVSBond\n\
             \tovs_bridge vmbr1\n\tovs_options other=1 lacp=active bond_mode=balance-tcp\n\n\
             auto vmbr1\nallow-ovs vmbr1\niface vmbr1 inet manual\n\tovs_type OVSBridge\n\
             \tovs_ports eno1 bond0\n\tovs_mtu 9000\n",
        );
        let p = &c.ifaces["eno1"];
        assert_eq!(p.get("type"), Some(&s("OVSPort")));
        assert_eq!(p.get("ovs_tag"), Some(&s("10")));
        assert_eq!(p.get("ovs_options"), Some(&s("vlan_mode=access")));
        let b = &c.ifaces["bond0"];
        assert_eq!(b.get("type"), Some(&s("OVSBond")));
        assert_eq!(b.get("bond_mode"), Some(&s("lacp-balance-tcp")));
        assert_eq!(b.get("ovs_options"), Some(&s("other=1")));
        let br = &c.ifaces["vmbr1"];
        assert_eq!(br.get("type"), Some(&s("OVSBridge")));
        assert_eq!(br.get("mtu"), Some(&s("9000")));
        // the allow-vmbr1 lines only keep ports the bridge does not list
        assert_eq!(c.options, vec![(2, "allow-vmbr1 eno9".to_string())]);
    }

    #[test]
    fn blank_line_ends_stanza_and_orphans_become_options() {
        let c = parse(
            "source /etc/network/interfaces.d/*\n\niface eno1 inet static\n\taddress 10.0.0.2/24\n\n\
             \tgateway 10.0.0.1\nmapping hotplug\n\tscript grep\n",
        );
        assert!(!c.ifaces["eno1"].contains("gateway"));
        let lines: Vec<&str> = c.options.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(
            lines,
            vec![
                "source /etc/network/interfaces.d/*",
                "\tgateway 10.0.0.1",
                "mapping hotplug",
                "\tscript grep"
            ]
        );
        assert_eq!(c.options[0].0, 2);
        assert_eq!(c.ifaces["eno1"].get("priority"), Some(&Value::Int(3)));
    }

    #[test]
    fn dotted_netmask_without_bits_and_unknown_types() {
        let c = parse(
            "iface vlan3 inet static\n\taddress 0.0.0.0\n\tnetmask 0.0.0.0\n\tvlan-raw-device bond2\n\n\
             iface wg0 inet static\n\taddress 10.9.0.1/24\n\n\
             iface dummy1 inet manual\n\tlink-type dummy\n\n\
             iface vxlan2 inet manual\n\tvxlan-id 2\n\tvxlan-remoteip 192.0.2.3\n\tvxlan-remoteip 192.0.2.4\n",
        );
        let v = &c.ifaces["vlan3"];
        assert_eq!(v.get("cidr"), Some(&s("0.0.0.0/32")));
        assert_eq!(v.get("netmask"), Some(&s("0.0.0.0")));
        assert_eq!(c.ifaces["wg0"].get("type"), Some(&s("unknown")));
        assert_eq!(c.ifaces["dummy1"].get("type"), Some(&s("dummy")));
        let vx = &c.ifaces["vxlan2"];
        assert_eq!(vx.get("type"), Some(&s("vxlan")));
        assert_eq!(
            vx.get("vxlan-remoteip"),
            Some(&Value::List(vec![
                Some("192.0.2.3".into()),
                Some("192.0.2.4".into())
            ]))
        );
    }

    #[test]
    fn vlan_aware_any_value_and_stp() {
        let c = parse(
            "iface vmbr0 inet manual\n\tbridge-ports eno1\n\tbridge-stp YES\n\tbridge-vlan-aware no\n",
        );
        let br = &c.ifaces["vmbr0"];
        assert_eq!(br.get("bridge_vlan_aware"), Some(&Value::Int(1)));
        assert_eq!(br.get("bridge_stp"), Some(&s("on")));
        // STP on and no forward delay: PVE leaves bridge_fd unset
        assert!(!br.contains("bridge_fd"));
    }

    #[test]
    fn auto_line_without_stanza_creates_interface() {
        let c = parse("auto eno5\n");
        let d = &c.ifaces["eno5"];
        assert_eq!(d.get("type"), Some(&s("eth")));
        assert_eq!(d.get("autostart"), Some(&Value::Int(1)));
        assert!(!d.contains("priority"));
    }
}
