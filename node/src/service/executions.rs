//! Running the executions the core asks for: an execution slot, the
//! guest (in place on a quiet node, else on a blocking thread), the
//! footprint, the seal; the result goes back to whoever drives the core
//! (returned from an in-place run, else sent to the core task).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures::FutureExt;
use nebula_protocol::{CallError, CallKey, ExecutionRecord, FlightId, Limits, ModuleId, Timings};
use tokio::sync::mpsc::UnboundedSender;

use super::core_task::Completion;
use super::fair_slots::{Acquired, Slot};
use super::{Shared, internal, unix_ms};
use crate::footprint::{Footprint, with_cpu_time};
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

/// An execution that ended: its flight and record (or why there is none).
pub(super) struct Finished {
    pub(super) flight: FlightId,
    pub(super) result: Result<Arc<ExecutionRecord>, CallError>,
}

/// Runs `job` once its module's turn for a slot comes (`fair_slots`), and
/// reports it to the core task through `done`; or returns it if it ran to
/// its end right here (see `run`). The common case (a free slot) starts at once.
pub(super) fn start(shared: &Arc<Shared>, job: ExecutionJob, done: UnboundedSender<Completion>) -> Option<Finished> {
    // The common case, a module loaded already, skips the blob's path.
    let loaded = shared.runtime.prepared(&job.module);
    // A module still compiling is waited for before taking a slot.
    if loaded.is_none()
        && let Some(compiled) = shared.runtime.until_compiled(&job.module, &shared.blobs.path(&job.module))
    {
        let shared = shared.clone();
        tokio::spawn(async move {
            compiled.await;
            report(&done, start(&shared, job, done.clone()));
        });
        return None;
    }
    match shared.execution_slots.acquire(job.module) {
        Ok(Acquired::Now(slot)) => run(shared.clone(), job, loaded, slot, done),
        Ok(Acquired::Queued(turn)) => {
            let shared = shared.clone();
            tokio::spawn(async move {
                let finished = match turn.await {
                    Ok(slot) => run(shared, job, loaded, slot, done.clone()),
                    Err(_) => Some(Finished { flight: job.flight, result: Err(internal("the node is shutting down")) }),
                };
                report(&done, finished);
            });
            None
        }
        Err(overloaded) => {
            let result = Err(CallError::Overloaded {
                module: job.module,
                queued: overloaded.queued as u64,
                retry_after_ms: overloaded.retry_after.as_millis() as u64,
            });
            Some(Finished { flight: job.flight, result })
        }
    }
}

/// Sends an execution that ended to the core task; fails only once the
/// core task has stopped (shutdown).
fn report(done: &UnboundedSender<Completion>, finished: Option<Finished>) {
    if let Some(finished) = finished {
        let _ = done.send(Completion::Executed(finished));
    }
}

