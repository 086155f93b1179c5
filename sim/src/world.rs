//! The simulated world: N mesh cores (the very code a node runs), a network
//! with latency, loss and partitions, virtual time, and one seeded RNG, so a
//! run replays exactly from its seed.
//!
//! Nodes connect along a random graph of bounded degree (plus a ring, so it
//! is connected), as a node with a few dozen peers would; requests,
//! responses and anti-entropy use those links only, unless the run gives the
//! cores a membership view (`use_membership_view`, for `nebula-sim scale`):
//! then a request reaches any member of the sender's side, dialled on
//! demand. Everything a node
//! decides comes from its core, as in the real node: which requests to
//! send and how to answer peers' ones, whether a record or a module is
//! genuine, whether gossip is passed on, and when a request has waited too
//! long (the world wakes each core when its `poll_timeout` says).
//!
//! Where this differs from the real node: gossip floods the graph hop by
//! hop (each node passing on what its core accepts) instead of a gossipsub
//! mesh of degree ~6. A link breaks and comes back the instant a fault says
//! so, where a real node needs a missed ping to notice a cut and a redial to
//! heal it (see the README's comparison with scripts/partition-experiment).
//! Executions are modelled (the output derived from module and input, the
//! cost drawn from a range) unless the run uses `--wasm`. Module bytes are
//! not moved: a module travels in slices as between real nodes, each slice's
//! size (and its proof's) charged against bandwidth, and each verifies
//! against the module unless a liar sent it. Signatures are modelled
//! ([`ModelledSignatures`]).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use nebula_protocol::wire::{Gossip, Request, Response, SliceIndex, slice_count, slice_range};
use nebula_protocol::{
    Action, CallKey, CallerId, Core, Event, ExecutionRecord, InboundId, Members, MeshConfig, MessageId,
    ModelledSignatures, ModuleId, NameRecord, Outcome, RequestId, Timings, Verdict,
};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::executor::Executor;
pub use crate::history::Time;
use crate::history::{CallRecord, History};
use crate::liar::{Lies, flipped};

#[derive(Debug, Clone)]
pub struct NetworkModel {
    pub latency_ms: (u64, u64),
    pub loss: f64,
    /// Chance that a message arrives twice (each copy with its own latency,
    /// so copies and later messages can also arrive out of order).
    pub duplicate: f64,
    pub bandwidth_bytes_per_ms: u64,
    pub exec_ms: (u64, u64),
    /// A slow node executes this many times slower…
    pub slow_exec_factor: u64,
    /// …and each message to or from it takes this much longer.
    pub slow_link_ms: u64,
}

impl Default for NetworkModel {
    fn default() -> Self {
        Self {
            latency_ms: (1, 5),
            loss: 0.0,
            duplicate: 0.0,
            bandwidth_bytes_per_ms: 100_000,
            exec_ms: (1, 20),
            slow_exec_factor: 10,
            slow_link_ms: 100,
        }
    }
}

/// What a message is for: calls (answering them and storing their results at
/// their owners), modules moving to the nodes ahead of need, or the
/// background that runs whether or not anyone calls (anti-entropy, tells,
/// gossip floods). Responses count with their request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Traffic {
    Call,
    Module,
    Background,
}

/// Messages and bytes sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tally {
    pub messages: u64,
    pub bytes: u64,
}

/// The cause of a request and its answer, and a finer label to tell kinds apart.
pub fn classify(request: &Request) -> (Traffic, &'static str) {
    match request {
        Request::Call { .. } => (Traffic::Call, "call"),
        Request::Store(_) => (Traffic::Call, "store"),
        Request::FetchResult { .. } => (Traffic::Call, "fetch-result"),
        Request::FetchSlice { .. } => FETCH_MODULE,
        Request::Sync(_) => (Traffic::Background, "sync"),
        Request::Tell(Gossip::ModuleAvailable { .. }) => (Traffic::Background, "tell-module"),
        Request::Tell(Gossip::Load { .. }) => (Traffic::Background, "tell-load"),
        Request::Tell(Gossip::Name(_)) => (Traffic::Background, "tell-name"),
        Request::Tell(Gossip::Member { .. }) => (Traffic::Background, "tell-member"),
    }
}

