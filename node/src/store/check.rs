//! `nebula fsck`: an offline check of a data directory. It answers "after a
//! crash, is the store still consistent?": every blob hashes to its name,
//! every module index entry has its blob, every record in the index and the
//! result log decodes.
//!
//! Findings are split in two. *Problems* break a promise the store makes (a
//! blob that lies about its content, an acknowledged module without its bytes,
//! a record that no longer decodes) and make the check fail. *Notes* are what
//! a crash may legitimately leave behind and the node tidies or tolerates on
//! its own (temp files of an interrupted write, a blob written just before
//! its index entry, a damaged compiled-code cache entry that is recompiled).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use nebula_protocol::{CallKey, ExecutionRecord, ModuleId, NameRecord, Signatures};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::Serialize;

use super::index::{MODULES, ModuleMeta, NAMES, RESULTS};
use super::result_log;
use crate::sealing::Sealer;
use crate::signing::Ed25519Signatures;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable, machine-readable kind, e.g. `corrupt_blob`.
    pub kind: &'static str,
    /// What it is about: a module hash, a file name, a name.
    pub subject: String,
    pub detail: String,
}

/// What a check found, and how much it looked at.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub data_dir: PathBuf,
    pub blobs: usize,
    pub modules: usize,
    pub names: usize,
    pub results: usize,
    pub compiled: usize,
    /// redb had to recover the index after an unclean shutdown (it does the
    /// same when the node opens it); not a problem by itself.
    pub index_recovered: bool,
    pub problems: Vec<Finding>,
    pub notes: Vec<Finding>,
}

impl CheckReport {
    pub fn is_consistent(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, kind: &'static str, subject: impl Into<String>, detail: impl Into<String>) {
        self.problems.push(Finding { kind, subject: subject.into(), detail: detail.into() });
    }

    fn note(&mut self, kind: &'static str, subject: impl Into<String>, detail: impl Into<String>) {
        self.notes.push(Finding { kind, subject: subject.into(), detail: detail.into() });
    }

    /// The human-readable report `nebula fsck` prints.
    pub fn render(&self) -> String {
        let mut out = format!("data directory {}\n", self.data_dir.display());
        out += &format!(
            "checked {} blobs, {} modules, {} names, {} results, {} compiled-code entries\n",
            self.blobs, self.modules, self.names, self.results, self.compiled
        );
        if self.index_recovered {
            out += "index: recovered after an unclean shutdown (as the node does when it opens it)\n";
        }
        for finding in &self.notes {
            out += &format!("note: {} {}: {}\n", finding.kind, finding.subject, finding.detail);
        }
        for finding in &self.problems {
            out += &format!("PROBLEM: {} {}: {}\n", finding.kind, finding.subject, finding.detail);
        }
        out += &match self.problems.len() {
            0 => "consistent\n".to_owned(),
            n => format!("INCONSISTENT: {n} problem(s)\n"),
        };
        out
    }
}

/// Checks the data directory `dir`. The node must not be running (the index
/// is locked while it is); an unclean shutdown is recovered the way the node
/// itself would on opening, and nothing else is changed.
pub fn check_data_dir(dir: &Path) -> CheckReport {
    let mut report = CheckReport { data_dir: dir.to_owned(), ..CheckReport::default() };
    if !dir.is_dir() {
        report.problem("missing_data_dir", dir.display().to_string(), "no such directory");
        return report;
    }
    let blobs = check_blobs(&dir.join("blobs"), &mut report);
    let sealer = own_sealer(dir, &mut report);
    let indexed = check_index(&dir.join("index.redb"), &blobs, sealer.as_ref(), &mut report);
    for module in blobs.keys().filter(|module| !indexed.contains(module)) {
        // Blobs are written (durably) before their index entry: a crash in
        // between leaves this, and the deploy was never acknowledged.
        report.note("unindexed_blob", module.to_hex(), "a blob without an index entry (a deploy cut short); harmless");
    }
    check_result_log(&dir.join("results"), sealer.as_ref(), &mut report);
    check_compiled(&dir.join("compiled"), &mut report);
    report
}

