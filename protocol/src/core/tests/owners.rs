//! Results at their owners: a call goes to its key's owner, which answers
//! it once for every node; results travel to the owners in batches, and to
//! a peer that connects and owns them.

use std::collections::BTreeMap;

use super::*;
use crate::wire::StoredResult;

/// Node a holding `m`, connected to `peers`, with the default three owners per key.
fn member_of(peers: &[&str]) -> (TestCore, ModuleId) {
    let mut core = new_core("a", MeshConfig::default());
    let module = ModuleId::of_bytes(b"m");
    step(&mut core, Event::ModuleStored { module, size: 1 });
    for peer in peers {
        connect(&mut core, peer);
    }
    (core, module)
}

/// An input whose owners leave this node out.
fn input_not_owned_here(core: &TestCore, module: ModuleId) -> Vec<u8> {
    (0u32..)
        .map(|n| n.to_string().into_bytes())
        .find(|input| !core.owners(&CallKey::new(&module, input)).contains(&core.local().clone()))
        .expect("some input")
}

/// The results each peer was sent to keep, by peer.
fn stored(actions: &[Action<String>]) -> BTreeMap<String, Vec<CallKey>> {
    let mut batches = BTreeMap::<String, Vec<CallKey>>::new();
    for (to, _, message) in sent(actions) {
        if let Request::Store(batch) = message {
            batches.entry(to.to_owned()).or_default().extend(batch.iter().map(|stored| stored.key));
        }
    }
    batches
}

/// Lets the handoff timer fall due.
fn after_handoff(core: &mut TestCore) -> Vec<Action<String>> {
    let due = core.poll_timeout().expect("a batch is waiting");
    core.handle(due, Event::Timeout)
}

#[test]
fn a_call_at_another_node_is_answered_by_the_keys_owner_and_kept_in_the_near_cache() {
    let (mut core, module) = member_of(&["b", "c", "d", "e"]);
    let input = input_not_owned_here(&core, module);
    let owner = core.owners(&CallKey::new(&module, &input))[0].clone();
    let (to, request, message) = only_sent(&miss(&mut core, 1, &module.to_hex(), &input));
    assert_eq!(to, owner, "the best owner is asked, even though the module is held here");
    assert!(matches!(message, Request::Call { hops: 1, .. }));
    let key = CallKey::new(&module, &input);
    let record = success(module, &input, b"55", &owner);
    let answer = Response::Call(Ok(RemoteAnswer { key, cache: CacheStatus::Hit, record }));
    let actions = respond(&mut core, request, &owner, answer);
    assert_eq!(replies(&actions)[0].1.as_ref().unwrap().cache, CacheStatus::Hit);
    assert!(matches!(actions.as_slice(), [Action::CacheResult { .. }, Action::Reply { .. }]), "{actions:?}");
    assert!(!core.handoff.has_batches(), "nothing to hand over: the owner has it");
}

#[test]
fn when_no_owner_answers_the_call_runs_here_and_its_result_reaches_the_owners_after() {
    let (mut core, module) = member_of(&["b", "c", "d", "e"]);
    let input = input_not_owned_here(&core, module);
    let owners = core.owners(&CallKey::new(&module, &input));
    let mut actions = miss(&mut core, 1, &module.to_hex(), &input);
    for (n, owner) in owners.iter().enumerate() {
        let (to, request, _) = only_sent(&actions);
        assert_eq!(&to, owner, "owners are asked best first");
        actions = match n {
            // An owner's own trouble is no answer about the call: the next one is asked.
            0 => {
                let overloaded = CallError::Overloaded { module, queued: 9, retry_after_ms: 5 };
                respond(&mut core, request, owner, Response::Call(Err(overloaded)))
            }
            _ => step(&mut core, Event::RequestFailed { request, reason: "timed out".into() }),
        };
    }
    let flight = flight_of(&actions);
    let done = step(&mut core, Event::ExecutionFinished { flight, result: ran_here(module, &input, b"55") });
    assert!(matches!(done[0], Action::CacheResult { .. }), "not an owner: near cache only");
    assert_eq!(replies(&done)[0].1.as_ref().unwrap().cache, CacheStatus::Miss);
    assert!(sent(&done).is_empty(), "results wait for a batch");
    let key = CallKey::new(&module, &input);
    let expected: BTreeMap<String, Vec<CallKey>> = owners.into_iter().map(|owner| (owner, vec![key])).collect();
    assert_eq!(stored(&after_handoff(&mut core)), expected);
}

