//! The node's stores as the core task uses them: results (memory, then
//! disk), modules (compiled and stored, or read to serve a peer), names.
//! Everything here may block on the disk: call it on a blocking thread.

use std::collections::HashSet;
use std::sync::Arc;

use nebula_protocol::{CallError, CallKey, ExecutionRecord, ModuleId, NameRecord};

use super::{Shared, internal, unix_ms};
use crate::store::{BlobDownload, ModuleMeta, StagedBlob};

impl Shared {
    /// A stored result: from memory, or from the index (then kept in memory).
    pub(super) fn lookup_result(&self, key: &CallKey) -> Option<Arc<ExecutionRecord>> {
        if let Some(record) = self.memory.get(key) {
            return Some(record);
        }
        match self.index.result(key) {
            Ok(Some(record)) => {
                let record = Arc::new(record);
                self.memory.insert(*key, record.clone());
                Some(record)
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, key = %key.short(), "result index unreadable; executing instead");
                None
            }
        }
    }

    /// A module from peers, all its slices written to `download`: checked
    /// whole against its id, then stored like a deploy.
    pub(super) fn store_downloaded(
        &self,
        download: &BlobDownload,
        module: ModuleId,
        size: u64,
    ) -> Result<(), CallError> {
        let staged = download
            .finish(module, size)
            .map_err(|error| internal(&format!("checking the received module: {error}")))?;
        self.store_staged(staged)
    }

    /// Checks (without compiling), then stores blob and index entry, and
    /// queues the compile: the module can be called once it is compiled.
    pub(super) fn store_staged(&self, staged: StagedBlob) -> Result<(), CallError> {
        let (module, size) = (staged.id(), staged.size());
        let mapped = staged.map().map_err(|error| internal(&format!("reading the module: {error}")))?;
        let checked = self.runtime.check(&mapped)?;
        drop(mapped);
        self.content_types.lock().expect("content types lock").insert(module, checked.content_type);
        let storage_error = |error: String| internal(&format!("storing the module: {error}"));
        self.blobs.commit(staged).map_err(|error| storage_error(error.to_string()))?;
        let meta = ModuleMeta { size, deployed_unix_ms: unix_ms() };
        self.index.put_module(&module, &meta).map_err(|error| storage_error(format!("{error:#}")))?;
        self.runtime.compile_in_background(module, self.blobs.path(&module), size);
        Ok(())
    }

    pub(super) fn persist_name(&self, record: &NameRecord) -> Result<(), CallError> {
        self.index.put_name(record).map_err(|error| internal(&format!("storing the name: {error:#}")))
    }
}

/// The keys of the results stored on disk, by their first eight bytes: a
/// key not here is not stored, so a miss needs no trip to the disk (a
/// blocking read on another thread, then back to the core). A key here may
/// still be absent (two keys sharing eight bytes): then the disk says so.
/// About 16 bytes per stored result.
#[derive(Default)]
pub(super) struct StoredKeys(HashSet<u64>);

impl StoredKeys {
    pub(super) fn load(index: &crate::store::Index) -> anyhow::Result<Self> {
        Ok(Self(index.result_keys()?.iter().map(prefix).collect()))
    }

    pub(super) fn insert(&mut self, key: &CallKey) {
        self.0.insert(prefix(key));
    }

    pub(super) fn may_hold(&self, key: &CallKey) -> bool {
        self.0.contains(&prefix(key))
    }
}

fn prefix(key: &CallKey) -> u64 {
    u64::from_le_bytes(key.as_bytes()[..8].try_into().expect("a key has 32 bytes"))
}
