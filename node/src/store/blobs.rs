//! Content-addressed files: `blobs/<blake3 hex>`. The hash is checked on every
//! read, so a damaged file is reported and never handed out. Peers get
//! modules a slice at a time, each slice read alone and checked against the
//! module's tree ([`BlobStore::slice`]); modules from peers arrive the same
//! way, straight to a temp file ([`BlobDownload`]).

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nebula_protocol::ModuleId;
use nebula_protocol::wire::{ModuleSlice, SliceIndex, slice_count};

use super::slices::{self, SliceError, SliceTree, SliceTrees};
use super::{remove_leftover_temp_files, sync_dir, temp_path, write_atomically};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0} is not stored")]
    Missing(ModuleId),
    #[error("blob {0} is corrupt: its bytes no longer match its hash")]
    Corrupt(ModuleId),
    #[error("blob {0} has no slice {1}")]
    NoSuchSlice(ModuleId, u64),
    #[error("blob store I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub struct BlobStore {
    dir: PathBuf,
    /// The trees that prove the slices of the blobs served to peers.
    trees: SliceTrees,
}

impl BlobStore {
    pub fn open(dir: PathBuf) -> anyhow::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        let removed = remove_leftover_temp_files(&dir)?;
        if removed > 0 {
            tracing::info!(removed, "removed partial blob writes left by a crash");
        }
        Ok(Self { dir, trees: SliceTrees::default() })
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
        self.trees.forget(&id);
        Ok(id)
    }

    fn open_file(&self, id: &ModuleId) -> Result<File, BlobError> {
        File::open(self.path(id)).map_err(|error| match error.kind() {
            ErrorKind::NotFound => BlobError::Missing(*id),
            _ => BlobError::Io(error),
        })
    }

    /// One slice of a stored blob and its proof, for a peer: only that slice
    /// is read, and it is checked against the blob's tree (built on the first
    /// slice asked for: one pass over the blob, which checks it whole).
    pub fn slice(&self, id: &ModuleId, wanted: SliceIndex) -> Result<ModuleSlice, BlobError> {
        let file = self.open_file(id)?;
        let size = file.metadata()?.len();
        let tree = self.trees.get_or_build(id, || {
            let (root, tree) = SliceTree::compute(&file, size)?;
            match root == *id {
                true => Ok(tree),
                false => Err(BlobError::Corrupt(*id)),
            }
        })?;
        let index = match wanted {
            SliceIndex::Last => slice_count(tree.size()) - 1,
            SliceIndex::At(index) => index,
        };
        slices::encode_slice(&file, &tree, index).map_err(|error| match error {
            SliceError::NoSuchSlice { index, .. } => BlobError::NoSuchSlice(*id, index),
            SliceError::Unverified(_) => BlobError::Corrupt(*id),
            SliceError::Io(error) => BlobError::Io(error),
        })
    }

    /// Starts receiving a module from peers, slice by slice (see [`BlobDownload`]).
    pub fn download(&self) -> BlobDownload {
        BlobDownload { dir: self.dir.clone(), state: Mutex::new(Download::NotStarted) }
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

    /// A stored blob mapped into memory (file-backed, not read) and verified.
    pub fn map(&self, id: &ModuleId) -> Result<memmap2::Mmap, BlobError> {
        let file = self.open_file(id)?;
        // SAFETY: blobs are only ever replaced by rename, never written in place.
        let bytes = unsafe { memmap2::Mmap::map(&file) }?;
        match ModuleId::of_bytes(&bytes) == *id {
            true => Ok(bytes),
            false => Err(BlobError::Corrupt(*id)),
        }
    }

    /// Checks a stored blob against its hash, reading it in pieces.
    pub fn verify(&self, id: &ModuleId) -> Result<(), BlobError> {
        let actual = super::hash_file(&self.path(id)).map_err(|error| match error.kind() {
            ErrorKind::NotFound => BlobError::Missing(*id),
            _ => BlobError::Io(error),
        })?;
        match ModuleId::from_bytes(*actual.as_bytes()) == *id {
            true => Ok(()),
            false => Err(BlobError::Corrupt(*id)),
        }
    }

    /// Starts writing a blob of unknown content: bytes go to a temp file
    /// beside the blobs while they are hashed, so a module of any size never
    /// sits whole in memory.
    pub fn stage(&self) -> std::io::Result<BlobWriter> {
        let temp = temp_path(&self.dir);
        let file = File::create(&temp)?;
        Ok(BlobWriter { staged: Staged { temp: Some(temp) }, file, hasher: blake3::Hasher::new(), size: 0 })
    }

    /// Stages bytes already in memory (a module a peer sent).
    pub fn stage_bytes(&self, bytes: &[u8]) -> std::io::Result<StagedBlob> {
        let mut writer = self.stage()?;
        writer.write(bytes)?;
        writer.finish()
    }

    /// Moves a staged blob under its hash; durable when this returns. A blob
    /// already stored intact is kept (and the staged copy dropped).
    pub fn commit(&self, mut staged: StagedBlob) -> std::io::Result<()> {
        match self.verify(&staged.id) {
            Ok(()) => return Ok(()),
            Err(BlobError::Corrupt(_)) => tracing::warn!(blob = %staged.id.short(), "replacing a corrupt blob"),
            Err(_) => {}
        }
        let temp = staged.staged.temp.take().expect("a staged blob has its file until committed");
        if let Err(error) = std::fs::rename(&temp, self.path(&staged.id)) {
            let _ = std::fs::remove_file(&temp);
            return Err(error);
        }
        match staged.tree.take() {
            Some(tree) => self.trees.insert(staged.id, tree),
            None => self.trees.forget(&staged.id),
        }
        sync_dir(&self.dir)
    }
}

