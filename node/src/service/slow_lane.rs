//! The threads that run the slow lane's executions (`fair_slots`: modules
//! whose calls held a slot long lately, or were never seen), at a lower CPU
//! priority than the rest of the node. When the CPUs are busy, quick calls,
//! the HTTP server and the core task then go first, and a flood of endless
//! loops gets only the CPU time they leave: the fair slots keep a slot free
//! for a quick call, this keeps a core free for it.
//!
//! The price: a slow call on a node whose CPUs are saturated with quick work
//! runs slower, and its deadline (wall-clock time) may end it sooner than
//! its fuel would. An idle CPU still runs it at full speed.

/// Added to the node's nice value for slow-lane threads: a thread at +10
/// weighs about a tenth of one at +0 in Linux's scheduler.
pub const SLOW_LANE_NICE: i32 = 10;

pub struct SlowLane {
    pool: rayon::ThreadPool,
    /// The node's Tokio runtime, entered around each job: what an execution
    /// calls may expect one, as on Tokio's blocking threads.
    runtime: Option<tokio::runtime::Handle>,
}

impl SlowLane {
    /// `threads` should be the node's execution slots: every slow execution
    /// holds one, so none waits here for a thread.
    pub fn new(threads: usize) -> anyhow::Result<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|index| format!("nebula-slow-{index}"))
            .start_handler(|_| lower_this_threads_priority())
            // The executions catch their own panics; anything else is a bug,
            // but must not abort the node (rayon's default).
            .panic_handler(|_| tracing::error!("a slow-lane job panicked"))
            .build()?;
        Ok(SlowLane { pool, runtime: tokio::runtime::Handle::try_current().ok() })
    }

    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let runtime = self.runtime.clone();
        self.pool.spawn(move || {
            let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
            job();
        });
    }
}

/// On Linux the nice value belongs to a thread, not the process, so this
/// lowers only the calling thread's priority. (Elsewhere it would lower the
/// whole node's, so it does nothing there.)
#[cfg(target_os = "linux")]
fn lower_this_threads_priority() {
    let lowered = thread_nice().and_then(|nice| set_thread_nice((nice + SLOW_LANE_NICE).min(19)));
    if let Err(error) = lowered {
        tracing::warn!(%error, "a slow-lane thread keeps the node's CPU priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_this_threads_priority() {}

#[cfg(target_os = "linux")]
fn thread_nice() -> std::io::Result<i32> {
    // -1 is also a valid nice value: only errno tells an error apart.
    // SAFETY: errno and getpriority concern the calling thread only.
    unsafe {
        *libc::__errno_location() = 0;
        let nice = libc::getpriority(libc::PRIO_PROCESS, 0);
        match nice == -1 && *libc::__errno_location() != 0 {
            true => Err(std::io::Error::last_os_error()),
            false => Ok(nice),
        }
    }
}

#[cfg(target_os = "linux")]
fn set_thread_nice(nice: i32) -> std::io::Result<()> {
    // SAFETY: a plain system call on the calling thread.
    match unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn slow_lane_jobs_run_at_a_lower_priority_than_the_node() {
        let node_nice = thread_nice().unwrap();
        let lane = SlowLane::new(2).unwrap();
        let (sender, received) = mpsc::channel();
        for _ in 0..4 {
            let sender = sender.clone();
            lane.spawn(move || sender.send(thread_nice().unwrap()).unwrap());
        }
        for _ in 0..4 {
            let nice = received.recv_timeout(std::time::Duration::from_secs(30)).unwrap();
            assert_eq!(nice, (node_nice + SLOW_LANE_NICE).min(19));
        }
        // The thread that made the lane keeps its priority.
        assert_eq!(thread_nice().unwrap(), node_nice);
    }

    #[tokio::test]
    async fn slow_lane_jobs_run_inside_the_node_runtime() {
        let lane = SlowLane::new(1).unwrap();
        let (sender, received) = tokio::sync::oneshot::channel();
        lane.spawn(move || sender.send(tokio::runtime::Handle::try_current().is_ok()).unwrap());
        let inside = tokio::time::timeout(std::time::Duration::from_secs(30), received).await.unwrap().unwrap();
        assert!(inside, "an execution may use Tokio as on a blocking thread");
    }
}
