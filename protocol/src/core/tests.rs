//! The core is sans-io, so every decision is tested here by feeding events
//! and reading actions.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::outcome::{Outcome, Timings};
use crate::wire::SyncResponse;

fn core_with_module(bytes: &[u8]) -> (Core, ModuleId) {
    let mut core = Core::new("node-a");
    let module = ModuleId::of_bytes(bytes);
    core.handle(Event::ModuleStored { module, size: bytes.len() as u64 });
    (core, module)
}

fn call(core: &mut Core, request: RequestId, reference: &str, input: &[u8]) -> Vec<Action> {
    call_with_hops(core, request, reference, input, 0)
}

fn call_with_hops(core: &mut Core, request: RequestId, reference: &str, input: &[u8], hops: u8) -> Vec<Action> {
    core.handle(Event::CallRequested {
        request,
        reference: reference.into(),
        input: input.into(),
        limits: Limits::default(),
        hops,
    })
}

fn record(module: ModuleId, outcome: Outcome) -> Arc<ExecutionRecord> {
    Arc::new(ExecutionRecord {
        module,
        outcome,
        fuel_used: 7,
        timings: Timings::default(),
        executed_by: "x".into(),
        signature: vec![],
    })
}

fn success(module: ModuleId, stdout: &[u8]) -> Arc<ExecutionRecord> {
    record(module, Outcome::Success { stdout: stdout.to_vec() })
}

fn lookup_flight(actions: &[Action]) -> FlightId {
    match actions {
        [Action::LookupResult { flight, .. }] => *flight,
        other => panic!("expected one lookup, got {other:?}"),
    }
}

fn replies(actions: &[Action]) -> Vec<(RequestId, &Reply)> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Reply { request, reply } => Some((*request, reply)),
            _ => None,
        })
        .collect()
}

fn connect(core: &mut Core, peer: &str) {
    core.handle(Event::PeerConnected { peer: peer.into() });
}

fn announce(core: &mut Core, from: &str, module: ModuleId, size: u64) -> Vec<Action> {
    core.handle(Event::GossipReceived { from: from.into(), gossip: Gossip::ModuleAvailable { module, size } })
}

/// A core that knows `module` only as held by peers b and c, with no budget
/// to replicate ahead of need.
fn core_without_module(module: ModuleId, size: u64, config: MeshConfig) -> Core {
    let mut core = Core::with_config("a", MeshConfig { replicate_budget_bytes: 0, ..config });
    for peer in ["b", "c"] {
        connect(&mut core, peer);
        assert!(announce(&mut core, peer, module, size).is_empty());
    }
    core
}

#[test]
fn miss_executes_stores_announces_and_replies() {
    let (mut core, module) = core_with_module(b"m");
    let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"10"));
    let actions = core.handle(Event::ResultLookedUp { flight, found: None });
    assert!(matches!(actions.as_slice(), [Action::Execute { module: m, .. }] if *m == module));
    assert_eq!(core.executing(), 1);
    let actions = core.handle(Event::ExecutionFinished { flight, record: success(module, b"55") });
    assert!(matches!(actions[0], Action::StoreResult { .. }));
    assert!(matches!(&actions[1], Action::Publish(Gossip::ResultAvailable { inline: Some(_), size: 2, .. })));
    let replies = replies(&actions);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].1.as_ref().unwrap().cache, CacheStatus::Miss);
    assert_eq!((core.flights_in_progress(), core.executing()), (0, 0));
}

