//! Parameter verification like PVE's JSON schema checker.
//!
//! pveproxy verifies every request against the method's schema before the
//! handler runs and answers `400 Parameter verification failed.` with one
//! message per offending parameter. The messages (and the order of the checks
//! that produce them) are PVE's: type check, format, length, range, enum,
//! `requires`, unknown properties. The SDN API ([`crate::sdn`]) uses the same
//! checker with its own formats (zone/vnet/subnet ids, IP lists, node lists…).

use std::collections::BTreeMap;
use std::net::Ipv6Addr;

use crate::model::split_list;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ty {
    Str,
    Int,
    Bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fmt {
    Iface,
    IfaceList,
    Ipv4,
    Ipv6,
    Ipv4Mask,
    CidrV4,
    CidrV6,
    ConfigIdList,
    VlanIdOrRangeList,
    Node,
    /// `pve-node-list`.
    NodeList,
    /// `pve-sdn-zone-id`, `pve-sdn-controller-id`, `pve-sdn-ipam-id`, `pve-sdn-dns-id`.
    SdnId(&'static str),
    /// `pve-sdn-vnet-id`.
    SdnVnetId,
    /// `pve-sdn-subnet-id`.
    SdnSubnetId,
    /// `ip`.
    Ip,
    /// `ip-list`.
    IpList,
    /// `dns-name`.
    DnsName,
    /// `mac-addr`.
    MacAddr,
    /// `pve-sdn-bgp-rt-list`.
    BgpRtList,
    /// `pve-configid-list` of the `delete` parameter of section configs.
    ConfigIdListStrict,
}

/// One property of a method's parameter schema.
#[derive(Clone, Copy, Debug)]
pub struct Prop {
    pub name: &'static str,
    ty: Ty,
    fmt: Option<Fmt>,
    enumeration: &'static [&'static str],
    minimum: Option<i64>,
    maximum: Option<i64>,
    min_length: Option<usize>,
    max_length: Option<usize>,
    optional: bool,
    requires: Option<&'static str>,
    pattern: Option<fn(&str) -> bool>,
}

impl Prop {
    /// The schema type's name in PVE's messages (`string`, `integer`,
    /// `boolean`).
    pub fn type_name(&self) -> &'static str {
        match self.ty {
            Ty::Str => "string",
            Ty::Int => "integer",
            Ty::Bool => "boolean",
        }
    }

    /// Whether repeated values are joined with `,` before validation (a
    /// string with a `-list` format, PVE's legacy array normalisation).
    pub fn joins_lists(&self) -> bool {
        self.ty == Ty::Str
            && matches!(
                self.fmt,
                Some(
                    Fmt::IfaceList
                        | Fmt::ConfigIdList
                        | Fmt::VlanIdOrRangeList
                        | Fmt::NodeList
                        | Fmt::IpList
                        | Fmt::BgpRtList
                        | Fmt::ConfigIdListStrict
                )
            )
    }

    pub const fn new(name: &'static str, ty: Ty) -> Self {
        Self {
            name,
            ty,
            fmt: None,
            enumeration: &[],
            minimum: None,
            maximum: None,
            min_length: None,
            max_length: None,
            optional: true,
            requires: None,
            pattern: None,
        }
    }
    /// A string that must match a regular expression (`pattern`), given as a
    /// predicate.
    pub const fn pattern(mut self, matches: fn(&str) -> bool) -> Self {
        self.pattern = Some(matches);
        self
    }
    /// An integer without bounds.
    pub const fn int(name: &'static str) -> Self {
        Self::new(name, Ty::Int)
    }
    /// An integer with only a lower bound.
    pub const fn int_min(name: &'static str, min: i64) -> Self {
        let mut p = Self::new(name, Ty::Int);
        p.minimum = Some(min);
        p
    }

    pub const fn string(name: &'static str) -> Self {
        Self::new(name, Ty::Str)
    }
    pub const fn integer(name: &'static str, min: i64, max: i64) -> Self {
        let mut p = Self::new(name, Ty::Int);
        p.minimum = Some(min);
        p.maximum = Some(max);
        p
    }
    pub const fn boolean(name: &'static str) -> Self {
        Self::new(name, Ty::Bool)
    }
    pub const fn format(mut self, fmt: Fmt) -> Self {
        self.fmt = Some(fmt);
        self
    }
    pub const fn one_of(mut self, values: &'static [&'static str]) -> Self {
        self.enumeration = values;
        self
    }
    pub const fn length(mut self, min: usize, max: usize) -> Self {
        self.min_length = Some(min);
        self.max_length = Some(max);
        self
    }
    pub const fn max_len(mut self, max: usize) -> Self {
        self.max_length = Some(max);
        self
    }
    pub const fn required(mut self) -> Self {
        self.optional = false;
        self
    }
    pub const fn requires(mut self, other: &'static str) -> Self {
        self.requires = Some(other);
        self
    }
}

