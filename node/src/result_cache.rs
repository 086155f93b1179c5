//! Byte-bounded in-memory results in front of the on-disk index.

use std::sync::Arc;

use nebula_protocol::{CallKey, ExecutionRecord, Outcome};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

#[derive(Clone)]
struct RecordBytes;

impl Weighter<CallKey, Arc<ExecutionRecord>> for RecordBytes {
    fn weight(&self, _key: &CallKey, record: &Arc<ExecutionRecord>) -> u64 {
        let payload = match &record.outcome {
            Outcome::Success { stdout } => stdout.len(),
            Outcome::Failed(_) => 256,
        };
        // Key, record and bookkeeping overhead, so tiny results still count.
        (payload + 128) as u64
    }
}

pub struct MemoryResults(Cache<CallKey, Arc<ExecutionRecord>, RecordBytes>);

impl MemoryResults {
    pub fn new(capacity_bytes: u64) -> Self {
        let estimated_items = (capacity_bytes / 1024).clamp(16, 1 << 20) as usize;
        Self(Cache::with_weighter(estimated_items, capacity_bytes, RecordBytes))
    }

    pub fn get(&self, key: &CallKey) -> Option<Arc<ExecutionRecord>> {
        self.0.get(key)
    }

    pub fn insert(&self, key: CallKey, record: Arc<ExecutionRecord>) {
        self.0.insert(key, record);
    }

    pub fn bytes(&self) -> u64 {
        self.0.weight()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebula_protocol::{ModuleId, Timings};

    #[test]
    fn stays_within_its_byte_budget() {
        let cache = MemoryResults::new(64 * 1024);
        let module = ModuleId::of_bytes(b"m");
        for i in 0..200u32 {
            let record = ExecutionRecord {
                module,
                outcome: Outcome::Success { stdout: vec![0; 1024] },
                fuel_used: 0,
                timings: Timings::default(),
                executed_by: "test".into(),
                signature: Vec::new(),
            };
            cache.insert(CallKey::new(&module, &i.to_le_bytes()), Arc::new(record));
        }
        assert!(cache.bytes() <= 64 * 1024, "{} bytes held", cache.bytes());
        assert!(cache.len() < 200);
    }
}
