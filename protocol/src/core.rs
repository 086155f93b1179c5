//! The sans-io core: every decision on the call path, no I/O, no clock.
//!
//! A call flows: resolve the reference (name, full hash or hash prefix) ->
//! join an identical call already in flight -> ask the shell for a cached
//! result -> on a miss ask the shell to execute -> ask it to store a cacheable
//! result -> reply to every caller that joined.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::ids::{CallKey, MIN_PREFIX_LEN, ModuleId, looks_like_hex};
use crate::limits::Limits;
use crate::names::{NameRecord, validate_name};
use crate::outcome::{CallError, ExecutionRecord};

/// Chosen by the shell; identifies one caller waiting for a reply.
pub type RequestId = u64;

/// Identifies one execution (or cache lookup) shared by identical calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlightId(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from a stored result; nothing ran.
    Hit,
    /// This caller's request started the execution.
    Miss,
    /// Joined an identical call that was already running.
    Joined,
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub key: CallKey,
    pub cache: CacheStatus,
    pub record: Arc<ExecutionRecord>,
}

/// `Err` means the call never reached a module (bad reference, input too large);
/// failures of the function itself are in `Answer::record.outcome`.
pub type Reply = Result<Answer, CallError>;

#[derive(Debug)]
pub enum Event {
    CallRequested {
        request: RequestId,
        reference: String,
        input: Arc<[u8]>,
        limits: Limits,
    },
    /// Answer to [`Action::LookupResult`].
    ResultLookedUp {
        flight: FlightId,
        found: Option<Arc<ExecutionRecord>>,
    },
    /// Answer to [`Action::Execute`].
    ExecutionFinished {
        flight: FlightId,
        record: Arc<ExecutionRecord>,
    },
    /// A module's bytes are stored, verified and compiled locally.
    ModuleStored {
        module: ModuleId,
        size: u64,
    },
}

