//! A borrowed JSON document tree used internally for comparisons, and its
//! parser.
//!
//! Building a `serde_json::Value` costs one allocation per key and per
//! string; for a 1 MiB interface list that is ~100k allocations per side,
//! far more than the parsing itself. [`Node`] borrows keys and strings from
//! the body bytes (unless they contain escapes) and stores objects as
//! vectors sorted by key, so a document costs one allocation per object or
//! array. Semantics match `serde_json::Value` exactly: same number
//! representation, duplicate keys resolved to the last one, same key order
//! (byte-wise), and conversions both ways.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::{Map, Number, Value};

use crate::bodyrules::{BodyRules, Set};

/// A JSON value whose strings may borrow from the input.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    /// Sorted by key, keys unique.
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Parses a JSON document; `None` if it is not valid JSON (or nests
    /// deeper than serde_json's recursion limit).
    #[cfg(test)]
    pub(crate) fn parse(bytes: &'a [u8]) -> Option<Self> {
        Self::parse_with(bytes, &BodyRules::default())
    }

    /// Parses a JSON document applying the single-sided body rules.
    pub(crate) fn parse_with(bytes: &'a [u8], rules: &BodyRules) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut scratch = Scratch::default();
        let mut p = Parser {
            text,
            bytes,
            pos: 0,
            depth: RECURSION_LIMIT,
            scratch: &mut scratch,
            rules,
        };
        let node = p.value(rules.root())?;
        p.skip_ws();
        (p.pos == bytes.len()).then_some(node)
    }

    /// Borrows a `serde_json::Value`.
    pub(crate) fn from_value(v: &'a Value) -> Self {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(n.clone()),
            Value::String(s) => Node::String(Cow::Borrowed(s)),
            Value::Array(a) => Node::Array(a.iter().map(Node::from_value).collect()),
            Value::Object(m) => Node::Object(
                m.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::from_value(v)))
                    .collect(),
            ),
        }
    }

    /// Converts to an owned `serde_json::Value`.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::String(s) => Value::String(s.as_ref().to_owned()),
            Node::Array(a) => Value::Array(a.iter().map(Node::to_value).collect()),
            Node::Object(m) => {
                let mut map = Map::new();
                for (k, v) in m {
                    map.insert(k.as_ref().to_owned(), v.to_value());
                }
                Value::Object(map)
            }
        }
    }

    /// Builds an object from members in any order (the last of duplicate
    /// keys wins, as with `serde_json::Value`).
    pub(crate) fn object(mut members: Vec<(Cow<'a, str>, Node<'a>)>) -> Self {
        // Stable sort keeps duplicates in input order; keep the last one.
        members.sort_by(|(a, _), (b, _)| key_cmp(a, b));
        let mut out: Vec<(Cow<'a, str>, Node<'a>)> = Vec::with_capacity(members.len());
        for (k, v) in members {
            match out.last_mut() {
                Some(last) if last.0 == k => last.1 = v,
                _ => out.push((k, v)),
            }
        }
        Node::Object(out)
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::String(s) => Some(s),
            _ => None,
        }
    }

    /// Member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(m) => find(m, key).ok().map(|i| &m[i].1),
            _ => None,
        }
    }
}

/// Byte-wise string order (the order of `serde_json::Map` keys), with a
/// fast path for the usual case of keys differing in their first byte.
#[inline]
pub(crate) fn key_cmp(a: &str, b: &str) -> Ordering {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    match (x.first(), y.first()) {
        (Some(p), Some(q)) if p != q => p.cmp(q),
        _ => x.cmp(y),
    }
}

/// Binary search for `key` in sorted members.
pub(crate) fn find(members: &[(Cow<'_, str>, Node<'_>)], key: &str) -> Result<usize, usize> {
    members.binary_search_by(|(k, _)| key_cmp(k, key))
}

/// Reusable buffers for building objects and arrays with exact-size
/// allocations: members of unfinished containers wait here.
#[derive(Default)]
struct Scratch<'a> {
    members: Vec<(Cow<'a, str>, Node<'a>)>,
    items: Vec<Node<'a>>,
}

