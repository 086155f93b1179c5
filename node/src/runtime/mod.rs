//! Runs guest programs: WASI preview 1 command modules and WASI preview 2
//! command components. Each is checked at deploy without compiling, compiled
//! in the background into the compiled-code cache (see `compiler`), loaded
//! from it when a call needs it (within a byte budget, see `loaded`), and
//! executed under the purity profile and the call's limits.

mod bundle_fs;
mod compiled;
mod compiler;
mod engine;
mod loaded;
mod outcome;
mod profile;
mod setup;
mod validate;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nebula_protocol::{CallError, CallKey, Limits, ModuleId, Outcome};
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, InstancePre, Linker, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

use bundle_fs::BundleFs;
use compiled::{Artifact, CompiledCache};
pub use compiler::{BIG_MODULE_BYTES, CompileRequest, CompileWorker, run_compile_worker};
pub use engine::EngineSpec;
use engine::{EpochTicker, build_engine, deadline_ticks};
pub use profile::{ARGV0, CallRandom};
use setup::CallSetup;
pub use validate::{
    ALLOWED_CONTENT_TYPES, CONTENT_TYPE_SECTION, Checked, ProgramKind, declared_content_type, program_bytes,
};

/// How long a call waits for its module's compile before giving up.
const COMPILE_WAIT: Duration = Duration::from_secs(30 * 60);

/// Per-call host state: the WASI context (preview 1 or 2), the limiter and,
/// for a function with files, its in-memory directory.
pub struct CallState<W> {
    wasi: W,
    limiter: outcome::MemoryLimiter,
    bundle: Option<BundleFs>,
}

/// The bundle directory of a call linked with `bundle_fs` (only functions
/// with files are, and their calls always carry one).
fn bundle_of(state: &mut CallState<WasiP1Ctx>) -> &mut BundleFs {
    state.bundle.as_mut().expect("a function with files runs with its bundle")
}

/// What a WASI preview 2 component's host functions need.
pub struct ComponentWasi {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for CallState<ComponentWasi> {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi.ctx, table: &mut self.wasi.table }
    }
}

/// A function ready to run: its program linked once, instantiated per
/// call, and what its manifest gives every call.
#[derive(Clone)]
pub struct Prepared {
    program: Program,
    setup: Arc<CallSetup>,
}

#[derive(Clone)]
enum Program {
    Module(InstancePre<CallState<WasiP1Ctx>>),
    Component(CommandPre<CallState<ComponentWasi>>),
}

/// What one execution came to, before it is wrapped in an `ExecutionRecord`.
pub struct RunReport {
    pub outcome: Outcome,
    pub fuel_used: u64,
    /// The largest linear memory the guest had.
    pub peak_memory_bytes: u64,
    pub instantiate_us: u64,
    pub run_us: u64,
}

/// Where a module stands on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModuleState {
    /// Compiled: calls run it at once.
    Ready,
    /// Waiting for or in a compile; calls wait for it.
    Compiling,
    /// Its compile failed, for this reason; calls get it as their error.
    Failed(String),
    /// Stored but not compiled on this node yet: the first call compiles it
    /// (a node restarted before a compile ended, or with a new engine).
    Stored,
}

impl ModuleState {
    /// The word `nebula ls`, `/modules` and the dashboard show.
    pub fn label(&self) -> &'static str {
        match self {
            ModuleState::Ready => "ready",
            ModuleState::Compiling => "compiling",
            ModuleState::Failed(_) => "failed",
            ModuleState::Stored => "stored",
        }
    }
}

/// How a node's runtime compiles and how much compiled code it keeps loaded.
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    pub compile_worker: CompileWorker,
    /// Compiled code kept loaded in memory; beyond it the least recently
    /// run modules are unloaded (and reloaded from disk when called).
    pub loaded_module_bytes: u64,
    /// See [`EngineSpec::compact_memory_reservation`]: off by default.
    pub compact_memory_reservation: bool,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            compile_worker: CompileWorker::InProcess,
            loaded_module_bytes: 1 << 30,
            compact_memory_reservation: false,
        }
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<CallState<WasiP1Ctx>>,
    /// `linker` with a manifest's files served by `bundle_fs`.
    files_linker: Linker<CallState<WasiP1Ctx>>,
    component_linker: wasmtime::component::Linker<CallState<ComponentWasi>>,
    /// The WASI preview 1 functions a module may import.
    wasi_functions: HashSet<String>,
    ticker: EpochTicker,
    loaded: Mutex<loaded::Loaded<Prepared>>,
    /// Modules whose stored bytes were checked against their hash since this
    /// process started: compiled code is only run while they still match.
    blobs_verified: Mutex<HashSet<ModuleId>>,
    cache: Arc<CompiledCache>,
    compiler: compiler::Compiler,
}

