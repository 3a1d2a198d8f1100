//! The in-memory model of a parsed `/etc/network/interfaces` file.
//!
//! PVE keeps the parsed file in a Perl hash of hashes and its API hands those
//! hashes out (almost) unchanged, so the simulator models an interface the same
//! way: a sorted map from property name to a [`Value`] that remembers whether
//! Perl stored a string, a number, an array or an explicit `undef`. That
//! distinction is what makes the Perl-flavoured JSON faithful (`"mtu":"9000"`
//! but `"priority":3`), and a generic map lets the API operations set and
//! delete arbitrary properties exactly like `PUT` does on a real node.

use std::collections::BTreeMap;
use std::fmt;

/// One property value, typed the way the Perl code stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// A string: everything read from the file or received as a parameter.
    Str(String),
    /// A Perl number: flags (`autostart`, `exists`, `active`), `priority` and
    /// defaults the parser assigns itself (`bridge_fd` = `0`).
    Int(i64),
    /// An array (`families`, `options`, `options6`, `vxlan-remoteip`).
    /// `None` is a Perl `undef` element: a typeless ifupdown2 stanza pushes an
    /// undefined family.
    List(Vec<Option<String>>),
    /// A key that exists but holds `undef` (e.g. the `exists` flag an alias
    /// copies from a parent that has none). Rendered as JSON `null`.
    Null,
}

impl Value {
    /// Shorthand for a string value.
    pub fn str(s: impl Into<String>) -> Self {
        Value::Str(s.into())
    }

    /// Perl truthiness: `undef`, `""`, `"0"` and `0` are false.
    pub fn is_true(&self) -> bool {
        match self {
            Value::Str(s) => !s.is_empty() && s != "0",
            Value::Int(i) => *i != 0,
            Value::List(_) => true,
            Value::Null => false,
        }
    }

    /// Perl `defined`.
    pub fn is_defined(&self) -> bool {
        !matches!(self, Value::Null)
    }

    /// The value interpolated into a Perl string (`"$v"`).
    pub fn to_perl_string(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            Value::Int(i) => i.to_string(),
            // What Perl prints for an array reference; the address is fixed so
            // the simulator stays deterministic.
            Value::List(_) => "ARRAY(0x55d5c0ffee00)".to_string(),
            Value::Null => String::new(),
        }
    }
}

/// One interface: PVE's per-interface hash.
///
/// Kept as a vector sorted by key: an interface has a dozen properties, and
/// looking one up by a linear scan of short keys is several times cheaper
/// than a tree walk (this is the inner loop of parsing and writing a
/// 200-interface file).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Iface {
    fields: Vec<(String, Value)>,
}

impl Iface {
    /// An empty interface hash.
    pub fn new() -> Self {
        Self::default()
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        match self.fields.iter().position(|(k, _)| k == key) {
            Some(i) => Ok(i),
            None => Err(self
                .fields
                .iter()
                .position(|(k, _)| k.as_str() > key)
                .unwrap_or(self.fields.len())),
        }
    }

    /// The raw value of a property.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Set a property.
    pub fn set(&mut self, key: impl Into<String>, value: Value) {
        let key = key.into();
        match self.position(&key) {
            Ok(i) => self.fields[i].1 = value,
            Err(i) => self.fields.insert(i, (key, value)),
        }
    }

    /// Set a string property.
    pub fn set_str(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.set(key, Value::Str(value.into()));
    }

    /// Delete a property, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.fields.iter().position(|(k, _)| k == key)?;
        Some(self.fields.remove(i).1)
    }

    /// Whether the key exists (even if it holds `undef`).
    pub fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Perl `defined($d->{key})`.
    pub fn defined(&self, key: &str) -> bool {
        self.get(key).is_some_and(Value::is_defined)
    }

    /// Perl truthiness of `$d->{key}`.
    pub fn truthy(&self, key: &str) -> bool {
        self.get(key).is_some_and(Value::is_true)
    }

    /// `"$d->{key}"`: the property as a string, `""` when absent or `undef`.
    pub fn text(&self, key: &str) -> String {
        self.text_ref(key).into_owned()
    }

    /// [`Iface::text`] without a copy when the value is a string (which it
    /// nearly always is).
    pub fn text_ref(&self, key: &str) -> std::borrow::Cow<'_, str> {
        match self.get(key) {
            Some(Value::Str(s)) => std::borrow::Cow::Borrowed(s.as_str()),
            Some(v) => std::borrow::Cow::Owned(v.to_perl_string()),
            None => std::borrow::Cow::Borrowed(""),
        }
    }

    /// The property as a string when it is defined and scalar.
    pub fn scalar(&self, key: &str) -> Option<String> {
        match self.get(key)? {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::List(_) | Value::Null => None,
        }
    }

    /// Perl `$d->{key} eq $s` (an absent or undefined value compares as `""`).
    pub fn is(&self, key: &str, s: &str) -> bool {
        match self.get(key) {
            Some(Value::Str(v)) => v == s,
            Some(v) => v.to_perl_string() == s,
            None => s.is_empty(),
        }
    }

    /// The interface type (`""` when the hash has none).
    pub fn kind(&self) -> std::borrow::Cow<'_, str> {
        self.text_ref("type")
    }

    /// The elements of a list property (empty when absent or not a list).
    pub fn list(&self, key: &str) -> Vec<Option<String>> {
        match self.get(key) {
            Some(Value::List(l)) => l.clone(),
            _ => Vec::new(),
        }
    }

    /// Iterate over all properties in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.fields.iter().map(|(k, v)| (k, v))
    }

    /// Property names in key order.
    pub fn keys(&self) -> Vec<String> {
        self.fields.iter().map(|(k, _)| k.clone()).collect()
    }

    /// Number of properties.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the hash is empty.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl FromIterator<(String, Value)> for Iface {
    fn from_iter<T: IntoIterator<Item = (String, Value)>>(iter: T) -> Self {
        let mut out = Iface::new();
        for (k, v) in iter {
            out.set(k, v);
        }
        out
    }
}

