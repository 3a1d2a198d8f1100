//! Request parameters the way pveproxy collects them.
//!
//! * `POST` and `PUT` bodies are read: `application/json` as a JSON object,
//!   anything else as `application/x-www-form-urlencoded`; other methods'
//!   bodies are ignored;
//! * the query string is read for every method and its values win over the
//!   body's;
//! * URL decoding is PVE's: `&` and `;` separate pairs, `+` is a space, `%XX`
//!   escapes, values (not keys) are decoded as UTF-8, a pair is cut at its
//!   second `=`, and a key given twice becomes an array (which the schema
//!   then rejects: `type check ('string') failed - got ARRAY`);
//! * `_dc` (ExtJS' cache buster) is dropped.

use std::collections::{BTreeMap, BTreeSet};

use crate::api::Params;

/// A parameter value before the schema sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamValue {
    /// A scalar (JSON numbers and booleans become their Perl strings: `9000`,
    /// `1`, `0`).
    Str(String),
    /// A key given more than once, or a JSON array.
    List(Vec<String>),
    /// A JSON object.
    Object,
    /// A key without `=`, or a JSON `null`: present, but undefined.
    Undef,
}

/// The collected parameters of one request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RawParams {
    values: BTreeMap<String, ParamValue>,
}

/// A body that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit) =>
            {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    out
}

/// PVE's `decode_urlencoded`.
fn decode_urlencoded(data: &str, into: &mut BTreeMap<String, ParamValue>) {
    if data.is_empty() || data == "0" {
        return;
    }
    for kv in data.split(['&', ';']) {
        // `my ($k, $v) = split(/=/, $kv)`: Perl gives the split a limit of
        // three, so "k=" has the empty value, "k" none, and "k=v=w" keeps
        // only "v".
        let mut fields = kv.splitn(3, '=');
        let k = fields.next().unwrap_or("");
        let v = fields.next();
        let key = String::from_utf8_lossy(&percent_decode(k)).into_owned();
        let value = match v {
            Some(v) => ParamValue::Str(String::from_utf8_lossy(&percent_decode(v)).into_owned()),
            None => ParamValue::Undef,
        };
        let merged = match (into.remove(&key), value) {
            (Some(ParamValue::Str(old)), ParamValue::Str(new)) => ParamValue::List(vec![old, new]),
            (Some(ParamValue::List(mut l)), ParamValue::Str(new)) => {
                l.push(new);
                ParamValue::List(l)
            }
            (_, v) => v,
        };
        into.insert(key, merged);
    }
}

fn json_value(v: serde_json::Value) -> ParamValue {
    use serde_json::Value as J;
    let scalar = |v: J| match v {
        J::String(s) => s,
        J::Bool(b) => if b { "1" } else { "0" }.to_string(),
        other => other.to_string(),
    };
    match v {
        J::Null => ParamValue::Undef,
        J::Array(items) => ParamValue::List(items.into_iter().map(scalar).collect()),
        J::Object(_) => ParamValue::Object,
        other => ParamValue::Str(scalar(other)),
    }
}

impl RawParams {
    /// Collect the parameters of a request.
    ///
    /// # Errors
    ///
    /// A JSON body that is not a JSON object.
    pub fn collect(
        method: &str,
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Self, BodyError> {
        let mut values = BTreeMap::new();
        if method == "POST" || method == "PUT" {
            let ct = content_type
                .and_then(|c| c.split(';').next())
                .map(|c| c.trim().to_ascii_lowercase());
            if ct.as_deref() == Some("application/json") {
                let v: serde_json::Value = serde_json::from_slice(body)
                    .map_err(|e| BodyError(format!("malformed JSON string, {e}")))?;
                let serde_json::Value::Object(map) = v else {
                    return Err(BodyError("JSON text must be an object".into()));
                };
                for (k, v) in map {
                    values.insert(k, json_value(v));
                }
            } else {
                decode_urlencoded(&String::from_utf8_lossy(body), &mut values);
            }
        }
        let mut query_values = BTreeMap::new();
        decode_urlencoded(query.unwrap_or(""), &mut query_values);
        values.extend(query_values);
        values.remove("_dc");
        Ok(Self { values })
    }

    /// Parameters from `(key, value)` pairs (all scalars).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            values: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), ParamValue::Str(v.into())))
                .collect(),
        }
    }

    /// A value by name.
    pub fn get(&self, key: &str) -> Option<&ParamValue> {
        self.values.get(key)
    }

    /// Every parameter.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ParamValue)> {
        self.values.iter()
    }

    /// Split into the scalars the operations take, the names given as lists
    /// or objects (for the schema's type errors) and the undefined ones.
    pub fn into_parts(self) -> (Params, BTreeSet<String>, BTreeSet<String>) {
        let mut scalars = Params::new();
        let mut compound = BTreeSet::new();
        let mut undefined = BTreeSet::new();
        for (k, v) in self.values {
            match v {
                ParamValue::Str(s) => {
                    scalars.insert(k, s);
                }
                ParamValue::List(_) | ParamValue::Object => {
                    compound.insert(k);
                }
                ParamValue::Undef => {
                    undefined.insert(k);
                }
            }
        }
        (scalars, compound, undefined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> ParamValue {
        ParamValue::Str(v.into())
    }

    #[test]
    fn form_and_query_like_pveproxy() {
        let p = RawParams::collect(
            "PUT",
            Some("iface=vmbr1&_dc=123"),
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            b"type=bridge&comments=a+b%0Ac&iface=vmbr9;mtu=9000",
        )
        .unwrap();
        assert_eq!(p.get("iface"), Some(&s("vmbr1")), "the query wins");
        assert_eq!(p.get("comments"), Some(&s("a b\nc")));
        assert_eq!(p.get("mtu"), Some(&s("9000")));
        assert_eq!(p.get("_dc"), None);
    }

    #[test]
    fn repeated_and_valueless_keys() {
        let p =
            RawParams::collect("POST", None, None, b"slaves=eno1&slaves=eno2&flag&k=v=w").unwrap();
        assert_eq!(
            p.get("slaves"),
            Some(&ParamValue::List(vec!["eno1".into(), "eno2".into()]))
        );
        assert_eq!(p.get("flag"), Some(&ParamValue::Undef));
        assert_eq!(p.get("k"), Some(&s("v")));
        let (scalars, compound, undef) = p.into_parts();
        assert_eq!(scalars.get("k").map(String::as_str), Some("v"));
        assert!(compound.contains("slaves") && undef.contains("flag"));
    }

    #[test]
    fn bodies_of_other_methods_are_ignored() {
        let p = RawParams::collect("DELETE", Some("a=1"), None, b"b=2").unwrap();
        assert_eq!(p.get("a"), Some(&s("1")));
        assert_eq!(p.get("b"), None);
    }

    #[test]
    fn json_bodies() {
        let p = RawParams::collect(
            "POST",
            None,
            Some("application/json"),
            br#"{"iface":"vmbr1","autostart":true,"mtu":9000,"x":null,"l":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(p.get("autostart"), Some(&s("1")));
        assert_eq!(p.get("mtu"), Some(&s("9000")));
        assert_eq!(p.get("x"), Some(&ParamValue::Undef));
        assert_eq!(
            p.get("l"),
            Some(&ParamValue::List(vec!["1".into(), "2".into()]))
        );
        let e = RawParams::collect("POST", None, Some("application/json"), b"[1]").unwrap_err();
        assert_eq!(e.0, "JSON text must be an object");
    }
}
