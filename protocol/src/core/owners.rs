//! Who owns a call's result: rendezvous (highest random weight) hashing of
//! the call key over the members: this node and the peers it is connected
//! to, or a membership view the shell gives (`Core::set_members`, for meshes
//! too big to connect everyone). Each member's weight for a key is a hash of the key and the member's
//! name; the `k` highest weights are the key's owners, best first.
//!
//! Why rendezvous rather than a ring: no virtual nodes to tune, the keys
//! spread evenly over the members, and a member joining or leaving moves
//! only the keys it gains or loses (about k/N of them). The price is a scan
//! of the members per call: one multiply-xor per member (about 10 µs at
//! 10,000 members), where a ring needs a binary search.
//!
//! Modules placed on owners (`MeshConfig::module_owners`) use the same
//! hashing, with the module id as the key.

use crate::ids::{CallKey, ModuleId};

#[derive(Debug, Clone)]
pub struct Members<P> {
    /// Every member with the seed of its weights (from its name); sorted by
    /// peer, so that a membership has one order whatever the order of joins.
    members: Vec<(P, u64)>,
}

impl<P: Ord + Clone + std::fmt::Display> Members<P> {
    pub fn new(local: &P) -> Self {
        Self { members: vec![(local.clone(), seed(&local.to_string()))] }
    }

    /// A membership of these peers (a view the shell keeps).
    pub fn of(peers: impl IntoIterator<Item = P>) -> Self {
        let mut members: Vec<(P, u64)> =
            peers.into_iter().map(|peer| (peer.clone(), seed(&peer.to_string()))).collect();
        members.sort_by(|(a, _), (b, _)| a.cmp(b));
        members.dedup_by(|(a, _), (b, _)| a == b);
        Self { members }
    }

    pub fn contains(&self, peer: &P) -> bool {
        self.members.binary_search_by(|(member, _)| member.cmp(peer)).is_ok()
    }

    pub fn iter(&self) -> impl Iterator<Item = &P> {
        self.members.iter().map(|(member, _)| member)
    }

    pub(super) fn join(&mut self, peer: &P) {
        if let Err(at) = self.members.binary_search_by(|(member, _)| member.cmp(peer)) {
            self.members.insert(at, (peer.clone(), seed(&peer.to_string())));
        }
    }

    pub(super) fn leave(&mut self, peer: &P) {
        if let Ok(at) = self.members.binary_search_by(|(member, _)| member.cmp(peer)) {
            self.members.remove(at);
        }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The `k` owners of `key`, best first (fewer if there are fewer members).
    pub fn owners(&self, key: &CallKey, k: usize) -> Vec<P> {
        self.owners_of(point(key.as_bytes()), k)
    }

    /// The `k` owners of a module (`MeshConfig::module_owners`), best first.
    pub fn module_owners(&self, module: &ModuleId, k: usize) -> Vec<P> {
        self.owners_of(point(module.as_bytes()), k)
    }

    fn owners_of(&self, point: u64, k: usize) -> Vec<P> {
        if k == 0 {
            return Vec::new();
        }
        let mut best: Vec<(u64, &P)> = Vec::with_capacity(k + 1);
        for (member, seed) in &self.members {
            let weight = mix(point ^ seed);
            if best.len() == k && best.last().is_some_and(|(lowest, _)| *lowest >= weight) {
                continue;
            }
            let at = best.partition_point(|(higher, _)| *higher >= weight);
            best.insert(at, (weight, member));
            best.truncate(k);
        }
        best.into_iter().map(|(_, member)| member.clone()).collect()
    }
}

/// A member's seed: the first 8 bytes of the BLAKE3 hash of its name, so every
/// node derives the same weights for it.
fn seed(name: &str) -> u64 {
    let hash = blake3::hash(name.as_bytes());
    u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Call keys and module ids are BLAKE3 hashes: their first 8 bytes are uniform.
fn point(hash: &[u8; 32]) -> u64 {
    u64::from_le_bytes(hash[..8].try_into().expect("8 bytes"))
}

/// splitmix64's finaliser: a bijection that spreads every input bit over the
/// output, so `point ^ seed` gives independent weights per member.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(count: u32) -> Members<String> {
        let mut members = Members::new(&"n0".to_owned());
        for n in 1..count {
            members.join(&format!("n{n}"));
        }
        members
    }

    fn keys(count: u32) -> Vec<CallKey> {
        let module = ModuleId::of_bytes(b"m");
        (0..count).map(|n| CallKey::new(&module, &n.to_le_bytes())).collect()
    }

    #[test]
    fn owners_are_distinct_best_first_and_the_same_whatever_the_join_order() {
        let forward = members(10);
        let mut backward = Members::new(&"n9".to_owned());
        for n in (0..9).rev() {
            backward.join(&format!("n{n}"));
        }
        backward.join(&"n3".to_owned());
        assert_eq!(backward.len(), 10, "joining twice changes nothing");
        for key in keys(100) {
            let owners = forward.owners(&key, 3);
            assert_eq!(owners, backward.owners(&key, 3));
            let mut distinct = owners.clone();
            distinct.sort();
            distinct.dedup();
            assert_eq!(distinct.len(), 3);
            assert_eq!(forward.owners(&key, 1), owners[..1], "the best owner leads every list");
        }
        assert_eq!(members(2).owners(&keys(1)[0], 3).len(), 2, "fewer members than owners: all of them");
    }

    #[test]
    fn keys_spread_evenly_and_a_leaving_member_moves_only_its_own_keys() {
        let mut mesh = members(10);
        let keys = keys(10_000);
        let mut primaries = std::collections::BTreeMap::<String, u32>::new();
        for key in &keys {
            *primaries.entry(mesh.owners(key, 1).remove(0)).or_default() += 1;
        }
        // 1,000 each on average; a fair share within 20% for every member.
        assert!(primaries.values().all(|count| (800..=1200).contains(count)), "{primaries:?}");

        let before: Vec<Vec<String>> = keys.iter().map(|key| mesh.owners(key, 3)).collect();
        mesh.leave(&"n4".to_owned());
        for (key, before) in keys.iter().zip(&before) {
            let after = mesh.owners(key, 3);
            let kept: Vec<&String> = before.iter().filter(|owner| *owner != "n4").collect();
            // The owners that stay keep their order; one more joins at the end if n4 left the list.
            assert_eq!(after.iter().take(kept.len()).collect::<Vec<_>>(), kept);
        }
    }
}
