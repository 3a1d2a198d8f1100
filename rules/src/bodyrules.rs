//! Body rules (`ignore`, `trim`, `sort`, `patterns`) compiled into a trie.
//!
//! The rule pointers of an endpoint are merged into a trie whose edges are
//! keys or `*`; the set of trie nodes matching the current location is
//! carried along as a bit set (at most 128 trie nodes per endpoint) by
//! the parser and by the paired walk, so no rule needs a pass of its own.
//!
//! While a body is parsed, an ignored member or element is skipped without
//! being built, strings are trimmed as they are read, and arrays are sorted
//! as soon as they are complete (so deeper arrays are sorted before the
//! arrays that contain them). Locations are matched against the body as
//! received, so every rule designates the same values whatever the other
//! rules do. Pattern rules are looked up by the paired walk.

use std::collections::BTreeSet;

use crate::doc::Node;
use crate::endpoint::{PatternRule, Settings, SortRule};
use crate::normalise::sort_array;
use crate::pointer::{PointerPattern, parse_index};

/// Most trie nodes the rules of one endpoint may need.
pub(crate) const MAX_NODES: usize = 128;

/// A set of trie nodes.
pub(crate) type Set = u128;

fn length_bit(len: usize) -> u64 {
    1 << len.min(63)
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    literals: Vec<(String, usize)>,
    /// Bit `n` set when a literal has length `n` (63 for 63 and longer):
    /// most keys are rejected by their length alone.
    literal_lengths: u64,
    any: Option<usize>,
    ignore: bool,
    trim: bool,
    /// Indices into `BodyRules::sort`, in rule order.
    sorts: Vec<usize>,
    /// Indices into `BodyRules::patterns`, in rule order.
    patterns: Vec<usize>,
}

/// Compiled single-sided rules of one endpoint.
#[derive(Debug, Clone, Default)]
pub(crate) struct BodyRules {
    nodes: Vec<TrieNode>,
    pub(crate) sort: Vec<SortRule>,
    pub(crate) patterns: Vec<PatternRule>,
    /// Flags that order like absent when false (empty unless the Perl
    /// scalar equivalence is on).
    pub(crate) flags: BTreeSet<String>,
}

impl BodyRules {
    /// Compiles the rules; fails when they need more than [`MAX_NODES`]
    /// trie nodes.
    pub(crate) fn compile(settings: &Settings) -> Result<Self, String> {
        let mut rules = BodyRules {
            nodes: vec![TrieNode::default()],
            sort: settings.sort.clone(),
            patterns: settings.patterns.clone(),
            flags: if settings.perl_scalars {
                settings.flags.clone()
            } else {
                BTreeSet::new()
            },
        };
        for p in &settings.ignore {
            let n = rules.insert(p)?;
            rules.nodes[n].ignore = true;
        }
        for p in &settings.trim {
            let n = rules.insert(p)?;
            rules.nodes[n].trim = true;
        }
        for (i, s) in settings.sort.iter().enumerate() {
            let n = rules.insert(&s.pointer)?;
            rules.nodes[n].sorts.push(i);
        }
        for (i, p) in settings.patterns.iter().enumerate() {
            let n = rules.insert(&p.pointer)?;
            rules.nodes[n].patterns.push(i);
        }
        Ok(rules)
    }

