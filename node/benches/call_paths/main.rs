//! Call-path benchmark: the same functions and inputs through every approach,
//! measured in one run, reported as medians, p99s and ratios, with a markdown
//! report and an SVG chart.
//!
//! Run with `scripts/bench` (builds the functions natively and the Docker
//! images, then `cargo bench -p nebula-node --bench call_paths`); `--quick`
//! takes about a minute. `NEBULA_BENCH_OUT` moves the output (default
//! `bench-results/`).

mod baselines;
mod measure;
mod report;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nebula_node::runtime::Runtime;
use nebula_node::{Node, NodeConfig};
use nebula_protocol::{CallKey, LimitOverrides, Limits, ModuleId, Outcome};

use baselines::Load;
use measure::{Measured, Plan, measure, measure_interleaved_on_runtime, measure_on_runtime, measure_part};

/// The thesis's functions, with inputs small enough that start-up, not the
/// work itself, dominates the slow paths (the thesis measured cold starts).
const FUNCTIONS: &[(&str, &str)] =
    &[("fibonacci", "90"), ("prime-number", "100"), ("factorial", "100"), ("monte-carlo-pi", "1000 7")];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallPath {
    Warm,
    NodeUncached,
    NodeCached,
    Restart,
    EngineCompile,
    EnginePrecompiled,
    Process,
    Docker,
}

impl CallPath {
    pub const ALL: [CallPath; 8] = [
        CallPath::Warm,
        CallPath::NodeUncached,
        CallPath::NodeCached,
        CallPath::Restart,
        CallPath::EnginePrecompiled,
        CallPath::Process,
        CallPath::EngineCompile,
        CallPath::Docker,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CallPath::Warm => "Nebula warm call (runtime, uncached)",
            CallPath::NodeUncached => "Nebula node call, uncached",
            CallPath::NodeCached => "Nebula node call, cached",
            CallPath::Restart => "Nebula first call after restart",
            CallPath::EngineCompile => "prototype: engine + compile per call",
            CallPath::EnginePrecompiled => "prototype, kindest: engine + precompiled",
            CallPath::Process => "native process per call",
            CallPath::Docker => "docker run --rm -i (FROM scratch)",
        }
    }

    fn plan(self, quick: bool) -> Plan {
        let s = Duration::from_secs;
        match (self, quick) {
            (CallPath::Warm | CallPath::NodeUncached | CallPath::NodeCached, false) => Plan::new(200, 5_000, s(5)),
            (CallPath::Warm | CallPath::NodeUncached | CallPath::NodeCached, true) => Plan::new(50, 1_000, s(1)),
            (CallPath::Restart, false) => Plan::new(1, 30, s(10)),
            (CallPath::Restart, true) => Plan::new(1, 8, s(2)),
            (CallPath::EngineCompile, false) => Plan::new(2, 50, s(10)),
            (CallPath::EngineCompile, true) => Plan::new(1, 5, s(1)),
            (CallPath::EnginePrecompiled | CallPath::Process, false) => Plan::new(10, 1_000, s(5)),
            (CallPath::EnginePrecompiled | CallPath::Process, true) => Plan::new(5, 200, s(1)),
            (CallPath::Docker, false) => Plan::new(2, 30, s(30)),
            (CallPath::Docker, true) => Plan::new(1, 5, s(5)),
        }
    }
}

/// One function's figures; a path that could not run holds the reason.
pub struct FunctionResult {
    pub function: &'static str,
    pub input: &'static str,
    pub paths: Vec<(CallPath, Result<Measured, String>)>,
}

impl FunctionResult {
    pub fn measured(&self, path: CallPath) -> Option<&Measured> {
        self.paths.iter().find(|(p, _)| *p == path).and_then(|(_, m)| m.as_ref().ok())
    }
}

fn functions_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions")
}

