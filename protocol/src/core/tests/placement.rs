//! Modules placed on the owners of their id (`MeshConfig::module_owners`):
//! told to the owners alone, fetched from them where a call needs them,
//! handed to a member that joins and owns them.

use super::*;
use crate::wire::{Load, SyncRequest, SyncResponse};

const MEMBERS: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

/// Node `a` of a six-member view, modules on 2 owners, results without
/// owners (so a call it cannot answer from a peer's store runs here).
fn placing_core() -> TestCore {
    let mut core = new_core("a", MeshConfig { module_owners: 2, owners: 0, ..MeshConfig::default() });
    let actions = core.set_members(0, Arc::new(Members::of(MEMBERS.iter().map(|peer| peer.to_string()))));
    assert!(actions.is_empty(), "nothing held yet, nothing to hand over: {actions:?}");
    core
}

/// The `nth` module whose owners include this node (or, `owned` false, do not).
fn module_owned_here(core: &TestCore, owned: bool, nth: usize) -> ModuleId {
    (0u32..)
        .map(|n| ModuleId::of_bytes(&n.to_le_bytes()))
        .filter(|module| core.module_owners(module).contains(core.local()) == owned)
        .nth(nth)
        .expect("some module")
}

/// Who was told this node holds `module`.
fn told_of(actions: &[Action<String>], module: ModuleId) -> Vec<&str> {
    sent(actions)
        .into_iter()
        .filter(|(_, _, message)| {
            matches!(message, Request::Tell(Gossip::ModuleAvailable { module: told, .. }) if *told == module)
        })
        .map(|(to, _, _)| to)
        .collect()
}

fn fetched_from(actions: &[Action<String>], module: ModuleId) -> Vec<&str> {
    sent(actions)
        .into_iter()
        .filter(|(_, _, message)| matches!(message, Request::FetchSlice { module: asked, .. } if *asked == module))
        .map(|(to, _, _)| to)
        .collect()
}

#[test]
fn a_deploy_is_told_to_the_module_owners_alone_and_only_they_fetch_it() {
    let mut core = placing_core();
    let elsewhere = module_owned_here(&core, false, 0);
    let actions = step(&mut core, Event::ModuleStored { module: elsewhere, size: 100 });
    assert!(!actions.iter().any(|action| matches!(action, Action::Publish(_))), "no mesh-wide news: {actions:?}");
    let mut told = told_of(&actions, elsewhere);
    told.sort_unstable();
    let mut owners = core.module_owners(&elsewhere);
    owners.sort();
    assert_eq!(told, owners, "both owners, and no one else");

    let here = module_owned_here(&core, true, 0);
    let actions = step(&mut core, Event::ModuleStored { module: here, size: 100 });
    let other_owner: Vec<String> = core.module_owners(&here).into_iter().filter(|owner| owner != "a").collect();
    assert_eq!(told_of(&actions, here), other_owner, "the other owner only");

    // Hearing of a module: an owner fetches it ahead of need, anyone else only notes the holder.
    let (owned, not_owned) = (module_owned_here(&core, true, 1), module_owned_here(&core, false, 1));
    assert_eq!(fetched_from(&announce(&mut core, "b", owned, 100), owned), ["b"]);
    assert!(announce(&mut core, "b", not_owned, 100).is_empty());
}

#[test]
fn a_call_fetches_a_module_never_heard_of_from_its_owners_and_tells_no_one() {
    let mut core = placing_core();
    let module = module_owned_here(&core, false, 0);
    let owners = core.module_owners(&module);

    let (to, request, message) = only_sent(&miss(&mut core, 1, &module.to_hex(), b"x"));
    assert_eq!((to.as_str(), &message), (owners[0].as_str(), &Request::FetchSlice { module, slice: SliceIndex::Last }));
    // The best owner lacks it (it just joined, say): the next one is asked.
    let (to, request, _) = only_sent(&respond(&mut core, request, &owners[0], Response::Slice(None)));
    assert_eq!(to, owners[1]);
    let stored = slice(&mut core, request, &owners[1], module, (100, 0), true);
    assert!(matches!(stored.as_slice(), [Action::StoreReceivedModule { module: m, size: 100 }] if *m == module));
    let actions = step(&mut core, Event::ModuleStored { module, size: 100 });
    assert!(told_of(&actions, module).is_empty(), "a copy fetched for a call is nobody's news: {actions:?}");
    flight_of(&actions);

    // A module none of its owners holds is not found, and says so.
    let missing = module_owned_here(&core, false, 1);
    let owners = core.module_owners(&missing);
    let (_, request, _) = only_sent(&miss(&mut core, 2, &missing.to_hex(), b"x"));
    let (_, request, _) = only_sent(&respond(&mut core, request, &owners[0], Response::Slice(None)));
    let actions = respond(&mut core, request, &owners[1], Response::Slice(None));
    assert!(matches!(replies(&actions).as_slice(), [(2, Err(CallError::ModuleNotFound { .. }))]), "{actions:?}");
}

