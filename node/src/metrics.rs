//! Prometheus metrics of a node (text exposition at `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::footprint::FunctionFootprint;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheLabel {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MisbehaviourLabel {
    pub misbehaviour: &'static str,
}

/// Why a peer's message was dropped unread.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum DropReason {
    /// Over the peer's message budget (`--peer-message-budget`).
    OverBudget,
    /// Not a message this node can decode.
    Malformed,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::OverBudget => "over_budget",
            DropReason::Malformed => "malformed",
        }
    }
}

impl prometheus_client::encoding::EncodeLabelValue for DropReason {
    fn encode(&self, encoder: &mut prometheus_client::encoding::LabelValueEncoder) -> std::fmt::Result {
        std::fmt::Write::write_str(encoder, self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabel {
    pub reason: DropReason,
}

/// Counts peers' messages dropped unread, by reason.
#[derive(Clone)]
pub struct DroppedCounter(Family<DropLabel, Counter>);

impl DroppedCounter {
    pub fn inc(&self, reason: DropReason) {
        self.0.get_or_create(&DropLabel { reason }).inc();
    }
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
    pub peer_penalties: Family<MisbehaviourLabel, Counter>,
    pub peer_messages_dropped: Family<DropLabel, Counter>,
    /// The common series, looked up once: no label allocated per call.
    calls_success: Counter,
    cache_hit: Counter,
    cache_miss: Counter,
    cache_joined: Counter,
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
        let peer_penalties = Family::<MisbehaviourLabel, Counter>::default();
        registry.register(
            "peer_penalties",
            "Misbehaviours of peers detected, by kind (forged_record, wrong_kind, bad_module_bytes, ...)",
            peer_penalties.clone(),
        );
        let peer_messages_dropped = Family::<DropLabel, Counter>::default();
        registry.register(
            "peer_messages_dropped",
            "Messages from peers dropped unread, by reason: over_budget (the peer's message budget) or malformed",
            peer_messages_dropped.clone(),
        );
        let calls_success = calls.get_or_create(&OutcomeLabel { outcome: "success".to_owned() }).clone();
        let cache_series = |result: &str| cache.get_or_create(&CacheLabel { result: result.to_owned() }).clone();
        let (cache_hit, cache_miss, cache_joined) = (cache_series("hit"), cache_series("miss"), cache_series("joined"));
        Self {
            calls_success,
            cache_hit,
            cache_miss,
            cache_joined,
            registry,
            calls,
            cache,
            executions,
            fuel_used,
            call_seconds,
            modules,
            memory_cache_bytes,
            peer_penalties,
            peer_messages_dropped,
        }
    }
}

impl Metrics {
    pub fn record_call(&self, outcome: &str, seconds: f64) {
        match outcome {
            "success" => self.calls_success.inc(),
            _ => self.calls.get_or_create(&OutcomeLabel { outcome: outcome.to_owned() }).inc(),
        };
        self.call_seconds.observe(seconds);
    }

    pub fn record_penalty(&self, misbehaviour: &'static str) {
        self.peer_penalties.get_or_create(&MisbehaviourLabel { misbehaviour }).inc();
    }

    /// A handle the swarm counts its dropped messages with.
    pub fn dropped_counter(&self) -> DroppedCounter {
        DroppedCounter(self.peer_messages_dropped.clone())
    }

    pub fn record_cache(&self, result: &str) {
        match result {
            "hit" => self.cache_hit.inc(),
            "miss" => self.cache_miss.inc(),
            "joined" => self.cache_joined.inc(),
            _ => self.cache.get_or_create(&CacheLabel { result: result.to_owned() }).inc(),
        };
    }

    /// The node's metrics followed by the per-function footprint.
    pub fn encode(&self, functions: &[FunctionFootprint]) -> String {
        use prometheus_client::encoding::text::{encode_eof, encode_registry};
        let mut text = String::new();
        encode_registry(&mut text, &self.registry).expect("writing to a String cannot fail");
        encode_registry(&mut text, &function_registry(functions)).expect("writing to a String cannot fail");
        encode_eof(&mut text).expect("writing to a String cannot fail");
        text
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabel {
    module: String,
    /// The module's names, comma-separated (empty if none).
    function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EnergyLabel {
    module: String,
    function: String,
    source: String,
}

type FloatCounter = Counter<f64, std::sync::atomic::AtomicU64>;

/// Built afresh at each scrape from the ledger's totals: names can change
/// between scrapes, and the ledger is the one place the numbers live.
fn function_registry(functions: &[FunctionFootprint]) -> Registry {
    let mut registry = Registry::with_prefix("nebula_function");
    let calls = Family::<FunctionLabel, Counter>::default();
    let executions = Family::<FunctionLabel, Counter>::default();
    let cache_hits = Family::<FunctionLabel, Counter>::default();
    let fuel = Family::<FunctionLabel, Counter>::default();
    let cpu = Family::<FunctionLabel, FloatCounter>::default();
    let wall = Family::<FunctionLabel, FloatCounter>::default();
    let peak_memory = Family::<FunctionLabel, Gauge>::default();
    let energy = Family::<EnergyLabel, FloatCounter>::default();
    for row in functions {
        let label = FunctionLabel { module: row.module.to_hex(), function: row.names.join(",") };
        calls.get_or_create(&label).inc_by(row.calls);
        executions.get_or_create(&label).inc_by(row.executions);
        cache_hits.get_or_create(&label).inc_by(row.cache_hits);
        fuel.get_or_create(&label).inc_by(row.fuel_total);
        cpu.get_or_create(&label).inc_by(row.cpu_us_total / 1e6);
        wall.get_or_create(&label).inc_by(row.wall_us_total / 1e6);
        peak_memory.get_or_create(&label).set(row.peak_memory_bytes as i64);
        let source = row.energy_source.as_str().to_owned();
        energy
            .get_or_create(&EnergyLabel { module: label.module, function: label.function, source })
            .inc_by(row.energy_uwh_total);
    }
    registry.register("calls", "Calls answered, per function", calls);
    registry.register("executions", "Executions on this node, per function", executions);
    registry.register("cache_hits", "Calls answered from a stored result, per function", cache_hits);
    registry.register("fuel", "Fuel consumed by executions, per function", fuel);
    registry.register("cpu_seconds", "Thread CPU time of executions, per function", cpu);
    registry.register("wall_seconds", "Wall time of executions, per function", wall);
    registry.register("peak_memory_bytes", "Largest linear memory of an execution, per function", peak_memory);
    registry.register(
        "energy_microwatt_hours",
        "Energy of executions, per function; source=measured (RAPL) or estimated (CPU time x watts per core)",
        energy,
    );
    registry
}