/// The same input behind `i` written in whitespace (8 base-4 digits: space,
/// tab, newline, carriage return): the functions trim their input, so the
/// work and answer stay the same while the call key (and cache entry) is
/// new. Every such input has the same length, so the 5,000th call reads no
/// more than the first (leading spaces, one more per call, made a call's
/// stdin grow to kilobytes and its run several times longer).
fn fresh_input(input: &str, i: usize) -> Vec<u8> {
    const DIGITS: [u8; 4] = *b" \t\n\r";
    assert!(i < 4usize.pow(8), "fresh inputs run out after 65,536 calls");
    let mut fresh: Vec<u8> = (0..8).rev().map(|place| DIGITS[(i >> (2 * place)) & 3]).collect();
    fresh.extend_from_slice(input.as_bytes());
    fresh
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let out = std::env::var_os("NEBULA_BENCH_OUT")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench-results"), PathBuf::from);
    let scratch = tempfile::tempdir().unwrap();
    let tokio = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let limits = Limits::default();
    let runtime = Arc::new(Runtime::new(scratch.path().join("warm"), 2, limits.memory_bytes).unwrap());
    let node = tokio.block_on(Node::open(NodeConfig::new(scratch.path().join("node"), "127.0.0.1:0".parse().unwrap())));
    let node = node.unwrap();
    let started = Instant::now();

    let mut results = Vec::new();
    for &(function, input) in FUNCTIONS {
        eprintln!("measuring {function}({input})");
        let wasm = std::fs::read(functions_dir().join(format!("{function}.wasm")))
            .expect("run scripts/build-functions --native first");
        let native = functions_dir().join("native").join(function);
        let expected = baselines::native_process(&native, input.as_bytes());
        let mut paths = Vec::new();
        let mut record = |path: CallPath, result: Result<Measured, String>| paths.push((path, result));

        // Warm, uncached: the runtime executing a prepared module, with an
        // input as long as the node's fresh ones. The whole node path: core,
        // cache lookup, execution slot, store, reply. Both are called from a
        // task on the node's runtime, as its HTTP handlers do, taking turns.
        let module = ModuleId::of_bytes(&wasm);
        let prepared = runtime.load(&module, &wasm).unwrap();
        let padded: Arc<[u8]> = fresh_input(input, 0).into();
        let key = CallKey::new(&module, &padded);
        let report = runtime.execute_blocking(&prepared, &key, &padded, &limits);
        assert_eq!(report.outcome, Outcome::Success { stdout: expected.clone() }, "{function}: wasm and native agree");
        let overrides = LimitOverrides::default();
        tokio.block_on(node.deploy_bytes(wasm.clone(), Some(function))).unwrap();
        let (warm, caller) = (runtime.clone(), node.clone());
        let (warm, uncached) = measure_interleaved_on_runtime(
            &tokio,
            CallPath::Warm.plan(quick),
            move |_| {
                let (runtime, prepared, padded) = (warm.clone(), prepared.clone(), padded.clone());
                async move {
                    runtime.execute(&prepared, &key, &padded, &limits).await;
                }
            },
            move |i| {
                let node = caller.clone();
                async move {
                    node.call(function, fresh_input(input, i + 1), &LimitOverrides::default()).await;
                }
            },
        );
        record(CallPath::Warm, Ok(warm));
        record(CallPath::NodeUncached, Ok(uncached));
        tokio.block_on(node.call(function, input.as_bytes().to_vec(), &overrides));
        assert!(node.is_cached(function, input.as_bytes()));
        let caller = node.clone();
        record(
            CallPath::NodeCached,
            Ok(measure_on_runtime(&tokio, CallPath::NodeCached.plan(quick), move |_| {
                let node = caller.clone();
                async move {
                    node.call(function, input.as_bytes().to_vec(), &LimitOverrides::default()).await;
                }
            })),
        );
        record(CallPath::Restart, Ok(first_call_after_restart(&tokio, scratch.path(), function, input, &wasm, quick)));

        // The original prototype, literally and at its kindest.
        assert_eq!(baselines::engine_per_call(Load::Compile(&wasm), input.as_bytes()), expected);
        record(
            CallPath::EngineCompile,
            Ok(measure(CallPath::EngineCompile.plan(quick), |_| {
                baselines::engine_per_call(Load::Compile(&wasm), input.as_bytes());
            })),
        );
        let precompiled = baselines::precompile(&wasm);
        record(
            CallPath::EnginePrecompiled,
            Ok(measure(CallPath::EnginePrecompiled.plan(quick), |_| {
                baselines::engine_per_call(Load::Precompiled(&precompiled), input.as_bytes());
            })),
        );

        record(
            CallPath::Process,
            Ok(measure(CallPath::Process.plan(quick), |_| {
                baselines::native_process(&native, input.as_bytes());
            })),
        );
        let docker = match baselines::docker_unavailable(function) {
            Some(reason) => Err(reason),
            None => {
                assert_eq!(baselines::docker_run(function, input.as_bytes()), expected);
                Ok(measure(CallPath::Docker.plan(quick), |_| {
                    baselines::docker_run(function, input.as_bytes());
                }))
            }
        };
        if let Err(reason) = &docker {
            eprintln!("  docker: {reason}");
        }
        record(CallPath::Docker, docker);
        results.push(FunctionResult { function, input, paths });
    }

    let report = report::Report { results: &results, quick, elapsed: started.elapsed() };
    print!("{}", report.text());
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("call-paths.md"), report.markdown()).unwrap();
    std::fs::write(out.join("call-paths.svg"), report.svg()).unwrap();
    eprintln!("report: {}, chart: {}", out.join("call-paths.md").display(), out.join("call-paths.svg").display());
}

/// A node started on a data directory that already holds the module and its
/// compiled code (as after a restart), timed on its first call: reading and
/// verifying the blob, loading the compiled code from disk, instantiating, running.
fn first_call_after_restart(
    tokio: &tokio::runtime::Runtime,
    scratch: &Path,
    function: &str,
    input: &str,
    wasm: &[u8],
    quick: bool,
) -> Measured {
    let dir = scratch.join(format!("restart-{function}"));
    let config = || NodeConfig::new(&dir, "127.0.0.1:0".parse().unwrap());
    tokio.block_on(async {
        let node = Node::open(config()).await.unwrap();
        node.deploy_bytes(wasm.to_vec(), Some(function)).await.unwrap();
    });
    measure_part(CallPath::Restart.plan(quick), |i| {
        let node = open_when_released(tokio, config);
        let started = Instant::now();
        let answer = tokio.block_on(node.call(function, fresh_input(input, i + 1), &LimitOverrides::default()));
        let elapsed = started.elapsed();
        assert!(answer.reply.is_ok_and(|answer| answer.cache == nebula_protocol::CacheStatus::Miss));
        elapsed
    })
}

/// Opens a node on a data directory the previous node may still be letting
/// go of (its last execution thread ends just after the reply).
fn open_when_released(tokio: &tokio::runtime::Runtime, config: impl Fn() -> NodeConfig) -> Node {
    for _ in 0..100 {
        if let Ok(node) = tokio.block_on(Node::open(config())) {
            return node;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    tokio.block_on(Node::open(config())).unwrap()
}
