//! The call path: flights (one per distinct call in progress), cache, fetch,
//! execute or forward, and replies to everyone waiting.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::flights::{Flight, Stage, Waiter};
use super::requests::Purpose;
use super::timers::Timer;
use super::{Action, Answer, Core, FlightId, LookupFor, LookupId, PeerKey};
use crate::ids::{CallKey, ModuleId};
use crate::limits::Limits;
use crate::outcome::{CacheStatus, CallError, ExecutionRecord};
use crate::wire::{RemoteAnswer, Request, Response};

impl<P: PeerKey> Core<P> {
    /// A call from a local caller (`hops` 0) or forwarded by a peer (`asker`).
    pub(super) fn start_call(
        &mut self,
        waiter: Waiter,
        asker: Option<P>,
        reference: &str,
        input: Arc<[u8]>,
        limits: Limits,
        hops: u8,
    ) -> Vec<Action<P>> {
        let resolved = match self.config.module_owners {
            0 => self.resolver.resolve(reference),
            _ => self.resolver.resolve_unheard(reference),
        };
        let module = match resolved {
            Ok(module) => module,
            Err(error) => return vec![reply_error(waiter, error)],
        };
        if input.len() as u64 > limits.input_bytes {
            let error = CallError::InputTooLarge { size: input.len() as u64, limit_bytes: limits.input_bytes };
            return vec![reply_error(waiter, error)];
        }
        let key = CallKey::new(&module, &input);
        if self.flights.join(key, limits, waiter, asker.clone(), hops) {
            return Vec::new();
        }
        let flight = self.flights.start(Flight {
            key,
            module,
            input,
            limits,
            hops,
            stage: Stage::LookingUp,
            tried: BTreeSet::new(),
            waiters: vec![waiter],
            askers: asker.into_iter().collect(),
            candidate: None,
            kept_here: false,
        });
        vec![self.look_up(key, LookupFor::Flight(flight))]
    }

    pub(super) fn look_up(&mut self, key: CallKey, purpose: LookupFor) -> Action<P> {
        let lookup = LookupId(self.next_lookup);
        self.next_lookup += 1;
        self.lookups.insert(lookup, purpose);
        Action::LookupResult { lookup, key }
    }

    pub(super) fn on_result_looked_up(
        &mut self,
        lookup: LookupId,
        found: Option<Arc<ExecutionRecord>>,
    ) -> Vec<Action<P>> {
        match self.lookups.remove(&lookup) {
            Some(LookupFor::Flight(flight)) => self.on_flight_looked_up(flight, found),
            Some(LookupFor::Peer(inbound)) => {
                let response = Response::Result(found.map(|record| (*record).clone()));
                vec![Action::Respond { inbound, response }]
            }
            None => Vec::new(),
        }
    }

    pub(super) fn on_flight_looked_up(
        &mut self,
        flight: FlightId,
        found: Option<Arc<ExecutionRecord>>,
    ) -> Vec<Action<P>> {
        match found {
            Some(record) => self
                .flights
                .land(flight)
                .map_or_else(Vec::new, |landed| reply_all(landed, record, |_| CacheStatus::Hit)),
            None => self.proceed(flight),
        }
    }

    /// Not cached here: a local caller's call runs here if that is cheaper
    /// than asking (a quick module), else ask the key's owner, or else execute
    /// here, fetch the module, or forward.
    pub(super) fn proceed(&mut self, flight: FlightId) -> Vec<Action<P>> {
        let Some(state) = self.flights.get(flight) else { return Vec::new() };
        if state.candidate.is_some() {
            return self.seek_confirmation(flight);
        }
        let (module, hops) = (state.module, state.hops);
        // Even with every slot busy: forwarding it would cost this node more
        // CPU than running it, so it would relieve nothing. Its result is
        // not handed to its owners either: taking it in would cost each of
        // them about as much as running it (see `MeshConfig::run_here_below_us`).
        if hops == 0 && self.modules.runs_quickly(&module, self.config.run_here_below_us) {
            if let Some(state) = self.flights.get_mut(flight) {
                state.kept_here = true;
            }
            return self.execute(flight);
        }
        if let Some(owner) = self.owner_to_ask(flight) {
            // (Not while confirming results: the owner's answer is a candidate then.)
            if self.modules.holds(&module) && self.config.verify_remote == 0 {
                let patience = self.now_ms.saturating_add(self.config.owner_patience_ms);
                self.timers.set(Timer::Patience(flight), patience);
            }
            return self.forward(flight, owner, hops + 1);
        }
        let may_forward = hops < self.config.max_hops;
        if self.modules.holds(&module) {
            if self.executing >= self.config.capacity
                && may_forward
                && let Some(to) = self.least_loaded_holder(flight, true)
            {
                return self.forward(flight, to, hops + 1);
            }
            return self.execute(flight);
        }
        let size = self.holders.module(&module).map_or(0, |remote| remote.size);
        let fetchable = size <= self.config.fetch_for_call_max_bytes;
        if fetchable && let Some(actions) = self.start_module_fetch(module, Some(flight), 0) {
            self.flights.set_stage(flight, Stage::AwaitingModule);
            return actions;
        }
        if may_forward && let Some(to) = self.least_loaded_holder(flight, false) {
            return self.forward(flight, to, hops + 1);
        }
        let reference = self.unreachable_module(&module);
        self.fail(flight, CallError::ModuleNotFound { reference })
    }