/// Appends a member in key order; of duplicate keys the last one wins.
fn push_last_wins<'a>(out: &mut Vec<(Cow<'a, str>, Node<'a>)>, member: (Cow<'a, str>, Node<'a>)) {
    match out.last_mut() {
        Some(last) if last.0 == member.0 => last.1 = member.1,
        _ => out.push(member),
    }
}

/// Nesting limit, as in serde_json: at most 127 nested arrays/objects.
const RECURSION_LIMIT: u32 = 128;

/// A JSON parser (RFC 8259, with serde_json's choices: numbers as u64,
/// i64 or f64 exactly as `serde_json::Number`, duplicate keys resolved to
/// the last one, lone surrogate escapes rejected, the same nesting limit)
/// that builds a [`Node`] borrowing from the input and applies the body
/// rules on the way.
struct Parser<'a, 's> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    depth: u32,
    scratch: &'s mut Scratch<'a>,
    rules: &'s BodyRules,
}

impl<'a> Parser<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek()? == byte).then(|| self.pos += 1)
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos.checked_add(word.len())?;
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    fn value(&mut self, set: Set) -> Option<Node<'a>> {
        self.skip_ws();
        let mut node = match self.peek()? {
            b'{' => self.object(set)?,
            b'[' => self.array(set)?,
            b'"' => Node::String(self.string()?),
            b't' => {
                self.literal(b"true")?;
                Node::Bool(true)
            }
            b'f' => {
                self.literal(b"false")?;
                Node::Bool(false)
            }
            b'n' => {
                self.literal(b"null")?;
                Node::Null
            }
            b'-' | b'0'..=b'9' => Node::Number(self.number()?),
            _ => return None,
        };
        if set != 0 {
            match &mut node {
                Node::String(text) if self.rules.trimmed(set) => {
                    let trimmed = text.trim_end();
                    if trimmed.len() != text.len() {
                        *text = match &*text {
                            Cow::Borrowed(b) => Cow::Borrowed(b.trim_end()),
                            Cow::Owned(o) => Cow::Owned(o.trim_end().to_owned()),
                        };
                    }
                }
                Node::Array(items) => self.rules.sort_at(set, items),
                _ => {}
            }
        }
        Some(node)
    }

    fn enter(&mut self) -> Option<()> {
        self.depth -= 1;
        (self.depth > 0).then_some(())
    }

    fn array(&mut self, set: Set) -> Option<Node<'a>> {
        self.pos += 1;
        self.enter()?;
        let start = self.scratch.items.len();
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
        } else {
            let mut index = 0;
            loop {
                let child = self.rules.element(set, index);
                index += 1;
                let item = self.value(child)?;
                if !self.rules.ignored(child) {
                    self.scratch.items.push(item);
                }
                self.skip_ws();
                match self.peek()? {
                    b',' => self.pos += 1,
                    b']' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth += 1;
        Some(Node::Array(self.scratch.items.drain(start..).collect()))
    }

    fn object(&mut self, set: Set) -> Option<Node<'a>> {
        self.pos += 1;
        self.enter()?;
        let start = self.scratch.members.len();
        let mut sorted = true;
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                if self.peek()? != b'"' {
                    return None;
                }
                let key = self.string()?;
                self.eat(b':')?;
                let child = self.rules.member(set, &key);
                let value = self.value(child)?;
                if !self.rules.ignored(child) {
                    if let Some((last, _)) = self.scratch.members[start..].last() {
                        sorted &= key_cmp(last, &key) == Ordering::Less;
                    }
                    self.scratch.members.push((key, value));
                }
                self.skip_ws();
                match self.peek()? {
                    b',' => self.pos += 1,
                    b'}' => {
                        self.pos += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth += 1;
        let members = &mut self.scratch.members;
        if sorted {
            return Some(Node::Object(members.drain(start..).collect()));
        }
        // Stable sort keeps duplicates in input order; the last one wins.
        members[start..].sort_by(|(a, _), (b, _)| key_cmp(a, b));
        let mut out: Vec<(Cow<'a, str>, Node<'a>)> = Vec::with_capacity(members.len() - start);
        for member in members.drain(start..) {
            push_last_wins(&mut out, member);
        }
        Some(Node::Object(out))
    }

    /// Advances to the next byte that is `"`, `\\` or a control character
    /// (or to the end), eight bytes at a time.
    fn skip_plain(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.bytes.get(self.pos..self.pos + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let w = u64::from_le_bytes(word);
            let quote = w ^ (ONES * u64::from(b'"'));
            let slash = w ^ (ONES * u64::from(b'\\'));
            let found = ((quote.wrapping_sub(ONES) & !quote)
                | (slash.wrapping_sub(ONES) & !slash)
                | (w.wrapping_sub(ONES * 0x20) & !w))
                & HIGH;
            if found != 0 {
                // The lowest flagged byte is exact (later ones may not be).
                self.pos += (found.trailing_zeros() / 8) as usize;
                return;
            }
            self.pos += 8;
        }
        while let Some(&b) = self.bytes.get(self.pos) {
            if matches!(b, b'"' | b'\\' | 0..=0x1f) {
                return;
            }
            self.pos += 1;
        }
    }

    /// A string starting at the opening quote.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.pos += 1;
        let start = self.pos;
        self.skip_plain();
        match *self.bytes.get(self.pos)? {
            b'"' => {
                let s = self.text.get(start..self.pos)?;
                self.pos += 1;
                Some(Cow::Borrowed(s))
            }
            b'\\' => self.escaped_string(start).map(Cow::Owned),
            _ => None,
        }
    }

    fn escaped_string(&mut self, start: usize) -> Option<String> {
        let mut out = String::with_capacity(self.pos - start + 16);
        out.push_str(self.text.get(start..self.pos)?);
        loop {
            match *self.bytes.get(self.pos)? {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    let esc = *self.bytes.get(self.pos + 1)?;
                    self.pos += 2;
                    match esc {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => {
                    let run = self.pos;
                    self.skip_plain();
                    out.push_str(self.text.get(run..self.pos)?);
                }
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let digits = self.bytes.get(self.pos..self.pos + 4)?;
        let mut n = 0;
        for &d in digits {
            n = n * 16 + char::from(d).to_digit(16)?;
        }
        self.pos += 4;
        Some(n)
    }

    /// After `\u`: one code point, combining a surrogate pair.
    fn unicode_escape(&mut self) -> Option<char> {
        let first = self.hex4()?;
        match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2)? != b"\\u" {
                    return None;
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return None;
                }
                char::from_u32(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00))
            }
            0xDC00..=0xDFFF => None,
            c => char::from_u32(c),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Option<Number> {
        let start = self.pos;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        let int_end = self.pos;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        let token = self.text.get(start..self.pos)?;
        // Fast path: small non-negative integers (what serde_json makes u64).
        if !negative && self.pos == int_end && token.len() <= 19 {
            let mut n: u64 = 0;
            for d in token.bytes() {
                n = n * 10 + u64::from(d - b'0');
            }
            return Some(Number::from(n));
        }
        token.parse::<Number>().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_serde_json_value() {
        let texts: &[&str] = &[
            r#"{"b":1,"a":[1,-2,3.5,"x\"y",null,true,{}],"a":"dup","\u00e9":{"z":1e3}}"#,
            "18446744073709551615",
            "-9223372036854775808",
            "123456789012345678901234567890",
            r#"  "plain"  "#,
        ];
        for t in texts {
            let v: Value = serde_json::from_str(t).unwrap();
            let n = Node::parse(t.as_bytes()).unwrap();
            assert_eq!(n.to_value(), v, "{t}");
            assert_eq!(Node::from_value(&v), n, "{t}");
        }
        for bad in ["", "{", "[1,]", "1 2", "\"\\x\"", "1e400"] {
            assert!(Node::parse(bad.as_bytes()).is_none(), "{bad}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad}");
        }
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(Node::parse(deep.as_bytes()).is_none());
    }

    /// Parses with both parsers and checks they agree (value or rejection).
    fn same_as_serde(bytes: &[u8]) {
        let ours = Node::parse(bytes).map(|n| n.to_value());
        let theirs = serde_json::from_slice::<Value>(bytes).ok();
        assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(bytes));
    }

    #[test]
    fn agrees_with_serde_json_on_edge_cases() {
        let cases: &[&str] = &[
            "0",
            "-0",
            "-0.0",
            "0.0",
            "1.5e3",
            "1E-2",
            "1e+2",
            "-1",
            "01",
            "1.",
            ".5",
            "+1",
            "-",
            "1e",
            "1e+",
            "--1",
            "00",
            "-01",
            "9007199254740993",
            "18446744073709551615",
            "18446744073709551616",
            "-9223372036854775808",
            "-9223372036854775809",
            "99999999999999999999",
            "1234567890123456789",
            "12345678901234567890",
            "1e308",
            "1e309",
            "-1e309",
            "2.2250738585072014e-308",
            "5e-324",
            "1e-400",
            "true",
            "false",
            "null",
            "tru",
            "nul",
            "True",
            "NaN",
            "Infinity",
            r#""a\"b""#,
            r#""\u00e9\u0041""#,
            r#""\ud83d\ude00""#,
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\ud83d\u0041""#,
            r#""\ud83dx""#,
            r#""\u12""#,
            r#""\uZZZZ""#,
            r#""\/\b\f\n\r\t""#,
            r#""\a""#,
            "\"tab\there\"",
            "\"nl\nhere\"",
            "\"\u{7f}\"",
            "\"é ü 漢\"",
            " [ 1 , 2 ] ",
            "[1 2]",
            "[,1]",
            "[1,,2]",
            "{}",
            "{ }",
            "[ ]",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"a":1,"a":2,"b":[{"a":{}}]}"#,
            r#"{"b":1,"a":2,"c":3,"a":4}"#,
            "\t\r\n 1 \n",
            "1 x",
            "[1]]",
            "{\"a\":}",
            r#"["a\u0000"]"#,
        ];
        for c in cases {
            same_as_serde(c.as_bytes());
        }
        same_as_serde(b"\"\xff\"");
        same_as_serde(b"\"\x01\"");
        for depth in [126, 127, 128, 129] {
            let arrays = "[".repeat(depth) + &"]".repeat(depth);
            same_as_serde(arrays.as_bytes());
            let objects = "{\"a\":".repeat(depth) + "1" + &"}".repeat(depth);
            same_as_serde(objects.as_bytes());
        }
    }

    proptest::proptest! {
        #[test]
        fn agrees_with_serde_json_on_mutated_documents(
            seed in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            cut in 0usize..400, byte in proptest::prelude::any::<u8>(), action in 0u8..4,
        ) {
            let base = format!(
                r#"{{"data":[{{"iface":"vmbr0","mtu":"9000","x":[1,-2.5e3,true,null,{{}}],"esc":"a\"\\\u00e9\ud83d\ude00"}},{}],"n":{}}}"#,
                seed.len(),
                seed.first().copied().unwrap_or(0)
            );
            let mut bytes = base.into_bytes();
            let at = cut.min(bytes.len().saturating_sub(1));
            match action {
                0 => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 => { bytes.remove(at); }
                _ => bytes.extend_from_slice(&seed),
            }
            same_as_serde(&bytes);
        }
    }

    #[test]
    fn borrows_plain_strings() {
        let text = br#"{"iface":"vmbr0","esc\n":"a\tb"}"#;
        let Some(Node::Object(m)) = Node::parse(text) else {
            panic!()
        };
        assert!(matches!(m[1].0, Cow::Borrowed("iface")));
        assert!(matches!(m[1].1, Node::String(Cow::Borrowed("vmbr0"))));
        assert!(matches!(m[0].0, Cow::Owned(_)));
    }
}