/// PVE's `add_error`: a second message for the same parameter is appended
/// after a literal `\n` (Perl's single-quoted `'\n'`).
fn add_error(errors: &mut BTreeMap<String, String>, path: &str, msg: String) {
    match errors.get_mut(path) {
        Some(existing) => {
            existing.push_str("\\n");
            existing.push_str(&msg);
        }
        None => {
            errors.insert(path.to_string(), msg);
        }
    }
}

/// Verify `params` against `props`; the map is empty when everything is fine.
pub fn verify(params: &BTreeMap<String, String>, props: &[Prop]) -> BTreeMap<String, String> {
    let mut errors = BTreeMap::new();
    for prop in props {
        match params.get(prop.name) {
            None => {
                if !prop.optional {
                    add_error(
                        &mut errors,
                        prop.name,
                        "property is missing and it is not optional".into(),
                    );
                }
            }
            Some(v) => {
                if let Err(msg) = check_value(prop, v) {
                    add_error(&mut errors, prop.name, msg);
                }
            }
        }
    }
    for key in params.keys() {
        match props.iter().find(|p| p.name == key) {
            Some(prop) => {
                if let Some(req) = prop.requires
                    && !params.contains_key(req) {
                        add_error(
                            &mut errors,
                            req,
                            format!("missing property required by '{key}'"),
                        );
                    }
            }
            None => add_error(
                &mut errors,
                key,
                "property is not defined in schema and the schema does not allow additional properties"
                    .into(),
            ),
        }
    }
    errors
}

