//! Prometheus/OpenMetrics metrics (docs/operators-guide.md, Metrics). Label values are bounded:
//! endpoint ids, phases, reasons and status codes, never raw paths.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::phase::Phase;

/// `{reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why.
    pub reason: String,
}

/// `{backend}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    /// `perl` or `rust`.
    pub backend: String,
}

/// `{route_class,served_by,status}` (counted on every request: no allocation).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `passthrough`, `read`, `write` or `apply`.
    pub route_class: &'static str,
    /// `perl`, `rust` or `none`.
    pub served_by: &'static str,
    /// HTTP status code.
    pub status: u16,
}

/// `{endpoint,verdict}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContractLabels {
    /// Endpoint id.
    pub endpoint: String,
    /// Verdict name.
    pub verdict: String,
}

/// `{phase}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// Phase name.
    pub phase: String,
}

/// `{result}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `error`.
    pub result: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Every metric the gateway exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `pve_network_fallback_total{reason}`: Rust was primary, Perl answered.
    pub fallback: Family<ReasonLabels, Counter>,
    /// `pve_network_rust_failures_total{reason}`: Rust failed as primary (fallback or not).
    pub rust_failures: Family<ReasonLabels, Counter>,
    /// `pve_network_apply_duration_seconds{backend}`.
    pub apply_duration: HistogramFamily<BackendLabels>,
    /// `pve_network_requests_total{route_class,served_by,status}`.
    pub requests: Family<RequestLabels, Counter>,
    /// `pve_network_backend_duration_seconds{backend}`.
    pub backend_duration: HistogramFamily<BackendLabels>,
    /// `pve_network_contract_total{endpoint,verdict}`.
    pub contract: Family<ContractLabels, Counter>,
    /// `pve_network_shadow_skipped_total{reason}`.
    pub shadow_skipped: Family<ReasonLabels, Counter>,
    /// `pve_network_tripped`: 1 while the node is tripped.
    pub tripped: Gauge,
    /// `pve_network_phase{phase}`: 1 for the effective phase, 0 for the others.
    pub phase: Family<PhaseLabels, Gauge>,
    /// `pve_network_evidence_dropped_total`: records dropped because the writer fell behind.
    pub evidence_dropped: Counter,
    /// `pve_network_config_reloads_total{result}`.
    pub config_reloads: Family<ResultLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("pve_network");
        let m = Self {
            fallback: Family::default(),
            rust_failures: Family::default(),
            apply_duration: Family::new_with_constructor(latency_histogram),
            requests: Family::default(),
            backend_duration: Family::new_with_constructor(latency_histogram),
            contract: Family::default(),
            shadow_skipped: Family::default(),
            tripped: Gauge::default(),
            phase: Family::default(),
            evidence_dropped: Counter::default(),
            config_reloads: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "fallback",
            "Migrated requests served by Perl after Rust failed as primary",
            m.fallback.clone(),
        );
        registry.register(
            "rust_failures",
            "Failures of the Rust backend as primary, by reason",
            m.rust_failures.clone(),
        );
        registry.register(
            "apply_duration_seconds",
            "Network apply (PUT network, SDN apply) from request to the backend's answer",
            m.apply_duration.clone(),
        );
        registry.register(
            "requests",
            "Requests by route class, serving backend and status",
            m.requests.clone(),
        );
        registry.register(
            "backend_duration_seconds",
            "Backend answer times",
            m.backend_duration.clone(),
        );
        registry.register(
            "contract",
            "Compared exchanges by endpoint and verdict",
            m.contract.clone(),
        );
        registry.register(
            "shadow_skipped",
            "Migrated requests not compared, by reason",
            m.shadow_skipped.clone(),
        );
        registry.register(
            "tripped",
            "1 while the node is tripped back to Perl",
            m.tripped.clone(),
        );
        registry.register(
            "phase",
            "The effective phase (1) of this node",
            m.phase.clone(),
        );
        registry.register(
            "evidence_dropped",
            "Evidence records dropped because the writer fell behind",
            m.evidence_dropped.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            m.config_reloads.clone(),
        );
        Self { registry, ..m }
    }

    /// Marks `effective` as the current phase.
    pub fn set_phase(&self, effective: Phase, tripped: bool) {
        for p in Phase::ALL {
            self.phase
                .get_or_create(&PhaseLabels {
                    phase: p.as_str().to_owned(),
                })
                .set(i64::from(p == effective));
        }
        self.tripped.set(i64::from(tripped));
    }

    /// OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_design() {
        let m = Metrics::new();
        m.fallback
            .get_or_create(&ReasonLabels {
                reason: "rust_timeout".into(),
            })
            .inc();
        m.set_phase(Phase::Shadow, false);
        let text = m.encode();
        assert!(
            text.lines()
                .any(|l| l == "pve_network_fallback_total{reason=\"rust_timeout\"} 1"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l == "pve_network_phase{phase=\"shadow\"} 1"),
            "{text}"
        );
        assert!(text.lines().any(|l| l == "pve_network_tripped 0"), "{text}");
    }
}
