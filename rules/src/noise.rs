//! Learned noise: pointers where Perl disagrees with itself.
//!
//! Sending the same GET twice to the Perl backend and diffing the two
//! normalised answers shows which values are nondeterministic. The model
//! counts, per endpoint and per generalised pointer (array indices as `*`),
//! how many such Perl-vs-Perl pairs differed there. A pointer is *noisy*
//! once its count reaches the threshold (default 1); a later Perl-vs-Rust
//! difference at a noisy pointer, or below one, is noise. The model is
//! plain data: share it behind a lock, export and import it as JSON.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::compare::Exchange;
use crate::endpoint::Endpoint;

fn default_threshold() -> u64 {
    1
}

/// Counts of nondeterministic pointers per endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseModel {
    #[serde(default = "default_threshold")]
    threshold: u64,
    #[serde(default)]
    endpoints: BTreeMap<String, BTreeMap<String, u64>>,
}

impl Default for NoiseModel {
    fn default() -> Self {
        Self::new()
    }
}

impl NoiseModel {
    /// An empty model with threshold 1.
    pub fn new() -> Self {
        Self::with_threshold(1)
    }

    /// An empty model; a pointer becomes noisy after `threshold` (at least
    /// 1) differing Perl-vs-Perl pairs.
    pub fn with_threshold(threshold: u64) -> Self {
        Self {
            threshold: threshold.max(1),
            endpoints: BTreeMap::new(),
        }
    }

    /// The threshold.
    pub fn threshold(&self) -> u64 {
        self.threshold
    }

    /// Changes the threshold (at least 1).
    pub fn set_threshold(&mut self, threshold: u64) {
        self.threshold = threshold.max(1);
    }

    /// Learns from two Perl answers to the same request: every pointer at
    /// which their normalised envelopes differ is counted once. Returns the
    /// generalised pointers counted (sorted).
    pub fn learn(
        &mut self,
        endpoint: &Endpoint,
        first: &Exchange<'_>,
        second: &Exchange<'_>,
    ) -> Vec<String> {
        let (mut a, mut b) = endpoint.envelope_nodes(first, second);
        let out = crate::pairwalk::walk(&endpoint.settings, &mut a, &mut b, None, true);
        let seen: BTreeSet<String> = out.diff.general.into_iter().collect();
        for pointer in &seen {
            self.record(endpoint.id(), pointer);
        }
        seen.into_iter().collect()
    }

    /// Counts one observation of `pointer` (generalised) differing.
    pub fn record(&mut self, endpoint_id: &str, pointer: &str) {
        let counts = self.endpoints.entry(endpoint_id.to_owned()).or_default();
        *counts.entry(pointer.to_owned()).or_default() += 1;
    }

    /// How often `pointer` was seen differing.
    pub fn count(&self, endpoint_id: &str, pointer: &str) -> u64 {
        self.endpoints
            .get(endpoint_id)
            .and_then(|c| c.get(pointer))
            .copied()
            .unwrap_or(0)
    }

    /// Whether a difference at `pointer` (generalised) is noise: the pointer
    /// or one of its ancestors reached the threshold.
    pub fn is_noisy(&self, endpoint_id: &str, pointer: &str) -> bool {
        let Some(counts) = self.endpoints.get(endpoint_id) else {
            return false;
        };
        let noisy = |p: &str| counts.get(p).is_some_and(|&n| n >= self.threshold);
        if noisy(pointer) {
            return true;
        }
        pointer
            .char_indices()
            .filter(|&(_, c)| c == '/')
            .any(|(i, _)| i > 0 && noisy(&pointer[..i]))
    }

    /// The noisy pointers of an endpoint, sorted.
    pub fn noisy_pointers(&self, endpoint_id: &str) -> Vec<&str> {
        self.endpoints
            .get(endpoint_id)
            .map(|c| {
                c.iter()
                    .filter(|&(_, &n)| n >= self.threshold)
                    .map(|(p, _)| p.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Adds the counts of `other` to this model.
    pub fn merge(&mut self, other: &NoiseModel) {
        for (ep, counts) in &other.endpoints {
            let mine = self.endpoints.entry(ep.clone()).or_default();
            for (p, n) in counts {
                *mine.entry(p.clone()).or_default() += n;
            }
        }
    }

    /// Exports the model as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Imports a model exported by [`NoiseModel::to_json`].
    ///
    /// # Errors
    /// Fails when `text` is not such a JSON document.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let mut model: Self = serde_json::from_str(text)?;
        model.threshold = model.threshold.max(1);
        Ok(model)
    }
}
