//! What this node knows of each peer: whether it is connected, its load, and
//! its penalties.

use std::collections::BTreeMap;

use crate::wire::Load;

#[derive(Debug, Clone, Default)]
pub struct PeerState {
    pub connected: bool,
    pub executing: u32,
    pub capacity: u32,
    /// Misbehaviours seen; a penalised peer is asked last.
    pub penalty: u32,
}

pub(super) struct Peers<P> {
    states: BTreeMap<P, PeerState>,
}

impl<P: Ord + Clone + std::fmt::Display> Peers<P> {
    pub(super) fn new() -> Self {
        Self { states: BTreeMap::new() }
    }

    /// The peer's state, created when first heard of.
    pub(super) fn entry(&mut self, peer: &P) -> &mut PeerState {
        if !self.states.contains_key(peer) {
            self.states.insert(peer.clone(), PeerState::default());
        }
        self.states.get_mut(peer).expect("just inserted")
    }

    pub(super) fn get(&self, peer: &P) -> Option<&PeerState> {
        self.states.get(peer)
    }

    pub(super) fn is_connected(&self, peer: &P) -> bool {
        self.states.get(peer).is_some_and(|state| state.connected)
    }

    pub(super) fn connected(&self) -> impl Iterator<Item = &P> {
        self.states.iter().filter(|(_, state)| state.connected).map(|(peer, _)| peer)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&P, &PeerState)> {
        self.states.iter()
    }

    pub(super) fn note_load(&mut self, peer: &P, load: Load) {
        let state = self.entry(peer);
        state.executing = load.executing;
        state.capacity = load.capacity;
    }

    pub(super) fn penalise(&mut self, peer: &P) {
        let state = self.entry(peer);
        state.penalty = state.penalty.saturating_add(1);
    }

    /// The peer whose name (as it signs records) is `name`. Only disputes
    /// need this, so a scan is fine.
    pub(super) fn named(&self, name: &str) -> Option<P> {
        self.states.keys().find(|peer| peer.to_string() == name).cloned()
    }

    /// Ordering key of a peer to ask: fewest penalties, then lightest load.
    pub(super) fn preference(&self, peer: &P) -> (u32, u32) {
        self.states.get(peer).map_or((0, 0), |state| (state.penalty, state.executing))
    }

    /// A connected peer with spare capacity (by its last announced load).
    pub(super) fn has_spare_capacity(&self, peer: &P) -> bool {
        self.states.get(peer).is_some_and(|state| state.executing < state.capacity.max(1))
    }
}