/// Verifies every blob; returns the sizes of those whose bytes are intact.
fn check_blobs(dir: &Path, report: &mut CheckReport) -> HashMap<ModuleId, u64> {
    let mut intact = HashMap::new();
    let Some(entries) = list_dir(dir, report) else { return intact };
    for (name, path) in entries {
        if leftover(&name, report, "blobs") {
            continue;
        }
        report.blobs += 1;
        let Ok(module) = name.parse::<ModuleId>() else {
            report.problem("stray_blob_file", format!("blobs/{name}"), "not named by a module hash");
            continue;
        };
        match fs::read(&path) {
            Ok(bytes) if ModuleId::of_bytes(&bytes) == module => {
                intact.insert(module, bytes.len() as u64);
            }
            Ok(bytes) => report.problem(
                "corrupt_blob",
                module.to_hex(),
                format!("its {} bytes hash to {}, not to its name", bytes.len(), ModuleId::of_bytes(&bytes).short()),
            ),
            Err(error) => report.problem("unreadable_blob", module.to_hex(), error.to_string()),
        }
    }
    intact
}

/// What checks the seals of the results this node ran: made from its key,
/// which is only read here.
fn own_sealer(dir: &Path, report: &mut CheckReport) -> Option<Sealer> {
    let path = dir.join("node-key");
    match crate::mesh::read_key(&path)? {
        Ok(identity) => Some(Sealer::new(&identity)),
        Err(error) => {
            report.problem("bad_node_key", path.display().to_string(), format!("{error:#}"));
            None
        }
    }
}

/// Checks the index against the intact blobs; returns the indexed modules.
fn check_index(
    path: &Path,
    intact: &HashMap<ModuleId, u64>,
    sealer: Option<&Sealer>,
    report: &mut CheckReport,
) -> HashSet<ModuleId> {
    let mut indexed = HashSet::new();
    if !path.exists() {
        report.note("no_index", path.display().to_string(), "no index yet (the node never started here)");
        return indexed;
    }
    let recovered = Arc::new(AtomicBool::new(false));
    let flag = recovered.clone();
    let opened = Database::builder().set_repair_callback(move |_| flag.store(true, Ordering::Relaxed)).open(path);
    report.index_recovered = recovered.load(Ordering::Relaxed);
    let mut db = match opened {
        Ok(db) => db,
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            report.problem("index_in_use", path.display().to_string(), "locked: is a node running on this directory?");
            return indexed;
        }
        Err(error) => {
            report.problem("index_unreadable", path.display().to_string(), error.to_string());
            return indexed;
        }
    };
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => report.problem("index_damaged", path.display().to_string(), "failed redb's integrity check"),
        Err(error) => report.problem("index_damaged", path.display().to_string(), error.to_string()),
    }
    if let Err(error) = read_tables(&db, intact, sealer, &mut indexed, report) {
        report.problem("index_unreadable", path.display().to_string(), format!("{error:#}"));
    }
    indexed
}

fn read_tables(
    db: &Database,
    intact: &HashMap<ModuleId, u64>,
    sealer: Option<&Sealer>,
    indexed: &mut HashSet<ModuleId>,
    report: &mut CheckReport,
) -> anyhow::Result<()> {
    let txn = db.begin_read()?;
    // A table is only missing if the node never opened this index.
    if let Ok(table) = txn.open_table(MODULES) {
        for entry in table.iter()? {
            let (key, value) = entry?;
            report.modules += 1;
            let Ok(bytes) = <[u8; 32]>::try_from(key.value()) else {
                report.problem("bad_module_key", hex::encode(key.value()), "a module index key that is not a hash");
                continue;
            };
            let module = ModuleId::from_bytes(bytes);
            indexed.insert(module);
            let meta = match postcard::from_bytes::<ModuleMeta>(value.value()) {
                Ok(meta) => meta,
                Err(error) => {
                    report.problem("undecodable_module_entry", module.to_hex(), error.to_string());
                    continue;
                }
            };
            let Some(&stored) = intact.get(&module) else {
                // A corrupt blob was reported already; this is the absent one.
                if !report.problems.iter().any(|p| p.subject == module.to_hex()) {
                    report.problem("missing_blob", module.to_hex(), "indexed, but blobs/ does not hold it");
                }
                continue;
            };
            if stored != meta.size {
                report.problem(
                    "size_mismatch",
                    module.to_hex(),
                    format!("indexed as {} bytes, blob has {stored}", meta.size),
                );
            }
        }
    }
    if let Ok(table) = txn.open_table(NAMES) {
        let known: HashSet<ModuleId> = indexed.clone();
        for entry in table.iter()? {
            let (key, value) = entry?;
            report.names += 1;
            let name = key.value().to_owned();
            match postcard::from_bytes::<NameRecord>(value.value()) {
                Ok(record) if record.name != name => {
                    report.problem("name_key_mismatch", name, format!("the record inside is for '{}'", record.name))
                }
                Ok(record) => {
                    if let Err(error) = nebula_protocol::validate_name(&record.name) {
                        report.problem("invalid_name", name, error.to_string());
                    } else if !known.contains(&record.module) {
                        // Names travel ahead of modules (gossip), so this is allowed.
                        report.note(
                            "name_of_absent_module",
                            name,
                            format!("points at {}, not held here", record.module.short()),
                        );
                    }
                }
                Err(error) => report.problem("undecodable_name", name, error.to_string()),
            }
        }
    }
    if let Ok(table) = txn.open_table(RESULTS) {
        // Left by a node before the result log, until the node moves them.
        let signatures = Ed25519Signatures::default();
        for entry in table.iter()? {
            let (key, value) = entry?;
            report.results += 1;
            let Ok(call) = <[u8; 32]>::try_from(key.value()).map(CallKey::from_bytes) else {
                report.problem("bad_result_key", hex::encode(key.value()), "a result key that is not a call key");
                continue;
            };
            let record = postcard::from_bytes::<ExecutionRecord>(value.value()).map_err(|error| error.to_string());
            check_result(&call, record, sealer, &signatures, report);
        }
    }
    Ok(())
}

