//! Judging peers' results, and trusting them (`MeshConfig::verify_remote`).
//!
//! Every record a peer sends is checked before anything is kept: its
//! signature must hold for the call asked (the shell supplies the check,
//! [`Signatures`](super::Signatures)), so a record that was altered, replayed
//! from another call or pinned on another node is refused and its sender
//! penalised. Signatures make `executed_by` reliable, so executors can be
//! told apart: a result from a peer is held until enough *independent*
//! executors produced the same outcome (a peer repeating a liar's cached
//! answer confirms nothing). A run on this node settles everything: it is
//! what the caller gets, and every executor that disagreed with it is penalised.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::calls::reply_all;
use super::flights::Stage;
use super::{Action, Core, FlightId, Misbehaviour, PeerKey};
use crate::ids::{CallKey, ModuleId};
use crate::outcome::{CacheStatus, CallError, ExecutionRecord};

pub(super) struct Candidate {
    record: Arc<ExecutionRecord>,
    cache: CacheStatus,
    /// Executors (by name) whose outcomes agree with `record`, its own included.
    agreeing: BTreeSet<String>,
    /// Two executors disagreed: only a run here can settle it.
    disputed: bool,
    /// A fetch of the module for a run here was started (once is enough: if
    /// every holder fails it, asking them again would fail the same way).
    fetch_tried: bool,
}

impl<P: PeerKey> Core<P> {
    /// `record` as `from` sent it for the call `key` (of `module`, when the
    /// flight is still known): kept if its signature holds and it answers
    /// that call, otherwise the penalty its sender earned.
    pub(super) fn judge_record(
        &mut self,
        from: &P,
        key: &CallKey,
        module: Option<ModuleId>,
        record: ExecutionRecord,
    ) -> Result<ExecutionRecord, Box<Action<P>>> {
        let verdict = self.signatures.verify(key, &record);
        self.judge_checked_record(from, module, record, verdict)
    }

    /// `judge_record` once the signature's `verdict` is known.
    pub(super) fn judge_checked_record(
        &mut self,
        from: &P,
        module: Option<ModuleId>,
        record: ExecutionRecord,
        verdict: Result<(), String>,
    ) -> Result<ExecutionRecord, Box<Action<P>>> {
        if let Err(reason) = verdict {
            return Err(Box::new(self.penalise(from, Misbehaviour::ForgedRecord { reason })));
        }
        if module.is_some_and(|module| module != record.module) {
            return Err(Box::new(self.penalise(from, Misbehaviour::AnotherCall)));
        }
        Ok(record)
    }

    /// A checked result a peer sent for `flight` (fetched, or the answer to a forward).
    pub(super) fn remote_result(
        &mut self,
        flight: FlightId,
        from: P,
        record: Arc<ExecutionRecord>,
        cache: CacheStatus,
    ) -> Vec<Action<P>> {
        let verify = self.config.verify_remote > 0 && record.outcome.is_cacheable();
        let Some(state) = self.flights.get_mut(flight) else { return Vec::new() };
        if !verify && state.candidate.is_none() {
            return self.trust(flight, record, cache);
        }
        state.tried.insert(from);
        match &mut state.candidate {
            None => {
                let agreeing = BTreeSet::from([record.executed_by.clone()]);
                state.candidate = Some(Candidate { record, cache, agreeing, disputed: false, fetch_tried: false });
            }
            // The same executor again (e.g. a peer's copy of its result) is no
            // confirmation, and a limit hit (the peer's machine or limits) no denial.
            Some(candidate) if candidate.agreeing.contains(&record.executed_by) || !record.outcome.is_cacheable() => {}
            Some(candidate) if candidate.record.outcome == record.outcome => {
                candidate.agreeing.insert(record.executed_by.clone());
            }
            Some(candidate) => candidate.disputed = true,
        }
        self.seek_confirmation(flight)
    }

    /// Lands the flight with a peer's result.
    fn trust(&mut self, flight: FlightId, record: Arc<ExecutionRecord>, cache: CacheStatus) -> Vec<Action<P>> {
        let Some(landed) = self.flights.land(flight) else { return Vec::new() };
        let mut actions = Vec::new();
        if record.outcome.is_cacheable() {
            actions.extend(self.keep_result(landed.key, &record, None));
        }
        actions.extend(reply_all(landed, record, |_| cache));
        actions
    }

    /// The next step for a flight holding a candidate result: accept it, ask
    /// another holder, run the call here, or give up.
    pub(super) fn seek_confirmation(&mut self, flight: FlightId) -> Vec<Action<P>> {
        let needed = 1 + usize::from(self.config.verify_remote);
        let max_hops = self.config.max_hops;
        let Some(state) = self.flights.get_mut(flight) else { return Vec::new() };
        let (module, last_hop) = (state.module, state.hops >= max_hops);
        let Some(candidate) = state.candidate.as_mut() else { return Vec::new() };
        if !candidate.disputed && candidate.agreeing.len() >= needed {
            let (record, cache) = (candidate.record.clone(), candidate.cache);
            return self.trust(flight, record, cache);
        }
        let (disputed, fetch_tried) = (candidate.disputed, candidate.fetch_tried);
        // Another holder may well have the result already (computed or
        // confirmed there); it must answer itself, not pass the call on. A
        // call that came as far as it may (e.g. to confirm) asks no one: two
        // nodes confirming through each other would wait on each other.
        if !disputed
            && !last_hop
            && let Some(to) = self.least_loaded_holder(flight, false)
        {
            return self.forward(flight, to, max_hops);
        }
        if self.modules.holds(&module) {
            return self.execute(flight);
        }
        let size = self.holders.module(&module).map_or(u64::MAX, |remote| remote.size);
        if !fetch_tried
            && size <= self.config.fetch_for_call_max_bytes
            && let Some(actions) = self.start_module_fetch(module, Some(flight), 0)
        {
            if let Some(candidate) = self.flights.get_mut(flight).and_then(|state| state.candidate.as_mut()) {
                candidate.fetch_tried = true;
            }
            self.flights.set_stage(flight, Stage::AwaitingModule);
            return actions;
        }
        let reason = match disputed {
            true => "peers disagree about it and this node cannot run the module to settle it".to_owned(),
            false => format!("fewer than {needed} independent executors could be reached"),
        };
        self.fail(flight, CallError::Unverified { reason })
    }

    /// Penalises the executors of a candidate that this node's own run contradicts.
    pub(super) fn penalise_disagreeing(
        &mut self,
        candidate: Option<&Candidate>,
        truth: &ExecutionRecord,
    ) -> Vec<Action<P>> {
        // A limit hit here (a slow machine, tighter limits) contradicts no one.
        let contradicted =
            |candidate: &&Candidate| truth.outcome.is_cacheable() && candidate.record.outcome != truth.outcome;
        let Some(candidate) = candidate.filter(contradicted) else { return Vec::new() };
        let liars: Vec<P> = candidate
            .agreeing
            .iter()
            .filter(|name| **name != self.local_name)
            .filter_map(|name| self.peers.named(name))
            .collect();
        liars.iter().map(|peer| self.penalise(peer, Misbehaviour::Contradicted)).collect()
    }
}
