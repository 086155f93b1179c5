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
