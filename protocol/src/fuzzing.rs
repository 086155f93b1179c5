//! The checks behind the fuzz targets in `fuzz/`, kept here so that the
//! regression and property tests (`cargo test -p nebula-protocol`) replay
//! exactly what the fuzzer ran. Each check takes raw bytes, as libFuzzer
//! feeds them, and panics on a bug. Only built with the `arbitrary` feature.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use arbitrary::{Arbitrary, Unstructured};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::{
    Action, CallerId, Core, Event, FlightId, InboundId, LookupId, MeshConfig, MessageId, ModelledSignatures, RequestId,
};
use crate::ids::{CallKey, MIN_PREFIX_LEN, ModuleId, looks_like_hex};
use crate::limits::{LimitOverrides, Limits};
use crate::names::{MAX_NAME_LEN, NameError, NameRecord, validate_name};
use crate::outcome::{CacheStatus, CallError, ExecutionRecord, Outcome};
use crate::wire::{
    self, Gossip, MAX_FRAME_BYTES, MAX_GOSSIP_BYTES, MAX_REQUEST_BYTES, RemoteAnswer, Request, Response, SliceIndex,
};
use crate::wire::{StoredResult, SyncRequest, SyncResponse};

/// A fuzz target's check: panics on a bug.
pub type Check = fn(&[u8]);

/// Every fuzz target, named as its file in `fuzz/fuzz_targets/`.
pub const TARGETS: &[(&str, Check)] = &[
    ("wire_gossip", wire_gossip),
    ("wire_request", wire_request),
    ("wire_response", wire_response),
    ("wire_roundtrip", wire_roundtrip),
    ("stored_records", stored_records),
    ("core_peer_messages", core_peer_messages),
    ("http_input", http_input),
];

/// The check of the target called `name`, if there is one.
pub fn target(name: &str) -> Option<Check> {
    TARGETS.iter().find(|(target, _)| *target == name).map(|(_, check)| *check)
}

/// Raw bytes as a gossip message: never a panic; what decodes, round-trips.
pub fn wire_gossip(data: &[u8]) {
    decoded_round_trips::<Gossip>(data, MAX_GOSSIP_BYTES);
}

/// Raw bytes as a request-response request.
pub fn wire_request(data: &[u8]) {
    decoded_round_trips::<Request>(data, MAX_REQUEST_BYTES);
}

/// Raw bytes as a request-response response.
pub fn wire_response(data: &[u8]) {
    decoded_round_trips::<Response>(data, MAX_FRAME_BYTES);
}

fn decoded_round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8], max_len: usize) {
    let Ok(message) = wire::decode::<T>(data, max_len) else { return };
    let again = wire::encode(&message);
    // Encodings are canonical: never longer than any accepted form, so what
    // was accepted can be passed on within the same limit.
    assert!(again.len() <= data.len(), "re-encoding grew from {} to {} bytes", data.len(), again.len());
    assert_eq!(wire::decode::<T>(&again, max_len), Ok(message));
}

#[derive(Debug, Arbitrary)]
enum Message {
    Gossip(Gossip),
    Request(Request),
    Response(Response),
    SyncRequest(SyncRequest),
    SyncResponse(SyncResponse),
    Name(NameRecord),
    Record(ExecutionRecord),
}

/// A well-formed message of any kind: encode then decode gives it back, as a
/// message and as a frame; truncated or extended encodings are refused.
pub fn wire_roundtrip(data: &[u8]) {
    let Ok(message) = Message::arbitrary_take_rest(Unstructured::new(data)) else { return };
    match message {
        Message::Gossip(message) => encoded_round_trips(&message),
        Message::Request(message) => encoded_round_trips(&message),
        Message::Response(message) => encoded_round_trips(&message),
        Message::SyncRequest(message) => encoded_round_trips(&message),
        Message::SyncResponse(message) => encoded_round_trips(&message),
        Message::Name(message) => encoded_round_trips(&message),
        Message::Record(message) => encoded_round_trips(&message),
    }
}

