//! Programs the team did not write (scripts/build-third-party builds them),
//! WASI preview 2 components, and modules using exception handling: each runs
//! on a node with no arguments of its own, and where the program is
//! deterministic its stdout and exit status equal a plain wasmtime run of the
//! same program, `wasmtime run --argv0 main PROGRAM < INPUT` (the wasmtime
//! crate with default settings, WASI with argument 0 and stdin only).

use std::path::Path;

use reqwest::StatusCode;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use nebula_protocol::manifest::{FunctionParts, encode_bundle};

use crate::common::{TestNode, fixture, function};

const MARKDOWN: &str = "# Real programs\n\nRun *unchanged*, with `argv[0]`:\n\n- cmark-gfm\n- pulldown-cmark\n\n\
                        | a | b |\n|---|---|\n| 1 | 2 |\n";

fn third_party(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/third-party").join(name);
    std::fs::read(&path)
        .unwrap_or_else(|error| panic!("{}: {error}; run scripts/build-third-party first", path.display()))
}

/// A component built for wasm32-wasip2 by scripts/build-functions.
fn p2_function(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions/p2").join(format!("{name}.wasm"));
    std::fs::read(&path)
        .unwrap_or_else(|error| panic!("{}: {error}; run scripts/build-functions first", path.display()))
}

/// What `wasmtime run` gives: stdout and the exit status (a trap: `None`).
struct Reference {
    stdout: Vec<u8>,
    exit: Option<i32>,
}

fn wasmtime_run(wasm: &[u8], input: &[u8]) -> Reference {
    wasmtime_run_with(wasm, input, &[], None)
}

/// `wasmtime run --argv0 main --dir HOST::/data PROGRAM ARGS... < INPUT`.
fn wasmtime_run_with(wasm: &[u8], input: &[u8], args: &[&str], data_dir: Option<&Path>) -> Reference {
    let engine = wasmtime::Engine::default();
    let stdout = MemoryOutputPipe::new(64 << 20);
    let mut builder = WasiCtxBuilder::new();
    builder.arg("main").args(args).stdin(MemoryInputPipe::new(input.to_vec())).stdout(stdout.clone());
    if let Some(dir) = data_dir {
        builder.preopened_dir(dir, "/data", wasmtime_wasi::FsPerms::ReadOnly).unwrap();
    }
    let result: wasmtime::Result<()> = if wasmparser::Parser::is_component(wasm) {
        struct State(wasmtime_wasi::WasiCtx, wasmtime::component::ResourceTable);
        impl wasmtime_wasi::WasiView for State {
            fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
                wasmtime_wasi::WasiCtxView { ctx: &mut self.0, table: &mut self.1 }
            }
        }
        let component = wasmtime::component::Component::new(&engine, wasm).unwrap();
        let mut linker = wasmtime::component::Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        let mut store = wasmtime::Store::new(&engine, State(builder.build(), Default::default()));
        wasmtime_wasi::p2::bindings::sync::Command::instantiate(&mut store, &component, &linker)
            .and_then(|command| command.wasi_cli_run().call_run(&mut store))
            .and_then(|run| run.map_err(|()| I32Exit(1).into()))
    } else {
        let module = wasmtime::Module::new(&engine, wasm).unwrap();
        let mut linker = wasmtime::Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx| ctx).unwrap();
        let mut store = wasmtime::Store::new(&engine, builder.build_p1());
        linker
            .instantiate(&mut store, &module)
            .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
            .and_then(|start| start.call(&mut store, ()))
    };
    let exit = match result {
        Ok(()) => Some(0),
        Err(error) => error.downcast_ref::<I32Exit>().map(|exit| exit.0),
    };
    Reference { stdout: stdout.contents().to_vec(), exit }
}

