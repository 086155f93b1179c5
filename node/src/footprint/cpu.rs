//! The calling thread's CPU clock. Executions run on a blocking thread of
//! their own, so the difference between two readings is the CPU time of the
//! call alone, whatever else the machine does meanwhile.

use std::time::Duration;

/// CPU time the calling thread has used so far (zero if the clock is unavailable).
pub fn thread_cpu_time() -> Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if status != 0 {
        return Duration::ZERO;
    }
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_clock_counts_work_but_not_sleep() {
        let start = thread_cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        let worked = thread_cpu_time() - start;
        assert!(worked > Duration::ZERO, "{x}");
        let before_sleep = thread_cpu_time();
        std::thread::sleep(Duration::from_millis(50));
        assert!(thread_cpu_time() - before_sleep < Duration::from_millis(20));
    }
}
