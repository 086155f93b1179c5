//! Scenarios (faults on a schedule, like a Jepsen nemesis), the workload, and
//! the runner that plays them on a [`World`].

use std::collections::BTreeMap;
use std::time::Instant;

use nebula_protocol::{MeshConfig, ModuleId, NameRecord};
use rand::RngExt;
use serde::Serialize;

use crate::executor::Executor;
use crate::history::{CallRecord, Checks, FaultEvent, HistoryFile, check};
pub use crate::world::NetworkModel;
use crate::world::{Time, World};

/// Serialised for scripts/partition-experiment, which plays the same
/// schedule on real nodes (`nebula-sim schedule`).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "argument")]
pub enum Fault {
    /// Splits the nodes into groups by fraction, e.g. [0.5, 0.5].
    Partition(Vec<f64>),
    /// Halves, with one node (in a group of its own) still linked to both.
    Bridge,
    /// Every node joins one of this many groups at random.
    RandomGroups(u32),
    /// This fraction of the nodes becomes slow (see `NetworkModel`).
    Slow(f64),
    /// Every node is fast again.
    Fast,
    Heal,
    /// Crashes this fraction of the nodes (memory lost, disk kept).
    Crash(f64),
    RestartAll,
    /// Each side of the current partition deploys a new module and points `name` at it.
    DeployAndRepoint {
        name: &'static str,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Name {
    SplitBrain,
    IsolatedMinority,
    Flapping,
    CrashRestartStorm,
    LyingNode,
    BridgeNode,
    RandomGroups,
    SlowNodes,
    Churn,
}

pub const ALL: [Name; 9] = [
    Name::SplitBrain,
    Name::IsolatedMinority,
    Name::Flapping,
    Name::CrashRestartStorm,
    Name::LyingNode,
    Name::BridgeNode,
    Name::RandomGroups,
    Name::SlowNodes,
    Name::Churn,
];

impl Name {
    pub fn parse(text: &str) -> Option<Name> {
        ALL.into_iter().find(|name| name.label() == text)
    }

    pub fn label(self) -> &'static str {
        match self {
            Name::SplitBrain => "split-brain",
            Name::IsolatedMinority => "isolated-minority",
            Name::Flapping => "flapping",
            Name::CrashRestartStorm => "crash-restart-storm",
            Name::LyingNode => "lying-node",
            Name::BridgeNode => "bridge-node",
            Name::RandomGroups => "random-groups",
            Name::SlowNodes => "slow-nodes",
            Name::Churn => "churn",
        }
    }

    /// Faults at virtual times (ms); the run lasts `DURATION_MS`.
    pub fn schedule(self) -> Vec<(Time, Fault)> {
        use Fault::*;
        match self {
            Name::SplitBrain => {
                vec![(5_000, Partition(vec![0.5, 0.5])), (7_000, DeployAndRepoint { name: "f0" }), (15_000, Heal)]
            }
            Name::IsolatedMinority => {
                vec![(5_000, Partition(vec![0.8, 0.2])), (7_000, DeployAndRepoint { name: "f1" }), (15_000, Heal)]
            }
            Name::Flapping => (0..6)
                .flat_map(|i| [(5_000 + i * 2_000, Partition(vec![0.5, 0.5])), (6_000 + i * 2_000, Heal)])
                .chain([(5_500, DeployAndRepoint { name: "f2" })])
                .collect(),
            Name::CrashRestartStorm => {
                vec![(5_000, Crash(0.3)), (8_000, RestartAll), (10_000, Crash(0.3)), (13_000, RestartAll)]
            }
            Name::LyingNode => Vec::new(),
            Name::BridgeNode => vec![(5_000, Bridge), (7_000, DeployAndRepoint { name: "f3" }), (15_000, Heal)],
            Name::RandomGroups => vec![
                (5_000, RandomGroups(3)),
                (7_000, DeployAndRepoint { name: "f4" }),
                (10_000, RandomGroups(3)),
                (15_000, Heal),
            ],
            Name::SlowNodes => vec![(5_000, Slow(0.2)), (7_000, DeployAndRepoint { name: "f0" }), (15_000, Fast)],
            // Members leave and come back all through the calls: every second
            // a tenth of the nodes crash, and half a second later they return
            // (owners move each time, and results are handed over).
            Name::Churn => {
                (0..16).flat_map(|i| [(4_000 + i * 1_000, Crash(0.1)), (4_500 + i * 1_000, RestartAll)]).collect()
            }
        }
    }

