//! The compiled-code cache on local disk: native code this node (or its
//! compile worker) produced, keyed by module hash and engine fingerprint.
//! Each entry is two files: the code, and its BLAKE3 beside it, written
//! after it; an entry without a matching checksum is compiled again, never
//! trusted as native code. Code is loaded by mapping the file, so a loaded
//! module's code is file-backed memory the kernel can drop and re-read.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nebula_protocol::ModuleId;
use wasmtime::component::Component;
use wasmtime::{Engine, Module, Precompiled};

/// Compiled code ready to be linked.
pub enum Artifact {
    Module(Module),
    Component(Component),
}

pub struct CompiledCache {
    dir: PathBuf,
    /// Compiled code is only valid for an identical engine build and config.
    fingerprint: String,
    /// Entries whose checksum was verified since this process started: a
    /// module evicted from memory is reloaded without hashing it again.
    verified: Mutex<HashSet<ModuleId>>,
}

impl CompiledCache {
    /// Opens the cache of a node starting up.
    pub fn open(dir: PathBuf, engine: &Engine) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        // A kill while caching compiled code leaves its temp file; nothing else would remove it.
        let removed = crate::store::remove_leftover_temp_files(&dir)?;
        if removed > 0 {
            tracing::info!(removed, "removed partial compiled-code writes left by a crash");
        }
        Ok(Self::attach(dir, engine))
    }

    /// The cache of a running node, as its compile worker sees it (it must
    /// not remove the node's writes in progress).
    pub fn attach(dir: PathBuf, engine: &Engine) -> Self {
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self { dir, fingerprint: format!("{:016x}", hasher.finish()), verified: Mutex::default() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn code_path(&self, module: &ModuleId) -> PathBuf {
        self.dir.join(format!("{}-{}.code", module.to_hex(), self.fingerprint))
    }

    fn checksum_path(&self, module: &ModuleId) -> PathBuf {
        self.dir.join(format!("{}-{}.b3", module.to_hex(), self.fingerprint))
    }

    /// True if an entry is complete (not necessarily verified yet).
    pub fn contains(&self, module: &ModuleId) -> bool {
        self.checksum_path(module).is_file() && self.code_path(module).is_file()
    }

    /// Stores compiled code: the code first, then its checksum, each durably.
    pub fn store(&self, module: &ModuleId, code: &[u8]) -> anyhow::Result<()> {
        crate::store::write_atomically(&self.code_path(module), code)?;
        crate::store::write_atomically(&self.checksum_path(module), blake3::hash(code).as_bytes())?;
        self.verified.lock().expect("verified lock").insert(*module);
        Ok(())
    }

    /// The compiled code of `module` and its size in bytes, if a complete and
    /// intact entry exists; a damaged entry is removed (and so compiled again).
    pub fn load(&self, engine: &Engine, module: &ModuleId) -> Option<(Artifact, u64)> {
        if !self.contains(module) {
            return None;
        }
        let path = self.code_path(module);
        let verified = self.verified.lock().expect("verified lock").contains(module);
        if !verified && !self.checksum_matches(module) {
            tracing::warn!(module = %module.short(), "compiled-code cache entry is damaged; compiling again");
            self.remove(module);
            return None;
        }
        let size = std::fs::metadata(&path).ok()?.len();
        // SAFETY: the file was produced by `precompile_*` of this very engine
        // configuration (its name carries the fingerprint, and wasmtime checks
        // the configuration again), written by this node only, verified
        // against its checksum, and never modified in place (only replaced).
        let loaded = match Engine::detect_precompiled_file(&path) {
            Ok(Some(Precompiled::Module)) => unsafe { Module::deserialize_file(engine, &path) }.map(Artifact::Module),
            Ok(Some(Precompiled::Component)) => {
                unsafe { Component::deserialize_file(engine, &path) }.map(Artifact::Component)
            }
            Ok(None) => Err(wasmtime::format_err!("not compiled code")),
            Err(error) => Err(error),
        };
        match loaded {
            Ok(artifact) => {
                self.verified.lock().expect("verified lock").insert(*module);
                Some((artifact, size))
            }
            Err(error) => {
                tracing::warn!(module = %module.short(), %error, "compiled code does not load; compiling again");
                self.remove(module);
                None
            }
        }
    }

    fn checksum_matches(&self, module: &ModuleId) -> bool {
        let Ok(expected) = std::fs::read(self.checksum_path(module)) else { return false };
        crate::store::hash_file(&self.code_path(module))
            .is_ok_and(|actual| actual.as_bytes().as_slice() == expected.as_slice())
    }

    fn remove(&self, module: &ModuleId) {
        self.verified.lock().expect("verified lock").remove(module);
        let _ = std::fs::remove_file(self.checksum_path(module));
        let _ = std::fs::remove_file(self.code_path(module));
    }
}
