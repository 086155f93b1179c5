//! Serving peers' requests, and judging their answers to ours.

use super::*;

#[test]
fn a_module_held_here_is_served_by_slices_and_one_not_held_is_refused() {
    let (mut core, module) = core_with_module(b"m");
    let mut ask = |inbound, module, slice| {
        let request = Request::FetchSlice { module, slice };
        step(&mut core, Event::PeerRequest { from: "b".into(), inbound, request })
    };
    let last = ask(3, module, SliceIndex::Last);
    assert!(
        matches!(last.as_slice(), [Action::ServeSlice { inbound: 3, module: m, slice: SliceIndex::Last }] if *m == module)
    );
    let first = ask(4, module, SliceIndex::At(0));
    assert!(matches!(first.as_slice(), [Action::ServeSlice { inbound: 4, slice: SliceIndex::At(0), .. }]));
    // A one-byte module has one slice: there is no second.
    assert!(matches!(responses(&ask(5, module, SliceIndex::At(1))).as_slice(), [(5, Response::Refused(_))]));
    let other = ModuleId::of_bytes(b"other");
    assert!(matches!(responses(&ask(6, other, SliceIndex::Last)).as_slice(), [(6, Response::Slice(None))]));
}

#[test]
fn a_result_fetch_is_answered_from_the_store() {
    let (mut core, module) = core_with_module(b"m");
    let key = CallKey::new(&module, b"1");
    let lookup = lookup_of(&step(
        &mut core,
        Event::PeerRequest { from: "b".into(), inbound: 5, request: Request::FetchResult { key } },
    ));
    let found = Some(Arc::new(success(module, b"1", b"one", "node-a")));
    let actions = step(&mut core, Event::ResultLookedUp { lookup, found });
    assert!(matches!(responses(&actions).as_slice(), [(5, Response::Result(Some(record)))] if record.module == module));
}

#[test]
fn a_forwarded_call_runs_under_this_nodes_maximums() {
    let config = MeshConfig { max_limits: Limits { fuel: 100, ..Limits::default() }, ..no_owners() };
    let mut core = new_core("a", config);
    let module = ModuleId::of_bytes(b"m");
    step(&mut core, Event::ModuleStored { module, size: 1 });
    let greedy = Limits { fuel: u64::MAX, ..Limits::default() };
    let request = Request::Call { reference: module.to_hex(), input: b"x".to_vec(), limits: greedy, hops: 1 };
    let lookup = lookup_of(&step(&mut core, Event::PeerRequest { from: "b".into(), inbound: 6, request }));
    let actions = step(&mut core, Event::ResultLookedUp { lookup, found: None });
    assert!(matches!(actions.as_slice(), [Action::Execute { limits, .. }] if limits.fuel == 100), "{actions:?}");
    let flight = flight_of(&actions);
    let done =
        step(&mut core, Event::ExecutionFinished { flight, result: Ok(Arc::new(success(module, b"x", b"y", "a"))) });
    assert!(
        matches!(responses(&done).as_slice(), [(6, Response::Call(Ok(answer)))] if answer.cache == CacheStatus::Miss)
    );
    // A call this node cannot place is answered with the error.
    let request = Request::Call { reference: "nope".into(), input: vec![], limits: Limits::default(), hops: 1 };
    let refused = step(&mut core, Event::PeerRequest { from: "b".into(), inbound: 7, request });
    assert!(matches!(responses(&refused).as_slice(), [(7, Response::Call(Err(CallError::NameNotFound { .. })))]));
}

#[test]
fn an_answer_of_the_wrong_kind_is_misbehaviour_and_the_call_goes_on() {
    let module = ModuleId::of_bytes(b"m");
    let config = MeshConfig { fetch_for_call_max_bytes: 5, ..no_owners() };
    let mut core = core_without_module(module, 10, config);
    let (_, request, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"in"));
    let actions = respond(&mut core, request, "b", Response::Slice(None));
    assert!(
        matches!(penalties(&actions).as_slice(), [("b", Misbehaviour::WrongKind { answered: "a module slice", .. })]),
        "{actions:?}"
    );
    let (to, _, message) = only_sent(&actions);
    assert!(to == "c" && matches!(message, Request::Call { .. }));
    // A slice with its bytes, sent for a call, is refused the same way.
    let mut core = core_without_module(module, 10, MeshConfig { fetch_for_call_max_bytes: 5, ..no_owners() });
    let (_, request, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"in"));
    let bytes = crate::wire::ModuleSlice { size: 10, index: 0, encoded: vec![0; 10] };
    let actions = respond(&mut core, request, "b", Response::Slice(Some(bytes)));
    assert_eq!(penalties(&actions).len(), 1);
    assert_eq!(only_sent(&actions).0, "c");
}

