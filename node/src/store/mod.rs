//! One data directory per node: content-addressed blobs on disk, indexes
//! (modules, names) in an embedded database, cached results in a log.

mod blobs;
mod check;
mod index;
mod result_log;
mod result_writer;
mod slices;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

pub use blobs::{BlobDownload, BlobError, BlobStore, BlobWriter, StagedBlob};
pub use check::{CheckReport, Finding, check_data_dir};
pub use index::{Index, ModuleMeta};
pub use result_log::ResultLog;
pub use result_writer::ResultWriter;
pub use slices::{SliceError, SliceTree, verify_slice};

/// Writes `bytes` so that `path` holds either its old content or all of the
/// new one, whatever instant the process dies at: temp file, fsync, rename,
/// fsync of the directory.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        // A bare file name lives in the current directory.
        Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
        Some(parent) => parent,
        None => anyhow::bail!("{} has no parent directory", path.display()),
    };
    let temp = temp_path(dir);
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    Ok(result?)
}

/// BLAKE3 of a file, read in pieces (never whole into memory).
pub fn hash_file(path: &Path) -> std::io::Result<blake3::Hash> {
    let mut file = File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(hasher.finalize()),
            read => {
                hasher.update(&buffer[..read]);
            }
        }
    }
}

/// A fresh temp file name in `dir`, unique across threads and processes;
/// [`remove_leftover_temp_files`] removes what a crash leaves of it.
pub(crate) fn temp_path(dir: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".tmp-{}-{unique}", std::process::id()))
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes temp files a crash left behind in `dir`.
pub fn remove_leftover_temp_files(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(".tmp-") {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}
