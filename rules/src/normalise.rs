//! Normalisation: turning an exchange into a comparable JSON document.
//!
//! Each side's exchange becomes an *envelope*
//! `{"status": 200, "reason": "OK", "headers": {…}, "body": …}` (a body that
//! is not JSON becomes `"body_raw": {"sha256": …, "len": …}` instead of
//! `"body"`). Then, with rule pointers taken relative to the body:
//!
//! 1. single-sided steps, on each envelope: `ignore` (remove), `trim`
//!    (strip trailing whitespace), `sort` (deepest pointers first);
//! 2. paired steps, walking both envelopes in step: the pattern rules
//!    (equivalent values are aligned: the Perl value is replaced by the Rust
//!    one, and the pointer reported as masked) and the Perl scalar
//!    equivalence (each hit is reported as a [`TypeOnlyHit`] and aligned).
//!
//! Objects need no normalisation: members are kept ordered by key, so key
//! order never matters. Nesting is bounded by `serde_json`'s recursion
//! limit (128); a deeper body fails to parse and is compared as raw bytes.
//!
//! The public functions work on `serde_json::Value` envelopes; comparisons
//! use the same steps on a borrowed tree internally (see `doc.rs`).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Number, Value};
use sha2::{Digest as _, Sha256};

use crate::compare::Exchange;
use crate::doc::{Node, key_cmp};
use crate::endpoint::Endpoint;
use crate::pairwalk;

/// Which Perl-scalar equivalence made two different values equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TypeOnlyKind {
    /// `"9000"` ≡ `9000`.
    StringNumber,
    /// `1` ≡ `true`, `0` ≡ `false`.
    NumberBool,
    /// `"1"` ≡ `true`, `"0"`/`""` ≡ `false`.
    StringBool,
    /// `1` ≡ `1.0`.
    NumberRepr,
    /// A flag key missing on one side and false (`false`, `0`, `"0"`, `""`)
    /// on the other.
    AbsentFlag,
}

impl TypeOnlyKind {
    /// The kebab-case name (`"string-number"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StringNumber => "string-number",
            Self::NumberBool => "number-bool",
            Self::StringBool => "string-bool",
            Self::NumberRepr => "number-repr",
            Self::AbsentFlag => "absent-flag",
        }
    }
}

/// A difference in representation only, found by the Perl scalar equivalence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TypeOnlyHit {
    /// Envelope pointer of the value, e.g. `/body/data/0/mtu`.
    pub pointer: String,
    /// Which equivalence applied.
    pub kind: TypeOnlyKind,
    /// The Perl value (`None` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub perl: Option<Value>,
    /// The Rust value (`None` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rust: Option<Value>,
}

/// What the paired normalisation steps found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PairReport {
    /// Representation-only differences (reported, then aligned).
    pub type_only: Vec<TypeOnlyHit>,
    /// Envelope pointers where a pattern rule found different but
    /// equivalent values (UPIDs, digests, …), in walk order.
    pub masked: Vec<String>,
}

impl PairReport {
    /// True when nothing was found.
    pub fn is_empty(&self) -> bool {
        self.type_only.is_empty() && self.masked.is_empty()
    }
}