fn encoded_round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(message: &T) {
    let bytes = wire::encode(message);
    assert_eq!(wire::decode::<T>(&bytes, usize::MAX).as_ref(), Ok(message));
    // postcard is self-delimiting: no strict prefix is a whole message.
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
        let cut = cut.min(bytes.len() - 1);
        assert!(wire::decode::<T>(&bytes[..cut], usize::MAX).is_err(), "a prefix of {cut} bytes decoded");
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(wire::decode::<T>(&longer, usize::MAX), Err(wire::DecodeError::TrailingBytes(1)));
    assert_eq!(
        wire::decode::<T>(&bytes, bytes.len() - 1),
        Err(wire::DecodeError::TooLarge(bytes.len(), bytes.len() - 1))
    );
    let frame = wire::encode_frame(message).expect("a fuzzed message is far below the frame limit");
    assert_eq!(wire::decode_frame::<T>(&frame, MAX_FRAME_BYTES).as_ref(), Ok(message));
    let stored = postcard::to_stdvec(message).expect("in-memory encoding cannot fail");
    assert_eq!(postcard::from_bytes::<T>(&stored).as_ref(), Ok(message));
}

/// Raw bytes as what the node keeps in its database (postcard of an
/// [`ExecutionRecord`] or a [`NameRecord`]) and as a whole request-response
/// frame (4-byte big-endian length, then a versioned message).
pub fn stored_records(data: &[u8]) {
    stored_round_trips::<ExecutionRecord>(data);
    stored_round_trips::<NameRecord>(data);
    framed_round_trips::<Request>(data, MAX_REQUEST_BYTES);
    framed_round_trips::<Response>(data, MAX_FRAME_BYTES);
}

fn stored_round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    let Ok(record) = postcard::from_bytes::<T>(data) else { return };
    let again = postcard::to_stdvec(&record).expect("in-memory encoding cannot fail");
    assert!(again.len() <= data.len(), "re-encoding grew from {} to {} bytes", data.len(), again.len());
    assert_eq!(postcard::from_bytes::<T>(&again).ok(), Some(record));
}

fn framed_round_trips<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8], max_len: usize) {
    let Ok(message) = wire::decode_frame::<T>(data, max_len) else { return };
    let header: [u8; 4] = data[..4].try_into().expect("a decoded frame has a header");
    assert_eq!(wire::frame_length(header, max_len), Ok(data.len() - 4));
    let again = wire::encode_frame(&message).expect("re-encoding is no longer than the frame");
    assert_eq!(wire::decode_frame::<T>(&again, max_len), Ok(message));
}

// --- The mesh core under a hostile peer --------------------------------------

const LOCAL: &str = "local";
/// A few peers (and the node itself) so that messages refer to the same ones.
const PEERS: [&str; 4] = ["peer-a", "peer-b", "peer-c", LOCAL];
const NAMES: [&str; 3] = ["fib", "add", "echo"];
const INPUTS: [&[u8]; 3] = [b"", b"1", b"20"];
const MODULES: u8 = 4;

type FuzzCore = Core<String>;

fn new_core(config: MeshConfig) -> FuzzCore {
    Core::new(LOCAL.to_owned(), config, Box::new(ModelledSignatures))
}

fn peer(index: u8) -> String {
    PEERS[usize::from(index) % PEERS.len()].to_owned()
}

fn pooled_module(index: u8) -> ModuleId {
    ModuleId::of_bytes(&[index % MODULES])
}

fn pooled_input(index: u8) -> &'static [u8] {
    INPUTS[usize::from(index) % INPUTS.len()]
}

/// Moves an arbitrary id into the small pool, so messages and calls meet.
fn pool(module: ModuleId) -> ModuleId {
    pooled_module(module.as_bytes()[0])
}

fn pool_name(mut record: NameRecord) -> NameRecord {
    record.name = NAMES[record.name.len() % NAMES.len()].to_owned();
    record.module = pool(record.module);
    record
}

fn pool_gossip(gossip: Gossip) -> Gossip {
    match gossip {
        Gossip::ModuleAvailable { module, size } => Gossip::ModuleAvailable { module: pool(module), size },
        Gossip::Name(record) => Gossip::Name(pool_name(record)),
        load @ Gossip::Load { .. } => load,
        member @ Gossip::Member { .. } => member,
    }
}

fn pool_sync(mut response: SyncResponse) -> SyncResponse {
    if let Some(modules) = &mut response.modules {
        modules.iter_mut().for_each(|(module, _)| *module = pool(*module));
    }
    if let Some(names) = response.names.take() {
        response.names = Some(names.into_iter().map(pool_name).collect());
    }
    response
}

