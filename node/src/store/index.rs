//! The embedded database (redb): modules and names, each value
//! postcard-encoded, durable when a write returns. Cached results live in
//! the result log; nodes before it kept them here, in `results`.

use std::path::Path;
use std::sync::Arc;

use nebula_protocol::{CallKey, ModuleId, NameRecord};

use super::ResultLog;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

pub(super) const MODULES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("modules");
pub(super) const NAMES: TableDefinition<&str, &[u8]> = TableDefinition::new("names");
/// Results as nodes before the result log kept them: moved out at open.
pub(super) const RESULTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("results");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleMeta {
    pub size: u64,
    pub deployed_unix_ms: u64,
}

pub struct Index {
    db: Database,
}

impl Index {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(MODULES)?;
        txn.open_table(NAMES)?;
        txn.commit()?;
        Ok(Self { db })
    }

    pub fn put_module(&self, id: &ModuleId, meta: &ModuleMeta) -> anyhow::Result<()> {
        self.write(Durability::Immediate, |txn| {
            txn.open_table(MODULES)?.insert(id.as_bytes().as_slice(), postcard::to_stdvec(meta)?.as_slice())?;
            Ok(())
        })
    }

    pub fn remove_module(&self, id: &ModuleId) -> anyhow::Result<()> {
        self.write(Durability::Immediate, |txn| {
            txn.open_table(MODULES)?.remove(id.as_bytes().as_slice())?;
            Ok(())
        })
    }

    pub fn modules(&self) -> anyhow::Result<Vec<(ModuleId, ModuleMeta)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(MODULES)?;
        let mut modules = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let Ok(bytes) = <[u8; 32]>::try_from(key.value()) else {
                tracing::warn!("skipping a module index entry with a malformed key");
                continue;
            };
            match postcard::from_bytes(value.value()) {
                Ok(meta) => modules.push((ModuleId::from_bytes(bytes), meta)),
                Err(error) => tracing::warn!(%error, "skipping an unreadable module index entry"),
            }
        }
        Ok(modules)
    }

    /// Stores a name record unless the stored one is as new or newer. Each
    /// persist runs on a blocking task of its own, so two re-points of one
    /// name can reach the disk out of order: the older must not undo the
    /// newer, which was already acknowledged.
    pub fn put_name(&self, record: &NameRecord) -> anyhow::Result<()> {
        self.write(Durability::Immediate, |txn| {
            let mut table = txn.open_table(NAMES)?;
            let stored = table.get(record.name.as_str())?.and_then(|value| postcard::from_bytes(value.value()).ok());
            if stored.is_some_and(|stored: NameRecord| !record.supersedes(&stored)) {
                return Ok(());
            }
            table.insert(record.name.as_str(), postcard::to_stdvec(record)?.as_slice())?;
            Ok(())
        })
    }

    pub fn names(&self) -> anyhow::Result<Vec<NameRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(NAMES)?;
        let mut names = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            match postcard::from_bytes(value.value()) {
                Ok(record) => names.push(record),
                Err(error) => tracing::warn!(%error, "skipping an unreadable name record"),
            }
        }
        Ok(names)
    }

    /// Moves the results an older node stored here into `log` (durably),
    /// then drops them from the index; returns how many moved.
    pub fn move_results_to(&self, log: &ResultLog) -> anyhow::Result<usize> {
        let txn = self.db.begin_read()?;
        let Ok(table) = txn.open_table(RESULTS) else { return Ok(0) };
        let mut batch = Vec::new();
        let mut moved = 0;
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (Ok(key), Ok(record)) = (<[u8; 32]>::try_from(key.value()), postcard::from_bytes(value.value())) else {
                continue;
            };
            batch.push((CallKey::from_bytes(key), Arc::new(record)));
            if batch.len() == 4096 {
                moved += batch.len();
                log.append(&std::mem::take(&mut batch))?;
            }
        }
        moved += batch.len();
        log.append(&batch)?;
        log.sync()?;
        drop(table);
        drop(txn);
        self.write(Durability::Immediate, |txn| {
            txn.delete_table(RESULTS)?;
            Ok(())
        })?;
        Ok(moved)
    }

    fn write(
        &self,
        durability: Durability,
        change: impl FnOnce(&redb::WriteTransaction) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(durability)?;
        change(&txn)?;
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebula_protocol::{ExecutionRecord, Outcome, Timings};

    #[test]
    fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let module = ModuleId::of_bytes(b"m");
        let name = NameRecord { name: "f".into(), module, version: 2, publisher: "me".into() };
        {
            let index = Index::open(&path).unwrap();
            index.put_module(&module, &ModuleMeta { size: 1, deployed_unix_ms: 5 }).unwrap();
            index.put_name(&name).unwrap();
        }
        let index = Index::open(&path).unwrap();
        assert_eq!(index.modules().unwrap(), vec![(module, ModuleMeta { size: 1, deployed_unix_ms: 5 })]);
        assert_eq!(index.names().unwrap(), vec![name]);
    }

    #[test]
    fn results_an_older_node_stored_move_to_the_log_once() {
        let dir = tempfile::tempdir().unwrap();
        let module = ModuleId::of_bytes(b"m");
        let record = |n: u8| ExecutionRecord {
            module,
            outcome: Outcome::Success { stdout: vec![n] },
            fuel_used: 3,
            timings: Timings::default(),
            executed_by: "test".into(),
            signature: Vec::new(),
        };
        let index = Index::open(&dir.path().join("index.redb")).unwrap();
        index
            .write(Durability::Immediate, |txn| {
                let mut table = txn.open_table(RESULTS)?;
                for n in 0..5000u16 {
                    let key = CallKey::new(&module, &n.to_le_bytes());
                    table.insert(key.as_bytes().as_slice(), postcard::to_stdvec(&record(n as u8))?.as_slice())?;
                }
                table.insert([7u8; 32].as_slice(), [0xffu8; 3].as_slice())?;
                Ok(())
            })
            .unwrap();
        let log = ResultLog::open(&dir.path().join("results"), u64::MAX).unwrap();
        assert_eq!(index.move_results_to(&log).unwrap(), 5000, "the undecodable entry stays behind");
        assert_eq!(log.len(), 5000);
        assert_eq!(log.get(&CallKey::new(&module, &4999u16.to_le_bytes())).unwrap(), Some(record(4999u16 as u8)));
        assert_eq!(index.move_results_to(&log).unwrap(), 0, "the table is gone");
    }

    #[test]
    fn an_older_name_record_landing_last_does_not_undo_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join("index.redb")).unwrap();
        let record = |version, module: &[u8]| NameRecord {
            name: "f".into(),
            module: ModuleId::of_bytes(module),
            version,
            publisher: "me".into(),
        };
        index.put_name(&record(2, b"new")).unwrap();
        index.put_name(&record(1, b"old")).unwrap();
        assert_eq!(index.names().unwrap(), vec![record(2, b"new")]);
        index.put_name(&record(3, b"newer")).unwrap();
        assert_eq!(index.names().unwrap(), vec![record(3, b"newer")]);
    }
}
