//! The call path: flights (one per distinct call in progress), cache, fetch,
//! execute or forward.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::{Action, Answer, CacheStatus, Core, FetchFailure, Flight, FlightId, ModuleFetch, Peer, RequestId, Stage};
use crate::ids::{CallKey, ModuleId};
use crate::limits::Limits;
use crate::outcome::{CallError, ExecutionRecord, Outcome};
use crate::wire::{Gossip, RemoteAnswer, ResultRef};

/// Inputs above this size skip [`Core::answer_from_memory`]: on a miss they
/// would be hashed twice, which costs more than the shortcut saves.
pub(super) const MEMORY_SHORTCUT_MAX_INPUT: usize = 64 << 10;

impl Core {
    /// The answer to a call whose result `memory` already holds: the shell's
    /// in-memory results, looked up without I/O. The common case (a hot
    /// result) is answered here without a flight, a lookup action or a second
    /// event; the answer is the one [`Event::CallRequested`] would give.
    /// `None` means: send `CallRequested`, which also produces every error.
    pub fn answer_from_memory(
        &self,
        reference: &str,
        input: &[u8],
        limits: &Limits,
        memory: impl FnOnce(&CallKey) -> Option<Arc<ExecutionRecord>>,
    ) -> Option<Answer> {
        if input.len() > MEMORY_SHORTCUT_MAX_INPUT || input.len() as u64 > limits.input_bytes {
            return None;
        }
        let module = self.resolve(reference).ok()?;
        let key = CallKey::new(&module, input);
        let record = memory(&key)?;
        Some(Answer { key, cache: CacheStatus::Hit, record })
    }

    pub(super) fn on_call_requested(
        &mut self,
        request: RequestId,
        reference: &str,
        input: Arc<[u8]>,
        limits: Limits,
        hops: u8,
    ) -> Vec<Action> {
        let reject = |error| vec![Action::Reply { request, reply: Err(error) }];
        let module = match self.resolve(reference) {
            Ok(module) => module,
            Err(error) => return reject(error),
        };
        if input.len() as u64 > limits.input_bytes {
            return reject(CallError::InputTooLarge { size: input.len() as u64, limit_bytes: limits.input_bytes });
        }
        let key = CallKey::new(&module, &input);
        if let Some(flight) = self.flight_by_call.get(&(key, limits)) {
            self.flights.get_mut(flight).expect("flight index is consistent").waiters.push(request);
            return Vec::new();
        }
        let flight = FlightId(self.next_flight);
        self.next_flight += 1;
        self.flight_by_call.insert((key, limits), flight);
        let tried = BTreeSet::new();
        let waiters = vec![request];
        let stage = Stage::LookingUp;
        self.flights
            .insert(flight, Flight { key, module, input, limits, hops, stage, tried, waiters, candidate: None });
        vec![Action::LookupResult { flight, key }]
    }

    pub(super) fn on_result_looked_up(&mut self, flight: FlightId, found: Option<Arc<ExecutionRecord>>) -> Vec<Action> {
        if let Some(record) = found {
            return self.land(flight).map_or_else(Vec::new, |landed| reply_all(landed, record, |_| CacheStatus::Hit));
        }
        let Some(state) = self.flights.get(&flight) else { return Vec::new() };
        // A peer announced this result: fetching it beats recomputing.
        let holder = self.remote_results.get(&state.key).and_then(|holders| {
            holders.iter().find(|peer| !state.tried.contains(*peer) && self.is_connected(peer)).cloned()
        });
        match holder {
            Some(from) => {
                let key = state.key;
                self.set_stage(flight, Stage::FetchingResult);
                vec![Action::FetchResult { flight, key, from }]
            }
            None => self.proceed(flight),
        }
    }

