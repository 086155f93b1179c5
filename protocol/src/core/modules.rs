//! The modules held here, the fetches under way, and the replication budget.

use std::collections::{BTreeMap, BTreeSet};

use super::{FlightId, RequestId};
use crate::ids::ModuleId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleInfo {
    pub size: u64,
}

/// A module being fetched from a peer (for calls waiting on it, or ahead of need).
pub(super) struct ModuleFetch<P> {
    pub(super) from: P,
    pub(super) request: RequestId,
    pub(super) tried: BTreeSet<P>,
    /// Calls waiting for the module; empty for a background replication.
    pub(super) flights: Vec<FlightId>,
    /// Bytes reserved from the replication budget (0 for a fetch a call needed).
    pub(super) budgeted: u64,
}

pub(super) struct Modules<P> {
    held: BTreeMap<ModuleId, ModuleInfo>,
    pub(super) fetches: BTreeMap<ModuleId, ModuleFetch<P>>,
    /// Bytes of modules fetched (or being fetched) ahead of need.
    replicated_bytes: u64,
}

impl<P> Modules<P> {
    pub(super) fn new() -> Self {
        Self { held: BTreeMap::new(), fetches: BTreeMap::new(), replicated_bytes: 0 }
    }

    pub(super) fn hold(&mut self, module: ModuleId, size: u64) {
        self.held.insert(module, ModuleInfo { size });
    }

    pub(super) fn holds(&self, module: &ModuleId) -> bool {
        self.held.contains_key(module)
    }

    pub(super) fn info(&self, module: &ModuleId) -> Option<ModuleInfo> {
        self.held.get(module).copied()
    }

    pub(super) fn held(&self) -> impl Iterator<Item = (&ModuleId, &ModuleInfo)> {
        self.held.iter()
    }

    /// Whether `size` more bytes fit the replication budget. `size` is a
    /// peer's claim: it may be anything, even u64::MAX.
    pub(super) fn budget_allows(&self, size: u64, budget: u64) -> bool {
        self.replicated_bytes.checked_add(size).is_some_and(|total| total <= budget)
    }

    pub(super) fn reserve(&mut self, bytes: u64) {
        self.replicated_bytes = self.replicated_bytes.saturating_add(bytes);
    }

    pub(super) fn release(&mut self, bytes: u64) {
        self.replicated_bytes = self.replicated_bytes.saturating_sub(bytes);
    }

    /// The fetch of `module` answered by request `request`, if it is the one under way.
    pub(super) fn fetch_by_request(&self, request: RequestId) -> Option<ModuleId> {
        self.fetches.iter().find(|(_, fetch)| fetch.request == request).map(|(module, _)| *module)
    }

    pub(super) fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for module in self.held.keys() {
            hasher.update(module.as_bytes());
        }
        *hasher.finalize().as_bytes()
    }
}
