//! The call path: lookups, joins, executions, fetches and forwards.

use std::collections::HashMap;

use super::*;

#[test]
fn a_miss_executes_stores_and_replies() {
    let (mut core, module) = core_with_module(b"m");
    let actions = miss(&mut core, 1, &module.to_hex(), b"10");
    assert!(matches!(actions.as_slice(), [Action::Execute { module: m, .. }] if *m == module), "{actions:?}");
    assert_eq!(core.executing(), 1);
    let flight = flight_of(&actions);
    let actions = step(&mut core, Event::ExecutionFinished { flight, result: ran_here(module, b"10", b"55") });
    assert!(matches!(actions[0], Action::StoreResult { .. }), "{actions:?}");
    assert!(!actions.iter().any(|action| matches!(action, Action::Publish(_))), "results are not gossiped");
    let replies = replies(&actions);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].1.as_ref().unwrap().cache, CacheStatus::Miss);
    assert_eq!((core.flights_in_progress(), core.executing()), (0, 0));
}

#[test]
fn identical_concurrent_calls_execute_once() {
    let (mut core, module) = core_with_module(b"m");
    let lookup = lookup_of(&call(&mut core, 1, &module.to_hex(), b"10"));
    assert!(call(&mut core, 2, &module.to_hex(), b"10").is_empty(), "joined during lookup");
    let executes = step(&mut core, Event::ResultLookedUp { lookup, found: None });
    let flight = flight_of(&executes);
    assert!(call(&mut core, 3, &module.to_hex(), b"10").is_empty(), "joined during execution");
    assert!(forwarded(&mut core, "peer", 40, module, b"10", 1).is_empty(), "a peer's forward joins too");
    let different_input = call(&mut core, 4, &module.to_hex(), b"11");
    lookup_of(&different_input);

    let actions = step(&mut core, Event::ExecutionFinished { flight, result: ran_here(module, b"10", &[1]) });
    let statuses: Vec<_> =
        replies(&actions).iter().map(|(caller, reply)| (*caller, reply.as_ref().unwrap().cache)).collect();
    assert_eq!(statuses, vec![(1, CacheStatus::Miss), (2, CacheStatus::Joined), (3, CacheStatus::Joined)]);
    assert!(matches!(
        responses(&actions).as_slice(),
        [(40, Response::Call(Ok(answer)))] if answer.cache == CacheStatus::Joined
    ));
}

#[test]
fn calls_with_different_limits_do_not_share_a_flight() {
    let (mut core, module) = core_with_module(b"m");
    lookup_of(&call(&mut core, 1, &module.to_hex(), b"x"));
    let small = Limits { fuel: 5, ..Limits::default() };
    lookup_of(&call_with(&mut core, 2, &module.to_hex(), b"x", small));
    assert_eq!(core.flights_in_progress(), 2);
}

#[test]
fn a_cache_hit_replies_without_executing() {
    let (mut core, module) = core_with_module(b"m");
    let lookup = lookup_of(&call(&mut core, 1, &module.to_hex(), b"10"));
    call(&mut core, 2, &module.to_hex(), b"10");
    let found = Some(Arc::new(success(module, b"10", b"55", "x")));
    let actions = step(&mut core, Event::ResultLookedUp { lookup, found });
    assert_eq!(actions.len(), 2);
    assert!(replies(&actions).iter().all(|(_, reply)| reply.as_ref().unwrap().cache == CacheStatus::Hit));
}

#[test]
fn an_answer_from_memory_is_the_one_the_flight_path_gives() {
    let (mut core, module) = core_with_module(b"m");
    core.publish_name("fib", &module.to_hex()).unwrap();
    let stored = Arc::new(success(module, b"10", b"55", "x"));
    let key = CallKey::new(&module, b"10");
    let memory = |wanted: &CallKey| (*wanted == key).then(|| stored.clone());
    let limits = Limits::default();
    let resolver = core.resolver().clone();

    let shortcut = resolver.answer_from_memory("fib", b"10", &limits, memory).expect("held in memory");
    let lookup = lookup_of(&call(&mut core, 1, "fib", b"10"));
    let actions = step(&mut core, Event::ResultLookedUp { lookup, found: memory(&key) });
    let via_flight = replies(&actions)[0].1.as_ref().unwrap().clone();
    assert_eq!((shortcut.key, shortcut.cache), (via_flight.key, via_flight.cache));
    assert!(Arc::ptr_eq(&shortcut.record, &via_flight.record));

    // Anything else takes the flight path, which also gives the errors.
    assert!(resolver.answer_from_memory("fib", b"11", &limits, memory).is_none(), "not held");
    assert!(resolver.answer_from_memory("nope", b"10", &limits, memory).is_none(), "unknown name");
    let tiny = Limits { input_bytes: 1, ..limits };
    assert!(resolver.answer_from_memory("fib", b"10", &tiny, memory).is_none(), "input over the limit");
    let big = vec![0; MEMORY_SHORTCUT_MAX_INPUT + 1];
    assert!(resolver.answer_from_memory("fib", &big, &limits, |_| Some(stored.clone())).is_none(), "a big input");
}

