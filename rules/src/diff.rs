//! Patch paths: steps of the current location, spelled out on demand.
//!
//! The paired walk (see `pairwalk.rs`) keeps the current location as a
//! stack of steps and only spells it out as an RFC 6901 pointer, and as
//! the generalised pointer with array indices replaced by `*` (used by
//! fingerprints and the noise model), for the operations and hits it
//! reports.

use std::borrow::Cow;

use json_patch::Patch;

use crate::pointer::{push_index, push_token};

/// A patch plus the generalised path of each operation.
#[derive(Debug, Default)]
pub(crate) struct Diff {
    pub(crate) patch: Patch,
    pub(crate) general: Vec<String>,
}

/// One step of the current path.
#[derive(Debug, Clone)]
pub(crate) enum Step<'n> {
    Key(Cow<'n, str>),
    Index(usize),
}

/// The current location as steps, with its pointer and generalised pointer
/// spelled out on demand; the spelling of the unchanged leading steps is
/// kept between requests, so neighbouring locations cost one token each.
#[derive(Debug, Default)]
pub(crate) struct Path<'n> {
    steps: Vec<Step<'n>>,
    pointer: Spelled,
    general: Spelled,
}

#[derive(Debug, Default)]
struct Spelled {
    text: String,
    /// `text` length and hash of `text` (generalised spelling only) after
    /// each spelled step.
    ends: Vec<(usize, u64)>,
    /// How many leading steps `text` spells.
    valid: usize,
}

/// Hash of the spelled text (FNV-1a), kept per step so that it costs
/// nothing to ask for.
fn extend_hash(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

impl Spelled {
    fn refresh(&mut self, steps: &[Step<'_>], general: bool) -> &str {
        let (keep, mut hash) = match self.valid {
            0 => (0, 0xcbf2_9ce4_8422_2325),
            n => self.ends[n - 1],
        };
        self.text.truncate(keep);
        self.ends.truncate(self.valid);
        for step in &steps[self.valid..] {
            let from = self.text.len();
            match step {
                Step::Key(k) => push_token(&mut self.text, k),
                Step::Index(_) if general => self.text.push_str("/*"),
                Step::Index(i) => push_index(&mut self.text, *i),
            }
            if general {
                hash = extend_hash(hash, &self.text.as_bytes()[from..]);
            }
            self.ends.push((self.text.len(), hash));
        }
        self.valid = steps.len();
        &self.text
    }

    /// Hash of the text; only meaningful right after `refresh`.
    fn hash(&self) -> u64 {
        self.ends.last().map_or(0xcbf2_9ce4_8422_2325, |e| e.1)
    }
}

impl<'n> Path<'n> {
    pub(crate) fn push(&mut self, step: Step<'n>) {
        self.steps.push(step);
    }

    pub(crate) fn pop(&mut self) {
        self.steps.pop();
        let len = self.steps.len();
        self.pointer.valid = self.pointer.valid.min(len);
        self.general.valid = self.general.valid.min(len);
    }

    pub(crate) fn last(&self) -> Option<&Step<'n>> {
        self.steps.last()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The current location as a JSON pointer.
    pub(crate) fn pointer(&mut self) -> &str {
        self.pointer.refresh(&self.steps, false)
    }

    /// The current location with array indices replaced by `*`.
    pub(crate) fn general(&mut self) -> &str {
        self.general.refresh(&self.steps, true)
    }

    /// [`Path::general`] with a 64-bit hash of it.
    pub(crate) fn general_hashed(&mut self) -> (&str, u64) {
        self.general.refresh(&self.steps, true);
        (&self.general.text, self.general.hash())
    }
}

/// The steps as a JSON pointer.
#[cfg(test)]
pub(crate) fn spell_path(steps: &[Step<'_>]) -> String {
    let mut path = String::with_capacity(8 * steps.len() + 8);
    for step in steps {
        match step {
            Step::Key(k) => push_token(&mut path, k),
            Step::Index(i) => push_index(&mut path, *i),
        }
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_spelling_follows_the_steps() {
        let mut p = Path::default();
        p.push(Step::Key("body".into()));
        p.push(Step::Key("data".into()));
        p.push(Step::Index(12));
        p.push(Step::Key("a/b".into()));
        assert_eq!(p.pointer(), "/body/data/12/a~1b");
        assert_eq!(p.general(), "/body/data/*/a~1b");
        p.pop();
        p.push(Step::Key("mtu".into()));
        assert_eq!(p.pointer(), "/body/data/12/mtu");
        p.pop();
        p.pop();
        p.push(Step::Index(3));
        assert_eq!(p.general(), "/body/data/*");
        assert_eq!(p.pointer(), "/body/data/3");
        let spelled = spell_path(&p.steps);
        assert_eq!(p.pointer(), spelled);
        let (g, h) = p.general_hashed();
        assert_eq!(h, extend_hash(0xcbf2_9ce4_8422_2325, g.as_bytes()));
        while !p.is_empty() {
            p.pop();
        }
        assert_eq!(p.pointer(), "");
    }
}
