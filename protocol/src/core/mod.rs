//! The sans-io core: every decision of a node, no I/O, no clock.
//!
//! The shell (the real node, or the simulator) feeds it [`Event`]s with the
//! time they happen at and carries out the [`Action`]s it returns; it wakes
//! the core when [`Core::poll_timeout`] says. A call flows: locate the module
//! (name, full hash or prefix; here or at a peer) -> join an identical call
//! in flight -> the local result cache -> the key's owner, which answers it
//! (from its store, by joining the same call from other nodes, or by
//! executing it) -> or, if this node is the owner or no owner answers,
//! execute here, after fetching the module if needed, or forward to a holder
//! -> store at the owners, reply to everyone who joined. Peers' requests are
//! answered here too, and every record, module and message a peer sends is
//! judged here before anything is kept or passed on.
//!
//! The state is split by subject, each in its own file: [`flights`] (calls in
//! progress), [`peers`] and [`holders`] (who is there, who holds which
//! module), [`owners`] (who owns which result), [`modules`] (held, being
//! fetched), [`resolver`] (names and known modules), [`handoff`] (results on
//! their way to their owners), [`requests`] and [`timers`] (what was asked
//! of peers, and every deadline). The decisions are in [`calls`], [`serve`],
//! [`responses`], [`gossip`], [`replication`], [`transfer`] (modules from
//! peers, slice by slice) and [`verify`].

mod calls;
mod config;
mod events;
mod flights;
mod gossip;
mod handoff;
mod holders;
mod modules;
mod owners;
mod peers;
mod replication;
mod requests;
mod resolver;
mod responses;
mod serve;
mod signatures;
mod slow_owners;
#[cfg(test)]
mod tests;
mod timers;
mod transfer;
mod verify;

use std::collections::HashMap;
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::sync::Arc;

pub use config::MeshConfig;
pub use events::{
    Action, Answer, CallerId, Event, FlightId, InboundId, LookupId, MessageId, Misbehaviour, Reply, RequestId, Verdict,
};
pub use modules::ModuleInfo;
pub use owners::Members;
pub use peers::PeerState;
pub use resolver::{MEMORY_SHORTCUT_MAX_INPUT, Resolver};
pub use signatures::{ModelledSignatures, Signatures};

use flights::Flights;
use handoff::Handoff;
use holders::Holders;
use modules::Modules;
use peers::Peers;
use requests::{Purpose, Requests};
use timers::{Timer, Timers};

use crate::ids::{CallKey, ModuleId};
use crate::names::{NameRecord, validate_name};
use crate::outcome::CallError;
use crate::wire::{Gossip, Request};

/// What the core needs of a peer's identity: a libp2p `PeerId` in the node, a
/// small number in the simulator. Its `Display` is the name the peer signs
/// its records with (`ExecutionRecord::executed_by`).
pub trait PeerKey: Clone + Eq + Ord + Hash + Debug + Display {}
impl<T: Clone + Eq + Ord + Hash + Debug + Display> PeerKey for T {}

/// Modules whose owners are remembered at most (see `Core::placed_owners`).
const MODULE_OWNERS_MEMO_LEN: usize = 4096;

/// What a pending result lookup is for.
#[derive(Debug, Clone, Copy)]
enum LookupFor {
    Flight(FlightId),
    /// A peer's `FetchResult`.
    Peer(InboundId),
}

pub struct Core<P: PeerKey> {
    local: P,
    /// `local` as it signs records and publishes names.
    local_name: String,
    config: MeshConfig,
    signatures: Box<dyn Signatures>,
    now_ms: u64,
    resolver: Arc<Resolver>,
    modules: Modules<P>,
    holders: Holders<P>,
    peers: Peers<P>,
    /// This node and its connected peers (or the view the shell gave): who
    /// owns which results. Shared: a simulator gives one view to many cores.
    members: Arc<Members<P>>,
    /// The shell gives the members (`set_members`); connections do not change them.
    members_given: bool,
    /// Module owners as the members stand (each a scan of every member),
    /// kept until they change: anti-entropy asks for them per held module.
    module_owners_memo: HashMap<ModuleId, Vec<P>>,
    flights: Flights<P>,
    lookups: HashMap<LookupId, LookupFor>,
    next_lookup: u64,
    requests: Requests<P>,
    timers: Timers<P>,
    handoff: Handoff<P>,
    slow_owners: slow_owners::SlowOwners<P>,
    executing: u32,
    /// When load was last told to the neighbours, and what it was.
    load_told: Option<(u64, u32)>,
}

