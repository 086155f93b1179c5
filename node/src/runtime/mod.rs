//! Runs guest modules: compiles each once (or loads its compiled code from
//! the local disk cache), keeps it ready as an `InstancePre`, and executes
//! calls under the purity profile and the call's limits.

mod engine;
mod outcome;
mod profile;
mod validate;

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::RwLock;
use std::time::Instant;

use nebula_protocol::{CallError, CallKey, Limits, ModuleId, Outcome};
use wasmtime::{Engine, InstancePre, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;

use engine::{EpochTicker, build_engine, deadline_ticks};
pub use profile::CallRandom;
pub use validate::{ALLOWED_CONTENT_TYPES, CONTENT_TYPE_SECTION, declared_content_type};

const WASM_MAGIC: &[u8] = b"\0asm";

/// Per-call host state.
pub struct CallState {
    wasi: WasiP1Ctx,
    limiter: outcome::MemoryLimiter,
}

pub type Prepared = InstancePre<CallState>;

/// What one execution came to, before it is wrapped in an `ExecutionRecord`.
pub struct RunReport {
    pub outcome: Outcome,
    pub fuel_used: u64,
    /// The largest linear memory the guest had.
    pub peak_memory_bytes: u64,
    pub instantiate_us: u64,
    pub run_us: u64,
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState>,
    ticker: EpochTicker,
    loaded: RwLock<HashMap<ModuleId, Prepared>>,
    compiled_dir: PathBuf,
    /// Compiled code is only valid for an identical engine build and config.
    engine_fingerprint: String,
}

impl Runtime {
    /// `concurrency` sizes the instance pool; never run more calls at once.
    pub fn new(compiled_dir: PathBuf, concurrency: u32, max_memory_bytes: u64) -> anyhow::Result<Self> {
        let engine =
            build_engine(concurrency, max_memory_bytes).map_err(|e| anyhow::anyhow!("wasmtime engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut CallState| &mut state.wasi)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        std::fs::create_dir_all(&compiled_dir)?;
        // A kill while caching compiled code leaves its temp file; nothing else would remove it.
        let removed = crate::store::remove_leftover_temp_files(&compiled_dir)?;
        if removed > 0 {
            tracing::info!(removed, "removed partial compiled-code writes left by a crash");
        }
        Ok(Self {
            ticker: EpochTicker::start(&engine),
            engine_fingerprint: format!("{:016x}", hasher.finish()),
            engine,
            linker,
            loaded: RwLock::new(HashMap::new()),
            compiled_dir,
        })
    }

    /// The module ready to run, if it was loaded since this process started.
    pub fn prepared(&self, module: &ModuleId) -> Option<Prepared> {
        self.loaded.read().expect("runtime lock").get(module).cloned()
    }

    /// Makes verified wasm bytes ready to run: from the compiled-code cache on
    /// disk when it holds this module, otherwise by compiling (and caching).
    /// Fails with the reason if the module is not an acceptable WASI command.
    pub fn load(&self, module: &ModuleId, wasm: &[u8]) -> Result<Prepared, CallError> {
        let invalid = |reason: String| CallError::InvalidModule { reason };
        // Checked first because wasmtime would otherwise try to parse text as WAT.
        if !wasm.starts_with(WASM_MAGIC) {
            return Err(invalid("not a WebAssembly binary (it does not start with \\0asm)".into()));
        }
        validate::declared_content_type(wasm).map_err(invalid)?;
        let compiled = match self.read_compiled(module) {
            Some(compiled) => compiled,
            None => {
                let compiled = Module::new(&self.engine, wasm).map_err(|e| invalid(format!("{e:#}")))?;
                self.write_compiled(module, &compiled);
                compiled
            }
        };
        validate::check_interface(&compiled).map_err(invalid)?;
        let prepared = self.linker.instantiate_pre(&compiled).map_err(|e| invalid(format!("{e:#}")))?;
        self.loaded.write().expect("runtime lock").insert(*module, prepared.clone());
        Ok(prepared)
    }

    pub fn execute(&self, prepared: &Prepared, key: &CallKey, input: &[u8], limits: &Limits) -> RunReport {
        let started = Instant::now();
        let (wasi, pipes) = profile::call_context(key, input, limits.output_bytes);
        let limiter = outcome::MemoryLimiter::new(limits.memory_bytes);
        let mut store = Store::new(&self.engine, CallState { wasi, limiter });
        store.limiter(|state| &mut state.limiter);
        store.set_fuel(limits.fuel).expect("fuel is enabled in the engine");
        store.set_epoch_deadline(deadline_ticks(limits.deadline_ms));

        let _ticking = self.ticker.enter();
        let mut instantiated = started;
        let result = prepared.instantiate(&mut store).and_then(|instance| {
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            instantiated = Instant::now();
            start.call(&mut store, ())
        });
        let finished = Instant::now();
        let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        let memory_limit_hit = store.data().limiter.exceeded();
        RunReport {
            outcome: outcome::classify(result, memory_limit_hit, &pipes, limits),
            fuel_used,
            peak_memory_bytes: store.data().limiter.peak_bytes(),
            instantiate_us: (instantiated - started).as_micros() as u64,
            run_us: (finished - instantiated).as_micros() as u64,
        }
    }

    fn compiled_path(&self, module: &ModuleId) -> PathBuf {
        self.compiled_dir.join(format!("{}-{}.cwasm", module.to_hex(), self.engine_fingerprint))
    }

    /// Our own cache file: compiled code followed by its BLAKE3, so a torn or
    /// damaged file is recompiled instead of being trusted as native code.
    fn read_compiled(&self, module: &ModuleId) -> Option<Module> {
        let file = std::fs::read(self.compiled_path(module)).ok()?;
        let (code, checksum) = file.split_at_checked(file.len().checked_sub(32)?)?;
        if blake3::hash(code).as_bytes() != checksum {
            tracing::warn!(module = %module.short(), "compiled-code cache entry is damaged; recompiling");
            return None;
        }
        // SAFETY: the bytes were produced by `Module::serialize` of this very
        // engine configuration (the file name carries its fingerprint), written
        // by this node only, and verified against their checksum above.
        unsafe { Module::deserialize(&self.engine, code) }.ok()
    }

    fn write_compiled(&self, module: &ModuleId, compiled: &Module) {
        let result = compiled.serialize().map_err(|e| anyhow::anyhow!("{e}")).and_then(|mut code| {
            let checksum = *blake3::hash(&code).as_bytes();
            code.extend_from_slice(&checksum);
            crate::store::write_atomically(&self.compiled_path(module), &code)
        });
        if let Err(error) = result {
            // Only a cache: the module still runs, it is just compiled again next start.
            tracing::warn!(module = %module.short(), %error, "could not cache compiled code");
        }
    }
}
