//! Peers, gossip and anti-entropy: what the core learns from other nodes and
//! what it tells them.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Action, Core, Peer, RemoteModule};
use crate::ids::{CallKey, ModuleId};
use crate::names::validate_name;
use crate::wire::{Gossip, Load, ResultRef, SyncRequest, SyncResponse};

/// Results sent per anti-entropy answer; more follow in the next round.
const SYNC_RESULTS_BATCH: usize = 1_000;

impl Core {
    pub(super) fn is_connected(&self, peer: &Peer) -> bool {
        self.peers.get(peer).is_some_and(|state| state.connected)
    }

    pub(super) fn on_peer_connected(&mut self, peer: Peer) -> Vec<Action> {
        if peer == self.local_id {
            return Vec::new();
        }
        let state = self.peers.entry(peer.clone()).or_default();
        state.connected = true;
        state.last_sync_ms = Some(self.now_ms);
        // Gossip does not backfill: reconcile at once with every new connection.
        vec![Action::SendSync { request: self.sync_request(&peer), to: peer }]
    }

    pub(super) fn on_peer_disconnected(&mut self, peer: &Peer) -> Vec<Action> {
        if let Some(state) = self.peers.get_mut(peer) {
            state.connected = false;
        }
        Vec::new()
    }

    pub(super) fn on_gossip(&mut self, from: Peer, gossip: Gossip) -> Vec<Action> {
        if from == self.local_id {
            return Vec::new();
        }
        self.peers.entry(from.clone()).or_default();
        match gossip {
            Gossip::ModuleAvailable { module, size } => self.learn_module_holder(module, size, from),
            Gossip::Name(record) if validate_name(&record.name).is_err() => {
                vec![self.penalise(&from, "announced a name no node may publish")]
            }
            Gossip::Name(record) => self.adopt_name(record),
            Gossip::ResultAvailable { key, module, inline, .. } => {
                self.learn_result_holder(key, from);
                match inline {
                    // Only an answer to the key it claims to be is kept, and
                    // only when peers' results are trusted without confirmation.
                    Some(record)
                        if record.module == module
                            && record.outcome.is_cacheable()
                            && self.config.verify_remote == 0 =>
                    {
                        vec![Action::StoreResult { key, record: Arc::new(record) }]
                    }
                    _ => Vec::new(),
                }
            }
            Gossip::Load { executing, capacity } => {
                let state = self.peers.entry(from).or_default();
                state.executing = executing;
                state.capacity = capacity;
                Vec::new()
            }
        }
    }

    /// Keeps a name record that is newer than ours, and passes it on to the
    /// neighbours. A record learned by anti-entropy after a heal reached only
    /// the nodes with a link across; without this, the rest would wait for
    /// their next periodic sync (up to `sync_interval_ms`). Each node passes a
    /// record on at most once, since only a newer record is passed on.
    fn adopt_name(&mut self, record: crate::NameRecord) -> Vec<Action> {
        match self.merge_name(record.clone()) {
            true => vec![Action::PersistName(record.clone()), Action::TellPeers(Gossip::Name(record))],
            false => Vec::new(),
        }
    }

    /// Records that `from` holds `module`, and replicates it here while the
    /// replication budget allows.
    fn learn_module_holder(&mut self, module: ModuleId, size: u64, from: Peer) -> Vec<Action> {
        // Holders of modules we have are worth knowing too: calls can be forwarded there.
        let remote =
            self.remote_modules.entry(module).or_insert_with(|| RemoteModule { size, holders: BTreeSet::new() });
        remote.size = size;
        remote.holders.insert(from);
        if self.modules.contains_key(&module) {
            return Vec::new();
        }
        // `size` is the peer's claim: it may be anything, even u64::MAX.
        let fits =
            self.replicated_bytes.checked_add(size).is_some_and(|total| total <= self.config.replicate_budget_bytes);
        if fits && !self.module_fetches.contains_key(&module) {
            return self.start_module_fetch(module, None, size).unwrap_or_default();
        }
        Vec::new()
    }

    /// Results of modules this node has never heard of are indexed too: a
    /// name may point there later.
    fn learn_result_holder(&mut self, key: CallKey, from: Peer) {
        let holders = self.remote_results.entry(key).or_default();
        if holders.is_empty() {
            self.remote_results_order.push_back(key);
        }
        holders.insert(from);
        while self.remote_results_order.len() > self.config.remote_results_len {
            if let Some(oldest) = self.remote_results_order.pop_front() {
                self.remote_results.remove(&oldest);
            }
        }
    }

