//! Results travel to their owners: replicas of what this node computed,
//! handoffs to a peer that connects and owns results held here, and the
//! results peers send this node to keep.

use std::sync::Arc;

use super::requests::Purpose;
use super::timers::Timer;
use super::{Action, Core, InboundId, PeerKey};
use crate::ids::CallKey;
use crate::outcome::ExecutionRecord;
use crate::wire::{Request, Response, StoredResult};

impl<P: PeerKey> Core<P> {
    /// Queues `record` for `owner`; the batch goes when it is full or when
    /// the handoff timer falls due.
    pub(super) fn hand_over(&mut self, owner: P, key: CallKey, record: &ExecutionRecord) -> Vec<Action<P>> {
        if let Some(batch) = self.handoff.queue(&owner, key, record) {
            return self.send_batch(owner, batch);
        }
        if self.handoff.has_batches() && !self.timers.is_set(&Timer::Handoff) {
            self.timers.set(Timer::Handoff, self.now_ms.saturating_add(self.config.handoff_interval_ms));
        }
        Vec::new()
    }

    /// Every waiting batch goes (the handoff timer fell due).
    pub(super) fn send_batches(&mut self) -> Vec<Action<P>> {
        let batches = self.handoff.take_all();
        batches.into_iter().flat_map(|(owner, batch)| self.send_batch(owner, batch)).collect()
    }

    fn send_batch(&mut self, owner: P, batch: Vec<StoredResult>) -> Vec<Action<P>> {
        if !self.reachable(&owner) {
            // Gone meanwhile: it gets them again when it connects (they are recent here).
            return Vec::new();
        }
        let timeout = self.config.request_timeout_ms;
        vec![self.send(owner, Request::Store(batch), Purpose::Store, timeout)]
    }

    /// A peer connected: it becomes an owner of some results held here
    /// (after a heal, its restart or its first start); it gets the recent ones.
    pub(super) fn hand_over_to_new_member(&mut self, peer: &P) -> Vec<Action<P>> {
        let owed: Vec<(CallKey, Arc<ExecutionRecord>)> =
            self.handoff.recent().filter(|(key, _)| self.owners(key).contains(peer)).cloned().collect();
        owed.into_iter().flat_map(|(key, record)| self.hand_over(peer.clone(), key, &record)).collect()
    }

    /// A peer sends results for this node to keep. Their signatures are
    /// checked together (cheaper than one by one), then each is judged like
    /// any record a peer sends; a forged one ends the batch and costs the peer.
    /// A node that confirms peers' results (`verify_remote`) keeps none:
    /// nothing would confirm them.
    pub(super) fn on_store_request(&mut self, from: P, inbound: InboundId, batch: Vec<StoredResult>) -> Vec<Action<P>> {
        if self.config.verify_remote > 0 {
            let reason = "this node keeps only results it confirmed".to_owned();
            return vec![Action::Respond { inbound, response: Response::Refused(reason) }];
        }
        let checks: Vec<(&CallKey, &ExecutionRecord)> =
            batch.iter().map(|stored| (&stored.key, &stored.record)).collect();
        let verdicts = self.signatures.verify_all(&checks);
        let mut actions = Vec::new();
        for (StoredResult { key, record }, verdict) in batch.into_iter().zip(verdicts) {
            match self.judge_checked_record(&from, None, record, verdict) {
                Ok(record) if record.outcome.is_cacheable() => {
                    let record = Arc::new(record);
                    self.handoff.remember(key, record.clone());
                    actions.push(Action::StoreResult { key, record });
                }
                Ok(_) => {}
                Err(penalty) => {
                    actions.push(*penalty);
                    actions.push(Action::Respond { inbound, response: Response::Refused("a forged result".into()) });
                    return actions;
                }
            }
        }
        actions.push(Action::Respond { inbound, response: Response::Stored });
        actions
    }
}