/// Calls `name` with `input` and checks the answer against wasmtime's;
/// returns the answer's body.
async fn same_as_wasmtime(node: &TestNode, name: &str, wasm: &[u8], input: &[u8]) -> String {
    // Sync WASI blocks on a runtime of its own: not on a tokio worker.
    let (program, stdin) = (wasm.to_vec(), input.to_vec());
    let reference = tokio::task::spawn_blocking(move || wasmtime_run(&program, &stdin)).await.unwrap();
    let answer = node.call(name, input, "").await;
    match reference.exit {
        Some(0) => {
            assert_eq!(answer.status, StatusCode::OK, "{name}: {}", answer.text());
            assert_eq!(answer.body, reference.stdout, "{name}: stdout differs from wasmtime run");
        }
        Some(code) => {
            assert_eq!(answer.error_kind(), "non_zero_exit", "{name}: {}", answer.text());
            assert_eq!(answer.json()["detail"]["NonZeroExit"]["code"], code, "{name}");
        }
        None => assert_eq!(answer.error_kind(), "trap", "{name}: {}", answer.text()),
    }
    answer.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn programs_from_crates_io_and_debian_answer_as_wasmtime_run_does() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let programs = [
        ("cmark-gfm", "cmark-gfm.wasm"),
        ("pulldown-cmark", "pulldown-cmark.wasm"),
        ("comrak", "comrak.wasm"),
        ("pulldown-cmark-p2", "pulldown-cmark-p2.wasm"),
    ];
    for (name, file) in programs {
        let wasm = third_party(file);
        node.deploy(wasm.clone(), name).await;
        let html = same_as_wasmtime(&node, name, &wasm, MARKDOWN.as_bytes()).await;
        assert!(html.contains("<h1>Real programs</h1>") && html.contains("<em>unchanged</em>"), "{name}: {html}");
        assert!(html.contains("<code>argv[0]</code>"), "{name}: {html}");
    }
    // Two runs of a program agree with each other too: the same bytes and fuel on a fresh node.
    let other_dir = tempfile::tempdir().unwrap();
    let other = TestNode::start(other_dir.path()).await;
    other.deploy(third_party("comrak.wasm"), "comrak").await;
    let (here, there) = (node.call("comrak", b"*x*", "").await, other.call("comrak", b"*x*", "").await);
    assert_eq!((&here.body, here.header("x-nebula-fuel")), (&there.body, there.header("x-nebula-fuel")));
    let listed = node.get("/modules").await.json();
    assert!(listed.as_array().unwrap().iter().all(|module| module["state"] == "ready"), "{listed}");
    other.stop().await;
    node.stop().await;
}

/// Throws an exception and catches it (prints "caught 42"), or, with any
/// input, lets it escape `_start` (a trap).
const EXCEPTIONS: &str = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (tag $oops (param i32))
  (data (i32.const 100) "caught 4?\n")
  (func $throw (param i32) (throw $oops (local.get 0)))
  (func $input_bytes (result i32)
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.const 16))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i32.load (i32.const 8)))
  (func (export "_start")
    (local $caught i32)
    (if (call $input_bytes) (then (call $throw (i32.const 7))))
    (local.set $caught
      (block $handler (result i32)
        (try_table (catch $oops $handler) (call $throw (i32.const 42)))
        (i32.const 0)))
    ;; "caught 42": the payload's last digit into the message.
    (i32.store8 (i32.const 108) (i32.add (i32.const 48) (i32.rem_u (local.get $caught) (i32.const 10))))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 10))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exception_handling_modules_run_and_an_uncaught_exception_is_a_trap() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let wasm = wat::parse_str(EXCEPTIONS).unwrap();
    node.deploy(wasm.clone(), "exceptions").await;
    assert_eq!(same_as_wasmtime(&node, "exceptions", &wasm, b"").await, "caught 42\n");
    let uncaught = same_as_wasmtime(&node, "exceptions", &wasm, b"escape").await;
    assert!(uncaught.contains("exception"), "{uncaught}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_keep_the_contract_limits_outcomes_and_profile_of_modules() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    for name in ["echo", "clock-random", "read-files-env", "endless-loop", "memory-bomb", "huge-output"] {
        node.deploy(p2_function(name), name).await;
    }
    for name in ["exit-code", "panic", "deep-recursion"] {
        node.deploy(p2_function(name), name).await;
    }
    // stdin to stdout.
    assert_eq!(node.call("echo", b"hello component", "").await.text(), "hello component");
    // The profile: frozen clocks, seeded random, nothing but argument 0.
    let seen = node.call("clock-random", b"hello world", "").await.text();
    assert!(seen.starts_with("wall=1000000000000000000 elapsed=0ns"), "{seen}");
    node.deploy(function("clock-random"), "clock-random-p1").await;
    let p1_seen = node.call("clock-random-p1", b"hello world", "").await.text();
    let clocks = |text: &str| text.split(" order=").next().unwrap().to_owned();
    assert_eq!(clocks(&seen), clocks(&p1_seen), "the same clocks as a module");
    assert_eq!(node.call("clock-random", b"hello world", "").await.text(), seen, "the same random bytes again");
    let sandbox = node.call("read-files-env", b"", "").await.text();
    assert!(sandbox.starts_with("file=denied") && sandbox.contains("cwd=denied"), "{sandbox}");
    assert!(sandbox.ends_with("env=[] args=[\"main\"]"), "{sandbox}");
    // Limits and outcomes, as for modules.
    let looping = node.call("endless-loop", b"", "deadline_ms=100").await;
    assert!(["deadline_exceeded", "out_of_fuel"].contains(&looping.error_kind().as_str()), "{}", looping.text());
    assert_eq!(node.call("memory-bomb", b"", "memory_bytes=33554432").await.error_kind(), "memory_limit");
    assert_eq!(node.call("huge-output", b"", "output_bytes=100000").await.error_kind(), "output_too_large");
    let exit = node.call("exit-code", b"", "").await;
    assert_eq!(exit.error_kind(), "non_zero_exit", "{}", exit.text());
    assert_eq!(node.call("panic", b"", "").await.error_kind(), "trap");
    assert_eq!(node.call("deep-recursion", b"", "").await.error_kind(), "trap");
    node.stop().await;
}

