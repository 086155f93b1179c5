//! Gossip verdicts, names, replication and anti-entropy.

use super::*;
use crate::wire::SyncResponse;

#[test]
fn malformed_gossip_and_invalid_names_are_rejected_before_gossipsub_passes_them_on() {
    let (mut core, module) = core_with_module(b"m");
    connect(&mut core, "b");
    let (verdict, actions) = judged(&mut core, "b", Err("not a nebula message".into()));
    assert_eq!(verdict, Verdict::Reject);
    assert!(matches!(penalties(&actions).as_slice(), [("b", Misbehaviour::MalformedGossip { .. })]));
    // A hex name would shadow calls by hash prefix (more in tests/hostile_peers.rs).
    let record = NameRecord { name: "3f2a".into(), module, version: 1, publisher: "b".into() };
    let (verdict, actions) = judged(&mut core, "b", Ok(Gossip::Name(record)));
    assert_eq!(verdict, Verdict::Reject);
    assert!(matches!(penalties(&actions).as_slice(), [("b", Misbehaviour::InvalidName)]));
    assert_eq!(core.names().count(), 0);
}

#[test]
fn merge_keeps_the_newest_name_record_and_passes_it_on_once() {
    let mut core = new_core("a", MeshConfig::default());
    connect(&mut core, "b");
    let old = NameRecord { name: "f".into(), module: ModuleId::of_bytes(b"1"), version: 3, publisher: "x".into() };
    let new = NameRecord { version: 4, module: ModuleId::of_bytes(b"2"), ..old.clone() };
    assert!(core.restore_name(new.clone()));
    assert!(!core.restore_name(old.clone()));
    assert_eq!(core.names().next(), Some(&new));
    assert!(gossip(&mut core, "b", Gossip::Name(old)).is_empty(), "an older record changes nothing");
    let newer = NameRecord { version: 5, ..new };
    let actions = gossip(&mut core, "b", Gossip::Name(newer.clone()));
    assert!(matches!(&actions[0], Action::PersistName(r) if r.version == 5));
    assert!(matches!(sent(&actions).as_slice(), [("b", _, Request::Tell(Gossip::Name(told)))] if told.version == 5));
    assert!(gossip(&mut core, "b", Gossip::Name(newer)).is_empty(), "a record already held is not passed on again");
}

#[test]
fn announced_modules_are_replicated_within_the_budget() {
    let mut core = new_core("a", MeshConfig { replicate_budget_bytes: 150, ..MeshConfig::default() });
    connect(&mut core, "b");
    let small = ModuleId::of_bytes(b"small");
    let big = ModuleId::of_bytes(b"big");
    let (to, request, message) = only_sent(&announce(&mut core, "b", small, 100));
    assert_eq!((to.as_str(), message), ("b", Request::FetchSlice { module: small, slice: SliceIndex::Last }));
    assert!(announce(&mut core, "b", big, 100).is_empty(), "over the budget: fetched on demand only");
    assert!(announce(&mut core, "b", small, 100).is_empty(), "already being fetched");
    slice(&mut core, request, "b", small, (100, 0), true);
    let actions = step(&mut core, Event::ModuleStored { module: small, size: 100 });
    assert!(
        matches!(sent(&actions).as_slice(), [("b", _, Request::Tell(Gossip::ModuleAvailable { .. }))]),
        "a replica tells its neighbours only: {actions:?}"
    );
    let deployed = step(&mut core, Event::ModuleStored { module: ModuleId::of_bytes(b"new"), size: 1 });
    assert!(
        matches!(deployed.as_slice(), [Action::Publish(Gossip::ModuleAvailable { .. })]),
        "a deploy is news for all"
    );
    assert_eq!(core.resolve(&big.to_hex()), Ok(big), "a module held only by peers still resolves");
}

#[test]
fn anti_entropy_sends_only_what_differs() {
    let (mut a, module) = core_with_module(b"m");
    a.publish_name("f", &module.to_hex()).unwrap();
    for input in [&b"1"[..], b"2"] {
        let flight = flight_of(&miss(&mut a, 1, &module.to_hex(), input));
        step(&mut a, Event::ExecutionFinished { flight, result: ran_here(module, input, b"x") });
    }
    let mut b = new_core("b", MeshConfig::default());
    let (_, request, message) = only_sent(&connect(&mut b, "node-a"));
    let answer = step(&mut a, Event::PeerRequest { from: "b".into(), inbound: 7, request: message });
    let response = match responses(&answer).as_slice() {
        [(7, Response::Sync(response))] => response.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(response.modules.as_ref().map(Vec::len), Some(1));
    assert_eq!(response.names.as_ref().map(Vec::len), Some(1));
    let actions = respond(&mut b, request, "node-a", Response::Sync(response));
    let fetch = actions.iter().find_map(|action| match action {
        Action::Send { request, message: Request::FetchSlice { .. }, .. } => Some(*request),
        _ => None,
    });
    assert!(actions.iter().any(|a| matches!(a, Action::PersistName(_))));
    let fetch = fetch.expect("the module is replicated");
    slice(&mut b, fetch, "node-a", module, (1, 0), true);
    step(&mut b, Event::ModuleStored { module, size: 1 });

    // Now in step: the next round carries nothing.
    let request = b.sync_request();
    let answer = step(&mut a, Event::PeerRequest { from: "b".into(), inbound: 8, request: Request::Sync(request) });
    let load = crate::wire::Load { executing: 0, capacity: a.config().capacity };
    let nothing = SyncResponse { modules: None, names: None, load };
    assert!(matches!(responses(&answer).as_slice(), [(8, Response::Sync(response))] if *response == nothing));
}

#[test]
fn a_told_message_is_acknowledged_and_used() {
    let mut core = new_core("a", MeshConfig::default());
    let tell = Request::Tell(Gossip::Load { executing: 3, capacity: 4 });
    let actions = step(&mut core, Event::PeerRequest { from: "b".into(), inbound: 1, request: tell });
    assert!(matches!(responses(&actions).as_slice(), [(1, Response::Told)]));
    let state = core.peers().find(|(peer, _)| *peer == "b").unwrap().1.clone();
    assert_eq!((state.executing, state.capacity), (3, 4));
}