    /// A lying node makes by-hash answers wrong: by default Nebula trusts the
    /// node that executed (unless results are verified, `--verify-remote`).
    pub fn expects_consistency(self) -> bool {
        self != Name::LyingNode
    }
}

impl Fault {
    /// Kind and detail as recorded in the history.
    fn describe(&self) -> (&'static str, String) {
        match self {
            Fault::Partition(fractions) => ("partition", format!("groups {fractions:?}")),
            Fault::Bridge => ("partition", "halves, node 0 bridging them".into()),
            Fault::RandomGroups(count) => ("partition", format!("{count} random groups")),
            Fault::Slow(fraction) => ("slow", format!("{fraction} of the nodes slow")),
            Fault::Fast => ("fast", String::new()),
            Fault::Heal => ("heal", String::new()),
            Fault::Crash(fraction) => ("crash", format!("{fraction} of the nodes")),
            Fault::RestartAll => ("restart", String::new()),
            Fault::DeployAndRepoint { name } => ("deploy", format!("each side re-points {name}")),
        }
    }
}

pub const DURATION_MS: Time = 25_000;
/// Links per node in the connection graph.
const DEGREE: usize = 8;
pub const MODULES: usize = 20;
const NAMES: usize = 5;
const BY_NAME_SHARE: f64 = 0.3;
/// Popularity skew: module index = MODULES * u^SKEW, u uniform in [0, 1).
const SKEW: i32 = 2;

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `simulator` or `real nodes`.
    pub source: String,
    pub scenario: String,
    pub nodes: usize,
    pub seed: Option<u64>,
    pub checks: Checks,
    /// Ms from each heal (or restart) until modules and names agreed everywhere.
    pub convergence_after_heal_ms: Vec<Option<Time>>,
    /// Counted by the simulator only.
    pub messages_per_call: Option<f64>,
    pub bytes_per_call: Option<f64>,
    pub peer_penalties: Option<u64>,
    /// Penalties by the rule the peer broke (simulator only).
    pub misbehaviours: BTreeMap<String, u64>,
    /// Forged, replayed or misattributed records, and answers to other calls,
    /// refused by the cores (simulator only).
    pub forged_records_rejected: u64,
    /// What the lying node told, by kind (simulator only).
    pub lies_told: BTreeMap<String, u64>,
    pub wall_time_ms: u128,
    pub passed: bool,
}

impl Report {
    /// Judges a recorded history, wherever it came from.
    pub fn of_history(history: &HistoryFile, expects_consistency: bool) -> Report {
        Self::of_calls(history, &history.calls, expects_consistency)
    }

    /// Judges only `calls` (a subset of the history's).
    fn of_calls(history: &HistoryFile, calls: &[CallRecord], expects_consistency: bool) -> Report {
        let checks = check(calls);
        Report {
            source: history.source.clone(),
            scenario: history.scenario.clone(),
            nodes: history.nodes,
            seed: history.seed,
            passed: !expects_consistency || checks.by_hash_violations == 0,
            checks,
            convergence_after_heal_ms: history.convergence_after_heal_ms.clone(),
            messages_per_call: None,
            bytes_per_call: None,
            peer_penalties: None,
            misbehaviours: BTreeMap::new(),
            forged_records_rejected: 0,
            lies_told: BTreeMap::new(),
            wall_time_ms: 0,
        }
    }
}

/// A finished simulation: its report and its history.
pub struct Outcome {
    pub report: Report,
    pub history: HistoryFile,
}

struct Run {
    world: World,
    config: MeshConfig,
    modules: Vec<ModuleId>,
    /// The LWW winner of each name among everything published so far.
    names: BTreeMap<String, NameRecord>,
    next_module: u64,
}

