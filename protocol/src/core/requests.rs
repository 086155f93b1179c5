//! Requests this node sent to peers and still waits for: what each was for,
//! to route its answer (its deadline is a [`Timer::Request`](super::timers::Timer)).

use std::collections::HashMap;

use super::{FlightId, RequestId};
use crate::ids::ModuleId;
use crate::wire::Response;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A slice of `module`, for its fetch (`modules.rs`).
    FetchSlice {
        module: ModuleId,
    },
    Forward {
        flight: FlightId,
    },
    Sync,
    Tell,
    Store,
}

impl Purpose {
    /// What was asked, for a peer that answers something else.
    pub(super) fn asked(self) -> &'static str {
        match self {
            Purpose::FetchSlice { .. } => "a module slice",
            Purpose::Forward { .. } => "a forwarded call",
            Purpose::Sync => "an anti-entropy request",
            Purpose::Tell => "a tell",
            Purpose::Store => "results to keep",
        }
    }
}

/// What a response is, for a peer that answers the wrong question.
pub(super) fn answered(response: &Response) -> &'static str {
    match response {
        Response::Slice(_) => "a module slice",
        Response::Result(_) => "a result",
        Response::Call(_) => "a call's answer",
        Response::Sync(_) => "an anti-entropy answer",
        Response::Refused(_) => "a refusal",
        Response::Told => "a receipt",
        Response::Stored => "a receipt for results",
    }
}

pub(super) struct Outstanding<P> {
    pub(super) to: P,
    pub(super) purpose: Purpose,
    pub(super) sent_ms: u64,
}

pub(super) struct Requests<P> {
    open: HashMap<RequestId, Outstanding<P>>,
    next: u64,
}

impl<P: PartialEq> Requests<P> {
    pub(super) fn new() -> Self {
        Self { open: HashMap::new(), next: 0 }
    }

    pub(super) fn start(&mut self, to: P, purpose: Purpose, now_ms: u64) -> RequestId {
        let id = RequestId(self.next);
        self.next += 1;
        self.open.insert(id, Outstanding { to, purpose, sent_ms: now_ms });
        id
    }

    /// The request is answered (or failed, or timed out): no longer open.
    pub(super) fn finish(&mut self, id: RequestId) -> Option<Outstanding<P>> {
        self.open.remove(&id)
    }

    /// Requests still open to `peer`.
    pub(super) fn to_peer(&self, peer: &P) -> Vec<RequestId> {
        let mut ids: Vec<RequestId> =
            self.open.iter().filter(|(_, open)| open.to == *peer).map(|(id, _)| *id).collect();
        ids.sort();
        ids
    }

    pub(super) fn len(&self) -> usize {
        self.open.len()
    }

    #[cfg(test)]
    pub(super) fn is_open(&self, id: RequestId) -> bool {
        self.open.contains_key(&id)
    }
}