    pub(super) fn on_result_fetched(
        &mut self,
        flight: FlightId,
        from: Peer,
        found: Option<Arc<ExecutionRecord>>,
    ) -> Vec<Action> {
        let expected = self.flights.get(&flight).map(|state| state.module);
        match found {
            Some(record) if Some(record.module) == expected => {
                self.remote_result(flight, from, record, CacheStatus::Hit)
            }
            other => {
                let mut actions = Vec::new();
                if other.is_some() {
                    actions.push(self.penalise(&from, "answered a result fetch with another module's result"));
                }
                self.forget_remote_result_holder(flight, &from);
                if let Some(state) = self.flights.get_mut(&flight) {
                    state.tried.insert(from);
                    actions.extend(self.on_result_looked_up(flight, None));
                }
                actions
            }
        }
    }

    /// No cached result anywhere: execute here, fetch the module, or forward.
    pub(super) fn proceed(&mut self, flight: FlightId) -> Vec<Action> {
        let Some(state) = self.flights.get(&flight) else { return Vec::new() };
        if state.candidate.is_some() {
            return self.seek_confirmation(flight);
        }
        let (module, hops) = (state.module, state.hops);
        let may_forward = hops < self.config.max_hops;
        if self.modules.contains_key(&module) {
            if self.executing >= self.config.capacity
                && may_forward
                && let Some(to) = self.least_loaded_holder(flight, true)
            {
                return self.forward(flight, to, hops + 1);
            }
            return self.execute(flight);
        }
        let size = self.remote_modules.get(&module).map_or(0, |remote| remote.size);
        let fetchable = size <= self.config.fetch_for_call_max_bytes;
        if fetchable && let Some(actions) = self.start_module_fetch(module, Some(flight), 0) {
            self.set_stage(flight, Stage::AwaitingModule);
            return actions;
        }
        if may_forward && let Some(to) = self.least_loaded_holder(flight, false) {
            return self.forward(flight, to, hops + 1);
        }
        let reason = match self.remote_modules.get(&module) {
            Some(remote) if !remote.holders.is_empty() => format!("{module} (every peer holding it is unreachable)"),
            _ => format!("{module} (no peer holds it)"),
        };
        self.fail(flight, CallError::ModuleNotFound { reference: reason })
    }

    pub(super) fn execute(&mut self, flight: FlightId) -> Vec<Action> {
        self.set_stage(flight, Stage::Executing);
        self.executing += 1;
        let state = &self.flights[&flight];
        vec![Action::Execute {
            flight,
            key: state.key,
            module: state.module,
            input: state.input.clone(),
            limits: state.limits,
        }]
    }

    /// Asks `to` to answer the call; `hops` bounds how far it travels on.
    pub(super) fn forward(&mut self, flight: FlightId, to: Peer, hops: u8) -> Vec<Action> {
        self.set_stage(flight, Stage::Forwarded);
        let state = &self.flights[&flight];
        vec![Action::ForwardCall {
            flight,
            to,
            module: state.module,
            input: state.input.clone(),
            limits: state.limits,
            hops,
        }]
    }

    /// A connected holder of the flight's module that has not failed it, with
    /// spare capacity if `spare_only`: fewest penalties, then lightest load.
    pub(super) fn least_loaded_holder(&self, flight: FlightId, spare_only: bool) -> Option<Peer> {
        let state = self.flights.get(&flight)?;
        let holders = &self.remote_modules.get(&state.module)?.holders;
        holders
            .iter()
            .filter(|peer| !state.tried.contains(*peer))
            .filter_map(|peer| self.peers.get(peer).filter(|p| p.connected).map(|p| (peer, p)))
            .filter(|(_, p)| !spare_only || p.executing < p.capacity.max(1))
            .min_by_key(|(peer, p)| (p.penalty, p.executing, (*peer).clone()))
            .map(|(peer, _)| peer.clone())
    }