#[test]
fn the_owner_runs_identical_calls_from_two_nodes_once_and_replicates_results_in_one_batch_per_other_owner() {
    let (mut core, module) = member_of(&["b", "c", "d"]);
    let owned: Vec<Vec<u8>> = (0u32..)
        .map(|n| n.to_string().into_bytes())
        .filter(|input| core.owners(&CallKey::new(&module, input))[0] == "a")
        .take(2)
        .collect();
    let mut expected = BTreeMap::<String, Vec<CallKey>>::new();
    for (n, input) in owned.iter().enumerate() {
        let inbound = 10 * n as u64;
        let lookup = lookup_of(&forwarded(&mut core, "b", inbound, module, input, 1));
        let flight = flight_of(&step(&mut core, Event::ResultLookedUp { lookup, found: None }));
        assert!(forwarded(&mut core, "c", inbound + 1, module, input, 1).is_empty(), "c's call joins b's");
        let done = step(&mut core, Event::ExecutionFinished { flight, result: ran_here(module, input, b"x") });
        assert!(matches!(done[0], Action::StoreResult { .. }), "the owner stores it");
        assert_eq!(responses(&done).len(), 2, "both nodes are answered");
        let key = CallKey::new(&module, input);
        // b and c have it in their answers: only an owner that did not ask gets a replica.
        for owner in core.owners(&key).into_iter().filter(|owner| !["a", "b", "c"].contains(&owner.as_str())) {
            expected.entry(owner).or_default().push(key);
        }
    }
    let batches = after_handoff(&mut core);
    assert_eq!(stored(&batches), expected);
    assert_eq!(sent(&batches).len(), expected.len(), "one batch per owner");
}

#[test]
fn a_peer_that_connects_is_handed_the_recent_results_it_owns() {
    let config = MeshConfig { owners: 1, ..MeshConfig::default() };
    let mut core = new_core("a", config);
    let module = ModuleId::of_bytes(b"m");
    step(&mut core, Event::ModuleStored { module, size: 1 });
    let inputs: Vec<Vec<u8>> = (0u32..20).map(|n| n.to_string().into_bytes()).collect();
    for input in &inputs {
        let flight = flight_of(&miss(&mut core, 1, &module.to_hex(), input));
        let done = step(&mut core, Event::ExecutionFinished { flight, result: ran_here(module, input, b"x") });
        assert!(matches!(done[0], Action::StoreResult { .. }), "alone, this node owns everything");
    }
    // b joins (or comes back after a partition): it now owns about half the keys.
    connect(&mut core, "b");
    let owned_by_b: Vec<CallKey> =
        inputs.iter().map(|input| CallKey::new(&module, input)).filter(|key| core.owners(key) == ["b"]).collect();
    assert!(!owned_by_b.is_empty() && owned_by_b.len() < inputs.len());
    let handed = stored(&after_handoff(&mut core));
    assert_eq!(handed, BTreeMap::from([("b".to_owned(), owned_by_b)]));
}

#[test]
fn results_sent_to_keep_are_judged_stored_and_acknowledged() {
    let (mut core, module) = member_of(&["b"]);
    let batch: Vec<StoredResult> = [&b"1"[..], b"2"]
        .iter()
        .map(|input| StoredResult { key: CallKey::new(&module, input), record: success(module, input, b"x", "b") })
        .collect();
    let actions = step(&mut core, Event::PeerRequest { from: "b".into(), inbound: 4, request: Request::Store(batch) });
    let kept = actions.iter().filter(|action| matches!(action, Action::StoreResult { .. })).count();
    assert_eq!(kept, 2);
    assert!(matches!(responses(&actions).as_slice(), [(4, Response::Stored)]));
    assert!(penalties(&actions).is_empty());
}

#[test]
fn a_node_that_loses_its_peers_owns_every_key_again() {
    let (mut core, module) = member_of(&["b", "c", "d", "e"]);
    let input = input_not_owned_here(&core, module);
    for peer in ["b", "c", "d", "e"] {
        step(&mut core, Event::PeerDisconnected { peer: peer.into() });
    }
    assert_eq!(core.owners(&CallKey::new(&module, &input)), ["a"]);
    flight_of(&miss(&mut core, 1, &module.to_hex(), &input));
}