#[test]
fn identical_concurrent_calls_execute_once() {
    let (mut core, module) = core_with_module(b"m");
    let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"10"));
    assert!(call(&mut core, 2, &module.to_hex(), b"10").is_empty(), "joined during lookup");
    let executes = core.handle(Event::ResultLookedUp { flight, found: None });
    assert_eq!(executes.len(), 1);
    assert!(call(&mut core, 3, &module.to_hex(), b"10").is_empty(), "joined during execution");
    let different_input = call(&mut core, 4, &module.to_hex(), b"11");
    assert_ne!(lookup_flight(&different_input), flight);

    let actions = core.handle(Event::ExecutionFinished { flight, record: success(module, &[1]) });
    let statuses: Vec<_> =
        replies(&actions).iter().map(|(request, reply)| (*request, reply.as_ref().unwrap().cache)).collect();
    assert_eq!(statuses, vec![(1, CacheStatus::Miss), (2, CacheStatus::Joined), (3, CacheStatus::Joined)]);
}

#[test]
fn calls_with_different_limits_do_not_share_a_flight() {
    let (mut core, module) = core_with_module(b"m");
    let first = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"x"));
    let small = Limits { fuel: 5, ..Limits::default() };
    let actions = core.handle(Event::CallRequested {
        request: 2,
        reference: module.to_hex(),
        input: b"x".as_slice().into(),
        limits: small,
        hops: 0,
    });
    assert_ne!(lookup_flight(&actions), first);
}

#[test]
fn cache_hit_replies_without_executing() {
    let (mut core, module) = core_with_module(b"m");
    let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"10"));
    call(&mut core, 2, &module.to_hex(), b"10");
    let actions = core.handle(Event::ResultLookedUp { flight, found: Some(success(module, b"55")) });
    assert_eq!(actions.len(), 2);
    assert!(replies(&actions).iter().all(|(_, reply)| reply.as_ref().unwrap().cache == CacheStatus::Hit));
}

#[test]
fn an_answer_from_memory_is_the_one_the_flight_path_gives() {
    let (mut core, module) = core_with_module(b"m");
    core.publish_name("fib", &module.to_hex()).unwrap();
    let stored = success(module, b"55");
    let key = CallKey::new(&module, b"10");
    let memory = |wanted: &CallKey| (*wanted == key).then(|| stored.clone());
    let limits = Limits::default();

    let shortcut = core.answer_from_memory("fib", b"10", &limits, memory).expect("held in memory");
    let flight = lookup_flight(&call(&mut core, 1, "fib", b"10"));
    let actions = core.handle(Event::ResultLookedUp { flight, found: memory(&key) });
    let via_flight = replies(&actions)[0].1.as_ref().unwrap().clone();
    assert_eq!((shortcut.key, shortcut.cache), (via_flight.key, via_flight.cache));
    assert!(Arc::ptr_eq(&shortcut.record, &via_flight.record));

    // Anything else takes the flight path, which also gives the errors.
    assert!(core.answer_from_memory("fib", b"11", &limits, memory).is_none(), "not held");
    assert!(core.answer_from_memory("nope", b"10", &limits, memory).is_none(), "unknown name");
    let tiny = Limits { input_bytes: 1, ..limits };
    assert!(core.answer_from_memory("fib", b"10", &tiny, memory).is_none(), "input over the limit");
    let big = vec![0; calls::MEMORY_SHORTCUT_MAX_INPUT + 1];
    assert!(core.answer_from_memory("fib", &big, &limits, |_| Some(stored.clone())).is_none(), "a big input");
}

#[test]
fn limit_failures_are_replied_but_neither_stored_nor_announced() {
    let (mut core, module) = core_with_module(b"m");
    let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b""));
    core.handle(Event::ResultLookedUp { flight, found: None });
    let out_of_fuel = record(module, Outcome::Failed(CallError::OutOfFuel { limit: 1 }));
    let actions = core.handle(Event::ExecutionFinished { flight, record: out_of_fuel });
    assert!(!actions.iter().any(|action| matches!(action, Action::StoreResult { .. } | Action::Publish(_))));
    assert_eq!(replies(&actions).len(), 1);
}