impl<P: PeerKey> Core<P> {
    pub fn new(local: P, config: MeshConfig, signatures: Box<dyn Signatures>) -> Self {
        Self {
            local_name: local.to_string(),
            signatures,
            now_ms: 0,
            resolver: Arc::default(),
            modules: Modules::new(),
            holders: Holders::new(),
            peers: Peers::new(),
            members: Arc::new(Members::new(&local)),
            members_given: false,
            module_owners_memo: HashMap::new(),
            flights: Flights::new(),
            lookups: HashMap::new(),
            next_lookup: 0,
            requests: Requests::new(),
            timers: Timers::new(),
            handoff: Handoff::new(config.recent_results_len),
            slow_owners: slow_owners::SlowOwners::new(),
            executing: 0,
            load_told: None,
            config,
            local,
        }
    }

    /// Handles one event that happened at `now_ms` (milliseconds since an
    /// arbitrary origin, never going back).
    pub fn handle(&mut self, now_ms: u64, event: Event<P>) -> Vec<Action<P>> {
        self.now_ms = self.now_ms.max(now_ms);
        match event {
            Event::CallRequested { caller, reference, input, limits } => {
                self.start_call(flights::Waiter::Local(caller), None, &reference, input, limits, 0)
            }
            Event::ResultLookedUp { lookup, found } => self.on_result_looked_up(lookup, found),
            Event::ExecutionFinished { flight, result } => self.on_execution_finished(flight, result),
            Event::ModuleStored { module, size } => self.on_module_stored(module, size),
            Event::ModuleNotStored { module, reason, invalid } => self.on_module_not_stored(module, reason, invalid),
            Event::PeerConnected { peer } => self.on_peer_connected(peer),
            Event::PeerDisconnected { peer } => self.on_peer_disconnected(&peer),
            Event::GossipReceived { from, message, gossip } => self.on_gossip_message(from, message, gossip),
            Event::PeerRequest { from, inbound, request } => self.on_peer_request(from, inbound, request),
            Event::PeerResponse { request, from, response } => self.on_peer_response(request, from, response),
            Event::SliceReceived { request, from, module, size, index, verified } => {
                self.on_slice_received(request, from, module, (size, index), verified)
            }
            Event::RequestFailed { request, reason } => self.on_request_failed(request, &reason),
            Event::Timeout => self.on_timeout(),
        }
    }

    /// When the core next needs [`Event::Timeout`], if ever (in the clock of `handle`).
    pub fn poll_timeout(&self) -> Option<u64> {
        self.timers.next()
    }

    /// Loads a module the node's store holds (at start), announcing nothing.
    pub fn restore_module(&mut self, module: ModuleId, size: u64) {
        self.modules.hold(module, size);
        self.know_module(module);
    }

    /// Loads a name record from storage, keeping the newer one; true if adopted.
    pub fn restore_name(&mut self, record: NameRecord) -> bool {
        self.merge_name(record)
    }

    /// Points `name` at the module `reference` resolves to, as a new version,
    /// and announces it. The record must be persisted before it is announced:
    /// the actions say so, in that order.
    pub fn publish_name(&mut self, name: &str, reference: &str) -> Result<(NameRecord, Vec<Action<P>>), CallError> {
        validate_name(name)
            .map_err(|error| CallError::InvalidName { name: name.to_owned(), reason: error.to_string() })?;
        let module = self.resolver.resolve(reference)?;
        let version = self.resolver.next_version(name)?;
        let record = NameRecord { name: name.to_owned(), module, version, publisher: self.local_name.clone() };
        self.merge_name(record.clone());
        Ok((record.clone(), vec![Action::PersistName(record.clone()), Action::Publish(Gossip::Name(record))]))
    }

    pub fn local(&self) -> &P {
        &self.local
    }

    pub fn config(&self) -> &MeshConfig {
        &self.config
    }

    /// Names and known modules, shared: the shell resolves with it.
    pub fn resolver(&self) -> &Arc<Resolver> {
        &self.resolver
    }

    pub fn resolve(&self, reference: &str) -> Result<ModuleId, CallError> {
        self.resolver.resolve(reference)
    }

    pub fn names(&self) -> impl Iterator<Item = &NameRecord> {
        self.resolver.names()
    }

    /// Modules held here.
    pub fn modules(&self) -> impl Iterator<Item = (&ModuleId, &ModuleInfo)> {
        self.modules.held()
    }

    pub fn module_info(&self, module: &ModuleId) -> Option<ModuleInfo> {
        self.modules.info(module)
    }

    /// Whether a fetch of `module` is under way (its download still wanted).
    pub fn is_fetching(&self, module: &ModuleId) -> bool {
        self.modules.fetches.contains_key(module)
    }

    pub fn peers(&self) -> impl Iterator<Item = (&P, &PeerState)> {
        self.peers.iter()
    }

    /// Takes the members from the shell from now on (a membership view of a
    /// mesh too big for every node to connect to every other: owners are then
    /// asked by dialling them). Members that joined are handed the recent
    /// results they own.
    pub fn set_members(&mut self, now_ms: u64, members: Arc<Members<P>>) -> Vec<Action<P>> {
        self.now_ms = self.now_ms.max(now_ms);
        let joined: Vec<P> =
            members.iter().filter(|peer| !self.members.contains(peer) && **peer != self.local).cloned().collect();
        let before = std::mem::replace(&mut self.members, members);
        self.module_owners_memo.clear();
        self.members_given = true;
        let mut actions: Vec<Action<P>> = joined.iter().flat_map(|peer| self.hand_over_to_new_member(peer)).collect();
        actions.extend(self.hand_modules_to_new_owners(&before));
        actions
    }

