//! Compiling off the request path. A deploy answers once the module's bytes
//! are stored; compiling happens here, in the background, into the
//! compiled-code cache. Two lanes: big modules one at a time (a 100 MB
//! module takes a minute and gigabytes of memory), small ones beside them so
//! they never wait behind a big one. By default a big compile runs in a child
//! process (`nebula compile-module`) at a lower CPU priority: its memory is
//! the child's and goes back to the system when it exits, and calls keep
//! their latency while it runs. Small modules, and every module when
//! compiling in-process (tests, the simulator, and the fallback if the child
//! cannot start), compile on the lane's thread, which hands freed memory back
//! with `malloc_trim` under glibc (tests, the simulator); the `nebula`
//! binary's mimalloc purges freed pages by itself, a second later.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use nebula_protocol::{CallError, ModuleId};
use wasmtime::Engine;

use super::compiled::CompiledCache;
use super::engine::EngineSpec;

/// Modules at least this big go to the lane that compiles one at a time.
pub const BIG_MODULE_BYTES: u64 = 8 << 20;

/// The longest a compile worker may run before it is killed (the module then
/// fails to load, with this reason, until it is deployed again).
const COMPILE_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// CPU priority of a compile worker (nice value): calls come first.
const COMPILE_NICE: i32 = 10;

/// Exit statuses of `nebula compile-module`, read back by the node.
const EXIT_INVALID: i32 = 10;
const EXIT_CORRUPT: i32 = 11;
const EXIT_MISSING: i32 = 12;

/// Where compiling happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileWorker {
    /// On a thread of this process, returning freed memory afterwards.
    InProcess,
    /// In a child process: this executable, run as `nebula compile-module`.
    Process(PathBuf),
}

#[derive(Debug, Clone)]
enum Progress {
    Queued,
    Compiling,
    Failed(CallError),
}

struct Job {
    module: ModuleId,
    blob: PathBuf,
    big: bool,
}

struct Shared {
    progress: Mutex<HashMap<ModuleId, Progress>>,
    /// Signalled whenever a compile ends, for blocking and async waiters.
    settled: Condvar,
    settled_async: tokio::sync::Notify,
    engine: Engine,
    cache: Arc<CompiledCache>,
    worker: CompileWorker,
    spec: EngineSpec,
}

pub struct Compiler {
    shared: Arc<Shared>,
    small: mpsc::Sender<Job>,
    big: mpsc::Sender<Job>,
}

impl Compiler {
    pub fn start(engine: Engine, cache: Arc<CompiledCache>, worker: CompileWorker, spec: EngineSpec) -> Self {
        let shared = Arc::new(Shared {
            progress: Mutex::default(),
            settled: Condvar::new(),
            settled_async: tokio::sync::Notify::new(),
            engine,
            cache,
            worker,
            spec,
        });
        let lane = |name: &str| {
            let (sender, jobs) = mpsc::channel::<Job>();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || {
                    // Ends when the runtime (and so the sender) is dropped.
                    for job in jobs {
                        shared.run(job);
                    }
                })
                .expect("spawning a compile thread");
            sender
        };
        Self { small: lane("nebula-compile"), big: lane("nebula-compile-big"), shared }
    }

    /// Queues a compile of `module` unless its code is cached or it is
    /// already queued; a failed module is tried again (a deploy repairs it).
    pub fn submit(&self, module: ModuleId, blob: PathBuf, size: u64) {
        if self.shared.cache.contains(&module) {
            return;
        }
        {
            let mut progress = self.shared.progress.lock().expect("compile lock");
            if matches!(progress.get(&module), Some(Progress::Queued | Progress::Compiling)) {
                return;
            }
            progress.insert(module, Progress::Queued);
        }
        let big = size >= BIG_MODULE_BYTES;
        let lane = if big { &self.big } else { &self.small };
        if lane.send(Job { module, blob, big }).is_err() {
            self.shared.finish(module, Err(internal("the compile thread is gone")));
        }
    }

    /// True while `module` waits for or is in a compile.
    pub fn is_pending(&self, module: &ModuleId) -> bool {
        self.shared.is_pending(module)
    }

    /// Why the last compile of `module` failed, if it did.
    pub fn failure(&self, module: &ModuleId) -> Option<CallError> {
        match self.shared.progress.lock().expect("compile lock").get(module) {
            Some(Progress::Failed(error)) => Some(error.clone()),
            _ => None,
        }
    }

    /// Modules queued or compiling.
    pub fn pending(&self) -> usize {
        let progress = self.shared.progress.lock().expect("compile lock");
        progress.values().filter(|state| !matches!(state, Progress::Failed(_))).count()
    }

    /// Blocks until `module` is no longer queued or compiling (at most
    /// `timeout`); false if it still is.
    pub fn wait(&self, module: &ModuleId, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut progress = self.shared.progress.lock().expect("compile lock");
        while matches!(progress.get(module), Some(Progress::Queued | Progress::Compiling)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            progress = self.shared.settled.wait_timeout(progress, left).expect("compile lock").0;
        }
        true
    }

    /// Resolves once `module` is no longer queued or compiling.
    pub fn settled(&self, module: ModuleId) -> impl Future<Output = ()> + Send + 'static {
        let shared = self.shared.clone();
        async move {
            loop {
                let notified = shared.settled_async.notified();
                tokio::pin!(notified);
                // Registered before checking, so an end in between is not missed.
                notified.as_mut().enable();
                if !shared.is_pending(&module) {
                    return;
                }
                notified.await;
            }
        }
    }
}