const FETCH_MODULE: (Traffic, &str) = (Traffic::Module, "fetch-module");
const GOSSIP: (Traffic, &str) = (Traffic::Background, "gossip");

/// What a run cost, counted as it happens (`nebula-sim scale` reads it).
#[derive(Default)]
pub struct Counters {
    /// By cause and kind of message.
    pub traffic: BTreeMap<(Traffic, &'static str), Tally>,
    /// Executions performed by each node.
    pub executions: Vec<u64>,
    /// Every call key executed somewhere.
    pub executed_keys: HashSet<CallKey>,
}

impl Counters {
    fn count(&mut self, kind: (Traffic, &'static str), bytes: u64) {
        let tally = self.traffic.entry(kind).or_default();
        tally.messages += 1;
        tally.bytes += bytes;
    }

    /// Everything sent for `traffic`.
    pub fn total(&self, traffic: Traffic) -> Tally {
        Self::sum(self.traffic.iter().filter(|((of, _), _)| *of == traffic).map(|(_, tally)| tally))
    }

    /// Everything sent.
    pub fn all(&self) -> Tally {
        Self::sum(self.traffic.values())
    }

    fn sum<'a>(tallies: impl Iterator<Item = &'a Tally>) -> Tally {
        tallies.fold(Tally::default(), |sum, tally| Tally {
            messages: sum.messages + tally.messages,
            bytes: sum.bytes + tally.bytes,
        })
    }
}

/// A simulated node's identity: its index. It signs as `n0004`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SimPeer(pub u32);

impl fmt::Display for SimPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{:04}", self.0)
    }
}

fn peer(index: usize) -> SimPeer {
    SimPeer(index as u32)
}

pub fn node_name(index: usize) -> String {
    peer(index).to_string()
}

/// What survives a crash: the node's data directory.
#[derive(Default)]
struct Disk {
    modules: BTreeMap<ModuleId, u64>,
    names: BTreeMap<String, NameRecord>,
    results: HashMap<CallKey, Arc<ExecutionRecord>>,
}

struct SimNode {
    core: Core<SimPeer>,
    alive: bool,
    /// Answers wrong results and serves module slices that do not verify.
    liar: bool,
    /// Executes and talks slowly (an overloaded or throttled machine).
    slow: bool,
    /// Stays linked to every group during a partition.
    bridge: bool,
    disk: Disk,
    /// Client calls waiting here: index into the history.
    clients: HashMap<CallerId, usize>,
    /// Peers' requests waiting for this node's answer: who asked, their
    /// request id, and what they asked.
    inbound: HashMap<InboundId, (usize, RequestId, Request)>,
    /// When this node's core is next woken (the earliest wake scheduled).
    wake_at: Option<Time>,
    /// Results this node answered with but does not own (memory only).
    near: NearCache,
}

/// A node's near cache, bounded: the oldest entry goes first.
#[derive(Default)]
struct NearCache {
    records: HashMap<CallKey, Arc<ExecutionRecord>>,
    order: std::collections::VecDeque<CallKey>,
}

impl NearCache {
    const CAPACITY: usize = 10_000;

    fn insert(&mut self, key: CallKey, record: Arc<ExecutionRecord>) {
        if self.records.insert(key, record).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > Self::CAPACITY {
            if let Some(oldest) = self.order.pop_front() {
                self.records.remove(&oldest);
            }
        }
    }

    fn clear(&mut self) {
        self.records.clear();
        self.order.clear();
    }
}

impl SimNode {
    fn new(index: usize, config: &MeshConfig) -> Self {
        Self {
            core: Core::new(peer(index), config.clone(), Box::new(ModelledSignatures)),
            alive: true,
            liar: false,
            slow: false,
            bridge: false,
            disk: Disk::default(),
            clients: HashMap::new(),
            inbound: HashMap::new(),
            wake_at: None,
            near: NearCache::default(),
        }
    }
}

enum Pending {
    Deliver(usize, Event<SimPeer>),
    /// Gossip reaching `node` from a neighbour.
    Gossip {
        node: usize,
        message: MessageId,
    },
    /// The core of `node` asked to be woken about now.
    Wake(usize),
    Client(usize, CallRecord),
    Hook(usize),
}

