//! The sans-io core: every decision of a node, no I/O, no clock.
//!
//! The shell (the real node, or the simulator) feeds it [`Event`]s and carries
//! out the [`Action`]s it returns. A call flows: locate the module (name, full
//! hash or prefix; here or at a peer) -> join an identical call in flight ->
//! the local result cache -> a peer known to hold the result -> execute here,
//! after fetching the module if needed, or forward to a holder -> store,
//! announce, reply to everyone who joined.

mod calls;
mod mesh;
#[cfg(test)]
mod tests;
mod verify;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::ids::{CallKey, MIN_PREFIX_LEN, ModuleId, looks_like_hex};
use crate::limits::Limits;
use crate::names::{NameRecord, validate_name};
use crate::outcome::{CallError, ExecutionRecord};
use crate::wire::{Gossip, RemoteAnswer, ResultRef, SyncRequest, SyncResponse};

/// A peer's identity as text (a libp2p PeerId in the node, a label in the simulator).
pub type Peer = String;

/// Chosen by the shell; identifies one caller waiting for a reply.
pub type RequestId = u64;

/// Identifies one execution (or lookup, fetch, forward) shared by identical calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlightId(u64);

#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheStatus {
    /// Answered from a stored result; nothing ran.
    Hit,
    /// This caller's request started the execution.
    Miss,
    /// Joined an identical call that was already running.
    Joined,
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub key: CallKey,
    pub cache: CacheStatus,
    pub record: Arc<ExecutionRecord>,
}

/// `Err` means the call never reached a module (bad reference, input too
/// large, no reachable holder); failures of the function itself are in
/// `Answer::record.outcome`.
pub type Reply = Result<Answer, CallError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfig {
    /// Calls this node executes at once; beyond it, calls may be forwarded.
    pub capacity: u32,
    /// Announced modules are fetched ahead of need until they take this much.
    pub replicate_budget_bytes: u64,
    /// A call needing a module at most this big fetches it; a bigger one is forwarded.
    pub fetch_for_call_max_bytes: u64,
    /// Results up to this size travel inside their announcement.
    pub inline_result_max_bytes: u64,
    /// A forwarded call is never forwarded more than this many times.
    pub max_hops: u8,
    pub sync_interval_ms: u64,
    pub load_interval_ms: u64,
    /// Own results remembered for anti-entropy, and peers' results indexed.
    pub result_log_len: usize,
    pub remote_results_len: usize,
    /// A result from a peer is trusted only once this many other executors
    /// (other peers, or this node) produced the same outcome. 0 trusts a
    /// peer's (signed) result as it is.
    pub verify_remote: u8,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            capacity: 2,
            replicate_budget_bytes: 1 << 30,
            fetch_for_call_max_bytes: 16 << 20,
            inline_result_max_bytes: 16 << 10,
            max_hops: 2,
            sync_interval_ms: 10_000,
            load_interval_ms: 1_000,
            result_log_len: 100_000,
            remote_results_len: 100_000,
            verify_remote: 0,
        }
    }
}

/// Why fetching a module from a peer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchFailure {
    /// The bytes did not hash to the module id: the peer lied or is broken.
    BadHash,
    /// The peer does not have it (any more).
    NotFound,
    /// No answer: timeout, connection lost, peer gone.
    Unreachable,
    /// The bytes hashed right but are not an acceptable module.
    Invalid(String),
}

