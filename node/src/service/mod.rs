//! The node's I/O shell around the sans-io core: a handle ([`Node`]) for
//! callers, the one task that owns the core ([`core_task`]), and the work it
//! hands out (executions, store I/O), which reports back to it.

mod activity;
mod core_task;
mod executions;
mod fair_slots;
mod slow_lane;
mod storage;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use libp2p::PeerId;
use nebula_protocol::manifest::{Bundle, Manifest};
use nebula_protocol::{
    CallError, CallKey, Core, LimitOverrides, Limits, MeshConfig, ModuleId, NameRecord, Reply, Resolver,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};

use activity::Activity;
pub use activity::{ActivitySnapshot, ModuleCounters, RecentCall, SecondCounts};
use core_task::{CoreHandle, CoreTask, Input};
pub use fair_slots::{QUICK_TRAFFIC_WINDOW, SLOW_HOLD};

use crate::config::NodeConfig;
use crate::footprint::{AnswerKind, CallFootprint, EnergyMeter, EnergyModel, FunctionFootprint, Ledger};
use crate::mesh::{self, Command, NetworkHandle};
use crate::metrics::Metrics;
use crate::result_cache::MemoryResults;
use crate::runtime::{ModuleState, Runtime};
use crate::sealing::Sealer;
use crate::signing::Ed25519Signatures;
use crate::store::{BlobStore, Index, ResultLog, ResultWriter, StagedBlob};

/// A running node. Cheap to clone; all clones share one node, which runs
/// until every clone is gone (or [`Node::shutdown`]).
pub struct Node {
    shared: Arc<Shared>,
    /// To the core (directly, or through the core task).
    core: CoreHandle,
}

impl Clone for Node {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        Node { shared: self.shared.clone(), core: self.core.clone() }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shared.handles.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the handle, the core task and the workers share: the stores, the
/// runtime, the counters; never the core.
struct Shared {
    config: NodeConfig,
    /// `Node` handles alive; the other holders of this are work under way.
    handles: AtomicUsize,
    /// Shared by every answer (no copy per call).
    node_id: Arc<str>,
    /// The node id as a response header value.
    node_id_header: axum::http::HeaderValue,
    /// The node's libp2p key: it signs the results that leave the node
    /// (see `sealing`).
    identity: libp2p::identity::Keypair,
    /// Seals the results executed here.
    sealer: Sealer,
    started: Instant,
    /// The core's names and known modules, as it last published them.
    resolver: ArcSwap<Resolver>,
    runtime: Runtime,
    blobs: BlobStore,
    index: Arc<Index>,
    /// Cached results on disk, read here and appended by `results`.
    result_log: Arc<ResultLog>,
    results: ResultWriter,
    memory: MemoryResults,
    metrics: Metrics,
    /// What executions cost, per function.
    ledger: Ledger,
    energy: EnergyMeter,
    /// Bounds executions in flight so a flood of slow calls cannot starve the
    /// HTTP server (they wait here instead of occupying blocking threads),
    /// and shares them between modules so one module's flood cannot starve
    /// the others.
    execution_slots: Arc<fair_slots::FairSlots>,
    /// Runs slow-lane executions at a lower CPU priority.
    slow_lane: slow_lane::SlowLane,
    /// Local calls handed to the core and not answered yet: one alone
    /// may run in place (see `executions::run`), more mean a busy node.
    calls_waiting: AtomicUsize,
    /// Bounds modules from peers being compiled at once.
    replication_slots: Arc<Semaphore>,
    /// Absent when the node runs without a mesh.
    network: Option<NetworkHandle>,
    /// Recent calls and per-second counts, for the dashboard.
    activity: Mutex<Activity>,
    /// The content type each module declares (read from its bytes once).
    content_types: Mutex<HashMap<ModuleId, Option<&'static str>>>,
}

/// A call's answer as the node reports it to a client.
#[derive(Debug, Clone)]
pub struct CallResponse {
    pub reply: Reply,
    /// Time spent in this node, from request to reply.
    pub elapsed: Duration,
    pub node_id: Arc<str>,
    /// What producing the answer cost this node.
    pub footprint: CallFootprint,
}

impl Shared {
    /// No local call waits for an answer but (perhaps) the one asking: it
    /// may drive the core itself and run its guest in place.
    fn is_quiet(&self) -> bool {
        self.calls_waiting.load(Ordering::Relaxed) <= 1
    }
}

/// Counts one call in `counter` for as long as it lives, even if its
/// caller gives up (the future is dropped) before the answer.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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
    /// `ready`, `compiling`, `failed` or `stored` (see `ModuleState`).
    #[serde(default)]
    pub state: String,
    /// Why its compile failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// For a function deployed with a manifest: its module, arguments,
    /// environment and files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerSummary {
    pub peer: String,
    pub connected: bool,
    pub addresses: Vec<String>,
    pub rtt_ms: Option<f64>,
    pub executing: u32,
    pub capacity: u32,
    pub penalty: u32,
    /// Why this node refused the peer (another protocol version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
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
    /// Executions waiting for a slot (`fair_slots`).
    #[serde(default)]
    pub calls_queued: usize,
    /// Deploys and name changes need no token (none is set).
    #[serde(default)]
    pub deploys_open: bool,
    pub concurrency: u32,
    pub default_limits: Limits,
    pub max_limits: Limits,
    pub peers_connected: usize,
    pub listen_addresses: Vec<String>,
    /// Modules waiting for or in a compile.
    #[serde(default)]
    pub compiling: usize,
    /// The largest module a deploy may upload.
    #[serde(default)]
    pub max_module_bytes: u64,
    /// Compiled code loaded in memory (within `--loaded-module-bytes`).
    #[serde(default)]
    pub loaded_code_bytes: u64,
}

