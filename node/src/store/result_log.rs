//! Cached results on disk: an append-only log in segment files
//! (`results/00000001.log`, ...), and in memory, for each key, where its
//! record lies.
//!
//! Results are written once, never changed, and keyed by random hashes.
//! Inserting them into a B-tree (redb, until this log) copied and
//! checksummed a page per result at each commit: 15% of the CPU of a node
//! serving uncached calls, and more as the store grew. Appending a batch is
//! one write.
//!
//! A record is `length (u32 LE) | CRC-32 of key and body (u32 LE) | key (32
//! bytes) | body`, the body a postcard `ExecutionRecord`; `length` counts key
//! and body. A segment is synced before the next one starts, so a crash can
//! only tear records at the end of the newest: opening cuts them off. Every
//! read checks the record's checksum and key, so a damaged record is only a
//! miss (the call is computed again) and `nebula fsck` reports it.
//!
//! When the segments hold more than the disk budget, the oldest is deleted
//! with its results.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use nebula_protocol::{CallKey, ExecutionRecord};

const HEADER: usize = 8;
const KEY: usize = 32;
/// A segment is closed once it holds this much: the unit of eviction.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// How far a segment's records check out, from its start.
pub struct SegmentScan {
    /// Where the intact records end: the file's length unless it is damaged.
    pub intact_bytes: u64,
    pub file_bytes: u64,
}

#[derive(Clone, Copy)]
struct Location {
    segment: u32,
    offset: u64,
    /// Key and body.
    length: u32,
}

pub struct ResultLog {
    dir: PathBuf,
    segment_bytes: u64,
    budget_bytes: u64,
    /// Only the result writer appends; readers never wait on its writes.
    appender: Mutex<Appender>,
    shelf: RwLock<Shelf>,
}

struct Appender {
    segment: u32,
    file: File,
    bytes: u64,
    /// Reused for each batch's records.
    buffer: Vec<u8>,
}

/// What readers look at.
#[derive(Default)]
struct Shelf {
    /// By the key's first eight bytes (keys are BLAKE3 hashes, so these are
    /// uniform); the record's own key settles the rare collision.
    locations: HashMap<u64, Location>,
    segments: BTreeMap<u32, Segment>,
}

impl Shelf {
    fn bytes(&self) -> u64 {
        self.segments.values().map(|segment| segment.bytes).sum()
    }
}

struct Segment {
    file: Arc<File>,
    bytes: u64,
}

impl ResultLog {
    /// Opens (or creates) the log in `dir`, keeping at most about
    /// `budget_bytes` on disk.
    pub fn open(dir: &Path, budget_bytes: u64) -> anyhow::Result<Self> {
        Self::open_with_segments(dir, budget_bytes, SEGMENT_BYTES)
    }