    /// The owner that should answer this node's caller: the best owner of the
    /// key that has not failed the call, unless this node comes first. The
    /// owner looks the key up, joins identical calls from every node, and
    /// executes once (mesh-wide singleflight). A call forwarded here is
    /// answered here: the sender chose this node as its owner.
    fn owner_to_ask(&self, flight: FlightId) -> Option<P> {
        let state = self.flights.get(flight)?;
        if state.hops > 0 {
            return None;
        }
        // Owners that answered slowly lately come last (`slow_owners.rs`).
        let mut slow = None;
        for owner in self.owners(&state.key) {
            if owner == self.local {
                return None;
            }
            if !state.tried.contains(&owner) && self.reachable(&owner) {
                if !self.slow_owners.is_slow(&owner, self.now_ms) {
                    return Some(owner);
                }
                slow = slow.or(Some(owner));
            }
        }
        slow
    }

    /// The owner asked has not answered in `owner_patience_ms`: it may be
    /// cut off, and a call must not wait for a dead owner's request timeout.
    /// It runs here too (the module is held); the owner's request stays
    /// open, and whichever answers first lands the flight.
    pub(super) fn lose_patience(&mut self, flight: FlightId) -> Vec<Action<P>> {
        match self.flights.get(flight) {
            Some(state) if state.stage == Stage::Forwarded && state.candidate.is_none() => self.execute(flight),
            _ => Vec::new(),
        }
    }

    fn unreachable_module(&self, module: &ModuleId) -> String {
        match self.holders.module(module) {
            Some(remote) if !remote.holders.is_empty() => format!("{module} (every peer holding it is unreachable)"),
            _ => format!("{module} (no peer holds it)"),
        }
    }

    pub(super) fn execute(&mut self, flight: FlightId) -> Vec<Action<P>> {
        self.flights.set_stage(flight, Stage::Executing);
        self.executing += 1;
        let mut actions = self.load_changed();
        let state = self.flights.get(flight).expect("the flight is under way");
        actions.push(Action::Execute {
            flight,
            key: state.key,
            module: state.module,
            input: state.input.clone(),
            limits: state.limits,
        });
        actions
    }

    /// Asks `to` to answer the call; `hops` bounds how far it travels on.
    pub(super) fn forward(&mut self, flight: FlightId, to: P, hops: u8) -> Vec<Action<P>> {
        self.flights.set_stage(flight, Stage::Forwarded);
        let state = self.flights.get(flight).expect("the flight is under way");
        let message =
            Request::Call { reference: state.module.to_hex(), input: state.input.to_vec(), limits: state.limits, hops };
        let timeout = self.config.forward_timeout_ms(&state.limits);
        vec![self.send(to, message, Purpose::Forward { flight }, timeout)]
    }

    /// A connected holder of the flight's module that has not failed it, with
    /// spare capacity if `spare_only`: fewest penalties, then lightest load.
    pub(super) fn least_loaded_holder(&self, flight: FlightId, spare_only: bool) -> Option<P> {
        let state = self.flights.get(flight)?;
        let holders = &self.holders.module(&state.module)?.holders;
        holders
            .iter()
            .filter(|peer| !state.tried.contains(*peer) && self.peers.is_connected(peer))
            .filter(|peer| !spare_only || self.peers.has_spare_capacity(peer))
            .min_by_key(|peer| (self.peers.preference(peer), (*peer).clone()))
            .cloned()
    }

    /// A peer's answer to a forwarded call (outer `Err`: it never came).
    pub(super) fn on_forward_answered(
        &mut self,
        flight: FlightId,
        from: P,
        answer: Result<Result<RemoteAnswer, CallError>, String>,
    ) -> Vec<Action<P>> {
        let Some(state) = self.flights.get(flight) else { return Vec::new() };
        let (key, module, confirming) = (state.key, state.module, state.candidate.is_some());
        let running_here = state.stage == Stage::Executing;
        let mut actions = Vec::new();
        match answer {
            Ok(Ok(remote)) if remote.key != key => {
                actions.push(self.penalise(&from, super::Misbehaviour::AnotherCall));
            }
            Ok(Ok(remote)) => match self.judge_record(&from, &key, Some(module), remote.record) {
                Ok(record) => return self.remote_result(flight, from, Arc::new(record), remote.cache),
                Err(penalty) => actions.push(*penalty),
            },
            // The peer gave a clear answer about the call itself: pass it on,
            // unless it is about the peer (it lacks the module, its copy is
            // corrupt, it is overloaded, its limits are lower), which another
            // node may not share (or, while confirming, the peer could not help).
            Ok(Err(error)) if !confirming && !is_about_the_peer(&error) => {
                return self.fail(flight, error);
            }
            Ok(Err(_)) | Err(_) => {}
        }
        // Calls are pure: running it elsewhere (or here) is always safe.
        if let Some(state) = self.flights.get_mut(flight) {
            state.tried.insert(from);
        }
        if !running_here {
            actions.extend(self.proceed(flight));
        }
        actions
    }