impl Runtime {
    /// `concurrency` sizes the instance pool; never run more calls at once.
    pub fn new(compiled_dir: PathBuf, concurrency: u32, max_memory_bytes: u64) -> anyhow::Result<Self> {
        Self::with_settings(compiled_dir, concurrency, max_memory_bytes, RuntimeSettings::default())
    }

    pub fn with_settings(
        compiled_dir: PathBuf,
        concurrency: u32,
        max_memory_bytes: u64,
        settings: RuntimeSettings,
    ) -> anyhow::Result<Self> {
        let spec = EngineSpec {
            concurrency,
            max_memory_bytes,
            compact_memory_reservation: settings.compact_memory_reservation,
        };
        let engine = build_engine(&spec).map_err(|e| anyhow::anyhow!("wasmtime engine: {e}"))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut CallState<WasiP1Ctx>| &mut state.wasi)
            .map_err(|e| anyhow::anyhow!("linking WASI: {e}"))?;
        let mut files_linker = linker.clone();
        bundle_fs::add_to_linker(&mut files_linker, bundle_of)
            .map_err(|e| anyhow::anyhow!("linking the bundle directory: {e}"))?;
        let mut component_linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut component_linker)
            .map_err(|e| anyhow::anyhow!("linking WASI preview 2: {e}"))?;
        let wasi_functions = {
            let key = CallKey::new(&ModuleId::of_bytes(b""), b"");
            let (wasi, _) = profile::call_context(&key, b"", 0, &CallSetup::default());
            let state = CallState { wasi, limiter: outcome::MemoryLimiter::new(0), bundle: None };
            let mut store = Store::new(&engine, state);
            linker.iter(&mut store).map(|(_, name, _)| name.to_owned()).collect()
        };
        let cache = Arc::new(CompiledCache::open(compiled_dir, &engine)?);
        Ok(Self {
            ticker: EpochTicker::start(&engine),
            compiler: compiler::Compiler::start(engine.clone(), cache.clone(), settings.compile_worker, spec),
            loaded: Mutex::new(loaded::Loaded::new(settings.loaded_module_bytes)),
            blobs_verified: Mutex::default(),
            cache,
            engine,
            linker,
            files_linker,
            component_linker,
            wasi_functions,
        })
    }

    /// The deploy checks (no compiling): the reason if `wasm` is not a pure
    /// WASI command, else its kind and declared content type.
    pub fn check(&self, wasm: &[u8]) -> Result<Checked, CallError> {
        let checked = validate::check_program(&self.engine, &self.wasi_functions, wasm)
            .map_err(|reason| CallError::InvalidModule { reason });
        if wasm.len() as u64 >= BIG_MODULE_BYTES {
            // Validating a big module allocates (and frees) about twice its size.
            compiler::release_freed_memory();
        }
        checked
    }

    /// Queues a compile of the stored module at `blob`, unless it is compiled.
    pub fn compile_in_background(&self, module: ModuleId, blob: PathBuf, size: u64) {
        if !self.loaded.lock().expect("loaded lock").contains(&module) {
            self.compiler.submit(module, blob, size);
        }
    }

    pub fn state(&self, module: &ModuleId) -> ModuleState {
        if self.compiler.is_pending(module) {
            return ModuleState::Compiling;
        }
        if let Some(error) = self.compiler.failure(module) {
            return ModuleState::Failed(error.to_string());
        }
        match self.loaded.lock().expect("loaded lock").contains(module) || self.cache.contains(module) {
            true => ModuleState::Ready,
            false => ModuleState::Stored,
        }
    }

    /// Modules waiting for or in a compile.
    pub fn compiling(&self) -> usize {
        self.compiler.pending()
    }

    /// Bytes of compiled code loaded in memory.
    pub fn loaded_bytes(&self) -> u64 {
        self.loaded.lock().expect("loaded lock").bytes()
    }

    /// While `module` (stored at `blob`) is queued or compiling, or must be
    /// compiled first: a future that resolves when its compile has ended (a
    /// call waits on it before taking an execution slot).
    pub fn until_compiled(&self, module: &ModuleId, blob: &Path) -> Option<impl Future<Output = ()> + Send + 'static> {
        if !self.compiler.is_pending(module) {
            let loaded = self.loaded.lock().expect("loaded lock").contains(module);
            if loaded || self.cache.contains(module) || self.compiler.failure(module).is_some() {
                return None;
            }
            // A missing blob is reported by `ready`, where the call runs.
            let size = std::fs::metadata(blob).ok()?.len();
            self.compiler.submit(*module, blob.to_owned(), size);
        }
        Some(self.compiler.settled(*module))
    }

    /// The module ready to run, if it is loaded in memory now.
    pub fn prepared(&self, module: &ModuleId) -> Option<Prepared> {
        self.loaded.lock().expect("loaded lock").get(module)
    }

    /// The module stored at `blob`, ready to run: loaded, or loaded from the
    /// compiled-code cache, or (waiting for) compiled. Blocks while it
    /// compiles; a corrupt blob is never compiled or run.
    pub fn ready(&self, module: &ModuleId, blob: &Path) -> Result<Prepared, CallError> {
        if let Some(prepared) = self.prepared(module) {
            return Ok(prepared);
        }
        self.verify_blob(module, blob)?;
        let setup = Arc::new(read_setup(module, blob)?);
        // Twice at most: a cache entry found damaged is compiled again once.
        for _ in 0..2 {
            if let Some(prepared) = self.load_compiled(module, &setup)? {
                return Ok(prepared);
            }
            if self.compiler.failure(module).is_none() {
                let size = std::fs::metadata(blob).map_or(0, |meta| meta.len());
                self.compiler.submit(*module, blob.to_owned(), size);
            }
            if !self.compiler.wait(module, COMPILE_WAIT) {
                return Err(internal("the module is still compiling; try again later"));
            }
            if let Some(error) = self.compiler.failure(module) {
                return Err(error);
            }
        }
        Err(internal("the compiled code of this module does not load"))
    }

    /// Checks the stored bytes once per process (in pieces, never whole in
    /// memory): code compiled from them runs only while they are intact.
    fn verify_blob(&self, module: &ModuleId, blob: &Path) -> Result<(), CallError> {
        if self.blobs_verified.lock().expect("verified lock").contains(module) {
            return Ok(());
        }
        let hash = crate::store::hash_file(blob).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => CallError::ModuleNotFound { reference: module.to_hex() },
            _ => internal(&format!("reading module {}: {error}", module.short())),
        })?;
        if ModuleId::from_bytes(*hash.as_bytes()) != *module {
            tracing::error!(module = %module.short(), "stored module is corrupt; refusing to run it");
            return Err(CallError::ModuleCorrupt { module: *module });
        }
        self.blobs_verified.lock().expect("verified lock").insert(*module);
        Ok(())
    }

    /// Makes verified wasm bytes ready to run at once, compiling here if the
    /// cache does not hold them (the simulator and benchmarks use this).
    pub fn load(&self, module: &ModuleId, blob: &[u8]) -> Result<Prepared, CallError> {
        self.check(blob)?;
        let invalid = |reason: String| CallError::InvalidModule { reason };
        let setup = Arc::new(CallSetup::of_blob(blob).map_err(invalid)?);
        if let Some(prepared) = self.load_compiled(module, &setup)? {
            return Ok(prepared);
        }
        let wasm = program_bytes(blob).map_err(invalid)?;
        let code = match wasmparser::Parser::is_component(wasm) {
            true => self.engine.precompile_component(wasm),
            false => self.engine.precompile_module(wasm),
        }
        .map_err(|error| CallError::InvalidModule { reason: format!("{error:#}") })?;
        if let Err(error) = self.cache.store(module, &code) {
            // Only a cache: the module still runs from the code in memory.
            tracing::warn!(module = %module.short(), %error, "could not cache compiled code");
        }
        let artifact = match wasmparser::Parser::is_component(wasm) {
            // SAFETY: `code` was produced just now by this engine.
            true => {
                unsafe { wasmtime::component::Component::deserialize(&self.engine, &code) }.map(Artifact::Component)
            }
            false => unsafe { wasmtime::Module::deserialize(&self.engine, &code) }.map(Artifact::Module),
        }
        .map_err(|error| internal(&format!("loading compiled code: {error:#}")))?;
        let bytes = code.len() as u64 + setup.bytes();
        let prepared = self.link(artifact, setup)?;
        self.loaded.lock().expect("loaded lock").insert(*module, prepared.clone(), bytes);
        Ok(prepared)
    }

    /// From the compiled-code cache into memory, if the cache holds it.
    fn load_compiled(&self, module: &ModuleId, setup: &Arc<CallSetup>) -> Result<Option<Prepared>, CallError> {
        let Some((artifact, bytes)) = self.cache.load(&self.engine, module) else { return Ok(None) };
        let prepared = self.link(artifact, setup.clone())?;
        self.loaded.lock().expect("loaded lock").insert(*module, prepared.clone(), bytes + setup.bytes());
        Ok(Some(prepared))
    }

    fn link(&self, artifact: Artifact, setup: Arc<CallSetup>) -> Result<Prepared, CallError> {
        let invalid = |reason: String| CallError::InvalidModule { reason };
        let program = match artifact {
            Artifact::Module(module) => {
                validate::check_interface(&module).map_err(invalid)?;
                let linker = match setup.files {
                    Some(_) => &self.files_linker,
                    None => &self.linker,
                };
                Program::Module(linker.instantiate_pre(&module).map_err(|e| invalid(format!("{e:#}")))?)
            }
            Artifact::Component(component) => {
                let prepared =
                    self.component_linker.instantiate_pre(&component).map_err(|e| invalid(format!("{e:#}")))?;
                Program::Component(CommandPre::new(prepared).map_err(|e| invalid(format!("{e:#}")))?)
            }
        };
        Ok(Prepared { program, setup })
    }

    /// Runs one call. The guest runs on the calling task (wasmtime's async
    /// support: it yields every [`engine::YIELD_FUEL`] units of fuel), so a
    /// short call costs no hand-off to another thread.
    pub async fn execute(&self, prepared: &Prepared, key: &CallKey, input: &[u8], limits: &Limits) -> RunReport {
        let setup = &prepared.setup;
        let started = Instant::now();
        let _ticking = self.ticker.enter();
        match &prepared.program {
            Program::Module(pre) => {
                let (wasi, pipes) = profile::call_context(key, input, limits.output_bytes, setup);
                let bundle = setup.files.as_ref().map(|mounted| BundleFs::new(mounted.files.clone(), &mounted.mount));
                let mut store = self.store(wasi, bundle, limits);
                let mut instantiated = started;
                let result = async {
                    let instance = pre.instantiate_async(&mut store).await?;
                    let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
                    instantiated = Instant::now();
                    start.call_async(&mut store, ()).await
                }
                .await;
                report(&store, result, &pipes, limits, started, instantiated)
            }
            Program::Component(pre) => {
                let (ctx, pipes) = profile::component_context(key, input, limits.output_bytes, setup);
                let wasi = ComponentWasi { ctx, table: ResourceTable::new() };
                let mut store = self.store(wasi, None, limits);
                let mut instantiated = started;
                let result = async {
                    let command = pre.instantiate_async(&mut store).await?;
                    instantiated = Instant::now();
                    // `run` returning an error is how a component exits non-zero.
                    command.wasi_cli_run().call_run(&mut store).await?.map_err(|()| I32Exit(1).into())
                }
                .await;
                report(&store, result, &pipes, limits, started, instantiated)
            }
        }
    }

    /// [`Runtime::execute`] on this thread, for callers outside an async
    /// runtime (the simulator, benchmarks).
    pub fn execute_blocking(&self, prepared: &Prepared, key: &CallKey, input: &[u8], limits: &Limits) -> RunReport {
        futures::executor::block_on(self.execute(prepared, key, input, limits))
    }

    /// A fresh store with the call's limits.
    fn store<W: Send + 'static>(&self, wasi: W, bundle: Option<BundleFs>, limits: &Limits) -> Store<CallState<W>> {
        let limiter = outcome::MemoryLimiter::new(limits.memory_bytes);
        let mut store = Store::new(&self.engine, CallState { wasi, limiter, bundle });
        store.limiter(|state| &mut state.limiter);
        store.set_fuel(limits.fuel).expect("fuel is enabled in the engine");
        store.fuel_async_yield_interval(Some(engine::YIELD_FUEL)).expect("fuel is enabled in the engine");
        store.set_epoch_deadline(deadline_ticks(limits.deadline_ms));
        store
    }
}

