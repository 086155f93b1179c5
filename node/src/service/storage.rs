//! The node's stores as the core task uses them: results (memory, then
//! disk), modules (compiled and stored, or read to serve a peer), names.
//! Everything here may block on the disk: call it on a blocking thread.

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
        match self.result_log.get(key) {
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