/// Runs the guest (`Runtime::execute`, a future that yields every
/// million units of fuel). On a quiet node (this the only call waiting and
/// the only execution, of a module known to be quick) its first slice runs
/// right here, on the thread driving the core (the caller's own, when it
/// found the core free): a quick call then completes with no thread woken,
/// since waking a parked thread costs more than the call itself, and its
/// end is returned rather than sent (a task that wakes itself is queued
/// behind others and wakes an idle worker). Otherwise, or
/// once it yields, it runs on a blocking thread: on a busy node, guests on
/// the async workers were measured to cost the HTTP server most of its
/// throughput when it shares one CPU (bench-http pins it so). Slow-lane
/// executions run on threads of lower CPU priority (`slow_lane`).
fn run(
    shared: Arc<Shared>,
    job: ExecutionJob,
    loaded: Option<Prepared>,
    slot: Slot,
    done: UnboundedSender<Completion>,
) -> Option<Finished> {
    // A module still to be loaded from disk is not run in place: loading blocks.
    let inline = loaded.is_some() && shared.is_quiet() && slot.quick_and_alone();
    let slow_lane = slot.slow_lane();
    let running = shared.clone();
    // Built where it runs: boxed only to be polled here first, else on the
    // blocking thread's stack (the future is a few KiB).
    let execution = move || async move {
        let shared = running;
        let queue_us = job.queued.elapsed().as_micros() as u64;
        // A bug in the runtime must not leave the callers waiting forever.
        let result = AssertUnwindSafe(execute(&shared, &job, loaded, queue_us)).catch_unwind().await;
        let result = result.unwrap_or_else(|_| {
            tracing::error!(module = %job.module.short(), "execution panicked");
            Err(internal("the execution failed unexpectedly"))
        });
        drop(slot);
        if let Ok(record) = &result {
            shared.metrics.executions.inc();
            shared.metrics.fuel_used.inc_by(record.fuel_used);
            shared.activity().record_execution(unix_ms(), record.module, record.fuel_used, record.timings.run_us);
        }
        Finished { flight: job.flight, result: result.map(Arc::new) }
    };
    if !inline {
        spawn_blocking(&shared, slow_lane, move || report(&done, Some(futures::executor::block_on(execution()))));
        return None;
    }
    let mut task = Box::pin(execution());
    // A future may be polled once by anyone: whatever it waits on is
    // registered again with the waker of the task that polls it next.
    if let Poll::Ready(finished) = task.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        return Some(finished);
    }
    spawn_blocking(&shared, slow_lane, move || report(&done, Some(futures::executor::block_on(task))));
    None
}

/// Runs `work` on a blocking thread: a slow-lane one for slow-lane executions.
fn spawn_blocking(shared: &Shared, slow_lane: bool, work: impl FnOnce() + Send + 'static) {
    match slow_lane {
        true => shared.slow_lane.spawn(work),
        false => drop(tokio::task::spawn_blocking(work)),
    }
}

/// Loads the module unless `loaded`, then executes the job.
async fn execute(
    shared: &Arc<Shared>,
    job: &ExecutionJob,
    loaded: Option<Prepared>,
    queue_us: u64,
) -> Result<ExecutionRecord, CallError> {
    let ExecutionJob { key, module, input, limits, .. } = job;
    let loading = Instant::now();
    let prepared = match loaded {
        Some(prepared) => prepared,
        // Reading, verifying and perhaps compiling: this runs on a blocking
        // thread then (`run` never runs it in place).
        None => shared.prepared(*module)?,
    };
    let load_us = loading.elapsed().as_micros() as u64;
    // Module loading is left out: it is paid once per module and process
    // (and compiling runs on threads of its own).
    let wall_before = Instant::now();
    let (report, cpu) = with_cpu_time(shared.runtime.execute(&prepared, key, input, limits)).await;
    let wall = wall_before.elapsed();
    let (energy_uwh, energy_source) = shared.energy.energy_uwh(cpu);
    let footprint = Footprint {
        cpu_ns: cpu.as_nanos() as u64,
        wall_ns: wall.as_nanos() as u64,
        fuel: report.fuel_used,
        peak_memory_bytes: report.peak_memory_bytes,
        energy_uwh,
        energy_source,
    };
    shared.ledger.record_execution(*module, *key, footprint);
    let mut record = ExecutionRecord {
        module: *module,
        outcome: report.outcome,
        fuel_used: report.fuel_used,
        timings: Timings { queue_us, instantiate_us: load_us + report.instantiate_us, run_us: report.run_us },
        executed_by: shared.node_id.to_string(),
        signature: Vec::new(),
    };
    // Signed only if it leaves the node (`sealing`).
    shared.sealer.seal(key, &mut record);
    Ok(record)
}

impl Shared {
    /// The module ready to run (see `Runtime::ready`); a corrupt blob is never executed.
    fn prepared(&self, module: ModuleId) -> Result<Prepared, CallError> {
        self.runtime.ready(&module, &self.blobs.path(&module))
    }
}
