//! What the core learns from other nodes and tells them: connections,
//! gossip (judged before gossipsub passes it on), anti-entropy, and load.

use std::sync::Arc;

use super::requests::Purpose;
use super::timers::Timer;
use super::{Action, Core, Members, MessageId, Misbehaviour, PeerKey, Verdict};
use crate::ids::ModuleId;
use crate::names::{NameRecord, validate_name};
use crate::wire::{Gossip, Load, Request, SyncRequest, SyncResponse};

impl<P: PeerKey> Core<P> {
    pub(super) fn on_peer_connected(&mut self, peer: P) -> Vec<Action<P>> {
        if peer == self.local {
            return Vec::new();
        }
        self.peers.entry(&peer).connected = true;
        let mut actions = self.change_members(|members| members.join(&peer));
        // Gossip does not backfill: reconcile at once with every new connection.
        actions.extend(self.sync_with(peer.clone()));
        actions.extend(self.hand_over_to_new_member(&peer));
        actions
    }

    pub(super) fn on_peer_disconnected(&mut self, peer: &P) -> Vec<Action<P>> {
        if let Some(state) = self.peers.get(peer)
            && state.connected
        {
            self.peers.entry(peer).connected = false;
        }
        let mut actions = self.change_members(|members| members.leave(peer));
        self.handoff.forget_peer(peer);
        self.timers.cancel(&Timer::Sync(peer.clone()));
        actions.extend(self.fail_requests_to(peer));
        actions
    }

    /// A connection came or went: the members change with it, unless the
    /// shell gives them; modules whose owners changed go to their new owners.
    fn change_members(&mut self, change: impl FnOnce(&mut Members<P>)) -> Vec<Action<P>> {
        if self.members_given {
            return Vec::new();
        }
        let before = (self.config.module_owners > 0).then(|| self.members.clone());
        change(Arc::make_mut(&mut self.members));
        self.module_owners_memo.clear();
        before.map_or_else(Vec::new, |before| self.hand_modules_to_new_owners(&before))
    }

    /// Anti-entropy with `peer` now, and again after the sync interval.
    pub(super) fn sync_with(&mut self, peer: P) -> Vec<Action<P>> {
        if !self.peers.is_connected(&peer) {
            return Vec::new();
        }
        self.timers.set(Timer::Sync(peer.clone()), self.now_ms.saturating_add(self.config.sync_interval_ms));
        let request = Request::Sync(self.sync_request());
        let timeout = self.config.request_timeout_ms;
        vec![self.send(peer, request, Purpose::Sync, timeout)]
    }

    /// A gossip message delivered by gossipsub: judged (its verdict decides
    /// whether gossipsub passes it on), then used.
    pub(super) fn on_gossip_message(
        &mut self,
        from: P,
        message: MessageId,
        gossip: Result<Gossip, String>,
    ) -> Vec<Action<P>> {
        let (verdict, mut actions) = match gossip {
            Ok(gossip) => self.on_gossip(from, gossip),
            Err(error) => (Verdict::Reject, vec![self.penalise(&from, Misbehaviour::MalformedGossip { error })]),
        };
        actions.insert(0, Action::GossipVerdict { message, verdict });
        actions
    }

    /// Judges and uses one gossip message, however it came.
    pub(super) fn on_gossip(&mut self, from: P, gossip: Gossip) -> (Verdict, Vec<Action<P>>) {
        if from == self.local {
            return (Verdict::Ignore, Vec::new());
        }
        self.peers.entry(&from);
        match gossip {
            Gossip::ModuleAvailable { module, size } => (Verdict::Accept, self.learn_module_holder(module, size, from)),
            Gossip::Name(record) if validate_name(&record.name).is_err() => {
                (Verdict::Reject, vec![self.penalise(&from, Misbehaviour::InvalidName)])
            }
            Gossip::Name(record) => (Verdict::Accept, self.adopt_name(record)),
            Gossip::Load { executing, capacity } => {
                self.peers.note_load(&from, Load { executing, capacity });
                (Verdict::Accept, Vec::new())
            }
            // Membership is the shell's to act on: it dials members it is not connected to.
            Gossip::Member { .. } => (Verdict::Accept, Vec::new()),
        }
    }

