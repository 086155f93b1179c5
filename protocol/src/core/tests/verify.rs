//! Judging peers' results: signatures, answers to other calls, and
//! confirmation by independent executors (`verify_remote`).

use super::*;
use crate::wire::StoredResult;

/// A caller that must forward (the module is too big to fetch) to b first.
fn forwarding_caller(module: ModuleId, verify_remote: u8) -> (TestCore, RequestId) {
    let config = MeshConfig { fetch_for_call_max_bytes: 5, verify_remote, ..no_owners() };
    let mut core = core_without_module(module, 10, config);
    let (to, request, message) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"in"));
    assert!(to == "b" && matches!(message, Request::Call { hops: 1, .. }));
    (core, request)
}

#[test]
fn forged_replayed_and_misattributed_results_are_refused_and_penalised() {
    let module = ModuleId::of_bytes(b"m");
    let key = CallKey::new(&module, b"in");
    let altered = {
        let mut record = success(module, b"in", b"55", "b");
        record.outcome = Outcome::Success { stdout: b"66".to_vec() };
        record
    };
    let replayed = success(module, b"another input", b"55", "b");
    let pinned_on_c = {
        let mut record = success(module, b"in", b"66", "c");
        ModelledSignatures::sign_as("b", &key, &mut record);
        record
    };
    for forged in [altered, replayed, pinned_on_c] {
        let (mut core, request) = forwarding_caller(module, 0);
        let answer = Response::Call(Ok(RemoteAnswer { key, cache: CacheStatus::Miss, record: forged.clone() }));
        let actions = respond(&mut core, request, "b", answer);
        assert!(matches!(penalties(&actions).as_slice(), [("b", Misbehaviour::ForgedRecord { .. })]), "{forged:?}");
        assert!(replies(&actions).is_empty() && !actions.iter().any(|a| matches!(a, Action::StoreResult { .. })));
        assert_eq!(only_sent(&actions).0, "c", "the call goes on elsewhere");

        // The same record sent to keep (as a replica or a handoff) is refused too.
        let mut core = new_core("a", MeshConfig::default());
        connect(&mut core, "b");
        let batch = vec![StoredResult { key, record: forged }];
        let actions =
            step(&mut core, Event::PeerRequest { from: "b".into(), inbound: 3, request: Request::Store(batch) });
        assert_eq!(penalties(&actions).len(), 1);
        assert!(matches!(responses(&actions).as_slice(), [(3, Response::Refused(_))]));
        assert!(!actions.iter().any(|a| matches!(a, Action::StoreResult { .. })));
    }
}

#[test]
fn an_answer_to_another_call_is_refused_and_its_sender_penalised() {
    let module = ModuleId::of_bytes(b"m");
    let (mut core, request) = forwarding_caller(module, 0);
    let wrong = remote_answer(module, b"other input", b"66", "b");
    let next = respond(&mut core, request, "b", wrong);
    assert!(matches!(penalties(&next).as_slice(), [("b", Misbehaviour::AnotherCall)]));
    assert_eq!(only_sent(&next).0, "c");
}

#[test]
fn with_verification_a_peers_result_waits_for_an_independent_executor() {
    let module = ModuleId::of_bytes(b"m");
    let (mut core, request) = forwarding_caller(module, 1);
    let from_b = respond(&mut core, request, "b", remote_answer(module, b"in", b"55", "b"));
    // No reply yet: c must run it too, without passing it on.
    let max_hops = core.config().max_hops;
    let (to, request, message) = only_sent(&from_b);
    assert!(to == "c" && matches!(message, Request::Call { hops, .. } if hops == max_hops));
    let from_c = respond(&mut core, request, "c", remote_answer(module, b"in", b"55", "c"));
    assert!(matches!(from_c[0], Action::StoreResult { .. }));
    assert_eq!(outcome_of(replies(&from_c)[0].1), &Outcome::Success { stdout: b"55".to_vec() });
}

#[test]
fn with_verification_a_copy_of_the_same_executors_result_confirms_nothing() {
    let module = ModuleId::of_bytes(b"m");
    let (mut core, request) = forwarding_caller(module, 1);
    let (_, request, _) = only_sent(&respond(&mut core, request, "b", remote_answer(module, b"in", b"66", "b")));
    // c answers from its cache with b's (signed) record: still only one executor.
    let end = respond(&mut core, request, "c", remote_answer(module, b"in", b"66", "b"));
    match replies(&end).as_slice() {
        [(1, Err(CallError::Unverified { reason }))] => assert!(reason.contains("fewer than 2"), "{reason}"),
        other => panic!("expected an unverified failure, got {other:?}"),
    }
    assert!(!end.iter().any(|action| matches!(action, Action::StoreResult { .. })), "nothing unverified is cached");
}

/// A caller verifying with k = 1 that asks b, the owner of its call's key:
/// the input to call, and the request to b.
fn verifying_caller_asking_b(module: ModuleId) -> (TestCore, Vec<u8>, RequestId) {
    let config = MeshConfig { verify_remote: 1, ..MeshConfig::default() };
    let mut core = core_without_module(module, 10, config);
    let input = input_owned_by(&core, module, "b");
    let (to, request, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), &input));
    assert_eq!(to, "b");
    (core, input, request)
}

#[test]
fn with_verification_a_disagreement_is_settled_by_running_here_and_the_liar_penalised() {
    let module = ModuleId::of_bytes(b"m");
    let (mut core, input, request) = verifying_caller_asking_b(module);
    // b lies, with its own correct signature.
    let confirm = respond(&mut core, request, "b", remote_answer(module, &input, b"66", "b"));
    let (to, request, _) = only_sent(&confirm);
    assert_eq!(to, "c");
    let dispute = respond(&mut core, request, "c", remote_answer(module, &input, b"55", "c"));
    // Disputed: the module is fetched and the call run here.
    let (_, fetch, message) = only_sent(&dispute);
    assert!(matches!(message, Request::FetchSlice { .. }), "{dispute:?}");
    slice(&mut core, fetch, "b", module, (10, 0), true);
    let run = step(&mut core, Event::ModuleStored { module, size: 10 });
    let flight = flight_of(&run);
    let done =
        step(&mut core, Event::ExecutionFinished { flight, result: Ok(Arc::new(success(module, &input, b"55", "a"))) });
    assert_eq!(penalties(&done), vec![("b", &Misbehaviour::Contradicted)]);
    assert_eq!(outcome_of(replies(&done)[0].1), &Outcome::Success { stdout: b"55".to_vec() });
    assert_eq!(core.peers().find(|(peer, _)| *peer == "b").unwrap().1.penalty, 1);
}

#[test]
fn with_verification_a_limit_hit_here_penalises_no_one() {
    let module = ModuleId::of_bytes(b"m");
    let (mut core, input, request) = verifying_caller_asking_b(module);
    let (_, request, _) = only_sent(&respond(&mut core, request, "b", remote_answer(module, &input, b"55", "b")));
    // c cannot help; the module is fetched and run here, where it runs out of time.
    let (_, fetch, _) = only_sent(&step(&mut core, Event::RequestFailed { request, reason: "timeout".into() }));
    slice(&mut core, fetch, "b", module, (10, 0), true);
    let flight = flight_of(&step(&mut core, Event::ModuleStored { module, size: 10 }));
    let timed_out = signed(module, &input, Outcome::Failed(Failure::DeadlineExceeded { deadline_ms: 1 }), "a");
    let done = step(&mut core, Event::ExecutionFinished { flight, result: Ok(Arc::new(timed_out)) });
    assert!(penalties(&done).is_empty(), "{done:?}");
}
