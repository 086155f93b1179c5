//! The node's I/O shell: it feeds the sans-io [`Core`] with events and carries
//! out the actions it returns (look up and store results, execute on the
//! runtime, persist names, reply to callers).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nebula_protocol::core::{Answer, FlightId};
use nebula_protocol::{
    Action, CallError, CallKey, Core, Event, ExecutionRecord, LimitOverrides, Limits, ModuleId, NameRecord, Reply,
    RequestId, Timings,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::config::NodeConfig;
use crate::metrics::Metrics;
use crate::result_cache::MemoryResults;
use crate::runtime::{Prepared, Runtime};
use crate::store::{BlobError, BlobStore, Index, ModuleMeta, ResultWriter};

/// A running node. Cheap to clone; all clones share one node.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

struct Shared {
    config: NodeConfig,
    node_id: String,
    started: Instant,
    core: Mutex<Core>,
    waiters: Mutex<HashMap<RequestId, oneshot::Sender<Reply>>>,
    next_request: AtomicU64,
    runtime: Runtime,
    blobs: BlobStore,
    index: Arc<Index>,
    results: ResultWriter,
    memory: MemoryResults,
    metrics: Metrics,
    /// Bounds executions in flight so a flood of slow calls cannot starve the
    /// HTTP server (they wait here instead of occupying blocking threads).
    execution_slots: Arc<Semaphore>,
}

/// An execution the core asked for, waiting for a slot.
struct ExecutionJob {
    flight: FlightId,
    key: CallKey,
    module: ModuleId,
    input: Arc<[u8]>,
    limits: Limits,
    queued: Instant,
}

/// A call's answer as the node reports it to a client.
#[derive(Debug, Clone)]
pub struct CallResponse {
    pub reply: Reply,
    /// Time spent in this node, from request to reply.
    pub elapsed: Duration,
    pub node_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Deployed {
    pub module: ModuleId,
    pub size: u64,
    pub name: Option<String>,
    /// False if the node already held this module.
    pub new: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleSummary {
    pub module: ModuleId,
    pub size: u64,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub version: String,
    pub uptime_seconds: u64,
    pub modules: usize,
    pub names: usize,
    pub memory_cache_entries: usize,
    pub memory_cache_bytes: u64,
    pub stored_results: u64,
    pub calls_in_flight: usize,
    pub concurrency: u32,
    pub default_limits: Limits,
    pub max_limits: Limits,
}

impl Node {
    /// Opens (or creates) the data directory and restores modules and names.
    /// Must run inside a tokio runtime (it starts a background flusher).
    pub async fn open(config: NodeConfig) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&config.data_dir)?;
        let node_id = load_or_create_node_id(&config)?;
        let blobs = BlobStore::open(config.data_dir.join("blobs"))?;
        let index = Arc::new(Index::open(&config.data_dir.join("index.redb"))?);
        let runtime =
            Runtime::new(config.data_dir.join("compiled"), config.concurrency, config.max_limits.memory_bytes)?;

        let mut core = Core::new(node_id.clone());
        for (module, meta) in index.modules()? {
            if blobs.contains(&module) {
                core.handle(Event::ModuleStored { module, size: meta.size });
            } else {
                // The blob is written before its index entry, so this only
                // happens if someone removed the file by hand.
                tracing::warn!(module = %module.short(), "module indexed but its blob is gone; forgetting it");
                index.remove_module(&module)?;
            }
        }
        for record in index.names()? {
            core.merge_name(record);
        }

        let metrics = Metrics::default();
        metrics.modules.set(core.modules().count() as i64);
        let shared = Arc::new(Shared {
            memory: MemoryResults::new(config.memory_cache_bytes),
            execution_slots: Arc::new(Semaphore::new(config.concurrency as usize)),
            config,
            node_id,
            started: Instant::now(),
            core: Mutex::new(core),
            waiters: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(0),
            runtime,
            blobs,
            results: ResultWriter::start(index.clone()),
            index,
            metrics,
        });
        tracing::info!(node = %shared.node_id, data = %shared.config.data_dir.display(), "node opened");
        Ok(Node { shared })
    }

    pub fn id(&self) -> &str {
        &self.shared.node_id
    }

    pub fn config(&self) -> &NodeConfig {
        &self.shared.config
    }

    /// Calls `reference` (name, hash or hash prefix) with `input` on stdin.
    pub async fn call(&self, reference: &str, input: Vec<u8>, overrides: &LimitOverrides) -> CallResponse {
        let shared = &self.shared;
        let started = Instant::now();
        let limits = shared.config.default_limits.with_overrides(overrides, &shared.config.max_limits);
        let request = shared.next_request.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        shared.waiters.lock().expect("waiters lock").insert(request, sender);
        let event = Event::CallRequested { request, reference: reference.to_owned(), input: input.into(), limits };
        let actions = shared.core().handle(event);
        shared.perform(actions);
        let reply = receiver.await.unwrap_or_else(|_| Err(internal("the call was dropped before it was answered")));
        let elapsed = started.elapsed();
        shared.record_reply(&reply, elapsed);
        CallResponse { reply, elapsed, node_id: shared.node_id.clone() }
    }

    /// Validates, compiles, stores and indexes a module; optionally names it.
    pub async fn deploy(&self, wasm: Vec<u8>, name: Option<&str>) -> Result<Deployed, CallError> {
        let shared = self.shared.clone();
        let size = wasm.len() as u64;
        if size > shared.config.max_module_bytes {
            return Err(CallError::InvalidModule {
                reason: format!("{size} bytes is over the limit of {} bytes", shared.config.max_module_bytes),
            });
        }
        if let Some(name) = name {
            nebula_protocol::validate_name(name)
                .map_err(|error| CallError::InvalidName { name: name.to_owned(), reason: error.to_string() })?;
        }
        let module = ModuleId::of_bytes(&wasm);
        let new = shared.core().module_info(&module).is_none();
        // Deploying a known module again also repairs a damaged or lost blob.
        if new || shared.blobs.get(&module).is_err() {
            let store = shared.clone();
            tokio::task::spawn_blocking(move || store.store_module(module, &wasm))
                .await
                .map_err(|error| internal(&format!("deploy task failed: {error}")))??;
            shared.core().handle(Event::ModuleStored { module, size });
            if new {
                shared.metrics.modules.inc();
            }
            tracing::info!(module = %module.short(), size, "module deployed");
        }
        if let Some(name) = name {
            self.set_name(name, &module.to_hex()).await?;
        }
        Ok(Deployed { module, size, name: name.map(str::to_owned), new })
    }

    /// Points `name` at the module `reference` resolves to; durable when it returns.
    pub async fn set_name(&self, name: &str, reference: &str) -> Result<NameRecord, CallError> {
        let (record, actions) = self.shared.core().publish_name(name, reference)?;
        for action in actions {
            match action {
                Action::PersistName(record) => {
                    let shared = self.shared.clone();
                    tokio::task::spawn_blocking(move || shared.index.put_name(&record))
                        .await
                        .map_err(|error| internal(&error.to_string()))?
                        .map_err(|error| internal(&format!("storing the name: {error:#}")))?;
                }
                other => self.shared.perform(vec![other]),
            }
        }
        tracing::info!(name = %record.name, module = %record.module.short(), version = record.version, "name set");
        Ok(record)
    }

    pub fn resolve(&self, reference: &str) -> Result<ModuleId, CallError> {
        self.shared.core().resolve(reference)
    }

    pub fn names(&self) -> Vec<NameRecord> {
        self.shared.core().names().cloned().collect()
    }

    pub fn modules(&self) -> Vec<ModuleSummary> {
        let core = self.shared.core();
        let mut names: HashMap<ModuleId, Vec<String>> = HashMap::new();
        for record in core.names() {
            names.entry(record.module).or_default().push(record.name.clone());
        }
        core.modules()
            .map(|(module, info)| ModuleSummary {
                module: *module,
                size: info.size,
                names: names.remove(module).unwrap_or_default(),
            })
            .collect()
    }

    pub fn status(&self) -> NodeStatus {
        let shared = &self.shared;
        let (modules, names, calls_in_flight) = {
            let core = shared.core();
            (core.modules().count(), core.names().count(), core.flights_in_progress())
        };
        NodeStatus {
            node_id: shared.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: shared.started.elapsed().as_secs(),
            modules,
            names,
            memory_cache_entries: shared.memory.len(),
            memory_cache_bytes: shared.memory.bytes(),
            stored_results: shared.index.result_count().unwrap_or(0),
            calls_in_flight,
            concurrency: shared.config.concurrency,
            default_limits: shared.config.default_limits,
            max_limits: shared.config.max_limits,
        }
    }

    pub fn metrics_text(&self) -> String {
        self.shared.metrics.memory_cache_bytes.set(self.shared.memory.bytes() as i64);
        self.shared.metrics.encode()
    }

    /// Makes every cached result durable (call before a clean shutdown).
    pub fn flush(&self) -> anyhow::Result<()> {
        self.shared.results.flush()
    }
}

impl Shared {
    fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().expect("core lock")
    }

    /// Carries out actions, feeding any resulting events back to the core.
    fn perform(self: &Arc<Self>, actions: Vec<Action>) {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Reply { request, reply } => {
                    if let Some(waiter) = self.waiters.lock().expect("waiters lock").remove(&request) {
                        // The caller may have gone (HTTP client hung up); nothing to do then.
                        let _ = waiter.send(reply);
                    }
                }
                Action::LookupResult { flight, key } => {
                    let found = self.lookup_result(&key);
                    queue.extend(self.core().handle(Event::ResultLookedUp { flight, found }));
                }
                Action::Execute { flight, key, module, input, limits } => {
                    self.start_execution(ExecutionJob { flight, key, module, input, limits, queued: Instant::now() });
                }
                Action::StoreResult { key, record } => {
                    self.memory.insert(key, record.clone());
                    self.results.submit(key, record);
                }
                Action::PersistName(record) => {
                    let shared = self.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(error) = shared.index.put_name(&record) {
                            tracing::warn!(%error, name = %record.name, "could not store a name record");
                        }
                    });
                }
            }
        }
    }

    fn lookup_result(&self, key: &CallKey) -> Option<Arc<ExecutionRecord>> {
        if let Some(record) = self.memory.get(key) {
            return Some(record);
        }
        match self.index.result(key) {
            Ok(Some(record)) => {
                let record = Arc::new(record);
                self.memory.insert(*key, record.clone());
                Some(record)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, key = %key.short(), "result index unreadable; executing instead");
                None
            }
        }
    }

    /// Runs an execution on a blocking thread once a slot is free. The common
    /// case (a free slot) goes straight to the blocking pool, and the reply
    /// leaves from there: two thread hand-offs per call instead of four.
    fn start_execution(self: &Arc<Self>, job: ExecutionJob) {
        match self.execution_slots.clone().try_acquire_owned() {
            Ok(slot) => self.clone().run_on_blocking_thread(job, slot),
            Err(_) => {
                let shared = self.clone();
                tokio::spawn(async move {
                    match shared.execution_slots.clone().acquire_owned().await {
                        Ok(slot) => shared.run_on_blocking_thread(job, slot),
                        Err(_) => {
                            let record = ExecutionRecord::rejected(job.module, internal("the node is shutting down"));
                            shared.finish_execution(job.flight, record);
                        }
                    }
                });
            }
        }
    }

    fn run_on_blocking_thread(self: Arc<Self>, job: ExecutionJob, slot: OwnedSemaphorePermit) {
        tokio::task::spawn_blocking(move || {
            let queue_us = job.queued.elapsed().as_micros() as u64;
            let run = || self.execute(&job.key, job.module, &job.input, &job.limits, queue_us);
            // A bug in the runtime must not leave the callers waiting forever.
            let record = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
                tracing::error!(module = %job.module.short(), "execution panicked");
                ExecutionRecord::rejected(job.module, internal("the execution failed unexpectedly"))
            });
            drop(slot);
            self.finish_execution(job.flight, record);
        });
    }

    fn finish_execution(self: &Arc<Self>, flight: FlightId, record: ExecutionRecord) {
        self.metrics.executions.inc();
        self.metrics.fuel_used.inc_by(record.fuel_used);
        let actions = self.core().handle(Event::ExecutionFinished { flight, record: Arc::new(record) });
        self.perform(actions);
    }

    /// Runs on a blocking thread: loads the module if needed, then executes.
    fn execute(
        &self,
        key: &CallKey,
        module: ModuleId,
        input: &[u8],
        limits: &Limits,
        queue_us: u64,
    ) -> ExecutionRecord {
        let loading = Instant::now();
        let prepared = match self.prepared(module) {
            Ok(prepared) => prepared,
            Err(error) => return ExecutionRecord::rejected(module, error),
        };
        let load_us = loading.elapsed().as_micros() as u64;
        let report = self.runtime.execute(&prepared, key, input, limits);
        ExecutionRecord {
            module,
            outcome: report.outcome,
            fuel_used: report.fuel_used,
            timings: Timings { queue_us, instantiate_us: load_us + report.instantiate_us, run_us: report.run_us },
        }
    }

    /// The module ready to run: already loaded, or read (hash-verified) from
    /// the blob store and loaded. A corrupt blob is never executed.
    fn prepared(&self, module: ModuleId) -> Result<Prepared, CallError> {
        if let Some(prepared) = self.runtime.prepared(&module) {
            return Ok(prepared);
        }
        let wasm = self.blobs.get(&module).map_err(|error| match error {
            BlobError::Missing(_) => CallError::ModuleNotFound { reference: module.to_hex() },
            BlobError::Corrupt(_) => {
                tracing::error!(module = %module.short(), "stored module is corrupt; refusing to run it");
                CallError::ModuleCorrupt { module }
            }
            BlobError::Io(error) => internal(&format!("reading module {}: {error}", module.short())),
        })?;
        self.runtime.load(&module, &wasm)
    }

    /// Compiles (rejecting invalid modules), then stores blob and index entry.
    fn store_module(&self, module: ModuleId, wasm: &[u8]) -> Result<(), CallError> {
        self.runtime.load(&module, wasm)?;
        let storage_error = |error: anyhow::Error| internal(&format!("storing the module: {error:#}"));
        self.blobs.put(wasm).map_err(storage_error)?;
        let meta = ModuleMeta { size: wasm.len() as u64, deployed_unix_ms: unix_ms() };
        self.index.put_module(&module, &meta).map_err(storage_error)
    }

    fn record_reply(&self, reply: &Reply, elapsed: Duration) {
        let outcome = match reply {
            Ok(Answer { cache, record, .. }) => {
                self.metrics.record_cache(match cache {
                    nebula_protocol::CacheStatus::Hit => "hit",
                    nebula_protocol::CacheStatus::Miss => "miss",
                    nebula_protocol::CacheStatus::Joined => "joined",
                });
                record.outcome.kind()
            }
            Err(error) => error.kind(),
        };
        self.metrics.record_call(outcome, elapsed.as_secs_f64());
    }
}

fn internal(message: &str) -> CallError {
    CallError::Internal { message: message.to_owned() }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A stable label for this node, kept in the data directory.
fn load_or_create_node_id(config: &NodeConfig) -> anyhow::Result<String> {
    let path = config.data_dir.join("node-id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    let mut seed = blake3::Hasher::new();
    seed.update(&std::process::id().to_le_bytes());
    seed.update(&SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos().to_le_bytes());
    seed.update(config.data_dir.to_string_lossy().as_bytes());
    let id = format!("node-{}", &seed.finalize().to_hex()[..16]);
    crate::store::write_atomically(&path, id.as_bytes())?;
    Ok(id)
}
