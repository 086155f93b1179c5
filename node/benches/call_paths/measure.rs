//! Timing loops and their statistics.

use std::time::{Duration, Instant};

pub struct Measured {
    pub samples: Vec<Duration>,
}

impl Measured {
    pub fn median(&self) -> Duration {
        percentile(&self.samples, 0.5)
    }

    pub fn p99(&self) -> Duration {
        percentile(&self.samples, 0.99)
    }
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// How long and how often to time one path.
#[derive(Clone, Copy)]
pub struct Plan {
    pub warmup: usize,
    pub iterations: usize,
    /// Stop early once this much time has passed (after at least 3 samples).
    pub budget: Duration,
}

impl Plan {
    pub const fn new(warmup: usize, iterations: usize, budget: Duration) -> Self {
        Self { warmup, iterations, budget }
    }
}

/// Runs `f` `plan.warmup` times, then times up to `plan.iterations` runs of it.
/// `f` gets the run's index (warm-up runs included), e.g. to vary the input.
pub fn measure(plan: Plan, mut f: impl FnMut(usize)) -> Measured {
    for i in 0..plan.warmup {
        f(i);
    }
    let mut samples = Vec::with_capacity(plan.iterations);
    let started = Instant::now();
    for i in 0..plan.iterations {
        let t = Instant::now();
        f(plan.warmup + i);
        samples.push(t.elapsed());
        if started.elapsed() > plan.budget && samples.len() >= 3 {
            break;
        }
    }
    Measured { samples }
}

/// Like [`measure`], for an async path, timed from a task on `tokio`'s
/// workers: where a node's callers (its HTTP handlers) run.
pub fn measure_on_runtime<F, Fut>(tokio: &tokio::runtime::Runtime, plan: Plan, mut f: F) -> Measured
where
    F: FnMut(usize) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    tokio.block_on(async move {
        let timed = tokio::spawn(async move {
            for i in 0..plan.warmup {
                f(i).await;
            }
            let mut samples = Vec::with_capacity(plan.iterations);
            let started = Instant::now();
            for i in 0..plan.iterations {
                let t = Instant::now();
                f(plan.warmup + i).await;
                samples.push(t.elapsed());
                if started.elapsed() > plan.budget && samples.len() >= 3 {
                    break;
                }
            }
            samples
        });
        Measured { samples: timed.await.expect("the timing task ran") }
    })
}

/// Like [`measure_on_runtime`] for two paths at once, their runs taking
/// turns (a, b, a, b, ...): on a shared machine whose speed drifts, both
/// see the same conditions, so their ratio holds even when their times move.
pub fn measure_interleaved_on_runtime<A, FutA, B, FutB>(
    tokio: &tokio::runtime::Runtime,
    plan: Plan,
    mut a: A,
    mut b: B,
) -> (Measured, Measured)
where
    A: FnMut(usize) -> FutA + Send + 'static,
    FutA: std::future::Future<Output = ()> + Send,
    B: FnMut(usize) -> FutB + Send + 'static,
    FutB: std::future::Future<Output = ()> + Send,
{
    tokio.block_on(async move {
        let timed = tokio::spawn(async move {
            for i in 0..plan.warmup {
                a(i).await;
                b(i).await;
            }
            let (mut a_samples, mut b_samples) = (Vec::new(), Vec::new());
            let started = Instant::now();
            for i in 0..plan.iterations {
                let t = Instant::now();
                a(plan.warmup + i).await;
                a_samples.push(t.elapsed());
                let t = Instant::now();
                b(plan.warmup + i).await;
                b_samples.push(t.elapsed());
                if started.elapsed() > plan.budget && a_samples.len() >= 3 {
                    break;
                }
            }
            (Measured { samples: a_samples }, Measured { samples: b_samples })
        });
        timed.await.expect("the timing task ran")
    })
}

/// Like [`measure`], for paths whose setup must not be timed: `f` does its
/// setup and returns the duration of the part that counts.
pub fn measure_part(plan: Plan, mut f: impl FnMut(usize) -> Duration) -> Measured {
    for i in 0..plan.warmup {
        f(i);
    }
    let mut samples = Vec::with_capacity(plan.iterations);
    let started = Instant::now();
    for i in 0..plan.iterations {
        samples.push(f(plan.warmup + i));
        if started.elapsed() > plan.budget && samples.len() >= 3 {
            break;
        }
    }
    Measured { samples }
}
