//! The simulated world: N mesh cores (the very code a node runs), a network
//! with latency, loss and partitions, virtual time, and one seeded RNG, so a
//! run replays exactly from its seed.
//!
//! Nodes connect along a random graph of bounded degree (plus a ring, so it
//! is connected), as a node with a few dozen peers would; requests and
//! anti-entropy use those links only.
//!
//! Where this differs from the real node: gossip floods the graph, each hop
//! costing one link latency, and its route is fixed when it is published
//! (gossipsub forwards along a mesh of degree ~6 and would re-route around a
//! link that breaks mid-flight); like gossipsub, nothing is backfilled after a
//! heal. A link breaks and comes back the instant a fault says so, where a
//! real node needs a missed ping to notice a cut and a redial to heal it (see
//! the README's comparison with scripts/partition-experiment). Executions are
//! modelled (the output derived from module and input, the cost drawn from a
//! range) unless the run uses `--wasm`. Module bytes are not moved, only their
//! size is charged against bandwidth.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::Arc;

use nebula_protocol::core::FlightId;
use nebula_protocol::wire::Gossip;
use nebula_protocol::{
    Action, CallKey, Core, Event, ExecutionRecord, FetchFailure, Limits, MeshConfig, ModuleId, NameRecord, Outcome,
    RequestId, Timings,
};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::executor::Executor;
pub use crate::history::Time;
use crate::history::{CallRecord, History};

#[derive(Debug, Clone)]
pub struct NetworkModel {
    pub latency_ms: (u64, u64),
    pub loss: f64,
    /// Chance that a message arrives twice (each copy with its own latency,
    /// so copies and later messages can also arrive out of order).
    pub duplicate: f64,
    pub bandwidth_bytes_per_ms: u64,
    pub request_timeout_ms: u64,
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
            request_timeout_ms: 2_000,
            exec_ms: (1, 20),
            slow_exec_factor: 10,
            slow_link_ms: 100,
        }
    }
}

pub fn node_name(index: usize) -> String {
    format!("n{index:04}")
}

fn node_index(name: &str) -> Option<usize> {
    name.strip_prefix('n')?.parse().ok()
}

/// What survives a crash: the node's data directory.
#[derive(Default)]
struct Disk {
    modules: BTreeMap<ModuleId, u64>,
    names: BTreeMap<String, NameRecord>,
    results: HashMap<CallKey, Arc<ExecutionRecord>>,
}

struct SimNode {
    core: Core,
    alive: bool,
    /// Answers wrong results and serves wrong module bytes.
    liar: bool,
    /// Executes and talks slowly (an overloaded or throttled machine).
    slow: bool,
    /// Stays linked to every group during a partition.
    bridge: bool,
    disk: Disk,
    /// Client calls waiting here, by request id: index into the history.
    clients: HashMap<RequestId, usize>,
    /// Calls forwarded here by a peer: where to send the answer.
    forwarded: HashMap<RequestId, (usize, FlightId)>,
    /// Anti-entropy requests received, by token: who asked.
    sync_tokens: HashMap<u64, usize>,
}