impl Node {
    /// Opens (or creates) the data directory and restores modules and names.
    /// Must run inside a tokio runtime (it starts the core task).
    pub async fn open(config: NodeConfig) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&config.data_dir)?;
        let key = mesh::load_or_create_key(&config.data_dir.join("node-key"))?;
        let peer_id = key.public().to_peer_id();
        let node_id = peer_id.to_string();
        let blobs = BlobStore::open(config.data_dir.join("blobs"))?;
        let index = Arc::new(Index::open(&config.data_dir.join("index.redb"))?);
        let compiled = config.data_dir.join("compiled");
        let (concurrency, max_memory) = (config.concurrency, config.max_limits.memory_bytes);
        let runtime = Runtime::with_settings(compiled, concurrency, max_memory, config.runtime.clone())?;
        let core = restore_core(&config, peer_id, &index, &blobs)?;
        let result_log = Arc::new(ResultLog::open(&config.data_dir.join("results"), config.result_disk_bytes)?);
        let moved = index.move_results_to(&result_log)?;
        if moved > 0 {
            tracing::info!(results = moved, "moved cached results from the index to the result log");
        }

        let metrics = Metrics::default();
        metrics.modules.set(core.modules().count() as i64);
        let (network, network_events) = match config.mesh.clone() {
            Some(settings) => {
                let (events, received) = mpsc::unbounded_channel();
                (Some(mesh::spawn(key.clone(), settings, events, &metrics)?), Some(received))
            }
            None => (None, None),
        };
        let shared = Arc::new(Shared {
            handles: AtomicUsize::new(1),
            resolver: ArcSwap::new(core.resolver().clone()),
            memory: MemoryResults::new(config.memory_cache_bytes),
            execution_slots: fair_slots::FairSlots::new(
                config.concurrency as usize,
                config.queue_per_module as usize,
                config.quick_traffic_window,
                config.slow_hold,
            ),
            slow_lane: slow_lane::SlowLane::new(config.concurrency as usize)?,
            calls_waiting: AtomicUsize::new(0),
            replication_slots: Arc::new(Semaphore::new((config.concurrency as usize / 2).max(1))),
            energy: EnergyMeter::new(config.watts_per_core),
            node_id_header: axum::http::HeaderValue::from_str(&node_id).expect("a peer id is a valid header value"),
            node_id: Arc::from(node_id),
            sealer: Sealer::new(&key),
            identity: key,
            started: Instant::now(),
            runtime,
            blobs,
            results: ResultWriter::start(result_log.clone()),
            result_log,
            index,
            metrics,
            ledger: Ledger::default(),
            network: network.clone(),
            activity: Mutex::new(Activity::default()),
            content_types: Mutex::new(HashMap::new()),
            config,
        });
        let core = CoreTask::spawn(core, shared.clone(), network, network_events);
        tracing::info!(node = %shared.node_id, data = %shared.config.data_dir.display(), "node opened");
        Ok(Node { shared, core })
    }

    pub fn id(&self) -> &str {
        &self.shared.node_id
    }

    /// The node id as a response header value (`x-nebula-node`).
    pub fn id_header(&self) -> axum::http::HeaderValue {
        self.shared.node_id_header.clone()
    }

    pub fn config(&self) -> &NodeConfig {
        &self.shared.config
    }

    /// Calls `reference` (name, hash or hash prefix) with `input` on stdin.
    pub async fn call(&self, reference: &str, input: Vec<u8>, overrides: &LimitOverrides) -> CallResponse {
        let config = &self.shared.config;
        let limits = config.default_limits.with_overrides(overrides, &config.max_limits);
        let started = Instant::now();
        // Most calls to a busy node repeat: their result is in memory, and the
        // core's resolver answers here, without a trip to the core task.
        let resolver = self.shared.resolver.load();
        let memory = |key: &CallKey| self.shared.memory.get(key);
        if let Some(answer) = resolver.answer_from_memory(reference, &input, &limits, memory) {
            return self.shared.answered(started, activity::CallSeen { reference, input: &input, hops: 0 }, Ok(answer));
        }
        let input: Arc<[u8]> = input.into();
        let (reply, answer) = oneshot::channel();
        let call = Input::Call { reference: reference.to_owned(), input: input.clone(), limits, reply };
        let waiting = Waiting::count(&self.shared.calls_waiting);
        // On a busy node the core task takes calls in turn (a caller driving
        // the core would wait for it, or hold it, to gain nothing).
        let handed = match self.shared.is_quiet() {
            true => self.core.submit(call),
            false => self.core.queue(call),
        };
        let reply = match handed {
            Ok(()) => answer.await.unwrap_or_else(|_| Err(internal("the call was dropped before it was answered"))),
            Err(_) => Err(internal("the node is shutting down")),
        };
        drop(waiting);
        self.shared.answered(started, activity::CallSeen { reference, input: &input, hops: 0 }, reply)
    }

    /// Checks, stores and indexes a module received into `staged`, queues
    /// its compile (it runs once compiled); optionally names it.
    pub async fn deploy(&self, staged: StagedBlob, name: Option<&str>) -> Result<Deployed, CallError> {
        let shared = self.shared.clone();
        let size = staged.size();
        if size > shared.config.max_module_bytes {
            return Err(CallError::InvalidModule {
                reason: format!("{size} bytes is over the limit of {} bytes", shared.config.max_module_bytes),
            });
        }
        if let Some(name) = name {
            nebula_protocol::validate_name(name)
                .map_err(|error| CallError::InvalidName { name: name.to_owned(), reason: error.to_string() })?;
        }
        let module = staged.id();
        let new = self.query(move |core| core.module_info(&module).is_none()).await?;
        // Deploying a known module again also repairs a damaged or lost blob.
        let intact = !new && {
            let store = shared.clone();
            tokio::task::spawn_blocking(move || store.blobs.verify(&module).is_ok()).await.unwrap_or(false)
        };
        if !intact {
            let store = shared.clone();
            tokio::task::spawn_blocking(move || store.store_staged(staged))
                .await
                .map_err(|error| internal(&format!("deploy task failed: {error}")))??;
            let (done, stored) = oneshot::channel();
            self.send(Input::Deployed { module, size, done })?;
            stored.await.map_err(|_| internal("the node is shutting down"))?;
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

    /// `deploy` of bytes already in memory (benchmarks, examples).
    pub async fn deploy_bytes(&self, wasm: Vec<u8>, name: Option<&str>) -> Result<Deployed, CallError> {
        let staged = self.shared.blobs.stage_bytes(&wasm).map_err(|error| internal(&format!("storing: {error}")))?;
        self.deploy(staged, name).await
    }

    /// Starts receiving a module's bytes into the blob store (see `deploy`).
    pub fn stage_upload(&self) -> std::io::Result<crate::store::BlobWriter> {
        self.shared.blobs.stage()
    }

    /// Points `name` at the module `reference` resolves to; durable when it returns.
    pub async fn set_name(&self, name: &str, reference: &str) -> Result<NameRecord, CallError> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::PublishName { name: name.to_owned(), reference: reference.to_owned(), reply })?;
        let record = answer.await.map_err(|_| internal("the node is shutting down"))??;
        tracing::info!(name = %record.name, module = %record.module.short(), version = record.version, "name set");
        Ok(record)
    }

    pub fn resolve(&self, reference: &str) -> Result<ModuleId, CallError> {
        self.shared.resolver.load().resolve(reference)
    }

    pub fn names(&self) -> Vec<NameRecord> {
        self.shared.resolver.load().names().cloned().collect()
    }

    pub async fn modules(&self) -> Vec<ModuleSummary> {
        let held: Vec<(ModuleId, u64)> = self
            .query(|core| core.modules().map(|(module, info)| (*module, info.size)).collect())
            .await
            .unwrap_or_default();
        let mut names: HashMap<ModuleId, Vec<String>> = HashMap::new();
        for record in self.names() {
            names.entry(record.module).or_default().push(record.name);
        }
        held.into_iter()
            .map(|(module, size)| {
                let state = self.shared.runtime.state(&module);
                ModuleSummary {
                    module,
                    size,
                    names: names.remove(&module).unwrap_or_default(),
                    state: state.label().to_owned(),
                    failure: match state {
                        ModuleState::Failed(reason) => Some(reason),
                        _ => None,
                    },
                    manifest: self.manifest(&module),
                }
            })
            .collect()
    }

    pub async fn status(&self) -> NodeStatus {
        let shared = &self.shared;
        let (modules, calls_in_flight) =
            self.query(|core| (core.modules().count(), core.flights_in_progress())).await.unwrap_or_default();
        let stored_results = shared.result_log.len() as u64;
        NodeStatus {
            node_id: shared.node_id.to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: shared.started.elapsed().as_secs(),
            modules,
            names: self.names().len(),
            memory_cache_entries: shared.memory.len(),
            memory_cache_bytes: shared.memory.bytes(),
            stored_results,
            calls_in_flight,
            calls_queued: shared.execution_slots.queued(),
            deploys_open: shared.config.admin_token.is_none(),
            concurrency: shared.config.concurrency,
            default_limits: shared.config.default_limits,
            max_limits: shared.config.max_limits,
            peers_connected: self.peers().await.iter().filter(|peer| peer.connected).count(),
            listen_addresses: self.listen_addresses(),
            compiling: shared.runtime.compiling(),
            max_module_bytes: shared.config.max_module_bytes,
            loaded_code_bytes: shared.runtime.loaded_bytes(),
        }
    }

    /// The owners of `key`'s result as this node sees the mesh, best first.
    pub async fn owners(&self, key: &CallKey) -> Vec<String> {
        let key = *key;
        self.query(move |core| core.owners(&key).iter().map(ToString::to_string).collect()).await.unwrap_or_default()
    }

    /// The members that keep `module` when modules are placed on owners
    /// (`NodeConfig::module_owners`), best first; none otherwise.
    pub async fn module_owners(&self, module: &ModuleId) -> Vec<String> {
        let module = *module;
        let owners = self.query(move |core| core.module_owners(&module).iter().map(ToString::to_string).collect());
        owners.await.unwrap_or_default()
    }

    /// Peers known to the core, with what the network knows of them.
    pub async fn peers(&self) -> Vec<PeerSummary> {
        let links = self.shared.network.as_ref().map(NetworkHandle::links).unwrap_or_default();
        let known: Vec<(String, nebula_protocol::core::PeerState)> = self
            .query(|core| core.peers().map(|(peer, state)| (peer.to_string(), state.clone())).collect())
            .await
            .unwrap_or_default();
        let mut summaries: Vec<PeerSummary> = known
            .iter()
            .map(|(peer, state)| {
                let link = links.get(peer).cloned().unwrap_or_default();
                PeerSummary {
                    peer: peer.clone(),
                    connected: state.connected,
                    addresses: link.addresses,
                    rtt_ms: link.rtt_ms,
                    executing: state.executing,
                    capacity: state.capacity,
                    penalty: state.penalty,
                    refused: link.refused,
                }
            })
            .collect();
        // A peer refused before the core heard of it still shows, with why.
        for (peer, link) in links {
            if link.refused.is_some() && !known.iter().any(|(known, _)| *known == peer) {
                summaries.push(PeerSummary {
                    peer,
                    connected: false,
                    addresses: link.addresses,
                    rtt_ms: link.rtt_ms,
                    executing: 0,
                    capacity: 0,
                    penalty: 0,
                    refused: link.refused,
                });
            }
        }
        summaries
    }

    /// Addresses other nodes can dial (`--peer`), empty without a mesh.
    pub fn listen_addresses(&self) -> Vec<String> {
        self.shared
            .network
            .as_ref()
            .map_or_else(Vec::new, |network| network.listen_addresses().iter().map(ToString::to_string).collect())
    }

    /// True if the result of this call is in this node's cache (nothing runs).
    pub fn is_cached(&self, reference: &str, input: &[u8]) -> bool {
        self.resolve(reference).is_ok_and(|module| self.shared.lookup_result(&CallKey::new(&module, input)).is_some())
    }

    /// Stops all peer-to-peer traffic at once, as if the node had vanished
    /// from the network (for experiments and tests); HTTP keeps serving.
    pub fn leave_mesh(&self) {
        self.network_send(Command::Shutdown);
    }

    /// Connects to a peer at `address` (a multiaddr, ideally ending in /p2p/<id>).
    pub fn dial(&self, address: &str) -> Result<(), String> {
        let address = address.parse().map_err(|error| format!("'{address}' is not a multiaddr: {error}"))?;
        let network = self.shared.network.as_ref().ok_or("this node runs without a mesh")?;
        network.send(Command::Dial(address));
        Ok(())
    }

    /// Cuts (or restores) the link to a peer, as a partition would.
    pub fn block_peer(&self, peer: &str, blocked: bool) {
        let Ok(peer) = peer.parse::<PeerId>() else { return };
        self.network_send(match blocked {
            true => Command::Block(peer),
            false => Command::Unblock(peer),
        });
    }

    /// Recent calls, calls per second and per-module counters (for the dashboard).
    pub fn activity(&self) -> ActivitySnapshot {
        self.shared.activity().snapshot(unix_ms())
    }

    /// The content type `module` declares for its answers (its
    /// `nebula:content-type` section): `Some(None)` if it declares none, and
    /// `None` if this node cannot tell yet because it does not hold the
    /// module's bytes (an answer that came from a peer before the module).
    pub fn content_type(&self, module: &ModuleId) -> Option<Option<&'static str>> {
        let shared = &self.shared;
        if let Some(known) = shared.content_types.lock().expect("content types lock").get(module) {
            return Some(*known);
        }
        let wasm = shared.blobs.map(module).ok()?;
        let program = crate::runtime::program_bytes(&wasm).ok()?;
        let declared = crate::runtime::declared_content_type(program).ok().flatten();
        shared.content_types.lock().expect("content types lock").insert(*module, declared);
        Some(declared)
    }

    /// The manifest of a function deployed with one. Only its header is
    /// read, unverified: listings do not hash whole blobs (calls do).
    pub fn manifest(&self, module: &ModuleId) -> Option<Manifest> {
        let file = std::fs::File::open(self.shared.blobs.path(module)).ok()?;
        // SAFETY: blobs are only ever replaced by rename, never written in place.
        let blob = unsafe { memmap2::Mmap::map(&file) }.ok()?;
        Bundle::parse_header(&blob).ok()
    }

    /// What each function called on this node cost, most called first.
    pub fn footprint(&self) -> Vec<FunctionFootprint> {
        let names = self.names();
        self.shared.ledger.rows(|module| {
            names.iter().filter(|record| record.module == *module).map(|record| record.name.clone()).collect()
        })
    }

    /// How this node obtains energy figures (measured or estimated, and the rate).
    pub fn energy_model(&self) -> EnergyModel {
        self.shared.energy.model()
    }

    pub fn metrics_text(&self) -> String {
        self.shared.metrics.memory_cache_bytes.set(self.shared.memory.bytes() as i64);
        self.shared.metrics.encode(&self.footprint())
    }

    /// Makes every cached result durable (call before a clean shutdown).
    pub fn flush(&self) -> anyhow::Result<()> {
        self.shared.results.flush()
    }

    /// Stops the core task and the swarm, and waits until they, and the work
    /// they handed out (executions, store I/O), have let go of the node (at
    /// most as long as the longest call may run): once this handle and its
    /// clones are dropped, the data directory is free to open again.
    pub async fn shutdown(self) {
        let (done, stopped) = oneshot::channel();
        if self.core.queue(Input::Shutdown(done)).is_ok() {
            let _ = stopped.await;
        }
        // Executions still waiting for a slot are told the node is stopping.
        self.shared.execution_slots.close();
        let patience = Duration::from_millis(self.shared.config.max_limits.deadline_ms) + Duration::from_secs(5);
        let started = Instant::now();
        let working = |shared: &Arc<Shared>| Arc::strong_count(shared) > shared.handles.load(Ordering::Relaxed);
        while working(&self.shared) && started.elapsed() < patience {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Asks the core about its state.
    async fn query<T: Send + 'static>(
        &self,
        ask: impl FnOnce(&Core<PeerId>) -> T + Send + 'static,
    ) -> Result<T, CallError> {
        let (answer, answered) = oneshot::channel();
        self.send(Input::Query(Box::new(move |core| {
            let _ = answer.send(ask(core));
        })))?;
        answered.await.map_err(|_| internal("the node is shutting down"))
    }

    fn send(&self, input: Input) -> Result<(), CallError> {
        self.core.submit(input).map_err(|_| internal("the node is shutting down"))
    }

    fn network_send(&self, command: Command) {
        if let Some(network) = &self.shared.network {
            network.send(command);
        }
    }
}

