//! The bugs the fuzzer found in the mesh core, each replayed directly (the
//! raw inputs under `fuzz/regressions/` depend on how the fuzz harness reads
//! its bytes, which changes as the harness grows; these tests do not).

use nebula_protocol::wire::{Gossip, Request};
use nebula_protocol::{
    Action, CallError, Core, Event, MeshConfig, ModelledSignatures, ModuleId, NameRecord, Verdict, validate_name,
};

fn core(config: MeshConfig) -> Core<String> {
    Core::new("local".to_owned(), config, Box::new(ModelledSignatures))
}

fn gossip(core: &mut Core<String>, from: &str, gossip: Gossip) -> Vec<Action<String>> {
    core.handle(0, Event::GossipReceived { from: from.into(), message: 1, gossip: Ok(gossip) })
}

fn fetches(actions: &[Action<String>]) -> usize {
    actions.iter().filter(|action| matches!(action, Action::Send { message: Request::FetchSlice { .. }, .. })).count()
}

/// Found by `core_peer_messages`: a peer's name record was adopted (and
/// persisted, and passed on) whatever its name, so a peer could plant a
/// hex name such as `3f2a` that shadows every module hash starting so.
#[test]
fn names_from_peers_are_validated_like_local_ones() {
    let mut core = core(MeshConfig::default());
    let module = ModuleId::of_bytes(b"planted");
    for name in ["", "3f2a", "Fib", "<script>", &"x".repeat(10_000)] {
        let record = NameRecord { name: name.into(), module, version: 1, publisher: "peer".into() };
        let actions = gossip(&mut core, "peer", Gossip::Name(record.clone()));
        assert!(
            matches!(
                actions.as_slice(),
                [Action::GossipVerdict { verdict: Verdict::Reject, .. }, Action::Penalise { .. }]
            ),
            "{name:?} adopted: {actions:?}"
        );
        assert!(!core.restore_name(record), "{name:?} merged");
    }
    assert_eq!(core.names().count(), 0);
    let record = NameRecord { name: "fib".into(), module, version: 1, publisher: "peer".into() };
    let actions = gossip(&mut core, "peer", Gossip::Name(record));
    assert!(matches!(
        actions.as_slice(),
        [Action::GossipVerdict { verdict: Verdict::Accept, .. }, Action::PersistName(_)]
    ));
    assert!(core.names().all(|record| validate_name(&record.name).is_ok()));
}

/// Found by `core_peer_messages`: a module announced with a size near
/// u64::MAX overflowed the replication budget check (a panic in debug
/// builds, a wrapped sum that let the fetch through in release ones).
#[test]
fn an_absurd_module_size_does_not_overflow_the_replication_budget() {
    let mut core = core(MeshConfig::default());
    core.handle(0, Event::PeerConnected { peer: "peer".into() });
    let small = ModuleId::of_bytes(b"small");
    assert_eq!(fetches(&gossip(&mut core, "peer", Gossip::ModuleAvailable { module: small, size: 1 << 20 })), 1);
    let huge = ModuleId::of_bytes(b"huge");
    let actions = gossip(&mut core, "peer", Gossip::ModuleAvailable { module: huge, size: u64::MAX });
    assert_eq!(fetches(&actions), 0, "a module over the budget is not replicated: {actions:?}");
}

/// Found by `core_peer_messages` and `http_input`: after a peer published a
/// name at version u64::MAX, re-pointing that name here overflowed the
/// version counter (a panic in debug builds; in release, version 0, which
/// loses to every record and so silently never took effect).
#[test]
fn a_name_at_the_last_version_is_refused_not_wrapped() {
    let mut core = core(MeshConfig::default());
    let module = ModuleId::of_bytes(b"m");
    core.restore_module(module, 1);
    let record = NameRecord { name: "fib".into(), module, version: u64::MAX, publisher: "peer".into() };
    assert!(core.restore_name(record));
    match core.publish_name("fib", &module.to_hex()) {
        Err(CallError::InvalidName { name, reason }) => {
            assert!(name == "fib" && reason.contains("version"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let (record, _) = core.publish_name("add", &module.to_hex()).expect("other names still work");
    assert_eq!(record.version, 1);
}

/// Found by `core_peer_messages` in the 150 s campaign: with a replication
/// budget of u64::MAX ("unlimited"), the saturated sum still fit, and
/// reserving the module's bytes then overflowed the running total.
#[test]
fn an_unlimited_replication_budget_does_not_overflow() {
    let mut core = core(MeshConfig { replicate_budget_bytes: u64::MAX, ..MeshConfig::default() });
    core.handle(0, Event::PeerConnected { peer: "peer".into() });
    for (name, size) in [(&b"one"[..], 1 << 20), (b"two", u64::MAX)] {
        let module = ModuleId::of_bytes(name);
        gossip(&mut core, "peer", Gossip::ModuleAvailable { module, size });
    }
}