#[derive(Debug)]
pub enum Action {
    /// Look `key` up in the result store and answer with [`Event::ResultLookedUp`].
    LookupResult {
        flight: FlightId,
        key: CallKey,
    },
    /// Run the module and answer with [`Event::ExecutionFinished`].
    Execute {
        flight: FlightId,
        key: CallKey,
        module: ModuleId,
        input: Arc<[u8]>,
        limits: Limits,
    },
    StoreResult {
        key: CallKey,
        record: Arc<ExecutionRecord>,
    },
    PersistName(NameRecord),
    Reply {
        request: RequestId,
        reply: Reply,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleInfo {
    pub size: u64,
}

struct Flight {
    key: CallKey,
    module: ModuleId,
    input: Arc<[u8]>,
    limits: Limits,
    /// The first waiter started the flight; later ones joined it.
    waiters: Vec<RequestId>,
}

pub struct Core {
    local_id: String,
    modules: BTreeMap<ModuleId, ModuleInfo>,
    names: BTreeMap<String, NameRecord>,
    flights: HashMap<FlightId, Flight>,
    /// Calls with different limits may end differently (a fuel limit hit), so
    /// only calls with equal key *and* limits share a flight.
    flight_by_call: HashMap<(CallKey, Limits), FlightId>,
    next_flight: u64,
}

impl Core {
    pub fn new(local_id: impl Into<String>) -> Self {
        Self {
            local_id: local_id.into(),
            modules: BTreeMap::new(),
            names: BTreeMap::new(),
            flights: HashMap::new(),
            flight_by_call: HashMap::new(),
            next_flight: 0,
        }
    }

    pub fn local_id(&self) -> &str {
        &self.local_id
    }

    /// Loads a name record from storage (or a peer), keeping the newer one.
    /// Returns true if the record was adopted.
    pub fn merge_name(&mut self, record: NameRecord) -> bool {
        match self.names.get(&record.name) {
            Some(current) if !record.supersedes(current) => false,
            _ => {
                self.names.insert(record.name.clone(), record);
                true
            }
        }
    }

    pub fn names(&self) -> impl Iterator<Item = &NameRecord> {
        self.names.values()
    }

    pub fn modules(&self) -> impl Iterator<Item = (&ModuleId, &ModuleInfo)> {
        self.modules.iter()
    }

    pub fn module_info(&self, module: &ModuleId) -> Option<ModuleInfo> {
        self.modules.get(module).copied()
    }

    /// Number of executions or lookups currently shared by callers.
    pub fn flights_in_progress(&self) -> usize {
        self.flights.len()
    }

    /// Points `name` at the module `reference` resolves to, as a new version.
    pub fn publish_name(&mut self, name: &str, reference: &str) -> Result<(NameRecord, Vec<Action>), CallError> {
        validate_name(name)
            .map_err(|error| CallError::InvalidName { name: name.to_owned(), reason: error.to_string() })?;
        let module = self.resolve(reference)?;
        let version = self.names.get(name).map_or(1, |current| current.version + 1);
        let record = NameRecord { name: name.to_owned(), module, version, publisher: self.local_id.clone() };
        self.names.insert(name.to_owned(), record.clone());
        Ok((record.clone(), vec![Action::PersistName(record)]))
    }

    /// Resolves a name, a full module hash or a unique hash prefix.
    pub fn resolve(&self, reference: &str) -> Result<ModuleId, CallError> {
        let not_found = || CallError::ModuleNotFound { reference: reference.to_owned() };
        if let Ok(module) = reference.parse::<ModuleId>() {
            return self.modules.contains_key(&module).then_some(module).ok_or_else(not_found);
        }
        if let Some(record) = self.names.get(reference) {
            return match self.modules.contains_key(&record.module) {
                true => Ok(record.module),
                false => Err(CallError::ModuleNotFound { reference: record.module.to_hex() }),
            };
        }
        if looks_like_hex(reference) && reference.len() >= MIN_PREFIX_LEN {
            let matches: Vec<ModuleId> =
                self.modules.keys().filter(|module| module.to_hex().starts_with(reference)).copied().collect();
            return match matches.as_slice() {
                [] => Err(not_found()),
                [only] => Ok(*only),
                _ => Err(CallError::AmbiguousPrefix { prefix: reference.to_owned(), matches }),
            };
        }
        if validate_name(reference).is_ok() {
            return Err(CallError::NameNotFound { name: reference.to_owned() });
        }
        Err(not_found())
    }

    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::CallRequested { request, reference, input, limits } => {
                self.on_call_requested(request, &reference, input, limits)
            }
            Event::ResultLookedUp { flight, found } => self.on_result_looked_up(flight, found),
            Event::ExecutionFinished { flight, record } => self.on_execution_finished(flight, record),
            Event::ModuleStored { module, size } => {
                self.modules.insert(module, ModuleInfo { size });
                Vec::new()
            }
        }
    }

    fn on_call_requested(
        &mut self,
        request: RequestId,
        reference: &str,
        input: Arc<[u8]>,
        limits: Limits,
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
        self.flights.insert(flight, Flight { key, module, input, limits, waiters: vec![request] });
        vec![Action::LookupResult { flight, key }]
    }

    fn on_result_looked_up(&mut self, flight_id: FlightId, found: Option<Arc<ExecutionRecord>>) -> Vec<Action> {
        match found {
            Some(record) => match self.land(flight_id) {
                Some(flight) => reply_all(flight, record, |_| CacheStatus::Hit),
                None => Vec::new(),
            },
            None => match self.flights.get(&flight_id) {
                Some(flight) => vec![Action::Execute {
                    flight: flight_id,
                    key: flight.key,
                    module: flight.module,
                    input: flight.input.clone(),
                    limits: flight.limits,
                }],
                None => Vec::new(),
            },
        }
    }

    fn on_execution_finished(&mut self, flight_id: FlightId, record: Arc<ExecutionRecord>) -> Vec<Action> {
        let Some(flight) = self.land(flight_id) else {
            return Vec::new();
        };
        let mut actions = Vec::new();
        if record.outcome.is_cacheable() {
            actions.push(Action::StoreResult { key: flight.key, record: record.clone() });
        }
        actions.extend(reply_all(flight, record, |index| match index {
            0 => CacheStatus::Miss,
            _ => CacheStatus::Joined,
        }));
        actions
    }