    fn open_with_segments(dir: &Path, budget_bytes: u64, segment_bytes: u64) -> anyhow::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut shelf = Shelf::default();
        let ids = segment_ids(dir)?;
        for (position, &id) in ids.iter().enumerate() {
            let path = segment_path(dir, id);
            let scan = scan_segment(&path, |key, offset, record| {
                let length = (record.len() - HEADER) as u32;
                shelf.locations.insert(key_prefix(&key), Location { segment: id, offset, length });
            })?;
            let newest = position + 1 == ids.len();
            if scan.intact_bytes < scan.file_bytes {
                tracing::warn!(
                    segment = %path.display(),
                    damaged_bytes = scan.file_bytes - scan.intact_bytes,
                    "cached results: {}",
                    if newest { "cutting off records a crash tore" } else { "skipping damaged records" }
                );
                if newest {
                    OpenOptions::new().write(true).open(&path)?.set_len(scan.intact_bytes)?;
                }
            }
            let bytes = if newest { scan.intact_bytes } else { scan.file_bytes };
            shelf.segments.insert(id, Segment { file: Arc::new(File::open(&path)?), bytes });
        }
        let appender = match shelf.segments.last_key_value() {
            Some((&id, segment)) if segment.bytes < segment_bytes => Appender {
                segment: id,
                file: OpenOptions::new().append(true).open(segment_path(dir, id))?,
                bytes: segment.bytes,
                buffer: Vec::new(),
            },
            last => {
                let (appender, segment) = start_segment(dir, last.map_or(1, |(&id, _)| id + 1))?;
                shelf.segments.insert(appender.segment, segment);
                appender
            }
        };
        let log = Self {
            dir: dir.to_owned(),
            segment_bytes,
            budget_bytes,
            appender: Mutex::new(appender),
            shelf: RwLock::new(shelf),
        };
        log.keep_within_budget()?;
        Ok(log)
    }

    /// Appends results; durable at the next [`ResultLog::sync`]. A record
    /// that cannot be encoded is left out; a failed write leaves the log as
    /// it was.
    pub fn append(&self, results: &[(CallKey, Arc<ExecutionRecord>)]) -> anyhow::Result<()> {
        let mut appender = self.appender.lock().expect("result log appender lock");
        let appender = &mut *appender;
        appender.buffer.clear();
        let mut placed = Vec::with_capacity(results.len());
        for (key, record) in results {
            let start = appender.buffer.len();
            match encode_record(&mut appender.buffer, key, record) {
                Ok(length) => placed.push((key_prefix(key), appender.bytes + start as u64, length)),
                Err(error) => {
                    appender.buffer.truncate(start);
                    tracing::warn!(%error, key = %key.short(), "not storing a result that cannot be encoded");
                }
            }
        }
        if let Err(error) = appender.file.write_all(&appender.buffer) {
            // Cut off what part of the batch reached the file, so later
            // batches do not follow a torn record.
            let _ = appender.file.set_len(appender.bytes);
            return Err(error.into());
        }
        appender.bytes += appender.buffer.len() as u64;
        let segment = appender.segment;
        {
            let mut shelf = self.shelf.write().expect("result log shelf lock");
            for (key_prefix, offset, length) in placed {
                shelf.locations.insert(key_prefix, Location { segment, offset, length });
            }
            if let Some(current) = shelf.segments.get_mut(&segment) {
                current.bytes = appender.bytes;
            }
        }
        if appender.bytes >= self.segment_bytes {
            // Synced before the next starts: only the newest segment can be torn.
            appender.file.sync_data()?;
            let (next, next_segment) = start_segment(&self.dir, segment + 1)?;
            *appender = next;
            self.shelf.write().expect("result log shelf lock").segments.insert(appender.segment, next_segment);
            self.keep_within_budget()?;
        }
        Ok(())
    }

    /// Makes every appended result durable.
    pub fn sync(&self) -> anyhow::Result<()> {
        Ok(self.appender.lock().expect("result log appender lock").file.sync_data()?)
    }

    /// A stored result; a damaged record counts as absent.
    pub fn get(&self, key: &CallKey) -> anyhow::Result<Option<ExecutionRecord>> {
        let (location, file) = {
            let shelf = self.shelf.read().expect("result log shelf lock");
            let Some(&location) = shelf.locations.get(&key_prefix(key)) else { return Ok(None) };
            let Some(segment) = shelf.segments.get(&location.segment) else { return Ok(None) };
            (location, segment.file.clone())
        };
        let mut record = vec![0; HEADER + location.length as usize];
        file.read_exact_at(&mut record, location.offset)?;
        match decode_record(&record) {
            Ok((stored_key, result)) if stored_key == *key => Ok(Some(result)),
            // Another key sharing the first eight bytes.
            Ok(_) => Ok(None),
            Err(error) => {
                tracing::warn!(%error, key = %key.short(), "ignoring a damaged cached result");
                Ok(None)
            }
        }
    }

    /// False if `key` is surely not stored; true may still be a miss (a key
    /// sharing its first eight bytes).
    pub fn may_hold(&self, key: &CallKey) -> bool {
        self.shelf.read().expect("result log shelf lock").locations.contains_key(&key_prefix(key))
    }

    pub fn len(&self) -> usize {
        self.shelf.read().expect("result log shelf lock").locations.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of all segments.
    pub fn disk_bytes(&self) -> u64 {
        self.shelf.read().expect("result log shelf lock").bytes()
    }

    /// Deletes the oldest segments, and forgets their results, while the log
    /// is over budget; never the one being appended to.
    fn keep_within_budget(&self) -> anyhow::Result<()> {
        let mut shelf = self.shelf.write().expect("result log shelf lock");
        while shelf.segments.len() > 1 && shelf.bytes() > self.budget_bytes {
            let (oldest, _) = shelf.segments.pop_first().expect("more than one segment");
            shelf.locations.retain(|_, location| location.segment != oldest);
            // Readers holding the file still read it to the end.
            fs::remove_file(segment_path(&self.dir, oldest))?;
            tracing::info!(segment = oldest, "cached results over their disk budget: dropped the oldest segment");
        }
        Ok(())
    }
}

/// The first eight bytes of a key: how the log names a result in memory.
fn key_prefix(key: &CallKey) -> u64 {
    u64::from_le_bytes(key.as_bytes()[..8].try_into().expect("a key has 32 bytes"))
}

