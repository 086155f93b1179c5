//! The embedded database (redb): modules, names and cached results, each
//! value postcard-encoded. Module and name writes are durable when they
//! return; result writes are batched (a lost result is only recomputed).

use std::path::Path;
use std::sync::Arc;

use nebula_protocol::{CallKey, ExecutionRecord, ModuleId, NameRecord};
use redb::{Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

pub(super) const MODULES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("modules");
pub(super) const NAMES: TableDefinition<&str, &[u8]> = TableDefinition::new("names");
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
        txn.open_table(RESULTS)?;
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

    /// Not durable on return: durable at the next [`Index::flush`] or durable write.
    pub fn put_results(&self, results: &[(CallKey, Arc<ExecutionRecord>)]) -> anyhow::Result<()> {
        self.write(Durability::None, |txn| {
            let mut table = txn.open_table(RESULTS)?;
            for (key, record) in results {
                table.insert(key.as_bytes().as_slice(), postcard::to_stdvec(record.as_ref())?.as_slice())?;
            }
            Ok(())
        })
    }

    /// A stored result; an undecodable one counts as absent (it is recomputed).
    pub fn result(&self, key: &CallKey) -> anyhow::Result<Option<ExecutionRecord>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RESULTS)?;
        let Some(value) = table.get(key.as_bytes().as_slice())? else {
            return Ok(None);
        };
        Ok(postcard::from_bytes(value.value())
            .inspect_err(|error| tracing::warn!(%error, key = %key.short(), "ignoring an unreadable cached result"))
            .ok())
    }

    /// The keys of every stored result.
    pub fn result_keys(&self) -> anyhow::Result<Vec<CallKey>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(RESULTS)?;
        let mut keys = Vec::new();
        for entry in table.iter()? {
            let (key, _) = entry?;
            if let Ok(bytes) = <[u8; 32]>::try_from(key.value()) {
                keys.push(CallKey::from_bytes(bytes));
            }
        }
        Ok(keys)
    }

    pub fn result_count(&self) -> anyhow::Result<u64> {
        let txn = self.db.begin_read()?;
        Ok(txn.open_table(RESULTS)?.len()?)
    }

    /// Makes every batched write durable.
    pub fn flush(&self) -> anyhow::Result<()> {
        self.write(Durability::Immediate, |_| Ok(()))
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
    use nebula_protocol::{Outcome, Timings};

    #[test]
    fn everything_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.redb");
        let module = ModuleId::of_bytes(b"m");
        let key = CallKey::new(&module, b"in");
        let name = NameRecord { name: "f".into(), module, version: 2, publisher: "me".into() };
        let record = ExecutionRecord {
            module,
            outcome: Outcome::Success { stdout: b"out".to_vec() },
            fuel_used: 3,
            timings: Timings::default(),
            executed_by: "test".into(),
            signature: Vec::new(),
        };
        {
            let index = Index::open(&path).unwrap();
            index.put_module(&module, &ModuleMeta { size: 1, deployed_unix_ms: 5 }).unwrap();
            index.put_name(&name).unwrap();
            index.put_results(&[(key, Arc::new(record.clone()))]).unwrap();
            index.flush().unwrap();
        }
        let index = Index::open(&path).unwrap();
        assert_eq!(index.modules().unwrap(), vec![(module, ModuleMeta { size: 1, deployed_unix_ms: 5 })]);
        assert_eq!(index.names().unwrap(), vec![name]);
        assert_eq!(index.result(&key).unwrap(), Some(record));
        assert_eq!(index.result(&CallKey::new(&module, b"other")).unwrap(), None);
        assert_eq!(index.result_count().unwrap(), 1);
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