/// A gossip message spreading through the graph.
struct Flood {
    origin: usize,
    gossip: Gossip,
    /// Encoded size, charged per hop.
    size: u64,
    /// Nodes it was sent to (each receives it once, as gossipsub's seen cache ensures).
    reached: HashSet<usize>,
    /// Deliveries scheduled and not yet judged; the flood is forgotten at 0.
    in_transit: usize,
}

/// A pending event, ordered by time, then by the order it was scheduled in.
struct Scheduled {
    at: Time,
    seq: u64,
    /// Boxed: events are large, and the heap moves entries as it sifts.
    pending: Box<Pending>,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub struct World {
    pub now: Time,
    pub rng: Pcg64Mcg,
    pub network: NetworkModel,
    pub executor: Executor,
    nodes: Vec<SimNode>,
    /// Partition group of each node; nodes talk only within a group.
    groups: Vec<u32>,
    /// The connection graph.
    neighbours: Vec<Vec<usize>>,
    /// Every node knows every reachable member (a membership view shared by
    /// its group) and dials owners on demand; see `use_membership_view`.
    membership_view: bool,
    queue: BinaryHeap<Reverse<Scheduled>>,
    next_seq: u64,
    next_id: u64,
    floods: HashMap<MessageId, Flood>,
    pub history: History,
    pub lies: Lies,
    pub counters: Counters,
}

impl World {
    pub fn new(
        nodes: usize,
        seed: u64,
        network: NetworkModel,
        executor: Executor,
        config: MeshConfig,
        degree: usize,
    ) -> World {
        let count = nodes;
        let mut world = World {
            now: 0,
            rng: Pcg64Mcg::seed_from_u64(seed),
            network,
            executor,
            nodes: (0..nodes).map(|i| SimNode::new(i, &config)).collect(),
            groups: vec![0; count],
            neighbours: vec![Vec::new(); count],
            membership_view: false,
            queue: BinaryHeap::new(),
            next_seq: 0,
            next_id: 0,
            floods: HashMap::new(),
            history: History::default(),
            lies: Lies::default(),
            counters: Counters { executions: vec![0; count], ..Counters::default() },
        };
        world.build_graph(degree);
        world
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn set_liar(&mut self, node: usize) {
        self.nodes[node].liar = true;
    }

    /// Node 0 lies (the liar is always node 0).
    pub fn has_liar(&self) -> bool {
        self.nodes[0].liar
    }

    pub fn set_slow(&mut self, node: usize, slow: bool) {
        self.nodes[node].slow = slow;
    }

    /// Makes `node` a bridge: linked across partition groups.
    pub fn set_bridge(&mut self, node: usize, bridge: bool) {
        let before = self.link_matrix();
        self.nodes[node].bridge = bridge;
        self.announce_link_changes(&before);
    }

    pub fn is_alive(&self, node: usize) -> bool {
        self.nodes[node].alive
    }

    pub fn group(&self, node: usize) -> u32 {
        self.groups[node]
    }

    /// A ring plus `degree - 2` random links per node (all links when small).
    fn build_graph(&mut self, degree: usize) {
        let n = self.len();
        let mut edges = std::collections::BTreeSet::new();
        for a in 0..n {
            if n <= degree + 1 {
                edges.extend((0..n).filter(|&b| b != a).map(|b| (a.min(b), a.max(b))));
                continue;
            }
            edges.insert((a.min((a + 1) % n), a.max((a + 1) % n)));
            for _ in 0..degree.saturating_sub(2) {
                let b = self.rng.random_range(0..n);
                if b != a {
                    edges.insert((a.min(b), a.max(b)));
                }
            }
        }
        for (a, b) in edges {
            self.neighbours[a].push(b);
            self.neighbours[b].push(a);
        }
    }

    /// Connects every link (the start of a run).
    pub fn connect_all(&mut self) {
        for a in 0..self.len() {
            for b in self.neighbours[a].clone() {
                self.deliver_now(a, Event::PeerConnected { peer: peer(b) });
            }
        }
    }

    /// Both alive, and no partition between them.
    fn same_side(&self, a: usize, b: usize) -> bool {
        self.nodes[a].alive
            && self.nodes[b].alive
            && (self.groups[a] == self.groups[b] || self.nodes[a].bridge || self.nodes[b].bridge)
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.same_side(a, b)
            // Sorted (built from an ordered edge set): on a full mesh of
            // thousands of nodes, a scan per message would dominate the run.
            && self.neighbours[a].binary_search(&b).is_ok()
    }

    /// Moves nodes into partition groups; links that break or form are
    /// reported to the cores as disconnections and connections.
    pub fn set_groups(&mut self, groups: Vec<u32>) {
        let before = self.link_matrix();
        self.groups = groups;
        self.announce_link_changes(&before);
        self.refresh_membership();
    }

    /// From now on, the cores take their members from a membership view (the
    /// alive nodes of their partition group: what a SWIM-like membership
    /// protocol converges to) instead of from their few links, and a
    /// request to a member that is not a neighbour is dialled on demand.
    /// This is how a mesh too big for everyone to connect to everyone works;
    /// the view of a group is one `Arc` shared by all its cores.
    pub fn use_membership_view(&mut self) {
        self.membership_view = true;
        self.refresh_membership();
    }

    fn refresh_membership(&mut self) {
        if !self.membership_view {
            return;
        }
        let mut by_group: BTreeMap<u32, Vec<SimPeer>> = BTreeMap::new();
        for node in (0..self.len()).filter(|&node| self.nodes[node].alive) {
            by_group.entry(self.groups[node]).or_default().push(peer(node));
        }
        let views: BTreeMap<u32, Arc<Members<SimPeer>>> =
            by_group.into_iter().map(|(group, peers)| (group, Arc::new(Members::of(peers)))).collect();
        for node in 0..self.len() {
            if !self.nodes[node].alive {
                continue;
            }
            let view = views[&self.groups[node]].clone();
            let actions = self.nodes[node].core.set_members(self.now, view);
            self.perform(node, actions);
        }
    }

    /// Whether `n` can reach `m`: over a link, or (with a membership view) by
    /// dialling it, if nothing cuts them apart.
    fn reachable(&self, n: usize, m: usize) -> bool {
        match self.membership_view {
            true => self.same_side(n, m),
            false => self.linked(n, m),
        }
    }

    pub fn crash(&mut self, node: usize) {
        let before = self.link_matrix();
        let sim = &mut self.nodes[node];
        sim.alive = false;
        sim.clients.clear();
        sim.inbound.clear();
        sim.near.clear();
        self.announce_link_changes(&before);
        self.refresh_membership();
        // Callers waiting on it get nothing back: record them as unanswered.
        self.history.abandon_node(node, self.now);
    }

    /// Restarts with memory lost and disk kept.
    pub fn restart(&mut self, node: usize, config: MeshConfig) {
        let before = self.link_matrix();
        let sim = &mut self.nodes[node];
        sim.core = Core::new(peer(node), config, Box::new(ModelledSignatures));
        for (module, size) in &sim.disk.modules {
            sim.core.restore_module(*module, *size);
        }
        for record in sim.disk.names.values() {
            sim.core.restore_name(record.clone());
        }
        sim.wake_at = None;
        sim.alive = true;
        self.announce_link_changes(&before);
        self.refresh_membership();
    }

    /// Whether each link is up, in the order of `neighbours`.
    fn link_matrix(&self) -> Vec<Vec<bool>> {
        (0..self.len()).map(|a| self.neighbours[a].iter().map(|&b| self.linked(a, b)).collect()).collect()
    }

    fn announce_link_changes(&mut self, before: &[Vec<bool>]) {
        for (a, was_up) in before.iter().enumerate() {
            if !self.nodes[a].alive {
                continue;
            }
            for (b, was) in self.neighbours[a].clone().into_iter().zip(was_up) {
                match (*was, self.linked(a, b)) {
                    (true, false) => self.deliver_now(a, Event::PeerDisconnected { peer: peer(b) }),
                    (false, true) => self.deliver_now(a, Event::PeerConnected { peer: peer(b) }),
                    _ => {}
                }
            }
        }
    }

    /// Stores a module on `node` as a deploy would.
    pub fn deploy(&mut self, node: usize, module: ModuleId, size: u64) {
        self.nodes[node].disk.modules.insert(module, size);
        self.deliver_now(node, Event::ModuleStored { module, size });
    }

    pub fn publish_name(&mut self, node: usize, name: &str, module: ModuleId) -> Option<NameRecord> {
        let sim = &mut self.nodes[node];
        let (record, actions) = sim.core.publish_name(name, &module.to_hex()).ok()?;
        self.perform(node, actions);
        Some(record)
    }

    pub fn schedule_call(&mut self, at: Time, record: CallRecord) {
        self.schedule(at.saturating_sub(self.now), Pending::Client(record.node, record));
    }

    /// Runs a scenario hook (a fault, a deploy) at `at`; `run_until` returns it.
    pub fn schedule_hook(&mut self, at: Time, hook: usize) {
        self.schedule(at.saturating_sub(self.now), Pending::Hook(hook));
    }

    /// Processes events up to `until`, or until a hook fires (returned).
    pub fn run_until(&mut self, until: Time) -> Option<usize> {
        while self.queue.peek().is_some_and(|Reverse(next)| next.at <= until) {
            let Some(Reverse(Scheduled { at, pending, .. })) = self.queue.pop() else { break };
            self.now = at;
            match *pending {
                Pending::Deliver(node, event) => self.deliver_now(node, event),
                Pending::Gossip { node, message } => self.deliver_gossip(node, message),
                Pending::Wake(node) => self.wake(node),
                Pending::Client(node, record) => self.start_client_call(node, record),
                Pending::Hook(hook) => return Some(hook),
            }
        }
        self.now = self.now.max(until);
        None
    }

    fn start_client_call(&mut self, node: usize, record: CallRecord) {
        let index = self.history.push(record);
        if !self.nodes[node].alive {
            self.history.fail(index, self.now, "node down");
            return;
        }
        let caller = self.next_id();
        self.nodes[node].clients.insert(caller, index);
        let call = &self.history.calls[index];
        // As the real node does: a result already held is answered without the core.
        let held = &self.nodes[node];
        let limits = nebula_protocol::Limits::default();
        let results = |key: &CallKey| held.near.records.get(key).or_else(|| held.disk.results.get(key)).cloned();
        let resolver = held.core.resolver();
        if let Some(answer) = resolver.answer_from_memory(&call.reference, call.input.as_bytes(), &limits, results) {
            self.reply(node, caller, Ok(answer));
            return;
        }
        let event = Event::CallRequested {
            caller,
            reference: call.reference.clone(),
            input: call.input.clone().into_bytes().into(),
            limits,
        };
        self.deliver_now(node, event);
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn schedule(&mut self, delay: Time, pending: Pending) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(Scheduled { at: self.now + delay, seq, pending: Box::new(pending) }));
    }

