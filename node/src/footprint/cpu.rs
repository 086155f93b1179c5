//! The calling thread's CPU clock, and the CPU time of a future: read
//! around each of its polls, so an execution that yields and resumes on
//! another worker is counted whole, and nothing else its threads did meanwhile.

use std::pin::pin;
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

/// Runs `future` to its end; its output and the CPU time spent polling it.
pub async fn with_cpu_time<F: Future>(future: F) -> (F::Output, Duration) {
    let mut future = pin!(future);
    let mut cpu = Duration::ZERO;
    let output = std::future::poll_fn(|context| {
        let before = thread_cpu_time();
        let polled = future.as_mut().poll(context);
        cpu += thread_cpu_time().saturating_sub(before);
        polled
    })
    .await;
    (output, cpu)
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

    /// Burns some CPU on each poll; ready on the third.
    struct Busy(u32);

    impl Future for Busy {
        type Output = u64;
        fn poll(mut self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<u64> {
            let mut x = 0u64;
            for i in 0..2_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            self.0 += 1;
            if self.0 == 3 { std::task::Poll::Ready(x) } else { std::task::Poll::Pending }
        }
    }

    #[test]
    fn a_future_is_charged_for_its_polls_and_not_the_time_between() {
        let mut timed = std::pin::pin!(with_cpu_time(Busy(0)));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        let cpu = loop {
            match timed.as_mut().poll(&mut context) {
                std::task::Poll::Ready((_, cpu)) => break cpu,
                // Between polls the thread sleeps: no CPU, as when the task waits.
                std::task::Poll::Pending => std::thread::sleep(Duration::from_millis(100)),
            }
        };
        assert!(cpu > Duration::ZERO && cpu < Duration::from_millis(200), "{cpu:?}");
    }
}
