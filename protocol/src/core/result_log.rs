//! The results executed here, numbered, so that a peer's anti-entropy asks
//! only for what is new since its cursor.

use std::collections::VecDeque;

use crate::wire::ResultRef;

/// Results sent per anti-entropy answer; more follow in the next round.
pub(super) const SYNC_RESULTS_BATCH: usize = 1_000;

pub(super) struct ResultLog {
    entries: VecDeque<(u64, ResultRef)>,
    next_seq: u64,
    capacity: usize,
}

/// One anti-entropy answer's share of the log.
pub(super) struct Batch {
    pub(super) results: Vec<ResultRef>,
    /// Cursor to ask from next time.
    pub(super) next: u64,
    pub(super) more: bool,
}

impl ResultLog {
    pub(super) fn new(capacity: usize) -> Self {
        Self { entries: VecDeque::new(), next_seq: 1, capacity }
    }

    pub(super) fn append(&mut self, reference: ResultRef) {
        self.entries.push_back((self.next_seq, reference));
        self.next_seq += 1;
        if self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    /// What follows `cursor`, at most one batch of it.
    pub(super) fn since(&self, cursor: u64) -> Batch {
        // Sequence numbers rise by one, so the first entry past the cursor is found by arithmetic.
        let first = self.entries.front().map_or(0, |(seq, _)| *seq);
        let skip = usize::try_from(cursor.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX);
        let pending = self.entries.len().saturating_sub(skip);
        let results: Vec<ResultRef> =
            self.entries.iter().skip(skip).take(SYNC_RESULTS_BATCH).map(|(_, r)| r.clone()).collect();
        let next = match results.len() {
            0 => cursor,
            n => self.entries[skip + n - 1].0,
        };
        Batch { more: pending > results.len(), results, next }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{CallKey, ModuleId};

    fn reference(n: u32) -> ResultRef {
        let module = ModuleId::of_bytes(b"m");
        ResultRef { key: CallKey::new(&module, &n.to_le_bytes()), module, size: 1 }
    }

    #[test]
    fn a_cursor_reads_what_is_new_in_batches_and_the_log_is_bounded() {
        let mut log = ResultLog::new(SYNC_RESULTS_BATCH + 10);
        for n in 0..(SYNC_RESULTS_BATCH as u32 + 20) {
            log.append(reference(n));
        }
        // Entries 1..=10 fell off the front.
        let first = log.since(0);
        assert_eq!((first.results.len(), first.more), (SYNC_RESULTS_BATCH, true));
        assert_eq!(first.results[0], reference(10));
        let second = log.since(first.next);
        assert_eq!((second.results.len(), second.more), (10, false));
        let none = log.since(second.next);
        assert_eq!((none.results.len(), none.more, none.next), (0, false, second.next));
    }
}
