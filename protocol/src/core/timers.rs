//! Every deadline the core keeps, in one ordered set. The shell asks
//! [`Core::poll_timeout`](super::Core::poll_timeout) when to wake the core next
//! and delivers [`Event::Timeout`](super::Event::Timeout) then, as quinn-proto's
//! connection asks its driver: neither shell has a tick of its own.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use super::{FlightId, RequestId};

/// What falls due.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Timer<P> {
    /// A request to a peer that has not been answered in time.
    Request(RequestId),
    /// Anti-entropy with a connected peer.
    Sync(P),
    /// This node's execution load, to tell its neighbours.
    Load,
    /// Results waiting to travel to their owners in batches.
    Handoff,
    /// A call asked of its owner, to run here too if the owner is silent.
    Patience(FlightId),
}

pub(super) struct Timers<P> {
    queue: BTreeSet<(u64, Timer<P>)>,
    due: HashMap<Timer<P>, u64>,
}

impl<P: Clone + Ord + Hash> Timers<P> {
    pub(super) fn new() -> Self {
        Self { queue: BTreeSet::new(), due: HashMap::new() }
    }

    /// Sets (or moves) `timer` to fall due at `at_ms`.
    pub(super) fn set(&mut self, timer: Timer<P>, at_ms: u64) {
        if let Some(previous) = self.due.insert(timer.clone(), at_ms) {
            self.queue.remove(&(previous, timer.clone()));
        }
        self.queue.insert((at_ms, timer));
    }

    pub(super) fn cancel(&mut self, timer: &Timer<P>) {
        if let Some(at) = self.due.remove(timer) {
            self.queue.remove(&(at, timer.clone()));
        }
    }

    pub(super) fn is_set(&self, timer: &Timer<P>) -> bool {
        self.due.contains_key(timer)
    }

    /// When the earliest timer falls due.
    pub(super) fn next(&self) -> Option<u64> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Removes and returns a timer due at `now_ms`, earliest first.
    pub(super) fn pop_due(&mut self, now_ms: u64) -> Option<Timer<P>> {
        let (at, _) = self.queue.first()?;
        if *at > now_ms {
            return None;
        }
        let (_, timer) = self.queue.pop_first()?;
        self.due.remove(&timer);
        Some(timer)
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fall_due_in_order_and_can_move_or_go() {
        let mut timers: Timers<u8> = Timers::new();
        timers.set(Timer::Sync(1), 30);
        timers.set(Timer::Load, 10);
        timers.set(Timer::Request(RequestId(7)), 20);
        timers.set(Timer::Sync(1), 5);
        timers.cancel(&Timer::Load);
        assert_eq!(timers.next(), Some(5));
        assert_eq!(timers.pop_due(4), None);
        assert_eq!(timers.pop_due(25), Some(Timer::Sync(1)));
        assert_eq!(timers.pop_due(25), Some(Timer::Request(RequestId(7))));
        assert_eq!((timers.pop_due(u64::MAX), timers.len()), (None, 0));
    }
}