#[derive(Debug, Clone)]
pub enum Event {
    /// A caller (local, or a peer forwarding with `hops` > 0) asks for a call.
    CallRequested {
        request: RequestId,
        reference: String,
        input: Arc<[u8]>,
        limits: Limits,
        hops: u8,
    },
    /// Answer to [`Action::LookupResult`].
    ResultLookedUp {
        flight: FlightId,
        found: Option<Arc<ExecutionRecord>>,
    },
    /// Answer to [`Action::Execute`].
    ExecutionFinished {
        flight: FlightId,
        record: Arc<ExecutionRecord>,
    },
    /// A module's bytes are stored, verified and compiled here (deployed, or fetched).
    ModuleStored {
        module: ModuleId,
        size: u64,
    },
    /// Answer to [`Action::FetchModule`] when it did not end in `ModuleStored`.
    ModuleFetchFailed {
        module: ModuleId,
        from: Peer,
        failure: FetchFailure,
    },
    /// Answer to [`Action::FetchResult`]; `None` if the peer failed or had nothing.
    ResultFetched {
        flight: FlightId,
        /// The key that was asked for (what a signature on the record must cover).
        key: CallKey,
        from: Peer,
        found: Option<Arc<ExecutionRecord>>,
    },
    /// Answer to [`Action::ForwardCall`]: outer `Err` is a transport failure.
    ForwardAnswered {
        flight: FlightId,
        from: Peer,
        answer: Result<Result<RemoteAnswer, CallError>, String>,
    },
    PeerConnected {
        peer: Peer,
    },
    PeerDisconnected {
        peer: Peer,
    },
    GossipReceived {
        from: Peer,
        gossip: Gossip,
    },
    /// A peer's anti-entropy request; answer with [`Action::RespondSync`] and the same token.
    SyncRequested {
        from: Peer,
        token: u64,
        request: SyncRequest,
    },
    /// Answer to [`Action::SendSync`].
    SyncAnswered {
        from: Peer,
        response: SyncResponse,
    },
    /// The shell caught a peer breaking the rules (e.g. a forged signature).
    PeerMisbehaved {
        peer: Peer,
        reason: String,
    },
    /// The passage of time, in milliseconds since an arbitrary origin.
    Tick {
        now_ms: u64,
    },
}