enum Pending {
    Deliver(usize, Event),
    /// A forwarded call's answer is due here unless it already arrived.
    ForwardTimeout(usize, FlightId, u64),
    Tick(usize),
    /// A fetched module's bytes reach `node` (`size` None: the peer had none).
    ModuleArrives {
        node: usize,
        module: ModuleId,
        from: String,
        size: Option<u64>,
        lie: bool,
    },
    Client(usize, CallRecord),
    Hook(usize),
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
    queue: BinaryHeap<Reverse<Scheduled>>,
    next_seq: u64,
    next_request: RequestId,
    /// Forwards still waiting for an answer: (origin, flight) -> attempt id.
    open_forwards: HashMap<(usize, FlightId), u64>,
    pub history: History,
    pub messages: u64,
    pub bytes: u64,
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
        let nodes = (0..nodes)
            .map(|i| SimNode {
                core: Core::with_config(node_name(i), config.clone()),
                alive: true,
                liar: false,
                slow: false,
                bridge: false,
                disk: Disk::default(),
                clients: HashMap::new(),
                forwarded: HashMap::new(),
                sync_tokens: HashMap::new(),
            })
            .collect::<Vec<_>>();
        let count = nodes.len();
        let mut world = World {
            now: 0,
            rng: Pcg64Mcg::seed_from_u64(seed),
            network,
            executor,
            nodes,
            groups: vec![0; count],
            neighbours: vec![Vec::new(); count],
            queue: BinaryHeap::new(),
            next_seq: 0,
            next_request: 0,
            open_forwards: HashMap::new(),
            history: History::default(),
            messages: 0,
            bytes: 0,
        };
        world.build_graph(degree);
        for i in 0..count {
            let offset = world.rng.random_range(0..250);
            world.schedule(offset, Pending::Tick(i));
        }
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
                self.deliver_now(a, Event::PeerConnected { peer: node_name(b) });
            }
        }
    }

    fn linked(&self, a: usize, b: usize) -> bool {
        self.nodes[a].alive
            && self.nodes[b].alive
            && (self.groups[a] == self.groups[b] || self.nodes[a].bridge || self.nodes[b].bridge)
            && self.neighbours[a].contains(&b)
    }

    /// Moves nodes into partition groups; links that break or form are
    /// reported to the cores as disconnections and connections.
    pub fn set_groups(&mut self, groups: Vec<u32>) {
        let before = self.link_matrix();
        self.groups = groups;
        self.announce_link_changes(&before);
    }

    pub fn crash(&mut self, node: usize) {
        let before = self.link_matrix();
        self.nodes[node].alive = false;
        self.nodes[node].clients.clear();
        self.announce_link_changes(&before);
        // Callers waiting on it get nothing back: record them as unanswered.
        self.history.abandon_node(node, self.now);
    }

    /// Restarts with memory lost and disk kept.
    pub fn restart(&mut self, node: usize, config: MeshConfig) {
        let before = self.link_matrix();
        let sim = &mut self.nodes[node];
        sim.core = Core::with_config(node_name(node), config);
        for (module, size) in &sim.disk.modules {
            sim.core.handle(Event::ModuleStored { module: *module, size: *size });
        }
        for record in sim.disk.names.values() {
            sim.core.merge_name(record.clone());
        }
        sim.forwarded.clear();
        sim.sync_tokens.clear();
        sim.alive = true;
        self.announce_link_changes(&before);
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
                    (true, false) => self.deliver_now(a, Event::PeerDisconnected { peer: node_name(b) }),
                    (false, true) => self.deliver_now(a, Event::PeerConnected { peer: node_name(b) }),
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
                Pending::ForwardTimeout(node, flight, attempt) => {
                    if self.open_forwards.get(&(node, flight)) == Some(&attempt) {
                        self.open_forwards.remove(&(node, flight));
                        let from = String::new();
                        let answer = Err("timed out".to_owned());
                        self.deliver_now(node, Event::ForwardAnswered { flight, from, answer });
                    }
                }
                Pending::Tick(node) => {
                    if self.nodes[node].alive {
                        self.deliver_now(node, Event::Tick { now_ms: self.now });
                    }
                    self.schedule(250, Pending::Tick(node));
                }
                Pending::ModuleArrives { node, module, from, size, lie } => {
                    // The shell verifies bytes before storing them, as the node does.
                    let event = match (size, lie) {
                        (None, _) => Event::ModuleFetchFailed { module, from, failure: FetchFailure::NotFound },
                        (Some(_), true) => Event::ModuleFetchFailed { module, from, failure: FetchFailure::BadHash },
                        (Some(size), false) => {
                            self.nodes[node].disk.modules.insert(module, size);
                            Event::ModuleStored { module, size }
                        }
                    };
                    self.deliver_now(node, event);
                }
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
        let request = self.next_request;
        self.next_request += 1;
        self.nodes[node].clients.insert(request, index);
        let call = &self.history.calls[index];
        // As the real node does: a result already held is answered without a flight.
        let held = &self.nodes[node];
        let limits = Limits::default();
        let results = |key: &CallKey| held.disk.results.get(key).cloned();
        if let Some(answer) = held.core.answer_from_memory(&call.reference, call.input.as_bytes(), &limits, results) {
            self.reply(node, request, Ok(answer));
            return;
        }
        let event = Event::CallRequested {
            request,
            reference: call.reference.clone(),
            input: call.input.clone().into_bytes().into(),
            limits,
            hops: 0,
        };
        self.deliver_now(node, event);
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

    /// Latency of one message between `a` and `b`, slower if either is slow.
    fn link_latency(&mut self, a: usize, b: usize) -> Time {
        let extra = if self.nodes[a].slow || self.nodes[b].slow { self.network.slow_link_ms } else { 0 };
        self.latency() + extra
    }

    /// One message from `from` to `to`: dropped if the link is down or lost.
    fn send(&mut self, from: usize, to: usize, bytes: u64, event: Event) -> bool {
        self.messages += 1;
        self.bytes += bytes;
        if !self.linked(from, to) || self.rng.random_bool(self.network.loss) {
            return false;
        }
        let delay = self.link_latency(from, to) + bytes / self.network.bandwidth_bytes_per_ms;
        if self.rng.random_bool(self.network.duplicate) {
            let again = self.link_latency(from, to) + bytes / self.network.bandwidth_bytes_per_ms;
            self.schedule(again, Pending::Deliver(to, event.clone()));
        }
        self.schedule(delay, Pending::Deliver(to, event));
        true
    }

    fn deliver_now(&mut self, node: usize, event: Event) {
        if !self.nodes[node].alive {
            return;
        }
        let actions = self.nodes[node].core.handle(event);
        self.perform(node, actions);
    }

    fn perform(&mut self, node: usize, actions: Vec<Action>) {
        for action in actions {
            self.perform_one(node, action);
        }
    }

    fn perform_one(&mut self, n: usize, action: Action) {
        match action {
            Action::LookupResult { flight, key } => {
                let found = self.nodes[n].disk.results.get(&key).cloned();
                self.deliver_now(n, Event::ResultLookedUp { flight, found });
            }
            Action::Execute { flight, module, input, .. } => {
                let mut stdout = self.executor.execute(&module, &input);
                if self.nodes[n].liar {
                    stdout[0] ^= 0xff;
                }
                let record = ExecutionRecord {
                    module,
                    outcome: Outcome::Success { stdout },
                    fuel_used: 0,
                    timings: Timings::default(),
                    executed_by: node_name(n),
                    signature: Vec::new(),
                };
                let (low, high) = self.network.exec_ms;
                let factor = if self.nodes[n].slow { self.network.slow_exec_factor } else { 1 };
                let cost = self.rng.random_range(low..=high) * factor;
                self.schedule(cost, Pending::Deliver(n, Event::ExecutionFinished { flight, record: Arc::new(record) }));
            }
            Action::StoreResult { key, record } => {
                self.nodes[n].disk.results.insert(key, record);
            }
            Action::PersistName(record) => {
                self.nodes[n].disk.names.insert(record.name.clone(), record);
            }
            Action::Reply { request, reply } => self.reply(n, request, reply),
            Action::Publish(gossip) => self.flood(n, &gossip),
            Action::TellPeers(gossip) => {
                let size = gossip_size(&gossip);
                for m in self.neighbours[n].clone() {
                    self.send(n, m, size, Event::GossipReceived { from: node_name(n), gossip: gossip.clone() });
                }
            }
            Action::FetchModule { module, from } => {
                let Some(m) = node_index(&from) else { return };
                if !self.linked(n, m) {
                    let failure = FetchFailure::Unreachable;
                    let timeout = self.network.request_timeout_ms;
                    self.schedule(timeout, Pending::Deliver(n, Event::ModuleFetchFailed { module, from, failure }));
                    return;
                }
                let held = self.nodes[m].disk.modules.get(&module).copied();
                let size = held.unwrap_or(0);
                self.messages += 2;
                self.bytes += size;
                let delay = 2 * self.link_latency(n, m) + size / self.network.bandwidth_bytes_per_ms;
                let lie = self.nodes[m].liar;
                self.schedule(delay, Pending::ModuleArrives { node: n, module, from, size: held, lie });
            }
            Action::FetchResult { flight, key, from } => {
                let Some(m) = node_index(&from) else { return };
                let (found, delay) = match self.linked(n, m) {
                    true => (self.nodes[m].disk.results.get(&key).cloned(), 2 * self.link_latency(n, m)),
                    false => (None, self.network.request_timeout_ms),
                };
                self.messages += 2;
                self.schedule(delay, Pending::Deliver(n, Event::ResultFetched { flight, key, from, found }));
            }
            Action::ForwardCall { flight, to, module, input, limits, hops } => {
                let Some(m) = node_index(&to) else { return };
                let attempt = self.next_seq;
                self.open_forwards.insert((n, flight), attempt);
                self.schedule(self.network.request_timeout_ms, Pending::ForwardTimeout(n, flight, attempt));
                let request = self.next_request;
                self.next_request += 1;
                if self.linked(n, m) {
                    self.nodes[m].forwarded.insert(request, (n, flight));
                }
                let event = Event::CallRequested { request, reference: module.to_hex(), input, limits, hops };
                self.send(n, m, 64, event);
            }
            Action::SendSync { to, request } => {
                let Some(m) = node_index(&to) else { return };
                let token = self.next_request;
                self.next_request += 1;
                self.nodes[m].sync_tokens.insert(token, n);
                self.send(n, m, 96, Event::SyncRequested { from: node_name(n), token, request });
            }
            Action::RespondSync { token, response } => {
                if let Some(m) = self.nodes[n].sync_tokens.remove(&token) {
                    let size = 64 + 40 * response.results.len() as u64;
                    self.send(n, m, size, Event::SyncAnswered { from: node_name(n), response });
                }
            }
            Action::Penalise { .. } => self.history.penalties += 1,
        }
    }

    /// Floods gossip from `origin` over the links that are up, each node
    /// receiving it once, at the sum of the hop latencies along its route.
    fn flood(&mut self, origin: usize, gossip: &Gossip) {
        let size = gossip_size(gossip);
        let mut arrival: HashMap<usize, Time> = HashMap::from([(origin, 0)]);
        let mut frontier = std::collections::VecDeque::from([origin]);
        while let Some(node) = frontier.pop_front() {
            let at = arrival[&node];
            for next in self.neighbours[node].clone() {
                if arrival.contains_key(&next) || !self.linked(node, next) {
                    continue;
                }
                self.messages += 1;
                self.bytes += size;
                if self.rng.random_bool(self.network.loss) {
                    continue;
                }
                let when = at + self.link_latency(node, next);
                arrival.insert(next, when);
                frontier.push_back(next);
                let event = Event::GossipReceived { from: node_name(origin), gossip: gossip.clone() };
                if self.rng.random_bool(self.network.duplicate) {
                    let again = at + self.link_latency(node, next);
                    self.schedule(again, Pending::Deliver(next, event.clone()));
                }
                self.schedule(when, Pending::Deliver(next, event));
            }
        }
    }

    fn reply(&mut self, n: usize, request: RequestId, reply: nebula_protocol::Reply) {
        if let Some(index) = self.nodes[n].clients.remove(&request) {
            match reply {
                Ok(answer) => self.history.answer(index, self.now, &answer),
                Err(error) => self.history.fail(index, self.now, error.kind()),
            }
            return;
        }
        if let Some((origin, flight)) = self.nodes[n].forwarded.remove(&request) {
            let answer = reply.map(|answer| nebula_protocol::wire::RemoteAnswer {
                key: answer.key,
                cache: answer.cache,
                record: (*answer.record).clone(),
            });
            if self.linked(n, origin) && self.open_forwards.contains_key(&(origin, flight)) {
                self.open_forwards.remove(&(origin, flight));
                let event = Event::ForwardAnswered { flight, from: node_name(n), answer: Ok(answer) };
                self.send(n, origin, 64, event);
            }
        }
    }

    /// True when every alive node holds the same modules and names.
    pub fn converged(&self) -> bool {
        let alive: Vec<&SimNode> = self.nodes.iter().filter(|node| node.alive).collect();
        let Some(first) = alive.first() else { return true };
        let modules = |node: &SimNode| node.core.modules().map(|(m, _)| *m).collect::<Vec<_>>();
        let names = |node: &SimNode| node.core.names().map(|r| (r.name.clone(), r.module)).collect::<Vec<_>>();
        alive.iter().all(|node| modules(node) == modules(first) && names(node) == names(first))
    }
}

fn gossip_size(gossip: &Gossip) -> u64 {
    nebula_protocol::wire::encode(gossip).len() as u64
}