/// What a call that ran in `store` came to.
fn report<W>(
    store: &Store<CallState<W>>,
    result: wasmtime::Result<()>,
    pipes: &profile::CallPipes,
    limits: &Limits,
    started: Instant,
    instantiated: Instant,
) -> RunReport {
    let finished = Instant::now();
    let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
    let memory_limit_hit = store.data().limiter.exceeded();
    RunReport {
        outcome: outcome::classify(result, memory_limit_hit, pipes, limits),
        fuel_used,
        peak_memory_bytes: store.data().limiter.peak_bytes(),
        instantiate_us: (instantiated.max(started) - started).as_micros() as u64,
        run_us: (finished - instantiated.max(started)).as_micros() as u64,
    }
}

/// The setup of the function stored at `blob` (mapped, never read whole).
fn read_setup(module: &ModuleId, blob: &Path) -> Result<CallSetup, CallError> {
    let reading = |error: std::io::Error| internal(&format!("reading module {}: {error}", module.short()));
    let file = std::fs::File::open(blob).map_err(reading)?;
    // SAFETY: blobs are only ever replaced by rename, never written in place.
    let mapped = unsafe { memmap2::Mmap::map(&file) }.map_err(reading)?;
    CallSetup::of_blob(&mapped).map_err(|reason| CallError::InvalidModule { reason })
}

