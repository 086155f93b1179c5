//! Which peers hold which modules, as their announcements and anti-entropy
//! said. (Results have owners instead: see `owners.rs`.)

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::ModuleId;

/// The peers known to hold a module (which may be held here too).
#[derive(Debug, Clone)]
pub(super) struct RemoteModule<P> {
    pub(super) size: u64,
    /// `size` was proven by a verified last slice: claims no longer change it.
    proven: bool,
    pub(super) holders: BTreeSet<P>,
}

pub(super) struct Holders<P> {
    modules: BTreeMap<ModuleId, RemoteModule<P>>,
}

impl<P: Ord + Clone> Holders<P> {
    pub(super) fn new() -> Self {
        Self { modules: BTreeMap::new() }
    }

    /// Records that `peer` holds `module` of `size` bytes (the peer's
    /// claim, kept until a fetch proves the size).
    pub(super) fn learn_module(&mut self, module: ModuleId, size: u64, peer: P) {
        let remote = self.entry(module, size);
        if !remote.proven {
            remote.size = size;
        }
        remote.holders.insert(peer);
    }

    /// The size a verified last slice proved: later claims cannot change it.
    pub(super) fn prove_module_size(&mut self, module: ModuleId, size: u64) {
        let remote = self.entry(module, size);
        remote.size = size;
        remote.proven = true;
    }

    fn entry(&mut self, module: ModuleId, size: u64) -> &mut RemoteModule<P> {
        self.modules.entry(module).or_insert_with(|| RemoteModule { size, proven: false, holders: BTreeSet::new() })
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
