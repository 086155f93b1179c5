//! What an `Execute` action computes in the simulator: a modelled pure
//! function (the output derived from the call key), or, with `--wasm`, the
//! real guest functions run by the node's own wasmtime runtime. Either way the
//! cost in virtual time comes from the workload model.

use nebula_protocol::{CallKey, ModuleId};

pub enum Executor {
    Modelled,
    #[cfg(feature = "wasm")]
    Wasm(Box<wasm::Functions>),
}

impl Executor {
    /// The real functions in `dir` (`<name>.wasm`, as scripts/build-functions installs them).
    pub fn wasm(dir: &std::path::Path) -> anyhow::Result<Executor> {
        #[cfg(feature = "wasm")]
        return Ok(Executor::Wasm(Box::new(wasm::Functions::load(dir)?)));
        #[cfg(not(feature = "wasm"))]
        anyhow::bail!(
            "this nebula-sim was built without real execution ({} not used); rebuild with `--features wasm`",
            dir.display()
        )
    }

    /// A new module for the run: its id and size in bytes. `index` makes it distinct.
    pub fn new_module(&mut self, index: u64, modelled_size: u64) -> (ModuleId, u64) {
        match self {
            Executor::Modelled => (ModuleId::of_bytes(format!("module-{index}").as_bytes()), modelled_size),
            #[cfg(feature = "wasm")]
            Executor::Wasm(functions) => functions.new_module(index),
        }
    }

    /// Inputs the workload draws from: 0..this, as decimal text.
    pub fn input_range(&self) -> u64 {
        // fibonacci answers up to 93 in 64 bits; the same range for the model
        // keeps runs with and without --wasm comparable.
        90
    }

    /// Runs the function as a node would.
    pub fn execute(&mut self, module: &ModuleId, input: &[u8]) -> Vec<u8> {
        match self {
            Executor::Modelled => truth(module, input),
            #[cfg(feature = "wasm")]
            Executor::Wasm(functions) => functions.execute(module, input),
        }
    }

    /// The true output: what every correct node must answer.
    pub fn truth(&mut self, module: &ModuleId, input: &[u8]) -> Vec<u8> {
        match self {
            Executor::Modelled => truth(module, input),
            #[cfg(feature = "wasm")]
            Executor::Wasm(functions) => functions.truth(module, input),
        }
    }
}

/// The modelled function's output.
fn truth(module: &ModuleId, input: &[u8]) -> Vec<u8> {
    blake3::hash(CallKey::new(module, input).as_bytes()).as_bytes()[..8].to_vec()
}

#[cfg(feature = "wasm")]
mod wasm {
    use std::collections::HashMap;
    use std::path::Path;

    use nebula_node::runtime::{Prepared, Runtime};
    use nebula_protocol::{CallKey, Limits, ModuleId, Outcome};

    const FUNCTIONS: [&str; 5] = ["hash", "echo", "fibonacci", "factorial", "prime-number"];

    pub struct Functions {
        runtime: Runtime,
        originals: Vec<Vec<u8>>,
        prepared: HashMap<ModuleId, Prepared>,
        /// True outputs, each computed once, by a run of its own.
        truths: HashMap<CallKey, Vec<u8>>,
        _compiled: tempfile::TempDir,
    }

    impl Functions {
        pub fn load(dir: &Path) -> anyhow::Result<Functions> {
            let mut originals = Vec::new();
            for name in FUNCTIONS {
                let path = dir.join(format!("{name}.wasm"));
                originals.push(std::fs::read(&path).map_err(|error| {
                    anyhow::anyhow!("reading {}: {error} (scripts/build-functions builds it)", path.display())
                })?);
            }
            let compiled = tempfile::tempdir()?;
            let runtime = Runtime::new(compiled.path().to_owned(), 1, Limits::default().memory_bytes)?;
            Ok(Functions { runtime, originals, prepared: HashMap::new(), truths: HashMap::new(), _compiled: compiled })
        }

        /// A real function with a custom section naming `index`: a new module
        /// that computes the same thing, as a redeploy of changed code would be.
        pub fn new_module(&mut self, index: u64) -> (ModuleId, u64) {
            let mut wasm = self.originals[index as usize % self.originals.len()].clone();
            let mut payload = vec![b"nebula-sim".len() as u8];
            payload.extend_from_slice(b"nebula-sim");
            payload.extend_from_slice(index.to_string().as_bytes());
            wasm.push(0); // custom section
            leb128(payload.len() as u64, &mut wasm);
            wasm.extend_from_slice(&payload);
            let module = ModuleId::of_bytes(&wasm);
            let prepared = self.runtime.load(&module, &wasm).expect("a built guest function loads");
            self.prepared.insert(module, prepared);
            (module, wasm.len() as u64)
        }

        pub fn execute(&mut self, module: &ModuleId, input: &[u8]) -> Vec<u8> {
            let prepared = &self.prepared[module];
            let report =
                self.runtime.execute_blocking(prepared, &CallKey::new(module, input), input, &Limits::default());
            match report.outcome {
                Outcome::Success { stdout } => stdout,
                Outcome::Failed(error) => format!("failed: {}", error.kind()).into_bytes(),
            }
        }

        pub fn truth(&mut self, module: &ModuleId, input: &[u8]) -> Vec<u8> {
            let key = CallKey::new(module, input);
            if let Some(output) = self.truths.get(&key) {
                return output.clone();
            }
            let output = self.execute(module, input);
            self.truths.insert(key, output.clone());
            output
        }
    }

    fn leb128(mut value: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            out.push(if value == 0 { byte } else { byte | 0x80 });
            if value == 0 {
                return;
            }
        }
    }
}
