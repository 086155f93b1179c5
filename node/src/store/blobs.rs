//! Content-addressed files: `blobs/<blake3 hex>`. The hash is checked on every
//! read, so a damaged file is reported and never handed out.

use std::io::ErrorKind;
use std::path::PathBuf;

use nebula_protocol::ModuleId;

use super::{remove_leftover_temp_files, write_atomically};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} is not stored")]
    Missing(ModuleId),
    #[error("blob {0} is corrupt: its bytes no longer match its hash")]
    Corrupt(ModuleId),
    #[error("blob store I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn open(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let removed = remove_leftover_temp_files(&dir)?;
        if removed > 0 {
            tracing::info!(removed, "removed partial blob writes left by a crash");
        }
        Ok(Self { dir })
    }

    pub fn path(&self, id: &ModuleId) -> PathBuf {
        self.dir.join(id.to_hex())
    }

    /// Stores `bytes` under their hash; durable when this returns.
    pub fn put(&self, bytes: &[u8]) -> anyhow::Result<ModuleId> {
        let id = ModuleId::of_bytes(bytes);
        match self.get(&id) {
            Ok(_) => return Ok(id),
            Err(BlobError::Corrupt(_)) => tracing::warn!(blob = %id.short(), "replacing a corrupt blob"),
            Err(_) => {}
        }
        write_atomically(&self.path(&id), bytes)?;
        Ok(id)
    }

    /// Reads and verifies a blob.
    pub fn get(&self, id: &ModuleId) -> Result<Vec<u8>, BlobError> {
        let bytes = std::fs::read(self.path(id)).map_err(|error| match error.kind() {
            ErrorKind::NotFound => BlobError::Missing(*id),
            _ => BlobError::Io(error),
        })?;
        if ModuleId::of_bytes(&bytes) != *id {
            return Err(BlobError::Corrupt(*id));
        }
        Ok(bytes)
    }

    pub fn contains(&self, id: &ModuleId) -> bool {
        self.path(id).is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_and_detect_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let id = store.put(b"module bytes").unwrap();
        assert_eq!(id, ModuleId::of_bytes(b"module bytes"));
        assert_eq!(store.get(&id).unwrap(), b"module bytes");
        assert!(matches!(store.get(&ModuleId::of_bytes(b"other")), Err(BlobError::Missing(_))));

        std::fs::write(store.path(&id), b"module bytez").unwrap();
        assert!(matches!(store.get(&id), Err(BlobError::Corrupt(_))));
        // Storing the right bytes again repairs it.
        store.put(b"module bytes").unwrap();
        assert_eq!(store.get(&id).unwrap(), b"module bytes");
    }

    #[test]
    fn leftover_temp_files_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join(".tmp-1-1"), b"half a write").unwrap();
        BlobStore::open(blobs.clone()).unwrap();
        assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
    }
}
