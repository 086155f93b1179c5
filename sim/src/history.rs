//! What happened to every call of a run, and the checkers that judge it.

use std::collections::BTreeMap;

use nebula_protocol::core::{Answer, CacheStatus};
use nebula_protocol::{ModuleId, Outcome};
use serde::Serialize;

use crate::world::{Time, truth};

#[derive(Debug, Clone)]
pub struct CallRecord {
    pub node: usize,
    /// Partition group of the node when the call started (0 when whole).
    pub side: u32,
    pub partitioned: bool,
    pub by_name: bool,
    pub reference: String,
    /// By hash: the module called. By name: the newest module the name
    /// pointed to anywhere in the mesh when the call started.
    pub expected_module: ModuleId,
    pub input: Vec<u8>,
    pub started: Time,
    pub finished: Option<Time>,
    pub result: Option<Result<Answered, String>>,
}

#[derive(Debug, Clone)]
pub struct Answered {
    pub module: ModuleId,
    pub stdout: Option<Vec<u8>>,
    pub hit: bool,
}

#[derive(Default)]
pub struct History {
    pub calls: Vec<CallRecord>,
    pub penalties: u64,
}

impl History {
    pub fn push(&mut self, record: CallRecord) -> usize {
        self.calls.push(record);
        self.calls.len() - 1
    }

    pub fn answer(&mut self, index: usize, now: Time, answer: &Answer) {
        let stdout = match &answer.record.outcome {
            Outcome::Success { stdout } => Some(stdout.clone()),
            Outcome::Failed(_) => None,
        };
        let answered = Answered { module: answer.record.module, stdout, hit: answer.cache == CacheStatus::Hit };
        self.finish(index, now, Ok(answered));
    }

    pub fn fail(&mut self, index: usize, now: Time, reason: &str) {
        self.finish(index, now, Err(reason.to_owned()));
    }

    fn finish(&mut self, index: usize, now: Time, result: Result<Answered, String>) {
        let call = &mut self.calls[index];
        if call.result.is_none() {
            call.finished = Some(now);
            call.result = Some(result);
        }
    }

    /// Calls waiting at a node that crashed are never answered.
    pub fn abandon_node(&mut self, node: usize, now: Time) {
        for index in 0..self.calls.len() {
            if self.calls[index].node == node && self.calls[index].result.is_none() {
                self.fail(index, now, "node crashed");
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct SideAvailability {
    pub calls: u64,
    pub answered: u64,
    pub availability: f64,
    /// Why the rest failed, by error kind.
    pub failures: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Checks {
    pub calls: u64,
    pub answered: u64,
    pub availability: f64,
    /// By-hash answers whose output differs from the true output: must be 0
    /// unless a node lies.
    pub by_hash_violations: u64,
    pub by_name_calls: u64,
    /// By-name answers that ran an older module than the newest one published.
    pub by_name_stale: u64,
    /// Latest moment a stale by-name answer was given (virtual ms), if any.
    pub last_stale_at_ms: Option<Time>,
    pub cache_hit_rate: f64,
    /// During partitions, per side (partition group).
    pub partitioned_sides: BTreeMap<u32, SideAvailability>,
    pub median_latency_ms: f64,
    pub unanswered_at_end: u64,
}

pub fn check(history: &History) -> Checks {
    let mut checks = Checks {
        calls: history.calls.len() as u64,
        answered: 0,
        availability: 0.0,
        by_hash_violations: 0,
        by_name_calls: 0,
        by_name_stale: 0,
        last_stale_at_ms: None,
        cache_hit_rate: 0.0,
        partitioned_sides: BTreeMap::new(),
        median_latency_ms: 0.0,
        unanswered_at_end: 0,
    };
    let mut hits = 0u64;
    let mut latencies = Vec::new();
    for call in &history.calls {
        checks.by_name_calls += u64::from(call.by_name);
        let success = match &call.result {
            Some(Ok(answered)) => answered.stdout.as_ref().map(|stdout| (answered, stdout)),
            _ => None,
        };
        if let Some((answered, stdout)) = success {
            checks.answered += 1;
            hits += u64::from(answered.hit);
            latencies.push(call.finished.unwrap_or(call.started) - call.started);
            let wrong_module = !call.by_name && answered.module != call.expected_module;
            if !call.by_name && (wrong_module || *stdout != truth(&answered.module, &call.input)) {
                checks.by_hash_violations += 1;
            }
            if call.by_name && answered.module != call.expected_module {
                checks.by_name_stale += 1;
                checks.last_stale_at_ms = checks.last_stale_at_ms.max(call.finished);
            }
        }
        if call.result.is_none() {
            checks.unanswered_at_end += 1;
        }
        if call.partitioned {
            let side = checks.partitioned_sides.entry(call.side).or_default();
            side.calls += 1;
            match (&call.result, success) {
                (_, Some(_)) => side.answered += 1,
                (Some(Err(reason)), None) => *side.failures.entry(reason.clone()).or_default() += 1,
                (Some(Ok(_)), None) => *side.failures.entry("function failed".into()).or_default() += 1,
                (None, None) => *side.failures.entry("unanswered".into()).or_default() += 1,
            }
        }
    }
    for side in checks.partitioned_sides.values_mut() {
        side.availability = ratio(side.answered, side.calls);
    }
    checks.availability = ratio(checks.answered, checks.calls);
    checks.cache_hit_rate = ratio(hits, checks.answered);
    latencies.sort();
    checks.median_latency_ms = latencies.get(latencies.len() / 2).copied().unwrap_or(0) as f64;
    checks
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 1.0 } else { part as f64 / whole as f64 }
}