#[test]
fn anti_entropy_tells_a_peer_only_the_modules_it_owns() {
    let mut core = placing_core();
    let modules: Vec<ModuleId> = (0..12u32).map(|n| ModuleId::of_bytes(&n.to_be_bytes())).collect();
    for module in &modules {
        step(&mut core, Event::ModuleStored { module: *module, size: 100 });
    }
    let load = Load::default();
    let request = Request::Sync(SyncRequest { modules_digest: [0; 32], names_digest: [0; 32], load });
    let actions = step(&mut core, Event::PeerRequest { from: "b".into(), inbound: 7, request });
    let [(7, Response::Sync(SyncResponse { modules: Some(listed), .. }))] = responses(&actions).as_slice() else {
        panic!("a sync answer with modules: {actions:?}")
    };
    let owned_by_b: Vec<(ModuleId, u64)> = modules
        .iter()
        .filter(|module| core.module_owners(module).contains(&"b".to_owned()))
        .map(|m| (*m, 100))
        .collect();
    let mut listed = listed.clone();
    listed.sort();
    let mut owned_by_b = owned_by_b;
    owned_by_b.sort();
    assert!(!owned_by_b.is_empty() && owned_by_b.len() < modules.len(), "a test of the filter: {owned_by_b:?}");
    assert_eq!(listed, owned_by_b);
}

#[test]
fn a_member_that_joins_is_told_the_modules_it_now_owns_by_their_other_owners() {
    let mut core = placing_core();
    let module = module_owned_here(&core, true, 0);
    step(&mut core, Event::ModuleStored { module, size: 100 });
    // A newcomer that takes the other owner's place beside this node.
    let newcomer = (0..)
        .map(|n| format!("g{n}"))
        .find(|name| {
            let members = Members::of(MEMBERS.iter().map(|peer| peer.to_string()).chain([name.clone()]));
            let owners = members.module_owners(&module, 2);
            owners.contains(name) && owners.contains(&"a".to_owned())
        })
        .expect("some name");
    let members = Members::of(MEMBERS.iter().map(|peer| peer.to_string()).chain([newcomer.clone()]));
    let actions = core.set_members(0, Arc::new(members));
    assert_eq!(told_of(&actions, module), [newcomer.as_str()]);
}

#[test]
fn a_copy_fetched_for_calls_is_told_to_new_owners_only_when_every_old_owner_is_gone() {
    let mut core = placing_core();
    let module = module_owned_here(&core, false, 0);
    step(&mut core, Event::ModuleStored { module, size: 100 });
    let old_owners = core.module_owners(&module);
    let view_without =
        |gone: &[String]| Members::of(MEMBERS.iter().map(|peer| peer.to_string()).filter(|peer| !gone.contains(peer)));
    // One old owner cut off: the other is still there to tell the new one.
    let actions = core.set_members(0, Arc::new(view_without(&old_owners[..1])));
    assert!(told_of(&actions, module).is_empty(), "{actions:?}");
    // Both cut off (this node's side of a partition has none): the holders here tell the new owners.
    core.set_members(0, Arc::new(view_without(&[])));
    let actions = core.set_members(0, Arc::new(view_without(&old_owners)));
    let new_owners: Vec<String> = core.module_owners(&module).into_iter().filter(|owner| owner != "a").collect();
    let mut told: Vec<&str> = told_of(&actions, module);
    told.sort_unstable();
    let mut expected: Vec<&str> = new_owners.iter().map(String::as_str).collect();
    expected.sort_unstable();
    assert!(!expected.is_empty());
    assert_eq!(told, expected);
}
