//! Running the executions the core asks for: an execution slot, a blocking
//! thread, the runtime, the footprint, the seal; the result goes back to
//! the core task.

use std::sync::Arc;
use std::time::Instant;

use nebula_protocol::{CallError, CallKey, ExecutionRecord, FlightId, Limits, ModuleId, Timings};
use tokio::sync::mpsc::UnboundedSender;

use super::core_task::Completion;
use super::fair_slots::{Acquired, Slot};
use super::{Shared, internal, unix_ms};
use crate::footprint::{Footprint, thread_cpu_time};
use crate::runtime::Prepared;

/// An execution the core asked for, waiting for a slot.
pub(super) struct ExecutionJob {
    pub(super) flight: FlightId,
    pub(super) key: CallKey,
    pub(super) module: ModuleId,
    pub(super) input: Arc<[u8]>,
    pub(super) limits: Limits,
    pub(super) queued: Instant,
}

/// Runs `job` on a blocking thread once its module's turn for a slot comes
/// (`fair_slots`), and reports it to the core task. The common case (a free
/// slot) goes straight to the blocking pool.
pub(super) fn start(shared: &Arc<Shared>, job: ExecutionJob, done: UnboundedSender<Completion>) {
    // The common case, a module loaded already, skips the blob's path.
    let loaded = shared.runtime.prepared(&job.module);
    // A module still compiling is waited for before taking a slot.
    if loaded.is_none()
        && let Some(compiled) = shared.runtime.until_compiled(&job.module, &shared.blobs.path(&job.module))
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            compiled.await;
            start(&shared, job, done)
        });
        return;
    }
    match shared.execution_slots.acquire(job.module) {
        Ok(Acquired::Now(slot)) => run_on_blocking_thread(shared.clone(), job, loaded, slot, done),
        Ok(Acquired::Queued(turn)) => {
            let shared = shared.clone();
            tokio::spawn(async move {
                match turn.await {
                    Ok(slot) => run_on_blocking_thread(shared, job, loaded, slot, done),
                    Err(_) => {
                        let result = Err(internal("the node is shutting down"));
                        let _ = done.send(Completion::Executed { flight: job.flight, result });
                    }
                }
            });
        }
        Err(overloaded) => {
            let result = Err(CallError::Overloaded {
                module: job.module,
                queued: overloaded.queued as u64,
                retry_after_ms: overloaded.retry_after.as_millis() as u64,
            });
            let _ = done.send(Completion::Executed { flight: job.flight, result });
        }
    }
}

fn run_on_blocking_thread(
    shared: Arc<Shared>,
    job: ExecutionJob,
    loaded: Option<Prepared>,
    slot: Slot,
    done: UnboundedSender<Completion>,
) {
    tokio::task::spawn_blocking(move || {
        let queue_us = job.queued.elapsed().as_micros() as u64;
        let run = || shared.execute(&job.key, job.module, loaded, &job.input, &job.limits, queue_us);
        // A bug in the runtime must not leave the callers waiting forever.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
            tracing::error!(module = %job.module.short(), "execution panicked");
            Err(internal("the execution failed unexpectedly"))
        });
        drop(slot);
        if let Ok(record) = &result {
            shared.metrics.executions.inc();
            shared.metrics.fuel_used.inc_by(record.fuel_used);
            shared.activity().record_execution(unix_ms(), record.module, record.fuel_used, record.timings.run_us);
        }
        // Fails only once the core task has stopped (shutdown).
        let _ = done.send(Completion::Executed { flight: job.flight, result: result.map(Arc::new) });
    });
}

impl Shared {
    /// Runs on a blocking thread: loads the module unless `loaded`, then executes.
    fn execute(
        &self,
        key: &CallKey,
        module: ModuleId,
        loaded: Option<Prepared>,
        input: &[u8],
        limits: &Limits,
        queue_us: u64,
    ) -> Result<ExecutionRecord, CallError> {
        let loading = Instant::now();
        let prepared = match loaded {
            Some(prepared) => prepared,
            None => self.prepared(module)?,
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
        // Signed only if it leaves the node (`sealing`).
        self.sealer.seal(key, &mut record);
        Ok(record)
    }

    /// The module ready to run (see `Runtime::ready`); a corrupt blob is never executed.
    fn prepared(&self, module: ModuleId) -> Result<Prepared, CallError> {
        self.runtime.ready(&module, &self.blobs.path(&module))
    }
}