#[test]
fn oversized_input_is_rejected_before_lookup() {
    let (mut core, module) = core_with_module(b"m");
    let limits = Limits { input_bytes: 2, ..Limits::default() };
    let actions = core.handle(Event::CallRequested {
        request: 9,
        reference: module.to_hex(),
        input: b"abc".as_slice().into(),
        limits,
        hops: 0,
    });
    assert!(matches!(replies(&actions)[0].1, Err(CallError::InputTooLarge { size: 3, limit_bytes: 2 })));
}

#[test]
fn resolves_names_hashes_and_prefixes() {
    let (mut core, module) = core_with_module(b"m");
    let (_, other) = core_with_module(b"n");
    core.handle(Event::ModuleStored { module: other, size: 1 });
    let (record, actions) = core.publish_name("fib", &module.to_hex()).unwrap();
    assert_eq!(record.version, 1);
    assert!(matches!(actions.as_slice(), [Action::PersistName(_), Action::Publish(Gossip::Name(_))]));
    assert_eq!(core.resolve("fib"), Ok(module));
    assert_eq!(core.resolve(&module.to_hex()), Ok(module));
    assert_eq!(core.resolve(&module.to_hex()[..8]), Ok(module));
    assert!(matches!(core.resolve("nope"), Err(CallError::NameNotFound { .. })));
    assert!(matches!(core.resolve(&"0".repeat(64)), Err(CallError::ModuleNotFound { .. })));
    assert!(matches!(core.resolve("Not A Name"), Err(CallError::ModuleNotFound { .. })));
    let (second, _) = core.publish_name("fib", &other.to_hex()).unwrap();
    assert_eq!(second.version, 2);
    assert_eq!(core.resolve("fib"), Ok(other));
}

#[test]
fn ambiguous_prefix_lists_the_candidates() {
    let mut core = Core::new("a");
    let mut seen: HashMap<String, ModuleId> = HashMap::new();
    let (first, second) = (0u32..)
        .find_map(|i| {
            let module = ModuleId::of_bytes(&i.to_le_bytes());
            seen.insert(module.to_hex()[..4].to_owned(), module).map(|previous| (previous, module))
        })
        .unwrap();
    for module in [first, second] {
        core.handle(Event::ModuleStored { module, size: 1 });
    }
    let prefix = &first.to_hex()[..4];
    assert!(matches!(core.resolve(prefix), Err(CallError::AmbiguousPrefix { matches, .. }) if matches.len() == 2));
    assert_eq!(core.resolve(&first.to_hex()[..20]), Ok(first));
}

#[test]
fn merge_keeps_the_newest_name_record() {
    let mut core = Core::new("a");
    let old = NameRecord { name: "f".into(), module: ModuleId::of_bytes(b"1"), version: 3, publisher: "x".into() };
    let new = NameRecord { version: 4, module: ModuleId::of_bytes(b"2"), ..old.clone() };
    assert!(core.merge_name(new.clone()));
    assert!(!core.merge_name(old.clone()));
    assert_eq!(core.names().next(), Some(&new));
    // Through gossip: an older record changes nothing, a newer one is persisted.
    let gossip = |record| Event::GossipReceived { from: "b".into(), gossip: Gossip::Name(record) };
    assert!(core.handle(gossip(old)).is_empty());
    let newer = NameRecord { version: 5, ..new };
    // It is also passed on to the neighbours, once.
    assert!(matches!(
        core.handle(gossip(newer.clone())).as_slice(),
        [Action::PersistName(r), Action::TellPeers(Gossip::Name(told))] if r.version == 5 && told.version == 5
    ));
    assert!(core.handle(gossip(newer)).is_empty(), "a record already held is not passed on again");
}

