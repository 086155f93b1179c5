//! Modules from peers, slice by slice: which holder to ask, how many slices
//! at once, each slice's deadline, what a slice that fails verification costs
//! its sender, switching to another holder with the slices already in, and
//! the end of a fetch (stored, or failed for the calls waiting on it).
//!
//! A fetch first asks for the module's last slice: its proof is the only one
//! that proves the module's size (the tree's shape depends on the size, and a
//! slice in the middle verifies for several sizes), and the size is what
//! says which other slices there are. It then asks for the others, up to
//! `slices_in_flight` at a time, of one holder. Slices are verified by the
//! shell (hashing is the shell's, as for everything else; a slice is a
//! megabyte, and the core's task must not stall on it), which writes each
//! verified slice to the module's download, so a module never sits whole
//! in memory; the core judges the verdicts. A holder whose slice fails, is
//! refused, or does not come in time is dropped for this fetch, and what
//! it was asked goes to the next holder: a liar costs one slice.

use std::collections::BTreeSet;

use super::events::FetchFailure;
use super::modules::ModuleFetch;
use super::requests::Purpose;
use super::timers::Timer;
use super::{Action, Core, FlightId, Members, Misbehaviour, PeerKey, RequestId};
use crate::ids::ModuleId;
use crate::outcome::CallError;
use crate::wire::{Gossip, Request, SliceIndex, slice_count};

impl<P: PeerKey> Core<P> {
    /// Fetches `module` (or joins the fetch in progress), with `flight`
    /// waiting for it. Returns the actions to take, or None when no connected
    /// holder is left to ask. `budgeted` bytes count against replication.
    pub(super) fn start_module_fetch(
        &mut self,
        module: ModuleId,
        flight: Option<FlightId>,
        budgeted: u64,
    ) -> Option<Vec<Action<P>>> {
        if let Some(fetch) = self.modules.fetches.get_mut(&module) {
            fetch.flights.extend(flight);
            return Some(Vec::new());
        }
        let from = self.best_module_source(module, &BTreeSet::new())?;
        self.modules.reserve(budgeted);
        self.modules.fetches.insert(module, ModuleFetch::new(from, flight, budgeted));
        Some(self.ask_for_slices(module))
    }

    /// Asks the fetch's holder for the slices it still needs, up to
    /// `slices_in_flight` at once: the last one alone while the size is unknown.
    fn ask_for_slices(&mut self, module: ModuleId) -> Vec<Action<P>> {
        let window = self.config.slices_in_flight.max(1) as usize;
        let timeout = self.config.slice_timeout_ms();
        let mut actions = Vec::new();
        while let Some(fetch) = self.modules.fetches.get_mut(&module) {
            if fetch.storing || fetch.asked.len() >= window {
                break;
            }
            let slice = match fetch.size {
                None if fetch.asked.is_empty() => SliceIndex::Last,
                None => break,
                Some(size) => match fetch.next_wanted(size) {
                    Some(index) => SliceIndex::At(index),
                    None => break,
                },
            };
            let to = fetch.from.clone();
            let send = self.send(to, Request::FetchSlice { module, slice }, Purpose::FetchSlice { module }, timeout);
            if let (Action::Send { request, .. }, Some(fetch)) = (&send, self.modules.fetches.get_mut(&module)) {
                fetch.asked.insert(*request, slice);
            }
            actions.push(send);
        }
        actions
    }

    /// The reachable holder to fetch from: fewest penalties, then lightest
    /// load; with modules placed on owners, failing any holder heard of,
    /// the module's owners, best first (one that lacks it says so, and the
    /// next is asked).
    fn best_module_source(&mut self, module: ModuleId, tried: &BTreeSet<P>) -> Option<P> {
        let untried = |core: &Self, peer: &P| !tried.contains(peer) && *peer != core.local && core.reachable(peer);
        let known = self.holders.module(&module).into_iter().flat_map(|remote| remote.holders.iter());
        let best_known = known
            .filter(|peer| untried(self, peer))
            .min_by_key(|peer| (self.peers.preference(peer), (*peer).clone()))
            .cloned();
        best_known.or_else(|| self.placed_owners(&module).into_iter().find(|owner| untried(self, owner)))
    }