/// A parsed interfaces file: PVE's `$config`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// All interfaces by name (including `lo` and phantom parents).
    pub ifaces: BTreeMap<String, Iface>,
    /// Lines PVE does not interpret (`source`, `source-directory`, `mapping`,
    /// `allow-BRIDGE` …), each with the priority (file position) it had.
    pub options: Vec<(i64, String)>,
}

/// PVE's `$PHYSICAL_NIC_RE`, anchored: `eth\d+`, `en…`, `ib…` (without `:` or
/// `.`), `nic\d+` and `if\d+`.
pub fn is_physical_nic(name: &str) -> bool {
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let no_sep = |s: &str| !s.is_empty() && !s.contains([':', '.']);
    if let Some(rest) = name.strip_prefix("eth")
        && all_digits(rest)
    {
        return true;
    }
    if let Some(rest) = name.strip_prefix("en")
        && no_sep(rest)
    {
        return true;
    }
    if let Some(rest) = name.strip_prefix("ib")
        && no_sep(rest)
    {
        return true;
    }
    if let Some(rest) = name.strip_prefix("nic").or_else(|| name.strip_prefix("if"))
        && all_digits(rest)
    {
        return true;
    }
    false
}

/// `m/^(\S+):\d+$/`: the parent of an alias name.
pub fn alias_parent(name: &str) -> Option<&str> {
    let (parent, num) = name.rsplit_once(':')?;
    let ok = !parent.is_empty()
        && !parent.contains(is_perl_space)
        && !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit());
    ok.then_some(parent)
}

/// `m/^(\S+)\.(\d+)$/`: the parent and VLAN id of an `X.N` name.
pub fn vlan_dot_parent(name: &str) -> Option<(&str, &str)> {
    let (parent, num) = name.rsplit_once('.')?;
    let ok = !parent.is_empty()
        && !parent.contains(is_perl_space)
        && !num.is_empty()
        && num.bytes().all(|b| b.is_ascii_digit());
    ok.then_some((parent, num))
}

/// Perl's `\s` (ASCII).
pub fn is_perl_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
}

/// Perl `split(/\s+/, $s)`: a leading empty field is kept when `$s` starts
/// with whitespace, trailing empty fields are dropped.
pub fn perl_split_ws(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_space = false;
    let mut started = false;
    for c in s.chars() {
        if is_perl_space(c) {
            if !in_space {
                out.push(std::mem::take(&mut cur));
                in_space = true;
            }
        } else {
            in_space = false;
            cur.push(c);
        }
        started = true;
    }
    if started {
        out.push(cur);
    }
    while out.last().is_some_and(String::is_empty) {
        out.pop();
    }
    out
}

/// Perl `split(/\n/, $s)` (trailing empty fields dropped).
pub fn perl_split_newline(s: &str) -> Vec<&str> {
    let mut out: Vec<&str> = s.split('\n').collect();
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    out
}

/// `PVE::Tools::split_list`: `,` and `;` are separators too, leading
/// whitespace is ignored.
pub fn split_list(s: &str) -> Vec<String> {
    let replaced: String = s
        .chars()
        .map(|c| if c == ',' || c == ';' { ' ' } else { c })
        .collect();
    perl_split_ws(replaced.trim_start_matches(is_perl_space))
}