#[test]
fn announced_modules_are_replicated_within_the_budget() {
    let mut core = Core::with_config("a", MeshConfig { replicate_budget_bytes: 150, ..MeshConfig::default() });
    connect(&mut core, "b");
    let small = ModuleId::of_bytes(b"small");
    let big = ModuleId::of_bytes(b"big");
    let actions = announce(&mut core, "b", small, 100);
    assert!(matches!(actions.as_slice(), [Action::FetchModule { from, .. }] if from == "b"));
    assert!(announce(&mut core, "b", big, 100).is_empty(), "over the budget: fetched on demand only");
    assert!(announce(&mut core, "b", small, 100).is_empty(), "already being fetched");
    let actions = core.handle(Event::ModuleStored { module: small, size: 100 });
    assert!(
        matches!(actions.as_slice(), [Action::TellPeers(Gossip::ModuleAvailable { .. })]),
        "a replica tells its neighbours only"
    );
    let deployed = core.handle(Event::ModuleStored { module: ModuleId::of_bytes(b"new"), size: 1 });
    assert!(
        matches!(deployed.as_slice(), [Action::Publish(Gossip::ModuleAvailable { .. })]),
        "a deploy is news for all"
    );
    assert_eq!(core.resolve(&big.to_hex()), Ok(big), "a module held only by peers still resolves");
}

#[test]
fn a_lying_peer_is_penalised_and_the_module_fetched_elsewhere() {
    let module = ModuleId::of_bytes(b"m");
    let mut core = Core::new("a");
    connect(&mut core, "b");
    connect(&mut core, "c");
    let first = announce(&mut core, "b", module, 10);
    assert!(matches!(first.as_slice(), [Action::FetchModule { from, .. }] if from == "b"));
    announce(&mut core, "c", module, 10);
    let actions = core.handle(Event::ModuleFetchFailed { module, from: "b".into(), failure: FetchFailure::BadHash });
    assert!(matches!(&actions[0], Action::Penalise { peer, .. } if peer == "b"));
    assert!(matches!(&actions[1], Action::FetchModule { from, .. } if from == "c"));
    assert_eq!(core.peers().find(|(peer, _)| *peer == "b").unwrap().1.penalty, 1);
}

#[test]
fn a_call_for_a_module_held_elsewhere_fetches_it_then_runs_here() {
    let module = ModuleId::of_bytes(b"m");
    let mut core = core_without_module(module, 10, MeshConfig::default());
    let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"in"));
    let fetch = core.handle(Event::ResultLookedUp { flight, found: None });
    assert!(matches!(fetch.as_slice(), [Action::FetchModule { from, .. }] if from == "b"));
    // A second call for the same module joins the fetch.
    let second = lookup_flight(&call(&mut core, 2, &module.to_hex(), b"other"));
    assert!(core.handle(Event::ResultLookedUp { flight: second, found: None }).is_empty());
    let actions = core.handle(Event::ModuleStored { module, size: 10 });
    let executes = actions.iter().filter(|a| matches!(a, Action::Execute { .. })).count();
    assert_eq!(executes, 2);
}

#[test]
fn a_big_module_is_not_fetched_for_a_call_but_the_call_is_forwarded() {
    let module = ModuleId::of_bytes(b"m");
    let config = MeshConfig { fetch_for_call_max_bytes: 5, ..MeshConfig::default() };
    let mut core = core_without_module(module, 10, config);
    let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"in"));
    let actions = core.handle(Event::ResultLookedUp { flight, found: None });
    assert!(matches!(actions.as_slice(), [Action::ForwardCall { to, hops: 1, .. }] if to == "b"));
    // b vanishes: the call is retried at c, and c's answer is cached here.
    let failed = core.handle(Event::ForwardAnswered { flight, from: "b".into(), answer: Err("timeout".into()) });
    assert!(matches!(failed.as_slice(), [Action::ForwardCall { to, .. }] if to == "c"));
    let answer = RemoteAnswer {
        key: CallKey::new(&module, b"in"),
        cache: CacheStatus::Miss,
        record: (*success(module, b"ok")).clone(),
    };
    let done = core.handle(Event::ForwardAnswered { flight, from: "c".into(), answer: Ok(Ok(answer)) });
    assert!(matches!(done[0], Action::StoreResult { .. }));
    assert_eq!(replies(&done)[0].1.as_ref().unwrap().record.outcome, Outcome::Success { stdout: b"ok".to_vec() });
}

