//! Which peers hold which modules and results, as their announcements and
//! anti-entropy said.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::ids::{CallKey, ModuleId};

/// The peers known to hold a module (which may be held here too).
#[derive(Debug, Clone, Default)]
pub(super) struct RemoteModule<P> {
    pub(super) size: u64,
    pub(super) holders: BTreeSet<P>,
}

pub(super) struct Holders<P> {
    modules: BTreeMap<ModuleId, RemoteModule<P>>,
    results: RecentResults<P>,
}

impl<P: Ord + Clone> Holders<P> {
    pub(super) fn new(results_capacity: usize) -> Self {
        Self { modules: BTreeMap::new(), results: RecentResults::new(results_capacity) }
    }

    /// Records that `peer` holds `module` of `size` bytes (the peer's claim).
    pub(super) fn learn_module(&mut self, module: ModuleId, size: u64, peer: P) {
        let remote = self.modules.entry(module).or_insert_with(|| RemoteModule { size, holders: BTreeSet::new() });
        remote.size = size;
        remote.holders.insert(peer);
    }

    pub(super) fn forget_module_holder(&mut self, module: &ModuleId, peer: &P) {
        if let Some(remote) = self.modules.get_mut(module) {
            remote.holders.remove(peer);
        }
    }

    pub(super) fn module(&self, module: &ModuleId) -> Option<&RemoteModule<P>> {
        self.modules.get(module)
    }

    pub(super) fn learn_result(&mut self, key: CallKey, peer: P) {
        self.results.insert(key, peer);
    }

    pub(super) fn forget_result_holder(&mut self, key: &CallKey, peer: &P) {
        self.results.remove_holder(key, peer);
    }

    pub(super) fn result_holders(&self, key: &CallKey) -> impl Iterator<Item = &P> {
        self.results.holders(key)
    }
}

/// Holders of peers' results, bounded: the keys heard of longest ago are
/// forgotten first.
struct RecentResults<P> {
    holders: HashMap<CallKey, BTreeSet<P>>,
    /// Keys in the order they were first heard of.
    order: VecDeque<CallKey>,
    capacity: usize,
}

impl<P: Ord> RecentResults<P> {
    fn new(capacity: usize) -> Self {
        Self { holders: HashMap::new(), order: VecDeque::new(), capacity }
    }

    fn insert(&mut self, key: CallKey, peer: P) {
        self.holders
            .entry(key)
            .or_insert_with(|| {
                self.order.push_back(key);
                BTreeSet::new()
            })
            .insert(peer);
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.holders.remove(&oldest);
            }
        }
    }

    fn remove_holder(&mut self, key: &CallKey, peer: &P) {
        if let Some(holders) = self.holders.get_mut(key) {
            holders.remove(peer);
        }
    }

    fn holders(&self, key: &CallKey) -> impl Iterator<Item = &P> {
        self.holders.get(key).into_iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_holders_are_bounded_oldest_key_first() {
        let mut holders: Holders<u8> = Holders::new(2);
        let key = |n: u8| CallKey::new(&ModuleId::of_bytes(b"m"), &[n]);
        holders.learn_result(key(1), 1);
        holders.learn_result(key(2), 1);
        holders.learn_result(key(1), 2);
        holders.learn_result(key(3), 1);
        assert_eq!(holders.result_holders(&key(1)).count(), 0, "the oldest key went");
        assert_eq!(holders.result_holders(&key(3)).collect::<Vec<_>>(), vec![&1]);
        holders.forget_result_holder(&key(3), &1);
        assert_eq!(holders.result_holders(&key(3)).count(), 0);
    }
}