    /// Removes a finished flight from both indexes.
    fn land(&mut self, flight_id: FlightId) -> Option<Flight> {
        let flight = self.flights.remove(&flight_id)?;
        self.flight_by_call.remove(&(flight.key, flight.limits));
        Some(flight)
    }
}

fn reply_all(flight: Flight, record: Arc<ExecutionRecord>, status: impl Fn(usize) -> CacheStatus) -> Vec<Action> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::{Outcome, Timings};

    fn core_with_module(bytes: &[u8]) -> (Core, ModuleId) {
        let mut core = Core::new("node-a");
        let module = ModuleId::of_bytes(bytes);
        core.handle(Event::ModuleStored { module, size: bytes.len() as u64 });
        (core, module)
    }

    fn call(core: &mut Core, request: RequestId, reference: &str, input: &[u8]) -> Vec<Action> {
        core.handle(Event::CallRequested {
            request,
            reference: reference.into(),
            input: input.into(),
            limits: Limits::default(),
        })
    }

    fn record(module: ModuleId, outcome: Outcome) -> Arc<ExecutionRecord> {
        Arc::new(ExecutionRecord { module, outcome, fuel_used: 7, timings: Timings::default() })
    }

    fn lookup_flight(actions: &[Action]) -> FlightId {
        match actions {
            [Action::LookupResult { flight, .. }] => *flight,
            other => panic!("expected one lookup, got {other:?}"),
        }
    }

    fn replies(actions: &[Action]) -> Vec<(RequestId, &Reply)> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Reply { request, reply } => Some((*request, reply)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn miss_executes_stores_and_replies() {
        let (mut core, module) = core_with_module(b"m");
        let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"10"));
        let actions = core.handle(Event::ResultLookedUp { flight, found: None });
        assert!(matches!(actions.as_slice(), [Action::Execute { module: m, .. }] if *m == module));
        let done = record(module, Outcome::Success { stdout: b"55".to_vec() });
        let actions = core.handle(Event::ExecutionFinished { flight, record: done });
        assert!(matches!(actions[0], Action::StoreResult { .. }));
        let replies = replies(&actions);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].1.as_ref().unwrap().cache, CacheStatus::Miss);
        assert_eq!(core.flights_in_progress(), 0);
    }

    #[test]
    fn identical_concurrent_calls_execute_once() {
        let (mut core, module) = core_with_module(b"m");
        let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"10"));
        assert!(call(&mut core, 2, &module.to_hex(), b"10").is_empty(), "joined during lookup");
        let executes = core.handle(Event::ResultLookedUp { flight, found: None });
        assert_eq!(executes.len(), 1);
        assert!(call(&mut core, 3, &module.to_hex(), b"10").is_empty(), "joined during execution");
        let different_input = call(&mut core, 4, &module.to_hex(), b"11");
        assert_ne!(lookup_flight(&different_input), flight);

        let actions = core
            .handle(Event::ExecutionFinished { flight, record: record(module, Outcome::Success { stdout: vec![1] }) });
        let replies = replies(&actions);
        let statuses: Vec<_> =
            replies.iter().map(|(request, reply)| (*request, reply.as_ref().unwrap().cache)).collect();
        assert_eq!(statuses, vec![(1, CacheStatus::Miss), (2, CacheStatus::Joined), (3, CacheStatus::Joined)]);
    }

    #[test]
    fn calls_with_different_limits_do_not_share_a_flight() {
        let (mut core, module) = core_with_module(b"m");
        let first = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"x"));
        let small = Limits { fuel: 5, ..Limits::default() };
        let actions = core.handle(Event::CallRequested {
            request: 2,
            reference: module.to_hex(),
            input: b"x".as_slice().into(),
            limits: small,
        });
        assert_ne!(lookup_flight(&actions), first);
    }

    #[test]
    fn cache_hit_replies_without_executing() {
        let (mut core, module) = core_with_module(b"m");
        let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b"10"));
        call(&mut core, 2, &module.to_hex(), b"10");
        let cached = record(module, Outcome::Success { stdout: b"55".to_vec() });
        let actions = core.handle(Event::ResultLookedUp { flight, found: Some(cached) });
        assert_eq!(actions.len(), 2);
        assert!(replies(&actions).iter().all(|(_, reply)| reply.as_ref().unwrap().cache == CacheStatus::Hit));
    }

    #[test]
    fn limit_failures_are_replied_but_not_stored() {
        let (mut core, module) = core_with_module(b"m");
        let flight = lookup_flight(&call(&mut core, 1, &module.to_hex(), b""));
        core.handle(Event::ResultLookedUp { flight, found: None });
        let out_of_fuel = record(module, Outcome::Failed(CallError::OutOfFuel { limit: 1 }));
        let actions = core.handle(Event::ExecutionFinished { flight, record: out_of_fuel });
        assert!(!actions.iter().any(|action| matches!(action, Action::StoreResult { .. })));
        assert_eq!(replies(&actions).len(), 1);
    }

    #[test]
    fn oversized_input_is_rejected_before_lookup() {
        let (mut core, module) = core_with_module(b"m");
        let limits = Limits { input_bytes: 2, ..Limits::default() };
        let actions = core.handle(Event::CallRequested {
            request: 9,
            reference: module.to_hex(),
            input: b"abc".as_slice().into(),
            limits,
        });
        assert!(matches!(replies(&actions)[0].1, Err(CallError::InputTooLarge { size: 3, limit_bytes: 2 })));
    }

    #[test]
    fn resolves_names_hashes_and_prefixes() {
        let (mut core, module) = core_with_module(b"m");
        let (_, other) = core_with_module(b"n");
        core.handle(Event::ModuleStored { module: other, size: 1 });
        let (record, actions) = core.publish_name("fib", &module.to_hex()).unwrap();
        assert_eq!(record.version, 1);
        assert!(matches!(actions.as_slice(), [Action::PersistName(_)]));
        assert_eq!(core.resolve("fib"), Ok(module));
        assert_eq!(core.resolve(&module.to_hex()), Ok(module));
        assert_eq!(core.resolve(&module.to_hex()[..8]), Ok(module));
        assert!(matches!(core.resolve("nope"), Err(CallError::NameNotFound { .. })));
        assert!(matches!(core.resolve(&"0".repeat(64)), Err(CallError::ModuleNotFound { .. })));
        assert!(matches!(core.resolve("Not A Name"), Err(CallError::ModuleNotFound { .. })));
        let (second, _) = core.publish_name("fib", &other.to_hex()).unwrap();
        assert_eq!(second.version, 2);
        assert_eq!(core.resolve("fib"), Ok(other));
    }

    #[test]
    fn ambiguous_prefix_lists_the_candidates() {
        let mut core = Core::new("a");
        // Find two modules sharing a 4-character prefix.
        let mut seen: HashMap<String, ModuleId> = HashMap::new();
        let (first, second) = (0u32..)
            .find_map(|i| {
                let module = ModuleId::of_bytes(&i.to_le_bytes());
                let prefix = module.to_hex()[..4].to_owned();
                seen.insert(prefix, module).map(|previous| (previous, module))
            })
            .unwrap();
        for module in [first, second] {
            core.handle(Event::ModuleStored { module, size: 1 });
        }
        let prefix = &first.to_hex()[..4];
        assert!(matches!(core.resolve(prefix), Err(CallError::AmbiguousPrefix { matches, .. }) if matches.len() == 2));
        assert_eq!(core.resolve(&first.to_hex()[..20]), Ok(first));
    }

    #[test]
    fn merge_keeps_the_newest_name_record() {
        let mut core = Core::new("a");
        let old = NameRecord { name: "f".into(), module: ModuleId::of_bytes(b"1"), version: 3, publisher: "x".into() };
        let new = NameRecord { version: 4, module: ModuleId::of_bytes(b"2"), ..old.clone() };
        assert!(core.merge_name(new.clone()));
        assert!(!core.merge_name(old));
        assert_eq!(core.names().next(), Some(&new));
    }
}