    fn latency(&mut self) -> Time {
        let (low, high) = self.network.latency_ms;
        self.rng.random_range(low..=high)
    }

    /// Latency of one message of `bytes` between `a` and `b`, slower if either is slow.
    fn link_latency(&mut self, a: usize, b: usize, bytes: u64) -> Time {
        let extra = if self.nodes[a].slow || self.nodes[b].slow { self.network.slow_link_ms } else { 0 };
        self.latency() + extra + bytes / self.network.bandwidth_bytes_per_ms
    }

    /// One message from `from` to `to`, delivered as `event`: dropped if the
    /// link is down or the message lost, maybe duplicated.
    fn send(&mut self, from: usize, to: usize, bytes: u64, kind: (Traffic, &'static str), event: Event<SimPeer>) {
        self.counters.count(kind, bytes);
        if !self.reachable(from, to) || self.rng.random_bool(self.network.loss) {
            return;
        }
        if self.rng.random_bool(self.network.duplicate) {
            let again = self.link_latency(from, to, bytes);
            self.schedule(again, Pending::Deliver(to, event.clone()));
        }
        let delay = self.link_latency(from, to, bytes);
        self.schedule(delay, Pending::Deliver(to, event));
    }

    fn deliver_now(&mut self, node: usize, event: Event<SimPeer>) {
        if !self.nodes[node].alive {
            return;
        }
        let actions = self.nodes[node].core.handle(self.now, event);
        self.perform(node, actions);
    }

    /// Wakes the core of `node` if its time has come, and keeps one wake
    /// scheduled for its next deadline.
    fn wake(&mut self, node: usize) {
        if self.nodes[node].wake_at.is_some_and(|at| at <= self.now) {
            self.nodes[node].wake_at = None;
        }
        let due = self.nodes[node].core.poll_timeout().is_some_and(|at| at <= self.now);
        if due {
            self.deliver_now(node, Event::Timeout);
        } else {
            self.arm_wake(node);
        }
    }

    fn arm_wake(&mut self, node: usize) {
        let sim = &self.nodes[node];
        let Some(at) = sim.core.poll_timeout().filter(|_| sim.alive) else { return };
        if sim.wake_at.is_some_and(|scheduled| scheduled <= at) {
            return;
        }
        self.nodes[node].wake_at = Some(at);
        self.schedule(at.saturating_sub(self.now), Pending::Wake(node));
    }

    fn perform(&mut self, node: usize, actions: Vec<Action<SimPeer>>) {
        for action in actions {
            self.perform_one(node, action);
        }
        self.arm_wake(node);
    }

    fn perform_one(&mut self, n: usize, action: Action<SimPeer>) {
        match action {
            Action::LookupResult { lookup, key } => {
                let node = &self.nodes[n];
                let found = node.near.records.get(&key).or_else(|| node.disk.results.get(&key)).cloned();
                self.deliver_now(n, Event::ResultLookedUp { lookup, found });
            }
            Action::Execute { flight, key, module, input, .. } => {
                self.counters.executions[n] += 1;
                self.counters.executed_keys.insert(key);
                let stdout = self.executor.execute(&module, &input);
                let mut outcome = Outcome::Success { stdout };
                if self.nodes[n].liar {
                    outcome = flipped(&outcome);
                }
                let (low, high) = self.network.exec_ms;
                let factor = if self.nodes[n].slow { self.network.slow_exec_factor } else { 1 };
                let cost = self.rng.random_range(low..=high) * factor;
                let mut record = ExecutionRecord {
                    module,
                    outcome,
                    fuel_used: 0,
                    timings: Timings { run_us: cost * 1000, ..Timings::default() },
                    executed_by: node_name(n),
                    signature: Vec::new(),
                };
                ModelledSignatures::sign(&key, &mut record);
                let event = Event::ExecutionFinished { flight, result: Ok(Arc::new(record)) };
                self.schedule(cost, Pending::Deliver(n, event));
            }
            Action::StoreResult { key, record } => {
                self.nodes[n].disk.results.insert(key, record);
            }
            Action::CacheResult { key, record } => self.nodes[n].near.insert(key, record),
            Action::PersistName(record) => {
                self.nodes[n].disk.names.insert(record.name.clone(), record);
            }
            Action::Reply { caller, reply } => self.reply(n, caller, reply),
            Action::Publish(gossip) => self.publish(n, gossip),
            Action::GossipVerdict { message, verdict } => self.judged(n, message, verdict),
            Action::Send { to, request, message } => self.request(n, to.0 as usize, request, message),
            Action::Respond { inbound, response } => self.respond(n, inbound, response),
            Action::ServeSlice { inbound, module, slice } => self.serve_slice(n, inbound, module, slice),
            // Every slice verified: the module is the one asked for.
            Action::StoreReceivedModule { module, size } => {
                self.nodes[n].disk.modules.insert(module, size);
                self.deliver_now(n, Event::ModuleStored { module, size });
            }
            // Slices are not kept: nothing to drop.
            Action::DiscardReceivedModule { .. } => {}
            Action::Penalise { misbehaviour, .. } => {
                self.history.penalties += 1;
                *self.history.penalties_by_kind.entry(misbehaviour.kind().to_owned()).or_default() += 1;
            }
        }
    }

    /// A request from `n` to `m`: it reaches `m`'s core as a peer's request.
    fn request(&mut self, n: usize, m: usize, request: RequestId, message: Request) {
        if !self.reachable(n, m) {
            // As libp2p does for a peer it cannot reach: the dial fails at once.
            let event = Event::RequestFailed { request, reason: "not connected".into() };
            self.schedule(1, Pending::Deliver(n, event));
            return;
        }
        let bytes = nebula_protocol::wire::encode(&message).len() as u64;
        let inbound = self.next_id();
        self.nodes[m].inbound.insert(inbound, (n, request, message.clone()));
        let kind = classify(&message);
        self.send(n, m, bytes, kind, Event::PeerRequest { from: peer(n), inbound, request: message });
    }

    /// `n` answers a peer's request; a liar tampers with what it answers.
    fn respond(&mut self, n: usize, inbound: InboundId, response: Response) {
        let Some((origin, request, asked)) = self.nodes[n].inbound.remove(&inbound) else { return };
        let response = match (&asked, self.nodes[n].liar) {
            (Request::FetchResult { key }, true) => self.tamper(n, response, *key),
            (Request::Call { reference, input, .. }, true) => match reference.parse::<ModuleId>() {
                Ok(module) => self.tamper(n, response, CallKey::new(&module, input)),
                Err(_) => response,
            },
            _ => response,
        };
        let bytes = nebula_protocol::wire::encode(&response).len() as u64;
        self.send(n, origin, bytes, classify(&asked), Event::PeerResponse { request, from: peer(n), response });
    }

    fn tamper(&mut self, liar: usize, response: Response, key: CallKey) -> Response {
        let other = node_name(self.neighbours[liar].first().copied().unwrap_or(liar));
        let replay = self.nodes[liar].disk.results.iter().find(|(held, _)| **held != key).map(|(_, r)| (**r).clone());
        self.lies.tamper(&mut self.rng, response, &key, &node_name(liar), &other, replay)
    }

    /// `n` serves a slice of a module it holds: it reaches the asker, where
    /// it verifies (a liar's does not).
    fn serve_slice(&mut self, n: usize, inbound: InboundId, module: ModuleId, slice: SliceIndex) {
        let Some((origin, request, _)) = self.nodes[n].inbound.remove(&inbound) else { return };
        let held = self.nodes[n].disk.modules.get(&module).copied();
        let index = |size: u64| match slice {
            SliceIndex::Last => slice_count(size) - 1,
            SliceIndex::At(index) => index,
        };
        let Some((size, index, range)) =
            held.and_then(|size| Some((size, index(size), slice_range(size, index(size))?)))
        else {
            let response = Response::Slice(None);
            let event = Event::PeerResponse { request, from: peer(n), response };
            return self.send(n, origin, 16, FETCH_MODULE, event);
        };
        let verified = !self.nodes[n].liar;
        if !verified {
            self.lies.bad_module_bytes += 1;
        }
        // The slice's bytes and the hash pairs on its path to the root.
        let proof = 64 * u64::from(64 - slice_count(size).leading_zeros());
        let bytes = range.end - range.start + proof;
        let event = Event::SliceReceived { request, from: peer(n), module, size, index, verified };
        self.send(n, origin, bytes, FETCH_MODULE, event);
    }

    /// A node publishes gossip: it spreads hop by hop from there.
    fn publish(&mut self, origin: usize, gossip: Gossip) {
        let message = self.next_id();
        let size = nebula_protocol::wire::encode(&gossip).len() as u64;
        self.floods.insert(message, Flood { origin, gossip, size, reached: HashSet::from([origin]), in_transit: 0 });
        self.pass_on(origin, message);
    }

    /// Sends `message` from `node` to each linked neighbour that has not had it.
    fn pass_on(&mut self, node: usize, message: MessageId) {
        let Some(size) = self.floods.get(&message).map(|flood| flood.size) else { return };
        for next in self.neighbours[node].clone() {
            let reached = self.floods.get(&message).is_some_and(|flood| flood.reached.contains(&next));
            if reached || !self.linked(node, next) {
                continue;
            }
            self.counters.count(GOSSIP, size);
            if self.rng.random_bool(self.network.loss) {
                continue;
            }
            let delay = self.link_latency(node, next, size);
            if let Some(flood) = self.floods.get_mut(&message) {
                flood.reached.insert(next);
                flood.in_transit += 1;
            }
            self.schedule(delay, Pending::Gossip { node: next, message });
        }
        self.forget_flood_if_done(message);
    }

    fn deliver_gossip(&mut self, node: usize, message: MessageId) {
        let Some(flood) = self.floods.get(&message) else { return };
        let event = Event::GossipReceived { from: peer(flood.origin), message, gossip: Ok(flood.gossip.clone()) };
        if !self.nodes[node].alive {
            return self.judged(node, message, Verdict::Ignore);
        }
        self.deliver_now(node, event);
    }

    /// The core of `node` judged `message`: accepted gossip goes on.
    fn judged(&mut self, node: usize, message: MessageId, verdict: Verdict) {
        if let Some(flood) = self.floods.get_mut(&message) {
            flood.in_transit = flood.in_transit.saturating_sub(1);
        }
        match verdict {
            Verdict::Accept => self.pass_on(node, message),
            Verdict::Reject | Verdict::Ignore => self.forget_flood_if_done(message),
        }
    }

    fn forget_flood_if_done(&mut self, message: MessageId) {
        if self.floods.get(&message).is_some_and(|flood| flood.in_transit == 0) {
            self.floods.remove(&message);
        }
    }

    fn reply(&mut self, n: usize, caller: CallerId, reply: nebula_protocol::Reply) {
        if let Some(index) = self.nodes[n].clients.remove(&caller) {
            match reply {
                Ok(answer) => self.history.answer(index, self.now, &answer),
                Err(error) => self.history.fail(index, self.now, error.kind()),
            }
        }
    }

    /// Results stored durably (owned), summed over the nodes, and how many distinct.
    pub fn stored_results(&self) -> (usize, usize) {
        let total = self.nodes.iter().map(|node| node.disk.results.len()).sum();
        let distinct: HashSet<&CallKey> = self.nodes.iter().flat_map(|node| node.disk.results.keys()).collect();
        (total, distinct.len())
    }

    /// True when every alive node holds every module of `modules` it owns
    /// (`MeshConfig::module_owners`).
    fn modules_on_their_owners(&self, modules: &[ModuleId]) -> bool {
        let alive = self.nodes.iter().filter(|node| node.alive);
        alive.flat_map(|node| modules.iter().map(move |module| (node, module))).all(|(node, module)| {
            !node.core.module_owners(module).contains(node.core.local()) || node.core.module_info(module).is_some()
        })
    }

    /// Modules held, summed over the alive nodes.
    pub fn modules_held(&self) -> usize {
        self.nodes.iter().filter(|node| node.alive).map(|node| node.core.modules().count()).sum()
    }

    /// True when every alive node holds the same names, and the same
    /// modules; or, with modules placed on owners, every module held
    /// anywhere is held by each of its owners.
    pub fn converged(&self) -> bool {
        let alive: Vec<&SimNode> = self.nodes.iter().filter(|node| node.alive).collect();
        let Some(first) = alive.first() else { return true };
        let modules = |node: &SimNode| node.core.modules().map(|(m, _)| *m).collect::<Vec<_>>();
        let names = |node: &SimNode| node.core.names().map(|r| (r.name.clone(), r.module)).collect::<Vec<_>>();
        if !alive.iter().all(|node| names(node) == names(first)) {
            return false;
        }
        match first.core.config().module_owners {
            0 => alive.iter().all(|node| modules(node) == modules(first)),
            _ => {
                let held: BTreeSet<ModuleId> = alive.iter().flat_map(|node| modules(node)).collect();
                self.modules_on_their_owners(&held.into_iter().collect::<Vec<_>>())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nebula_protocol::wire::SLICE_BYTES;

    use super::*;

    /// A module of many slices, held by a liar and later by an honest node,
    /// reaches every node whole. Each node that asks the liar is lied to once,
    /// on the first slice it asks for, catches it there, and asks it nothing more.
    #[test]
    fn a_module_of_many_slices_replicates_and_a_liar_is_caught_on_its_first_slice() {
        let mut world = World::new(3, 1, NetworkModel::default(), Executor::Modelled, MeshConfig::default(), 8);
        world.set_liar(0);
        world.connect_all();
        let module = ModuleId::of_bytes(b"big");
        let size = 20 * SLICE_BYTES + 3;
        world.deploy(0, module, size);
        world.run_until(1_000);
        assert_eq!(world.lies.bad_module_bytes, 2, "nodes 1 and 2 each asked the liar one slice");
        assert_eq!(world.history.penalties_by_kind.get("bad_module_bytes"), Some(&2));
        assert!(world.nodes[2].core.module_info(&module).is_none());

        world.deploy(1, module, size);
        world.run_until(60_000);
        assert_eq!(world.nodes[2].core.module_info(&module).map(|info| info.size), Some(size));
        assert_eq!(world.lies.bad_module_bytes, 2, "the liar was asked nothing more");
        let fetched = world.counters.traffic[&FETCH_MODULE];
        assert!(fetched.messages >= 2 * 21, "node 2 asked 21 slices and had them: {fetched:?}");
        assert!(fetched.bytes >= size, "{fetched:?}");
        assert!(world.converged());
    }
}