#[test]
fn with_a_membership_the_shell_gives_owners_are_asked_without_a_connection() {
    let mut core = new_core("a", MeshConfig::default());
    let module = ModuleId::of_bytes(b"m");
    step(&mut core, Event::ModuleStored { module, size: 1 });
    let flight = flight_of(&miss(&mut core, 1, &module.to_hex(), b"before"));
    step(&mut core, Event::ExecutionFinished { flight, result: ran_here(module, b"before", b"x") });
    // A big mesh: this node is connected to none of the others, but knows them all.
    let view: Vec<String> = (0..50).map(|n| format!("n{n}")).chain(["a".to_owned()]).collect();
    let handed = core.set_members(core.now_ms, Arc::new(Members::of(view)));
    assert!(handed.is_empty(), "batches wait for the handoff timer");
    let before = CallKey::new(&module, b"before");
    let expected: BTreeMap<String, Vec<CallKey>> =
        core.owners(&before).into_iter().filter(|owner| owner != "a").map(|owner| (owner, vec![before])).collect();
    assert_eq!(stored(&after_handoff(&mut core)), expected, "the new owners get the recent result");
    connect(&mut core, "stranger");
    assert!(!core.members.contains(&"stranger".to_owned()), "connections no longer change the members");

    let input = input_not_owned_here(&core, module);
    let owner = core.owners(&CallKey::new(&module, &input))[0].clone();
    let (to, _, _) = only_sent(&miss(&mut core, 2, &module.to_hex(), &input));
    assert_eq!(to, owner, "the owner is dialled on demand");
}

#[test]
fn a_silent_owner_does_not_hold_a_call_the_call_also_runs_here_and_the_first_answer_wins() {
    let (mut core, module) = member_of(&["b", "c", "d", "e"]);
    let patience = core.config().owner_patience_ms;
    for (caller, owner_answers_first) in [(1, true), (2, false)] {
        let input = (0u32..)
            .map(|n| format!("{caller}-{n}").into_bytes())
            .find(|input| !core.owners(&CallKey::new(&module, input)).contains(&"a".to_owned()))
            .expect("some input");
        let (owner, request, _) = only_sent(&miss(&mut core, caller, &module.to_hex(), &input));
        let now = core.now_ms + patience;
        let flight = flight_of(&core.handle(now, Event::Timeout));
        assert_eq!(core.executing(), 1, "run here too, the owner's request still open");
        let record = success(module, &input, b"55", &owner);
        let answer =
            Response::Call(Ok(RemoteAnswer { key: CallKey::new(&module, &input), cache: CacheStatus::Miss, record }));
        let ran_here = ran_here(module, &input, b"55");
        let (first, second) = match owner_answers_first {
            true => (
                respond(&mut core, request, &owner, answer.clone()),
                step(&mut core, Event::ExecutionFinished { flight, result: ran_here }),
            ),
            false => (
                step(&mut core, Event::ExecutionFinished { flight, result: ran_here }),
                respond(&mut core, request, &owner, answer),
            ),
        };
        assert_eq!(replies(&first).len(), 1, "the first answer is the caller's");
        assert!(replies(&second).is_empty(), "the second changes nothing");
        assert_eq!((core.executing(), core.flights_in_progress()), (0, 0));
    }
}

#[test]
fn an_owner_that_answered_slowly_is_asked_after_the_keys_other_owners_for_a_while() {
    let (mut core, module) = member_of(&["b", "c", "d", "e"]);
    let slow_after = core.config.slow_owner_ms;
    let input = input_not_owned_here(&core, module);
    let owners = core.owners(&CallKey::new(&module, &input));
    let (to, request, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), &input));
    assert_eq!(to, owners[0]);
    // Its answer comes long after its own work (a far or overloaded owner).
    let key = CallKey::new(&module, &input);
    let mut record = success(module, &input, b"55", &owners[0]);
    record.timings.run_us = 5_000;
    core.now_ms += slow_after + 5 + 50;
    let answer = Response::Call(Ok(RemoteAnswer { key, cache: CacheStatus::Miss, record }));
    respond(&mut core, request, &owners[0], answer);

    // Another key it owns first: its second owner is asked instead (or this node runs it).
    let other = (0u32..)
        .map(|n| format!("other-{n}").into_bytes())
        .find(|input| {
            let owners_of = core.owners(&CallKey::new(&module, input));
            owners_of[0] == owners[0] && owners_of[1] != *core.local()
        })
        .expect("another key owned first by the slow owner");
    let second = core.owners(&CallKey::new(&module, &other))[1].clone();
    let (to, _, _) = only_sent(&miss(&mut core, 2, &module.to_hex(), &other));
    assert_eq!(to, second, "the slow owner is asked last");

    // Once its mark runs out, it is asked first again.
    core.now_ms += core.config.slow_owner_for_ms + 1;
    let again = (0u32..)
        .map(|n| format!("again-{n}").into_bytes())
        .find(|input| {
            let owners_of = core.owners(&CallKey::new(&module, input));
            owners_of[0] == owners[0]
        })
        .expect("a third key owned first by it");
    let (to, _, _) = only_sent(&miss(&mut core, 3, &module.to_hex(), &again));
    assert_eq!(to, owners[0]);
}

