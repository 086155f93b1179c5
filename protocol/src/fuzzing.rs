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

use crate::core::{Action, Core, Event, FetchFailure, FlightId, MeshConfig, Peer, RequestId};
use crate::ids::{CallKey, MIN_PREFIX_LEN, ModuleId, looks_like_hex};
use crate::limits::{LimitOverrides, Limits};
use crate::names::{MAX_NAME_LEN, NameError, NameRecord, validate_name};
use crate::outcome::{CallError, ExecutionRecord, Outcome};
use crate::wire::{
    self, Gossip, MAX_FRAME_BYTES, MAX_GOSSIP_BYTES, MAX_REQUEST_BYTES, RemoteAnswer, Request, Response,
};
use crate::wire::{SyncRequest, SyncResponse};

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

fn peer(index: u8) -> Peer {
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
        Gossip::ResultAvailable { key, module, size, inline } => {
            let module = pool(module);
            let key = CallKey::new(&module, pooled_input(key.as_bytes()[0]));
            let inline = inline.map(|record| ExecutionRecord { module, ..record });
            Gossip::ResultAvailable { key, module, size, inline }
        }
        load @ Gossip::Load { .. } => load,
    }
}

fn pool_sync(mut response: SyncResponse) -> SyncResponse {
    if let Some(modules) = &mut response.modules {
        modules.iter_mut().for_each(|(module, _)| *module = pool(*module));
    }
    if let Some(names) = response.names.take() {
        response.names = Some(names.into_iter().map(pool_name).collect());
    }
    for reference in &mut response.results {
        reference.module = pool(reference.module);
        reference.key = CallKey::new(&reference.module, pooled_input(reference.key.as_bytes()[0]));
    }
    response
}

#[derive(Debug, Arbitrary)]
struct Setup {
    default_config: bool,
    capacity: u8,
    replicate_budget_bytes: u64,
    fetch_for_call_max_bytes: u64,
    inline_result_max_bytes: u64,
    max_hops: u8,
    result_log_len: u8,
    remote_results_len: u8,
    verify_remote: u8,
}

