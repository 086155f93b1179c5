//! `nebula-sim`: runs the mesh core of every node over a simulated network
//! with faults, and checks the claims (by-hash consistency, availability per
//! side of a partition, name staleness, convergence after heal).

mod executor;
mod history;
mod liar;
mod plot;
mod scale;
mod scenario;
mod world;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use nebula_protocol::MeshConfig;

use executor::Executor;
use history::HistoryFile;
use scenario::{ALL, Name, Report};

#[derive(Parser)]
#[command(name = "nebula-sim", about = "Deterministic partition simulator for the Nebula mesh core")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario; the same seed replays the same run.
    Run {
        #[arg(long, default_value = "split-brain")]
        scenario: String,
        #[arg(long, default_value_t = 50)]
        nodes: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value_t = 5_000)]
        calls: usize,
        #[command(flatten)]
        network: Faults,
        /// Run the real guest functions from this directory (e.g.
        /// target/functions) instead of modelled ones; needs `--features wasm`.
        #[arg(long)]
        wasm: Option<PathBuf>,
        #[command(flatten)]
        outputs: Outputs,
    },
    /// Judge a recorded history (e.g. from scripts/partition-experiment on
    /// real nodes) with the simulator's checkers.
    Check {
        /// The history file (JSON).
        history: PathBuf,
        /// Do not count by-hash violations as a failure (a lying node ran).
        #[arg(long)]
        liar: bool,
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write an SVG plot here.
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// Run seeds 1..=K of every scenario (or one) and list the failing seeds.
    Sweep {
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        #[arg(long, default_value_t = 10)]
        nodes: usize,
        #[arg(long, default_value_t = 300)]
        calls: usize,
        #[arg(long)]
        scenario: Option<String>,
        #[command(flatten)]
        network: Faults,
    },
    /// Measure how calls, background traffic and stored results grow with
    /// the mesh's size (fault-free).
    Scale {
        /// `view`: 8 links per node and a membership view (a big mesh);
        /// `full`: every node linked to every other (a lab mesh).
        #[arg(long, value_enum, default_value = "view")]
        topology: scale::Topology,
        /// Mesh sizes to run, one after another.
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
        sizes: Vec<usize>,
        #[arg(long, default_value_t = 20_000)]
        calls: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Share of the calls issued as one of an identical pair (at two nodes at once).
        #[arg(long, default_value_t = 0.2, value_parser = probability)]
        duplicate_share: f64,
        /// Place each module on this many owners, fetched where calls need
        /// it (`module_owners`); 0 replicates every module everywhere.
        #[arg(long, default_value_t = 0)]
        module_owners: u8,
        /// Write the per-size reports here (a JSON list).
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// List the scenarios.
    List,
    /// Print a scenario's fault schedule as JSON (what scripts/partition-experiment plays).
    Schedule {
        #[arg(long)]
        scenario: String,
    },
}

/// Message faults on every link (on top of the scenario's), and the trust policy.
#[derive(clap::Args, Clone, Copy)]
struct Faults {
    /// Chance that a message is lost.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    loss: f64,
    /// Chance that a message arrives twice.
    #[arg(long, default_value_t = 0.0, value_parser = probability)]
    duplicate: f64,
    /// Trust a peer's result only once this many other executors agree
    /// (the node's `--verify-remote`).
    #[arg(long, default_value_t = 0)]
    verify_remote: u8,
    /// Place each module on this many owners, fetched where calls need it
    /// (the node's `module_owners`); 0 replicates every module everywhere.
    #[arg(long, default_value_t = 0)]
    module_owners: u8,
}

impl Faults {
    fn model(self) -> scenario::NetworkModel {
        scenario::NetworkModel { loss: self.loss, duplicate: self.duplicate, ..Default::default() }
    }

    /// The nodes' settings: the defaults, with this trust policy and module placement.
    fn config(self) -> MeshConfig {
        MeshConfig { verify_remote: self.verify_remote, module_owners: self.module_owners, ..MeshConfig::default() }
    }
}

fn probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("'{text}' is not a probability between 0 and 1")),
    }
}

