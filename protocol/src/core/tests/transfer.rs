//! Modules from peers, slice by slice: the last slice first (it proves the
//! size), then the rest a few at a time; a slice that fails verification or
//! does not come costs its holder the fetch, which goes on from another.

use super::*;
use crate::wire::SLICE_BYTES;

/// The slices asked for in `actions`: (to, request, which).
fn slices_asked(actions: &[Action<String>]) -> Vec<(String, RequestId, SliceIndex)> {
    sent(actions)
        .into_iter()
        .filter_map(|(to, request, message)| match message {
            Request::FetchSlice { slice, .. } => Some((to.to_owned(), request, *slice)),
            _ => None,
        })
        .collect()
}

/// The request that asked `to` for slice `index`.
fn request_for(asked: &[(String, RequestId, SliceIndex)], to: &str, index: u64) -> RequestId {
    asked
        .iter()
        .find(|(peer, _, slice)| peer == to && *slice == SliceIndex::At(index))
        .unwrap_or_else(|| panic!("slice {index} was not asked of {to}: {asked:?}"))
        .1
}

fn indexes(asked: &[(String, RequestId, SliceIndex)]) -> Vec<u64> {
    let mut indexes: Vec<u64> = asked
        .iter()
        .map(|(_, _, slice)| match slice {
            SliceIndex::At(index) => *index,
            SliceIndex::Last => u64::MAX,
        })
        .collect();
    indexes.sort();
    indexes
}

/// A core whose caller 1 waits for `module` of `size` bytes, held by b and
/// c; returns the request for its last slice (asked of b).
fn waiting_for(module: ModuleId, size: u64, config: MeshConfig) -> (TestCore, RequestId) {
    let mut core = core_without_module(module, size, config);
    let (to, request, message) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"in"));
    assert_eq!((to.as_str(), message), ("b", Request::FetchSlice { module, slice: SliceIndex::Last }));
    (core, request)
}

fn executions(actions: &[Action<String>]) -> usize {
    actions.iter().filter(|action| matches!(action, Action::Execute { .. })).count()
}

#[test]
fn a_module_of_several_slices_arrives_a_few_slices_at_a_time_then_the_call_runs() {
    let module = ModuleId::of_bytes(b"big");
    let size = 5 * SLICE_BYTES + 7;
    let config = MeshConfig { slices_in_flight: 2, ..no_owners() };
    let (mut core, last) = waiting_for(module, size, config);
    // The last slice proves the size; then the others, two at a time.
    let asked = slices_asked(&slice(&mut core, last, "b", module, (size, 5), true));
    assert_eq!(indexes(&asked), [0, 1]);
    let mut in_flight = asked;
    let mut done = Vec::new();
    let mut stored = Vec::new();
    while let Some((to, request, slice_index)) = in_flight.pop() {
        assert_eq!(to, "b");
        let SliceIndex::At(index) = slice_index else { panic!("the last slice was asked twice") };
        let actions = slice(&mut core, request, "b", module, (size, index), true);
        assert!(penalties(&actions).is_empty());
        done.push(index);
        let more = slices_asked(&actions);
        in_flight.extend(more);
        assert!(in_flight.len() <= 2, "at most two slices in flight: {in_flight:?}");
        stored.extend(actions.into_iter().filter(|action| matches!(action, Action::StoreReceivedModule { .. })));
    }
    done.sort();
    assert_eq!(done, [0, 1, 2, 3, 4], "each slice asked once");
    assert!(
        matches!(stored.as_slice(), [Action::StoreReceivedModule { module: m, size: s }] if *m == module && *s == size),
        "stored once every slice is in: {stored:?}"
    );
    assert_eq!(core.requests_in_progress(), 2, "only the syncs are left");
    // The module is stored: the waiting call runs here.
    assert_eq!(executions(&step(&mut core, Event::ModuleStored { module, size })), 1);
}

