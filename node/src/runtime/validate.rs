//! Deploy-time checks: a module must be a WASI command that imports nothing
//! but WASI preview 1, so it cannot reach anything outside its call.

use wasmtime::{ExternType, Module};

pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Checks the interface of a compiled module; the error names the problem.
pub fn check_interface(module: &Module) -> Result<(), String> {
    for import in module.imports() {
        if import.module() != WASI_MODULE {
            return Err(format!(
                "imports '{}::{}', but only {WASI_MODULE} imports are allowed",
                import.module(),
                import.name()
            ));
        }
        if !matches!(import.ty(), ExternType::Func(_)) {
            return Err(format!("imports '{}::{}', which is not a function", import.module(), import.name()));
        }
    }
    match module.get_export("_start") {
        Some(ExternType::Func(func)) if func.params().len() == 0 && func.results().len() == 0 => Ok(()),
        Some(_) => Err("exports '_start' with the wrong type: it must take and return nothing".into()),
        None => Err("does not export '_start': build it as a WASI command (a binary, not a library)".into()),
    }
}
