//! What a reference (a name, a full module hash or a unique hash prefix)
//! means here: the name records and the modules known to this node (held
//! here or by a peer). The core shares it with its shell as an immutable
//! snapshot, so the shell resolves calls (and answers the ones whose result it
//! holds in memory) without waiting for the core.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::Answer;
use crate::ids::{CallKey, MIN_PREFIX_LEN, ModuleId, looks_like_hex};
use crate::limits::Limits;
use crate::names::{NameRecord, validate_name};
use crate::outcome::{CacheStatus, CallError, ExecutionRecord};

/// Inputs above this size skip [`Resolver::answer_from_memory`]: on a miss
/// they would be hashed twice, which costs more than the shortcut saves.
pub const MEMORY_SHORTCUT_MAX_INPUT: usize = 64 << 10;

#[derive(Debug, Clone, Default)]
pub struct Resolver {
    names: BTreeMap<String, NameRecord>,
    /// Modules held here or known to be held by a peer.
    known: BTreeSet<ModuleId>,
}

impl Resolver {
    pub fn names(&self) -> impl Iterator<Item = &NameRecord> {
        self.names.values()
    }

    pub fn name(&self, name: &str) -> Option<&NameRecord> {
        self.names.get(name)
    }

    pub fn knows(&self, module: &ModuleId) -> bool {
        self.known.contains(module)
    }

    /// Resolves a name, a full module hash or a unique hash prefix to a
    /// module held here or known to be held by a peer.
    pub fn resolve(&self, reference: &str) -> Result<ModuleId, CallError> {
        let not_found = || CallError::ModuleNotFound { reference: reference.to_owned() };
        if let Ok(module) = reference.parse::<ModuleId>() {
            return self.knows(&module).then_some(module).ok_or_else(not_found);
        }
        if let Some(record) = self.names.get(reference) {
            return match self.knows(&record.module) {
                true => Ok(record.module),
                false => Err(CallError::ModuleNotFound { reference: record.module.to_hex() }),
            };
        }
        if looks_like_hex(reference) && reference.len() >= MIN_PREFIX_LEN {
            let matches: Vec<ModuleId> =
                self.known.iter().filter(|module| module.to_hex().starts_with(reference)).copied().collect();
            return match matches.as_slice() {
                [] => Err(not_found()),
                [only] => Ok(*only),
                _ => Err(CallError::AmbiguousPrefix { prefix: reference.to_owned(), matches }),
            };
        }
        if validate_name(reference).is_ok() {
            return Err(CallError::NameNotFound { name: reference.to_owned() });
        }
        Err(not_found())
    }

    /// As [`Resolver::resolve`], except that a full module hash, or a name's
    /// module, need not be known here: with modules placed on owners
    /// (`MeshConfig::module_owners`) a node hears of few modules, and the
    /// module's owners are asked for it. A hash prefix must still match a
    /// module known here.
    pub fn resolve_unheard(&self, reference: &str) -> Result<ModuleId, CallError> {
        self.resolve(reference).or_else(|error| {
            let named = self.names.get(reference).map(|record| record.module);
            named.or_else(|| reference.parse::<ModuleId>().ok()).ok_or(error)
        })
    }

    /// The answer to a call whose result `memory` already holds: the shell's
    /// in-memory results, looked up without I/O. The common case (a hot
    /// result) is answered by the shell with no flight, no lookup action and
    /// no trip to the core; the answer is the one
    /// [`Event::CallRequested`](super::Event::CallRequested) would give.
    /// `None` means: ask the core, which also produces every error.
    pub fn answer_from_memory(
        &self,
        reference: &str,
        input: &[u8],
        limits: &Limits,
        memory: impl FnOnce(&CallKey) -> Option<Arc<ExecutionRecord>>,
    ) -> Option<Answer> {
        if input.len() > MEMORY_SHORTCUT_MAX_INPUT || input.len() as u64 > limits.input_bytes {
            return None;
        }
        let module = self.resolve(reference).ok()?;
        let key = CallKey::new(&module, input);
        let record = memory(&key)?;
        Some(Answer { key, cache: CacheStatus::Hit, record })
    }

    /// Keeps a name record if it is valid and newer than ours; true if adopted.
    pub(super) fn merge_name(&mut self, record: NameRecord) -> bool {
        // A peer's record must name what a local publish could: anything else
        // (a hex prefix, markup, 60 KiB) would shadow modules or clutter pages.
        if validate_name(&record.name).is_err() {
            return false;
        }
        match self.names.get(&record.name) {
            Some(current) if !record.supersedes(current) => false,
            _ => {
                self.names.insert(record.name.clone(), record);
                true
            }
        }
    }

    /// The next version of `name` (1 for a new name), or why there is none.
    pub(super) fn next_version(&self, name: &str) -> Result<u64, CallError> {
        // Versions come from peers too: one may have claimed the last one.
        self.names.get(name).map_or(Some(1), |current| current.version.checked_add(1)).ok_or_else(|| {
            let reason = "its version counter is exhausted (a peer published the last version)".to_owned();
            CallError::InvalidName { name: name.to_owned(), reason }
        })
    }

    /// Records that `module` exists here or at a peer; true if it was new.
    pub(super) fn know(&mut self, module: ModuleId) -> bool {
        self.known.insert(module)
    }

    pub(super) fn names_digest(&self) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new();
        for record in self.names.values() {
            hasher.update(&crate::wire::encode(record));
        }
        *hasher.finalize().as_bytes()
    }
}
