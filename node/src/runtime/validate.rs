//! Deploy-time checks: a module must be a WASI command that imports nothing
//! but WASI, so it cannot reach anything outside its call. They read the
//! bytes only (no compiling), so a deploy is answered before compilation.

use std::collections::HashSet;

use nebula_protocol::manifest::{self, Bundle};
use wasmparser::{CompositeInnerType, ExternalKind, FuncType, Parser, Payload, TypeRef};
use wasmtime::{ExternType, Module};

pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// What a component may import: the WASI preview 2 interfaces Nebula links
/// (each held to the purity profile); anything else would fail to link.
const COMPONENT_IMPORT_PREFIXES: &[&str] =
    &["wasi:cli/", "wasi:io/", "wasi:clocks/", "wasi:random/", "wasi:filesystem/", "wasi:sockets/"];

/// The export that makes a component a command.
const COMPONENT_RUN_EXPORT: &str = "wasi:cli/run@0.2";

const WASM_MAGIC: &[u8] = b"\0asm";

/// The two kinds of program Nebula runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgramKind {
    /// A WASI preview 1 command module (`_start`).
    Module,
    /// A WASI preview 2 command component (`wasi:cli/run`).
    Component,
}

/// What the deploy checks found out about a module's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub kind: ProgramKind,
    pub content_type: Option<&'static str>,
}

/// Checks a blob without compiling it: a WebAssembly binary, a valid core
/// module (validated with the engine's features) importing only the WASI
/// preview 1 functions in `wasi_functions` and exporting `_start`, or a
/// component importing only WASI interfaces and exporting `wasi:cli/run`;
/// or a function bundle (`nebula_protocol::manifest`) carrying one of them.
pub fn check_program(
    engine: &wasmtime::Engine,
    wasi_functions: &HashSet<String>,
    blob: &[u8],
) -> Result<Checked, String> {
    if !manifest::is_bundle(blob) {
        return check_wasm(engine, wasi_functions, blob);
    }
    let bundle = Bundle::parse(blob).map_err(|error| error.to_string())?;
    let checked = check_wasm(engine, wasi_functions, bundle.module).map_err(|reason| format!("its module {reason}"))?;
    if checked.kind == ProgramKind::Component && !bundle.manifest.files.is_empty() {
        return Err("carries files, which only WASI preview 1 modules can read for now (deploy the component \
                    without --dir, or build it for wasm32-wasip1)"
            .into());
    }
    Ok(checked)
}

/// The program a stored blob (its hash checked) runs: the blob itself, or
/// the module its bundle carries.
pub fn program_bytes(blob: &[u8]) -> Result<&[u8], String> {
    match manifest::is_bundle(blob) {
        true => Bundle::read_stored(blob).map(|bundle| bundle.module).map_err(|error| error.to_string()),
        false => Ok(blob),
    }
}

/// [`check_program`] for wasm bytes (a bundle inside a bundle is refused here).
fn check_wasm(engine: &wasmtime::Engine, wasi_functions: &HashSet<String>, wasm: &[u8]) -> Result<Checked, String> {
    // Checked first because wasmtime would otherwise try to parse text as WAT.
    if !wasm.starts_with(WASM_MAGIC) {
        return Err("not a WebAssembly binary (it does not start with \\0asm)".into());
    }
    let content_type = declared_content_type(wasm)?;
    let kind = if Parser::is_component(wasm) {
        check_component(wasm)?;
        ProgramKind::Component
    } else {
        Module::validate(engine, wasm).map_err(|error| format!("{error:#}"))?;
        check_command_module(wasm, wasi_functions)?;
        ProgramKind::Module
    };
    Ok(Checked { kind, content_type })
}

