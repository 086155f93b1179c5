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
    /// The peers among the waiters: they get the result in their answer, so
    /// it is not sent to them again as owners.
    pub(super) askers: Vec<P>,
    /// A peer's result waiting for confirmation (see `MeshConfig::verify_remote`).
    pub(super) candidate: Option<Candidate>,
    /// Run here because asking its owner would cost more than running it;
    /// its result stays here too (see `Core::proceed`).
    pub(super) kept_here: bool,
}

/// Flights are of two kinds: those of this node's callers, which may ask
/// the key's owner, and those of calls peers sent here, which are answered
/// here (or passed on with one more hop). A caller joins any flight of its
/// call. A peer's call joins a flight that is executing here, or a peers'
/// flight whose hops are at least its own (which passes the call on, if it
/// does, with more hops than it came with). Along any chain of nodes waiting
/// on each other the hops then only rise, to `max_hops`, so the chain cannot
/// close into a circle; a peer's call that can join nothing starts a flight
/// of its own.
pub(super) struct Flights<P> {
    by_id: HashMap<FlightId, Flight<P>>,
    /// The flights of each call. Calls with different limits may end
    /// differently (a fuel limit hit), so only calls with equal key *and*
    /// limits share a flight.
    by_call: HashMap<(CallKey, Limits), Vec<FlightId>>,
    next: u64,
}

impl<P> Flights<P> {
    pub(super) fn new() -> Self {
        Self { by_id: HashMap::new(), by_call: HashMap::new(), next: 0 }
    }

    /// Adds `waiter` (a peer's call if `asker` says which, with its `hops`) to
    /// a flight of this call it may join, if one is under way.
    pub(super) fn join(&mut self, key: CallKey, limits: Limits, waiter: Waiter, asker: Option<P>, hops: u8) -> bool {
        let from_peer = matches!(waiter, Waiter::Peer(_));
        let joinable = |flight: &Flight<P>| {
            let peers_flight = matches!(flight.waiters.first(), Some(Waiter::Peer(_)));
            !from_peer || flight.stage == Stage::Executing || (peers_flight && flight.hops >= hops)
        };
        let ids = self.by_call.get(&(key, limits)).map(Vec::as_slice).unwrap_or_default();
        let Some(id) = ids.iter().copied().find(|id| self.by_id.get(id).is_some_and(joinable)) else { return false };
        let flight = self.by_id.get_mut(&id).expect("flight index is consistent");
        flight.waiters.push(waiter);
        flight.askers.extend(asker);
        true
    }

    pub(super) fn start(&mut self, flight: Flight<P>) -> FlightId {
        let id = FlightId(self.next);
        self.next += 1;
        self.by_call.entry((flight.key, flight.limits)).or_default().push(id);
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
        let call = (flight.key, flight.limits);
        if let Some(ids) = self.by_call.get_mut(&call) {
            ids.retain(|other| *other != id);
            if ids.is_empty() {
                self.by_call.remove(&call);
            }
        }
        Some(flight)
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}
