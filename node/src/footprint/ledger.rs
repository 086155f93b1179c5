//! Per-function totals of what calls cost on this node, and the footprints
//! of recent executions so each caller's answer can carry its own.

use std::collections::HashMap;
use std::sync::Mutex;

use nebula_protocol::{CallKey, ModuleId};
use quick_cache::sync::Cache;
use serde::{Deserialize, Serialize};

use super::{EnergySource, Footprint};

/// Recent executions remembered until their callers are answered; far more
/// than can be in flight at once.
const RECENT_EXECUTIONS: usize = 4096;

/// How a call was answered, for counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// This call started an execution here (or joined one running here).
    Executed,
    CacheHit,
    /// Nothing ran here: another node executed it, or nothing ran at all.
    Elsewhere,
}

#[derive(Debug, Default, Clone)]
struct Totals {
    calls: u64,
    executions: u64,
    cache_hits: u64,
    cpu_ns: u64,
    wall_ns: u64,
    fuel: u64,
    peak_memory_bytes: u64,
    energy_uwh: f64,
    /// Set once any execution's energy was estimated rather than measured.
    energy_estimated: bool,
}

/// One function's footprint on this node (the rows of `GET /footprint` and
/// `nebula footprint`). Means are per execution on this node; `energy_uwh_per_call`
/// spreads the energy over every call answered, which is what caching saves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionFootprint {
    pub module: ModuleId,
    /// Names pointing at the module (empty if none).
    pub names: Vec<String>,
    /// Calls answered by this node.
    pub calls: u64,
    /// Executions on this node.
    pub executions: u64,
    pub cache_hits: u64,
    pub mean_cpu_us: f64,
    pub mean_wall_us: f64,
    pub mean_fuel: f64,
    /// Largest linear memory of any execution.
    pub peak_memory_bytes: u64,
    pub energy_uwh_per_execution: f64,
    pub energy_uwh_per_call: f64,
    pub cpu_us_total: f64,
    pub wall_us_total: f64,
    pub fuel_total: u64,
    pub energy_uwh_total: f64,
    /// `estimated` if any execution's energy was estimated.
    pub energy_source: EnergySource,
}

pub struct Ledger {
    functions: Mutex<HashMap<ModuleId, Totals>>,
    recent: Cache<CallKey, Footprint>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self { functions: Mutex::new(HashMap::new()), recent: Cache::new(RECENT_EXECUTIONS) }
    }
}

impl Ledger {
    pub fn record_execution(&self, module: ModuleId, key: CallKey, footprint: Footprint) {
        self.recent.insert(key, footprint);
        let mut functions = self.functions.lock().expect("ledger lock");
        let totals = functions.entry(module).or_default();
        totals.executions += 1;
        totals.cpu_ns += footprint.cpu_ns;
        totals.wall_ns += footprint.wall_ns;
        totals.fuel += footprint.fuel;
        totals.peak_memory_bytes = totals.peak_memory_bytes.max(footprint.peak_memory_bytes);
        totals.energy_uwh += footprint.energy_uwh;
        totals.energy_estimated |= footprint.energy_source == EnergySource::Estimated;
    }

    pub fn record_answer(&self, module: ModuleId, kind: AnswerKind) {
        let mut functions = self.functions.lock().expect("ledger lock");
        let totals = functions.entry(module).or_default();
        totals.calls += 1;
        if kind == AnswerKind::CacheHit {
            totals.cache_hits += 1;
        }
    }

    /// The footprint of the latest execution of `key` here, if still remembered.
    pub fn execution(&self, key: &CallKey) -> Option<Footprint> {
        self.recent.get(key)
    }

    /// Every function seen, most called first; `names` gives a module's names.
    pub fn rows(&self, names: impl Fn(&ModuleId) -> Vec<String>) -> Vec<FunctionFootprint> {
        let functions = self.functions.lock().expect("ledger lock").clone();
        let mut rows: Vec<FunctionFootprint> = functions
            .into_iter()
            .map(|(module, totals)| {
                let per_execution =
                    |total: f64| if totals.executions == 0 { 0.0 } else { total / totals.executions as f64 };
                FunctionFootprint {
                    module,
                    names: names(&module),
                    calls: totals.calls,
                    executions: totals.executions,
                    cache_hits: totals.cache_hits,
                    mean_cpu_us: per_execution(totals.cpu_ns as f64 / 1e3),
                    mean_wall_us: per_execution(totals.wall_ns as f64 / 1e3),
                    mean_fuel: per_execution(totals.fuel as f64),
                    peak_memory_bytes: totals.peak_memory_bytes,
                    energy_uwh_per_execution: per_execution(totals.energy_uwh),
                    energy_uwh_per_call: if totals.calls == 0 { 0.0 } else { totals.energy_uwh / totals.calls as f64 },
                    cpu_us_total: totals.cpu_ns as f64 / 1e3,
                    wall_us_total: totals.wall_ns as f64 / 1e3,
                    fuel_total: totals.fuel,
                    energy_uwh_total: totals.energy_uwh,
                    energy_source: match totals.energy_estimated || totals.executions == 0 {
                        true => EnergySource::Estimated,
                        false => EnergySource::Measured,
                    },
                }
            })
            .collect();
        rows.sort_by(|a, b| b.calls.cmp(&a.calls).then_with(|| a.module.cmp(&b.module)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn footprint(cpu_ns: u64, fuel: u64, peak: u64) -> Footprint {
        Footprint {
            cpu_ns,
            wall_ns: cpu_ns * 2,
            fuel,
            peak_memory_bytes: peak,
            energy_uwh: 1.0,
            energy_source: EnergySource::Estimated,
        }
    }

    #[test]
    fn totals_and_means_per_function() {
        let ledger = Ledger::default();
        let (fib, add) = (ModuleId::of_bytes(b"fib"), ModuleId::of_bytes(b"add"));
        let key = CallKey::new(&fib, b"1");
        ledger.record_execution(fib, key, footprint(10_000, 100, 65_536));
        ledger.record_answer(fib, AnswerKind::Executed);
        ledger.record_execution(fib, CallKey::new(&fib, b"2"), footprint(30_000, 300, 131_072));
        ledger.record_answer(fib, AnswerKind::Executed);
        ledger.record_answer(fib, AnswerKind::CacheHit);
        ledger.record_answer(fib, AnswerKind::CacheHit);
        ledger.record_answer(add, AnswerKind::Elsewhere);

        let rows = ledger.rows(|module| if *module == fib { vec!["fib".into()] } else { vec![] });
        assert_eq!(rows.len(), 2);
        let row = &rows[0];
        assert_eq!((row.module, row.names.clone()), (fib, vec!["fib".to_owned()]));
        assert_eq!((row.calls, row.executions, row.cache_hits), (4, 2, 2));
        assert_eq!((row.mean_cpu_us, row.mean_wall_us, row.mean_fuel), (20.0, 40.0, 200.0));
        assert_eq!((row.peak_memory_bytes, row.fuel_total), (131_072, 400));
        assert_eq!((row.energy_uwh_per_execution, row.energy_uwh_per_call), (1.0, 0.5));
        assert_eq!((rows[1].calls, rows[1].executions, rows[1].mean_cpu_us), (1, 0, 0.0));
        assert_eq!(ledger.execution(&key).map(|f| f.fuel), Some(100));
    }
}