    /// A slice arrived for `request` (see [`Event::SliceReceived`](super::Event::SliceReceived)).
    pub(super) fn on_slice_received(
        &mut self,
        request: RequestId,
        from: P,
        module: ModuleId,
        (size, index): (u64, u64),
        verified: bool,
    ) -> Vec<Action<P>> {
        let Some(open) = self.requests.finish(request) else {
            // Late (timed out, or the holder was dropped), or a duplicate.
            return self.unwanted_download(module);
        };
        self.timers.cancel(&Timer::Request(request));
        let asked = match open.purpose {
            Purpose::FetchSlice { module: asked } if asked == module => asked,
            // The shell checks slices against the module it asked for: this cannot be.
            purpose => {
                let mut actions = self.purpose_failed(purpose, request, open.to, "a slice of another module");
                actions.extend(self.unwanted_download(module));
                return actions;
            }
        };
        let Some(fetch) = self.modules.fetches.get_mut(&asked) else { return self.unwanted_download(module) };
        let Some(slice) = fetch.asked.remove(&request) else { return Vec::new() };
        let expected_index = match slice {
            SliceIndex::At(wanted) => wanted,
            SliceIndex::Last => slice_count(size) - 1,
        };
        let known_size = fetch.size;
        if !verified || known_size.is_some_and(|known| known != size) || index != expected_index {
            let mut actions = vec![self.penalise(&from, Misbehaviour::BadModuleBytes { module })];
            actions.extend(self.slice_failed(module, slice, open.to, FetchFailure::BadSlice));
            return actions;
        }
        if known_size.is_none() {
            // The last slice verified: the size is the module's, whatever was announced.
            self.holders.prove_module_size(module, size);
            if size > self.config.max_module_bytes {
                let reason =
                    format!("{size} bytes is over this node's module limit of {}", self.config.max_module_bytes);
                return self.on_module_not_stored(module, reason, true);
            }
            if !self.proven_size_fits(module, size) {
                return self.abandon_fetch(module);
            }
        }
        let Some(fetch) = self.modules.fetches.get_mut(&module) else { return Vec::new() };
        fetch.size = Some(size);
        fetch.received += 1;
        if fetch.received == slice_count(size) {
            fetch.storing = true;
            return vec![Action::StoreReceivedModule { module, size }];
        }
        self.ask_for_slices(module)
    }

    /// Whether this fetch may bring in a module of its proven `size`. The
    /// decision to fetch was made on a peer's announced size, which may have
    /// been a lie (an announced 0 would replicate anything): a replication
    /// reserves the difference from its budget, or stops; calls waiting for
    /// the module allow up to `fetch_for_call_max_bytes`.
    fn proven_size_fits(&mut self, module: ModuleId, size: u64) -> bool {
        let Some(fetch) = self.modules.fetches.get(&module) else { return false };
        let for_calls = if fetch.flights.is_empty() { 0 } else { self.config.fetch_for_call_max_bytes };
        if size <= fetch.budgeted.max(for_calls) {
            return true;
        }
        let replicating = fetch.budgeted > 0 || fetch.flights.is_empty();
        let extra = size - fetch.budgeted;
        if !replicating || !self.modules.budget_allows(extra, self.config.replicate_budget_bytes) {
            return false;
        }
        self.modules.reserve(extra);
        if let Some(fetch) = self.modules.fetches.get_mut(&module) {
            fetch.budgeted = size;
        }
        true
    }

