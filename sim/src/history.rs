//! What happened to every call of a run, and the checkers that judge it.
//!
//! The same history format is written by the simulator (`run --history`) and
//! by `scripts/partition-experiment` on real nodes, and judged by the same
//! [`check`], so the two can be compared figure by figure.

use std::collections::BTreeMap;

use nebula_protocol::ModuleId;
use nebula_protocol::{Answer, CacheStatus};
use serde::{Deserialize, Serialize};

/// Milliseconds since the start of the run (virtual in the simulator, wall
/// clock on real nodes).
pub type Time = u64;

#[derive(Debug, Clone, Serialize, Deserialize)]
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
    pub input: String,
    /// Hex of the true output of `expected_module` on `input`, when known.
    /// Without it, by-hash answers are checked against each other instead.
    #[serde(default)]
    pub expected_stdout: Option<String>,
    pub started: Time,
    pub finished: Option<Time>,
    /// `None`: never answered.
    pub result: Option<Result<Answered, String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answered {
    pub module: ModuleId,
    /// Hex of stdout; `None` when the function itself failed.
    pub stdout: Option<String>,
    pub hit: bool,
}

/// A scheduled fault as it happened, for reports and plots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultEvent {
    pub at: Time,
    /// `partition`, `heal`, `crash`, `restart`, `deploy`, `slow`, `fast`.
    pub kind: String,
    #[serde(default)]
    pub detail: String,
}

impl FaultEvent {
    /// Whether this fault starts a disturbance that a later heal or restart ends.
    pub fn disturbs(&self) -> bool {
        matches!(self.kind.as_str(), "partition" | "crash" | "slow")
    }

    pub fn restores(&self) -> bool {
        matches!(self.kind.as_str(), "heal" | "restart" | "fast")
    }
}

/// A whole run as a file: what happened, where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryFile {
    /// `simulator` or `real nodes`.
    pub source: String,
    pub scenario: String,
    pub nodes: usize,
    #[serde(default)]
    pub seed: Option<u64>,
    pub duration: Time,
    pub faults: Vec<FaultEvent>,
    /// From each heal (or restart) until modules and names agreed everywhere;
    /// `None` if they did not before the next fault or the end.
    pub convergence_after_heal_ms: Vec<Option<Time>>,
    pub calls: Vec<CallRecord>,
}

#[derive(Default)]
pub struct History {
    pub calls: Vec<CallRecord>,
    pub faults: Vec<FaultEvent>,
    pub penalties: u64,
    /// Penalties by the rule broken (`Misbehaviour::kind`).
    pub penalties_by_kind: BTreeMap<String, u64>,
}

impl History {
    pub fn push(&mut self, record: CallRecord) -> usize {
        self.calls.push(record);
        self.calls.len() - 1
    }

    pub fn answer(&mut self, index: usize, now: Time, answer: &Answer) {
        let stdout = match &answer.record.outcome {
            nebula_protocol::Outcome::Success { stdout } => Some(hex::encode(stdout)),
            nebula_protocol::Outcome::Failed(_) => None,
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
    /// By-hash answers whose output differs from the true output (or, where
    /// that is unknown, from another answer to the same call): must be 0
    /// unless a node lies.
    pub by_hash_violations: u64,
    pub by_name_calls: u64,
    /// By-name answers that ran an older module than the newest one published.
    pub by_name_stale: u64,
    /// Latest moment a stale by-name answer was given (ms), if any.
    pub last_stale_at_ms: Option<Time>,
    pub cache_hit_rate: f64,
    /// During partitions, per side (partition group).
    pub partitioned_sides: BTreeMap<u32, SideAvailability>,
    pub median_latency_ms: f64,
    pub p99_latency_ms: f64,
    pub unanswered_at_end: u64,
}

pub fn check(calls: &[CallRecord]) -> Checks {
    let mut checks = Checks {
        calls: calls.len() as u64,
        answered: 0,
        availability: 0.0,
        by_hash_violations: 0,
        by_name_calls: 0,
        by_name_stale: 0,
        last_stale_at_ms: None,
        cache_hit_rate: 0.0,
        partitioned_sides: BTreeMap::new(),
        median_latency_ms: 0.0,
        p99_latency_ms: 0.0,
        unanswered_at_end: 0,
    };
    let mut hits = 0u64;
    let mut latencies = Vec::new();
    // Without a known truth, the first answer to a call stands for it.
    let mut first_answers: BTreeMap<(ModuleId, &str), &str> = BTreeMap::new();
    for call in calls {
        checks.by_name_calls += u64::from(call.by_name);
        let success = match &call.result {
            Some(Ok(answered)) => answered.stdout.as_deref().map(|stdout| (answered, stdout)),
            _ => None,
        };
        if let Some((answered, stdout)) = success {
            checks.answered += 1;
            hits += u64::from(answered.hit);
            latencies.push(call.finished.unwrap_or(call.started) - call.started);
            if !call.by_name {
                let truth = match &call.expected_stdout {
                    Some(expected) => expected.as_str(),
                    None => first_answers.entry((answered.module, call.input.as_str())).or_insert(stdout),
                };
                if answered.module != call.expected_module || stdout != truth {
                    checks.by_hash_violations += 1;
                }
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
    checks.median_latency_ms = percentile(&latencies, 0.5);
    checks.p99_latency_ms = percentile(&latencies, 0.99);
    checks
}

/// The `q` quantile of sorted values (nearest rank), 0 when empty.
pub fn percentile(sorted: &[Time], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 1.0 } else { part as f64 / whole as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(module: ModuleId, input: &str, expected: Option<&str>, answer: &str) -> CallRecord {
        CallRecord {
            node: 0,
            side: 0,
            partitioned: false,
            by_name: false,
            reference: module.to_hex(),
            expected_module: module,
            input: input.into(),
            expected_stdout: expected.map(str::to_owned),
            started: 10,
            finished: Some(12),
            result: Some(Ok(Answered { module, stdout: Some(answer.into()), hit: false })),
        }
    }

    #[test]
    fn a_wrong_answer_is_a_violation_against_the_known_truth() {
        let m = ModuleId::of_bytes(b"m");
        let checks = check(&[call(m, "1", Some("aa"), "aa"), call(m, "1", Some("aa"), "ab")]);
        assert_eq!(checks.by_hash_violations, 1);
    }

    #[test]
    fn without_a_truth_answers_must_agree_with_each_other() {
        let m = ModuleId::of_bytes(b"m");
        let agreeing = check(&[call(m, "1", None, "aa"), call(m, "1", None, "aa"), call(m, "2", None, "bb")]);
        assert_eq!(agreeing.by_hash_violations, 0);
        let disagreeing = check(&[call(m, "1", None, "aa"), call(m, "1", None, "ff")]);
        assert_eq!(disagreeing.by_hash_violations, 1);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values: Vec<Time> = (1..=100).collect();
        assert_eq!(percentile(&values, 0.5), 50.0);
        assert_eq!(percentile(&values, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
