//! Which peers hold which modules, as their announcements and anti-entropy
//! said. (Results have owners instead: see `owners.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::ModuleId;

/// The peers known to hold a module (which may be held here too).
#[derive(Debug, Clone, Default)]
pub(super) struct RemoteModule<P> {
    pub(super) size: u64,
    pub(super) holders: BTreeSet<P>,
}

pub(super) struct Holders<P> {
    modules: BTreeMap<ModuleId, RemoteModule<P>>,
}

impl<P: Ord + Clone> Holders<P> {
    pub(super) fn new() -> Self {
        Self { modules: BTreeMap::new() }
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
}
