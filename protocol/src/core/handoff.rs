//! Results on their way to their owners: the other owners of a result this
//! node computed or stores, and owners that were out of reach when it was
//! computed (handed over when they connect: after a heal, a restart or a
//! join). Results to one peer travel in batches, so a replica costs its
//! owner one request per batch, not one per call.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::ids::CallKey;
use crate::outcome::{ExecutionRecord, Outcome};
use crate::wire::{MAX_REQUEST_BYTES, StoredResult};

/// A batch goes at once when it holds this many results…
const BATCH_RESULTS: usize = 256;
/// …or this many bytes (well inside a request frame).
const BATCH_BYTES: usize = MAX_REQUEST_BYTES / 2;
/// Room for a record's fields besides its output.
const RECORD_OVERHEAD_BYTES: usize = 256;

pub(super) struct Handoff<P> {
    /// The latest results held here, newest last: a peer that connects gets
    /// those it owns. Bounded: older ones stay where they are stored.
    recent: VecDeque<(CallKey, Arc<ExecutionRecord>)>,
    capacity: usize,
    /// Results waiting for the next batch to each peer, and their size.
    batches: BTreeMap<P, (Vec<StoredResult>, usize)>,
}

impl<P: Ord + Clone> Handoff<P> {
    pub(super) fn new(capacity: usize) -> Self {
        Self { recent: VecDeque::new(), capacity, batches: BTreeMap::new() }
    }

    /// A result now held here.
    pub(super) fn remember(&mut self, key: CallKey, record: Arc<ExecutionRecord>) {
        self.recent.push_back((key, record));
        if self.recent.len() > self.capacity {
            self.recent.pop_front();
        }
    }

    pub(super) fn recent(&self) -> impl Iterator<Item = &(CallKey, Arc<ExecutionRecord>)> {
        self.recent.iter()
    }

    /// Adds a result to the next batch to `peer`; returns the batch if it is
    /// full and must go now. A result too big for any request stays here.
    pub(super) fn queue(&mut self, peer: &P, key: CallKey, record: &ExecutionRecord) -> Option<Vec<StoredResult>> {
        let size = RECORD_OVERHEAD_BYTES
            + match &record.outcome {
                Outcome::Success { stdout } => stdout.len(),
                Outcome::Failed(_) => 0,
            };
        if size > BATCH_BYTES {
            return None;
        }
        let full = self.batches.get(peer).is_some_and(|(_, bytes)| bytes + size > BATCH_BYTES);
        let flushed = if full { self.take(peer) } else { None };
        let (batch, bytes) = self.batches.entry(peer.clone()).or_default();
        batch.push(StoredResult { key, record: record.clone() });
        *bytes += size;
        match (flushed, batch.len() >= BATCH_RESULTS) {
            (Some(flushed), _) => Some(flushed),
            (None, true) => self.take(peer),
            (None, false) => None,
        }
    }

    pub(super) fn take(&mut self, peer: &P) -> Option<Vec<StoredResult>> {
        self.batches.remove(peer).map(|(batch, _)| batch)
    }

    /// Every waiting batch, emptied.
    pub(super) fn take_all(&mut self) -> Vec<(P, Vec<StoredResult>)> {
        std::mem::take(&mut self.batches).into_iter().map(|(peer, (batch, _))| (peer, batch)).collect()
    }

    pub(super) fn forget_peer(&mut self, peer: &P) {
        self.batches.remove(peer);
    }

    pub(super) fn has_batches(&self) -> bool {
        !self.batches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ModuleId;
    use crate::outcome::Timings;

    fn record(output_bytes: usize) -> ExecutionRecord {
        ExecutionRecord {
            module: ModuleId::of_bytes(b"m"),
            outcome: Outcome::Success { stdout: vec![7; output_bytes] },
            fuel_used: 1,
            timings: Timings::default(),
            executed_by: "a".into(),
            signature: Vec::new(),
        }
    }

    fn key(n: usize) -> CallKey {
        CallKey::new(&ModuleId::of_bytes(b"m"), &n.to_le_bytes())
    }

    #[test]
    fn batches_go_when_full_by_count_or_bytes_and_recent_results_are_bounded() {
        let mut handoff: Handoff<u8> = Handoff::new(2);
        for n in 0..BATCH_RESULTS - 1 {
            assert!(handoff.queue(&1, key(n), &record(1)).is_none());
        }
        assert_eq!(handoff.queue(&1, key(0), &record(1)).map(|batch| batch.len()), Some(BATCH_RESULTS));
        assert!(!handoff.has_batches());

        let big = BATCH_BYTES / 2;
        assert!(handoff.queue(&2, key(1), &record(big)).is_none());
        let flushed = handoff.queue(&2, key(2), &record(big)).expect("the first goes to make room");
        assert_eq!(flushed.len(), 1);
        assert!(handoff.queue(&2, key(3), &record(BATCH_BYTES)).is_none(), "too big for any batch");
        assert_eq!(handoff.take_all().iter().map(|(peer, batch)| (*peer, batch.len())).collect::<Vec<_>>(), [(2, 1)]);

        for n in 0..3 {
            handoff.remember(key(n), Arc::new(record(1)));
        }
        assert_eq!(handoff.recent().map(|(key, _)| *key).collect::<Vec<_>>(), [key(1), key(2)]);
    }
}