pub fn run(
    scenario: Name,
    nodes: usize,
    seed: u64,
    calls: usize,
    network: NetworkModel,
    executor: Executor,
    config: MeshConfig,
) -> Outcome {
    let wall = Instant::now();
    let verify_remote = config.verify_remote;
    let world = World::new(nodes, seed, network, executor, config.clone(), DEGREE);
    let mut run = Run { world, config, modules: Vec::new(), names: BTreeMap::new(), next_module: 0 };
    run.world.connect_all();
    // Module owners need members that agree on them (a node's few links do
    // not): a big mesh's membership view, as `nebula-sim scale` uses.
    if run.config.module_owners > 0 {
        run.world.use_membership_view();
    }
    if scenario == Name::LyingNode {
        run.world.set_liar(0);
    }
    // The liar (node 0) deploys nothing: a module only a liar holds is never
    // fetched intact anywhere, which would measure its modules, not its lies.
    let first_deployer = usize::from(run.world.has_liar()).min(nodes - 1);
    for i in 0..MODULES {
        let node = run.world.rng.random_range(first_deployer..nodes);
        let module = run.new_module(node);
        if i < NAMES {
            run.publish(node, &format!("f{i}"), module);
        }
        run.modules.push(module);
    }
    let schedule = scenario.schedule();
    for (index, (at, _)) in schedule.iter().enumerate() {
        run.world.schedule_hook(*at, index);
    }
    let spacing = (DURATION_MS - 3_000) as f64 / calls as f64;
    let mut convergence = Vec::new();
    let mut next_call = 0usize;
    let mut awaiting_convergence: Option<Time> = None;
    loop {
        let horizon = (1_000.0 + next_call as f64 * spacing) as Time;
        let until = if next_call < calls { horizon } else { DURATION_MS };
        match run.world.run_until(until) {
            Some(hook) => {
                let fault = schedule[hook].1.clone();
                let kind = fault.describe().0;
                if matches!(kind, "heal" | "restart") {
                    awaiting_convergence = Some(run.world.now);
                }
                // Cut again before converging: that heal never converged.
                if matches!(kind, "partition" | "crash") && awaiting_convergence.take().is_some() {
                    convergence.push(None);
                }
                run.apply(&fault);
                continue;
            }
            None if next_call < calls => {
                let record = run.next_call();
                run.world.schedule_call(run.world.now, record);
                next_call += 1;
            }
            None => break,
        }
        if let Some(started) = awaiting_convergence
            && run.world.converged()
        {
            convergence.push(Some(run.world.now - started));
            awaiting_convergence = None;
        }
    }
    if awaiting_convergence.is_some() {
        convergence.push(None);
    }
    let history = HistoryFile {
        source: "simulator".into(),
        scenario: scenario.label().into(),
        nodes,
        seed: Some(seed),
        duration: DURATION_MS,
        faults: std::mem::take(&mut run.world.history.faults),
        convergence_after_heal_ms: convergence,
        calls: std::mem::take(&mut run.world.history.calls),
    };
    // Nothing protects a liar's own callers; everyone else's answers must
    // stay right when results are verified.
    let liar = run.world.has_liar();
    let honest: Vec<CallRecord> = history.calls.iter().filter(|call| !(liar && call.node == 0)).cloned().collect();
    let mut report = Report::of_calls(&history, &honest, scenario.expects_consistency() || verify_remote > 0);
    let calls = report.checks.calls.max(1) as f64;
    let sent = run.world.counters.all();
    report.messages_per_call = Some(sent.messages as f64 / calls);
    report.bytes_per_call = Some(sent.bytes as f64 / calls);
    report.peer_penalties = Some(run.world.history.penalties);
    let misbehaviours = std::mem::take(&mut run.world.history.penalties_by_kind);
    report.forged_records_rejected =
        ["forged_record", "another_call"].iter().filter_map(|kind| misbehaviours.get(*kind)).sum();
    report.misbehaviours = misbehaviours;
    report.lies_told = run.world.lies.counts();
    report.wall_time_ms = wall.elapsed().as_millis();
    Outcome { report, history }
}

