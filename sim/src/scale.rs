//! `nebula-sim scale`: how the mesh's costs grow with its size. Each size is
//! a fault-free run, on a full mesh (every node connected to every other, as
//! in a lab, `--topology full`) or, by default, on links of bounded degree
//! with a membership view (`--topology view`: every node knows every member
//! and dials owners on demand, as a big mesh must), so every node agrees on
//! every key's owners. Modules are
//! deployed and replicated first; then calls by hash, mostly distinct, some
//! issued as identical pairs at two nodes at once (the owner must join them
//! and execute once).

use std::collections::BTreeMap;
use std::time::Instant;

use nebula_protocol::{MeshConfig, ModuleId};
use rand::RngExt;
use serde::Serialize;

use crate::executor::Executor;
use crate::history::{CallRecord, check};
use crate::scenario::{DURATION_MS, MODULES};
use crate::world::{NetworkModel, Time, Traffic, World};

/// Modules are deployed one after another, this far apart: each replica
/// tells every peer it holds the module, so on a full mesh a deploy costs
/// about N² messages, and all deploys at once would hold them all in flight.
const DEPLOY_SPACING_MS: Time = 50;
/// Modules are replicated everywhere by then.
const WARM_UP_MS: Time = 2_000;
/// Calls start at the warm-up's end and are spread until here; the rest of
/// `DURATION_MS` lets the last ones (and their replicas) land.
const CALLS_END_MS: Time = DURATION_MS - 3_000;
/// Inputs are drawn from this range: calls are distinct unless paired.
const INPUTS: u64 = 1 << 40;

/// How the simulated nodes are connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Topology {
    /// Every node linked to every other; members are the links.
    Full,
    /// A few links per node; members from a shared membership view.
    View,
}

/// Links per node with `Topology::View`, as in `scenario::run`.
const VIEW_DEGREE: usize = 8;

