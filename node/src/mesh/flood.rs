//! A budget of messages per peer (gossip and requests together), refilled
//! continuously: what a peer sends beyond it is dropped before it reaches the
//! core, so a flooding peer costs little and cannot crowd out the others.
//! Honest peers stay far below it: their gossip is one announcement per
//! module, name change, load change or result.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;

pub struct PeerBudgets {
    per_second: f64,
    burst: f64,
    buckets: HashMap<PeerId, Bucket>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl PeerBudgets {
    /// `per_second` messages sustained; bursts of twice that.
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Self { per_second, burst: 2.0 * per_second, buckets: HashMap::new() }
    }

    /// Spends one message of `peer`'s budget; false when it is used up.
    pub fn allow(&mut self, peer: PeerId, now: Instant) -> bool {
        let bucket = self.buckets.entry(peer).or_insert(Bucket { tokens: self.burst, refilled: now });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    /// A disconnected peer's budget is forgotten (and full again if it returns).
    pub fn forget(&mut self, peer: &PeerId) {
        self.buckets.remove(peer);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_peer_gets_its_burst_then_its_rate_and_others_are_unaffected() {
        let mut budgets = PeerBudgets::new(10);
        let (flooder, quiet) = (PeerId::random(), PeerId::random());
        let start = Instant::now();
        let allowed = (0..100).filter(|_| budgets.allow(flooder, start)).count();
        assert_eq!(allowed, 20, "the burst is twice the rate");
        assert!(budgets.allow(quiet, start), "another peer has its own budget");
        // Half a second later, five more.
        let later = start + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| budgets.allow(flooder, later)).count(), 5);
        budgets.forget(&flooder);
        assert!(budgets.allow(flooder, later));
    }
}
