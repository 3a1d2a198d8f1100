//! The paired walk: Perl scalar equivalence, pattern rules and the diff in
//! one pass over both normalised envelopes.
//!
//! Both trees are walked in step (objects by merge-joining their sorted
//! keys, arrays index by index). Inside the body, at every location:
//!
//! 1. a pattern rule designating the location whose check passes makes the
//!    two values equal (the Perl side takes the Rust value; the pointer is
//!    reported as masked) and the values are not looked into further;
//! 2. with `perl_scalars`, two unequal scalars that are loosely equal, or a
//!    flag key present on one side only with a false value, are reported
//!    as a type-only hit and aligned the same way;
//! 3. whatever still differs becomes patch operations.
//!
//! The operations and their order are exactly those `json_patch::diff`
//! gives for the two aligned envelopes: for objects, the keys of the Rust
//! side in order (recurse or `add`), then `remove` for keys only on the Perl
//! side; for arrays, the common prefix element by element, then `remove`s
//! or `add`s for the surplus; any other unequal pair is a `replace`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, PatchOperation, RemoveOperation, ReplaceOperation};
use serde_json::Value;

use crate::bodyrules::{BodyRules, Set};
use crate::diff::{Diff, Path, Step};
use crate::doc::{Node, find, key_cmp};
use crate::endpoint::Settings;
use crate::normalise::{PairReport, TypeOnlyHit, TypeOnlyKind, is_false_flag, loose_eq};
use crate::patterns;

/// What the walk found.
pub(crate) struct Outcome {
    pub(crate) report: PairReport,
    pub(crate) diff: Diff,
}

/// Walks two envelopes whose bodies were parsed with the endpoint's body
/// rules. `lines` collects the fingerprint lines of type-only hits; the
/// patch is only built when `want_diff` is set.
pub(crate) fn walk<'a>(
    settings: &Settings,
    perl: &mut Node<'a>,
    rust: &mut Node<'a>,
    lines: Option<&mut BTreeSet<String>>,
    want_diff: bool,
) -> Outcome {
    let mut w = Walker {
        rules: &settings.body,
        flags: &settings.flags,
        scalars: settings.perl_scalars,
        want_diff,
        path: Path::default(),
        report: PairReport::default(),
        diff: Diff::default(),
        lines,
        seen: HashMap::new(),
    };
    w.node(perl, rust, 0, false);
    Outcome {
        report: w.report,
        diff: w.diff,
    }
}

struct Walker<'s, 'a> {
    rules: &'s BodyRules,
    flags: &'s BTreeSet<String>,
    scalars: bool,
    want_diff: bool,
    path: Path<'a>,
    report: PairReport,
    diff: Diff,
    lines: Option<&'s mut BTreeSet<String>>,
    /// Fingerprint lines already added, by hash.
    seen: HashMap<u64, (TypeOnlyKind, String)>,
}

#[derive(Clone, Copy)]
enum Op<'n, 'a> {
    Add(&'n Node<'a>),
    Remove,
    Replace(&'n Node<'a>),
}