fn pool_request(request: Request) -> Request {
    match request {
        Request::FetchSlice { module, slice } => Request::FetchSlice { module: pool(module), slice },
        Request::FetchResult { key } => Request::FetchResult {
            key: CallKey::new(&pooled_module(key.as_bytes()[0]), pooled_input(key.as_bytes()[1])),
        },
        Request::Call { reference, input, limits, hops } => {
            let module = pooled_module(reference.len() as u8);
            Request::Call { reference: module.to_hex(), input: pooled_input(input.len() as u8).to_vec(), limits, hops }
        }
        Request::Tell(gossip) => Request::Tell(pool_gossip(gossip)),
        Request::Store(batch) => Request::Store(
            batch
                .into_iter()
                .map(|stored| {
                    let module = pool(stored.record.module);
                    let key = CallKey::new(&module, pooled_input(stored.key.as_bytes()[0]));
                    StoredResult { key, record: signed(ExecutionRecord { module, ..stored.record }, &key) }
                })
                .collect(),
        ),
        sync @ Request::Sync(_) => sync,
    }
}

/// `record` signed by the executor it names, as an honest peer's would be.
fn signed(mut record: ExecutionRecord, key: &CallKey) -> ExecutionRecord {
    ModelledSignatures::sign(key, &mut record);
    record
}

#[derive(Debug, Arbitrary)]
struct Setup {
    default_config: bool,
    capacity: u8,
    replicate_budget_bytes: u64,
    fetch_for_call_max_bytes: u64,
    owners: u8,
    max_module_bytes: u64,
    max_hops: u8,
    recent_results_len: u8,
    verify_remote: u8,
    slices_in_flight: u8,
}