/// A result holds if it decodes and its seal or signature holds: results
/// run here are sealed here (signed, if written before seals), and peers'
/// are checked before they are stored, so a failure means the record changed.
fn check_result(
    call: &CallKey,
    record: Result<ExecutionRecord, String>,
    sealer: Option<&Sealer>,
    signatures: &Ed25519Signatures,
    report: &mut CheckReport,
) {
    match record {
        Err(error) => report.problem("undecodable_result", call.to_hex(), error),
        Ok(record) if sealer.is_some_and(|sealer| sealer.holds(call, &record)) => {}
        Ok(record) => {
            if let Err(error) = signatures.verify(call, &record) {
                report.problem("unsigned_result", call.to_hex(), error);
            }
        }
    }
}

/// Every record of the result log checks out; only the newest segment may
/// end in records a crash tore (the node cuts them off when it opens).
fn check_result_log(dir: &Path, sealer: Option<&Sealer>, report: &mut CheckReport) {
    let ids = match result_log::segment_ids(dir) {
        Ok(ids) => ids,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
        Err(error) => return report.problem("unreadable_dir", dir.display().to_string(), error.to_string()),
    };
    let signatures = Ed25519Signatures::default();
    for (position, &id) in ids.iter().enumerate() {
        let path = result_log::segment_path(dir, id);
        let subject = format!("results/{}", path.file_name().unwrap_or_default().to_string_lossy());
        let mut records = 0;
        let scan = result_log::scan_segment(&path, |call, _, bytes| {
            records += 1;
            let record =
                result_log::decode_record(bytes).map(|(_, record)| record).map_err(|error| format!("{error:#}"));
            check_result(&call, record, sealer, &signatures, report);
        });
        report.results += records;
        let scan = match scan {
            Ok(scan) => scan,
            Err(error) => {
                report.problem("unreadable_result_log", subject, error.to_string());
                continue;
            }
        };
        let damaged = scan.file_bytes - scan.intact_bytes;
        if damaged == 0 {
            continue;
        }
        let detail = format!("{damaged} bytes from offset {} do not check out", scan.intact_bytes);
        match position + 1 == ids.len() {
            true => report.note(
                "torn_result_log_tail",
                subject,
                format!("{detail}: a crash tore them; the node cuts them off"),
            ),
            false => report.problem("damaged_result_log", subject, detail),
        }
    }
}

/// Compiled code (`*.code`) has its BLAKE3 beside it (`*.b3`); a damaged
/// or incomplete entry is only compiled again by the node, so it is a note.
fn check_compiled(dir: &Path, report: &mut CheckReport) {
    if !dir.exists() {
        return;
    }
    let Some(entries) = list_dir(dir, report) else { return };
    for (name, path) in entries {
        if leftover(&name, report, "compiled") || !name.ends_with(".code") {
            continue;
        }
        report.compiled += 1;
        let checksum = fs::read(path.with_extension("b3")).ok();
        let actual = crate::store::hash_file(&path).ok();
        let intact = match (checksum, actual) {
            (Some(expected), Some(actual)) => expected == actual.as_bytes(),
            _ => false,
        };
        if !intact {
            report.note(
                "damaged_compiled_code",
                format!("compiled/{name}"),
                "checksum missing or mismatched; the node compiles it again",
            );
        }
    }
}

fn list_dir(dir: &Path, report: &mut CheckReport) -> Option<Vec<(String, PathBuf)>> {
    let read = match fs::read_dir(dir) {
        Ok(read) => read,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Some(Vec::new()),
        Err(error) => {
            report.problem("unreadable_dir", dir.display().to_string(), error.to_string());
            return None;
        }
    };
    let mut entries: Vec<_> = read
        .filter_map(Result::ok)
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry.path()))
        .collect();
    entries.sort();
    Some(entries)
}