    fn insert(&mut self, pointer: &PointerPattern) -> Result<usize, String> {
        let mut node = 0;
        for seg in pointer.segments() {
            let next = match seg {
                Some(key) => self.nodes[node]
                    .literals
                    .iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, c)| *c),
                None => self.nodes[node].any,
            };
            node = match next {
                Some(c) => c,
                None => {
                    let c = self.nodes.len();
                    if c >= MAX_NODES {
                        return Err(format!(
                            "the ignore/trim/sort/patterns pointers of one endpoint may use at most {MAX_NODES} distinct path steps"
                        ));
                    }
                    self.nodes.push(TrieNode::default());
                    match seg {
                        Some(key) => {
                            let parent = &mut self.nodes[node];
                            parent.literals.push((key.to_owned(), c));
                            parent.literal_lengths |= length_bit(key.len());
                        }
                        None => self.nodes[node].any = Some(c),
                    }
                    c
                }
            };
        }
        Ok(node)
    }

    /// The set for the body root.
    pub(crate) fn root(&self) -> Set {
        if self.nodes.len() <= 1 && !self.has_root_rules() {
            0
        } else {
            1
        }
    }

    fn has_root_rules(&self) -> bool {
        self.nodes
            .first()
            .is_some_and(|n| n.trim || n.ignore || !n.sorts.is_empty() || !n.patterns.is_empty())
    }

    fn step(&self, set: Set, matches: impl Fn(&str) -> bool) -> Set {
        let mut out: Set = 0;
        let mut rest = set;
        while rest != 0 {
            let i = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            let node = &self.nodes[i];
            for (k, c) in &node.literals {
                if matches(k) {
                    out |= 1 << c;
                }
            }
            if let Some(c) = node.any {
                out |= 1 << c;
            }
        }
        out
    }

    /// The set for member `key` of an object at `set`.
    pub(crate) fn member(&self, set: Set, key: &str) -> Set {
        if set == 0 {
            return 0;
        }
        if set.is_power_of_two() {
            let node = &self.nodes[set.trailing_zeros() as usize];
            let mut out: Set = node.any.map_or(0, |c| 1 << c);
            if node.literal_lengths & length_bit(key.len()) != 0 {
                for (k, c) in &node.literals {
                    if k == key {
                        out |= 1 << c;
                    }
                }
            }
            return out;
        }
        self.step(set, |k| k == key)
    }

    /// The set for element `index` of an array at `set`.
    pub(crate) fn element(&self, set: Set, index: usize) -> Set {
        if set == 0 {
            return 0;
        }
        self.step(set, |k| parse_index(k) == Some(index))
    }

    fn any(&self, set: Set, f: impl Fn(&TrieNode) -> bool) -> bool {
        let mut rest = set;
        while rest != 0 {
            let i = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            if f(&self.nodes[i]) {
                return true;
            }
        }
        false
    }

    pub(crate) fn ignored(&self, set: Set) -> bool {
        set != 0 && self.any(set, |n| n.ignore)
    }

    pub(crate) fn trimmed(&self, set: Set) -> bool {
        set != 0 && self.any(set, |n| n.trim)
    }

    fn collect(&self, set: Set, f: impl Fn(&TrieNode) -> &[usize]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut rest = set;
        while rest != 0 {
            let i = rest.trailing_zeros() as usize;
            rest &= rest - 1;
            out.extend_from_slice(f(&self.nodes[i]));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Applies the sort rules designating `set` to `items`, in rule order.
    pub(crate) fn sort_at(&self, set: Set, items: &mut Vec<Node<'_>>) {
        if set == 0 {
            return;
        }
        let sort = |items: &mut Vec<Node<'_>>, i: usize| {
            let rule = &self.sort[i];
            sort_array(items, rule.by.as_deref(), &self.flags);
        };
        if set.is_power_of_two() {
            for &i in &self.nodes[set.trailing_zeros() as usize].sorts {
                sort(items, i);
            }
        } else if self.any(set, |n| !n.sorts.is_empty()) {
            for i in self.collect(set, |n| &n.sorts) {
                sort(items, i);
            }
        }
    }

    /// Pattern rules applying at `set`, in rule order.
    pub(crate) fn patterns_at(&self, set: Set) -> Vec<usize> {
        if set == 0 || !self.any(set, |n| !n.patterns.is_empty()) {
            return Vec::new();
        }
        self.collect(set, |n| &n.patterns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules(ignore: &[&str], trim: &[&str], sort: &[(&str, Option<&str>)]) -> BodyRules {
        let p = |s: &str| PointerPattern::parse(s).unwrap();
        let settings = Settings {
            ignore: ignore.iter().map(|s| p(s)).collect(),
            trim: trim.iter().map(|s| p(s)).collect(),
            sort: sort
                .iter()
                .map(|(s, by)| SortRule {
                    pointer: p(s),
                    by: by.map(str::to_owned),
                })
                .collect(),
            ..Settings::default()
        };
        BodyRules::compile(&settings).unwrap()
    }

    fn parse(text: &str, r: &BodyRules) -> serde_json::Value {
        Node::parse_with(text.as_bytes(), r).unwrap().to_value()
    }

    #[test]
    fn ignore_designates_locations_of_the_received_body() {
        let r = rules(&["/data/*/a", "/x/1", "/x/2"], &[], &[]);
        let v = parse(r#"{"data":[{"a":1,"b":2},{"a":3}],"x":[1,2,3,4]}"#, &r);
        assert_eq!(v, json!({"data": [{"b": 2}, {}], "x": [1, 4]}));
        let r = rules(&["/data/*"], &[], &[]);
        assert_eq!(
            parse(r#"{"data":{"a":1,"b":[2]}}"#, &r),
            json!({"data": {}})
        );
    }

    #[test]
    fn trim_and_nested_sorts() {
        let r = rules(
            &[],
            &["/message", "/data/*/name"],
            &[("/data", Some("k")), ("/data/*/l", None)],
        );
        let v = parse(
            r#"{"message":"failed.\n","data":[{"k":"b","l":[3,1,2],"name":"x  "},{"k":"a","l":["z","y"]}]}"#,
            &r,
        );
        assert_eq!(
            v,
            json!({"message": "failed.", "data": [{"k": "a", "l": ["y", "z"]}, {"k": "b", "l": [1, 2, 3], "name": "x"}]})
        );
    }

    #[test]
    fn too_many_steps() {
        let long: Vec<String> = (0..200).map(|i| format!("/k{i}")).collect();
        let settings = Settings {
            ignore: long
                .iter()
                .map(|s| PointerPattern::parse(s).unwrap())
                .collect(),
            ..Settings::default()
        };
        assert!(BodyRules::compile(&settings).is_err());
        assert_eq!(BodyRules::default().root(), 0);
    }
}