#[derive(Debug)]
pub enum Action {
    /// Look `key` up in the local result store; answer with [`Event::ResultLookedUp`].
    LookupResult {
        flight: FlightId,
        key: CallKey,
    },
    /// Run the module here; answer with [`Event::ExecutionFinished`].
    Execute {
        flight: FlightId,
        key: CallKey,
        module: ModuleId,
        input: Arc<[u8]>,
        limits: Limits,
    },
    StoreResult {
        key: CallKey,
        record: Arc<ExecutionRecord>,
    },
    PersistName(NameRecord),
    Reply {
        request: RequestId,
        reply: Reply,
    },
    /// Publish on the gossip topic of this kind of message (reaches every node).
    Publish(Gossip),
    /// Send to each connected peer only: what only neighbours can use (that
    /// this node holds a module, its load). Mesh-wide, it would cost O(N²).
    TellPeers(Gossip),
    /// Fetch, verify, store and compile a module; answer with `ModuleStored` or `ModuleFetchFailed`.
    FetchModule {
        module: ModuleId,
        from: Peer,
    },
    FetchResult {
        flight: FlightId,
        key: CallKey,
        from: Peer,
    },
    ForwardCall {
        flight: FlightId,
        to: Peer,
        module: ModuleId,
        input: Arc<[u8]>,
        limits: Limits,
        hops: u8,
    },
    SendSync {
        to: Peer,
        request: SyncRequest,
    },
    RespondSync {
        token: u64,
        response: SyncResponse,
    },
    /// The peer misbehaved (e.g. sent bytes that do not match their hash).
    Penalise {
        peer: Peer,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleInfo {
    pub size: u64,
}

/// What this node knows of one peer.
#[derive(Debug, Clone, Default)]
pub struct PeerState {
    pub connected: bool,
    pub executing: u32,
    pub capacity: u32,
    /// Misbehaviours seen; a penalised peer is asked last.
    pub penalty: u32,
    /// The peer's result log is known up to here.
    pub results_cursor: u64,
    last_sync_ms: Option<u64>,
}

/// The peers known to hold a module (which may be held here too).
#[derive(Debug, Clone, Default)]
struct RemoteModule {
    size: u64,
    holders: BTreeSet<Peer>,
}

struct ModuleFetch {
    from: Peer,
    tried: BTreeSet<Peer>,
    /// Calls waiting for the module; empty for a background replication.
    flights: Vec<FlightId>,
    /// Bytes reserved from the replication budget (0 for a fetch a call needed).
    budgeted: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    LookingUp,
    FetchingResult,
    AwaitingModule,
    Executing,
    Forwarded,
}

struct Flight {
    key: CallKey,
    module: ModuleId,
    input: Arc<[u8]>,
    limits: Limits,
    hops: u8,
    stage: Stage,
    /// Peers that failed this flight (fetch or forward); not asked again.
    tried: BTreeSet<Peer>,
    /// The first waiter started the flight; later ones joined it.
    waiters: Vec<RequestId>,
    /// A peer's result waiting for confirmation (see `MeshConfig::verify_remote`).
    candidate: Option<verify::Candidate>,
}

pub struct Core {
    local_id: Peer,
    config: MeshConfig,
    now_ms: u64,
    modules: BTreeMap<ModuleId, ModuleInfo>,
    names: BTreeMap<String, NameRecord>,
    flights: HashMap<FlightId, Flight>,
    /// Calls with different limits may end differently (a fuel limit hit), so
    /// only calls with equal key *and* limits share a flight.
    flight_by_call: HashMap<(CallKey, Limits), FlightId>,
    next_flight: u64,
    executing: u32,
    peers: BTreeMap<Peer, PeerState>,
    remote_modules: BTreeMap<ModuleId, RemoteModule>,
    module_fetches: BTreeMap<ModuleId, ModuleFetch>,
    /// Bytes of modules fetched (or being fetched) ahead of need.
    replicated_bytes: u64,
    /// Results held by peers, bounded: oldest entries are forgotten first.
    remote_results: HashMap<CallKey, BTreeSet<Peer>>,
    remote_results_order: VecDeque<CallKey>,
    /// Results executed here, numbered, for peers' anti-entropy cursors.
    result_log: VecDeque<(u64, ResultRef)>,
    next_result_seq: u64,
    last_load_announced: Option<(u64, u32)>,
}

impl Core {
    pub fn new(local_id: impl Into<Peer>) -> Self {
        Self::with_config(local_id, MeshConfig::default())
    }

    pub fn with_config(local_id: impl Into<Peer>, config: MeshConfig) -> Self {
        Self {
            local_id: local_id.into(),
            config,
            now_ms: 0,
            modules: BTreeMap::new(),
            names: BTreeMap::new(),
            flights: HashMap::new(),
            flight_by_call: HashMap::new(),
            next_flight: 0,
            executing: 0,
            peers: BTreeMap::new(),
            remote_modules: BTreeMap::new(),
            module_fetches: BTreeMap::new(),
            replicated_bytes: 0,
            remote_results: HashMap::new(),
            remote_results_order: VecDeque::new(),
            result_log: VecDeque::new(),
            next_result_seq: 1,
            last_load_announced: None,
        }
    }

    pub fn local_id(&self) -> &str {
        &self.local_id
    }

    pub fn config(&self) -> &MeshConfig {
        &self.config
    }

    pub fn names(&self) -> impl Iterator<Item = &NameRecord> {
        self.names.values()
    }

    /// Modules held here.
    pub fn modules(&self) -> impl Iterator<Item = (&ModuleId, &ModuleInfo)> {
        self.modules.iter()
    }

    pub fn module_info(&self, module: &ModuleId) -> Option<ModuleInfo> {
        self.modules.get(module).copied()
    }

    pub fn peers(&self) -> impl Iterator<Item = (&Peer, &PeerState)> {
        self.peers.iter()
    }

    /// Peers known (by announcement or anti-entropy) to hold the result of `key`.
    pub fn result_holders(&self, key: &CallKey) -> impl Iterator<Item = &Peer> {
        self.remote_results.get(key).into_iter().flatten()
    }

    /// Number of executions, lookups, fetches and forwards shared by callers.
    pub fn flights_in_progress(&self) -> usize {
        self.flights.len()
    }

    pub fn executing(&self) -> u32 {
        self.executing
    }

    /// Loads a name record from storage (or a peer), keeping the newer one.
    /// Returns true if the record was adopted.
    pub fn merge_name(&mut self, record: NameRecord) -> bool {
        // A peer's record must name what a local publish could: anything else
        // (a hex prefix, markup, 60 KiB) would shadow modules or clutter pages.
        if validate_name(&record.name).is_err() {
            return false;
        }
        match self.names.get(&record.name) {
            Some(current) if !record.supersedes(current) => false,
            _ => {
                self.names.insert(record.name.clone(), record);
                true
            }
        }
    }

    /// Points `name` at the module `reference` resolves to, as a new version,
    /// and announces it.
    pub fn publish_name(&mut self, name: &str, reference: &str) -> Result<(NameRecord, Vec<Action>), CallError> {
        validate_name(name)
            .map_err(|error| CallError::InvalidName { name: name.to_owned(), reason: error.to_string() })?;
        let module = self.resolve(reference)?;
        // Versions come from peers too: one may have claimed the last one.
        let version =
            self.names.get(name).map_or(Some(1), |current| current.version.checked_add(1)).ok_or_else(|| {
                let reason = "its version counter is exhausted (a peer published the last version)".to_owned();
                CallError::InvalidName { name: name.to_owned(), reason }
            })?;
        let record = NameRecord { name: name.to_owned(), module, version, publisher: self.local_id.clone() };
        self.names.insert(name.to_owned(), record.clone());
        Ok((record.clone(), vec![Action::PersistName(record.clone()), Action::Publish(Gossip::Name(record))]))
    }

    /// Resolves a name, a full module hash or a unique hash prefix to a module
    /// held here or known to be held by a peer.
    pub fn resolve(&self, reference: &str) -> Result<ModuleId, CallError> {
        let known = |module: &ModuleId| self.modules.contains_key(module) || self.remote_modules.contains_key(module);
        let not_found = || CallError::ModuleNotFound { reference: reference.to_owned() };
        if let Ok(module) = reference.parse::<ModuleId>() {
            return known(&module).then_some(module).ok_or_else(not_found);
        }
        if let Some(record) = self.names.get(reference) {
            return match known(&record.module) {
                true => Ok(record.module),
                false => Err(CallError::ModuleNotFound { reference: record.module.to_hex() }),
            };
        }
        if looks_like_hex(reference) && reference.len() >= MIN_PREFIX_LEN {
            let candidates = self.modules.keys().chain(self.remote_modules.keys());
            let mut matches: Vec<ModuleId> =
                candidates.filter(|module| module.to_hex().starts_with(reference)).copied().collect();
            matches.sort();
            matches.dedup();
            return match matches.as_slice() {
                [] => Err(not_found()),
                [only] => Ok(*only),
                _ => Err(CallError::AmbiguousPrefix { prefix: reference.to_owned(), matches }),
            };
        }
        if validate_name(reference).is_ok() {
            return Err(CallError::NameNotFound { name: reference.to_owned() });
        }
        Err(not_found())
    }

    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::CallRequested { request, reference, input, limits, hops } => {
                self.on_call_requested(request, &reference, input, limits, hops)
            }
            Event::ResultLookedUp { flight, found } => self.on_result_looked_up(flight, found),
            Event::ExecutionFinished { flight, record } => self.on_execution_finished(flight, record),
            Event::ModuleStored { module, size } => self.on_module_stored(module, size),
            Event::ModuleFetchFailed { module, from, failure } => self.on_module_fetch_failed(module, from, failure),
            Event::ResultFetched { flight, from, found, .. } => self.on_result_fetched(flight, from, found),
            Event::PeerMisbehaved { peer, reason } => vec![self.penalise(&peer, &reason)],
            Event::ForwardAnswered { flight, from, answer } => self.on_forward_answered(flight, from, answer),
            Event::PeerConnected { peer } => self.on_peer_connected(peer),
            Event::PeerDisconnected { peer } => self.on_peer_disconnected(&peer),
            Event::GossipReceived { from, gossip } => self.on_gossip(from, gossip),
            Event::SyncRequested { from, token, request } => self.on_sync_requested(&from, token, &request),
            Event::SyncAnswered { from, response } => self.on_sync_answered(from, response),
            Event::Tick { now_ms } => self.on_tick(now_ms),
        }
    }
}
