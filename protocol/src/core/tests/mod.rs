//! The core is sans-io, so every decision is tested here by feeding events
//! and reading actions. Peers are plain strings; signatures are modelled.

mod calls;
mod gossip;
mod owners;
mod peers;
mod placement;
mod time;
mod transfer;
mod verify;

use std::sync::Arc;

use super::*;
use crate::limits::Limits;
use crate::outcome::{CacheStatus, ExecutionRecord, Failure, Outcome, Timings};
use crate::wire::{Gossip, RemoteAnswer, Request, Response, SliceIndex};

type TestCore = Core<String>;

fn new_core(name: &str, config: MeshConfig) -> TestCore {
    Core::new(name.to_owned(), config, Box::new(ModelledSignatures))
}

fn core_with_module(bytes: &[u8]) -> (TestCore, ModuleId) {
    let mut core = new_core("node-a", no_owners());
    let module = ModuleId::of_bytes(bytes);
    step(&mut core, Event::ModuleStored { module, size: bytes.len() as u64 });
    (core, module)
}

/// Handles `event` at the core's current time.
fn step(core: &mut TestCore, event: Event<String>) -> Vec<Action<String>> {
    let now = core.now_ms;
    core.handle(now, event)
}

fn call(core: &mut TestCore, caller: CallerId, reference: &str, input: &[u8]) -> Vec<Action<String>> {
    call_with(core, caller, reference, input, Limits::default())
}

fn call_with(
    core: &mut TestCore,
    caller: CallerId,
    reference: &str,
    input: &[u8],
    limits: Limits,
) -> Vec<Action<String>> {
    step(core, Event::CallRequested { caller, reference: reference.into(), input: input.into(), limits })
}

/// A peer forwards a call here.
fn forwarded(
    core: &mut TestCore,
    from: &str,
    inbound: InboundId,
    module: ModuleId,
    input: &[u8],
    hops: u8,
) -> Vec<Action<String>> {
    let request = Request::Call { reference: module.to_hex(), input: input.to_vec(), limits: Limits::default(), hops };
    step(core, Event::PeerRequest { from: from.into(), inbound, request })
}

/// A record of `module` run on `input` by `executor`, correctly signed.
fn signed(module: ModuleId, input: &[u8], outcome: Outcome, executor: &str) -> ExecutionRecord {
    let mut record = ExecutionRecord {
        module,
        outcome,
        fuel_used: 7,
        timings: Timings::default(),
        executed_by: executor.into(),
        signature: vec![],
    };
    ModelledSignatures::sign(&CallKey::new(&module, input), &mut record);
    record
}

fn success(module: ModuleId, input: &[u8], stdout: &[u8], executor: &str) -> ExecutionRecord {
    signed(module, input, Outcome::Success { stdout: stdout.to_vec() }, executor)
}

/// A run here that took 5 ms: longer than asking an owner (see
/// `MeshConfig::run_here_below_us`), so later calls still go to their owners.
fn ran_here(module: ModuleId, input: &[u8], stdout: &[u8]) -> Result<Arc<ExecutionRecord>, CallError> {
    ran_here_in(module, input, stdout, 5_000)
}

fn ran_here_in(module: ModuleId, input: &[u8], stdout: &[u8], run_us: u64) -> Result<Arc<ExecutionRecord>, CallError> {
    let mut record = success(module, input, stdout, "node-a");
    record.timings.run_us = run_us;
    Ok(Arc::new(record))
}

fn lookup_of(actions: &[Action<String>]) -> LookupId {
    match actions {
        [Action::LookupResult { lookup, .. }] => *lookup,
        other => panic!("expected one lookup, got {other:?}"),
    }
}

/// Calls `reference` and answers the lookup with "not stored here": the flight's actions.
fn miss(core: &mut TestCore, caller: CallerId, reference: &str, input: &[u8]) -> Vec<Action<String>> {
    let lookup = lookup_of(&call(core, caller, reference, input));
    step(core, Event::ResultLookedUp { lookup, found: None })
}

fn flight_of(actions: &[Action<String>]) -> FlightId {
    actions
        .iter()
        .find_map(|action| match action {
            Action::Execute { flight, .. } => Some(*flight),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no execution in {actions:?}"))
}

fn replies(actions: &[Action<String>]) -> Vec<(CallerId, &Reply)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Reply { caller, reply } => Some((*caller, reply)),
            _ => None,
        })
        .collect()
}

