//! Calls in progress: one flight per distinct call (key and limits), shared
//! by every caller (local or a peer) that asked for it meanwhile.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::verify::Candidate;
use super::{CallerId, FlightId, InboundId};
use crate::ids::{CallKey, ModuleId};
use crate::limits::Limits;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    LookingUp,
    FetchingResult,
    AwaitingModule,
    Executing,
    Forwarded,
}

/// Who waits for a flight's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiter {
    Local(CallerId),
    /// A peer that forwarded the call here.
    Peer(InboundId),
}

pub(super) struct Flight<P> {
    pub(super) key: CallKey,
    pub(super) module: ModuleId,
    pub(super) input: Arc<[u8]>,
    pub(super) limits: Limits,
    pub(super) hops: u8,
    pub(super) stage: Stage,
    /// Peers that failed this flight (fetch or forward); not asked again.
    pub(super) tried: BTreeSet<P>,
    /// The first waiter started the flight; later ones joined it.
    pub(super) waiters: Vec<Waiter>,
    /// A peer's result waiting for confirmation (see `MeshConfig::verify_remote`).
    pub(super) candidate: Option<Candidate>,
}

/// Flights are of two kinds: those of this node's callers, which may ask
/// the key's owner, and those of calls peers sent here, which are answered
/// here (or passed on with one more hop). A caller joins either kind; a peer
/// joins the second, or the first once it is executing here. So a flight
/// that may wait on another node is never joined by that node's own request,
/// and nodes cannot wait on each other in a circle (the hops of passed-on
/// calls only rise, to `max_hops`).
pub(super) struct Flights<P> {
    by_id: HashMap<FlightId, Flight<P>>,
    /// Calls with different limits may end differently (a fuel limit hit), so
    /// only calls with equal key *and* limits share a flight; `true` marks
    /// the flight of calls from peers.
    by_call: HashMap<(CallKey, Limits, bool), FlightId>,
    next: u64,
}

impl<P> Flights<P> {
    pub(super) fn new() -> Self {
        Self { by_id: HashMap::new(), by_call: HashMap::new(), next: 0 }
    }

    /// Adds `waiter` (with its `hops`) to a flight of this call it may join, if one is under way.
    pub(super) fn join(&mut self, key: CallKey, limits: Limits, waiter: Waiter, hops: u8) -> bool {
        let from_peer = matches!(waiter, Waiter::Peer(_));
        let callers = self
            .by_call
            .get(&(key, limits, false))
            .filter(|id| !from_peer || self.by_id.get(id).is_some_and(|flight| flight.stage == Stage::Executing));
        let Some(id) = self.by_call.get(&(key, limits, true)).or(callers) else { return false };
        let flight = self.by_id.get_mut(id).expect("flight index is consistent");
        flight.waiters.push(waiter);
        flight.hops = flight.hops.max(hops);
        true
    }

    pub(super) fn start(&mut self, flight: Flight<P>) -> FlightId {
        let id = FlightId(self.next);
        self.next += 1;
        let from_peer = matches!(flight.waiters.first(), Some(Waiter::Peer(_)));
        self.by_call.insert((flight.key, flight.limits, from_peer), id);
        self.by_id.insert(id, flight);
        id
    }

    pub(super) fn get(&self, id: FlightId) -> Option<&Flight<P>> {
        self.by_id.get(&id)
    }

    pub(super) fn get_mut(&mut self, id: FlightId) -> Option<&mut Flight<P>> {
        self.by_id.get_mut(&id)
    }

    pub(super) fn set_stage(&mut self, id: FlightId, stage: Stage) {
        if let Some(flight) = self.by_id.get_mut(&id) {
            flight.stage = stage;
        }
    }

    /// Removes a finished flight from both indexes.
    pub(super) fn land(&mut self, id: FlightId) -> Option<Flight<P>> {
        let flight = self.by_id.remove(&id)?;
        let from_peer = matches!(flight.waiters.first(), Some(Waiter::Peer(_)));
        self.by_call.remove(&(flight.key, flight.limits, from_peer));
        Some(flight)
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}