#[test]
fn when_every_holder_fails_the_caller_gets_a_clear_error() {
    let module = ModuleId::of_bytes(b"m");
    let mut core = core_without_module(module, 10, MeshConfig::default());
    let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"in"));
    core.handle(Event::ResultLookedUp { flight, found: None });
    let next = core.handle(Event::ModuleFetchFailed { module, from: "b".into(), failure: FetchFailure::Unreachable });
    assert!(matches!(next.as_slice(), [Action::FetchModule { from, .. }] if from == "c"));
    let end = core.handle(Event::ModuleFetchFailed { module, from: "c".into(), failure: FetchFailure::Unreachable });
    match replies(&end).as_slice() {
        [(1, Err(CallError::ModuleNotFound { reference }))] => {
            assert!(reference.contains("unreachable"), "{reference}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(core.flights_in_progress(), 0);
}

#[test]
fn a_saturated_node_forwards_to_a_peer_with_spare_capacity() {
    let (mut core, module) = core_with_module(b"m");
    let config_capacity = core.config().capacity;
    connect(&mut core, "b");
    announce(&mut core, "b", module, 1);
    core.handle(Event::GossipReceived { from: "b".into(), gossip: Gossip::Load { executing: 0, capacity: 4 } });
    for i in 0..config_capacity {
        let flight = lookup_flight(&call(&mut core, i as u64, &module.to_hex(), &i.to_le_bytes()));
        assert!(matches!(
            core.handle(Event::ResultLookedUp { flight, found: None }).as_slice(),
            [Action::Execute { .. }]
        ));
    }
    let flight = lookup_flight(&call(&mut core, 99, &module.to_hex(), b"one more"));
    let actions = core.handle(Event::ResultLookedUp { flight, found: None });
    assert!(matches!(actions.as_slice(), [Action::ForwardCall { to, .. }] if to == "b"));
    // A call that was already forwarded as far as allowed runs here instead.
    let max_hops = core.config().max_hops;
    let flight = lookup_flight(&call_with_hops(&mut core, 100, &module.to_hex(), b"far", max_hops));
    assert!(matches!(core.handle(Event::ResultLookedUp { flight, found: None }).as_slice(), [Action::Execute { .. }]));
}

#[test]
fn results_announced_by_peers_are_cached_or_fetched() {
    let (mut core, module) = core_with_module(b"m");
    connect(&mut core, "b");
    let key = CallKey::new(&module, b"in");
    let inline = Gossip::ResultAvailable { key, module, size: 2, inline: Some((*success(module, b"55")).clone()) };
    let actions = core.handle(Event::GossipReceived { from: "b".into(), gossip: inline });
    assert!(matches!(actions.as_slice(), [Action::StoreResult { key: k, .. }] if *k == key));

    let big_key = CallKey::new(&module, b"big");
    let by_reference = Gossip::ResultAvailable { key: big_key, module, size: 1 << 30, inline: None };
    assert!(core.handle(Event::GossipReceived { from: "b".into(), gossip: by_reference }).is_empty());
    let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"big"));
    let fetch = core.handle(Event::ResultLookedUp { flight, found: None });
    assert!(matches!(fetch.as_slice(), [Action::FetchResult { from, .. }] if from == "b"));
    // The peer no longer has it: compute it here instead.
    let fallback =
        core.handle(Event::ResultFetched { flight, key: CallKey::new(&module, b"big"), from: "b".into(), found: None });
    assert!(matches!(fallback.as_slice(), [Action::Execute { .. }]));
}