impl Setup {
    fn config(&self) -> MeshConfig {
        match self.default_config {
            true => MeshConfig::default(),
            false => MeshConfig {
                capacity: u32::from(self.capacity % 4),
                replicate_budget_bytes: self.replicate_budget_bytes,
                fetch_for_call_max_bytes: self.fetch_for_call_max_bytes,
                owners: self.owners % 5,
                max_module_bytes: self.max_module_bytes,
                max_hops: self.max_hops % 4,
                recent_results_len: usize::from(self.recent_results_len % 8),
                verify_remote: self.verify_remote % 3,
                slices_in_flight: u32::from(self.slices_in_flight % 5),
                ..MeshConfig::default()
            },
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Reference {
    Name(u8),
    Hash(u8),
    Prefix { module: u8, len: u8 },
    Any(String),
}

impl Reference {
    fn text(self) -> String {
        match self {
            Reference::Name(index) => NAMES[usize::from(index) % NAMES.len()].to_owned(),
            Reference::Hash(module) => pooled_module(module).to_hex(),
            Reference::Prefix { module, len } => pooled_module(module).to_hex()[..usize::from(len % 65)].to_owned(),
            Reference::Any(text) => text,
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Input {
    Pooled(u8),
    Any(Vec<u8>),
}

/// How a peer answers one of this node's requests.
#[derive(Debug, Arbitrary)]
enum PeerAnswer {
    /// The right kind of answer, with a record pooled and correctly signed
    /// by one of the peers (so that independent executors can agree or not).
    Proper { executor: u8, stdout: u8, cache: CacheStatus },
    /// Anything at all.
    Any(Response),
    /// A slice of the module asked for (as the shell verified it), the
    /// slice asked for unless `index` says which, of a module of `size` bytes.
    Slice { verified: bool, size: u64, index: Option<u64>, other_module: bool },
    /// The transport failed.
    Failed,
}

/// How the shell answers an action, and a peer the requests it carries.
#[derive(Debug, Arbitrary)]
struct Answer {
    record: Option<ExecutionRecord>,
    error: Option<CallError>,
    peer: PeerAnswer,
    /// For a module to store: stored, invalid, or not storable here.
    store: Option<bool>,
    size: u64,
}

/// What a hostile peer (and the node's own callers) can make happen.
#[derive(Debug, Arbitrary)]
enum Step {
    Connect(u8),
    Disconnect(u8),
    /// Time passes by this many milliseconds, and the core is woken if it asked.
    Advance(u16),
    Gossip {
        from: u8,
        gossip: Gossip,
        pooled: bool,
    },
    Malformed {
        from: u8,
    },
    Request {
        from: u8,
        request: Request,
        pooled: bool,
    },
    Call {
        reference: Reference,
        input: Input,
        limits: Limits,
    },
    Deploy {
        module: u8,
        size: u64,
    },
    /// The node's admin points a name at a module.
    Publish {
        name: u8,
        reference: Reference,
    },
    /// The shell answers one of the actions still open, as a correct node
    /// would: once; the parts that come from peers are arbitrary.
    Answer {
        which: u8,
        answer: Answer,
    },
    /// A late or repeated answer to an action already answered.
    Stale {
        which: u8,
        answer: Answer,
    },
}

/// An action of the core still waiting for the shell's answer.
#[derive(Debug, Clone)]
enum Open {
    Lookup(LookupId),
    Execute(FlightId, CallKey, ModuleId),
    Send { request: RequestId, to: String, message: Request },
    StoreModule(ModuleId),
}

#[derive(Default)]
struct Harness {
    now_ms: u64,
    open: Vec<Open>,
    answered: Vec<Open>,
    callers: CallerId,
    replied: BTreeSet<CallerId>,
    inbound: InboundId,
    responded: BTreeSet<InboundId>,
    messages: MessageId,
    judged: BTreeSet<MessageId>,
    /// Modules whose slices the shell keeps until the core says what to do with them.
    downloads: BTreeSet<ModuleId>,
}

impl Harness {
    fn handle(&mut self, core: &mut FuzzCore, event: Event<String>) {
        for action in core.handle(self.now_ms, event) {
            match action {
                Action::Reply { caller, .. } => {
                    assert!(caller < self.callers, "a reply to caller {caller}, who never called");
                    assert!(self.replied.insert(caller), "caller {caller} was answered twice");
                }
                Action::Respond { inbound, .. } | Action::ServeSlice { inbound, .. } => {
                    assert!(inbound < self.inbound, "a response to request {inbound}, which no peer sent");
                    assert!(self.responded.insert(inbound), "peer request {inbound} was answered twice");
                }
                Action::GossipVerdict { message, .. } => {
                    assert!(message < self.messages, "a verdict on message {message}, which never came");
                    assert!(self.judged.insert(message), "message {message} was judged twice");
                }
                Action::LookupResult { lookup, .. } => self.open.push(Open::Lookup(lookup)),
                Action::Execute { flight, key, module, .. } => self.open.push(Open::Execute(flight, key, module)),
                Action::Send { to, request, message } => {
                    assert_ne!(to, LOCAL, "sending {message:?} to itself");
                    if let Request::Call { hops, .. } = &message {
                        assert!(*hops <= core.config().max_hops.max(1), "forwarded with {hops} hops");
                    }
                    self.open.push(Open::Send { request, to, message });
                }
                Action::StoreReceivedModule { module, .. } => {
                    assert!(self.downloads.remove(&module), "storing {module}, whose slices the shell does not hold");
                    self.open.push(Open::StoreModule(module));
                }
                Action::DiscardReceivedModule { module } => {
                    self.downloads.remove(&module);
                }
                Action::StoreResult { .. }
                | Action::CacheResult { .. }
                | Action::PersistName(_)
                | Action::Publish(_)
                | Action::Penalise { .. } => {}
            }
        }
    }

    fn answer(&mut self, core: &mut FuzzCore, open: Open, answer: Answer) {
        let event = match open {
            Open::Lookup(lookup) => Event::ResultLookedUp { lookup, found: answer.record.map(Arc::new) },
            Open::Execute(flight, key, module) => {
                let result = match (answer.record, answer.error) {
                    (Some(record), _) => Ok(Arc::new(signed(ExecutionRecord { module, ..record }, &key))),
                    (None, Some(error)) => Err(error),
                    (None, None) => Err(CallError::Internal { message: "the run failed".into() }),
                };
                Event::ExecutionFinished { flight, result }
            }
            Open::StoreModule(module) => match answer.store {
                Some(true) => Event::ModuleStored { module, size: answer.size },
                Some(false) => Event::ModuleNotStored { module, reason: "not a module".into(), invalid: true },
                None => Event::ModuleNotStored { module, reason: "disk full".into(), invalid: false },
            },
            Open::Send { request, to, message } => match answer.peer {
                PeerAnswer::Failed => Event::RequestFailed { request, reason: "connection closed".into() },
                PeerAnswer::Slice { verified, size, index, other_module } => {
                    // The shell only takes a slice as one when it asked for one.
                    let Request::FetchSlice { module, slice } = &message else {
                        return self.handle(core, Event::RequestFailed { request, reason: "garbled".into() });
                    };
                    let module = if other_module { ModuleId::of_bytes(b"something else") } else { *module };
                    let index = index.unwrap_or(match slice {
                        SliceIndex::At(index) => *index,
                        SliceIndex::Last => wire::slice_count(size) - 1,
                    });
                    self.downloads.insert(module);
                    Event::SliceReceived { request, from: to, module, size, index, verified }
                }
                PeerAnswer::Any(Response::Sync(response)) => {
                    Event::PeerResponse { request, from: to, response: Response::Sync(pool_sync(response)) }
                }
                PeerAnswer::Any(response) => Event::PeerResponse { request, from: to, response },
                PeerAnswer::Proper { executor, stdout, cache } => {
                    let record = |module: ModuleId, key: &CallKey| {
                        let record = ExecutionRecord {
                            module,
                            outcome: Outcome::Success { stdout: pooled_input(stdout).to_vec() },
                            fuel_used: 1,
                            timings: Default::default(),
                            executed_by: peer(executor),
                            signature: Vec::new(),
                        };
                        signed(record, key)
                    };
                    let response = match &message {
                        Request::FetchResult { key } => {
                            let module = core.resolve(&key.to_hex()).unwrap_or_else(|_| pooled_module(stdout));
                            Response::Result(Some(record(module, key)))
                        }
                        Request::Call { reference, input, .. } => {
                            let module = reference.parse().unwrap_or_else(|_| pooled_module(stdout));
                            let key = CallKey::new(&module, input);
                            Response::Call(Ok(RemoteAnswer { key, cache, record: record(module, &key) }))
                        }
                        Request::FetchSlice { .. } => Response::Slice(None),
                        Request::Sync(_) => {
                            Response::Sync(SyncResponse { modules: None, names: None, load: Default::default() })
                        }
                        Request::Tell(_) => Response::Told,
                        Request::Store(_) => Response::Stored,
                    };
                    Event::PeerResponse { request, from: to, response }
                }
            },
        };
        self.handle(core, event);
    }

    fn step(&mut self, core: &mut FuzzCore, step: Step) {
        let event = match step {
            Step::Connect(index) => Event::PeerConnected { peer: peer(index) },
            Step::Disconnect(index) => Event::PeerDisconnected { peer: peer(index) },
            Step::Advance(ms) => {
                self.now_ms += u64::from(ms);
                if core.poll_timeout().is_none_or(|at| at > self.now_ms) {
                    return;
                }
                Event::Timeout
            }
            Step::Gossip { from, gossip, pooled } => {
                let gossip = if pooled { pool_gossip(gossip) } else { gossip };
                let message = self.messages;
                self.messages += 1;
                Event::GossipReceived { from: peer(from), message, gossip: Ok(gossip) }
            }
            Step::Malformed { from } => {
                let message = self.messages;
                self.messages += 1;
                Event::GossipReceived { from: peer(from), message, gossip: Err("garbage".into()) }
            }
            Step::Request { from, request, pooled } => {
                let request = if pooled { pool_request(request) } else { request };
                let inbound = self.inbound;
                self.inbound += 1;
                Event::PeerRequest { from: peer(from), inbound, request }
            }
            Step::Call { reference, input, limits } => {
                let input: Arc<[u8]> = match input {
                    Input::Pooled(index) => pooled_input(index).into(),
                    Input::Any(bytes) => bytes.into(),
                };
                let caller = self.callers;
                self.callers += 1;
                // As the node does: a caller's limits never exceed its maximums.
                let limits = limits.clamped_to(&Limits::default());
                Event::CallRequested { caller, reference: reference.text(), input, limits }
            }
            Step::Deploy { module, size } => Event::ModuleStored { module: pooled_module(module), size },
            Step::Publish { name, reference } => {
                let name = NAMES[usize::from(name) % NAMES.len()];
                let before = core.names().find(|record| record.name == name).cloned();
                if let Ok((record, _)) = core.publish_name(name, &reference.text()) {
                    let newer = before.is_none_or(|before| record.supersedes(&before));
                    assert!(newer, "a re-point of {name} does not supersede the record it replaces");
                }
                return;
            }
            Step::Answer { which, answer } => {
                if self.open.is_empty() {
                    return;
                }
                let open = self.open.swap_remove(usize::from(which) % self.open.len());
                self.answered.push(open.clone());
                return self.answer(core, open, answer);
            }
            Step::Stale { which, answer } => {
                // Peers may answer late or twice; the shell's own answers come once.
                let from_peers = |open: &&Open| matches!(open, Open::Send { .. });
                let candidates: Vec<&Open> = self.answered.iter().filter(from_peers).collect();
                if candidates.is_empty() {
                    return;
                }
                let open = candidates[usize::from(which) % candidates.len()].clone();
                return self.answer(core, open, answer);
            }
        };
        self.handle(core, event);
    }

    /// Answers every open action with a failure until nothing is left.
    fn drain(&mut self, core: &mut FuzzCore) {
        for _ in 0..10_000 {
            let Some(open) = self.open.pop() else { return };
            let answer = Answer { record: None, error: None, peer: PeerAnswer::Failed, store: None, size: 0 };
            self.answer(core, open, answer);
        }
        panic!("answering the open actions never ends: {} still open", self.open.len());
    }
}

/// A fresh core fed what peers (and callers) can make happen, in any order,
/// while the shell answers each action once (peers may answer late or
/// twice). It must never panic, answer a caller or a peer's request twice,
/// judge a message twice or talk to itself; once every action is answered
/// (with failures), every caller, every peer's request and every message
/// has had its answer, and nothing is left running.
pub fn core_peer_messages(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut input) else { return };
    let mut core = new_core(setup.config());
    let mut harness = Harness::default();
    for step in input.arbitrary_iter::<Step>().into_iter().flatten().take(256) {
        let Ok(step) = step else { break };
        harness.step(&mut core, step);
    }
    harness.drain(&mut core);
    check_names(&core);
    assert_eq!(harness.replied.len() as u64, harness.callers, "a caller was never answered");
    assert_eq!(harness.responded.len() as u64, harness.inbound, "a peer's request was never answered");
    assert_eq!(harness.judged.len() as u64, harness.messages, "a gossip message was never judged");
    assert!(harness.downloads.is_empty(), "slices of {:?} were never stored or dropped", harness.downloads);
    assert_eq!(core.flights_in_progress(), 0, "flights left after every action was answered");
    assert_eq!(core.executing(), 0, "executions counted after every one finished");
}

// --- Input parsing behind the HTTP API ---------------------------------------

#[derive(Debug, Arbitrary)]
struct HttpInput {
    text: String,
    /// Publish under one of the merged names rather than `text`.
    republish: Option<u8>,
    target: Reference,
    local: Vec<u8>,
    remote: Vec<u8>,
    names: Vec<NameRecord>,
    defaults: Limits,
    overrides: LimitOverrides,
    maximum: Limits,
}

/// What the node parses itself from a path, a query or a body: names,
/// module references (name, hash, prefix) and limit overrides.
pub fn http_input(data: &[u8]) {
    let Ok(input) = HttpInput::arbitrary_take_rest(Unstructured::new(data)) else { return };
    let text = input.text.as_str();
    check_text(text);

    let mut core = new_core(MeshConfig::default());
    for module in &input.local {
        core.restore_module(pooled_module(*module), 1);
    }
    core.handle(0, Event::PeerConnected { peer: peer(0) });
    for module in &input.remote {
        let gossip = Gossip::ModuleAvailable { module: pooled_module(*module), size: 1 };
        core.handle(0, Event::GossipReceived { from: peer(0), message: 0, gossip: Ok(gossip) });
    }
    let merged: Vec<String> =
        input.names.into_iter().filter(|r| core.restore_name(r.clone())).map(|r| r.name).collect();
    let text = match input.republish {
        Some(index) if !merged.is_empty() => merged[usize::from(index) % merged.len()].as_str(),
        _ => text,
    };
    let known: BTreeSet<ModuleId> = (input.local.iter().chain(&input.remote)).map(|m| pooled_module(*m)).collect();
    check_resolve(&core, text, &known);
    let target = input.target.text();
    check_resolve(&core, &target, &known);

    let before = core.names().find(|record| record.name == text).cloned();
    let expected = core.resolve(&target);
    match core.publish_name(text, &target) {
        Ok((record, _)) => {
            assert_eq!(validate_name(text), Ok(()));
            assert_eq!(expected, Ok(record.module));
            assert!(before.is_none_or(|before| record.supersedes(&before)), "a re-point lost to the old record");
            assert_eq!(core.resolve(text), Ok(record.module), "a published name resolves to its module");
        }
        Err(CallError::InvalidName { .. }) => {
            let exhausted = before.is_some_and(|before| before.version == u64::MAX);
            assert!(validate_name(text).is_err() || exhausted, "{text:?} refused");
        }
        Err(error) => assert_eq!(expected, Err(error)),
    }
    check_names(&core);

    check_limits(&input.defaults, &input.overrides, &input.maximum);
}

/// Whatever peers sent, every name held is one a user could have published.
fn check_names(core: &FuzzCore) {
    for record in core.names() {
        assert_eq!(validate_name(&record.name), Ok(()), "holding the name {:?}", record.name);
    }
}

fn check_text(text: &str) {
    if looks_like_hex(text) {
        assert!((1..=64).contains(&text.len()));
        assert!(text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
    match validate_name(text) {
        Ok(()) => {
            assert!((1..=MAX_NAME_LEN).contains(&text.len()));
            assert!(text.as_bytes()[0].is_ascii_alphanumeric());
            assert!(text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b)));
            assert!(!(looks_like_hex(text) && text.len() >= MIN_PREFIX_LEN), "a valid name shadows hash prefixes");
            assert!(text.parse::<ModuleId>().is_err(), "a valid name is also a full hash");
        }
        Err(NameError::Length) => assert!(text.is_empty() || text.len() > MAX_NAME_LEN),
        Err(_) => assert!((1..=MAX_NAME_LEN).contains(&text.len())),
    }
    if let Ok(module) = text.parse::<ModuleId>() {
        assert!(module.to_hex().eq_ignore_ascii_case(text));
    }
}

fn check_resolve(core: &FuzzCore, reference: &str, known: &BTreeSet<ModuleId>) {
    match core.resolve(reference) {
        Ok(module) => assert!(known.contains(&module), "resolved {reference:?} to a module no one holds"),
        Err(CallError::AmbiguousPrefix { prefix, matches }) => {
            assert!(matches.len() >= 2);
            assert!(matches.iter().all(|module| known.contains(module) && module.to_hex().starts_with(&prefix)));
        }
        Err(_) => {
            if let Ok(module) = reference.parse::<ModuleId>() {
                assert!(!known.contains(&module), "a held module's full hash did not resolve");
            }
        }
    }
}

fn check_limits(defaults: &Limits, overrides: &LimitOverrides, maximum: &Limits) {
    let limits = defaults.with_overrides(overrides, maximum);
    assert!(limits.fuel <= maximum.fuel);
    assert!(limits.deadline_ms <= maximum.deadline_ms);
    assert!(limits.memory_bytes <= maximum.memory_bytes);
    assert!(limits.input_bytes <= maximum.input_bytes);
    assert!(limits.output_bytes <= maximum.output_bytes);
    assert_eq!(limits.fuel, overrides.fuel.unwrap_or(defaults.fuel).min(maximum.fuel));
    assert_eq!(limits.deadline_ms, overrides.deadline_ms.unwrap_or(defaults.deadline_ms).min(maximum.deadline_ms));
    assert_eq!(limits.memory_bytes, overrides.memory_bytes.unwrap_or(defaults.memory_bytes).min(maximum.memory_bytes));
    assert_eq!(limits.output_bytes, overrides.output_bytes.unwrap_or(defaults.output_bytes).min(maximum.output_bytes));
    assert_eq!(limits.input_bytes, defaults.input_bytes.min(maximum.input_bytes), "the input limit is not a caller's");
    assert_eq!(limits.clamped_to(maximum), limits);
    assert_eq!(defaults.clamped_to(maximum).clamped_to(maximum), defaults.clamped_to(maximum));
}
