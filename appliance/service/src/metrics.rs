//! Prometheus metrics shared by every service, plus a registry each service adds its own to.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The metrics of one service process.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram>,
    ready: Gauge,
    checks: Family<Labels, Gauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Metrics {
    /// Metrics for `service`, labelled with the node and build.
    pub fn new(service: &str, node: &str) -> Metrics {
        let mut registry = Registry::with_prefix("vbank");
        let requests = Family::<Labels, Counter>::default();
        registry.register("http_requests", "HTTP requests served, by listener, route and status", requests.clone());
        let latency =
            Family::<Labels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16)));
        registry.register(
            "http_request_duration_seconds",
            "Time to produce a response, by listener and route",
            latency.clone(),
        );
        let info = Family::<Labels, Gauge>::default();
        info.get_or_create(&vec![
            ("service".into(), service.into()),
            ("node".into(), node.into()),
            ("version".into(), env!("CARGO_PKG_VERSION").into()),
        ])
        .set(1);
        registry.register("build_info", "Service, node and version of this process", info);
        let ready = Gauge::default();
        registry.register("ready", "1 when every readiness check passes (as /readyz)", ready.clone());
        let checks = Family::<Labels, Gauge>::default();
        registry.register("check_ok", "Each readiness check: 1 ok, 0 failing or pending", checks.clone());
        Metrics { registry: Arc::new(Mutex::new(registry)), requests, latency, ready, checks }
    }

    /// Mirror a readiness report into `vbank_ready` and `vbank_check_ok{check}`, so alerts see what `/readyz` says.
    pub fn set_readiness(&self, report: &crate::Report) {
        self.ready.set(i64::from(report.ready));
        for (name, check) in &report.checks {
            let ok = i64::from(*check == crate::Check::Ok);
            self.checks.get_or_create(&vec![("check".to_string(), name.clone())]).set(ok);
        }
    }

    /// Add service-specific metrics.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        f(&mut self.registry.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// The exposition text for `/metrics`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let reg = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &reg);
        out
    }
}

/// Which listener a router serves, for metric labels and access logs.
#[derive(Debug, Clone)]
pub struct Listener(pub &'static str);

/// Middleware: count, time and log every request. Paths are logged through the redacting logger.
pub async fn observe(State((metrics, listener)): State<(Metrics, Listener)>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let peer = req.extensions().get::<vbank_tls::Peer>().map(|p| p.describe()).unwrap_or_default();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let elapsed = start.elapsed();
    metrics
        .requests
        .get_or_create(&vec![
            ("listener".into(), listener.0.into()),
            ("route".into(), route.clone()),
            ("status".into(), status.to_string()),
        ])
        .inc();
    metrics
        .latency
        .get_or_create(&vec![("listener".into(), listener.0.into()), ("route".into(), route)])
        .observe(elapsed.as_secs_f64());
    // Probes would drown the log.
    if !matches!(path.as_str(), "/healthz" | "/readyz" | "/metrics") {
        log::info!(
            listener = listener.0, status = status, ms = elapsed.as_millis() as u64, peer = peer.as_str();
            "{method} {path}"
        );
    }
    resp
}