#[test]
fn anti_entropy_sends_only_what_differs() {
    let (mut a, module) = core_with_module(b"m");
    a.publish_name("f", &module.to_hex()).unwrap();
    // a computed two results.
    for input in [b"1", b"2"] {
        let flight = lookup_flight(&call(&mut a, 1, &module.to_hex(), input));
        a.handle(Event::ResultLookedUp { flight, found: None });
        a.handle(Event::ExecutionFinished { flight, record: success(module, b"x") });
    }
    let mut b = Core::new("b");
    let request = match b.handle(Event::PeerConnected { peer: "node-a".into() }).as_slice() {
        [Action::SendSync { request, .. }] => request.clone(),
        other => panic!("{other:?}"),
    };
    let response = match a.handle(Event::SyncRequested { from: "b".into(), token: 7, request }).as_slice() {
        [Action::RespondSync { token: 7, response }] => response.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(response.modules.as_ref().map(Vec::len), Some(1));
    assert_eq!(response.names.as_ref().map(Vec::len), Some(1));
    assert_eq!((response.results.len(), response.results_next, response.more), (2, 2, false));
    let actions = b.handle(Event::SyncAnswered { from: "node-a".into(), response });
    assert!(actions.iter().any(|a| matches!(a, Action::FetchModule { .. })));
    assert!(actions.iter().any(|a| matches!(a, Action::PersistName(_))));
    // A name learned by anti-entropy goes on to b's other neighbours at once
    // (after a heal, most nodes have no link across and would otherwise wait
    // for their next periodic sync).
    assert!(actions.iter().any(|a| matches!(a, Action::TellPeers(Gossip::Name(record)) if record.name == "f")));
    b.handle(Event::ModuleStored { module, size: 1 });

    // Now in step: the next round carries nothing.
    let request = b.sync_request(&"node-a".to_string());
    assert_eq!(request.results_since, 2);
    let response = match a.handle(Event::SyncRequested { from: "b".into(), token: 8, request }).as_slice() {
        [Action::RespondSync { response, .. }] => response.clone(),
        other => panic!("{other:?}"),
    };
    let load = crate::wire::Load { executing: 0, capacity: a.config().capacity };
    assert_eq!(
        response,
        SyncResponse { modules: None, names: None, results: vec![], results_next: 2, more: false, load }
    );
}

#[test]
fn ticks_schedule_anti_entropy_and_load_announcements() {
    let mut core = Core::with_config("a", MeshConfig { sync_interval_ms: 1000, ..MeshConfig::default() });
    connect(&mut core, "b");
    let first = core.handle(Event::Tick { now_ms: 10 });
    assert!(matches!(first.as_slice(), [Action::TellPeers(Gossip::Load { .. })]), "sync not yet due: {first:?}");
    assert!(core.handle(Event::Tick { now_ms: 500 }).is_empty(), "load unchanged");
    let due = core.handle(Event::Tick { now_ms: 1000 });
    assert!(matches!(due.as_slice(), [Action::SendSync { to, .. }] if to == "b"));
    core.handle(Event::PeerDisconnected { peer: "b".into() });
    let later = core.handle(Event::Tick { now_ms: 5000 });
    assert!(!later.iter().any(|a| matches!(a, Action::SendSync { .. })), "no sync with a disconnected peer");
    assert!(matches!(later.as_slice(), [Action::TellPeers(Gossip::Load { .. })]), "a periodic load heartbeat");
}

fn answer_by(
    module: ModuleId,
    input: &[u8],
    stdout: &[u8],
    executor: &str,
) -> Result<Result<RemoteAnswer, CallError>, String> {
    let mut record = (*success(module, stdout)).clone();
    record.executed_by = executor.into();
    Ok(Ok(RemoteAnswer { key: CallKey::new(&module, input), cache: CacheStatus::Miss, record }))
}

/// A caller that must forward (the module is too big to fetch), verifying with k = 1.
fn verifying_caller(module: ModuleId) -> (Core, FlightId) {
    let config = MeshConfig { fetch_for_call_max_bytes: 5, verify_remote: 1, ..MeshConfig::default() };
    let mut core = core_without_module(module, 10, config);
    let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"in"));
    let forward = core.handle(Event::ResultLookedUp { flight, found: None });
    assert!(matches!(forward.as_slice(), [Action::ForwardCall { to, hops: 1, .. }] if to == "b"));
    (core, flight)
}

