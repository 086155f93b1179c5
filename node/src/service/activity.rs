//! What a node has been doing lately, for the dashboard: calls per second
//! over the last two minutes, the most recent calls, and per-module counters.
//! Small and bounded; kept in memory only (it restarts empty).

use std::collections::{HashMap, VecDeque};

use nebula_protocol::{CacheStatus, ModuleId, Reply};
use serde::Serialize;

/// Seconds of per-second counts kept.
pub const HISTORY_SECONDS: usize = 120;
/// Calls kept in the recent-calls list.
pub const RECENT_CALLS: usize = 20;
/// Bytes of a call's input kept for display.
pub const INPUT_PREVIEW_BYTES: usize = 80;

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct SecondCounts {
    /// Unix second.
    pub second: u64,
    pub calls: u32,
    pub hits: u32,
    pub executions: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecentCall {
    pub unix_ms: u64,
    /// What the caller asked for, as given (user input: escape before display).
    pub reference: String,
    /// The start of the input, lossily decoded (user input as well).
    pub input_preview: String,
    pub input_bytes: usize,
    pub module: Option<ModuleId>,
    /// `hit`, `miss` or `joined`; empty when the call failed before a module was found.
    pub cache: &'static str,
    /// `success` or the failure's kind.
    pub outcome: &'static str,
    pub micros: u64,
    pub executed_by: String,
    /// True for calls forwarded here by a peer.
    pub forwarded: bool,
}

/// Counters of one module since the node started.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ModuleCounters {
    pub calls: u64,
    pub hits: u64,
    /// Executions on this node.
    pub executions: u64,
    pub fuel_used: u64,
    /// Time spent running it on this node, in microseconds.
    pub run_us: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ActivitySnapshot {
    /// Oldest first, one entry per second, gaps filled with zeros; the last is the current second.
    pub per_second: Vec<SecondCounts>,
    /// Newest first.
    pub recent: Vec<RecentCall>,
    pub modules: HashMap<ModuleId, ModuleCounters>,
    pub total_calls: u64,
    pub total_hits: u64,
}

/// A call as the caller made it.
pub struct CallSeen<'a> {
    pub reference: &'a str,
    /// The whole input (only its first bytes are kept).
    pub input: &'a [u8],
    /// 0 for a local caller, more for a call forwarded by a peer.
    pub hops: u8,
}

#[derive(Default)]
pub struct Activity {
    seconds: VecDeque<SecondCounts>,
    recent: VecDeque<RecentCall>,
    modules: HashMap<ModuleId, ModuleCounters>,
    total_calls: u64,
    total_hits: u64,
}

impl Activity {
    fn second(&mut self, now_s: u64) -> &mut SecondCounts {
        if self.seconds.back().is_none_or(|last| last.second < now_s) {
            self.seconds.push_back(SecondCounts { second: now_s, ..SecondCounts::default() });
            while self.seconds.len() > HISTORY_SECONDS {
                self.seconds.pop_front();
            }
        }
        // A clock that stepped back counts into the newest second.
        self.seconds.back_mut().expect("just pushed")
    }