    pub(super) fn on_execution_finished(
        &mut self,
        flight: FlightId,
        result: Result<Arc<ExecutionRecord>, CallError>,
    ) -> Vec<Action<P>> {
        // Every execution was counted when it started, even one whose flight
        // landed meanwhile (an owner answered first: its result is dropped).
        self.executing = self.executing.saturating_sub(1);
        let mut actions = self.load_changed();
        if let Ok(record) = &result {
            let took_us = record.timings.instantiate_us.saturating_add(record.timings.run_us);
            self.modules.ran_here(&record.module, took_us);
        }
        let Some(landed) = self.flights.land(flight) else { return actions };
        let record = match result {
            Ok(record) => record,
            Err(error) => {
                actions.extend(fail_all(landed, error));
                return actions;
            }
        };
        // Our own run settles any peer's result it was confirming.
        actions.extend(self.penalise_disagreeing(landed.candidate.as_ref(), &record));
        if record.outcome.is_cacheable() {
            let computed_for = (!landed.kept_here).then_some(landed.askers.as_slice());
            actions.extend(self.keep_result(landed.key, &record, computed_for));
        }
        actions.extend(reply_all(landed, record, |index| match index {
            0 => CacheStatus::Miss,
            _ => CacheStatus::Joined,
        }));
        actions
    }

    /// Keeps a result this node computed (`answered`: the peers it answers
    /// with it) or was answered with, or kept here (`None`): stored if this
    /// node owns it, in the near cache otherwise; one it computed also goes
    /// to its other owners, except those it answers anyway.
    pub(super) fn keep_result(
        &mut self,
        key: CallKey,
        record: &Arc<ExecutionRecord>,
        answered: Option<&[P]>,
    ) -> Vec<Action<P>> {
        let computed_here = answered.is_some();
        let owners = self.owners(&key);
        let owned = owners.is_empty() || owners.contains(&self.local);
        let mut actions = vec![match owned {
            true => Action::StoreResult { key, record: record.clone() },
            false => Action::CacheResult { key, record: record.clone() },
        }];
        if owned || computed_here {
            self.handoff.remember(key, record.clone());
        }
        if computed_here {
            let answered = answered.unwrap_or_default();
            let others: Vec<P> =
                owners.into_iter().filter(|owner| *owner != self.local && !answered.contains(owner)).collect();
            for owner in others {
                actions.extend(self.hand_over(owner, key, record));
            }
        }
        actions
    }

    /// No holder could deliver the flight's module: a forward may still work.
    pub(super) fn forward_or_fail(&mut self, flight: FlightId) -> Vec<Action<P>> {
        let Some(state) = self.flights.get(flight) else { return Vec::new() };
        if state.candidate.is_some() {
            return self.seek_confirmation(flight);
        }
        let (hops, module) = (state.hops, state.module);
        if hops < self.config.max_hops
            && let Some(to) = self.least_loaded_holder(flight, false)
        {
            return self.forward(flight, to, hops + 1);
        }
        let reference = format!("{module} (every peer holding it is unreachable)");
        self.fail(flight, CallError::ModuleNotFound { reference })
    }

    pub(super) fn fail(&mut self, flight: FlightId, error: CallError) -> Vec<Action<P>> {
        self.flights.land(flight).map_or_else(Vec::new, |landed| fail_all(landed, error))
    }
}

/// Whether a peer's refusal of a call is about the peer rather than the call.
fn is_about_the_peer(error: &CallError) -> bool {
    matches!(
        error,
        CallError::ModuleNotFound { .. }
            | CallError::ModuleCorrupt { .. }
            | CallError::Internal { .. }
            | CallError::Overloaded { .. }
            | CallError::InputTooLarge { .. }
    )
}

pub(super) fn reply_error<P>(waiter: Waiter, error: CallError) -> Action<P> {
    match waiter {
        Waiter::Local(caller) => Action::Reply { caller, reply: Err(error) },
        Waiter::Peer(inbound) => Action::Respond { inbound, response: Response::Call(Err(error)) },
    }
}

fn fail_all<P>(flight: Flight<P>, error: CallError) -> Vec<Action<P>> {
    flight.waiters.into_iter().map(|waiter| reply_error(waiter, error.clone())).collect()
}

pub(super) fn reply_all<P>(
    flight: Flight<P>,
    record: Arc<ExecutionRecord>,
    status: impl Fn(usize) -> CacheStatus,
) -> Vec<Action<P>> {
    let key = flight.key;
    flight
        .waiters
        .into_iter()
        .enumerate()
        .map(|(index, waiter)| match waiter {
            Waiter::Local(caller) => {
                Action::Reply { caller, reply: Ok(Answer { key, cache: status(index), record: record.clone() }) }
            }
            Waiter::Peer(inbound) => {
                let answer = RemoteAnswer { key, cache: status(index), record: (*record).clone() };
                Action::Respond { inbound, response: Response::Call(Ok(answer)) }
            }
        })
        .collect()
}
