//! Call-path benchmark: every approach measured in the same run on the same
//! function and input, reported as medians and ratios.
//!
//! Run with `scripts/bench-calls` (builds the functions, then
//! `cargo bench -p nebula-node --bench call_paths`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nebula_node::runtime::Runtime;
use nebula_node::{Node, NodeConfig};
use nebula_protocol::{CallKey, LimitOverrides, Limits, ModuleId, Outcome};

const FUNCTION: &str = "fibonacci";
const INPUT: &[u8] = b"90";
const EXPECTED: &str = "2880067194370816120";

struct Measured {
    label: &'static str,
    samples: Vec<Duration>,
}

impl Measured {
    fn median(&self) -> Duration {
        percentile(&self.samples, 0.5)
    }
}

fn percentile(samples: &[Duration], q: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Runs `f` for `warmup` iterations, then times `iterations` of them (or
/// stops early at `budget`).
fn measure(
    label: &'static str,
    warmup: usize,
    iterations: usize,
    budget: Duration,
    mut f: impl FnMut(usize),
) -> Measured {
    for i in 0..warmup {
        f(i);
    }
    let mut samples = Vec::with_capacity(iterations);
    let started = Instant::now();
    for i in 0..iterations {
        let t = Instant::now();
        f(warmup + i);
        samples.push(t.elapsed());
        if started.elapsed() > budget {
            break;
        }
    }
    Measured { label, samples }
}

fn functions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions")
}

/// How the original prototype got its module for each call.
#[derive(Clone, Copy)]
enum Load<'a> {
    /// Compile the wasm bytes (what loading a `.wasm` file does).
    Compile(&'a [u8]),
    /// Deserialize code compiled ahead of time (the kindest reading of "load").
    Precompiled(&'a [u8]),
}

/// The original prototype: a new engine, a module load and a new WASI
/// context for every call.
fn engine_per_call(load: Load, input: &[u8]) -> Vec<u8> {
    use wasmtime::{Engine, Linker, Module, Store};
    use wasmtime_wasi::WasiCtxBuilder;
    use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

    let engine = Engine::default();
    let module = match load {
        Load::Compile(wasm) => Module::new(&engine, wasm).unwrap(),
        // SAFETY: bytes produced just before by `Module::serialize` with the same default config.
        Load::Precompiled(code) => unsafe { Module::deserialize(&engine, code) }.unwrap(),
    };
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
    let stdout = MemoryOutputPipe::new(1 << 20);
    let wasi = WasiCtxBuilder::new().stdin(MemoryInputPipe::new(input.to_vec())).stdout(stdout.clone()).build_p1();
    let mut store = Store::new(&engine, wasi);
    let instance = linker.instantiate(&mut store, &module).unwrap();
    instance.get_typed_func::<(), ()>(&mut store, "_start").unwrap().call(&mut store, ()).unwrap();
    stdout.contents().to_vec()
}

fn native_process(binary: &Path, input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(binary).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap().stdout
}

fn main() {
    let wasm = std::fs::read(functions_dir().join(format!("{FUNCTION}.wasm")))
        .expect("run scripts/build-functions --native first");
    let native = functions_dir().join("native").join(FUNCTION);
    let module = ModuleId::of_bytes(&wasm);
    let limits = Limits::default();
    let scratch = tempfile::tempdir().unwrap();
    let budget = Duration::from_secs(10);

    // 1. Warm, uncached: the runtime executing a prepared module.
    let runtime = Runtime::new(scratch.path().join("compiled"), 2, limits.memory_bytes).unwrap();
    let prepared = runtime.load(&module, &wasm).unwrap();
    let key = CallKey::new(&module, INPUT);
    let report = runtime.execute(&prepared, &key, INPUT, &limits);
    assert_eq!(report.outcome, Outcome::Success { stdout: EXPECTED.as_bytes().to_vec() });
    let warm = measure("warm call (runtime, uncached)", 200, 5_000, budget, |_| {
        runtime.execute(&prepared, &key, INPUT, &limits);
    });
    // For profiling one path alone: `NEBULA_BENCH_PROFILE=warm perf record …`.
    let profile_only = std::env::var("NEBULA_BENCH_PROFILE").ok();
    if profile_only.as_deref() == Some("warm") {
        let profile = measure("warm call, profiling loop", 0, 200_000, Duration::from_secs(20), |_| {
            runtime.execute(&prepared, &key, INPUT, &limits);
        });
        println!("warm median {:.1} µs", profile.median().as_secs_f64() * 1e6);
        return;
    }

    // 2. The whole node path, uncached (each input new) and cached (same input).
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let node = tokio.block_on(async {
        let config = NodeConfig::new(scratch.path().join("node"), "127.0.0.1:0".parse().unwrap());
        let node = Node::open(config).await.unwrap();
        node.deploy(wasm.clone(), Some(FUNCTION)).await.unwrap();
        let add = std::fs::read(functions_dir().join("add.wasm")).unwrap();
        node.deploy(add, Some("add")).await.unwrap();
        node
    });
    let overrides = LimitOverrides::default();
    let node_uncached = measure("node call, uncached", 200, 5_000, budget, |i| {
        // A new input each time (leading zeros keep the number, change the key).
        let input = format!("{}{}", "0".repeat(i / 90), i % 90 + 1).into_bytes();
        tokio.block_on(node.call(FUNCTION, input, &overrides));
    });
    if profile_only.as_deref() == Some("node") {
        let profile = measure("node call, profiling loop", 0, 100_000, Duration::from_secs(20), |i| {
            let input = format!("{}{}", "1".repeat(i / 90 + 1), i % 90).into_bytes();
            tokio.block_on(node.call("add", input, &overrides));
        });
        println!("node uncached median {:.1} µs", profile.median().as_secs_f64() * 1e6);
        return;
    }
    tokio.block_on(node.call(FUNCTION, INPUT.to_vec(), &overrides));
    let node_cached = measure("node call, cached", 200, 20_000, budget, |_| {
        tokio.block_on(node.call(FUNCTION, INPUT.to_vec(), &overrides));
    });

    // 3. The original prototype: engine + module load per call.
    assert_eq!(engine_per_call(Load::Compile(&wasm), INPUT), EXPECTED.as_bytes());
    let per_call = measure("engine + compile per call (prototype)", 2, 100, budget, |_| {
        engine_per_call(Load::Compile(&wasm), INPUT);
    });
    let precompiled = wasmtime::Module::new(&wasmtime::Engine::default(), &wasm).unwrap().serialize().unwrap();
    assert_eq!(engine_per_call(Load::Precompiled(&precompiled), INPUT), EXPECTED.as_bytes());
    let per_call_precompiled = measure("engine + precompiled load per call", 10, 1_000, budget, |_| {
        engine_per_call(Load::Precompiled(&precompiled), INPUT);
    });

    // 4. A native process per call.
    assert_eq!(native_process(&native, INPUT), EXPECTED.as_bytes());
    let process = measure("native process per call", 10, 1_000, budget, |_| {
        native_process(&native, INPUT);
    });

    println!("\n{FUNCTION}({}) — median, p99, samples", String::from_utf8_lossy(INPUT));
    for m in [&warm, &node_uncached, &node_cached, &per_call, &per_call_precompiled, &process] {
        println!(
            "  {:<40} {:>10.1} µs {:>10.1} µs {:>7}",
            m.label,
            m.median().as_secs_f64() * 1e6,
            percentile(&m.samples, 0.99).as_secs_f64() * 1e6,
            m.samples.len()
        );
    }
    let ratio = |a: &Measured, b: &Measured| a.median().as_secs_f64() / b.median().as_secs_f64();
    println!();
    println!("ratio warm_vs_engine_per_call {:.1}", ratio(&per_call, &warm));
    println!("ratio warm_vs_engine_per_call_precompiled {:.1}", ratio(&per_call_precompiled, &warm));
    println!("ratio warm_vs_process_spawn {:.1}", ratio(&process, &warm));
    println!("ratio node_uncached_vs_engine_per_call {:.1}", ratio(&per_call, &node_uncached));
    println!("ratio node_uncached_vs_process_spawn {:.1}", ratio(&process, &node_uncached));
    println!("ratio cached_vs_node_uncached {:.1}", ratio(&node_uncached, &node_cached));
}
