//! The wasmtime engine with Nebula's deterministic settings, and the epoch
//! ticker that enforces wall-clock deadlines.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Granularity of deadlines. A ticker that wakes more often costs idle CPU.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// A running guest yields to the other tasks of its thread after this much
/// fuel (about a millisecond of work): calls run as futures on the node's
/// async workers, so a long call must not hold one. Fuel counts are what a
/// guest observes; where it yields changes nothing it can see.
pub const YIELD_FUEL: u64 = 1_000_000;

/// Guest stack limit. Part of the purity profile: a different value could turn
/// a success into a stack-overflow trap, so changing it needs a new profile version.
const MAX_WASM_STACK: usize = 1 << 20;

/// Memory of a pool slot kept mapped between calls (see `build_engine`).
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// Keeping memory resident pays only where the kernel can report which pages
/// a call dirtied (PAGEMAP_SCAN, Linux 6.7); elsewhere wasmtime would memset
/// the whole resident range on every reuse.
fn keep_resident_bytes() -> usize {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut numbers = release.split(|c: char| !c.is_ascii_digit()).map(|part| part.parse::<u32>().unwrap_or(0));
    let version = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if version >= (6, 7) { KEEP_RESIDENT_BYTES } else { 0 }
}

/// Core instances, memories and tables one call may use: a core module has
/// one of each (a few with multi-memory), a WASI preview 2 component a few
/// (the program plus the shims `wasm-component-ld` adds). One more instance
/// and table for the forwarders of a function with files (`bundle_fs`), so
/// that whether they fit never depends on what other calls hold.
const CORE_INSTANCES_PER_CALL: u32 = 16 + 1;
const MEMORIES_PER_CALL: u32 = 8;
const TABLES_PER_CALL: u32 = 16 + 1;

/// Room for a big program's instance state (its `VMContext`): many imports,
/// globals and functions.
const MAX_CORE_INSTANCE_BYTES: usize = 4 << 20;

/// What an engine is built from. A compile worker is given the same, so
/// that code it compiles loads in the node's engine.
#[derive(Debug, Clone, Copy)]
pub struct EngineSpec {
    /// Calls run at once: sizes the instance pool.
    pub concurrency: u32,
    /// The largest linear memory a call may have.
    pub max_memory_bytes: u64,
    /// Reserve address space for each linear memory only up to
    /// `max_memory_bytes` instead of wasmtime's 4 GiB (see `config`).
    pub compact_memory_reservation: bool,
}

pub fn build_engine(spec: &EngineSpec) -> wasmtime::Result<Engine> {
    Engine::new(&config(spec))
}

/// Every setting that affects what a guest can observe or how compiled code
/// looks. The compile worker (`nebula compile-module`) builds its engine from
/// the same function, so code it compiles loads here.
pub fn config(spec: &EngineSpec) -> Config {
    let EngineSpec { concurrency, max_memory_bytes, compact_memory_reservation } = *spec;
    // Threads are off because wasmtime is built without its "threads" feature.
    let mut config = Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .cranelift_nan_canonicalization(true)
        .relaxed_simd_deterministic(true)
        // Exception handling (C++ and other toolchains emit it) needs wasmtime's
        // "gc" feature; the GC proposal itself stays off: no toolchain that
        // targets WASI commands needs it, and it would bring collection into
        // what a call can observe (heap exhaustion points).
        .wasm_exceptions(true)
        .wasm_gc(false)
        .wasm_function_references(false)
        .max_wasm_stack(MAX_WASM_STACK);
    if compact_memory_reservation {
        // By default every pooled memory reserves 4 GiB plus guards, so that
        // compiled code needs no bounds checks: 8 memories per slot came to
        // ~97 GiB of address space at concurrency 2, more than valgrind gives
        // a process (one 63 GiB hole). Reserving only the memory ceiling (GC
        // heaps follow) makes compiled code check bounds explicitly; a guest
        // sees no difference, since a pooled memory never grows beyond
        // `max_memory_size` either way. The reservation is part of the
        // engine's fingerprint, so this code is cached apart (`compiled.rs`).
        config.memory_reservation(max_memory_bytes);
    }
    // One pool slot per concurrent call, plus one for validation at deploy.
    let slots = concurrency + 1;
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(slots * CORE_INSTANCES_PER_CALL)
        .total_memories(slots * MEMORIES_PER_CALL)
        .total_tables(slots * TABLES_PER_CALL)
        .total_component_instances(slots)
        // Exceptions live on a GC heap: one per call at most.
        .total_gc_heaps(slots)
        // Guests run as futures (`Runtime::execute`), each on a fiber stack.
        .total_stacks(slots)
        .max_memories_per_module(MEMORIES_PER_CALL)
        .max_tables_per_module(TABLES_PER_CALL)
        .max_core_instances_per_component(CORE_INSTANCES_PER_CALL)
        .max_memories_per_component(MEMORIES_PER_CALL)
        .max_tables_per_component(TABLES_PER_CALL)
        .max_core_instance_size(MAX_CORE_INSTANCE_BYTES)
        .max_memory_size(usize::try_from(max_memory_bytes).unwrap_or(usize::MAX))
        // Reset a reused slot by rewriting the pages a call dirtied (found with
        // PAGEMAP_SCAN where the kernel has it) instead of unmapping them: an
        // madvise plus fresh page faults was most of a warm call's time.
        .linear_memory_keep_resident(keep_resident_bytes())
        .table_keep_resident(keep_resident_bytes())
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while calls are running,
/// and sleeps while none are, so an idle node costs no wake-ups.
pub struct EpochTicker {
    state: Arc<TickerState>,
    thread: JoinHandle<()>,
}

#[derive(Default)]
struct TickerState {
    running: AtomicUsize,
    stopped: AtomicBool,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
        let weak = engine.weak();
        let state = Arc::new(TickerState::default());
        let shared = state.clone();
        let thread = thread::Builder::new()
            .name("nebula-epoch".into())
            .spawn(move || {
                while !shared.stopped.load(Ordering::Acquire) {
                    if shared.running.load(Ordering::Acquire) == 0 {
                        thread::park();
                        continue;
                    }
                    thread::sleep(EPOCH_TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => return,
                    }
                }
            })
            .expect("spawning the epoch ticker");
        Self { state, thread }
    }

    /// Marks a call as running until the guard is dropped.
    pub fn enter(&self) -> TickerGuard<'_> {
        if self.state.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.thread().unpark();
        }
        TickerGuard(self)
    }
}