impl<'a> Walker<'_, 'a> {
    fn emit(&mut self, op: Op<'_, 'a>) {
        if !self.want_diff {
            return;
        }
        // Paths are built from escaped tokens and always parse.
        let path = PointerBuf::parse(self.path.pointer().to_owned()).unwrap_or_default();
        self.diff.patch.0.push(match op {
            Op::Add(v) => PatchOperation::Add(AddOperation {
                path,
                value: v.to_value(),
            }),
            Op::Remove => PatchOperation::Remove(RemoveOperation { path }),
            Op::Replace(v) => PatchOperation::Replace(ReplaceOperation {
                path,
                value: v.to_value(),
            }),
        });
        self.diff.general.push(self.path.general().to_owned());
    }

    fn hit(&mut self, kind: TypeOnlyKind, perl: Option<Value>, rust: Option<Value>) {
        self.report.type_only.push(TypeOnlyHit {
            pointer: self.path.pointer().to_owned(),
            kind,
            perl,
            rust,
        });
        if let Some(lines) = self.lines.as_deref_mut() {
            // Most hits repeat a (kind, generalised pointer) already seen:
            // recognise those by hash (confirmed by comparing the text).
            let (general, hash) = self.path.general_hashed();
            let key = hash ^ (kind as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let known = self
                .seen
                .get(&key)
                .is_some_and(|(k, g)| *k == kind && g == general);
            if !known {
                let mut line = String::with_capacity(general.len() + 24);
                line.push_str("type-only ");
                line.push_str(kind.as_str());
                line.push(' ');
                line.push_str(general);
                self.seen
                    .entry(key)
                    .or_insert_with(|| (kind, general.to_owned()));
                lines.insert(line);
            }
        }
    }

    /// Compares `a` and `b` at the current location; `set` locates it in
    /// the rule trie (body only).
    fn node(&mut self, a: &mut Node<'a>, b: &mut Node<'a>, set: Set, in_body: bool) {
        if in_body && set != 0 {
            for i in self.rules.patterns_at(set) {
                let rule = &self.rules.patterns[i];
                if patterns::equivalent(rule, a, b) {
                    if a != b {
                        self.report.masked.push(self.path.pointer().to_owned());
                        *a = b.clone();
                    }
                    return;
                }
            }
        }
        match (a, b) {
            (Node::Object(ma), Node::Object(mb)) => self.objects(ma, mb, set, in_body),
            (Node::Array(xa), Node::Array(xb)) => self.arrays(xa, xb, set, in_body),
            (x, y) => {
                if x == y {
                    return;
                }
                if in_body && self.scalars {
                    if let Some(kind) = loose_eq(x, y) {
                        self.hit(kind, Some(x.to_value()), Some(y.to_value()));
                        *x = y.clone();
                        return;
                    }
                    // A flag Perl left `undef` (JSON null) means false.
                    let flag = matches!(self.path.last(), Some(Step::Key(k)) if self.flags.contains(k.as_ref()));
                    if flag && is_false_flag(x) && is_false_flag(y) {
                        self.hit(
                            TypeOnlyKind::AbsentFlag,
                            Some(x.to_value()),
                            Some(y.to_value()),
                        );
                        *x = y.clone();
                        return;
                    }
                }
                self.emit(Op::Replace(y));
            }
        }
    }

    fn child(&self, key: &str, set: Set, in_body: bool) -> (Set, bool) {
        if in_body {
            (self.rules.member(set, key), true)
        } else if self.path.is_empty() && key == "body" {
            (self.rules.root(), true)
        } else {
            (0, false)
        }
    }

    fn absent_flag(&self, in_body: bool, key: &str, value: &Node<'_>) -> bool {
        in_body && self.scalars && self.flags.contains(key) && is_false_flag(value)
    }

    fn objects(
        &mut self,
        ma: &mut Vec<(Cow<'a, str>, Node<'a>)>,
        mb: &mut [(Cow<'a, str>, Node<'a>)],
        set: Set,
        in_body: bool,
    ) {
        let mut left_only: Vec<usize> = Vec::new();
        let mut drop_from_a: Vec<usize> = Vec::new();
        let mut add_to_a: Vec<usize> = Vec::new();
        let (mut i, mut j) = (0, 0);
        loop {
            let order = match (ma.get(i), mb.get(j)) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((ka, _)), Some((kb, _))) => key_cmp(ka, kb),
            };
            match order {
                Ordering::Equal => {
                    let (child_set, child_in_body) = self.child(&ma[i].0, set, in_body);
                    self.path.push(Step::Key(ma[i].0.clone()));
                    self.node(&mut ma[i].1, &mut mb[j].1, child_set, child_in_body);
                    self.path.pop();
                    i += 1;
                    j += 1;
                }
                Ordering::Less => {
                    if self.absent_flag(in_body, &ma[i].0, &ma[i].1) {
                        let value = ma[i].1.to_value();
                        self.path.push(Step::Key(ma[i].0.clone()));
                        self.hit(TypeOnlyKind::AbsentFlag, Some(value), None);
                        self.path.pop();
                        drop_from_a.push(i);
                    } else {
                        left_only.push(i);
                    }
                    i += 1;
                }
                Ordering::Greater => {
                    self.path.push(Step::Key(mb[j].0.clone()));
                    if self.absent_flag(in_body, &mb[j].0, &mb[j].1) {
                        let value = mb[j].1.to_value();
                        self.hit(TypeOnlyKind::AbsentFlag, None, Some(value));
                        add_to_a.push(j);
                    } else {
                        self.emit(Op::Add(&mb[j].1));
                    }
                    self.path.pop();
                    j += 1;
                }
            }
        }
        for i in left_only {
            self.path.push(Step::Key(ma[i].0.clone()));
            self.emit(Op::Remove);
            self.path.pop();
        }
        for &i in drop_from_a.iter().rev() {
            ma.remove(i);
        }
        for j in add_to_a {
            let (k, v) = &mb[j];
            if let Err(pos) = find(ma, k) {
                ma.insert(pos, (k.clone(), v.clone()));
            }
        }
    }

    fn arrays(&mut self, xa: &mut [Node<'a>], xb: &mut [Node<'a>], set: Set, in_body: bool) {
        let common = xa.len().min(xb.len());
        for (i, (va, vb)) in xa.iter_mut().zip(xb.iter_mut()).enumerate() {
            let child_set = if in_body {
                self.rules.element(set, i)
            } else {
                0
            };
            self.path.push(Step::Index(i));
            self.node(va, vb, child_set, in_body);
            self.path.pop();
        }
        // Surplus Perl elements are removed one by one at the same index,
        // surplus Rust elements added at theirs.
        for _ in common..xa.len() {
            self.path.push(Step::Index(common));
            self.emit(Op::Remove);
            self.path.pop();
        }
        for (j, vb) in xb.iter().enumerate().skip(common) {
            self.path.push(Step::Index(j));
            self.emit(Op::Add(vb));
            self.path.pop();
        }
    }
}