    /// Stops a fetch that must not go on (its proven size does not fit):
    /// its download is dropped and the calls waiting for it decide again,
    /// with the proven size (they forward to a holder instead).
    fn abandon_fetch(&mut self, module: ModuleId) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        let Some(fetch) = self.end_fetch(module, &mut actions) else { return actions };
        for flight in fetch.flights {
            actions.extend(self.proceed(flight));
        }
        actions
    }

    /// Ends `module`'s fetch short of storing it: its slice requests are
    /// forgotten, its budget given back, its download dropped (unless it is
    /// being stored). Returns it, for the calls that waited on it.
    fn end_fetch(&mut self, module: ModuleId, actions: &mut Vec<Action<P>>) -> Option<ModuleFetch<P>> {
        self.cancel_slices(module);
        let fetch = self.modules.fetches.remove(&module)?;
        self.modules.release(fetch.budgeted);
        if !fetch.storing {
            actions.push(Action::DiscardReceivedModule { module });
        }
        Some(fetch)
    }

    /// The shell holds a download of `module` that no fetch collects into:
    /// made by a slice that came after its fetch ended (or started storing).
    fn unwanted_download(&self, module: ModuleId) -> Vec<Action<P>> {
        match self.modules.fetches.get(&module) {
            Some(fetch) if !fetch.storing => Vec::new(),
            _ => vec![Action::DiscardReceivedModule { module }],
        }
    }

    /// A slice request came to nothing: it failed in transport, timed out or
    /// was refused (`Unreachable`), or the holder no longer has the module
    /// (`NotFound`).
    pub(super) fn slice_request_failed(
        &mut self,
        module: ModuleId,
        request: RequestId,
        from: P,
        failure: FetchFailure,
    ) -> Vec<Action<P>> {
        let slice = self.modules.fetches.get_mut(&module).and_then(|fetch| fetch.asked.remove(&request));
        match slice {
            Some(slice) => self.slice_failed(module, slice, from, failure),
            None => Vec::new(),
        }
    }

    /// `from` failed to deliver `slice`: it is dropped for this fetch, and
    /// the fetch goes on from the next holder with the slices already in
    /// (or ends, if no holder is left).
    fn slice_failed(&mut self, module: ModuleId, slice: SliceIndex, from: P, failure: FetchFailure) -> Vec<Action<P>> {
        if matches!(failure, FetchFailure::BadSlice | FetchFailure::NotFound) {
            self.holders.forget_module_holder(&module, &from);
        }
        let Some(fetch) = self.modules.fetches.get_mut(&module) else { return Vec::new() };
        if let SliceIndex::At(index) = slice {
            fetch.again.insert(index);
        }
        if fetch.from != from {
            // (Slices are only ever asked of the fetch's holder of the moment.)
            return self.ask_for_slices(module);
        }
        fetch.tried.insert(from);
        // Whatever else was asked of that holder goes to the next one.
        self.cancel_slices(module);
        let mut actions = Vec::new();
        let Some(tried) = self.modules.fetches.get(&module).map(|fetch| fetch.tried.clone()) else { return actions };
        match self.best_module_source(module, &tried) {
            Some(next) => {
                if let Some(fetch) = self.modules.fetches.get_mut(&module) {
                    fetch.from = next;
                }
                actions.extend(self.ask_for_slices(module));
            }
            None => {
                let fetch = self.end_fetch(module, &mut actions).expect("the fetch is under way");
                for flight in fetch.flights {
                    if let Some(state) = self.flights.get_mut(flight) {
                        state.tried.extend(fetch.tried.iter().cloned());
                    }
                    actions.extend(self.forward_or_fail(flight));
                }
            }
        }
        actions
    }

    /// Forgets the slice requests of `module`'s fetch still in flight (their
    /// late answers are dropped); their slices are wanted again.
    fn cancel_slices(&mut self, module: ModuleId) {
        let Some(fetch) = self.modules.fetches.get_mut(&module) else { return };
        let asked = std::mem::take(&mut fetch.asked);
        for (request, slice) in asked {
            if let SliceIndex::At(index) = slice {
                fetch.again.insert(index);
            }
            self.requests.finish(request);
            self.timers.cancel(&Timer::Request(request));
        }
    }

    pub(super) fn on_module_stored(&mut self, module: ModuleId, size: u64) -> Vec<Action<P>> {
        self.modules.hold(module, size);
        self.know_module(module);
        // Deployed here while its slices were arriving: they are not needed.
        self.cancel_slices(module);
        let fetch = self.modules.fetches.remove(&module);
        let mut actions = self.announce_module(module, size, fetch.is_none());
        let Some(fetch) = fetch else { return actions };
        if !fetch.storing {
            actions.push(Action::DiscardReceivedModule { module });
        }
        for flight in fetch.flights {
            actions.extend(self.proceed(flight));
        }
        actions
    }

    /// Who hears that this node now holds `module` (`deployed` here, or
    /// fetched). Modules everywhere: a deploy is news for the whole mesh, a
    /// replica only for its neighbours, who may fetch from it (and tell
    /// theirs in turn). Modules on owners: a deploy is told to the module's
    /// owners alone, who fetch it; a copy fetched is told to no one (nodes
    /// that need it ask the owners).
    fn announce_module(&mut self, module: ModuleId, size: u64, deployed: bool) -> Vec<Action<P>> {
        let announcement = Gossip::ModuleAvailable { module, size };
        match (self.config.module_owners, deployed) {
            (0, true) => vec![Action::Publish(announcement)],
            (0, false) => self.tell_peers(announcement),
            (_, true) => {
                let owners = self.placed_owners(&module);
                self.tell(owners, &announcement)
            }
            (_, false) => Vec::new(),
        }
    }

    /// The members changed (`before` is the old view): with modules placed
    /// on owners, each module held here whose owners changed is told to its
    /// new owners, who fetch it (a member that joined, or one that took the
    /// place of owners that left or are cut off). The module's owners tell,
    /// old or new; other holders (copies fetched for calls) only when none
    /// of the old owners is left, so that a side of a partition without them
    /// still gets owners that hold it. A change costs at most k tells per
    /// module it moves, and on a cut-off side the holders of each module.
    pub(super) fn hand_modules_to_new_owners(&mut self, before: &Members<P>) -> Vec<Action<P>> {
        let k = usize::from(self.config.module_owners);
        if k == 0 {
            return Vec::new();
        }
        let mut tells = Vec::new();
        for (module, info) in self.modules.held() {
            let (old, new) = (before.module_owners(module, k), self.members.module_owners(module, k));
            let gained: Vec<P> =
                new.iter().filter(|owner| !old.contains(owner) && **owner != self.local).cloned().collect();
            let owner_here = old.contains(&self.local) || new.contains(&self.local);
            let old_owners_gone = !old.iter().any(|owner| *owner != self.local && self.members.contains(owner));
            if !gained.is_empty() && (owner_here || old_owners_gone) {
                tells.push((gained, Gossip::ModuleAvailable { module: *module, size: info.size }));
            }
        }
        tells.into_iter().flat_map(|(gained, announcement)| self.tell(gained, &announcement)).collect()
    }

    pub(super) fn on_module_not_stored(&mut self, module: ModuleId, reason: String, invalid: bool) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        let Some(fetch) = self.end_fetch(module, &mut actions) else { return actions };
        // Every slice verified, so every holder has the same bytes: no one else can help.
        let error = match invalid {
            true => CallError::InvalidModule { reason },
            false => CallError::Internal { message: format!("storing module {module}: {reason}") },
        };
        for flight in fetch.flights {
            actions.extend(self.fail(flight, error.clone()));
        }
        actions
    }
}