impl Shared {
    fn is_pending(&self, module: &ModuleId) -> bool {
        matches!(self.progress.lock().expect("compile lock").get(module), Some(Progress::Queued | Progress::Compiling))
    }

    fn run(&self, job: Job) {
        self.progress.lock().expect("compile lock").insert(job.module, Progress::Compiling);
        let started = Instant::now();
        // A small module compiles faster than a worker process starts, and
        // what its compile allocates is small: only big ones go to the worker.
        let worker = if job.big { &self.worker } else { &CompileWorker::InProcess };
        let result = match worker {
            CompileWorker::InProcess => compile_into_cache(&self.engine, &self.cache, &job.module, &job.blob),
            CompileWorker::Process(program) => match compile_in_child(program, &self.cache, self.spec, &job) {
                Err(ChildFailure::DidNotStart(error)) => {
                    tracing::warn!(%error, "the compile worker did not start; compiling in this process");
                    compile_into_cache(&self.engine, &self.cache, &job.module, &job.blob)
                }
                Err(ChildFailure::Compile(error)) => Err(error),
                Ok(()) => Ok(()),
            },
        };
        match &result {
            Ok(()) => {
                tracing::info!(module = %job.module.short(), ms = started.elapsed().as_millis() as u64, "compiled")
            }
            Err(error) => tracing::warn!(module = %job.module.short(), %error, "compiling failed"),
        }
        self.finish(job.module, result);
    }

    fn finish(&self, module: ModuleId, result: Result<(), CallError>) {
        let mut progress = self.progress.lock().expect("compile lock");
        match result {
            Ok(()) => progress.remove(&module),
            Err(error) => progress.insert(module, Progress::Failed(error)),
        };
        drop(progress);
        self.settled.notify_all();
        self.settled_async.notify_waiters();
    }
}

fn internal(message: &str) -> CallError {
    CallError::Internal { message: message.to_owned() }
}

/// Compiles the blob at `blob` (checked against its hash first) and stores
/// the code in the cache. Used in this process and by the compile worker.
pub fn compile_into_cache(
    engine: &Engine,
    cache: &CompiledCache,
    module: &ModuleId,
    blob: &Path,
) -> Result<(), CallError> {
    let file = std::fs::File::open(blob).map_err(|error| match error.kind() {
        ErrorKind::NotFound => CallError::ModuleNotFound { reference: module.to_hex() },
        _ => internal(&format!("reading module {}: {error}", module.short())),
    })?;
    // SAFETY: blobs are only ever replaced by rename, never written in place.
    let wasm = unsafe { memmap2::Mmap::map(&file) }
        .map_err(|error| internal(&format!("mapping module {}: {error}", module.short())))?;
    if ModuleId::of_bytes(&wasm) != *module {
        tracing::error!(module = %module.short(), "stored module is corrupt; refusing to compile it");
        return Err(CallError::ModuleCorrupt { module: *module });
    }
    let program = super::validate::program_bytes(&wasm).map_err(|reason| CallError::InvalidModule { reason })?;
    let compiled = match wasmparser::Parser::is_component(program) {
        true => engine.precompile_component(program),
        false => engine.precompile_module(program),
    };
    drop(wasm);
    let code = compiled.map_err(|error| CallError::InvalidModule { reason: format!("{error:#}") })?;
    let stored = cache.store(module, &code);
    drop(code);
    release_freed_memory();
    stored.map_err(|error| internal(&format!("caching compiled code: {error:#}")))
}