pub struct Settings {
    pub topology: Topology,
    pub calls: usize,
    pub seed: u64,
    /// Share of the calls issued as one of an identical pair.
    pub duplicate_share: f64,
    /// `MeshConfig::module_owners`: 0 replicates every module everywhere
    /// before the calls; k places each on its k owners, and the nodes that
    /// run it fetch it when a call needs it.
    pub module_owners: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct SizeReport {
    pub nodes: usize,
    pub topology: &'static str,
    pub calls: u64,
    pub call_messages_per_call: f64,
    pub call_bytes_per_call: f64,
    /// Where modules lived: "everywhere" or "on k owners".
    pub modules_placed: String,
    /// Module messages (slices asked for and sent) over the whole run, and
    /// those during the calls (fetched because a call needed the module).
    pub module_messages: u64,
    pub module_bytes: u64,
    pub module_messages_during_calls: u64,
    /// Announcements that a node holds a module (`tell-module`), whole run.
    pub module_tells: u64,
    /// Modules held per node at the end (of `MODULES`).
    pub modules_held_per_node_mean: f64,
    pub background_messages_per_node_per_s: f64,
    pub background_bytes_per_node_per_s: f64,
    /// Messages of every kind (responses with their requests), for what dominates.
    pub messages_by_kind: BTreeMap<&'static str, u64>,
    pub executions: u64,
    pub distinct_keys_executed: u64,
    pub executions_per_distinct_key: f64,
    pub max_execution_share: f64,
    pub stored_results_total: u64,
    pub distinct_results: u64,
    pub results_per_node_mean: f64,
    pub by_hash_violations: u64,
    pub availability: f64,
    /// Calls not answered with an output, by why.
    pub failures: BTreeMap<String, u64>,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: Time,
    pub simulated_ms: Time,
    pub wall_time_ms: u128,
}

pub fn run(nodes: usize, settings: &Settings) -> anyhow::Result<SizeReport> {
    anyhow::ensure!(nodes >= 2, "a mesh needs at least 2 nodes, not {nodes}");
    let wall = Instant::now();
    let config = MeshConfig { module_owners: settings.module_owners, ..MeshConfig::default() };
    let degree = match settings.topology {
        Topology::Full => nodes - 1,
        Topology::View => VIEW_DEGREE.min(nodes - 1),
    };
    let mut world = World::new(nodes, settings.seed, NetworkModel::default(), Executor::Modelled, config, degree);
    world.connect_all();
    if settings.topology == Topology::View {
        world.use_membership_view();
    }
    let mut modules: Vec<ModuleId> = Vec::with_capacity(MODULES);
    for index in 0..MODULES as u64 {
        world.run_until(index * DEPLOY_SPACING_MS);
        let size = world.rng.random_range(10_000..200_000);
        let (module, size) = world.executor.new_module(index, size);
        let node = world.rng.random_range(0..nodes);
        world.deploy(node, module, size);
        modules.push(module);
    }
    world.run_until(WARM_UP_MS);
    // Everywhere, or on their owners (`World::converged` knows which).
    anyhow::ensure!(world.converged(), "{nodes} nodes: modules not in place after {WARM_UP_MS} ms");
    let module_messages_before_calls = world.counters.total(Traffic::Module).messages;
    schedule_calls(&mut world, &modules, settings);
    world.run_until(DURATION_MS);
    Ok(report(&world, settings, module_messages_before_calls, wall))
}

/// Every call, at its time: one at a random node, or (a pair) the same call
/// at two different nodes at the same instant.
fn schedule_calls(world: &mut World, modules: &[ModuleId], settings: &Settings) {
    let n = world.len();
    // A step is a pair with chance q: then 2q / (1 + q) of the calls are paired.
    let pair_chance = settings.duplicate_share / (2.0 - settings.duplicate_share);
    let spacing = (CALLS_END_MS - WARM_UP_MS) as f64 / settings.calls as f64;
    let mut issued = 0;
    while issued < settings.calls {
        let at = WARM_UP_MS + (issued as f64 * spacing) as Time;
        let module = modules[world.rng.random_range(0..modules.len())];
        let input = world.rng.random_range(0..INPUTS).to_string();
        let first = world.rng.random_range(0..n);
        let mut nodes = vec![first];
        if issued + 1 < settings.calls && world.rng.random_bool(pair_chance) {
            nodes.push((first + world.rng.random_range(1..n)) % n);
        }
        let expected_stdout = Some(hex::encode(world.executor.truth(&module, input.as_bytes())));
        for node in nodes {
            let record = CallRecord {
                node,
                side: 0,
                partitioned: false,
                by_name: false,
                reference: module.to_hex(),
                expected_module: module,
                input: input.clone(),
                expected_stdout: expected_stdout.clone(),
                started: at,
                finished: None,
                result: None,
            };
            world.schedule_call(at, record);
            issued += 1;
        }
    }
}

fn report(world: &World, settings: &Settings, module_messages_before_calls: u64, wall: Instant) -> SizeReport {
    let nodes = world.len();
    let checks = check(&world.history.calls);
    let counters = &world.counters;
    let calls = checks.calls.max(1) as f64;
    let (call, module, background) =
        (counters.total(Traffic::Call), counters.total(Traffic::Module), counters.total(Traffic::Background));
    let node_seconds = nodes as f64 * world.now as f64 / 1000.0;
    let executions: u64 = counters.executions.iter().sum();
    let distinct_keys = counters.executed_keys.len() as u64;
    let fair_share = executions as f64 / nodes as f64;
    let busiest = counters.executions.iter().copied().max().unwrap_or(0);
    let (stored, distinct_results) = world.stored_results();
    SizeReport {
        nodes,
        topology: match settings.topology {
            Topology::Full => "full mesh",
            Topology::View => "8 links per node, membership view",
        },
        calls: checks.calls,
        call_messages_per_call: call.messages as f64 / calls,
        call_bytes_per_call: call.bytes as f64 / calls,
        modules_placed: match settings.module_owners {
            0 => "everywhere".to_owned(),
            k => format!("on {k} owners"),
        },
        module_messages: module.messages,
        module_bytes: module.bytes,
        module_messages_during_calls: module.messages - module_messages_before_calls,
        module_tells: counters.traffic.get(&(Traffic::Background, "tell-module")).map_or(0, |tally| tally.messages),
        modules_held_per_node_mean: world.modules_held() as f64 / nodes as f64,
        background_messages_per_node_per_s: background.messages as f64 / node_seconds,
        background_bytes_per_node_per_s: background.bytes as f64 / node_seconds,
        messages_by_kind: counters.traffic.iter().map(|((_, kind), tally)| (*kind, tally.messages)).collect(),
        executions,
        distinct_keys_executed: distinct_keys,
        executions_per_distinct_key: executions as f64 / distinct_keys.max(1) as f64,
        max_execution_share: if fair_share > 0.0 { busiest as f64 / fair_share } else { 0.0 },
        stored_results_total: stored as u64,
        distinct_results: distinct_results as u64,
        results_per_node_mean: stored as f64 / nodes as f64,
        by_hash_violations: checks.by_hash_violations,
        availability: checks.availability,
        failures: failures(&world.history.calls),
        latency_p50_ms: checks.median_latency_ms,
        latency_p99_ms: checks.p99_latency_ms,
        latency_max_ms: world.history.calls.iter().filter_map(latency).max().unwrap_or(0),
        simulated_ms: world.now,
        wall_time_ms: wall.elapsed().as_millis(),
    }
}

/// The reports as a markdown table, then one grep-able line per size.
pub fn print(reports: &[SizeReport]) {
    let topologies: std::collections::BTreeSet<&str> = reports.iter().map(|r| r.topology).collect();
    let topologies: Vec<&str> = topologies.into_iter().collect();
    println!("{}, fault-free, calls by hash.\n", topologies.join("; "));
    println!(
        "| nodes | calls | call msgs/call | call bytes/call | module msgs | background msgs/node/s | background bytes/node/s \
         | executions/distinct key | max execution share | stored results | distinct results | results/node \
         | by-hash violations | availability | wall ms |"
    );
    println!("|{}", "---:|".repeat(15));
    for r in reports {
        println!(
            "| {} | {} | {:.2} | {:.0} | {} | {:.1} | {:.0} | {:.3} | {:.2} | {} | {} | {:.1} | {} | {:.4} | {} |",
            r.nodes,
            r.calls,
            r.call_messages_per_call,
            r.call_bytes_per_call,
            r.module_messages,
            r.background_messages_per_node_per_s,
            r.background_bytes_per_node_per_s,
            r.executions_per_distinct_key,
            r.max_execution_share,
            r.stored_results_total,
            r.distinct_results,
            r.results_per_node_mean,
            r.by_hash_violations,
            r.availability,
            r.wall_time_ms,
        );
    }
    println!();
    for r in reports {
        let kinds: Vec<String> = r.messages_by_kind.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
        println!("messages by kind at {} nodes: {}", r.nodes, kinds.join(", "));
        println!(
            "latency at {} nodes: p50 {} ms, p99 {} ms, max {} ms",
            r.nodes, r.latency_p50_ms, r.latency_p99_ms, r.latency_max_ms
        );
        println!(
            "modules at {} nodes, {}: {} module messages ({} during the calls), {} tell-module, {:.1} modules held per node",
            r.nodes,
            r.modules_placed,
            r.module_messages,
            r.module_messages_during_calls,
            r.module_tells,
            r.modules_held_per_node_mean
        );
        if !r.failures.is_empty() {
            println!("calls without an output at {} nodes: {:?}", r.nodes, r.failures);
        }
    }
    for r in reports {
        println!("scale {} call_messages_per_call {:.3}", r.nodes, r.call_messages_per_call);
        println!("scale {} module_messages {} ({})", r.nodes, r.module_messages, r.modules_placed);
    }
}

fn failures(calls: &[CallRecord]) -> BTreeMap<String, u64> {
    let mut failures = BTreeMap::new();
    for call in calls {
        let reason = match &call.result {
            Some(Ok(answered)) if answered.stdout.is_some() => continue,
            Some(Ok(_)) => "function failed".to_owned(),
            Some(Err(reason)) => reason.clone(),
            None => "unanswered at the end".to_owned(),
        };
        *failures.entry(reason).or_default() += 1;
    }
    failures
}

fn latency(call: &CallRecord) -> Option<Time> {
    Some(call.finished? - call.started)
}
