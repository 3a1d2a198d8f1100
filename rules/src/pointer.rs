//! JSON pointer patterns used by rule files.
//!
//! A pattern is an RFC 6901 JSON pointer whose segments may be `*`, which
//! matches every member of an object or every element of an array
//! (`/data/*/altnames`). A segment that is exactly `*` is always a wildcard;
//! every other segment is a literal key (or array index). The empty pointer
//! `""` designates the whole document.

use std::fmt;

/// Why a pointer pattern was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PointerError {
    /// The pointer is not empty and does not start with `/`.
    #[error("bad pointer \"{0}\": must be empty or start with '/'")]
    NoLeadingSlash(String),
    /// A `~` is not followed by `0` or `1`.
    #[error("bad pointer \"{0}\": '~' must be followed by '0' or '1'")]
    BadEscape(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Key(String),
    Any,
}

/// A parsed JSON pointer with optional `*` wildcard segments.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PointerPattern {
    source: String,
    segments: Vec<Segment>,
}

impl fmt::Debug for PointerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PointerPattern({:?})", self.source)
    }
}

impl fmt::Display for PointerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl PointerPattern {
    /// Parses a pointer pattern.
    ///
    /// # Errors
    /// Fails when the pointer is neither empty nor starts with `/`, or when it
    /// contains a `~` escape other than `~0` and `~1`.
    ///
    /// ```
    /// use pve_migration_rules::PointerPattern;
    /// let p = PointerPattern::parse("/data/*/mtu").unwrap();
    /// assert!(p.matches("/data/3/mtu"));
    /// assert!(!p.matches("/data/3/iface"));
    /// assert!(PointerPattern::parse("data").is_err());
    /// ```
    pub fn parse(source: &str) -> Result<Self, PointerError> {
        if source.is_empty() {
            return Ok(Self {
                source: String::new(),
                segments: Vec::new(),
            });
        }
        let Some(rest) = source.strip_prefix('/') else {
            return Err(PointerError::NoLeadingSlash(source.to_owned()));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            if raw == "*" {
                segments.push(Segment::Any);
                continue;
            }
            let decoded =
                decode_token(raw).ok_or_else(|| PointerError::BadEscape(source.to_owned()))?;
            segments.push(Segment::Key(decoded));
        }
        Ok(Self {
            source: source.to_owned(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True for the empty pointer (the whole document).
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// The segments; `None` stands for a `*` wildcard.
    pub(crate) fn segments(&self) -> impl Iterator<Item = Option<&str>> {
        self.segments.iter().map(|s| match s {
            Segment::Key(k) => Some(k.as_str()),
            Segment::Any => None,
        })
    }

    /// Whether the concrete pointer `pointer` (RFC 6901, no wildcards) is
    /// designated by this pattern. Invalid pointers never match.
    pub fn matches(&self, pointer: &str) -> bool {
        if pointer.is_empty() {
            return self.segments.is_empty();
        }
        let Some(rest) = pointer.strip_prefix('/') else {
            return false;
        };
        let mut tokens = rest.split('/');
        for seg in &self.segments {
            let Some(token) = tokens.next() else {
                return false;
            };
            match seg {
                Segment::Any => {}
                Segment::Key(key) => {
                    if decode_token(token).as_deref() != Some(key.as_str()) {
                        return false;
                    }
                }
            }
        }
        tokens.next().is_none()
    }
}

/// Decodes one RFC 6901 reference token (`~1` → `/`, `~0` → `~`).
pub(crate) fn decode_token(raw: &str) -> Option<String> {
    if !raw.contains('~') {
        return Some(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Appends `/token` (escaped) to a pointer under construction.
pub(crate) fn push_token(path: &mut String, token: &str) {
    path.push('/');
    if token.bytes().any(|b| b == b'~' || b == b'/') {
        for c in token.chars() {
            match c {
                '~' => path.push_str("~0"),
                '/' => path.push_str("~1"),
                c => path.push(c),
            }
        }
    } else {
        path.push_str(token);
    }
}

/// Appends `/index` to a pointer under construction.
pub(crate) fn push_index(path: &mut String, index: usize) {
    let mut digits = [0u8; 20];
    let mut n = index;
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    path.push('/');
    for &d in &digits[at..] {
        path.push(char::from(d));
    }
}

/// Parses an RFC 6901 array index (`0` or no leading zero).
pub(crate) fn parse_index(token: &str) -> Option<usize> {
    if token.is_empty() || (token.len() > 1 && token.starts_with('0')) {
        return None;
    }
    if !token.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    token.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_match() {
        let p = PointerPattern::parse("/a~1b/*/c~0").unwrap();
        assert!(p.matches("/a~1b/0/c~0"));
        assert!(p.matches("/a~1b/x/c~0"));
        assert!(!p.matches("/a~1b/x"));
        assert!(!p.matches("/a~1b/x/c~0/d"));
        assert!(PointerPattern::parse("").unwrap().is_root());
        assert!(PointerPattern::parse("").unwrap().matches(""));
        assert_eq!(
            PointerPattern::parse("/a~2"),
            Err(PointerError::BadEscape("/a~2".into()))
        );
        assert_eq!(
            PointerPattern::parse("a"),
            Err(PointerError::NoLeadingSlash("a".into()))
        );
    }

    #[test]
    fn escaping() {
        let mut s = String::new();
        push_token(&mut s, "a/b~c");
        push_index(&mut s, 7);
        assert_eq!(s, "/a~1b~0c/7");
        assert_eq!(parse_index("07"), None);
        assert_eq!(parse_index("0"), Some(0));
        assert_eq!(parse_index("12"), Some(12));
    }
}