/// Imports and `_start` of a validated core module, read from its sections.
fn check_command_module(wasm: &[u8], wasi_functions: &HashSet<String>) -> Result<(), String> {
    let mut types: Vec<Option<FuncType>> = Vec::new();
    let mut function_types: Vec<u32> = Vec::new();
    let mut start = None;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|error| error.to_string())? {
            Payload::TypeSection(reader) => {
                for group in reader {
                    for ty in group.map_err(|error| error.to_string())?.into_types() {
                        types.push(match ty.composite_type.inner {
                            CompositeInnerType::Func(func) => Some(func),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(|error| error.to_string())?;
                    let TypeRef::Func(ty) = import.ty else {
                        return Err(format!("imports '{}::{}', which is not a function", import.module, import.name));
                    };
                    if import.module != WASI_MODULE {
                        return Err(format!(
                            "imports '{}::{}', but only {WASI_MODULE} imports are allowed",
                            import.module, import.name
                        ));
                    }
                    if !wasi_functions.contains(import.name) {
                        return Err(format!(
                            "imports '{WASI_MODULE}::{}', which WASI preview 1 does not have",
                            import.name
                        ));
                    }
                    function_types.push(ty);
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    function_types.push(ty.map_err(|error| error.to_string())?);
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.map_err(|error| error.to_string())?;
                    if export.name == "_start" {
                        start = Some((export.kind, export.index));
                    }
                }
            }
            _ => {}
        }
    }
    let start_type = match start {
        None => return Err("does not export '_start': build it as a WASI command (a binary, not a library)".into()),
        Some((ExternalKind::Func, index)) => {
            function_types.get(index as usize).and_then(|ty| types.get(*ty as usize)).and_then(Option::as_ref)
        }
        Some(_) => None,
    };
    match start_type {
        Some(func) if func.params().is_empty() && func.results().is_empty() => Ok(()),
        _ => Err("exports '_start' with the wrong type: it must take and return nothing".into()),
    }
}

/// Imports and exports of a component's outermost level.
fn check_component(wasm: &[u8]) -> Result<(), String> {
    let mut depth = 0usize;
    let mut runs = false;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.map_err(|error| error.to_string())? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    let name = import.map_err(|error| error.to_string())?.name.name;
                    if !COMPONENT_IMPORT_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
                        return Err(format!(
                            "imports '{name}', but a component may import only WASI interfaces ({})",
                            COMPONENT_IMPORT_PREFIXES.join(", ")
                        ));
                    }
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    runs |= export.map_err(|error| error.to_string())?.name.name.starts_with(COMPONENT_RUN_EXPORT);
                }
            }
            _ => {}
        }
    }
    match runs {
        true => Ok(()),
        false => Err(format!(
            "is a component without '{COMPONENT_RUN_EXPORT}.x': build it as a WASI command (a binary, not a library)"
        )),
    }
}

/// Checks the interface of a compiled module (also checked on the bytes at
/// deploy; this holds for modules compiled before those checks existed).
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

/// The custom section in which a module declares the content type of its
/// answers. Part of the module's bytes, so part of its hash: every node
/// serves a module's answers the same way, and no call can change it.
pub const CONTENT_TYPE_SECTION: &str = "nebula:content-type";

/// The content types a module may declare. Kept short on purpose: every one
/// of them is served with a CSP that forbids scripts, and `nosniff`.
pub const ALLOWED_CONTENT_TYPES: &[&str] = &[
    "text/plain; charset=utf-8",
    "text/html; charset=utf-8",
    "text/csv; charset=utf-8",
    "application/json",
    "image/svg+xml",
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/octet-stream",
];

/// The content type `wasm` declares in its `nebula:content-type` section
/// (None if it declares none); an error if the declaration is not one of
/// [`ALLOWED_CONTENT_TYPES`] or appears twice.
pub fn declared_content_type(wasm: &[u8]) -> Result<Option<&'static str>, String> {
    let mut found = None;
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let payload = payload.map_err(|error| format!("{error}"))?;
        let wasmparser::Payload::CustomSection(section) = payload else { continue };
        if section.name() != CONTENT_TYPE_SECTION {
            continue;
        }
        if found.is_some() {
            return Err(format!("declares its content type twice ({CONTENT_TYPE_SECTION} sections)"));
        }
        let declared = std::str::from_utf8(section.data()).unwrap_or("").trim().to_ascii_lowercase();
        let allowed = ALLOWED_CONTENT_TYPES.iter().find(|allowed| **allowed == declared).ok_or_else(|| {
            format!(
                "declares the content type '{}', which is not one of: {}",
                declared.escape_default(),
                ALLOWED_CONTENT_TYPES.join(", ")
            )
        })?;
        found = Some(*allowed);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(sections: &[&str]) -> Vec<u8> {
        let custom: String =
            sections.iter().map(|data| format!("(@custom \"{CONTENT_TYPE_SECTION}\" \"{data}\")")).collect();
        wat::parse_str(format!("(module {custom} (func (export \"_start\")))")).unwrap()
    }

    #[test]
    fn reads_the_declared_content_type() {
        assert_eq!(declared_content_type(&module(&[])), Ok(None));
        assert_eq!(declared_content_type(&module(&["text/html; charset=utf-8"])), Ok(Some("text/html; charset=utf-8")));
        assert_eq!(declared_content_type(&module(&[" Application/JSON\\0a"])), Ok(Some("application/json")));
    }

    #[test]
    fn rejects_unlisted_or_repeated_declarations() {
        let error = declared_content_type(&module(&["application/javascript"])).unwrap_err();
        assert!(error.contains("'application/javascript'"), "{error}");
        assert!(declared_content_type(&module(&["text/html\\0d\\0aSet-Cookie: x=1"])).is_err());
        assert!(declared_content_type(&module(&["text/plain; charset=utf-8", "text/plain; charset=utf-8"])).is_err());
    }
}