/// A real C program (cmark-gfm) given fixed arguments and two files by a
/// manifest: it reads the files from the bundle's read-only directory and
/// answers as `wasmtime run --dir` of the same program and files does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_gives_a_real_program_its_arguments_and_files() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(&dir.path().join("node")).await;
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("chapters")).unwrap();
    let table = "| tool | reads |\n|---|---|\n| cmark-gfm | /data |\n";
    std::fs::write(data.join("intro.md"), MARKDOWN).unwrap();
    std::fs::write(data.join("chapters/table.md"), table).unwrap();
    let args = ["-e", "table", "--to", "html", "/data/intro.md", "/data/chapters/table.md"];
    let module = third_party("cmark-gfm.wasm");
    let bundle = encode_bundle(FunctionParts {
        module: &module,
        args: args.iter().map(|arg| arg.to_string()).collect(),
        env: vec![("LC_ALL".into(), "C".into())],
        mount: None,
        files: vec![
            ("intro.md".into(), MARKDOWN.as_bytes().to_vec()),
            ("chapters/table.md".into(), table.as_bytes().to_vec()),
        ],
    })
    .unwrap();
    let id = node.deploy(bundle.clone(), "render-docs").await;
    assert_eq!(id, blake3::hash(&bundle).to_hex().as_str(), "the bundle's hash is the function's id");

    let (program, host_dir) = (module.clone(), data.clone());
    let reference =
        tokio::task::spawn_blocking(move || wasmtime_run_with(&program, b"", &args, Some(&host_dir))).await.unwrap();
    let answer = node.call("render-docs", b"", "").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.body, reference.stdout, "stdout differs from wasmtime run --dir");
    let html = answer.text();
    assert!(html.contains("<h1>Real programs</h1>") && html.contains("<td>cmark-gfm</td>"), "{html}");

    // The module alone is another function, and still reads stdin only.
    let plain = node.deploy(module, "cmark-gfm").await;
    assert_ne!(plain, id);
    let answer = node.call("cmark-gfm", b"*x*", "").await;
    assert_eq!(answer.text(), "<p><em>x</em></p>\n");

    let listed = node.get("/modules").await.json();
    let function = listed.as_array().unwrap().iter().find(|module| module["module"] == id.as_str()).unwrap();
    assert_eq!(function["manifest"]["args"][4], "/data/intro.md", "{function}");
    assert_eq!(function["manifest"]["module"], plain.as_str(), "{function}");
    assert_eq!(function["manifest"]["files"].as_array().unwrap().len(), 2, "{function}");
    node.stop().await;
}

/// A manifest's environment and arguments reach the guest exactly, a WASI
/// preview 1 module and a preview 2 component alike; the rest of the
/// profile does not change (no host files, no working directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_sets_arguments_and_environment_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    for (name, program) in [("module", fixture("read-files-env")), ("component", p2_function("read-files-env"))] {
        let bundle = encode_bundle(FunctionParts {
            module: &program,
            args: vec!["--flag".into(), "two words".into()],
            env: vec![("ZETA".into(), "last".into()), ("ALPHA".into(), "a=b".into())],
            mount: None,
            files: vec![],
        })
        .unwrap();
        node.deploy(bundle, name).await;
        let seen = node.call(name, b"", "").await.text();
        assert!(seen.contains(r#"env=["ALPHA", "ZETA"]"#), "{name}: {seen}");
        assert!(seen.contains(r#"args=["main", "--flag", "two words"]"#), "{name}: {seen}");
        assert!(seen.contains("file=denied") && seen.contains("cwd=denied"), "{name}: {seen}");
    }
    node.stop().await;
}

/// Bundles a node must refuse, each with its reason, storing nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bundles_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start(dir.path()).await;
    let good = encode_bundle(FunctionParts {
        module: &function("echo"),
        args: vec!["x".into()],
        env: vec![],
        mount: None,
        files: vec![("a.txt".into(), b"a".to_vec())],
    })
    .unwrap();
    let mut truncated = good.clone();
    truncated.pop();
    let not_a_program = encode_bundle(FunctionParts {
        module: b"\0asm\x01\0\0\0",
        args: vec!["x".into()],
        env: vec![],
        mount: None,
        files: vec![],
    })
    .unwrap();
    let component_with_files = encode_bundle(FunctionParts {
        module: &p2_function("echo"),
        args: vec![],
        env: vec![],
        mount: None,
        files: vec![("a.txt".into(), b"a".to_vec())],
    })
    .unwrap();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        ("truncated", truncated, "header describes"),
        ("module without _start", not_a_program, "its module does not export '_start'"),
        ("component with files", component_with_files, "only WASI preview 1 modules"),
    ];
    for (case, bundle, reason) in cases {
        let (status, body) = node.deploy_raw(bundle, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{case}: {body}");
        assert!(body["message"].as_str().unwrap().contains(reason), "{case}: {body}");
    }
    assert_eq!(node.get("/modules").await.json(), serde_json::json!([]), "nothing was stored");
    node.stop().await;
}