fn is_integer(v: &str) -> bool {
    let digits = v.strip_prefix(['+', '-']).unwrap_or(v);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Perl's `is_number` from PVE's schema code.
fn is_number(v: &str) -> bool {
    let s = v.strip_prefix(['+', '-']).unwrap_or(v);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((a, b)) => {
            let da = a.bytes().all(|c| c.is_ascii_digit());
            let db = b.bytes().all(|c| c.is_ascii_digit());
            da && db && !(a.is_empty() && b.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && e.bytes().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exp_ok
}

fn check_value(prop: &Prop, v: &str) -> Result<(), String> {
    match prop.ty {
        Ty::Str => {}
        Ty::Int => {
            if !is_integer(v) {
                return Err(format!("type check ('integer') failed - got '{v}'"));
            }
        }
        Ty::Bool => {
            if v != "1" && v != "0" {
                return Err(format!("type check ('boolean') failed - got '{v}'"));
            }
        }
    }
    if let Some(fmt) = prop.fmt {
        check_format(fmt, v).map_err(|e| format!("invalid format - {e}"))?;
    }
    if let Some(matches) = prop.pattern
        && !matches(v)
    {
        return Err("value does not match the regex pattern".into());
    }
    let len = v.chars().count();
    if let Some(max) = prop.max_length
        && len > max
    {
        return Err(format!("value may only be {max} characters long"));
    }
    if let Some(min) = prop.min_length
        && len < min
    {
        return Err(format!("value must be at least {min} characters long"));
    }
    if is_number(v) {
        let n: f64 = v.parse().unwrap_or(0.0);
        if let Some(max) = prop.maximum
            && n > max as f64
        {
            return Err(format!("value must have a maximum value of {max}"));
        }
        if let Some(min) = prop.minimum
            && n < min as f64
        {
            return Err(format!("value must have a minimum value of {min}"));
        }
    }
    if !prop.enumeration.is_empty() && !prop.enumeration.contains(&v) {
        return Err(format!(
            "value '{v}' does not have a value in the enumeration '{}'",
            prop.enumeration.join(", ")
        ));
    }
    Ok(())
}

/// Format checks; errors end with a newline like PVE's `die` messages.
pub fn check_format(fmt: Fmt, v: &str) -> Result<(), String> {
    match fmt {
        Fmt::Iface => verify_iface(v),
        Fmt::IfaceList => split_list(v).iter().try_for_each(|i| verify_iface(i)),
        Fmt::Ipv4 => is_ipv4(v)
            .then_some(())
            .ok_or_else(|| "value does not look like a valid IPv4 address\n".into()),
        Fmt::Ipv6 => is_ipv6(v)
            .then_some(())
            .ok_or_else(|| "value does not look like a valid IPv6 address\n".into()),
        Fmt::Ipv4Mask => crate::model::netmask_bits(v)
            .filter(|_| is_ipv4(v))
            .map(|_| ())
            .ok_or_else(|| "value does not look like a valid IP netmask\n".into()),
        Fmt::CidrV4 => cidr_ok(v, is_ipv4, 32)
            .then_some(())
            .ok_or_else(|| "value does not look like a valid IPv4 CIDR network\n".into()),
        Fmt::CidrV6 => cidr_ok(v, is_ipv6, 128)
            .then_some(())
            .ok_or_else(|| "value does not look like a valid IPv6 CIDR network\n".into()),
        Fmt::ConfigIdList => split_list(v).iter().try_for_each(|id| {
            let mut chars = id.chars();
            let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
            let rest: Vec<char> = chars.collect();
            let rest_ok = !rest.is_empty()
                && rest
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-');
            (first_ok && rest_ok)
                .then_some(())
                .ok_or_else(|| format!("invalid configuration ID '{id}'\n"))
        }),
        Fmt::VlanIdOrRangeList => split_list(v).iter().try_for_each(|r| verify_vlan_range(r)),
        Fmt::Node => {
            let b = v.as_bytes();
            let ok = !b.is_empty()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric();
            ok.then_some(())
                .ok_or_else(|| "value does not look like a valid node name\n".into())
        }
        Fmt::NodeList => split_list(v)
            .iter()
            .try_for_each(|n| check_format(Fmt::Node, n)),
        Fmt::SdnId(what) => verify_sdn_id(what, v),
        Fmt::SdnVnetId => verify_sdn_id("vnet", v),
        Fmt::SdnSubnetId => {
            let cidr = if v.contains('/') {
                v.to_string()
            } else {
                // Perl's `my ($zone, $ip, $mask) = split(/-/, $id)`
                let mut parts = v.split('-');
                let _zone = parts.next();
                let ip = parts.next().unwrap_or("");
                let mask = parts.next().unwrap_or("");
                format!("{ip}/{mask}")
            };
            (cidr_ok(&cidr, is_ipv4, 32) || cidr_ok(&cidr, is_ipv6, 128))
                .then_some(())
                .ok_or_else(|| "value does not look like a valid CIDR network\n".into())
        }
        Fmt::Ip => (is_ipv4(v) || is_ipv6(v))
            .then_some(())
            .ok_or_else(|| "value does not look like a valid IP address\n".into()),
        Fmt::IpList => split_list(v)
            .iter()
            .try_for_each(|ip| check_format(Fmt::Ip, ip)),
        Fmt::DnsName => is_dns_name(v)
            .then_some(())
            .ok_or_else(|| "value does not look like a valid DNS name\n".into()),
        Fmt::MacAddr => is_unicast_mac(v)
            .then_some(())
            .ok_or_else(|| "value does not look like a valid unicast MAC address\n".into()),
        Fmt::BgpRtList => split_list(v).iter().try_for_each(|rt| {
            let ok = rt.split_once(':').is_some_and(|(a, b)| {
                let num = |s: &str| {
                    !s.is_empty()
                        && s.bytes().all(|c| c.is_ascii_digit())
                        && s.parse::<u64>().is_ok_and(|n| n <= 4_294_967_295)
                };
                num(a) && num(b)
            });
            ok.then_some(())
                .ok_or_else(|| "value does not look like a valid bgp route-target\n".into())
        }),
        Fmt::ConfigIdListStrict => split_list(v).iter().try_for_each(|id| {
            let b = id.as_bytes();
            let ok = b.len() >= 2
                && b[0].is_ascii_alphabetic()
                && b[1..]
                    .iter()
                    .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-');
            ok.then_some(())
                .ok_or_else(|| format!("invalid configuration ID '{id}'\n"))
        }),
    }
}

/// `pve-sdn-zone-id` and friends: `^[a-z][a-z0-9]*[a-z0-9]$` (case-insensitive),
/// at most 8 characters.
fn verify_sdn_id(what: &str, id: &str) -> Result<(), String> {
    let b = id.as_bytes();
    let ok = b.len() >= 2
        && b[0].is_ascii_alphabetic()
        && b[1..].iter().all(|c| c.is_ascii_alphanumeric());
    if !ok {
        return Err(format!("{what} ID '{id}' contains illegal characters\n"));
    }
    if id.chars().count() > 8 {
        return Err(format!(
            "{what} ID '{id}' can't be more length than 8 characters\n"
        ));
    }
    Ok(())
}

/// PVE's `dns-name`: dot-separated labels of letters, digits and inner dashes.
pub fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        })
}

