//! The approaches Nebula is compared with: the original prototype (a new
//! engine and module per call), a native process per call, and the thesis's
//! Docker baseline (`docker run --rm -i` of a `FROM scratch` image).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// How the original prototype got its module for each call.
#[derive(Clone, Copy)]
pub enum Load<'a> {
    /// Compile the wasm bytes (what loading a `.wasm` file does).
    Compile(&'a [u8]),
    /// Deserialize code compiled ahead of time (the kindest reading of "load").
    Precompiled(&'a [u8]),
}

/// The original prototype: a new engine, a module load and a new WASI
/// context for every call.
pub fn engine_per_call(load: Load, input: &[u8]) -> Vec<u8> {
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

pub fn precompile(wasm: &[u8]) -> Vec<u8> {
    wasmtime::Module::new(&wasmtime::Engine::default(), wasm).unwrap().serialize().unwrap()
}

/// Runs `command` with `input` on stdin; returns its stdout.
fn run_with_input(command: &mut Command, input: &[u8]) -> Vec<u8> {
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{command:?} failed: {:?}", output.status);
    output.stdout
}

pub fn native_process(binary: &Path, input: &[u8]) -> Vec<u8> {
    run_with_input(&mut Command::new(binary), input)
}

/// The image `scripts/bench` builds for a function: its static native binary
/// alone in a `FROM scratch` image.
pub fn docker_image(function: &str) -> String {
    format!("nebula-bench-{function}")
}

/// Why the Docker baseline cannot run here, if it cannot.
pub fn docker_unavailable(function: &str) -> Option<String> {
    let quiet = |args: &[&str]| {
        Command::new("docker")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !quiet(&["info"]) {
        return Some("skipped: no Docker engine".into());
    }
    if !quiet(&["image", "inspect", &docker_image(function)]) {
        return Some(format!("skipped: no image {} (scripts/bench builds it)", docker_image(function)));
    }
    None
}

/// One call the thesis's way: a fresh container per call.
pub fn docker_run(function: &str, input: &[u8]) -> Vec<u8> {
    run_with_input(Command::new("docker").args(["run", "--rm", "-i", &docker_image(function)]), input)
}