pub struct TickerGuard<'a>(&'a EpochTicker);

impl Drop for TickerGuard<'_> {
    fn drop(&mut self) {
        self.0.state.running.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.state.stopped.store(true, Ordering::Release);
        self.thread.thread().unpark();
    }
}

/// Epoch ticks that cover `deadline_ms`, rounded up, plus one for the tick in progress.
pub fn deadline_ticks(deadline_ms: u64) -> u64 {
    deadline_ms.div_ceil(EPOCH_TICK.as_millis() as u64) + 1
}

#[cfg(test)]
mod tests {
    use std::hash::{DefaultHasher, Hash, Hasher};

    use wasmtime::{Instance, Module, Store};

    use super::*;

    /// Grows its memory a page at a time until growing fails, then loads at an address.
    const GROWER: &str = r#"(module (memory 1)
        (func (export "grow") (result i32)
            (loop $more (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
            (memory.size))
        (func (export "load") (param i32) (result i32) (i32.load (local.get 0))))"#;

    /// What the guest sees (pages reached, fuel used, whether loads at the
    /// last word and just past it trapped), and the engine's fingerprint.
    fn observed(compact_memory_reservation: bool) -> ((i32, u64, bool, bool), u64) {
        let max_memory_bytes = 4 << 20;
        let engine = build_engine(&EngineSpec { concurrency: 1, max_memory_bytes, compact_memory_reservation })
            .expect("building the engine");
        let mut store = Store::new(&engine, ());
        store.set_fuel(1_000_000).unwrap();
        store.set_epoch_deadline(1);
        let module = Module::new(&engine, GROWER).unwrap();
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        let pages = instance.get_typed_func::<(), i32>(&mut store, "grow").unwrap().call(&mut store, ()).unwrap();
        let load = instance.get_typed_func::<i32, i32>(&mut store, "load").unwrap();
        let last_word = load.call(&mut store, max_memory_bytes as i32 - 4).is_err();
        let past_end = load.call(&mut store, max_memory_bytes as i32).is_err();
        let fuel = 1_000_000 - store.get_fuel().unwrap();
        let mut fingerprint = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut fingerprint);
        ((pages, fuel, last_word, past_end), fingerprint.finish())
    }

    #[test]
    fn a_compact_reservation_changes_nothing_a_guest_sees_and_is_cached_apart() {
        let ((normal, normal_fingerprint), (compact, compact_fingerprint)) = (observed(false), observed(true));
        assert_eq!((normal.0, normal.2, normal.3), (64, false, true), "{normal:?}");
        assert_eq!(compact, normal);
        assert_ne!(compact_fingerprint, normal_fingerprint, "the two engines' code must be cached apart");
    }
}