impl Setup {
    fn config(&self) -> MeshConfig {
        match self.default_config {
            true => MeshConfig::default(),
            false => MeshConfig {
                capacity: u32::from(self.capacity % 4),
                replicate_budget_bytes: self.replicate_budget_bytes,
                fetch_for_call_max_bytes: self.fetch_for_call_max_bytes,
                inline_result_max_bytes: self.inline_result_max_bytes,
                max_hops: self.max_hops % 4,
                result_log_len: usize::from(self.result_log_len % 8),
                remote_results_len: usize::from(self.remote_results_len % 8),
                verify_remote: self.verify_remote % 3,
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

#[derive(Debug, Arbitrary)]
enum ModuleFetch {
    Stored,
    BadHash,
    NotFound,
    Unreachable,
    Invalid(String),
}

/// How the shell (or a peer, through it) answers an action.
#[derive(Debug, Arbitrary)]
struct Answer {
    record: Option<ExecutionRecord>,
    /// Make the record's executor one of the peers and its outcome one of a
    /// few, so that independent executors can agree (or disagree).
    pooled: Option<(u8, u8)>,
    forward: Result<Result<RemoteAnswer, CallError>, String>,
    fetch: ModuleFetch,
    size: u64,
}

/// What a hostile peer (and the node's own callers) can make happen.
#[derive(Debug, Arbitrary)]
enum Step {
    Connect(u8),
    Disconnect(u8),
    Tick(u64),
    Gossip {
        from: u8,
        gossip: Gossip,
        pooled: bool,
    },
    SyncRequested {
        from: u8,
        token: u64,
        request: SyncRequest,
    },
    SyncAnswered {
        from: u8,
        response: SyncResponse,
        pooled: bool,
    },
    Call {
        reference: Reference,
        input: Input,
        limits: Limits,
        hops: u8,
    },
    Deploy {
        module: u8,
        size: u64,
    },
    /// The shell caught a peer breaking the rules (a forged signature, say).
    Misbehaved {
        peer: u8,
        reason: String,
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
    Lookup(FlightId),
    Execute(FlightId, ModuleId),
    FetchModule(ModuleId, Peer),
    FetchResult(FlightId, CallKey, Peer),
    Forward(FlightId, Peer),
}

#[derive(Default)]
struct Harness {
    open: Vec<Open>,
    answered: Vec<Open>,
    requests: RequestId,
    replied: BTreeSet<RequestId>,
    /// Stale answers model a broken shell: liveness is not checked then.
    stale: bool,
}

impl Harness {
    fn handle(&mut self, core: &mut Core, event: Event) {
        for action in core.handle(event) {
            match action {
                Action::Reply { request, .. } => {
                    assert!(request < self.requests, "a reply to request {request}, which was never made");
                    assert!(self.replied.insert(request), "request {request} was answered twice");
                }
                Action::LookupResult { flight, .. } => self.open.push(Open::Lookup(flight)),
                Action::Execute { flight, module, .. } => self.open.push(Open::Execute(flight, module)),
                Action::FetchModule { module, from } => {
                    assert_ne!(from, LOCAL, "fetching {module} from itself");
                    self.open.push(Open::FetchModule(module, from));
                }
                Action::FetchResult { flight, key, from } => {
                    assert_ne!(from, LOCAL, "fetching a result from itself");
                    self.open.push(Open::FetchResult(flight, key, from));
                }
                Action::ForwardCall { flight, to, hops, .. } => {
                    assert_ne!(to, LOCAL, "forwarding a call to itself");
                    assert!(hops <= core.config().max_hops, "forwarded with {hops} hops");
                    self.open.push(Open::Forward(flight, to));
                }
                Action::SendSync { to, .. } => assert_ne!(to, LOCAL, "syncing with itself"),
                Action::StoreResult { .. }
                | Action::PersistName(_)
                | Action::Publish(_)
                | Action::TellPeers(_)
                | Action::RespondSync { .. }
                | Action::Penalise { .. } => {}
            }
        }
    }

    fn answer(&mut self, core: &mut Core, open: Open, mut answer: Answer) {
        if let (Some((executor, stdout)), Some(record)) = (answer.pooled, &mut answer.record) {
            record.executed_by = peer(executor);
            record.outcome = Outcome::Success { stdout: pooled_input(stdout).to_vec() };
        }
        if let (Some((executor, stdout)), Ok(Ok(remote))) = (answer.pooled, &mut answer.forward) {
            remote.record.executed_by = peer(executor);
            remote.record.outcome = Outcome::Success { stdout: pooled_input(stdout).to_vec() };
        }
        let event = match open {
            Open::Lookup(flight) => Event::ResultLookedUp { flight, found: answer.record.map(Arc::new) },
            Open::Execute(flight, module) => {
                let failed = || ExecutionRecord::rejected(module, CallError::OutOfFuel { limit: 0 });
                Event::ExecutionFinished { flight, record: Arc::new(answer.record.unwrap_or_else(failed)) }
            }
            Open::FetchModule(module, from) => {
                let failure = match answer.fetch {
                    ModuleFetch::Stored => return self.handle(core, Event::ModuleStored { module, size: answer.size }),
                    ModuleFetch::BadHash => FetchFailure::BadHash,
                    ModuleFetch::NotFound => FetchFailure::NotFound,
                    ModuleFetch::Unreachable => FetchFailure::Unreachable,
                    ModuleFetch::Invalid(reason) => FetchFailure::Invalid(reason),
                };
                Event::ModuleFetchFailed { module, from, failure }
            }
            Open::FetchResult(flight, key, from) => {
                Event::ResultFetched { flight, key, from, found: answer.record.map(Arc::new) }
            }
            Open::Forward(flight, from) => Event::ForwardAnswered { flight, from, answer: answer.forward },
        };
        self.handle(core, event);
    }

    fn step(&mut self, core: &mut Core, step: Step) {
        let event = match step {
            Step::Connect(index) => Event::PeerConnected { peer: peer(index) },
            Step::Disconnect(index) => Event::PeerDisconnected { peer: peer(index) },
            Step::Tick(now_ms) => Event::Tick { now_ms },
            Step::Gossip { from, gossip, pooled } => {
                let gossip = if pooled { pool_gossip(gossip) } else { gossip };
                Event::GossipReceived { from: peer(from), gossip }
            }
            Step::SyncRequested { from, token, request } => Event::SyncRequested { from: peer(from), token, request },
            Step::SyncAnswered { from, response, pooled } => {
                let response = if pooled { pool_sync(response) } else { response };
                // Only a peer answers this node's sync requests.
                Event::SyncAnswered { from: peer(from % 3), response }
            }
            Step::Call { reference, input, limits, hops } => {
                let input: Arc<[u8]> = match input {
                    Input::Pooled(index) => pooled_input(index).into(),
                    Input::Any(bytes) => bytes.into(),
                };
                let request = self.requests;
                self.requests += 1;
                // As the node does: a caller's limits never exceed its maximums.
                let limits = limits.clamped_to(&Limits::default());
                Event::CallRequested { request, reference: reference.text(), input, limits, hops }
            }
            Step::Deploy { module, size } => Event::ModuleStored { module: pooled_module(module), size },
            Step::Misbehaved { peer: index, reason } => Event::PeerMisbehaved { peer: peer(index), reason },
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
                let peers_part = |open: &&Open| !matches!(open, Open::Lookup(_) | Open::Execute(..));
                let candidates: Vec<&Open> = self.answered.iter().filter(peers_part).collect();
                if candidates.is_empty() {
                    return;
                }
                let open = candidates[usize::from(which) % candidates.len()].clone();
                self.stale = true;
                return self.answer(core, open, answer);
            }
        };
        self.handle(core, event);
    }

    /// Answers every open action with a failure until nothing is left.
    fn drain(&mut self, core: &mut Core) {
        for _ in 0..10_000 {
            let Some(open) = self.open.pop() else { return };
            let answer = Answer {
                record: None,
                pooled: None,
                forward: Err("unreachable".into()),
                fetch: ModuleFetch::Unreachable,
                size: 0,
            };
            self.answer(core, open, answer);
        }
        panic!("answering the open actions never ends: {} still open", self.open.len());
    }
}

/// A fresh core fed what peers (and callers) can make happen, in any order,
/// while the shell answers each action once. It must never panic, answer a
/// caller twice or talk to itself; once every action is answered (with
/// failures), every caller has had its reply and nothing is left running.
pub fn core_peer_messages(data: &[u8]) {
    let mut input = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut input) else { return };
    let mut core = Core::with_config(LOCAL, setup.config());
    let mut harness = Harness::default();
    for step in input.arbitrary_iter::<Step>().into_iter().flatten().take(256) {
        let Ok(step) = step else { break };
        harness.step(&mut core, step);
    }
    harness.drain(&mut core);
    check_names(&core);
    if harness.stale {
        return;
    }
    assert_eq!(harness.replied.len() as u64, harness.requests, "a caller was never answered");
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

    let mut core = Core::new(LOCAL);
    for module in &input.local {
        core.handle(Event::ModuleStored { module: pooled_module(*module), size: 1 });
    }
    core.handle(Event::PeerConnected { peer: peer(0) });
    for module in &input.remote {
        let gossip = Gossip::ModuleAvailable { module: pooled_module(*module), size: 1 };
        core.handle(Event::GossipReceived { from: peer(0), gossip });
    }
    let merged: Vec<String> = input.names.into_iter().filter(|r| core.merge_name(r.clone())).map(|r| r.name).collect();
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
fn check_names(core: &Core) {
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

fn check_resolve(core: &Core, reference: &str, known: &BTreeSet<ModuleId>) {
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