/// Reads a segment from its start, checking each record, until its end or
/// the first record that is torn or damaged; `visit` sees each intact
/// record whole, with its key and where it lies.
pub fn scan_segment(path: &Path, mut visit: impl FnMut(CallKey, u64, &[u8])) -> io::Result<SegmentScan> {
    let file = File::open(path)?;
    let file_bytes = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut offset = 0u64;
    let mut record = Vec::new();
    while file_bytes - offset >= HEADER as u64 {
        record.resize(HEADER, 0);
        reader.read_exact(&mut record)?;
        let length = u32::from_le_bytes(record[..4].try_into().expect("four bytes"));
        if (length as usize) < KEY || u64::from(length) > file_bytes - offset - HEADER as u64 {
            break;
        }
        record.resize(HEADER + length as usize, 0);
        reader.read_exact(&mut record[HEADER..])?;
        if !checksum_holds(&record) {
            break;
        }
        visit(record_key(&record), offset, &record);
        offset += (HEADER + length as usize) as u64;
    }
    Ok(SegmentScan { intact_bytes: offset, file_bytes })
}

/// The segments in `dir`, oldest first.
pub fn segment_ids(dir: &Path) -> io::Result<Vec<u32>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(id) = name.strip_suffix(".log").and_then(|stem| stem.parse().ok()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

pub fn segment_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{id:08}.log"))
}

/// A record read whole: its key and result, if its checksum holds.
pub fn decode_record(record: &[u8]) -> anyhow::Result<(CallKey, ExecutionRecord)> {
    anyhow::ensure!(record.len() >= HEADER + KEY, "a record of {} bytes is too short", record.len());
    let length = u32::from_le_bytes(record[..4].try_into().expect("four bytes")) as usize;
    anyhow::ensure!(HEADER + length == record.len(), "the record's length does not match where it lies");
    anyhow::ensure!(checksum_holds(record), "the record's checksum does not hold");
    Ok((record_key(record), postcard::from_bytes(&record[HEADER + KEY..])?))
}

fn encode_record(buffer: &mut Vec<u8>, key: &CallKey, record: &ExecutionRecord) -> anyhow::Result<u32> {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; HEADER]);
    buffer.extend_from_slice(key.as_bytes());
    postcard::to_io(record, &mut *buffer)?;
    let length = u32::try_from(buffer.len() - start - HEADER)
        .map_err(|_| anyhow::anyhow!("a result of {} bytes is too large to store", buffer.len() - start))?;
    let checksum = crc32fast::hash(&buffer[start + HEADER..]);
    buffer[start..start + 4].copy_from_slice(&length.to_le_bytes());
    buffer[start + 4..start + HEADER].copy_from_slice(&checksum.to_le_bytes());
    Ok(length)
}

fn checksum_holds(record: &[u8]) -> bool {
    let stored = u32::from_le_bytes(record[4..HEADER].try_into().expect("four bytes"));
    crc32fast::hash(&record[HEADER..]) == stored
}

fn record_key(record: &[u8]) -> CallKey {
    CallKey::from_bytes(record[HEADER..HEADER + KEY].try_into().expect("32 bytes"))
}

