//! Turns what wasmtime reports into one clear [`Outcome`].

use nebula_protocol::{Failure, Limits, Outcome};
use wasmtime::{ResourceLimiter, Trap};
use wasmtime_wasi::I32Exit;

use super::profile::CallPipes;

/// Bytes of stderr kept in a non-zero-exit error.
const STDERR_TAIL_BYTES: usize = 2048;

/// Enforces the memory limit and remembers that it did, so a failed grow is
/// reported as "memory limit" rather than as whatever the guest does next.
pub struct MemoryLimiter {
    limit: usize,
    exceeded: bool,
    /// The largest memory granted (the initial size counts: wasmtime asks for it too).
    peak: usize,
}

impl MemoryLimiter {
    pub fn new(limit_bytes: u64) -> Self {
        Self { limit: usize::try_from(limit_bytes).unwrap_or(usize::MAX), exceeded: false, peak: 0 }
    }

    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    pub fn peak_bytes(&self) -> u64 {
        self.peak as u64
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            // An error (not `Ok(false)`) traps: a guest cannot carry on past the limit.
            return Err(wasmtime::format_err!("memory limit of {} bytes exceeded", self.limit));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }
}

pub fn classify(result: wasmtime::Result<()>, memory_limit_hit: bool, pipes: &CallPipes, limits: &Limits) -> Outcome {
    let stdout = pipes.stdout.contents();
    // Limit hits come first: a guest that hits one often fails in some other
    // way right after (a panic, an exit code), which would hide the cause.
    if memory_limit_hit {
        return Outcome::Failed(Failure::MemoryLimit { limit_bytes: limits.memory_bytes });
    }
    if stdout.len() as u64 > limits.output_bytes {
        return Outcome::Failed(Failure::OutputTooLarge { limit_bytes: limits.output_bytes });
    }
    let error = match result {
        Ok(()) => return Outcome::Success { stdout: stdout.to_vec() },
        Err(error) => error,
    };
    if let Some(I32Exit(code)) = error.downcast_ref::<I32Exit>() {
        return match code {
            0 => Outcome::Success { stdout: stdout.to_vec() },
            code => Outcome::Failed(Failure::NonZeroExit { code: *code, stderr_tail: stderr_tail(pipes) }),
        };
    }
    Outcome::Failed(match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => Failure::OutOfFuel { limit: limits.fuel },
        Some(Trap::Interrupt) => Failure::DeadlineExceeded { deadline_ms: limits.deadline_ms },
        Some(trap) => Failure::Trap { message: trap.to_string(), stderr_tail: stderr_tail(pipes) },
        None => Failure::Trap { message: format!("{error:#}"), stderr_tail: stderr_tail(pipes) },
    })
}

fn stderr_tail(pipes: &CallPipes) -> String {
    let stderr = pipes.stderr.contents();
    let tail = &stderr[stderr.len().saturating_sub(STDERR_TAIL_BYTES)..];
    String::from_utf8_lossy(tail).trim_end().to_owned()
}