/// PVE's `mac-addr`: six hex pairs, the I/G bit not set.
fn is_unicast_mac(s: &str) -> bool {
    let parts: Vec<&str> = s.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()))
        && u8::from_str_radix(parts[0], 16).is_ok_and(|b| b & 1 == 0)
}

/// `pve-iface`: `^[a-z][a-z0-9_]{1,20}([:.]\d+)?$` (case-insensitive).
pub fn verify_iface(id: &str) -> Result<(), String> {
    let err = || format!("invalid network interface name '{id}'\n");
    let (base, suffix) = match id.find([':', '.']) {
        Some(i) => (&id[..i], Some(&id[i + 1..])),
        None => (id, None),
    };
    let mut chars = base.chars();
    if !chars.next().is_some_and(|c| c.is_ascii_alphabetic()) {
        return Err(err());
    }
    let rest = chars.as_str();
    if rest.is_empty()
        || rest.len() > 20
        || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(err());
    }
    if let Some(s) = suffix
        && (s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(err());
    }
    Ok(())
}

fn verify_vlan_range(vlan: &str) -> Result<(), String> {
    let (start, end) = match vlan.split_once('-') {
        Some((a, b)) => (a, Some(b)),
        None => (vlan, None),
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !numeric(start) || end.is_some_and(|e| !numeric(e)) {
        return Err(format!("invalid VLAN configuration '{vlan}'\n"));
    }
    let tag_ok = |t: &str| {
        let n: f64 = t.parse().unwrap_or(f64::MAX);
        if (2.0..=4094.0).contains(&n) {
            Ok(())
        } else {
            Err(format!("invalid VLAN tag '{t}'\n"))
        }
    };
    tag_ok(start)?;
    if let Some(end) = end.filter(|e| *e != "0") {
        tag_ok(end)?;
        let (s, e): (f64, f64) = (start.parse().unwrap_or(0.0), end.parse().unwrap_or(0.0));
        if s >= e {
            return Err(format!(
                "VLAN range must go from lower to higher tag '{vlan}'\n"
            ));
        }
    }
    Ok(())
}

/// PVE's `$IPV4RE`: four decimal octets 0-255 without leading zeros.
pub fn is_ipv4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        })
}

/// PVE's `$IPV6RE` (the RFC 3986 grammar, which the standard parser follows).
pub fn is_ipv6(s: &str) -> bool {
    s.parse::<Ipv6Addr>().is_ok()
        && s.rsplit(':')
            .next()
            .is_none_or(|last| !last.contains('.') || is_ipv4(last))
}

