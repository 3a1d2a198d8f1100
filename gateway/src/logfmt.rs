//! `migration.log` lines in logfmt: `key=value` pairs, values quoted when they
//! contain blanks, quotes or `=`.

use std::fmt::Write;

/// Builds one logfmt line.
#[derive(Debug, Default)]
pub struct Line(String);

impl Line {
    /// A line starting with the current UTC time (`ts=…`, RFC 3339, milliseconds).
    pub fn now() -> Self {
        let mut l = Line(String::with_capacity(256));
        l.field("ts", &crate::evidence::now_rfc3339());
        l
    }

    /// Appends `key=value`.
    pub fn field(&mut self, key: &str, value: &str) -> &mut Self {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(key);
        self.0.push('=');
        // Bytes first (values are nearly always ASCII); anything else is
        // judged by its characters.
        let plain = !value.is_empty()
            && if value.is_ascii() {
                value
                    .bytes()
                    .all(|b| b > b' ' && b != b'"' && b != b'=' && b != 0x7f)
            } else {
                value
                    .chars()
                    .all(|c| !c.is_whitespace() && c != '"' && c != '=' && !c.is_control())
            };
        if plain {
            self.0.push_str(value);
        } else {
            self.0.push('"');
            for c in value.chars() {
                match c {
                    '"' => self.0.push_str("\\\""),
                    '\\' => self.0.push_str("\\\\"),
                    '\n' => self.0.push_str("\\n"),
                    c if c.is_control() => {
                        let _ = write!(self.0, "\\u{{{:x}}}", c as u32);
                    }
                    c => self.0.push(c),
                }
            }
            self.0.push('"');
        }
        self
    }

    /// The finished line (with a trailing newline).
    pub fn finish(mut self) -> String {
        self.0.push('\n');
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        let mut l = Line::default();
        l.field("endpoint", "node.network.list")
            .field("reason", "fallback rate 1/1 > 0")
            .field("empty", "")
            .field("q", "a\"b");
        assert_eq!(
            l.finish(),
            "endpoint=node.network.list reason=\"fallback rate 1/1 > 0\" empty=\"\" q=\"a\\\"b\"\n"
        );
        let mut l = Line::default();
        l.field("tab", "a\tb")
            .field("eq", "a=b")
            .field("nbsp", "a\u{a0}b")
            .field("plain", "zone-ä/1");
        assert_eq!(
            l.finish(),
            "tab=\"a\\u{9}b\" eq=\"a=b\" nbsp=\"a\u{a0}b\" plain=zone-ä/1\n"
        );
    }
}
