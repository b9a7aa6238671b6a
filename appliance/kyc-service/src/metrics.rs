//! The KYC service's metrics: checks by step and result, engine and vendor time.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Counters and histograms, cloned into every handler.
#[derive(Clone)]
pub struct KycMetrics {
    checks: Family<Labels, Counter>,
    engine: Family<Labels, Histogram>,
    vendor: Family<Labels, Histogram>,
}

fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Default for KycMetrics {
    fn default() -> Self {
        KycMetrics {
            checks: Family::default(),
            engine: Family::new_with_constructor(seconds),
            vendor: Family::new_with_constructor(seconds),
        }
    }
}

impl KycMetrics {
    /// Add them to the service's registry.
    pub fn register(&self, r: &mut Registry) {
        r.register("kyc_checks", "KYC checks by step and result", self.checks.clone());
        r.register("kyc_engine_seconds", "Time a local engine took per picture", self.engine.clone());
        r.register("kyc_vendor_seconds", "Time a vendor took to answer, retries included", self.vendor.clone());
    }

    /// One check of `step` ended with `result`.
    pub fn check(&self, step: &'static str, result: &str) {
        self.checks.get_or_create(&vec![("step", step.to_string()), ("result", result.to_string())]).inc();
    }

    /// A local engine took `d` for one picture.
    pub fn engine_seconds(&self, step: &'static str, d: Duration) {
        self.engine.get_or_create(&vec![("step", step.to_string())]).observe(d.as_secs_f64());
    }

    /// A vendor took `d` to answer.
    pub fn vendor_seconds(&self, vendor: &'static str, d: Duration) {
        self.vendor.get_or_create(&vec![("vendor", vendor.to_string())]).observe(d.as_secs_f64());
    }
}