/// A temp file of a write a crash interrupted: removed when the node opens the store.
fn leftover(name: &str, report: &mut CheckReport, dir: &str) -> bool {
    let is_temp = name.starts_with(".tmp-");
    if is_temp {
        report.note("leftover_temp_file", format!("{dir}/{name}"), "an interrupted write; removed at the next start");
    }
    is_temp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BlobStore, Index, ResultLog};
    use nebula_protocol::{Outcome, Timings};
    use std::io::Write;

    /// A data directory with one module, a name for it and one result.
    fn populated() -> (tempfile::TempDir, ModuleId) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::open(dir.path().join("blobs")).unwrap();
        let index = Index::open(&dir.path().join("index.redb")).unwrap();
        let module = blobs.put(b"\0asm module bytes").unwrap();
        index.put_module(&module, &ModuleMeta { size: 17, deployed_unix_ms: 1 }).unwrap();
        index.put_name(&NameRecord { name: "f".into(), module, version: 1, publisher: "me".into() }).unwrap();
        let identity = libp2p::identity::Keypair::generate_ed25519();
        let key = CallKey::new(&module, b"in");
        let mut record = ExecutionRecord {
            module,
            outcome: Outcome::Success { stdout: b"out".to_vec() },
            fuel_used: 1,
            timings: Timings::default(),
            executed_by: identity.public().to_peer_id().to_string(),
            signature: Vec::new(),
        };
        crate::signing::sign(&identity, &key, &mut record);
        store_results(dir.path(), &[(key, Arc::new(record))]);
        (dir, module)
    }

    /// Stores a result this directory's node ran (sealed, not signed) as the
    /// answer to `input`.
    fn store_sealed_result(dir: &Path, module: ModuleId, input: &[u8]) -> CallKey {
        let identity = crate::mesh::load_or_create_key(&dir.join("node-key")).unwrap();
        let key = CallKey::new(&module, input);
        let mut record = ExecutionRecord {
            module,
            outcome: Outcome::Success { stdout: b"sealed".to_vec() },
            fuel_used: 2,
            timings: Timings::default(),
            executed_by: identity.public().to_peer_id().to_string(),
            signature: Vec::new(),
        };
        Sealer::new(&identity).seal(&key, &mut record);
        store_results(dir, &[(key, Arc::new(record))]);
        key
    }

    fn store_results(dir: &Path, results: &[(CallKey, Arc<ExecutionRecord>)]) {
        let log = ResultLog::open(&dir.join("results"), u64::MAX).unwrap();
        log.append(results).unwrap();
        log.sync().unwrap();
    }

    #[test]
    fn results_sealed_by_this_node_hold_and_any_change_breaks_them() {
        let (dir, module) = populated();
        let key = store_sealed_result(dir.path(), module, b"sealed");
        let report = check_data_dir(dir.path());
        assert!(report.is_consistent(), "{}", report.render());
        assert_eq!(report.results, 2);

        alter_result(dir.path(), key, |record| record.fuel_used += 1);
        let report = check_data_dir(dir.path());
        assert_eq!(kinds(&report.problems), ["unsigned_result"], "{}", report.render());
    }

    #[test]
    fn a_torn_log_tail_is_noted_and_damage_before_it_is_a_problem() {
        let (dir, _) = populated();
        let results = dir.path().join("results");
        let (oldest, newest) = (result_log::segment_path(&results, 1), result_log::segment_path(&results, 2));
        fs::copy(&oldest, &newest).unwrap();
        fs::OpenOptions::new().append(true).open(&newest).unwrap().write_all(&[9, 0, 0]).unwrap();
        let report = check_data_dir(dir.path());
        assert!(report.is_consistent(), "{}", report.render());
        assert_eq!(kinds(&report.notes), ["torn_result_log_tail"], "{}", report.render());

        let mut bytes = fs::read(&oldest).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&oldest, bytes).unwrap();
        let report = check_data_dir(dir.path());
        assert_eq!(kinds(&report.problems), ["damaged_result_log"], "{}", report.render());
    }

    /// Changes the stored result for `key` behind its seal or signature.
    fn alter_result(dir: &Path, key: CallKey, change: impl FnOnce(&mut ExecutionRecord)) {
        let mut altered = ResultLog::open(&dir.join("results"), u64::MAX).unwrap().get(&key).unwrap().unwrap();
        change(&mut altered);
        store_results(dir, &[(key, Arc::new(altered))]);
    }

    #[test]
    fn a_seal_holds_only_with_the_key_that_made_it() {
        let (dir, module) = populated();
        store_sealed_result(dir.path(), module, b"sealed");
        // Another node's key in its place: the seal is not this node's.
        let other = libp2p::identity::Keypair::generate_ed25519();
        fs::write(dir.path().join("node-key"), other.to_protobuf_encoding().unwrap()).unwrap();
        let report = check_data_dir(dir.path());
        assert_eq!(kinds(&report.problems), ["unsigned_result"], "{}", report.render());

        fs::remove_file(dir.path().join("node-key")).unwrap();
        let report = check_data_dir(dir.path());
        assert_eq!(kinds(&report.problems), ["unsigned_result"], "{}", report.render());
    }

    fn kinds(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(|finding| finding.kind).collect()
    }

    #[test]
    fn a_sound_directory_is_consistent() {
        let (dir, _) = populated();
        let report = check_data_dir(dir.path());
        assert!(report.is_consistent(), "{}", report.render());
        assert_eq!((report.blobs, report.modules, report.names, report.results), (1, 1, 1, 1));
        assert!(report.notes.is_empty(), "{}", report.render());
        assert!(report.render().ends_with("consistent\n"));
    }

    #[test]
    fn a_corrupted_blob_fails_the_check() {
        let (dir, module) = populated();
        let path = dir.path().join("blobs").join(module.to_hex());
        let mut bytes = fs::read(&path).unwrap();
        bytes[5] ^= 1;
        fs::write(&path, bytes).unwrap();
        let report = check_data_dir(dir.path());
        assert_eq!(kinds(&report.problems), ["corrupt_blob"], "{}", report.render());
        assert!(report.render().contains("INCONSISTENT: 1 problem(s)"));
    }

    #[test]
    fn an_index_entry_without_its_blob_fails_the_check() {
        let (dir, module) = populated();
        fs::remove_file(dir.path().join("blobs").join(module.to_hex())).unwrap();
        let report = check_data_dir(dir.path());
        assert_eq!(kinds(&report.problems), ["missing_blob"], "{}", report.render());
        assert_eq!(report.problems[0].subject, module.to_hex());
    }

    #[test]
    fn an_undecodable_record_fails_the_check() {
        let (dir, _) = populated();
        {
            let db = Database::open(dir.path().join("index.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(NAMES).unwrap().insert("g", [0xffu8; 3].as_slice()).unwrap();
            txn.open_table(RESULTS).unwrap().insert([7u8; 32].as_slice(), [0xffu8; 3].as_slice()).unwrap();
            txn.commit().unwrap();
        }
        let report = check_data_dir(dir.path());
        assert_eq!(kinds(&report.problems), ["undecodable_name", "undecodable_result"], "{}", report.render());
    }

    #[test]
    fn a_result_whose_signature_fails_is_a_problem() {
        let (dir, module) = populated();
        alter_result(dir.path(), CallKey::new(&module, b"in"), |record| {
            record.outcome = Outcome::Success { stdout: b"tampered".to_vec() };
        });
        let report = check_data_dir(dir.path());
        assert_eq!(kinds(&report.problems), ["unsigned_result"], "{}", report.render());
    }

    #[test]
    fn what_a_crash_may_leave_is_only_noted() {
        let (dir, _) = populated();
        fs::write(dir.path().join("blobs").join(".tmp-1-1"), b"half a write").unwrap();
        // Written durably, but the process died before the index entry.
        let blobs = BlobStore::open(dir.path().join("blobs")).unwrap();
        fs::write(dir.path().join("blobs").join(".tmp-1-2"), b"another half").unwrap();
        blobs.put(b"\0asm a deploy cut short").unwrap();
        let report = check_data_dir(dir.path());
        assert!(report.is_consistent(), "{}", report.render());
        assert_eq!(kinds(&report.notes), ["leftover_temp_file", "unindexed_blob"], "{}", report.render());
    }

    #[test]
    fn a_stray_file_and_a_missing_directory_are_problems() {
        let (dir, _) = populated();
        fs::write(dir.path().join("blobs").join("not-a-hash"), b"?").unwrap();
        assert_eq!(kinds(&check_data_dir(dir.path()).problems), ["stray_blob_file"]);
        assert_eq!(kinds(&check_data_dir(&dir.path().join("nope")).problems), ["missing_data_dir"]);
    }

    #[test]
    fn a_locked_index_is_reported_not_waited_for() {
        let (dir, _) = populated();
        let _open = Index::open(&dir.path().join("index.redb")).unwrap();
        assert_eq!(kinds(&check_data_dir(dir.path()).problems), ["index_in_use"]);
    }
}