#[test]
fn a_slice_that_fails_verification_costs_its_holder_the_fetch_which_goes_on_from_another() {
    let module = ModuleId::of_bytes(b"big");
    let size = 5 * SLICE_BYTES + 1;
    let config = MeshConfig { slices_in_flight: 2, ..no_owners() };
    let (mut core, last) = waiting_for(module, size, config);
    let asked = slices_asked(&slice(&mut core, last, "b", module, (size, 5), true));
    let more = slices_asked(&slice(&mut core, request_for(&asked, "b", 0), "b", module, (size, 0), true));
    assert_eq!(indexes(&more), [2]);
    // b's slice 1 does not verify: b is penalised and dropped after that one slice.
    let caught = slice(&mut core, request_for(&asked, "b", 1), "b", module, (size, 1), false);
    assert!(
        matches!(penalties(&caught).as_slice(), [("b", Misbehaviour::BadModuleBytes { module: m })] if *m == module)
    );
    let from_c = slices_asked(&caught);
    assert!(from_c.iter().all(|(to, _, _)| to == "c"), "nothing more is asked of b: {from_c:?}");
    assert_eq!(indexes(&from_c), [1, 2], "the bad slice and the one still asked of b; not those already in");
    // b's answer to slice 2 comes late: it is not counted, nor stored twice.
    assert!(slice(&mut core, request_for(&more, "b", 2), "b", module, (size, 2), true).is_empty());
    let mut stored = 0;
    let mut in_flight = from_c;
    while let Some((to, request, SliceIndex::At(index))) = in_flight.pop() {
        assert_eq!(to, "c");
        let actions = slice(&mut core, request, "c", module, (size, index), true);
        stored += actions.iter().filter(|action| matches!(action, Action::StoreReceivedModule { .. })).count();
        in_flight.extend(slices_asked(&actions));
    }
    assert_eq!(stored, 1);
    assert_eq!(executions(&step(&mut core, Event::ModuleStored { module, size })), 1);
    let b = core.peers().find(|(peer, _)| *peer == "b").unwrap().1.clone();
    assert_eq!(b.penalty, 1);
    // b is no longer taken for a holder of the module: a call is not forwarded there.
    assert!(core.holders.module(&module).is_some_and(|remote| !remote.holders.contains("b")));
}

#[test]
fn a_liar_is_caught_on_its_first_slice() {
    let module = ModuleId::of_bytes(b"big");
    let size = 100 * SLICE_BYTES;
    let (mut core, last) = waiting_for(module, size, MeshConfig { fetch_for_call_max_bytes: size, ..no_owners() });
    let caught = slice(&mut core, last, "b", module, (size, 99), false);
    assert_eq!(penalties(&caught).len(), 1);
    let (to, _, message) = only_sent(&caught);
    assert_eq!((to.as_str(), message), ("c", Request::FetchSlice { module, slice: SliceIndex::Last }));
}

#[test]
fn a_silent_holders_slice_times_out_and_another_holder_is_asked() {
    let module = ModuleId::of_bytes(b"big");
    let size = 2 * SLICE_BYTES + 1;
    let config = MeshConfig {
        request_timeout_ms: 1000,
        min_transfer_bytes_per_s: SLICE_BYTES,
        slices_in_flight: 2,
        ..no_owners()
    };
    let (mut core, last) = waiting_for(module, size, config);
    let asked = slices_asked(&slice(&mut core, last, "b", module, (size, 2), true));
    assert_eq!(indexes(&asked), [0, 1]);
    // b says nothing more. Each slice may take 1 s, plus 2 s for the two in flight.
    assert_eq!(core.poll_timeout(), Some(1000), "the syncs' deadline");
    assert!(slices_asked(&core.handle(2999, Event::Timeout)).is_empty());
    let retried = core.handle(3000, Event::Timeout);
    assert!(penalties(&retried).is_empty(), "silence is no lie");
    let from_c = slices_asked(&retried);
    assert!(from_c.iter().all(|(to, _, _)| to == "c"), "{from_c:?}");
    assert_eq!(indexes(&from_c), [0, 1]);
    slice(&mut core, request_for(&from_c, "c", 0), "c", module, (size, 0), true);
    let done = slice(&mut core, request_for(&from_c, "c", 1), "c", module, (size, 1), true);
    assert!(matches!(done.as_slice(), [Action::StoreReceivedModule { .. }]), "{done:?}");
    // b's answer after its deadline changes nothing; the download it made
    // (the other one is being stored) is dropped.
    let late = slice(&mut core, request_for(&asked, "b", 0), "b", module, (size, 0), true);
    assert!(matches!(late.as_slice(), [Action::DiscardReceivedModule { .. }]), "{late:?}");
    assert_eq!(executions(&step(&mut core, Event::ModuleStored { module, size })), 1);
}

#[test]
fn when_every_holder_lies_the_call_fails_as_before_and_the_download_is_dropped() {
    let module = ModuleId::of_bytes(b"big");
    let size = 3 * SLICE_BYTES;
    let (mut core, last) = waiting_for(module, size, no_owners());
    let (_, from_c, _) = only_sent(&slice(&mut core, last, "b", module, (size, 2), false));
    let end = slice(&mut core, from_c, "c", module, (size, 2), false);
    assert_eq!(penalties(&end).len(), 1);
    assert!(end.iter().any(|action| matches!(action, Action::DiscardReceivedModule { module: m } if *m == module)));
    match replies(&end).as_slice() {
        [(1, Err(CallError::ModuleNotFound { reference }))] => assert!(reference.contains("unreachable")),
        other => panic!("{other:?}"),
    }
    assert_eq!(core.flights_in_progress(), 0);
    // A slice that comes after the fetch ended made a download no one wants.
    let late = slice(&mut core, last, "b", module, (size, 2), true);
    assert!(matches!(late.as_slice(), [Action::DiscardReceivedModule { module: m }] if *m == module));
}

