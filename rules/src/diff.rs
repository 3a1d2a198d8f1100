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

/// The steps as a JSON pointer.
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

/// The steps as a JSON pointer with array indices replaced by `*`.
pub(crate) fn spell_general(steps: &[Step<'_>]) -> String {
    let mut path = String::with_capacity(8 * steps.len() + 8);
    write_general(&mut path, steps);
    path
}

/// Appends the generalised pointer of `steps` to `out`.
pub(crate) fn write_general(out: &mut String, steps: &[Step<'_>]) {
    for step in steps {
        match step {
            Step::Key(k) => push_token(out, k),
            Step::Index(_) => out.push_str("/*"),
        }
    }
}