fn cidr_ok(v: &str, ip_ok: fn(&str) -> bool, max: u32) -> bool {
    let Some((ip, bits)) = v.split_once('/') else {
        return false;
    };
    if bits.is_empty() || !bits.bytes().all(|b| b.is_ascii_digit()) || !ip_ok(ip) {
        return false;
    }
    let n: f64 = bits.parse().unwrap_or(f64::MAX);
    n > 7.0 && n <= f64::from(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const PROPS: [Prop; 6] = [
        Prop::string("iface")
            .format(Fmt::Iface)
            .length(2, 20)
            .required(),
        Prop::integer("mtu", 1280, 65520),
        Prop::boolean("autostart"),
        Prop::string("kind").one_of(&["a", "b"]),
        Prop::string("address")
            .format(Fmt::Ipv4)
            .requires("netmask"),
        Prop::string("netmask")
            .format(Fmt::Ipv4Mask)
            .requires("address"),
    ];

    #[test]
    fn messages() {
        let e = verify(&params(&[]), &PROPS);
        assert_eq!(e["iface"], "property is missing and it is not optional");
        let e = verify(
            &params(&[
                ("iface", "9x"),
                ("mtu", "abc"),
                ("autostart", "true"),
                ("kind", "c"),
                ("bogus", "1"),
            ]),
            &PROPS,
        );
        assert_eq!(
            e["iface"],
            "invalid format - invalid network interface name '9x'\n"
        );
        assert_eq!(e["mtu"], "type check ('integer') failed - got 'abc'");
        assert_eq!(e["autostart"], "type check ('boolean') failed - got 'true'");
        assert_eq!(
            e["kind"],
            "value 'c' does not have a value in the enumeration 'a, b'"
        );
        assert_eq!(
            e["bogus"],
            "property is not defined in schema and the schema does not allow additional properties"
        );
        let e = verify(
            &params(&[("iface", "abcdefghijklmnopqrstu"), ("mtu", "100")]),
            &PROPS,
        );
        assert_eq!(e["iface"], "value may only be 20 characters long");
        assert_eq!(e["mtu"], "value must have a minimum value of 1280");
        let e = verify(
            &params(&[("iface", "eth0"), ("address", "10.0.0.1")]),
            &PROPS,
        );
        assert_eq!(e["netmask"], "missing property required by 'address'");
        let e = verify(
            &params(&[
                ("iface", "eth0"),
                ("address", "10.0.0.01"),
                ("netmask", "255.0.255.0"),
            ]),
            &PROPS,
        );
        assert_eq!(
            e["address"],
            "invalid format - value does not look like a valid IPv4 address\n"
        );
        assert_eq!(
            e["netmask"],
            "invalid format - value does not look like a valid IP netmask\n"
        );
    }

    #[test]
    fn formats() {
        for ok in ["eth0", "vmbr0", "eno1.100", "bond0:1", "a_b"] {
            assert!(verify_iface(ok).is_ok(), "{ok}");
        }
        for bad in ["e", "0eth", "eth-0", "eth0.", "eth0.1a", "vmbr0.10.20"] {
            assert!(verify_iface(bad).is_err(), "{bad}");
        }
        assert!(check_format(Fmt::CidrV4, "10.0.0.1/24").is_ok());
        assert!(check_format(Fmt::CidrV4, "10.0.0.1/7").is_err());
        assert!(check_format(Fmt::CidrV6, "fd00::1/64").is_ok());
        assert!(check_format(Fmt::Ipv6, "::ffff:1.2.3.4").is_ok());
        assert!(check_format(Fmt::Ipv6, "fd00::1::2").is_err());
        assert_eq!(check_format(Fmt::VlanIdOrRangeList, "2 4 100-200"), Ok(()));
        assert_eq!(
            check_format(Fmt::VlanIdOrRangeList, "1"),
            Err("invalid VLAN tag '1'\n".into())
        );
        assert_eq!(
            check_format(Fmt::VlanIdOrRangeList, "200-100"),
            Err("VLAN range must go from lower to higher tag '200-100'\n".into())
        );
        assert_eq!(
            check_format(Fmt::VlanIdOrRangeList, "x"),
            Err("invalid VLAN configuration 'x'\n".into())
        );
        assert_eq!(
            check_format(Fmt::ConfigIdList, "mtu,bridge_vids;9x"),
            Err("invalid configuration ID '9x'\n".into())
        );
        assert!(is_number("1.5e3") && is_number(".5") && is_number("5.") && !is_number("."));
    }
}