    /// Whether a request to `peer` can be sent: it is connected, or the
    /// members are given and the shell dials owners on demand.
    fn reachable(&self, peer: &P) -> bool {
        self.peers.is_connected(peer) || (self.members_given && self.members.contains(peer))
    }

    /// The owners of `key`'s result among this node and its connected peers,
    /// best first (none if results have no owners: `MeshConfig::owners`).
    pub fn owners(&self, key: &CallKey) -> Vec<P> {
        self.members.owners(key, usize::from(self.config.owners))
    }

    /// The owners of `module` when modules are placed on owners
    /// (`MeshConfig::module_owners`), best first; none otherwise.
    pub fn module_owners(&self, module: &ModuleId) -> Vec<P> {
        self.members.module_owners(module, usize::from(self.config.module_owners))
    }

    /// [`Core::module_owners`], remembered until the members change.
    fn placed_owners(&mut self, module: &ModuleId) -> Vec<P> {
        if self.config.module_owners == 0 {
            return Vec::new();
        }
        if let Some(owners) = self.module_owners_memo.get(module) {
            return owners.clone();
        }
        let owners = self.module_owners(module);
        // Calls name any module id they like: the memo must not grow with them.
        if self.module_owners_memo.len() >= MODULE_OWNERS_MEMO_LEN {
            self.module_owners_memo.clear();
        }
        self.module_owners_memo.insert(*module, owners.clone());
        owners
    }

    /// Whether this node keeps `module` ahead of need: always when modules
    /// live everywhere, else when it is one of the module's owners.
    fn keeps_ahead_of_need(&mut self, module: &ModuleId) -> bool {
        self.config.module_owners == 0 || self.placed_owners(module).contains(&self.local)
    }

    /// Executions, lookups, fetches and forwards shared by callers.
    pub fn flights_in_progress(&self) -> usize {
        self.flights.len()
    }

    /// Requests sent to peers and not yet answered.
    pub fn requests_in_progress(&self) -> usize {
        self.requests.len()
    }

    pub fn executing(&self) -> u32 {
        self.executing
    }

    fn merge_name(&mut self, record: NameRecord) -> bool {
        let newer = validate_name(&record.name).is_ok()
            && self.resolver.name(&record.name).is_none_or(|current| record.supersedes(current));
        // Copy-on-write: the shell may hold the previous snapshot.
        newer && Arc::make_mut(&mut self.resolver).merge_name(record)
    }

    fn know_module(&mut self, module: ModuleId) {
        if !self.resolver.knows(&module) {
            Arc::make_mut(&mut self.resolver).know(module);
        }
    }

    /// Sends `message` to `to` and keeps its deadline.
    fn send(&mut self, to: P, message: Request, purpose: Purpose, timeout_ms: u64) -> Action<P> {
        let request = self.requests.start(to.clone(), purpose, self.now_ms);
        self.timers.set(Timer::Request(request), self.now_ms.saturating_add(timeout_ms));
        Action::Send { to, request, message }
    }

    /// Tells each connected peer directly: what only neighbours can use
    /// (that this node holds a module, its load). Mesh-wide, it would cost O(N²).
    fn tell_peers(&mut self, gossip: Gossip) -> Vec<Action<P>> {
        let peers: Vec<P> = self.peers.connected().cloned().collect();
        self.tell(peers, &gossip)
    }

    /// Tells each of `peers` that is reachable (this node left out).
    fn tell(&mut self, peers: impl IntoIterator<Item = P>, gossip: &Gossip) -> Vec<Action<P>> {
        let timeout = self.config.request_timeout_ms;
        let peers: Vec<P> = peers.into_iter().filter(|peer| *peer != self.local && self.reachable(peer)).collect();
        peers.into_iter().map(|peer| self.send(peer, Request::Tell(gossip.clone()), Purpose::Tell, timeout)).collect()
    }

    fn penalise(&mut self, peer: &P, misbehaviour: Misbehaviour) -> Action<P> {
        self.peers.penalise(peer);
        Action::Penalise { peer: peer.clone(), misbehaviour }
    }

    fn on_timeout(&mut self) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        while let Some(timer) = self.timers.pop_due(self.now_ms) {
            match timer {
                Timer::Request(request) => actions.extend(self.on_request_failed(request, "timed out")),
                Timer::Sync(peer) => actions.extend(self.sync_with(peer)),
                Timer::Load => actions.extend(self.tell_load()),
                Timer::Handoff => actions.extend(self.send_batches()),
                Timer::Patience(flight) => actions.extend(self.lose_patience(flight)),
            }
        }
        actions
    }
}