#[test]
fn a_slice_of_another_index_or_size_than_asked_is_its_senders_lie() {
    let module = ModuleId::of_bytes(b"big");
    let size = 3 * SLICE_BYTES;
    // The last slice answered with the first one (which verifies, but proves nothing).
    let (mut core, last) = waiting_for(module, size, no_owners());
    let caught = slice(&mut core, last, "b", module, (size, 0), true);
    assert_eq!(penalties(&caught).len(), 1);
    let (to, last, _) = only_sent(&caught);
    assert_eq!(to, "c");
    // c proves the size; then claims another size for a slice.
    let asked = slices_asked(&slice(&mut core, last, "c", module, (size, 2), true));
    let request = request_for(&asked, "c", 0);
    let caught = slice(&mut core, request, "c", module, (size + 1, 0), true);
    assert_eq!(penalties(&caught), [("c", &Misbehaviour::BadModuleBytes { module })]);
}

#[test]
fn a_module_proven_bigger_than_this_node_takes_fails_its_calls_as_invalid() {
    let module = ModuleId::of_bytes(b"big");
    let config = MeshConfig { max_module_bytes: 2 * SLICE_BYTES, ..no_owners() };
    // Announced small; its last slice proves otherwise.
    let (mut core, last) = waiting_for(module, 10, config);
    let size = 3 * SLICE_BYTES;
    let end = slice(&mut core, last, "b", module, (size, 2), true);
    assert!(end.iter().any(|action| matches!(action, Action::DiscardReceivedModule { .. })));
    assert!(matches!(replies(&end).as_slice(), [(1, Err(CallError::InvalidModule { .. }))]), "{end:?}");
    assert!(sent(&end).is_empty(), "no other slice is asked for");
}

#[test]
fn a_module_deployed_here_mid_fetch_ends_the_fetch() {
    let module = ModuleId::of_bytes(b"big");
    let size = 3 * SLICE_BYTES;
    let (mut core, last) = waiting_for(module, size, no_owners());
    let asked = slices_asked(&slice(&mut core, last, "b", module, (size, 2), true));
    assert_eq!(indexes(&asked), [0, 1]);
    let open = core.requests_in_progress();
    let deployed = step(&mut core, Event::ModuleStored { module, size });
    assert!(deployed.iter().any(|action| matches!(action, Action::DiscardReceivedModule { .. })));
    assert_eq!(executions(&deployed), 1);
    let told = sent(&deployed).len();
    assert_eq!(core.requests_in_progress(), open - 2 + told, "the two slices asked are forgotten");
    let late = slice(&mut core, request_for(&asked, "b", 0), "b", module, (size, 0), true);
    assert!(matches!(late.as_slice(), [Action::DiscardReceivedModule { .. }]));
}

/// Random schedules: holders that answer, lie, lose the module or the
/// connection, answers that come late or twice, in any order. With one
/// holder that always answers, the module always arrives whole and once, the
/// call runs, every lie costs its teller, no slice is asked past the end,
/// and every download the shell made is ended.
#[test]
fn random_schedules_of_slices_always_end_well() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below
    };
    for _ in 0..500 {
        let module = ModuleId::of_bytes(b"big");
        let size = 1 + random(6 * SLICE_BYTES);
        let window = 1 + random(4) as usize;
        let config = MeshConfig {
            slices_in_flight: window as u32,
            fetch_for_call_max_bytes: u64::MAX,
            replicate_budget_bytes: 0,
            ..no_owners()
        };
        let mut core = new_core("a", config);
        let holders = ["b", "c", "d", "e"];
        for peer in holders {
            connect(&mut core, peer);
            announce(&mut core, peer, module, size);
        }
        let honest = holders[random(4) as usize];
        let mut open: Vec<(String, RequestId, SliceIndex)> = Vec::new();
        let mut answered: Vec<(String, RequestId)> = Vec::new();
        let (mut download, mut stored, mut executed) = (false, false, false);
        let mut actions = miss(&mut core, 1, &module.to_hex(), b"in");
        for _ in 0..10_000 {
            for action in &actions {
                match action {
                    Action::StoreReceivedModule { module: m, size: s } => {
                        assert!(download && !stored && !executed && *m == module && *s == size, "{action:?}");
                        (download, stored) = (false, true);
                    }
                    Action::DiscardReceivedModule { .. } => download = false,
                    Action::Reply { reply, .. } => panic!("the call failed with a holder that answers: {reply:?}"),
                    Action::Execute { .. } => executed = true,
                    _ => {}
                }
            }
            let asked = slices_asked(&actions);
            for (_, _, slice) in &asked {
                if let SliceIndex::At(index) = slice {
                    assert!(*index < crate::wire::slice_count(size) - 1, "slice {index} of a {size}-byte module");
                }
            }
            open.extend(asked);
            // Requests failed or cancelled by what just happened are no longer open.
            open.retain(|(_, request, _)| core.requests.is_open(*request));
            assert!(open.len() <= window, "{} slices in flight", open.len());
            if stored {
                actions = step(&mut core, Event::ModuleStored { module, size });
                stored = false;
                continue;
            }
            if executed && !download && random(3) == 0 {
                break;
            }
            if open.is_empty() || random(5) == 0 {
                // An answer again, after its request ended.
                let Some((to, request)) = answered.pop() else {
                    assert!(!open.is_empty() || executed, "the fetch stalled");
                    if executed {
                        break;
                    }
                    actions = Vec::new();
                    continue;
                };
                download = true;
                actions = slice(&mut core, request, &to, module, (size, 0), true);
                continue;
            }
            let (to, request, which) = open.swap_remove(random(open.len() as u64) as usize);
            let index = match which {
                SliceIndex::Last => crate::wire::slice_count(size) - 1,
                SliceIndex::At(index) => index,
            };
            let outcome = if to == honest { 0 } else { random(6) };
            actions = match outcome {
                0..=2 => {
                    download = true;
                    slice(&mut core, request, &to, module, (size, index), true)
                }
                3 => {
                    download = true;
                    let lie = slice(&mut core, request, &to, module, (size, index), false);
                    assert_eq!(penalties(&lie).len(), 1, "{lie:?}");
                    lie
                }
                4 => step(&mut core, Event::RequestFailed { request, reason: "connection closed".into() }),
                _ => respond(&mut core, request, &to, Response::Slice(None)),
            };
            if random(3) == 0 {
                answered.push((to, request));
            }
        }
        assert!(executed, "the call ran");
        assert!(!download, "a download was left to the shell");
        assert!(core.modules.fetches.is_empty());
    }
}

