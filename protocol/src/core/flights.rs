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

pub(super) struct Flights<P> {
    by_id: HashMap<FlightId, Flight<P>>,
    /// Calls with different limits may end differently (a fuel limit hit), so
    /// only calls with equal key *and* limits share a flight.
    by_call: HashMap<(CallKey, Limits), FlightId>,
    next: u64,
}

impl<P> Flights<P> {
    pub(super) fn new() -> Self {
        Self { by_id: HashMap::new(), by_call: HashMap::new(), next: 0 }
    }

    /// Adds `waiter` to the flight of this call if one is under way.
    pub(super) fn join(&mut self, key: CallKey, limits: Limits, waiter: Waiter) -> bool {
        let Some(id) = self.by_call.get(&(key, limits)) else { return false };
        self.by_id.get_mut(id).expect("flight index is consistent").waiters.push(waiter);
        true
    }

    pub(super) fn start(&mut self, flight: Flight<P>) -> FlightId {
        let id = FlightId(self.next);
        self.next += 1;
        self.by_call.insert((flight.key, flight.limits), id);
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
        self.by_call.remove(&(flight.key, flight.limits));
        Some(flight)
    }

    pub(super) fn len(&self) -> usize {
        self.by_id.len()
    }
}