/// The core, with what the data directory holds.
fn restore_core(config: &NodeConfig, local: PeerId, index: &Index, blobs: &BlobStore) -> anyhow::Result<Core<PeerId>> {
    let mesh_config = MeshConfig {
        capacity: config.concurrency,
        max_limits: config.max_limits,
        max_module_bytes: config.max_module_bytes,
        replicate_budget_bytes: config.replicate_budget_bytes,
        fetch_for_call_max_bytes: config.fetch_for_call_max_bytes,
        owners: config.owners,
        run_here_below_us: config.run_here_below_us,
        module_owners: config.module_owners,
        verify_remote: config.verify_remote,
        sync_interval_ms: config.mesh.as_ref().map_or(10_000, |mesh| mesh.sync_interval.as_millis() as u64),
        ..MeshConfig::default()
    };
    let mut core = Core::new(local, mesh_config, Box::new(Ed25519Signatures::default()));
    for (module, meta) in index.modules()? {
        if blobs.contains(&module) {
            // Nothing to announce to yet: peers learn of it by anti-entropy.
            core.restore_module(module, meta.size);
        } else {
            // The blob is written before its index entry, so this only
            // happens if someone removed the file by hand.
            tracing::warn!(module = %module.short(), "module indexed but its blob is gone; forgetting it");
            index.remove_module(&module)?;
        }
    }
    for record in index.names()? {
        if !core.restore_name(record.clone()) {
            tracing::warn!(name = %record.name, "ignoring a stored name record that is not valid");
        }
    }
    Ok(core)
}