/// Removes a temp file nobody committed.
struct Staged {
    temp: Option<PathBuf>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// A blob being written (see [`BlobStore::stage`]); dropped unfinished, its
/// temp file goes with it.
pub struct BlobWriter {
    staged: Staged,
    file: File,
    hasher: blake3::Hasher,
    size: u64,
}

impl BlobWriter {
    pub fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.file.write_all(bytes)?;
        self.hasher.update(bytes);
        self.size += bytes.len() as u64;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes the bytes to disk; the blob is then named by its hash.
    pub fn finish(self) -> std::io::Result<StagedBlob> {
        self.file.sync_all()?;
        Ok(StagedBlob {
            id: ModuleId::from_bytes(*self.hasher.finalize().as_bytes()),
            size: self.size,
            staged: self.staged,
            tree: None,
        })
    }
}

/// A module arriving from peers in verified slices, in any order: a temp
/// file beside the blobs (made by the first write), each slice written at
/// its place, so the module never sits whole in memory. Shared by the
/// threads that verify its slices; dropped unfinished, its temp file goes
/// with it.
pub struct BlobDownload {
    dir: PathBuf,
    state: Mutex<Download>,
}

enum Download {
    NotStarted,
    Writing {
        staged: Staged,
        file: File,
    },
    /// Handed over to be stored (or failed to be): late slices are not written.
    Finished,
}

impl BlobDownload {
    /// Writes bytes (of a verified slice) at `offset`. Once the download is
    /// finished, a late slice is not written: the module is complete.
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        let mut state = self.state.lock().expect("download lock");
        if matches!(*state, Download::NotStarted) {
            let temp = temp_path(&self.dir);
            let file = OpenOptions::new().read(true).write(true).create_new(true).open(&temp)?;
            *state = Download::Writing { staged: Staged { temp: Some(temp) }, file };
        }
        match &*state {
            Download::Writing { file, .. } => file.write_all_at(bytes, offset),
            _ => Ok(()),
        }
    }

    /// Every slice is in: the file is flushed to disk, read back a slice at
    /// a time and hashed (into the tree that serves it to other peers), and
    /// checked against `module` and its `size` before anything is stored.
    pub fn finish(&self, module: ModuleId, size: u64) -> Result<StagedBlob, BlobError> {
        let state = std::mem::replace(&mut *self.state.lock().expect("download lock"), Download::Finished);
        let Download::Writing { staged, file } = state else {
            return Err(BlobError::Io(std::io::Error::other("no slice of the module was written")));
        };
        file.sync_all()?;
        if file.metadata()?.len() != size {
            return Err(BlobError::Corrupt(module));
        }
        let mut reader = &file;
        reader.rewind()?;
        let (root, tree) = SliceTree::compute(reader, size)?;
        if root != module {
            return Err(BlobError::Corrupt(module));
        }
        Ok(StagedBlob { id: module, size, staged, tree: Some(tree) })
    }
}

/// A complete blob in a temp file, hashed, not yet stored under its hash.
pub struct StagedBlob {
    id: ModuleId,
    size: u64,
    staged: Staged,
    /// Its tree, when it was built on the way (a module from peers).
    tree: Option<SliceTree>,
}

impl StagedBlob {
    pub fn id(&self) -> ModuleId {
        self.id
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The bytes, mapped from the temp file (not read into memory).
    pub fn map(&self) -> std::io::Result<memmap2::Mmap> {
        let path: &Path = self.staged.temp.as_deref().expect("a staged blob has its file until committed");
        // SAFETY: the temp file is ours alone and never written after `finish`.
        unsafe { memmap2::Mmap::map(&File::open(path)?) }
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
    fn staged_blobs_are_hashed_as_written_and_stored_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let mut writer = store.stage().unwrap();
        writer.write(b"module ").unwrap();
        writer.write(b"bytes").unwrap();
        let staged = writer.finish().unwrap();
        assert_eq!((staged.id(), staged.size()), (ModuleId::of_bytes(b"module bytes"), 12));
        assert_eq!(&staged.map().unwrap()[..], b"module bytes");
        let id = staged.id();
        store.commit(staged).unwrap();
        assert_eq!(store.get(&id).unwrap(), b"module bytes");
        store.verify(&id).unwrap();
        std::fs::write(store.path(&id), b"module bytez").unwrap();
        assert!(matches!(store.verify(&id), Err(BlobError::Corrupt(_))));
        store.commit(store.stage_bytes(b"module bytes").unwrap()).unwrap();
        store.verify(&id).unwrap();

        // Abandoned or unfinished, a staged blob leaves nothing behind.
        let mut unfinished = store.stage().unwrap();
        unfinished.write(b"half").unwrap();
        drop(unfinished);
        drop(store.stage_bytes(b"never committed").unwrap());
        assert_eq!(std::fs::read_dir(dir.path().join("blobs")).unwrap().count(), 1);
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