#[test]
fn the_resolver_the_shell_holds_is_a_snapshot() {
    let (mut core, module) = core_with_module(b"m");
    let before = core.resolver().clone();
    core.publish_name("fib", &module.to_hex()).unwrap();
    assert!(before.resolve("fib").is_err(), "the snapshot taken before is unchanged");
    assert_eq!(core.resolver().resolve("fib"), Ok(module));
    let again = core.resolver().clone();
    announce(&mut core, "b", module, 1);
    assert!(Arc::ptr_eq(&again, core.resolver()), "nothing new to resolve: no new snapshot");
}

#[test]
fn limit_failures_are_replied_but_neither_kept_nor_sent_to_owners() {
    let (mut core, module) = core_with_module(b"m");
    let flight = flight_of(&miss(&mut core, 1, &module.to_hex(), b""));
    let out_of_fuel = Ok(Arc::new(signed(module, b"", Outcome::Failed(Failure::OutOfFuel { limit: 1 }), "node-a")));
    let actions = step(&mut core, Event::ExecutionFinished { flight, result: out_of_fuel });
    let kept = |action: &Action<String>| {
        matches!(action, Action::StoreResult { .. } | Action::CacheResult { .. } | Action::Publish(_))
    };
    assert!(!actions.iter().any(kept));
    assert!(!core.handoff.has_batches(), "nothing waits to go to owners");
    assert!(matches!(outcome_of(replies(&actions)[0].1), Outcome::Failed(Failure::OutOfFuel { .. })));
}

#[test]
fn a_module_that_cannot_run_is_an_error_for_every_waiter() {
    let (mut core, module) = core_with_module(b"m");
    let flight = flight_of(&miss(&mut core, 1, &module.to_hex(), b""));
    call(&mut core, 2, &module.to_hex(), b"");
    let corrupt = Err(CallError::ModuleCorrupt { module });
    let actions = step(&mut core, Event::ExecutionFinished { flight, result: corrupt });
    assert_eq!(replies(&actions).len(), 2);
    assert!(replies(&actions).iter().all(|(_, reply)| matches!(reply, Err(CallError::ModuleCorrupt { .. }))));
    assert_eq!(core.executing(), 0);
}

#[test]
fn oversized_input_is_rejected_before_lookup() {
    let (mut core, module) = core_with_module(b"m");
    let limits = Limits { input_bytes: 2, ..Limits::default() };
    let actions = call_with(&mut core, 9, &module.to_hex(), b"abc", limits);
    assert!(matches!(replies(&actions)[0].1, Err(CallError::InputTooLarge { size: 3, limit_bytes: 2 })));
}

#[test]
fn resolves_names_hashes_and_prefixes() {
    let (mut core, module) = core_with_module(b"m");
    let other = ModuleId::of_bytes(b"n");
    step(&mut core, Event::ModuleStored { module: other, size: 1 });
    let (record, actions) = core.publish_name("fib", &module.to_hex()).unwrap();
    assert_eq!((record.version, record.publisher.as_str()), (1, "node-a"));
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
fn an_ambiguous_prefix_lists_the_candidates() {
    let mut core = new_core("a", MeshConfig::default());
    let mut seen: HashMap<String, ModuleId> = HashMap::new();
    let (first, second) = (0u32..)
        .find_map(|i| {
            let module = ModuleId::of_bytes(&i.to_le_bytes());
            seen.insert(module.to_hex()[..4].to_owned(), module).map(|previous| (previous, module))
        })
        .unwrap();
    for module in [first, second] {
        core.restore_module(module, 1);
    }
    let prefix = &first.to_hex()[..4];
    assert!(matches!(core.resolve(prefix), Err(CallError::AmbiguousPrefix { matches, .. }) if matches.len() == 2));
    assert_eq!(core.resolve(&first.to_hex()[..20]), Ok(first));
}

#[test]
fn a_call_for_a_module_held_elsewhere_fetches_it_then_runs_here() {
    let module = ModuleId::of_bytes(b"m");
    let mut core = core_without_module(module, 10, no_owners());
    let fetch = miss(&mut core, 1, &module.to_hex(), b"in");
    let (to, request, message) = only_sent(&fetch);
    assert_eq!((to.as_str(), message), ("b", Request::FetchSlice { module, slice: SliceIndex::Last }));
    // A second call for the same module joins the fetch.
    assert!(miss(&mut core, 2, &module.to_hex(), b"other").is_empty());
    let received = slice(&mut core, request, "b", module, (10, 0), true);
    assert!(matches!(received.as_slice(), [Action::StoreReceivedModule { module: m, size: 10 }] if *m == module));
    let actions = step(&mut core, Event::ModuleStored { module, size: 10 });
    assert_eq!(actions.iter().filter(|a| matches!(a, Action::Execute { .. })).count(), 2);
    assert_eq!(sent(&actions).len(), 2 + 2, "a replica is told to the neighbours, and so is the new load");
}

#[test]
fn a_big_module_is_not_fetched_for_a_call_but_the_call_is_forwarded() {
    let module = ModuleId::of_bytes(b"m");
    let config = MeshConfig { fetch_for_call_max_bytes: 5, ..no_owners() };
    let mut core = core_without_module(module, 10, config);
    let (to, request, message) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"in"));
    assert!(matches!(message, Request::Call { hops: 1, .. }) && to == "b", "{message:?}");
    // b's connection breaks: the call is retried at c, and c's answer is cached here.
    let failed = step(&mut core, Event::RequestFailed { request, reason: "connection closed".into() });
    let (to, request, _) = only_sent(&failed);
    assert_eq!(to, "c");
    let done = respond(&mut core, request, "c", remote_answer(module, b"in", b"ok", "c"));
    assert!(matches!(done[0], Action::StoreResult { .. }));
    assert_eq!(outcome_of(replies(&done)[0].1), &Outcome::Success { stdout: b"ok".to_vec() });
}