impl Shared {
    fn activity(&self) -> MutexGuard<'_, Activity> {
        self.activity.lock().expect("activity lock")
    }

    /// Counts the answered call (metrics, dashboard, footprint ledger).
    fn answered(&self, started: Instant, call: activity::CallSeen, reply: Reply) -> CallResponse {
        let elapsed = started.elapsed();
        self.record_reply(&reply, elapsed);
        self.activity().record_call(unix_ms(), call, &reply, elapsed.as_micros() as u64);
        let footprint = self.account(&reply);
        CallResponse { reply, elapsed, node_id: self.node_id.clone(), footprint }
    }

    /// Counts the answer against its function and finds what it cost here.
    fn account(&self, reply: &Reply) -> CallFootprint {
        let Ok(answer) = reply else { return CallFootprint::None };
        let module = answer.record.module;
        let (kind, footprint) = match answer.cache {
            nebula_protocol::CacheStatus::Hit => (AnswerKind::CacheHit, CallFootprint::Cached),
            _ if answer.record.executed_by != *self.node_id => (AnswerKind::Elsewhere, CallFootprint::Elsewhere),
            // Only forgotten under a flood of thousands of executions at once.
            _ => match self.ledger.execution(&answer.key) {
                Some(footprint) => (AnswerKind::Executed, CallFootprint::Executed(footprint)),
                None => (AnswerKind::Executed, CallFootprint::None),
            },
        };
        self.ledger.record_answer(module, kind);
        footprint
    }

    fn record_reply(&self, reply: &Reply, elapsed: Duration) {
        let outcome = match reply {
            Ok(answer) => {
                self.metrics.record_cache(match answer.cache {
                    nebula_protocol::CacheStatus::Hit => "hit",
                    nebula_protocol::CacheStatus::Miss => "miss",
                    nebula_protocol::CacheStatus::Joined => "joined",
                });
                answer.record.outcome.kind()
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