#[test]
fn with_verification_a_peers_result_waits_for_an_independent_executor() {
    let module = ModuleId::of_bytes(b"m");
    let (mut core, flight) = verifying_caller(module);
    let from_b =
        core.handle(Event::ForwardAnswered { flight, from: "b".into(), answer: answer_by(module, b"in", b"55", "b") });
    // No reply yet: c must run it too, without passing it on.
    let max_hops = core.config().max_hops;
    assert!(matches!(from_b.as_slice(), [Action::ForwardCall { to, hops, .. }] if to == "c" && *hops == max_hops));
    let from_c =
        core.handle(Event::ForwardAnswered { flight, from: "c".into(), answer: answer_by(module, b"in", b"55", "c") });
    assert!(matches!(from_c[0], Action::StoreResult { .. }));
    assert_eq!(replies(&from_c)[0].1.as_ref().unwrap().record.outcome, Outcome::Success { stdout: b"55".to_vec() });
}

#[test]
fn with_verification_a_copy_of_the_same_executors_result_confirms_nothing() {
    let module = ModuleId::of_bytes(b"m");
    let (mut core, flight) = verifying_caller(module);
    core.handle(Event::ForwardAnswered { flight, from: "b".into(), answer: answer_by(module, b"in", b"66", "b") });
    // c answers from its cache with b's (signed) record: still only one executor.
    let end =
        core.handle(Event::ForwardAnswered { flight, from: "c".into(), answer: answer_by(module, b"in", b"66", "b") });
    match replies(&end).as_slice() {
        [(1, Err(CallError::Unverified { reason }))] => assert!(reason.contains("fewer than 2"), "{reason}"),
        other => panic!("expected an unverified failure, got {other:?}"),
    }
    assert!(!end.iter().any(|action| matches!(action, Action::StoreResult { .. })), "nothing unverified is cached");
}

/// A caller verifying with k = 1 that fetches the result of `in` from b,
/// which announced it (fetching beats recomputing).
fn verifying_caller_fetching_from_b(module: ModuleId) -> (Core, FlightId) {
    let config = MeshConfig { verify_remote: 1, ..MeshConfig::default() };
    let mut core = core_without_module(module, 10, config);
    let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"in"));
    core.handle(Event::GossipReceived {
        from: "b".into(),
        gossip: Gossip::ResultAvailable { key: CallKey::new(&module, b"in"), module, size: 2, inline: None },
    });
    let fetch = core.handle(Event::ResultLookedUp { flight, found: None });
    assert!(matches!(fetch.as_slice(), [Action::FetchResult { from, .. }] if from == "b"));
    (core, flight)
}