fn normalise_content_type(value: &str) -> String {
    value
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn key(k: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(k)
}

impl Endpoint {
    /// Builds one side's envelope (borrowing from the exchange).
    pub(crate) fn envelope_node<'a>(&self, exchange: &Exchange<'a>, with_reason: bool) -> Node<'a> {
        let mut env: Vec<(Cow<'a, str>, Node<'a>)> = Vec::with_capacity(4);
        match Node::parse_with(exchange.body, &self.settings.body) {
            Some(body) => env.push((key("body"), body)),
            None => {
                let digest = Sha256::digest(exchange.body);
                let raw = vec![
                    (
                        key("len"),
                        Node::Number(Number::from(exchange.body.len() as u64)),
                    ),
                    (key("sha256"), Node::String(Cow::Owned(hex(&digest)))),
                ];
                env.push((key("body_raw"), Node::Object(raw)));
            }
        }
        let mut headers: Vec<(Cow<'a, str>, Node<'a>)> = Vec::new();
        for name in &self.settings.headers {
            let mut joined: Option<Cow<'a, str>> = None;
            for (n, v) in exchange.headers {
                if n.eq_ignore_ascii_case(name) {
                    let v = v.trim();
                    joined = Some(match joined {
                        Some(j) => Cow::Owned(format!("{j}, {v}")),
                        None => Cow::Borrowed(v),
                    });
                }
            }
            if let Some(mut v) = joined {
                if name == "content-type" {
                    v = Cow::Owned(normalise_content_type(&v));
                }
                headers.push((Cow::Owned(name.clone()), Node::String(v)));
            }
        }
        env.push((key("headers"), Node::object(headers)));
        if with_reason && let Some(reason) = exchange.reason {
            env.push((
                key("reason"),
                Node::String(Cow::Borrowed(reason.trim_end())),
            ));
        }
        env.push((key("status"), Node::Number(exchange.status.into())));
        Node::Object(env)
    }

    /// Builds both envelopes; reason phrases are compared only when both
    /// sides supplied one.
    pub(crate) fn envelope_nodes<'a>(
        &self,
        perl: &Exchange<'a>,
        rust: &Exchange<'a>,
    ) -> (Node<'a>, Node<'a>) {
        let with_reason = perl.reason.is_some() && rust.reason.is_some();
        (
            self.envelope_node(perl, with_reason),
            self.envelope_node(rust, with_reason),
        )
    }

    /// Builds one side's envelope. The reason phrase is included only when
    /// `with_reason` is set (the comparison sets it when both sides have one).
    pub fn envelope(&self, exchange: &Exchange<'_>, with_reason: bool) -> Value {
        self.envelope_node(exchange, with_reason).to_value()
    }

    /// Builds both envelopes (reason phrases are compared only when both
    /// sides supplied one).
    pub fn envelopes(&self, perl: &Exchange<'_>, rust: &Exchange<'_>) -> (Value, Value) {
        let with_reason = perl.reason.is_some() && rust.reason.is_some();
        (
            self.envelope(perl, with_reason),
            self.envelope(rust, with_reason),
        )
    }

    /// Applies the single-sided steps (`ignore`, `trim`, `sort`) to the
    /// body of an envelope. Idempotent.
    pub fn normalise(&self, envelope: &mut Value) {
        let Some(body) = envelope.get_mut("body") else {
            return;
        };
        let bytes = serde_json::to_vec(body).unwrap_or_default();
        if let Some(node) = Node::parse_with(&bytes, &self.settings.body) {
            *body = node.to_value();
        }
    }

    /// Re-reads an envelope, applying the single-sided steps to its body
    /// (`body` holds the body serialised).
    fn reread<'a>(&self, envelope: &'a Value, body: &'a [u8]) -> Node<'a> {
        let Value::Object(members) = envelope else {
            return Node::from_value(envelope);
        };
        let mut out = Vec::with_capacity(members.len());
        for (k, v) in members {
            let parsed = match k.as_str() {
                "body" => Node::parse_with(body, &self.settings.body),
                _ => None,
            };
            let node = parsed.unwrap_or_else(|| Node::from_value(v));
            out.push((Cow::Borrowed(k.as_str()), node));
        }
        Node::Object(out)
    }

    /// Normalises both envelopes: the single-sided steps on each, then the
    /// Perl scalar equivalence and the pattern rules on the pair. Afterwards
    /// equivalent values are identical (the Perl side takes the Rust
    /// representation); what was aligned is reported. Idempotent: a second
    /// call changes nothing and reports nothing.
    pub fn normalise_pair(&self, perl: &mut Value, rust: &mut Value) -> PairReport {
        let body_bytes = |v: &Value| {
            v.get("body")
                .and_then(|b| serde_json::to_vec(b).ok())
                .unwrap_or_default()
        };
        let (pb, rb) = (body_bytes(perl), body_bytes(rust));
        let (report, a, b) = {
            let mut a = self.reread(perl, &pb);
            let mut b = self.reread(rust, &rb);
            let out = pairwalk::walk(&self.settings, &mut a, &mut b, None, false);
            (out.report, a.to_value(), b.to_value())
        };
        *perl = a;
        *rust = b;
        report
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

// ---------------------------------------------------------------------------
// Perl scalar equivalence

fn parse_number(s: &str) -> Option<Number> {
    let first = *s.as_bytes().first()?;
    if !(first.is_ascii_digit() || first == b'-') {
        return None;
    }
    s.parse::<Number>().ok()
}

fn num_eq(a: &Number, b: &Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn num_as_bool(n: &Number) -> Option<bool> {
    match n.as_f64() {
        Some(0.0) => Some(false),
        Some(1.0) => Some(true),
        _ => None,
    }
}

fn str_as_bool(s: &str) -> Option<bool> {
    match s {
        "1" => Some(true),
        "0" | "" => Some(false),
        _ => None,
    }
}

/// The equivalence that makes two unequal scalars equal, if any.
pub(crate) fn loose_eq(a: &Node<'_>, b: &Node<'_>) -> Option<TypeOnlyKind> {
    match (a, b) {
        (Node::String(s), Node::Number(n)) | (Node::Number(n), Node::String(s)) => parse_number(s)
            .is_some_and(|m| num_eq(&m, n))
            .then_some(TypeOnlyKind::StringNumber),
        (Node::Number(n), Node::Bool(x)) | (Node::Bool(x), Node::Number(n)) => {
            (num_as_bool(n) == Some(*x)).then_some(TypeOnlyKind::NumberBool)
        }
        (Node::String(s), Node::Bool(x)) | (Node::Bool(x), Node::String(s)) => {
            (str_as_bool(s) == Some(*x)).then_some(TypeOnlyKind::StringBool)
        }
        (Node::Number(x), Node::Number(y)) => {
            (x != y && num_eq(x, y)).then_some(TypeOnlyKind::NumberRepr)
        }
        _ => None,
    }
}

/// `false`, `0`, `"0"`, `""` or `null`: what an absent flag means.
pub(crate) fn is_false_flag(v: &Node<'_>) -> bool {
    match v {
        // Perl's `undef` for a flag it never set.
        Node::Null => true,
        Node::Bool(b) => !b,
        Node::Number(n) => num_as_bool(n) == Some(false),
        Node::String(s) => s == "0" || s.is_empty(),
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Sorting

fn canonical_number(n: &Number) -> String {
    if n.is_i64() || n.is_u64() {
        return n.to_string();
    }
    match n.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        _ => n.to_string(),
    }
}

/// Scalar rendering that is equal for loosely equal scalars.
fn loose_scalar<'a>(v: &Node<'a>) -> Option<Cow<'a, str>> {
    match v {
        Node::Bool(true) => Some(Cow::Borrowed("1")),
        Node::Bool(false) => Some(Cow::Borrowed("0")),
        Node::Number(n) => Some(Cow::Owned(canonical_number(n))),
        // "" is Perl's false: it must order like `false`.
        Node::String(s) if s.is_empty() => Some(Cow::Borrowed("0")),
        Node::String(s) => match parse_number(s) {
            Some(n) => Some(Cow::Owned(canonical_number(&n))),
            None => Some(match s {
                Cow::Borrowed(b) => Cow::Borrowed(*b),
                Cow::Owned(o) => Cow::Owned(o.clone()),
            }),
        },
        Node::Null | Node::Array(_) | Node::Object(_) => None,
    }
}

fn rank(v: &Node<'_>) -> u8 {
    match v {
        Node::Null => 0,
        Node::Bool(_) | Node::Number(_) | Node::String(_) => 1,
        Node::Array(_) => 2,
        Node::Object(_) => 3,
    }
}

/// A total order on values that treats loosely equal scalars as equal and
/// ignores false `flags` members of objects.
fn loose_cmp(a: &Node<'_>, b: &Node<'_>, flags: &BTreeSet<String>) -> Ordering {
    match (a, b) {
        (Node::Array(x), Node::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| loose_cmp(p, q, flags))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Node::Object(x), Node::Object(y)) => {
            let present = |(k, v): &&(Cow<'_, str>, Node<'_>)| {
                !(flags.contains(k.as_ref()) && is_false_flag(v))
            };
            let mut xs = x.iter().filter(present);
            let mut ys = y.iter().filter(present);
            loop {
                match (xs.next(), ys.next()) {
                    (None, None) => return Ordering::Equal,
                    (None, Some(_)) => return Ordering::Less,
                    (Some(_), None) => return Ordering::Greater,
                    (Some((ka, va)), Some((kb, vb))) => {
                        let o = key_cmp(ka, kb).then_with(|| loose_cmp(va, vb, flags));
                        if o.is_ne() {
                            return o;
                        }
                    }
                }
            }
        }
        _ => rank(a)
            .cmp(&rank(b))
            .then_with(|| loose_scalar(a).cmp(&loose_scalar(b))),
    }
}