#[test]
fn when_every_holder_fails_the_caller_gets_a_clear_error() {
    let module = ModuleId::of_bytes(b"m");
    let mut core = core_without_module(module, 10, no_owners());
    let (_, first, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"in"));
    let next = respond(&mut core, first, "b", Response::Slice(None));
    let (to, second, _) = only_sent(&next);
    assert_eq!(to, "c");
    // The peers that failed the fetch are not asked to run it either.
    let end = respond(&mut core, second, "c", Response::Refused("busy".into()));
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
    let capacity = core.config().capacity;
    connect(&mut core, "b");
    announce(&mut core, "b", module, 1);
    gossip(&mut core, "b", Gossip::Load { executing: 0, capacity: 4 });
    for i in 0..capacity {
        let actions = miss(&mut core, u64::from(i), &module.to_hex(), &i.to_le_bytes());
        flight_of(&actions);
    }
    let (to, _, message) = only_sent(&miss(&mut core, 99, &module.to_hex(), b"one more"));
    assert!(to == "b" && matches!(message, Request::Call { hops: 1, .. }));
    // A call that came as far as allowed runs here instead.
    let max_hops = core.config().max_hops;
    let lookup = lookup_of(&forwarded(&mut core, "c", 5, module, b"far", max_hops));
    flight_of(&step(&mut core, Event::ResultLookedUp { lookup, found: None }));
}

/// Two nodes that send each other the same call (each saturated, say) must
/// not wait on each other: a peer's call never joins a flight of this node's
/// callers that may itself be waiting on that peer.
#[test]
fn a_peers_call_never_joins_a_flight_that_may_wait_on_that_peer() {
    let module = ModuleId::of_bytes(b"m");
    let config = MeshConfig { fetch_for_call_max_bytes: 5, ..no_owners() };
    let mut core = core_without_module(module, 10, config);
    let (to, _, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"in"));
    assert_eq!(to, "b", "this node's call waits on b");
    // b's own call of the same key arrives here: a flight of its own.
    lookup_of(&forwarded(&mut core, "b", 7, module, b"in", 1));
    // A second peer's call joins the peers' flight, and a caller here can too.
    assert!(forwarded(&mut core, "c", 8, module, b"in", 1).is_empty());
    assert!(call(&mut core, 2, &module.to_hex(), b"in").is_empty());
    assert_eq!(core.flights_in_progress(), 2);
}

/// A call passed on with more hops must not join a peers' flight that
/// passed the same call on with fewer: two saturated nodes would otherwise
/// wait on each other until the forward times out (found by the simulator).
#[test]
fn a_peers_call_with_more_hops_starts_its_own_flight() {
    let module = ModuleId::of_bytes(b"m");
    let config = MeshConfig { fetch_for_call_max_bytes: 5, ..no_owners() };
    let mut core = core_without_module(module, 10, config);
    let lookup = lookup_of(&forwarded(&mut core, "b", 1, module, b"in", 1));
    let (_, _, message) = only_sent(&step(&mut core, Event::ResultLookedUp { lookup, found: None }));
    assert!(matches!(message, Request::Call { hops: 2, .. }), "passed on with one more hop");
    assert!(forwarded(&mut core, "d", 2, module, b"in", 1).is_empty(), "the same hops join");
    // The call comes back round with hops 2: a flight of its own, not a wait on itself.
    lookup_of(&forwarded(&mut core, "c", 3, module, b"in", 2));
    assert_eq!(core.flights_in_progress(), 2);
}
