//! The purity profile: what a guest can observe. Clocks are frozen and the
//! random stream is derived from the call key, so every observable input of a
//! call is fixed by (module, input) and any node computes the same output.

use std::convert::Infallible;
use std::time::Duration;

use nebula_protocol::CallKey;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder};

use super::setup::CallSetup;

/// 2001-09-09T01:46:40Z, a fixed and recognisable instant.
pub(super) const FROZEN_WALL_CLOCK: Duration = Duration::from_secs(1_000_000_000);

struct FrozenWallClock;

impl HostWallClock for FrozenWallClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        FROZEN_WALL_CLOCK
    }
}

struct FrozenMonotonicClock;

impl HostMonotonicClock for FrozenMonotonicClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// An endless byte stream: BLAKE3 in extendable-output mode, keyed by the
/// call key and a purpose label. Stable across platforms and crate versions.
pub struct CallRandom(blake3::OutputReader);

impl CallRandom {
    pub fn new(key: &CallKey, purpose: &str) -> Self {
        let mut hasher = blake3::Hasher::new_keyed(key.as_bytes());
        hasher.update(purpose.as_bytes());
        Self(hasher.finalize_xof())
    }
}

impl rand_core::TryRng for CallRandom {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut bytes = [0; 4];
        self.0.fill(&mut bytes);
        Ok(u32::from_le_bytes(bytes))
    }

    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut bytes = [0; 8];
        self.0.fill(&mut bytes);
        Ok(u64::from_le_bytes(bytes))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.0.fill(dst);
        Ok(())
    }
}

/// Captured output streams of one call.
pub struct CallPipes {
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
}

/// Bounded capture of stderr: enough for an error message, never a memory sink.
pub const STDERR_CAPTURE_BYTES: usize = 64 * 1024;

/// Argument 0 of every call. C and Rust command-line programs expect one
/// (many index it, or print it in their usage); it is fixed, never the name
/// or hash the caller used, so every call of a module sees the same.
pub const ARGV0: &str = "main";

/// The WASI context of one call: stdin = input, stdout/stderr captured,
/// argument 0 followed by the manifest's arguments, the manifest's
/// environment (none for a plain module), no host directories (a manifest's
/// files are served from memory by `bundle_fs`), no sockets. One builder
/// serves WASI preview 1 modules and preview 2 components alike.
fn call_builder(key: &CallKey, input: &[u8], output_limit: u64, setup: &CallSetup) -> (WasiCtxBuilder, CallPipes) {
    // One byte over the limit lets us tell "exactly at the limit" from "wanted more".
    let stdout = MemoryOutputPipe::new(usize::try_from(output_limit).unwrap_or(usize::MAX).saturating_add(1));
    let stderr = MemoryOutputPipe::new(STDERR_CAPTURE_BYTES);
    let seed = u128::from_le_bytes(key.as_bytes()[..16].try_into().expect("16 bytes"));
    let mut builder = WasiCtxBuilder::new();
    builder
        .arg(ARGV0)
        .args(&setup.args)
        .envs(&setup.env)
        .stdin(MemoryInputPipe::new(bytes::Bytes::copy_from_slice(input)))
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .wall_clock(FrozenWallClock)
        .monotonic_clock(FrozenMonotonicClock)
        .secure_random(CallRandom::new(key, "secure"))
        .insecure_random(CallRandom::new(key, "insecure"))
        .insecure_random_seed(seed)
        // Sockets are off by default; said again because it is the profile.
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .allow_blocking_current_thread(true);
    (builder, CallPipes { stdout, stderr })
}

/// The context of a WASI preview 1 module's call.
pub fn call_context(key: &CallKey, input: &[u8], output_limit: u64, setup: &CallSetup) -> (WasiP1Ctx, CallPipes) {
    let (mut builder, pipes) = call_builder(key, input, output_limit, setup);
    (builder.build_p1(), pipes)
}

/// The context of a WASI preview 2 component's call: the same profile.
pub fn component_context(key: &CallKey, input: &[u8], output_limit: u64, setup: &CallSetup) -> (WasiCtx, CallPipes) {
    let (mut builder, pipes) = call_builder(key, input, output_limit, setup);
    (builder.build(), pipes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebula_protocol::ModuleId;
    use rand_core::Rng;

    #[test]
    fn random_stream_is_a_function_of_the_call_key() {
        let key = CallKey::new(&ModuleId::of_bytes(b"m"), b"input");
        let other = CallKey::new(&ModuleId::of_bytes(b"m"), b"other");
        let draw = |key: &CallKey, purpose| CallRandom::new(key, purpose).next_u64();
        assert_eq!(draw(&key, "secure"), draw(&key, "secure"));
        assert_ne!(draw(&key, "secure"), draw(&other, "secure"));
        assert_ne!(draw(&key, "secure"), draw(&key, "insecure"));
    }
}