impl Run {
    fn new_module(&mut self, node: usize) -> ModuleId {
        let modelled_size = self.world.rng.random_range(10_000..200_000);
        let (module, size) = self.world.executor.new_module(self.next_module, modelled_size);
        self.next_module += 1;
        self.world.deploy(node, module, size);
        module
    }

    fn publish(&mut self, node: usize, name: &str, module: ModuleId) {
        if let Some(record) = self.world.publish_name(node, name, module) {
            let newer = self.names.get(name).is_none_or(|current| record.supersedes(current));
            if newer {
                self.names.insert(name.to_owned(), record);
            }
        }
    }

    fn apply(&mut self, fault: &Fault) {
        let n = self.world.len();
        let (kind, detail) = fault.describe();
        self.world.history.faults.push(FaultEvent { at: self.world.now, kind: kind.into(), detail });
        match fault {
            Fault::Partition(fractions) => {
                let mut groups = Vec::with_capacity(n);
                for (group, fraction) in fractions.iter().enumerate() {
                    let count = ((fraction * n as f64).round() as usize).max(1);
                    groups.extend(std::iter::repeat_n(group as u32, count));
                }
                groups.resize(n, fractions.len() as u32 - 1);
                self.world.set_groups(groups);
            }
            Fault::Bridge => {
                let half = n / 2;
                let groups = (0..n).map(|node| if node == 0 { 2 } else { u32::from(node > half) }).collect();
                self.world.set_groups(groups);
                self.world.set_bridge(0, true);
            }
            Fault::RandomGroups(count) => {
                let groups = (0..n).map(|_| self.world.rng.random_range(0..*count)).collect();
                self.world.set_groups(groups);
            }
            Fault::Slow(fraction) => {
                let count = ((fraction * n as f64) as usize).max(1);
                for _ in 0..count {
                    let node = self.world.rng.random_range(0..n);
                    self.world.set_slow(node, true);
                }
            }
            Fault::Fast => (0..n).for_each(|node| self.world.set_slow(node, false)),
            Fault::Heal => {
                self.world.set_bridge(0, false);
                self.world.set_groups(vec![0; n]);
            }
            Fault::Crash(fraction) => {
                let count = ((fraction * n as f64) as usize).max(1);
                for _ in 0..count {
                    let node = self.world.rng.random_range(0..n);
                    if self.world.is_alive(node) {
                        self.world.crash(node);
                    }
                }
            }
            Fault::RestartAll => {
                for node in 0..n {
                    if !self.world.is_alive(node) {
                        self.world.restart(node, self.config.clone());
                    }
                }
            }
            Fault::DeployAndRepoint { name } => {
                let groups: Vec<u32> = (0..n).map(|node| self.world.group(node)).collect();
                let mut sides: Vec<u32> = groups.clone();
                sides.sort();
                sides.dedup();
                for side in sides {
                    let members: Vec<usize> = (0..n).filter(|&node| groups[node] == side).collect();
                    let node = members[self.world.rng.random_range(0..members.len())];
                    let module = self.new_module(node);
                    self.publish(node, name, module);
                }
            }
        }
    }

    fn next_call(&mut self) -> CallRecord {
        let n = self.world.len();
        let node = self.world.rng.random_range(0..n);
        let by_name = self.world.rng.random_bool(BY_NAME_SHARE);
        let input = self.world.rng.random_range(0..self.world.executor.input_range()).to_string();
        let (reference, expected_module) = if by_name {
            let name = format!("f{}", self.world.rng.random_range(0..NAMES));
            let expected = self.names[&name].module;
            (name, expected)
        } else {
            let u: f64 = self.world.rng.random_range(0.0..1.0);
            let module = self.modules[((self.modules.len() as f64) * u.powi(SKEW)) as usize];
            (module.to_hex(), module)
        };
        let partitioned = (0..n).any(|other| self.world.group(other) != 0);
        let expected_stdout =
            (!by_name).then(|| hex::encode(self.world.executor.truth(&expected_module, input.as_bytes())));
        CallRecord {
            node,
            side: self.world.group(node),
            partitioned,
            by_name,
            reference,
            expected_module,
            input,
            expected_stdout,
            started: self.world.now,
            finished: None,
            result: None,
        }
    }
}