fn internal(message: &str) -> CallError {
    CallError::Internal { message: message.to_owned() }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;

    /// Counts down from `iterations` in a loop, then returns from `_start`.
    fn spinner(iterations: u32) -> Vec<u8> {
        wat::parse_str(format!(
            r#"(module (memory (export "memory") 1)
                (func (export "_start") (local $i i32)
                  (local.set $i (i32.const {iterations}))
                  (loop $more
                    (local.set $i (i32.sub (local.get $i) (i32.const 1)))
                    (br_if $more (local.get $i)))))"#
        ))
        .unwrap()
    }

    /// Polls `execute` with a waker that does nothing until it is ready;
    /// the report and how many polls it took.
    fn polled_to_the_end(runtime: &Runtime, prepared: &Prepared, key: &CallKey) -> (RunReport, usize) {
        let limits = Limits::default();
        let mut execution = pin!(runtime.execute(prepared, key, b"", &limits));
        let mut context = Context::from_waker(Waker::noop());
        for polls in 1.. {
            if let Poll::Ready(report) = execution.as_mut().poll(&mut context) {
                return (report, polls);
            }
        }
        unreachable!()
    }

    #[test]
    fn a_long_call_yields_to_its_thread_and_a_short_one_runs_in_one_poll() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = Runtime::new(dir.path().to_owned(), 1, Limits::default().memory_bytes).unwrap();
        let run = |iterations: u32| {
            let wasm = spinner(iterations);
            let module = ModuleId::of_bytes(&wasm);
            let prepared = runtime.load(&module, &wasm).unwrap();
            let key = CallKey::new(&module, b"");
            let (report, polls) = polled_to_the_end(&runtime, &prepared, &key);
            assert_eq!(report.outcome, Outcome::Success { stdout: Vec::new() });
            let blocking = runtime.execute_blocking(&prepared, &key, b"", &Limits::default());
            assert_eq!(report.fuel_used, blocking.fuel_used, "yielding changes no fuel count");
            (report.fuel_used, polls)
        };
        let (short_fuel, short_polls) = run(1_000);
        assert!(short_fuel < engine::YIELD_FUEL && short_polls == 1, "{short_fuel} fuel, {short_polls} polls");
        let (long_fuel, long_polls) = run(5_000_000);
        // Several units of fuel per iteration: many slices, each a poll.
        let slices = (long_fuel / engine::YIELD_FUEL) as usize;
        assert!(slices >= 5 && long_polls >= slices, "{long_fuel} fuel in {long_polls} polls");
    }
}