fn responses(actions: &[Action<String>]) -> Vec<(InboundId, &Response)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Respond { inbound, response } => Some((*inbound, response)),
            _ => None,
        })
        .collect()
}

/// The requests sent: (to, request id, message).
fn sent(actions: &[Action<String>]) -> Vec<(&str, RequestId, &Request)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Send { to, request, message } => Some((to.as_str(), *request, message)),
            _ => None,
        })
        .collect()
}

/// The one request sent, to whom and what.
fn only_sent(actions: &[Action<String>]) -> (String, RequestId, Request) {
    match sent(actions).as_slice() {
        [(to, request, message)] => (to.to_string(), *request, (*message).clone()),
        other => panic!("expected one request, got {other:?} in {actions:?}"),
    }
}

fn penalties(actions: &[Action<String>]) -> Vec<(&str, &Misbehaviour)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Penalise { peer, misbehaviour } => Some((peer.as_str(), misbehaviour)),
            _ => None,
        })
        .collect()
}

fn respond(core: &mut TestCore, request: RequestId, from: &str, response: Response) -> Vec<Action<String>> {
    step(core, Event::PeerResponse { request, from: from.into(), response })
}

/// A slice of `module` from `from` answering `request`, of a module of
/// `claim.0` bytes, as slice `claim.1`, `verified` by the shell or not.
fn slice(
    core: &mut TestCore,
    request: RequestId,
    from: &str,
    module: ModuleId,
    claim: (u64, u64),
    verified: bool,
) -> Vec<Action<String>> {
    let (size, index) = claim;
    step(core, Event::SliceReceived { request, from: from.into(), module, size, index, verified })
}

fn connect(core: &mut TestCore, peer: &str) -> Vec<Action<String>> {
    step(core, Event::PeerConnected { peer: peer.into() })
}

/// Gossip from `from`, the verdict left out.
fn gossip(core: &mut TestCore, from: &str, gossip: Gossip) -> Vec<Action<String>> {
    let mut actions = step(core, Event::GossipReceived { from: from.into(), message: 0, gossip: Ok(gossip) });
    match actions.remove(0) {
        Action::GossipVerdict { .. } => actions,
        other => panic!("the verdict comes first, got {other:?}"),
    }
}

fn judged(core: &mut TestCore, from: &str, message: Result<Gossip, String>) -> (Verdict, Vec<Action<String>>) {
    let mut actions = step(core, Event::GossipReceived { from: from.into(), message: 9, gossip: message });
    match actions.remove(0) {
        Action::GossipVerdict { message: 9, verdict } => (verdict, actions),
        other => panic!("the verdict comes first, got {other:?}"),
    }
}

fn announce(core: &mut TestCore, from: &str, module: ModuleId, size: u64) -> Vec<Action<String>> {
    gossip(core, from, Gossip::ModuleAvailable { module, size })
}

/// The default settings, but results have no owners: for tests of holders and forwards.
fn no_owners() -> MeshConfig {
    MeshConfig { owners: 0, ..MeshConfig::default() }
}

/// A core that knows `module` only as held by peers b and c (connected and
/// synced), with no budget to replicate ahead of need.
fn core_without_module(module: ModuleId, size: u64, config: MeshConfig) -> TestCore {
    let mut core = new_core("a", MeshConfig { replicate_budget_bytes: 0, ..config });
    for peer in ["b", "c"] {
        connect(&mut core, peer);
        assert!(announce(&mut core, peer, module, size).is_empty());
    }
    core
}

/// An input whose call of `module` has `owner` as its best owner, as `core` sees its members.
fn input_owned_by(core: &TestCore, module: ModuleId, owner: &str) -> Vec<u8> {
    (0u32..)
        .map(|n| n.to_string().into_bytes())
        .find(|input| core.owners(&CallKey::new(&module, input)).first().map(String::as_str) == Some(owner))
        .expect("some input")
}

fn remote_answer(module: ModuleId, input: &[u8], stdout: &[u8], executor: &str) -> Response {
    let record = success(module, input, stdout, executor);
    Response::Call(Ok(RemoteAnswer { key: CallKey::new(&module, input), cache: CacheStatus::Miss, record }))
}

fn outcome_of(reply: &Reply) -> &Outcome {
    &reply.as_ref().expect("an answer").record.outcome
}