fn sort_key<'a>(v: &Node<'a>, by: &str) -> Option<Cow<'a, str>> {
    let field = v.get(by)?;
    match loose_scalar(field) {
        Some(s) => Some(s),
        None => Some(Cow::Owned(field.to_value().to_string())),
    }
}

pub(crate) fn sort_array<'a>(
    items: &mut Vec<Node<'a>>,
    by: Option<&str>,
    flags: &BTreeSet<String>,
) {
    if items.len() < 2 {
        return;
    }
    match by {
        Some(by) => {
            let mut keyed: Vec<(Option<Cow<'a, str>>, Node<'a>)> =
                items.drain(..).map(|v| (sort_key(&v, by), v)).collect();
            keyed.sort_by(|(ka, va), (kb, vb)| {
                let primary = match (ka, kb) {
                    (Some(x), Some(y)) => x.cmp(y),
                    (Some(_), None) => Ordering::Less,
                    (None, Some(_)) => Ordering::Greater,
                    (None, None) => Ordering::Equal,
                };
                primary.then_with(|| loose_cmp(va, vb, flags))
            });
            items.extend(keyed.into_iter().map(|(_, v)| v));
        }
        None => items.sort_by(|a, b| loose_cmp(a, b, flags)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn n(v: &Value) -> Node<'_> {
        Node::from_value(v)
    }

    #[test]
    fn loose_equivalences() {
        let cases = [
            (json!("9000"), json!(9000), Some(TypeOnlyKind::StringNumber)),
            (json!("0"), json!(0), Some(TypeOnlyKind::StringNumber)),
            (json!("09000"), json!(9000), None),
            (json!(1), json!(true), Some(TypeOnlyKind::NumberBool)),
            (json!(2), json!(true), None),
            (json!("1"), json!(true), Some(TypeOnlyKind::StringBool)),
            (json!(1), json!(1.0), Some(TypeOnlyKind::NumberRepr)),
            (json!("a"), json!("b"), None),
        ];
        for (a, b, want) in cases {
            assert_eq!(loose_eq(&n(&a), &n(&b)), want, "{a} vs {b}");
        }
    }

    #[test]
    fn sorting_aligns_loosely_equal_keys() {
        let (va, vb) = (
            json!([{"k": "10"}, {"k": "9"}, {"x": 1}]),
            json!([{"x": 1}, {"k": 9}, {"k": 10}]),
        );
        let none = BTreeSet::new();
        let (Node::Array(mut a), Node::Array(mut b)) = (n(&va), n(&vb)) else {
            panic!()
        };
        sort_array(&mut a, Some("k"), &none);
        sort_array(&mut b, Some("k"), &none);
        assert_eq!(
            Node::Array(a).to_value(),
            json!([{"k": "10"}, {"k": "9"}, {"x": 1}])
        );
        assert_eq!(
            Node::Array(b).to_value(),
            json!([{"k": 10}, {"k": 9}, {"x": 1}])
        );
        let vc = json!(["inet6", "inet"]);
        let Node::Array(mut c) = n(&vc) else { panic!() };
        sort_array(&mut c, None, &none);
        assert_eq!(Node::Array(c).to_value(), json!(["inet", "inet6"]));
    }
}