#[derive(clap::Args)]
struct Outputs {
    /// Write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the history of every call here (the format `check` reads).
    #[arg(long)]
    history: Option<PathBuf>,
    /// Write an SVG plot (availability and latency over time) here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

impl Outputs {
    fn write(&self, report: &Report, history: &HistoryFile) -> anyhow::Result<()> {
        let files = [
            (&self.json, "report", serde_json::to_string_pretty(report)?),
            (
                &self.history,
                "history",
                if self.history.is_some() { serde_json::to_string(history)? } else { String::new() },
            ),
            (&self.svg, "plot", if self.svg.is_some() { plot::svg(history) } else { String::new() }),
        ];
        for (path, what, text) in files {
            if let Some(path) = path {
                std::fs::write(path, text).map_err(|error| anyhow::anyhow!("writing {}: {error}", path.display()))?;
                println!("{what} written to {}", path.display());
            }
        }
        Ok(())
    }
}

fn scenario(text: &str) -> anyhow::Result<Name> {
    Name::parse(text).ok_or_else(|| {
        let known: Vec<&str> = ALL.iter().map(|name| name.label()).collect();
        anyhow::anyhow!("unknown scenario '{text}'; known: {}", known.join(", "))
    })
}

fn summary(report: &Report) {
    let checks = &report.checks;
    let seed = report.seed.map(|seed| format!(" · seed {seed}")).unwrap_or_default();
    println!("scenario {} · {} nodes · {}{seed}", report.scenario, report.nodes, report.source);
    println!(
        "  calls {}  answered {} ({:.1}%)  cache hits {:.1}%",
        checks.calls,
        checks.answered,
        100.0 * checks.availability,
        100.0 * checks.cache_hit_rate
    );
    println!("  by-hash consistency violations: {}", checks.by_hash_violations);
    println!(
        "  by-name: {} calls, {} stale answers, last stale at {:?} ms",
        checks.by_name_calls, checks.by_name_stale, checks.last_stale_at_ms
    );
    println!("  latency p50 {} ms  p99 {} ms", checks.median_latency_ms, checks.p99_latency_ms);
    for (side, availability) in &checks.partitioned_sides {
        println!(
            "  during partition, side {side}: {}/{} answered ({:.1}%), failures {:?}",
            availability.answered,
            availability.calls,
            100.0 * availability.availability,
            availability.failures
        );
    }
    println!("  convergence after heal/restart (ms): {:?}", report.convergence_after_heal_ms);
    if let (Some(messages), Some(bytes), Some(penalties)) =
        (report.messages_per_call, report.bytes_per_call, report.peer_penalties)
    {
        println!("  messages/call {messages:.1}  bytes/call {bytes:.0}  penalties {penalties}");
        if !report.misbehaviours.is_empty() {
            println!("  penalties by misbehaviour: {:?}", report.misbehaviours);
        }
        if !report.lies_told.is_empty() {
            println!(
                "  the liar told {:?}; forged records rejected: {}",
                report.lies_told, report.forged_records_rejected
            );
        }
        println!("  wall time {} ms", report.wall_time_ms);
    }
    println!("  → {}", if report.passed { "PASS" } else { "FAIL" });
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run { scenario: name, nodes, seed, calls, network, wasm, outputs } => {
            let executor = match wasm {
                Some(dir) => Executor::wasm(&dir)?,
                None => Executor::Modelled,
            };
            let run = scenario::run(scenario(&name)?, nodes, seed, calls, network.model(), executor, network.config());
            summary(&run.report);
            outputs.write(&run.report, &run.history)?;
            if !run.report.passed {
                std::process::exit(1);
            }
        }
        Command::Check { history, liar, json, svg } => {
            let text =
                std::fs::read(&history).map_err(|error| anyhow::anyhow!("reading {}: {error}", history.display()))?;
            let history: HistoryFile = serde_json::from_slice(&text)
                .map_err(|error| anyhow::anyhow!("{} is not a history file: {error}", history.display()))?;
            let report = Report::of_history(&history, !liar);
            summary(&report);
            Outputs { json, history: None, svg }.write(&report, &history)?;
            if !report.passed {
                std::process::exit(1);
            }
        }
        Command::Sweep { seeds, nodes, calls, scenario: only, network } => {
            let scenarios = match only {
                Some(name) => vec![scenario(&name)?],
                None => ALL.to_vec(),
            };
            let mut failing = Vec::new();
            let runs = scenarios.len() as u64 * seeds;
            for name in scenarios {
                for seed in 1..=seeds {
                    let run =
                        scenario::run(name, nodes, seed, calls, network.model(), Executor::Modelled, network.config());
                    if !run.report.passed {
                        failing.push(format!("{} {seed} {nodes} {calls}", name.label()));
                    }
                }
            }
            println!("{runs} runs, {} failing", failing.len());
            if !failing.is_empty() {
                println!("replay one with `nebula-sim run --scenario S --seed N --nodes N --calls N`;");
                println!("once fixed, add its line to sim/tests/regressions.txt:");
            }
            for run in &failing {
                println!("  {run}");
            }
            if !failing.is_empty() {
                std::process::exit(1);
            }
        }
        Command::Schedule { scenario: name } => {
            let faults: Vec<serde_json::Value> = scenario(&name)?
                .schedule()
                .into_iter()
                .map(|(at, fault)| serde_json::json!({ "at": at, "fault": fault }))
                .collect();
            let schedule = serde_json::json!({ "duration_ms": scenario::DURATION_MS, "faults": faults });
            println!("{schedule}");
        }
        Command::Scale { topology, sizes, calls, seed, duplicate_share, module_owners, json } => {
            let settings = scale::Settings { topology, calls, seed, duplicate_share, module_owners };
            let mut reports = Vec::new();
            for nodes in sizes {
                reports.push(scale::run(nodes, &settings)?);
                eprintln!("{nodes} nodes done in {} ms", reports.last().map_or(0, |r| r.wall_time_ms));
            }
            scale::print(&reports);
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&reports)?)
                    .map_err(|error| anyhow::anyhow!("writing {}: {error}", path.display()))?;
                println!("report written to {}", path.display());
            }
        }
        Command::List => {
            for name in ALL {
                println!("{}", name.label());
            }
        }
    }
    Ok(())
}