    pub(super) fn on_forward_answered(
        &mut self,
        flight: FlightId,
        from: Peer,
        answer: Result<Result<RemoteAnswer, CallError>, String>,
    ) -> Vec<Action> {
        let Some(state) = self.flights.get(&flight) else { return Vec::new() };
        let (key, module, confirming) = (state.key, state.module, state.candidate.is_some());
        let mut actions = Vec::new();
        match answer {
            Ok(Ok(remote)) if remote.key == key && remote.record.module == module => {
                return self.remote_result(flight, from, Arc::new(remote.record), remote.cache);
            }
            Ok(Ok(_)) => actions.push(self.penalise(&from, "answered a forwarded call with another call's result")),
            // The peer gave a clear answer about the call itself: pass it on,
            // unless it is "I do not have that module", which another may have
            // (or, while confirming a result, the peer could not help).
            Ok(Err(error))
                if !confirming && !matches!(error, CallError::ModuleNotFound { .. } | CallError::Internal { .. }) =>
            {
                return self.fail(flight, error);
            }
            Ok(Err(_)) | Err(_) => {}
        }
        // Calls are pure: running it elsewhere (or here) is always safe.
        if let Some(state) = self.flights.get_mut(&flight) {
            state.tried.insert(from);
        }
        actions.extend(self.proceed(flight));
        actions
    }

    pub(super) fn on_execution_finished(&mut self, flight: FlightId, record: Arc<ExecutionRecord>) -> Vec<Action> {
        let Some(landed) = self.land(flight) else { return Vec::new() };
        self.executing = self.executing.saturating_sub(1);
        // Our own run settles any peer's result it was confirming.
        let mut actions = self.penalise_disagreeing(landed.candidate.as_ref(), &record);
        if record.outcome.is_cacheable() {
            actions.push(Action::StoreResult { key: landed.key, record: record.clone() });
            actions.push(self.announce_result(landed.key, &record));
        }
        actions.extend(reply_all(landed, record, |index| match index {
            0 => CacheStatus::Miss,
            _ => CacheStatus::Joined,
        }));
        actions
    }

    fn announce_result(&mut self, key: CallKey, record: &ExecutionRecord) -> Action {
        let size = match &record.outcome {
            Outcome::Success { stdout } => stdout.len() as u64,
            Outcome::Failed(_) => 0,
        };
        let reference = ResultRef { key, module: record.module, size };
        self.result_log.push_back((self.next_result_seq, reference));
        self.next_result_seq += 1;
        if self.result_log.len() > self.config.result_log_len {
            self.result_log.pop_front();
        }
        let inline = (size <= self.config.inline_result_max_bytes).then(|| record.clone());
        Action::Publish(Gossip::ResultAvailable { key, module: record.module, size, inline })
    }

    /// Fetches `module` (or joins the fetch in progress), with `flight`
    /// waiting for it. Returns the actions to take, or None when no connected
    /// holder is left to ask. `budgeted` bytes count against replication.
    pub(super) fn start_module_fetch(
        &mut self,
        module: ModuleId,
        flight: Option<FlightId>,
        budgeted: u64,
    ) -> Option<Vec<Action>> {
        if let Some(fetch) = self.module_fetches.get_mut(&module) {
            fetch.flights.extend(flight);
            return Some(Vec::new());
        }
        let from = self.best_module_source(module, &BTreeSet::new())?;
        self.replicated_bytes += budgeted;
        let fetch =
            ModuleFetch { from: from.clone(), tried: BTreeSet::new(), flights: flight.into_iter().collect(), budgeted };
        self.module_fetches.insert(module, fetch);
        Some(vec![Action::FetchModule { module, from }])
    }

    fn best_module_source(&self, module: ModuleId, tried: &BTreeSet<Peer>) -> Option<Peer> {
        let holders = &self.remote_modules.get(&module)?.holders;
        holders
            .iter()
            .filter(|peer| !tried.contains(*peer))
            .filter_map(|peer| self.peers.get(peer).filter(|p| p.connected).map(|p| (peer, p)))
            .min_by_key(|(peer, p)| (p.penalty, p.executing, (*peer).clone()))
            .map(|(peer, _)| peer.clone())
    }

    pub(super) fn on_module_stored(&mut self, module: ModuleId, size: u64) -> Vec<Action> {
        self.modules.insert(module, super::ModuleInfo { size });
        let fetch = self.module_fetches.remove(&module);
        let announcement = Gossip::ModuleAvailable { module, size };
        // A deploy is news for the whole mesh; a replica only for its neighbours,
        // who may fetch from it (and tell theirs in turn).
        let mut actions = vec![match fetch {
            None => Action::Publish(announcement),
            Some(_) => Action::TellPeers(announcement),
        }];
        let waiting = fetch.map(|fetch| fetch.flights).unwrap_or_default();
        for flight in waiting {
            actions.extend(self.proceed(flight));
        }
        actions
    }

