//! The trip: a node that had to bail Rust out goes back to Perl by itself.
//!
//! [`TripState`] is the explicit state machine; the window of recent
//! Rust-served requests decides when to leave [`TripState::Armed`]. A trip
//! is persisted atomically in the state directory, so it survives restarts
//! and reloads, and it is lifted only by [`TripController::reset`] (what
//! `migration-ctl trip reset` calls) or by a new configured phase for the
//! node (`migration-ctl phase set`).
//!
//! Time is `tokio::time::Instant`, so tests drive the window with a paused clock.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::config::{TripConfig, TripTo};
use crate::phase::Phase;

/// What a trip records (and `migration-ctl trip status` shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TripRecord {
    /// When, RFC 3339.
    pub at: String,
    /// Why, in words (e.g. `fallback rate 1/1 > 0 in 300s (last: rust_5xx)`).
    pub reason: String,
    /// The trace id of the request that tripped it.
    pub trace_id: String,
    /// The node's configured phase at the time.
    pub configured_phase: String,
    /// The phase the node is held at.
    pub effective_phase: String,
}

/// What the trip means for traffic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TripState {
    /// Traffic follows the configured phase; Rust serves what the phase says.
    Armed,
    /// The node is held at a lower phase (`effective_phase`) until an operator
    /// re-arms it or sets a new phase. No request is served by Rust beyond
    /// what that lower phase allows.
    Tripped(TripRecord),
}

/// How one Rust-served request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RustOutcome {
    /// Rust answered acceptably.
    Ok,
    /// Rust failed (fallback or ambiguous failure).
    Failed,
}

/// Why the trip state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("trip state {}: {message}", path.display())]
pub struct TripError {
    /// The state file.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

/// Owns the trip state, its file and the sliding window.
#[derive(Debug)]
pub struct TripController {
    config: ArcSwap<TripConfig>,
    state: ArcSwap<TripState>,
    window: Mutex<VecDeque<(Instant, RustOutcome)>>,
    path: PathBuf,
}

impl TripController {
    /// Loads the persisted state (none means armed).
    ///
    /// # Errors
    /// When the file exists but cannot be read or parsed.
    pub fn load(state_dir: &Path, config: TripConfig) -> Result<Self, TripError> {
        let path = state_dir.join("trip.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => {
                TripState::Tripped(serde_json::from_slice(&bytes).map_err(|e| TripError {
                    path: path.clone(),
                    message: e.to_string(),
                })?)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => TripState::Armed,
            Err(e) => {
                return Err(TripError {
                    path,
                    message: e.to_string(),
                });
            }
        };
        Ok(Self {
            config: ArcSwap::from_pointee(config),
            state: ArcSwap::from_pointee(state),
            window: Mutex::new(VecDeque::new()),
            path,
        })
    }

    /// Applies new trip settings (reload).
    pub fn set_config(&self, config: TripConfig) {
        self.config.store(Arc::new(config));
    }

    /// The current state.
    pub fn state(&self) -> TripState {
        (**self.state.load()).clone()
    }

    /// The phase traffic follows, given the node's configured phase.
    ///
    /// A trip recorded under another configured phase no longer applies: the
    /// operator has set a new phase since (it is cleared by [`Self::lift_if_superseded`]).
    pub fn effective(&self, configured: Phase) -> Phase {
        match &**self.state.load() {
            TripState::Tripped(r) if r.configured_phase == configured.as_str() => {
                r.effective_phase.parse().unwrap_or(Phase::PerlOnly)
            }
            _ => configured,
        }
    }

    /// Clears a trip recorded under a different configured phase (a new
    /// `phase set`). Returns the lifted record.
    ///
    /// # Errors
    /// When the state file cannot be removed.
    pub fn lift_if_superseded(&self, configured: Phase) -> Result<Option<TripRecord>, TripError> {
        match &**self.state.load() {
            TripState::Tripped(r) if r.configured_phase != configured.as_str() => self.reset(),
            _ => Ok(None),
        }
    }

    /// Records a Rust-served request; trips when the failure rate in the
    /// window exceeds the threshold. Returns the new trip, if this tripped it.
    ///
    /// # Errors
    /// When the trip cannot be persisted (the node is tripped in memory anyway).
    pub fn observe(
        &self,
        outcome: RustOutcome,
        configured: Phase,
        last_reason: &str,
        trace_id: &str,
    ) -> Result<Option<TripRecord>, TripError> {
        let config = self.config.load();
        let now = Instant::now();
        let (failed, total) = {
            let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
            w.push_back((now, outcome));
            while let Some((t, _)) = w.front() {
                if now.duration_since(*t) > config.window {
                    w.pop_front();
                } else {
                    break;
                }
            }
            let failed = w.iter().filter(|(_, o)| *o == RustOutcome::Failed).count();
            (failed, w.len())
        };
        if failed == 0 || (failed as f64 / total as f64) <= config.fallback_rate_threshold {
            return Ok(None);
        }
        let reason = format!(
            "fallback rate {failed}/{total} > {} in {}s (last: {last_reason})",
            config.fallback_rate_threshold,
            config.window.as_secs()
        );
        self.trip(configured, &reason, trace_id)
    }