/// Creates segment `id`, durable in the directory, to append to.
fn start_segment(dir: &Path, id: u32) -> anyhow::Result<(Appender, Segment)> {
    let path = segment_path(dir, id);
    let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
    super::sync_dir(dir)?;
    let segment = Segment { file: Arc::new(File::open(&path)?), bytes: 0 };
    Ok((Appender { segment: id, file, bytes: 0, buffer: Vec::new() }, segment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebula_protocol::{ModuleId, Outcome, Timings};

    fn record(n: u32, payload: usize) -> Arc<ExecutionRecord> {
        Arc::new(ExecutionRecord {
            module: ModuleId::of_bytes(b"m"),
            outcome: Outcome::Success { stdout: vec![n as u8; payload] },
            fuel_used: u64::from(n),
            timings: Timings::default(),
            executed_by: "test".into(),
            signature: Vec::new(),
        })
    }

    fn key(n: u32) -> CallKey {
        CallKey::new(&ModuleId::of_bytes(b"m"), &n.to_le_bytes())
    }

    fn batch(range: std::ops::Range<u32>, payload: usize) -> Vec<(CallKey, Arc<ExecutionRecord>)> {
        range.map(|n| (key(n), record(n, payload))).collect()
    }

    #[test]
    fn appended_results_read_back_before_and_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = ResultLog::open(dir.path(), u64::MAX).unwrap();
            log.append(&batch(0..50, 10)).unwrap();
            assert_eq!(log.get(&key(7)).unwrap(), Some((*record(7, 10)).clone()));
            assert_eq!(log.get(&key(50)).unwrap(), None);
            log.sync().unwrap();
        }
        let log = ResultLog::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(log.len(), 50);
        assert_eq!(log.get(&key(49)).unwrap(), Some((*record(49, 10)).clone()));
        log.append(&batch(50..51, 10)).unwrap();
        assert_eq!(log.get(&key(50)).unwrap(), Some((*record(50, 10)).clone()));
    }

    #[test]
    fn a_torn_tail_is_cut_off_at_open_and_appends_go_on_after_the_intact_records() {
        let dir = tempfile::tempdir().unwrap();
        let log = ResultLog::open(dir.path(), u64::MAX).unwrap();
        log.append(&batch(0..3, 10)).unwrap();
        drop(log);
        let path = segment_path(dir.path(), 1);
        let intact = fs::metadata(&path).unwrap().len();
        // Half of one more record, as a crash during a write leaves it.
        let mut torn = Vec::new();
        encode_record(&mut torn, &key(3), &record(3, 10)).unwrap();
        OpenOptions::new().append(true).open(&path).unwrap().write_all(&torn[..torn.len() / 2]).unwrap();

        let log = ResultLog::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), intact);
        assert_eq!(log.len(), 3);
        log.append(&batch(3..4, 10)).unwrap();
        drop(log);
        let log = ResultLog::open(dir.path(), u64::MAX).unwrap();
        assert_eq!(log.get(&key(3)).unwrap(), Some((*record(3, 10)).clone()));
        assert_eq!(log.get(&key(2)).unwrap(), Some((*record(2, 10)).clone()));
    }

    #[test]
    fn a_damaged_record_reads_as_absent_not_as_another_result() {
        let dir = tempfile::tempdir().unwrap();
        let log = ResultLog::open(dir.path(), u64::MAX).unwrap();
        log.append(&batch(0..2, 10)).unwrap();
        let mut records = Vec::new();
        scan_segment(&segment_path(dir.path(), 1), |_, offset, record| records.push((offset, record.len()))).unwrap();
        let (offset, length) = records[1];
        // Flip the last byte of the second record's body.
        let file = OpenOptions::new().write(true).open(segment_path(dir.path(), 1)).unwrap();
        let at = offset + length as u64 - 1;
        let mut byte = [0];
        File::open(segment_path(dir.path(), 1)).unwrap().read_exact_at(&mut byte, at).unwrap();
        file.write_all_at(&[byte[0] ^ 1], at).unwrap();
        assert_eq!(log.get(&key(1)).unwrap(), None);
        assert_eq!(log.get(&key(0)).unwrap(), Some((*record(0, 10)).clone()));
    }

    #[test]
    fn results_span_segments_and_the_oldest_go_when_over_budget() {
        let dir = tempfile::tempdir().unwrap();
        // About 1 KiB per record, 4 KiB segments, a budget of three segments.
        let log = ResultLog::open_with_segments(dir.path(), 12 << 10, 4 << 10).unwrap();
        for n in 0..40 {
            log.append(&batch(n..n + 1, 1000)).unwrap();
        }
        assert!(log.disk_bytes() <= 12 << 10, "{} bytes on disk", log.disk_bytes());
        assert_eq!(log.get(&key(0)).unwrap(), None, "the oldest results were dropped");
        assert_eq!(log.get(&key(39)).unwrap(), Some((*record(39, 1000)).clone()));
        let kept = log.len();
        assert!((8..40).contains(&kept), "{kept} results kept");
        drop(log);

        let log = ResultLog::open_with_segments(dir.path(), 12 << 10, 4 << 10).unwrap();
        assert_eq!(log.len(), kept);
        assert_eq!(log.get(&key(38)).unwrap(), Some((*record(38, 1000)).clone()));
        assert!(segment_ids(dir.path()).unwrap().len() <= 4);
    }

    #[test]
    fn a_shrunk_budget_is_applied_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let log = ResultLog::open_with_segments(dir.path(), u64::MAX, 4 << 10).unwrap();
        for n in 0..20 {
            log.append(&batch(n..n + 1, 1000)).unwrap();
        }
        drop(log);
        let log = ResultLog::open_with_segments(dir.path(), 8 << 10, 4 << 10).unwrap();
        assert!(log.disk_bytes() <= 8 << 10, "{} bytes on disk", log.disk_bytes());
        assert_eq!(log.get(&key(0)).unwrap(), None);
        assert_eq!(log.get(&key(19)).unwrap(), Some((*record(19, 1000)).clone()));
    }
}