    pub(super) fn on_module_fetch_failed(
        &mut self,
        module: ModuleId,
        from: Peer,
        failure: FetchFailure,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if failure == FetchFailure::BadHash {
            actions.push(self.penalise(&from, &format!("sent bytes that are not {module}")));
        }
        if matches!(failure, FetchFailure::BadHash | FetchFailure::NotFound)
            && let Some(remote) = self.remote_modules.get_mut(&module)
        {
            remote.holders.remove(&from);
        }
        let Some(mut fetch) = self.module_fetches.remove(&module) else { return actions };
        fetch.tried.insert(from);
        if let FetchFailure::Invalid(reason) = failure {
            // The hash matched, so every holder has the same unacceptable bytes.
            for flight in fetch.flights {
                actions.extend(self.fail(flight, CallError::InvalidModule { reason: reason.clone() }));
            }
            return actions;
        }
        match self.best_module_source(module, &fetch.tried) {
            Some(next) => {
                actions.push(Action::FetchModule { module, from: next.clone() });
                fetch.from = next;
                self.module_fetches.insert(module, fetch);
            }
            None => {
                self.replicated_bytes = self.replicated_bytes.saturating_sub(fetch.budgeted);
                for flight in fetch.flights {
                    // No holder could deliver: a forward may still work.
                    if let Some(state) = self.flights.get_mut(&flight) {
                        state.tried.extend(fetch.tried.iter().cloned());
                    }
                    actions.extend(self.forward_or_fail(flight));
                }
            }
        }
        actions
    }

    fn forward_or_fail(&mut self, flight: FlightId) -> Vec<Action> {
        if self.flights.get(&flight).is_some_and(|state| state.candidate.is_some()) {
            return self.seek_confirmation(flight);
        }
        let may_forward = self.flights.get(&flight).is_some_and(|state| state.hops < self.config.max_hops);
        if may_forward && let Some(to) = self.least_loaded_holder(flight, false) {
            let hops = self.flights[&flight].hops + 1;
            return self.forward(flight, to, hops);
        }
        let module = self.flights.get(&flight).map(|state| state.module);
        let reference = module.map_or_else(String::new, |m| format!("{m} (every peer holding it is unreachable)"));
        self.fail(flight, CallError::ModuleNotFound { reference })
    }

    pub(super) fn fail(&mut self, flight: FlightId, error: CallError) -> Vec<Action> {
        let Some(landed) = self.land(flight) else { return Vec::new() };
        landed.waiters.into_iter().map(|request| Action::Reply { request, reply: Err(error.clone()) }).collect()
    }

    pub(super) fn set_stage(&mut self, flight: FlightId, stage: Stage) {
        if let Some(state) = self.flights.get_mut(&flight) {
            state.stage = stage;
        }
    }

    /// Removes a finished flight from both indexes.
    pub(super) fn land(&mut self, flight: FlightId) -> Option<Flight> {
        let landed = self.flights.remove(&flight)?;
        self.flight_by_call.remove(&(landed.key, landed.limits));
        Some(landed)
    }

    fn forget_remote_result_holder(&mut self, flight: FlightId, from: &Peer) {
        if let Some(state) = self.flights.get(&flight)
            && let Some(holders) = self.remote_results.get_mut(&state.key)
        {
            holders.remove(from);
        }
    }
}

pub(super) fn reply_all(
    flight: Flight,
    record: Arc<ExecutionRecord>,
    status: impl Fn(usize) -> CacheStatus,
) -> Vec<Action> {
    flight
        .waiters
        .into_iter()
        .enumerate()
        .map(|(index, request)| Action::Reply {
            request,
            reply: Ok(Answer { key: flight.key, cache: status(index), record: record.clone() }),
        })
        .collect()
}
