//! Modules loaded in memory, ready to run, within a byte budget: the least
//! recently run are let go first and reloaded from the compiled-code cache
//! when a call needs them again. Calls in progress keep their own handle, so
//! eviction never disturbs them.

use std::collections::HashMap;

use nebula_protocol::ModuleId;

struct Entry<T> {
    value: T,
    bytes: u64,
    last_used: u64,
}

pub struct Loaded<T> {
    budget_bytes: u64,
    used_bytes: u64,
    clock: u64,
    entries: HashMap<ModuleId, Entry<T>>,
}

impl<T: Clone> Loaded<T> {
    pub fn new(budget_bytes: u64) -> Self {
        Self { budget_bytes, used_bytes: 0, clock: 0, entries: HashMap::new() }
    }

    pub fn get(&mut self, module: &ModuleId) -> Option<T> {
        self.clock += 1;
        let entry = self.entries.get_mut(module)?;
        entry.last_used = self.clock;
        Some(entry.value.clone())
    }

    pub fn contains(&self, module: &ModuleId) -> bool {
        self.entries.contains_key(module)
    }

    /// Keeps `value` (even if it alone is over the budget: a call needs it),
    /// letting the least recently used others go until the rest fits.
    pub fn insert(&mut self, module: ModuleId, value: T, bytes: u64) {
        self.clock += 1;
        if let Some(old) = self.entries.insert(module, Entry { value, bytes, last_used: self.clock }) {
            self.used_bytes -= old.bytes;
        }
        self.used_bytes += bytes;
        while self.used_bytes > self.budget_bytes {
            let oldest = self
                .entries
                .iter()
                .filter(|(id, _)| **id != module)
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(id, _)| *id);
            let Some(oldest) = oldest else { break };
            let evicted = self.entries.remove(&oldest).expect("present");
            self.used_bytes -= evicted.bytes;
            tracing::debug!(module = %oldest.short(), bytes = evicted.bytes, "unloaded a module (byte budget)");
        }
    }

    pub fn bytes(&self) -> u64 {
        self.used_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ModuleId {
        ModuleId::of_bytes(&[n])
    }

    #[test]
    fn the_least_recently_used_go_first_and_the_newest_always_stays() {
        let mut loaded = Loaded::new(100);
        loaded.insert(id(1), 1, 40);
        loaded.insert(id(2), 2, 40);
        assert_eq!(loaded.get(&id(1)), Some(1));
        loaded.insert(id(3), 3, 40);
        assert!(!loaded.contains(&id(2)), "least recently used");
        assert!(loaded.contains(&id(1)) && loaded.contains(&id(3)));
        assert_eq!(loaded.bytes(), 80);
        loaded.insert(id(4), 4, 500);
        assert_eq!((loaded.bytes(), loaded.get(&id(4))), (500, Some(4)), "over budget alone, still kept");
        loaded.insert(id(4), 4, 50);
        assert_eq!(loaded.bytes(), 50, "replacing an entry counts it once");
    }
}