#[test]
fn a_long_function_does_not_make_its_owner_look_slow() {
    let (mut core, module) = member_of(&["b", "c", "d", "e"]);
    let input = input_not_owned_here(&core, module);
    let owners = core.owners(&CallKey::new(&module, &input));
    let (_, request, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), &input));
    // Two seconds of round trip, all of it the owner's run.
    let key = CallKey::new(&module, &input);
    let mut record = success(module, &input, b"55", &owners[0]);
    record.timings.run_us = 2_000_000;
    core.now_ms += 2_001;
    let answer = Response::Call(Ok(RemoteAnswer { key, cache: CacheStatus::Miss, record }));
    respond(&mut core, request, &owners[0], answer);
    assert!(!core.slow_owners.is_slow(&owners[0], core.now_ms));
}

#[test]
fn a_module_quicker_to_run_than_to_ask_for_runs_here_and_its_result_stays_here() {
    let (mut core, module) = member_of(&["b", "c", "d", "e"]);
    let quick_us = core.config().run_here_below_us - 1;
    let first = input_not_owned_here(&core, module);
    // Never run here yet: the key's owner is asked.
    let (owner, _, _) = only_sent(&miss(&mut core, 1, &module.to_hex(), &first));
    assert_eq!(owner, core.owners(&CallKey::new(&module, &first))[0]);
    let flight = flight_of(&core.handle(core.now_ms + core.config().owner_patience_ms, Event::Timeout));
    step(&mut core, Event::ExecutionFinished { flight, result: ran_here_in(module, &first, b"1", quick_us) });

    // It ran here quickly: calls that miss run here, asking no one, even
    // beyond this node's slots (forwarding would cost it more than running),
    // and their results stay here.
    let not_owned_here: Vec<Vec<u8>> = (0u32..)
        .map(|n| format!("second-{n}").into_bytes())
        .filter(|input| !core.owners(&CallKey::new(&module, input)).contains(&"a".to_owned()))
        .take(core.config().capacity as usize + 1)
        .collect();
    let mut flights = Vec::new();
    for (caller, input) in (10..).zip(&not_owned_here) {
        let actions = miss(&mut core, caller, &module.to_hex(), input);
        assert!(sent(&actions).is_empty(), "no owner asked: {actions:?}");
        flights.push(flight_of(&actions));
    }
    let second = &not_owned_here[0];
    let done = step(
        &mut core,
        Event::ExecutionFinished { flight: flights[0], result: ran_here_in(module, second, b"2", quick_us) },
    );
    assert!(matches!(done.as_slice(), [Action::CacheResult { .. }, ..]), "near-cached here: {done:?}");
    // The first run (the owner was asked, then patience ran out) goes to its
    // owners as ever; the one kept here goes to no one.
    let handed: Vec<CallKey> = stored(&after_handoff(&mut core)).into_values().flatten().collect();
    assert!(handed.contains(&CallKey::new(&module, &first)), "{handed:?}");
    assert!(!handed.contains(&CallKey::new(&module, second)), "{handed:?}");

    // Once a run here took longer than asking, owners are asked again.
    let third = input_not_owned_here(&core, module);
    let flight = flight_of(&miss(&mut core, 3, &module.to_hex(), b"owned-or-not"));
    step(&mut core, Event::ExecutionFinished { flight, result: ran_here_in(module, b"owned-or-not", b"3", 50_000) });
    let (to, _, _) = only_sent(&miss(&mut core, 4, &module.to_hex(), &third));
    assert_eq!(to, core.owners(&CallKey::new(&module, &third))[0]);
}