    /// Keeps a name record that is newer than ours, and passes it on to the
    /// neighbours. A record learned by anti-entropy after a heal reached only
    /// the nodes with a link across; without this, the rest would wait for
    /// their next periodic sync (up to `sync_interval_ms`). Each node passes a
    /// record on at most once, since only a newer record is passed on.
    fn adopt_name(&mut self, record: NameRecord) -> Vec<Action<P>> {
        match self.merge_name(record.clone()) {
            true => {
                let mut actions = vec![Action::PersistName(record.clone())];
                actions.extend(self.tell_peers(Gossip::Name(record)));
                actions
            }
            false => Vec::new(),
        }
    }

    /// Records that `from` holds `module`, and replicates it here while the
    /// replication budget allows (if this node keeps it ahead of need).
    fn learn_module_holder(&mut self, module: ModuleId, size: u64, from: P) -> Vec<Action<P>> {
        // Holders of modules we have are worth knowing too: calls can be forwarded there.
        self.holders.learn_module(module, size, from);
        self.know_module(module);
        if self.modules.holds(&module)
            || self.modules.fetches.contains_key(&module)
            || !self.keeps_ahead_of_need(&module)
        {
            return Vec::new();
        }
        // A size a fetch proved wins over this claim (a lie of 0 would fit any budget).
        let size = self.holders.module(&module).map_or(size, |remote| remote.size);
        if size <= self.config.max_module_bytes && self.modules.budget_allows(size, self.config.replicate_budget_bytes)
        {
            return self.start_module_fetch(module, None, size).unwrap_or_default();
        }
        Vec::new()
    }

    pub(super) fn sync_request(&self) -> SyncRequest {
        SyncRequest {
            modules_digest: self.modules.digest(),
            names_digest: self.resolver.names_digest(),
            load: self.load(),
        }
    }

    fn load(&self) -> Load {
        Load { executing: self.executing, capacity: self.config.capacity }
    }

    pub(super) fn sync_response(&mut self, from: &P, request: &SyncRequest) -> SyncResponse {
        self.peers.note_load(from, request.load);
        let modules = (request.modules_digest != self.modules.digest()).then(|| self.modules_for(from));
        let names =
            (request.names_digest != self.resolver.names_digest()).then(|| self.resolver.names().cloned().collect());
        SyncResponse { modules, names, load: self.load() }
    }

    /// The modules held here that `peer` should hear of in anti-entropy:
    /// every one, or, with modules placed on owners, those it owns (it
    /// fetches them from here after a heal or its restart).
    fn modules_for(&mut self, peer: &P) -> Vec<(ModuleId, u64)> {
        let held: Vec<(ModuleId, u64)> = self.modules.held().map(|(module, info)| (*module, info.size)).collect();
        match self.config.module_owners {
            0 => held,
            _ => held.into_iter().filter(|(module, _)| self.placed_owners(module).contains(peer)).collect(),
        }
    }

    pub(super) fn on_sync_answered(&mut self, from: P, response: SyncResponse) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        self.peers.note_load(&from, response.load);
        for (module, size) in response.modules.unwrap_or_default() {
            actions.extend(self.learn_module_holder(module, size, from.clone()));
        }
        for record in response.names.unwrap_or_default() {
            // Anti-entropy answers are judged like gossip.
            match validate_name(&record.name) {
                Ok(()) => actions.extend(self.adopt_name(record)),
                Err(_) => actions.push(self.penalise(&from, Misbehaviour::InvalidName)),
            }
        }
        actions
    }

    /// The number of executions changed: tell the neighbours, at most once per
    /// `load_interval_ms` (later changes ride on the next announcement).
    pub(super) fn load_changed(&mut self) -> Vec<Action<P>> {
        if self.timers.is_set(&Timer::Load) {
            return Vec::new();
        }
        let earliest = self.load_told.map_or(self.now_ms, |(at, _)| at.saturating_add(self.config.load_interval_ms));
        if earliest <= self.now_ms {
            return self.tell_load();
        }
        self.timers.set(Timer::Load, earliest);
        Vec::new()
    }

    /// Tells the neighbours this node's load, if it changed since last told.
    pub(super) fn tell_load(&mut self) -> Vec<Action<P>> {
        if self.load_told.is_some_and(|(_, executing)| executing == self.executing) {
            return Vec::new();
        }
        self.load_told = Some((self.now_ms, self.executing));
        self.tell_peers(Gossip::Load { executing: self.executing, capacity: self.config.capacity })
    }
}
