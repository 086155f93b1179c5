//! Every deadline is the core's: the shell only wakes it when asked.

use super::*;

#[test]
fn an_idle_core_with_no_peers_never_asks_to_be_woken() {
    let (core, _) = core_with_module(b"m");
    assert_eq!(core.poll_timeout(), None);
}

#[test]
fn anti_entropy_falls_due_per_peer_and_stops_with_the_connection() {
    let config = MeshConfig { sync_interval_ms: 1000, request_timeout_ms: 300, ..no_owners() };
    let mut core = new_core("a", config);
    let (_, first, _) = only_sent(&core.handle(100, Event::PeerConnected { peer: "b".into() }));
    assert_eq!(core.poll_timeout(), Some(400), "the sync request's deadline");
    core.handle(150, Event::PeerResponse { request: first, from: "b".into(), response: Response::Told });
    assert_eq!(core.poll_timeout(), Some(1100), "the next sync");
    assert!(core.handle(1099, Event::Timeout).is_empty(), "woken early: nothing is due");
    let (to, _, message) = only_sent(&core.handle(1100, Event::Timeout));
    assert!(to == "b" && matches!(message, Request::Sync(_)));
    core.handle(1200, Event::PeerDisconnected { peer: "b".into() });
    assert_eq!(core.poll_timeout(), None, "nothing is due with no one to talk to");
}

#[test]
fn an_unanswered_forward_times_out_after_the_calls_deadline_and_goes_elsewhere() {
    let module = ModuleId::of_bytes(b"m");
    let config = MeshConfig { fetch_for_call_max_bytes: 5, forward_margin_ms: 500, ..no_owners() };
    let mut core = core_without_module(module, 10, config);
    let limits = Limits { deadline_ms: 2000, ..Limits::default() };
    let lookup = lookup_of(&call_with(&mut core, 1, &module.to_hex(), b"in", limits));
    let (to, _, _) = only_sent(&step(&mut core, Event::ResultLookedUp { lookup, found: None }));
    assert_eq!(to, "b");
    assert!(core.handle(2499, Event::Timeout).is_empty());
    let retried = core.handle(2500, Event::Timeout);
    assert_eq!(only_sent(&retried).0, "c");
}

#[test]
fn a_slice_may_take_the_time_to_move_the_slices_in_flight() {
    let config = MeshConfig {
        request_timeout_ms: 1000,
        min_transfer_bytes_per_s: 1 << 20,
        slices_in_flight: 5,
        max_module_bytes: 512 << 20,
        ..no_owners()
    };
    let mut core = new_core("a", config);
    connect(&mut core, "b");
    let sync_deadline = core.poll_timeout();
    // However big the module: a slice's deadline is per slice.
    only_sent(&announce(&mut core, "b", ModuleId::of_bytes(b"m"), 500 << 20));
    let (now, deadline) = (core.now_ms, 1000 + 5 * 1000);
    assert_eq!(sync_deadline, Some(now + 1000));
    // The fetch's deadline is after the sync's; after the sync times out, it is next.
    core.handle(now + 1000, Event::Timeout);
    assert_eq!(core.poll_timeout(), Some(now + deadline));
}

#[test]
fn load_changes_are_told_at_most_once_per_interval() {
    let config = MeshConfig { load_interval_ms: 1000, ..no_owners() };
    let mut core = new_core("a", config);
    let module = ModuleId::of_bytes(b"m");
    core.handle(0, Event::ModuleStored { module, size: 1 });
    let (_, sync, _) = only_sent(&core.handle(0, Event::PeerConnected { peer: "b".into() }));
    core.handle(0, Event::PeerResponse { request: sync, from: "b".into(), response: Response::Told });
    let lookup = lookup_of(&core.handle(
        10,
        Event::CallRequested {
            caller: 1,
            reference: module.to_hex(),
            input: b"1".as_slice().into(),
            limits: Limits::default(),
        },
    ));
    let started = core.handle(10, Event::ResultLookedUp { lookup, found: None });
    assert!(matches!(sent(&started).as_slice(), [("b", _, Request::Tell(Gossip::Load { executing: 1, .. }))]));
    let flight = flight_of(&started);
    let finished = core.handle(20, Event::ExecutionFinished { flight, result: ran_here(module, b"1", b"1") });
    assert!(!sent(&finished).iter().any(|(_, _, m)| matches!(m, Request::Tell(Gossip::Load { .. }))), "not yet");
    assert_eq!(core.poll_timeout(), Some(1010));
    let told = core.handle(1010, Event::Timeout);
    assert!(sent(&told).iter().any(|(_, _, m)| matches!(m, Request::Tell(Gossip::Load { executing: 0, .. }))));
}
