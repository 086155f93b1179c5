//! Carrying out the core's actions: result lookups and stores, executions on
//! the runtime, and network requests.

use std::collections::VecDeque;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use nebula_protocol::core::{Answer, FlightId};
use nebula_protocol::wire::Request;
use nebula_protocol::{Action, CallError, CallKey, Core, Event, ExecutionRecord, Limits, ModuleId, Reply, Timings};
use tokio::sync::OwnedSemaphorePermit;

use super::{ExecutionJob, Shared, internal, unix_ms};
use crate::footprint::{AnswerKind, CallFootprint, Footprint, thread_cpu_time};
use crate::mesh::{Command, Purpose};
use crate::runtime::Prepared;
use crate::store::{ModuleMeta, StagedBlob};

impl Shared {
    pub(super) fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().expect("core lock")
    }

    /// Carries out actions, feeding any resulting events back to the core.
    pub(super) fn perform(self: &Arc<Self>, actions: Vec<Action>) {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            match action {
                Action::Reply { request, reply } => {
                    if let Some(waiter) = self.waiters.lock().expect("waiters lock").remove(&request) {
                        // The caller may have gone (HTTP client hung up); nothing to do then.
                        let _ = waiter.send(reply);
                    }
                }
                Action::LookupResult { flight, key } => {
                    let found = self.lookup_result(&key);
                    queue.extend(self.core().handle(Event::ResultLookedUp { flight, found }));
                }
                Action::Execute { flight, key, module, input, limits } => {
                    self.start_execution(ExecutionJob { flight, key, module, input, limits, queued: Instant::now() });
                }
                Action::StoreResult { key, record } => {
                    self.memory.insert(key, record.clone());
                    self.results.submit(key, record);
                }
                Action::PersistName(record) => {
                    let shared = self.clone();
                    tokio::task::spawn_blocking(move || {
                        if let Err(error) = shared.index.put_name(&record) {
                            tracing::warn!(%error, name = %record.name, "could not store a name record");
                        }
                    });
                }
                Action::Publish(gossip) => self.network_send(Command::Publish(gossip)),
                Action::TellPeers(gossip) => self.network_send(Command::TellPeers(gossip)),
                Action::FetchModule { module, from } => self.network_send(Command::Request {
                    peer: from,
                    request: Request::FetchModule { module },
                    purpose: Purpose::Module(module),
                }),
                Action::FetchResult { flight, key, from } => self.network_send(Command::Request {
                    peer: from,
                    request: Request::FetchResult { key },
                    purpose: Purpose::Result(flight, key),
                }),
                Action::ForwardCall { flight, to, module, input, limits, hops } => {
                    self.network_send(Command::Request {
                        peer: to,
                        request: Request::Call { reference: module.to_hex(), input: input.to_vec(), limits, hops },
                        purpose: Purpose::Forward(flight),
                    })
                }
                Action::SendSync { to, request } => self.network_send(Command::Request {
                    peer: to,
                    request: Request::Sync(request),
                    purpose: Purpose::Sync,
                }),
                Action::RespondSync { token, response } => self.network_send(Command::Respond {
                    token,
                    response: nebula_protocol::wire::Response::Sync(response),
                }),
                Action::Penalise { peer, reason } => {
                    tracing::warn!(%peer, %reason, "peer penalised");
                    self.metrics.peer_penalties.inc();
                }
            }
        }
    }

    /// Network actions are dropped when the node runs without a mesh; the
    /// core only asks for them once it has heard of peers.
    fn network_send(&self, command: Command) {
        if let Some(network) = self.network.get() {
            network.send(command);
        }
    }

    pub(super) fn lookup_result(&self, key: &CallKey) -> Option<Arc<ExecutionRecord>> {
        if let Some(record) = self.memory.get(key) {
            return Some(record);
        }
        match self.index.result(key) {
            Ok(Some(record)) => {
                let record = Arc::new(record);
                self.memory.insert(*key, record.clone());
                Some(record)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, key = %key.short(), "result index unreadable; executing instead");
                None
            }
        }
    }

    /// Runs an execution on a blocking thread once a slot is free. The common
    /// case (a free slot) goes straight to the blocking pool, and the reply
    /// leaves from there: two thread hand-offs per call instead of four.
    fn start_execution(self: &Arc<Self>, job: ExecutionJob) {
        // A module still compiling is waited for before taking a slot.
        if let Some(compiled) = self.runtime.until_compiled(&job.module, &self.blobs.path(&job.module)) {
            let shared = self.clone();
            tokio::spawn(async move {
                compiled.await;
                shared.start_execution(job)
            });
            return;
        }
        match self.execution_slots.clone().try_acquire_owned() {
            Ok(slot) => self.clone().run_on_blocking_thread(job, slot),
            Err(_) => {
                let shared = self.clone();
                tokio::spawn(async move {
                    match shared.execution_slots.clone().acquire_owned().await {
                        Ok(slot) => shared.run_on_blocking_thread(job, slot),
                        Err(_) => {
                            let record = ExecutionRecord::rejected(job.module, internal("the node is shutting down"));
                            shared.finish_execution(job.flight, record);
                        }
                    }
                });
            }
        }
    }

    fn run_on_blocking_thread(self: Arc<Self>, job: ExecutionJob, slot: OwnedSemaphorePermit) {
        tokio::task::spawn_blocking(move || {
            let queue_us = job.queued.elapsed().as_micros() as u64;
            let run = || self.execute(&job.key, job.module, &job.input, &job.limits, queue_us);
            // A bug in the runtime must not leave the callers waiting forever.
            let record = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
                tracing::error!(module = %job.module.short(), "execution panicked");
                ExecutionRecord::rejected(job.module, internal("the execution failed unexpectedly"))
            });
            drop(slot);
            self.finish_execution(job.flight, record);
        });
    }

    fn finish_execution(self: &Arc<Self>, flight: FlightId, record: ExecutionRecord) {
        self.metrics.executions.inc();
        self.metrics.fuel_used.inc_by(record.fuel_used);
        self.activity().record_execution(unix_ms(), record.module, record.fuel_used, record.timings.run_us);
        let actions = self.core().handle(Event::ExecutionFinished { flight, record: Arc::new(record) });
        self.perform(actions);
    }

    /// Runs on a blocking thread: loads the module if needed, then executes.
    fn execute(
        &self,
        key: &CallKey,
        module: ModuleId,
        input: &[u8],
        limits: &Limits,
        queue_us: u64,
    ) -> ExecutionRecord {
        let loading = Instant::now();
        let prepared = match self.prepared(module) {
            Ok(prepared) => prepared,
            Err(error) => return ExecutionRecord::rejected(module, error),
        };
        let load_us = loading.elapsed().as_micros() as u64;
        // Module loading is left out: it is paid once per module and process
        // (and compiling runs on threads of its own).
        let (cpu_before, wall_before) = (thread_cpu_time(), Instant::now());
        let report = self.runtime.execute(&prepared, key, input, limits);
        let (cpu, wall) = (thread_cpu_time().saturating_sub(cpu_before), wall_before.elapsed());
        let (energy_uwh, energy_source) = self.energy.energy_uwh(cpu);
        let footprint = Footprint {
            cpu_ns: cpu.as_nanos() as u64,
            wall_ns: wall.as_nanos() as u64,
            fuel: report.fuel_used,
            peak_memory_bytes: report.peak_memory_bytes,
            energy_uwh,
            energy_source,
        };
        self.ledger.record_execution(module, *key, footprint);
        let mut record = ExecutionRecord {
            module,
            outcome: report.outcome,
            fuel_used: report.fuel_used,
            timings: Timings { queue_us, instantiate_us: load_us + report.instantiate_us, run_us: report.run_us },
            executed_by: self.node_id.to_string(),
            signature: Vec::new(),
        };
        crate::signing::sign(&self.identity, key, &mut record);
        record
    }

    /// The module ready to run (see `Runtime::ready`); a corrupt blob is never executed.
    fn prepared(&self, module: ModuleId) -> Result<Prepared, CallError> {
        self.runtime.ready(&module, &self.blobs.path(&module))
    }

    /// A module from a peer: staged from memory, then stored like a deploy.
    pub(super) fn store_module(&self, _module: ModuleId, wasm: &[u8]) -> Result<(), CallError> {
        let staged = self.blobs.stage_bytes(wasm).map_err(|error| internal(&format!("storing the module: {error}")))?;
        self.store_staged(staged)
    }

    /// Checks (without compiling), then stores blob and index entry, and
    /// queues the compile: the module can be called once it is compiled.
    pub(super) fn store_staged(&self, staged: StagedBlob) -> Result<(), CallError> {
        let (module, size) = (staged.id(), staged.size());
        let mapped = staged.map().map_err(|error| internal(&format!("reading the module: {error}")))?;
        let checked = self.runtime.check(&mapped)?;
        drop(mapped);
        self.content_types.lock().expect("content types lock").insert(module, checked.content_type);
        let storage_error = |error: String| internal(&format!("storing the module: {error}"));
        self.blobs.commit(staged).map_err(|error| storage_error(error.to_string()))?;
        let meta = ModuleMeta { size, deployed_unix_ms: unix_ms() };
        self.index.put_module(&module, &meta).map_err(|error| storage_error(format!("{error:#}")))?;
        self.runtime.compile_in_background(module, self.blobs.path(&module), size);
        Ok(())
    }

    /// Counts the answer against its function and finds what it cost here.
    pub(super) fn account(&self, reply: &Reply) -> CallFootprint {
        let Ok(answer) = reply else { return CallFootprint::None };
        let module = answer.record.module;
        let (kind, footprint) = match answer.cache {
            nebula_protocol::CacheStatus::Hit => (AnswerKind::CacheHit, CallFootprint::Cached),
            // Refused before anything ran (e.g. a corrupt module).
            _ if answer.record.executed_by.is_empty() => (AnswerKind::Elsewhere, CallFootprint::None),
            _ if answer.record.executed_by != *self.node_id => (AnswerKind::Elsewhere, CallFootprint::Elsewhere),
            // Only forgotten under a flood of thousands of executions at once.
            _ => match self.ledger.execution(&answer.key) {
                Some(footprint) => (AnswerKind::Executed, CallFootprint::Executed(footprint)),
                None => (AnswerKind::Executed, CallFootprint::None),
            },
        };
        self.ledger.record_answer(module, kind);
        footprint
    }

    pub(super) fn record_reply(&self, reply: &Reply, elapsed: Duration) {
        let outcome = match reply {
            Ok(Answer { cache, record, .. }) => {
                self.metrics.record_cache(match cache {
                    nebula_protocol::CacheStatus::Hit => "hit",
                    nebula_protocol::CacheStatus::Miss => "miss",
                    nebula_protocol::CacheStatus::Joined => "joined",
                });
                record.outcome.kind()
            }
            Err(error) => error.kind(),
        };
        self.metrics.record_call(outcome, elapsed.as_secs_f64());
    }
}
