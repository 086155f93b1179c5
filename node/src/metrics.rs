//! Prometheus metrics of a node (text exposition at `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabel {
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    pub calls: Family<OutcomeLabel, Counter>,
    pub cache: Family<CacheLabel, Counter>,
    pub executions: Counter,
    pub fuel_used: Counter,
    pub call_seconds: Histogram,
    pub modules: Gauge,
    pub memory_cache_bytes: Gauge,
    pub peer_penalties: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("nebula");
        let calls = Family::<OutcomeLabel, Counter>::default();
        registry.register("calls", "Calls answered, by outcome", calls.clone());
        let cache = Family::<CacheLabel, Counter>::default();
        registry.register(
            "cache",
            "Result cache lookups: hit, miss, or joined an identical call in flight",
            cache.clone(),
        );
        let executions = Counter::default();
        registry.register("executions", "Guest executions started", executions.clone());
        let fuel_used = Counter::default();
        registry.register("fuel_used", "Fuel consumed by executions", fuel_used.clone());
        // 10 µs .. ~84 s
        let call_seconds = Histogram::new(exponential_buckets(0.000_01, 2.0, 24));
        registry.register("call_seconds", "Call latency as seen by the node", call_seconds.clone());
        let modules = Gauge::default();
        registry.register("modules", "Modules stored", modules.clone());
        let memory_cache_bytes = Gauge::default();
        registry.register("memory_cache_bytes", "Bytes of results held in memory", memory_cache_bytes.clone());
        let peer_penalties = Counter::default();
        registry.register("peer_penalties", "Misbehaviours of peers detected", peer_penalties.clone());
        Self {
            registry,
            calls,
            cache,
            executions,
            fuel_used,
            call_seconds,
            modules,
            memory_cache_bytes,
            peer_penalties,
        }
    }
}

impl Metrics {
    pub fn record_call(&self, outcome: &str, seconds: f64) {
        self.calls.get_or_create(&OutcomeLabel { outcome: outcome.to_owned() }).inc();
        self.call_seconds.observe(seconds);
    }

    pub fn record_cache(&self, result: &str) {
        self.cache.get_or_create(&CacheLabel { result: result.to_owned() }).inc();
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}
