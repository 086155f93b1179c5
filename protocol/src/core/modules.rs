//! The modules held here, the fetches under way, and the replication budget.

use std::collections::{BTreeMap, BTreeSet};

use super::{FlightId, RequestId};
use crate::ids::ModuleId;
use crate::wire::SliceIndex;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleInfo {
    pub size: u64,
    /// How long its last run here took to load and run, in µs (queueing
    /// left out); `None` until it ran here. See `MeshConfig::run_here_below_us`.
    pub last_run_us: Option<u64>,
}

/// A module being fetched from a peer, slice by slice (for calls waiting on
/// it, or ahead of need). See `transfer.rs`.
pub(super) struct ModuleFetch<P> {
    /// The holder the slices are asked of now.
    pub(super) from: P,
    /// Holders that failed this fetch: not asked again.
    pub(super) tried: BTreeSet<P>,
    /// Calls waiting for the module; empty for a background replication.
    pub(super) flights: Vec<FlightId>,
    /// Bytes reserved from the replication budget (0 for a fetch a call needed).
    pub(super) budgeted: u64,
    /// The module's size, once its last slice proved it. Until then only
    /// the last slice is asked for.
    pub(super) size: Option<u64>,
    /// The first slice never asked for: the ones below it (but for the
    /// last, asked first) were asked at least once. With `again`, what is
    /// still wanted, in memory bounded by the slices asked at once, however
    /// big the module.
    pub(super) next: u64,
    /// Slices asked for before, whose holder failed: to ask again.
    pub(super) again: BTreeSet<u64>,
    /// Slices received and verified.
    pub(super) received: u64,
    /// The slice requests in flight, to `from`.
    pub(super) asked: BTreeMap<RequestId, SliceIndex>,
    /// Every slice is in: the shell is checking and storing the module.
    pub(super) storing: bool,
}

impl<P> ModuleFetch<P> {
    /// The next slice to ask for, once the size is known: one to ask again
    /// first, then the first never asked for (the last slice came first).
    pub(super) fn next_wanted(&mut self, size: u64) -> Option<u64> {
        if let Some(index) = self.again.pop_first() {
            return Some(index);
        }
        let last = crate::wire::slice_count(size) - 1;
        (self.next < last).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    pub(super) fn new(from: P, flight: Option<FlightId>, budgeted: u64) -> Self {
        Self {
            from,
            tried: BTreeSet::new(),
            flights: flight.into_iter().collect(),
            budgeted,
            size: None,
            next: 0,
            again: BTreeSet::new(),
            received: 0,
            asked: BTreeMap::new(),
            storing: false,
        }
    }
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
        let last_run_us = self.held.get(&module).and_then(|info| info.last_run_us);
        self.held.insert(module, ModuleInfo { size, last_run_us });
    }

    pub(super) fn holds(&self, module: &ModuleId) -> bool {
        self.held.contains_key(module)
    }

    pub(super) fn ran_here(&mut self, module: &ModuleId, took_us: u64) {
        if let Some(info) = self.held.get_mut(module) {
            info.last_run_us = Some(took_us);
        }
    }

    /// Held, and its last run here took less than `below_us`.
    pub(super) fn runs_quickly(&self, module: &ModuleId, below_us: u64) -> bool {
        self.held.get(module).and_then(|info| info.last_run_us).is_some_and(|took| took < below_us)
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

    pub(super) fn digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for module in self.held.keys() {
            hasher.update(module.as_bytes());
        }
        *hasher.finalize().as_bytes()
    }
}