#[test]
fn a_replication_announced_small_stops_when_its_proven_size_is_over_the_budget() {
    let module = ModuleId::of_bytes(b"big");
    let config = MeshConfig { replicate_budget_bytes: 2 * SLICE_BYTES, ..no_owners() };
    let mut core = new_core("a", config);
    connect(&mut core, "b");
    // A lie of 0 bytes would fit any budget: the fetch starts.
    let asked = slices_asked(&announce(&mut core, "b", module, 0));
    let [(_, last, SliceIndex::Last)] = asked.as_slice() else { panic!("{asked:?}") };
    let size = 5 * SLICE_BYTES;
    let end = slice(&mut core, *last, "b", module, (size, 4), true);
    assert!(end.iter().any(|action| matches!(action, Action::DiscardReceivedModule { .. })), "{end:?}");
    assert!(sent(&end).is_empty(), "no other slice is asked for: {end:?}");
    // The proven size outlives the lie: announcing 0 again starts nothing.
    assert!(announce(&mut core, "b", module, 0).is_empty());
}

#[test]
fn a_replication_within_its_budget_reserves_its_proven_size() {
    let module = ModuleId::of_bytes(b"big");
    let config = MeshConfig { replicate_budget_bytes: 4 * SLICE_BYTES, slices_in_flight: 4, ..no_owners() };
    let mut core = new_core("a", config);
    connect(&mut core, "b");
    let asked = slices_asked(&announce(&mut core, "b", module, 1));
    let [(_, last, SliceIndex::Last)] = asked.as_slice() else { panic!("{asked:?}") };
    let size = 3 * SLICE_BYTES;
    let next = slices_asked(&slice(&mut core, *last, "b", module, (size, 2), true));
    assert_eq!(indexes(&next), [0, 1], "the fetch goes on");
    // What it reserved is the proven size: another module of 2 slices no longer fits.
    let other = ModuleId::of_bytes(b"other");
    assert!(slices_asked(&announce(&mut core, "b", other, 2 * SLICE_BYTES)).is_empty());
}

#[test]
fn a_call_fetch_proven_over_the_fetch_limit_forwards_the_call_instead() {
    let module = ModuleId::of_bytes(b"big");
    let config = MeshConfig { fetch_for_call_max_bytes: 2 * SLICE_BYTES, ..no_owners() };
    let (mut core, last) = waiting_for(module, 10, config);
    let size = 3 * SLICE_BYTES;
    let end = slice(&mut core, last, "b", module, (size, 2), true);
    assert!(end.iter().any(|action| matches!(action, Action::DiscardReceivedModule { .. })), "{end:?}");
    let forwarded: Vec<_> = sent(&end).into_iter().filter(|(_, _, m)| matches!(m, Request::Call { .. })).collect();
    assert_eq!(forwarded.len(), 1, "the call goes to a holder: {end:?}");
    assert!(slices_asked(&end).is_empty());
}
