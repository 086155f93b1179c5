//! Modules as they travel between nodes: slices of a stored blob with their
//! proofs, and the check of a slice a peer sent. BLAKE3 verified streaming,
//! as bao-tree (n0's, used by iroh-blobs) encodes it: the BLAKE3 tree of a
//! module, cut into chunk groups of one slice (`wire::SLICE_BYTES`). Its root is
//! the plain BLAKE3 hash of the bytes, so the module id is the root and
//! nothing else needs to be trusted.
//!
//! The tree a holder needs to prove any slice (the "outboard") keeps one
//! pair of hashes per slice: 64 bytes per MiB, 6.4 KB for a 100 MiB module
//! (bao's default of 1 KiB groups would keep 6.25 MiB). It is built from the
//! blob in one pass (which verifies the blob too) the first time a slice is
//! asked for, or while a fetched module is checked before it is stored, and
//! kept in memory ([`SliceTrees`]): too small to be worth a file beside the
//! blob, and after a restart one pass per module served rebuilds it.

use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::{Arc, Mutex};

use bao_tree::io::outboard::PreOrderMemOutboard;
use bao_tree::io::sync::{DecodeResponseIter, Outboard};
use bao_tree::io::{BaoContentItem, Leaf};
use bao_tree::{BaoTree, BlockSize, ChunkNum, ChunkRanges};
use nebula_protocol::ModuleId;
use nebula_protocol::wire::{ModuleSlice, SLICE_CHUNK_LOG, slice_count, slice_range};

/// One slice per chunk group.
const BLOCK_SIZE: BlockSize = BlockSize::from_chunk_log(SLICE_CHUNK_LOG);

/// A module's BLAKE3 tree down to its slices: what proves any of them.
#[derive(Debug)]
pub struct SliceTree(PreOrderMemOutboard);

impl SliceTree {
    /// Hashes a module of `size` bytes read from `data` (a slice at a
    /// time) into its tree; the root is the module's id.
    pub fn compute(data: impl Read, size: u64) -> io::Result<(ModuleId, SliceTree)> {
        let tree = BaoTree::new(size, BLOCK_SIZE);
        let pairs = usize::try_from(tree.outboard_size()).map_err(io::Error::other)?;
        let mut outboard = PreOrderMemOutboard { root: blake3::Hash::from([0; 32]), tree, data: vec![0u8; pairs] };
        outboard.root = bao_tree::io::sync::outboard(data, tree, &mut outboard)?;
        Ok((ModuleId::from_bytes(*outboard.root.as_bytes()), SliceTree(outboard)))
    }

    pub fn size(&self) -> u64 {
        self.0.tree.size()
    }

    pub fn root(&self) -> ModuleId {
        ModuleId::from_bytes(*self.0.root().as_bytes())
    }

    /// Bytes this tree keeps in memory.
    pub fn bytes(&self) -> usize {
        self.0.data.len()
    }
}