#[test]
fn a_slice_that_does_not_verify_is_refused_and_fetched_elsewhere() {
    let module = ModuleId::of_bytes(b"m");
    let mut core = new_core("a", MeshConfig::default());
    connect(&mut core, "b");
    connect(&mut core, "c");
    let (to, request, _) = only_sent(&announce(&mut core, "b", module, 10));
    assert_eq!(to, "b");
    announce(&mut core, "c", module, 10);
    let actions = slice(&mut core, request, "b", module, (10, 0), false);
    assert!(matches!(penalties(&actions).as_slice(), [("b", Misbehaviour::BadModuleBytes { .. })]));
    assert_eq!(only_sent(&actions).0, "c");
    assert!(!actions.iter().any(|action| matches!(action, Action::DiscardReceivedModule { .. })), "c may finish it");
    assert_eq!(core.peers().find(|(peer, _)| *peer == "b").unwrap().1.penalty, 1);
}

#[test]
fn a_module_over_this_nodes_limit_is_refused_for_every_caller() {
    let module = ModuleId::of_bytes(b"m");
    let config = MeshConfig { max_module_bytes: 5, ..no_owners() };
    let mut core = core_without_module(module, 3, config);
    let (_, request, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"in"));
    // The peer announced 3 bytes and proved 10: the slice verifies, but the module is too big.
    let actions = slice(&mut core, request, "b", module, (10, 0), true);
    assert!(matches!(actions[0], Action::DiscardReceivedModule { .. }));
    assert!(matches!(replies(&actions).as_slice(), [(1, Err(CallError::InvalidModule { .. }))]), "{actions:?}");
}

#[test]
fn a_fetched_module_that_is_not_valid_fails_its_callers() {
    let module = ModuleId::of_bytes(b"m");
    let mut core = core_without_module(module, 10, no_owners());
    let (_, request, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"in"));
    slice(&mut core, request, "b", module, (10, 0), true);
    let reason = "imports sockets".to_owned();
    let actions = step(&mut core, Event::ModuleNotStored { module, reason, invalid: true });
    assert!(matches!(replies(&actions).as_slice(), [(1, Err(CallError::InvalidModule { .. }))]));
}

#[test]
fn late_or_unknown_answers_change_nothing() {
    let module = ModuleId::of_bytes(b"m");
    let config = MeshConfig { fetch_for_call_max_bytes: 5, ..no_owners() };
    let mut core = core_without_module(module, 10, config);
    let (_, request, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"in"));
    let (_, second, _) = only_sent(&step(&mut core, Event::RequestFailed { request, reason: "gone".into() }));
    assert!(respond(&mut core, request, "b", remote_answer(module, b"in", b"x", "b")).is_empty(), "too late");
    let late_bytes = slice(&mut core, request, "b", module, (1, 0), true);
    assert!(matches!(late_bytes.as_slice(), [Action::DiscardReceivedModule { .. }]), "the shell may drop them");
    let done = respond(&mut core, second, "c", remote_answer(module, b"in", b"x", "c"));
    assert_eq!(replies(&done).len(), 1);
    assert_eq!(core.requests_in_progress(), 2, "only the two anti-entropy requests are left");
}

#[test]
fn a_lost_connection_fails_what_was_asked_of_the_peer_at_once() {
    let module = ModuleId::of_bytes(b"m");
    let config = MeshConfig { fetch_for_call_max_bytes: 5, ..no_owners() };
    let mut core = core_without_module(module, 10, config);
    let (to, _, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"in"));
    assert_eq!(to, "b");
    let actions = step(&mut core, Event::PeerDisconnected { peer: "b".into() });
    assert_eq!(only_sent(&actions).0, "c", "retried at once, not after a timeout");
}
