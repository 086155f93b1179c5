//! Owners that answered a forwarded call slowly: a far or overloaded
//! machine, seen from here. For a while they are asked last, after the
//! key's other owners, so one slow member does not hold the tail of every
//! key it owns (it still stores and serves results as an owner).
//!
//! Slowness is what a call's round trip took beyond the owner's own work:
//! the answer's run time is taken off when the owner ran the call for it,
//! so a long function does not make its owner look slow. Every node judges
//! from its own calls, so a node that has not met the slow owner yet still
//! asks it first, and the key may then run at two owners (both answers are
//! the same: the function is pure).

use std::collections::BTreeMap;

use super::MeshConfig;
use crate::outcome::CacheStatus;
use crate::wire::RemoteAnswer;

pub(super) struct SlowOwners<P> {
    /// Until when (ms) each peer counts as slow: one entry per member at most.
    until: BTreeMap<P, u64>,
}

impl<P: Ord + Clone> SlowOwners<P> {
    pub(super) fn new() -> Self {
        Self { until: BTreeMap::new() }
    }

    /// Judges one answered forward: sent at `sent_ms`, answered at `now_ms`.
    pub(super) fn observe(&mut self, peer: &P, answer: &RemoteAnswer, sent_ms: u64, now_ms: u64, config: &MeshConfig) {
        let round_trip = now_ms.saturating_sub(sent_ms);
        let work_ms = match answer.cache {
            // The peer's own figures: a lying peer may send any.
            CacheStatus::Miss => {
                answer.record.timings.instantiate_us.saturating_add(answer.record.timings.run_us) / 1000
            }
            // Joined another call's run: how long that had left is unknown here.
            CacheStatus::Joined => return,
            CacheStatus::Hit => 0,
        };
        if round_trip.saturating_sub(work_ms) > config.slow_owner_ms {
            self.until.insert(peer.clone(), now_ms.saturating_add(config.slow_owner_for_ms));
        }
    }

    pub(super) fn is_slow(&self, peer: &P, now_ms: u64) -> bool {
        self.until.get(peer).is_some_and(|until| *until > now_ms)
    }
}