/// Why a slice could not be served, or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    #[error("a module of {size} bytes has no slice {index}")]
    NoSuchSlice { size: u64, index: u64 },
    #[error("the slice does not verify against the module: {0}")]
    Unverified(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The BLAKE3 chunks slice `index` covers.
fn chunks_of(index: u64) -> ChunkRanges {
    let start = index << SLICE_CHUNK_LOG;
    ChunkRanges::from(ChunkNum(start)..ChunkNum(start.saturating_add(1 << SLICE_CHUNK_LOG)))
}

/// Slice `index` of the module in `data` (positioned reads: only the slice is
/// read), with its proof. Each slice is checked against the tree as it is
/// read, so a blob damaged on disk is never served.
pub fn encode_slice(data: &std::fs::File, tree: &SliceTree, index: u64) -> Result<ModuleSlice, SliceError> {
    let size = tree.size();
    let Some(range) = slice_range(size, index) else { return Err(SliceError::NoSuchSlice { size, index }) };
    let depth = 64 - slice_count(size).leading_zeros() as usize;
    let mut encoded = Vec::with_capacity((range.end - range.start) as usize + 64 * depth);
    bao_tree::io::sync::encode_ranges_validated(data, &tree.0, &chunks_of(index), &mut encoded)
        .map_err(|error| SliceError::Unverified(error.to_string()))?;
    Ok(ModuleSlice { size, index, encoded })
}

/// Checks a peer's slice of `module`: its hashes lead from the module id
/// down to its bytes, for a module of the size it claims, and it holds the
/// whole slice, nothing more. Returns where its bytes go and the bytes.
pub fn verify_slice(module: &ModuleId, slice: &ModuleSlice) -> Result<(u64, bytes::Bytes), SliceError> {
    let (size, index) = (slice.size, slice.index);
    let Some(range) = slice_range(size, index) else { return Err(SliceError::NoSuchSlice { size, index }) };
    let root = blake3::Hash::from_bytes(*module.as_bytes());
    let ranges = chunks_of(index);
    let mut encoded = slice.encoded.as_slice();
    let tree = BaoTree::new(size, BLOCK_SIZE);
    let mut leaf = None;
    for item in DecodeResponseIter::new(root, tree, &mut encoded, &ranges) {
        match item.map_err(|error| SliceError::Unverified(error.to_string()))? {
            BaoContentItem::Parent(_) => {}
            BaoContentItem::Leaf(Leaf { offset, data }) => {
                if leaf.is_some() {
                    return Err(SliceError::Unverified("more than one slice".into()));
                }
                leaf = Some((offset, data));
            }
        }
    }
    let unverified = |what: &str| Err(SliceError::Unverified(what.into()));
    if !encoded.is_empty() {
        return unverified(&format!("{} bytes after the slice", encoded.len()));
    }
    match leaf {
        Some((offset, data)) if offset == range.start && data.len() as u64 == range.end - range.start => {
            Ok((offset, data))
        }
        Some(_) => unverified("a slice of another length"),
        None => unverified("no bytes"),
    }
}

/// A module's tree once built; locked while it is built.
type TreeCell = Arc<Mutex<Option<Arc<SliceTree>>>>;

/// The trees of the modules served from this node, built on first use.
#[derive(Default)]
pub struct SliceTrees {
    trees: Mutex<HashMap<ModuleId, TreeCell>>,
}

impl SliceTrees {
    /// The tree of `module`, built by `build` if it is not known yet (one
    /// build at a time per module; a failed build is not kept, so a repaired
    /// blob can be served again).
    pub fn get_or_build<E>(
        &self,
        module: &ModuleId,
        build: impl FnOnce() -> Result<SliceTree, E>,
    ) -> Result<Arc<SliceTree>, E> {
        let cell = self.trees.lock().expect("slice trees lock").entry(*module).or_default().clone();
        let mut tree = cell.lock().expect("slice tree lock");
        if let Some(tree) = tree.as_ref() {
            return Ok(tree.clone());
        }
        let built = Arc::new(build()?);
        *tree = Some(built.clone());
        Ok(built)
    }

    pub fn insert(&self, module: ModuleId, tree: SliceTree) {
        let cell = Arc::new(Mutex::new(Some(Arc::new(tree))));
        self.trees.lock().expect("slice trees lock").insert(module, cell);
    }

    /// Forgets `module`'s tree (its blob was replaced).
    pub fn forget(&self, module: &ModuleId) {
        self.trees.lock().expect("slice trees lock").remove(module);
    }
}

#[cfg(test)]
mod tests {
    use nebula_protocol::wire::SLICE_BYTES;

    use super::*;

    fn module_bytes(size: usize) -> Vec<u8> {
        (0..size).map(|i| (i * 7 + i / 1000) as u8).collect()
    }

    fn file_of(bytes: &[u8]) -> (tempfile::TempDir, std::fs::File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, bytes).unwrap();
        (dir, std::fs::File::open(path).unwrap())
    }

    #[test]
    fn the_tree_root_is_the_module_id_and_the_tree_is_small() {
        for size in [0, 1, 1024, SLICE_BYTES as usize, SLICE_BYTES as usize + 1, 3 * SLICE_BYTES as usize + 17] {
            let bytes = module_bytes(size);
            let (root, tree) = SliceTree::compute(&bytes[..], size as u64).unwrap();
            assert_eq!(root, ModuleId::of_bytes(&bytes), "size {size}");
            assert_eq!(tree.root(), root);
            assert_eq!(tree.bytes() as u64, 64 * (slice_count(size as u64) - 1), "one hash pair per slice but one");
        }
    }

    #[test]
    fn every_slice_round_trips_and_covers_the_module() {
        let size = 3 * SLICE_BYTES as usize + 17;
        let bytes = module_bytes(size);
        let module = ModuleId::of_bytes(&bytes);
        let (_dir, file) = file_of(&bytes);
        let (_, tree) = SliceTree::compute(&bytes[..], size as u64).unwrap();
        let mut rebuilt = vec![0u8; size];
        for index in 0..slice_count(size as u64) {
            let slice = encode_slice(&file, &tree, index).unwrap();
            assert_eq!((slice.size, slice.index), (size as u64, index));
            assert!(slice.encoded.len() as u64 <= SLICE_BYTES + 64 * 3, "a slice and a few hashes");
            let (offset, data) = verify_slice(&module, &slice).unwrap();
            rebuilt[offset as usize..offset as usize + data.len()].copy_from_slice(&data);
        }
        assert_eq!(rebuilt, bytes);
        assert!(matches!(encode_slice(&file, &tree, 4), Err(SliceError::NoSuchSlice { .. })));
    }

    #[test]
    fn a_slice_altered_in_any_way_does_not_verify() {
        let size = 3 * SLICE_BYTES as usize + 17;
        let bytes = module_bytes(size);
        let module = ModuleId::of_bytes(&bytes);
        let (_dir, file) = file_of(&bytes);
        let (_, tree) = SliceTree::compute(&bytes[..], size as u64).unwrap();
        let good = encode_slice(&file, &tree, 1).unwrap();
        let fails = |slice: ModuleSlice| verify_slice(&module, &slice).is_err();
        // A flipped byte in the data, or in a hash of the proof.
        for at in [0, 64, 200, good.encoded.len() - 1] {
            let mut bad = good.clone();
            bad.encoded[at] ^= 1;
            assert!(fails(bad), "a flip at {at} went unnoticed");
        }
        // Another module, another place, another size, cut short, or padded.
        assert!(verify_slice(&ModuleId::of_bytes(b"other"), &good).is_err());
        assert!(fails(ModuleSlice { index: 2, ..good.clone() }));
        assert!(fails(ModuleSlice { size: u64::MAX, ..good.clone() }));
        assert!(fails(ModuleSlice { size: 2 * SLICE_BYTES, ..good.clone() }), "as the last slice");
        // A slice in the middle proves nothing of the size beyond the tree's
        // shape: it verifies for a size of the same shape too. Hence the core
        // asks for the last slice first, and holds every other to its size.
        assert!(verify_slice(&module, &ModuleSlice { size: size as u64 + 1, ..good.clone() }).is_ok());
        assert!(fails(ModuleSlice { index: 9, ..good.clone() }));
        let mut short = good.clone();
        short.encoded.truncate(good.encoded.len() - 1);
        assert!(fails(short));
        let mut long = good.clone();
        long.encoded.push(0);
        assert!(fails(long));
        // The last slice proves the size: it does not verify for any other.
        let last = encode_slice(&file, &tree, 3).unwrap();
        assert!(verify_slice(&module, &last).is_ok());
        for other in [size as u64 - 1, size as u64 + 1, 4 * SLICE_BYTES] {
            assert!(fails(ModuleSlice { size: other, ..last.clone() }), "size {other} passed");
        }
        // A damaged blob is not served.
        let mut damaged = bytes.clone();
        damaged[SLICE_BYTES as usize + 5] ^= 1;
        let (_dir, damaged_file) = file_of(&damaged);
        assert!(encode_slice(&damaged_file, &tree, 1).is_err());
        assert!(encode_slice(&damaged_file, &tree, 0).is_ok(), "the other slices still are");
    }
}