    pub fn record_call(&mut self, now_ms: u64, call: CallSeen, reply: &Reply, micros: u64) {
        let CallSeen { reference, input, hops } = call;
        let (module, cache, outcome, executed_by) = match reply {
            Ok(answer) => {
                let cache = match answer.cache {
                    CacheStatus::Hit => "hit",
                    CacheStatus::Miss => "miss",
                    CacheStatus::Joined => "joined",
                };
                (Some(answer.record.module), cache, answer.record.outcome.kind(), answer.record.executed_by.as_str())
            }
            Err(error) => (None, "", error.kind(), ""),
        };
        let hit = cache == "hit";
        let second = self.second(now_ms / 1000);
        second.calls += 1;
        second.hits += u32::from(hit);
        self.total_calls += 1;
        self.total_hits += u64::from(hit);
        if let Some(module) = module {
            let counters = self.modules.entry(module).or_default();
            counters.calls += 1;
            counters.hits += u64::from(hit);
        }
        let preview = &input[..input.len().min(INPUT_PREVIEW_BYTES)];
        // The oldest entry's strings are reused once the list is full: no
        // allocation per call in the steady state.
        let mut entry = match self.recent.len() >= RECENT_CALLS {
            true => self.recent.pop_back().expect("the list is full"),
            false => RecentCall {
                unix_ms: 0,
                reference: String::new(),
                input_preview: String::new(),
                input_bytes: 0,
                module: None,
                cache: "",
                outcome: "",
                micros: 0,
                executed_by: String::new(),
                forwarded: false,
            },
        };
        entry.reference.clear();
        let kept = reference.char_indices().nth(100).map_or(reference.len(), |(end, _)| end);
        entry.reference.push_str(&reference[..kept]);
        entry.input_preview.clear();
        entry.input_preview.push_str(&String::from_utf8_lossy(preview));
        entry.executed_by.clear();
        entry.executed_by.push_str(executed_by);
        entry.unix_ms = now_ms;
        entry.input_bytes = input.len();
        entry.module = module;
        entry.cache = cache;
        entry.outcome = outcome;
        entry.micros = micros;
        entry.forwarded = hops > 0;
        self.recent.push_front(entry);
        self.recent.truncate(RECENT_CALLS);
    }

    pub fn record_execution(&mut self, now_ms: u64, module: ModuleId, fuel_used: u64, run_us: u64) {
        self.second(now_ms / 1000).executions += 1;
        let counters = self.modules.entry(module).or_default();
        counters.executions += 1;
        counters.fuel_used += fuel_used;
        counters.run_us += run_us;
    }

    pub fn snapshot(&self, now_ms: u64) -> ActivitySnapshot {
        let now_s = now_ms / 1000;
        let first = now_s + 1 - HISTORY_SECONDS as u64;
        let mut per_second: Vec<SecondCounts> =
            (first..=now_s).map(|second| SecondCounts { second, ..SecondCounts::default() }).collect();
        for counts in &self.seconds {
            if let Some(slot) = counts.second.checked_sub(first).and_then(|i| per_second.get_mut(i as usize)) {
                *slot = *counts;
            }
        }
        ActivitySnapshot {
            per_second,
            recent: self.recent.iter().cloned().collect(),
            modules: self.modules.clone(),
            total_calls: self.total_calls,
            total_hits: self.total_hits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nebula_protocol::CallError;

    #[test]
    fn counts_per_second_with_gaps_and_keeps_recent_calls_bounded() {
        let mut activity = Activity::default();
        let failed: Reply = Err(CallError::NameNotFound { name: "x".into() });
        for i in 0..30u64 {
            let call = CallSeen { reference: "<b>x</b>", input: b"input", hops: 0 };
            activity.record_call(1_000_000 + i * 100, call, &failed, 5);
        }
        activity.record_execution(1_005_000, ModuleId::of_bytes(b"m"), 7, 3);
        let snapshot = activity.snapshot(1_010_000);
        assert_eq!(snapshot.per_second.len(), HISTORY_SECONDS);
        let last = snapshot.per_second.last().unwrap();
        assert_eq!(last.second, 1010);
        let calls: u32 = snapshot.per_second.iter().map(|s| s.calls).sum();
        assert_eq!(calls, 30);
        assert_eq!(snapshot.per_second.iter().find(|s| s.second == 1000).unwrap().calls, 10);
        assert_eq!(snapshot.per_second.iter().find(|s| s.second == 1005).unwrap().executions, 1);
        assert_eq!(snapshot.recent.len(), RECENT_CALLS);
        assert_eq!(snapshot.recent[0].reference, "<b>x</b>");
        assert_eq!(snapshot.total_calls, 30);
        assert_eq!(snapshot.modules[&ModuleId::of_bytes(b"m")].fuel_used, 7);
        // Two minutes later, the old seconds have scrolled out.
        assert_eq!(activity.snapshot(1_200_000).per_second.iter().map(|s| s.calls).sum::<u32>(), 0);
    }
}