/// Gives memory the allocator holds but no longer uses back to the system:
/// compiling a big module frees gigabytes that glibc would otherwise keep.
pub(super) fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

enum ChildFailure {
    DidNotStart(std::io::Error),
    Compile(CallError),
}

/// Runs `program compile-module …` at a lower priority and waits for it
/// (at most [`COMPILE_TIMEOUT`]); the code lands in the cache.
fn compile_in_child(program: &Path, cache: &CompiledCache, spec: EngineSpec, job: &Job) -> Result<(), ChildFailure> {
    let mut command = Command::new(program);
    command
        .arg("compile-module")
        .arg("--module")
        .arg(job.module.to_hex())
        .arg("--blob")
        .arg(&job.blob)
        .arg("--compiled-dir")
        .arg(cache.dir())
        .arg("--concurrency")
        .arg(spec.concurrency.to_string())
        .arg("--max-memory-bytes")
        .arg(spec.max_memory_bytes.to_string())
        .args(spec.compact_memory_reservation.then_some("--compact-memory-reservation"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: setpriority and prctl are async-signal-safe and touch only the child.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::setpriority(libc::PRIO_PROCESS, 0, COMPILE_NICE);
            // A node killed mid-compile takes its compile worker with it.
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = command.spawn().map_err(ChildFailure::DidNotStart)?;
    let pid = child.id();
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    let output = match finished.recv_timeout(COMPILE_TIMEOUT) {
        Ok(output) => output,
        Err(_) => {
            // SAFETY: signalling the child this function started (not yet reaped:
            // its waiting thread has not returned).
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            let _ = finished.recv();
            let minutes = COMPILE_TIMEOUT.as_secs() / 60;
            return Err(ChildFailure::Compile(internal(&format!("compiling took longer than {minutes} minutes"))));
        }
    };
    let output = output.map_err(|error| ChildFailure::Compile(internal(&format!("compile worker: {error}"))))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let reason = stderr.lines().rev().find(|line| !line.trim().is_empty()).unwrap_or("").trim().to_owned();
    let reason = reason.strip_prefix("error: ").unwrap_or(&reason).to_owned();
    match output.status.code() {
        Some(0) => Ok(()),
        Some(EXIT_INVALID) => Err(ChildFailure::Compile(CallError::InvalidModule { reason })),
        Some(EXIT_CORRUPT) => Err(ChildFailure::Compile(CallError::ModuleCorrupt { module: job.module })),
        Some(EXIT_MISSING) => Err(ChildFailure::Compile(CallError::ModuleNotFound { reference: job.module.to_hex() })),
        _ => Err(ChildFailure::Compile(internal(&format!("the compile worker failed ({}): {reason}", output.status)))),
    }
}

/// What `nebula compile-module` is given.
#[derive(Debug, Clone)]
pub struct CompileRequest {
    pub module: ModuleId,
    pub blob: PathBuf,
    pub compiled_dir: PathBuf,
    pub spec: EngineSpec,
}

/// The compile worker's whole job; returns its exit status (the reason of a
/// failure goes to stderr, last line).
pub fn run_compile_worker(request: &CompileRequest) -> i32 {
    let engine = match super::engine::build_engine(&request.spec) {
        Ok(engine) => engine,
        Err(error) => {
            eprintln!("error: wasmtime engine: {error}");
            return 1;
        }
    };
    let cache = CompiledCache::attach(request.compiled_dir.clone(), &engine);
    match compile_into_cache(&engine, &cache, &request.module, &request.blob) {
        Ok(()) => 0,
        Err(error) => {
            let status = match &error {
                CallError::InvalidModule { reason } => {
                    eprintln!("error: {reason}");
                    return EXIT_INVALID;
                }
                CallError::ModuleCorrupt { .. } => EXIT_CORRUPT,
                CallError::ModuleNotFound { .. } => EXIT_MISSING,
                _ => 1,
            };
            eprintln!("error: {error}");
            status
        }
    }
}