    pub(super) fn sync_request(&self, peer: &Peer) -> SyncRequest {
        SyncRequest {
            modules_digest: self.modules_digest(),
            names_digest: self.names_digest(),
            results_since: self.peers.get(peer).map_or(0, |state| state.results_cursor),
            load: self.load(),
        }
    }

    fn load(&self) -> Load {
        Load { executing: self.executing, capacity: self.config.capacity }
    }

    fn note_load(&mut self, peer: &Peer, load: Load) {
        if let Some(state) = self.peers.get_mut(peer) {
            state.executing = load.executing;
            state.capacity = load.capacity;
        }
    }

    fn modules_digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for module in self.modules.keys() {
            hasher.update(module.as_bytes());
        }
        *hasher.finalize().as_bytes()
    }

    fn names_digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for record in self.names.values() {
            hasher.update(&crate::wire::encode(record));
        }
        *hasher.finalize().as_bytes()
    }

    pub(super) fn on_sync_requested(&mut self, from: &Peer, token: u64, request: &SyncRequest) -> Vec<Action> {
        if *from != self.local_id {
            self.peers.entry(from.clone()).or_default();
            self.note_load(from, request.load);
        }
        let modules = (request.modules_digest != self.modules_digest())
            .then(|| self.modules.iter().map(|(module, info)| (*module, info.size)).collect());
        let names = (request.names_digest != self.names_digest()).then(|| self.names.values().cloned().collect());
        let pending: Vec<&(u64, ResultRef)> =
            self.result_log.iter().filter(|(seq, _)| *seq > request.results_since).collect();
        let batch = &pending[..pending.len().min(SYNC_RESULTS_BATCH)];
        let results_next = batch.last().map_or(request.results_since, |(seq, _)| *seq);
        let response = SyncResponse {
            modules,
            names,
            results: batch.iter().map(|(_, reference)| reference.clone()).collect(),
            results_next,
            more: pending.len() > batch.len(),
            load: self.load(),
        };
        vec![Action::RespondSync { token, response }]
    }

    pub(super) fn on_sync_answered(&mut self, from: Peer, response: SyncResponse) -> Vec<Action> {
        let mut actions = Vec::new();
        self.peers.entry(from.clone()).or_default();
        self.note_load(&from, response.load);
        for (module, size) in response.modules.unwrap_or_default() {
            actions.extend(self.learn_module_holder(module, size, from.clone()));
        }
        for record in response.names.unwrap_or_default() {
            actions.extend(self.adopt_name(record));
        }
        for reference in response.results {
            self.learn_result_holder(reference.key, from.clone());
        }
        let state = self.peers.entry(from.clone()).or_default();
        state.results_cursor = state.results_cursor.max(response.results_next);
        if response.more {
            actions.push(Action::SendSync { request: self.sync_request(&from), to: from });
        }
        actions
    }

    pub(super) fn on_tick(&mut self, now_ms: u64) -> Vec<Action> {
        self.now_ms = self.now_ms.max(now_ms);
        let now = self.now_ms;
        let mut actions = Vec::new();
        let due: Vec<Peer> = self
            .peers
            .iter()
            .filter(|(_, state)| state.connected)
            .filter(|(_, state)| {
                state.last_sync_ms.is_none_or(|last| now.saturating_sub(last) >= self.config.sync_interval_ms)
            })
            .map(|(peer, _)| peer.clone())
            .collect();
        for peer in due {
            if let Some(state) = self.peers.get_mut(&peer) {
                state.last_sync_ms = Some(now);
            }
            actions.push(Action::SendSync { request: self.sync_request(&peer), to: peer });
        }
        // Announce load when it changed, and now and then anyway so that
        // peers that joined since hear it.
        let since_last = self.last_load_announced.map(|(at, _)| now.saturating_sub(at));
        let load_changed = self.last_load_announced.is_none_or(|(_, executing)| executing != self.executing);
        let load_due = since_last.is_none_or(|elapsed| elapsed >= self.config.load_interval_ms);
        let heartbeat_due = since_last.is_some_and(|elapsed| elapsed >= self.config.sync_interval_ms);
        if (load_changed && load_due) || heartbeat_due {
            self.last_load_announced = Some((now, self.executing));
            actions.push(Action::TellPeers(Gossip::Load { executing: self.executing, capacity: self.config.capacity }));
        }
        actions
    }
}