#[test]
fn with_verification_a_disagreement_is_settled_by_running_here_and_the_liar_penalised() {
    let module = ModuleId::of_bytes(b"m");
    let (mut core, flight) = verifying_caller_fetching_from_b(module);
    // b lies.
    let mut lie = (*success(module, b"66")).clone();
    lie.executed_by = "b".into();
    let confirm = core.handle(Event::ResultFetched {
        flight,
        key: CallKey::new(&module, b"in"),
        from: "b".into(),
        found: Some(Arc::new(lie)),
    });
    assert!(matches!(confirm.as_slice(), [Action::ForwardCall { to, .. }] if to == "c"));
    let dispute =
        core.handle(Event::ForwardAnswered { flight, from: "c".into(), answer: answer_by(module, b"in", b"55", "c") });
    // Disputed: the module is fetched and the call run here.
    assert!(matches!(dispute.as_slice(), [Action::FetchModule { .. }]), "{dispute:?}");
    let run = core.handle(Event::ModuleStored { module, size: 10 });
    assert!(run.iter().any(|action| matches!(action, Action::Execute { .. })), "{run:?}");
    let done = core.handle(Event::ExecutionFinished { flight, record: success(module, b"55") });
    assert!(done.iter().any(|action| matches!(action, Action::Penalise { peer, .. } if peer == "b")), "{done:?}");
    assert!(!done.iter().any(|action| matches!(action, Action::Penalise { peer, .. } if peer == "c")));
    assert_eq!(replies(&done)[0].1.as_ref().unwrap().record.outcome, Outcome::Success { stdout: b"55".to_vec() });
    assert_eq!(core.peers().find(|(peer, _)| *peer == "b").unwrap().1.penalty, 1);
}

#[test]
fn an_answer_to_another_call_is_refused_and_its_sender_penalised() {
    let module = ModuleId::of_bytes(b"m");
    let config = MeshConfig { fetch_for_call_max_bytes: 5, ..MeshConfig::default() };
    let mut core = core_without_module(module, 10, config);
    let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"in"));
    core.handle(Event::ResultLookedUp { flight, found: None });
    let wrong = answer_by(module, b"other input", b"66", "b");
    let next = core.handle(Event::ForwardAnswered { flight, from: "b".into(), answer: wrong });
    assert!(matches!(&next[0], Action::Penalise { peer, .. } if peer == "b"));
    assert!(matches!(&next[1], Action::ForwardCall { to, .. } if to == "c"));
}

#[test]
fn with_verification_results_announced_inline_are_not_cached() {
    let module = ModuleId::of_bytes(b"m");
    let mut core = Core::with_config("a", MeshConfig { verify_remote: 1, ..MeshConfig::default() });
    connect(&mut core, "b");
    let key = CallKey::new(&module, b"in");
    let inline = Gossip::ResultAvailable { key, module, size: 2, inline: Some((*success(module, b"55")).clone()) };
    assert!(core.handle(Event::GossipReceived { from: "b".into(), gossip: inline }).is_empty());
}

#[test]
fn a_peer_announcing_an_invalid_name_is_penalised_and_the_name_ignored() {
    let (mut core, module) = core_with_module(b"m");
    connect(&mut core, "b");
    // A hex name would shadow calls by hash prefix.
    let record = NameRecord { name: "3f2a".into(), module, version: 1, publisher: "b".into() };
    let actions = core.handle(Event::GossipReceived { from: "b".into(), gossip: Gossip::Name(record) });
    assert!(matches!(actions.as_slice(), [Action::Penalise { peer, .. }] if peer == "b"), "{actions:?}");
    assert_eq!(core.names().count(), 0);
}

#[test]
fn with_verification_a_limit_hit_here_penalises_no_one() {
    let module = ModuleId::of_bytes(b"m");
    let (mut core, flight) = verifying_caller_fetching_from_b(module);
    let mut honest = (*success(module, b"55")).clone();
    honest.executed_by = "b".into();
    core.handle(Event::ResultFetched {
        flight,
        key: CallKey::new(&module, b"in"),
        from: "b".into(),
        found: Some(Arc::new(honest)),
    });
    // c cannot help; the module is fetched and run here, where it runs out of time.
    core.handle(Event::ForwardAnswered { flight, from: "c".into(), answer: Err("timeout".into()) });
    core.handle(Event::ModuleStored { module, size: 10 });
    let timed_out = record(module, Outcome::Failed(CallError::DeadlineExceeded { deadline_ms: 1 }));
    let done = core.handle(Event::ExecutionFinished { flight, record: timed_out });
    assert!(!done.iter().any(|action| matches!(action, Action::Penalise { .. })), "{done:?}");
}