/// Perl's numeric value of a string (leading number, `0` when there is none).
pub fn perl_num(s: &str) -> f64 {
    let t = s.trim_start_matches(is_perl_space);
    let bytes = t.as_bytes();
    let mut end = 0;
    if end < bytes.len() && (bytes[end] == b'+' || bytes[end] == b'-') {
        end += 1;
    }
    let digits_start = end;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    let mut had_digits = end > digits_start;
    if end < bytes.len() && bytes[end] == b'.' {
        let frac_start = end + 1;
        let mut e = frac_start;
        while e < bytes.len() && bytes[e].is_ascii_digit() {
            e += 1;
        }
        if e > frac_start || had_digits {
            had_digits = true;
            end = e;
        }
    }
    if !had_digits {
        return 0.0;
    }
    if end < bytes.len() && (bytes[end] == b'e' || bytes[end] == b'E') {
        let mut e = end + 1;
        if e < bytes.len() && (bytes[e] == b'+' || bytes[e] == b'-') {
            e += 1;
        }
        let exp_start = e;
        while e < bytes.len() && bytes[e].is_ascii_digit() {
            e += 1;
        }
        if e > exp_start {
            end = e;
        }
    }
    t[..end].parse().unwrap_or(0.0)
}

/// The numeric value of a property (`undef` is 0).
pub fn value_num(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::Int(i)) => *i as f64,
        Some(Value::Str(s)) => perl_num(s),
        _ => 0.0,
    }
}

/// `PVE::JSONSchema::get_netmask_bits`: prefix length of a dotted netmask.
pub fn netmask_bits(mask: &str) -> Option<u32> {
    let addr: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(addr);
    let len = bits.leading_ones();
    // Only contiguous masks are in PVE's table.
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len)
}

/// A Perl-ish display of a property map, handy in test failure output.
impl fmt::Display for Iface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match v {
                Value::List(l) => {
                    let items: Vec<String> = l
                        .iter()
                        .map(|x| x.clone().unwrap_or_else(|| "undef".into()))
                        .collect();
                    write!(f, "{k} => [{}]", items.join(", "))?;
                }
                Value::Null => write!(f, "{k} => undef")?,
                Value::Int(i) => write!(f, "{k} => {i}")?,
                Value::Str(s) => write!(f, "{k} => '{s}'")?,
            }
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perl_truthiness() {
        assert!(!Value::str("").is_true());
        assert!(!Value::str("0").is_true());
        assert!(Value::str("00").is_true());
        assert!(Value::str("0.0").is_true());
        assert!(!Value::Int(0).is_true());
        assert!(Value::List(vec![]).is_true());
        assert!(!Value::Null.is_true());
        assert!(!Value::Null.is_defined());
    }

    #[test]
    fn physical_nic_pattern() {
        for n in [
            "eth0", "eth12", "eno1", "enp3s0f1", "ens18", "ib0", "nic3", "if7",
        ] {
            assert!(is_physical_nic(n), "{n}");
        }
        for n in [
            "eth", "ethx", "en", "eno1.100", "eno1:1", "vmbr0", "bond0", "nic", "lo",
        ] {
            assert!(!is_physical_nic(n), "{n}");
        }
    }

    #[test]
    fn perl_splits() {
        assert_eq!(perl_split_ws("a  b\tc "), vec!["a", "b", "c"]);
        assert_eq!(perl_split_ws(" a b"), vec!["", "a", "b"]);
        assert!(perl_split_ws("").is_empty());
        assert_eq!(split_list(" a,b;c  d"), vec!["a", "b", "c", "d"]);
        assert!(split_list(",").is_empty());
        assert_eq!(perl_split_newline("a\n\nb\n\n"), vec!["a", "", "b"]);
        assert!(perl_split_newline("\n").is_empty());
    }

    #[test]
    fn perl_numbers() {
        assert_eq!(perl_num("9000"), 9000.0);
        assert_eq!(perl_num(" 12abc"), 12.0);
        assert_eq!(perl_num("abc"), 0.0);
        assert_eq!(perl_num("-3.5e2x"), -350.0);
        assert_eq!(perl_num("+7"), 7.0);
    }

    #[test]
    fn netmasks() {
        assert_eq!(netmask_bits("255.255.255.0"), Some(24));
        assert_eq!(netmask_bits("0.0.0.0"), Some(0));
        assert_eq!(netmask_bits("255.255.255.255"), Some(32));
        assert_eq!(netmask_bits("255.0.255.0"), None);
        assert_eq!(netmask_bits("24"), None);
    }

    #[test]
    fn name_shapes() {
        assert_eq!(alias_parent("eth0:1"), Some("eth0"));
        assert_eq!(alias_parent("eth0:x"), None);
        assert_eq!(vlan_dot_parent("eno1.100"), Some(("eno1", "100")));
        assert_eq!(vlan_dot_parent("a.b.20"), Some(("a.b", "20")));
        assert_eq!(vlan_dot_parent("vlan10"), None);
    }
}