    /// Trips at once (a critical mismatch). No-op when already tripped.
    ///
    /// # Errors
    /// When the trip cannot be persisted (the node is tripped in memory anyway).
    pub fn trip(
        &self,
        configured: Phase,
        reason: &str,
        trace_id: &str,
    ) -> Result<Option<TripRecord>, TripError> {
        if matches!(&**self.state.load(), TripState::Tripped(r) if r.configured_phase == configured.as_str())
        {
            return Ok(None);
        }
        let to = match self.config.load().trip_to {
            TripTo::Phase(p) => p.min(configured),
            TripTo::Previous => configured.previous(),
        };
        let record = TripRecord {
            at: crate::evidence::now_rfc3339(),
            reason: reason.to_owned(),
            trace_id: trace_id.to_owned(),
            configured_phase: configured.as_str().to_owned(),
            effective_phase: to.as_str().to_owned(),
        };
        // In memory first: the node must stop using Rust even if the disk fails.
        self.state
            .store(Arc::new(TripState::Tripped(record.clone())));
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        let bytes = serde_json::to_vec_pretty(&record).expect("a record serialises");
        crate::evidence::write_atomic(&self.path, &bytes).map_err(|e| TripError {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        Ok(Some(record))
    }

    /// Re-arms the node. Returns the trip that was lifted, if any.
    ///
    /// # Errors
    /// When the state file cannot be removed.
    pub fn reset(&self) -> Result<Option<TripRecord>, TripError> {
        let previous = self.state.swap(Arc::new(TripState::Armed));
        self.window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(TripError {
                    path: self.path.clone(),
                    message: e.to_string(),
                });
            }
        }
        Ok(match &*previous {
            TripState::Tripped(r) => Some(r.clone()),
            TripState::Armed => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn config(threshold: f64, trip_to: TripTo) -> TripConfig {
        TripConfig {
            fallback_rate_threshold: threshold,
            window: Duration::from_secs(60),
            trip_to,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn any_failure_trips_by_default_and_survives_reload() {
        let dir = tempfile::tempdir().unwrap();
        let t =
            TripController::load(dir.path(), config(0.0, TripTo::Phase(Phase::PerlOnly))).unwrap();
        let p = Phase::RustReadOnly;
        for _ in 0..100 {
            assert_eq!(t.observe(RustOutcome::Ok, p, "", "t").unwrap(), None);
        }
        let rec = t
            .observe(RustOutcome::Failed, p, "rust_5xx", "abc")
            .unwrap()
            .unwrap();
        assert_eq!(rec.effective_phase, "perl-only");
        assert!(
            rec.reason.contains("1/101") && rec.reason.contains("rust_5xx"),
            "{}",
            rec.reason
        );
        assert_eq!(t.effective(p), Phase::PerlOnly);

        // A restart reads the same state.
        let again =
            TripController::load(dir.path(), config(0.0, TripTo::Phase(Phase::PerlOnly))).unwrap();
        assert_eq!(again.effective(p), Phase::PerlOnly);
        assert_eq!(again.state(), TripState::Tripped(rec.clone()));

        // Only a reset or a new configured phase lifts it.
        assert_eq!(again.lift_if_superseded(p).unwrap(), None);
        assert_eq!(
            again.lift_if_superseded(Phase::RustBasicWrite).unwrap(),
            Some(rec)
        );
        assert_eq!(
            again.effective(Phase::RustBasicWrite),
            Phase::RustBasicWrite
        );
        assert!(!dir.path().join("trip.json").exists());
    }

    #[tokio::test(start_paused = true)]
    async fn threshold_and_window() {
        let dir = tempfile::tempdir().unwrap();
        let t = TripController::load(dir.path(), config(0.1, TripTo::Previous)).unwrap();
        let p = Phase::RustFull;
        for _ in 0..9 {
            t.observe(RustOutcome::Ok, p, "", "t").unwrap();
        }
        // 1/10 is not above 0.1.
        assert_eq!(
            t.observe(RustOutcome::Failed, p, "rust_timeout", "t")
                .unwrap(),
            None
        );
        // Everything before ages out of the window; then the rate is 1/1.
        tokio::time::advance(Duration::from_secs(61)).await;
        let rec = t
            .observe(RustOutcome::Failed, p, "rust_timeout", "t")
            .unwrap()
            .unwrap();
        assert_eq!(
            rec.effective_phase, "rust-basic-write",
            "previous = one level down"
        );
        assert_eq!(t.reset().unwrap(), Some(rec));
        assert_eq!(t.effective(p), p);
    }
}
