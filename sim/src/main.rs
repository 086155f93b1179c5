//! `nebula-sim`: runs the mesh core of every node over a simulated network
//! with faults, and checks the claims (by-hash consistency, availability per
//! side of a partition, name staleness, convergence after heal).

mod history;
mod scenario;
mod world;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
        /// Write the JSON report here.
        #[arg(long)]
        json: Option<PathBuf>,
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
    },
    /// List the scenarios.
    List,
}

fn scenario(text: &str) -> anyhow::Result<Name> {
    Name::parse(text).ok_or_else(|| {
        let known: Vec<&str> = ALL.iter().map(|name| name.label()).collect();
        anyhow::anyhow!("unknown scenario '{text}'; known: {}", known.join(", "))
    })
}

fn summary(report: &Report) {
    let checks = &report.checks;
    println!("scenario {} · {} nodes · seed {}", report.scenario, report.nodes, report.seed);
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
    for (side, availability) in &checks.partitioned_sides {
        println!(
            "  during partition, side {side}: {}/{} answered ({:.1}%), failures {:?}",
            availability.answered,
            availability.calls,
            100.0 * availability.availability,
            availability.failures
        );
    }
    println!("  convergence after heal/restart (virtual ms): {:?}", report.convergence_after_heal_ms);
    println!(
        "  messages/call {:.1}  bytes/call {:.0}  penalties {}",
        report.messages_per_call, report.bytes_per_call, report.peer_penalties
    );
    println!("  wall time {} ms  → {}", report.wall_time_ms, if report.passed { "PASS" } else { "FAIL" });
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run { scenario: name, nodes, seed, calls, json } => {
            let report = scenario::run(scenario(&name)?, nodes, seed, calls);
            summary(&report);
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
                println!("report written to {}", path.display());
            }
            if !report.passed {
                std::process::exit(1);
            }
        }
        Command::Sweep { seeds, nodes, calls, scenario: only } => {
            let scenarios = match only {
                Some(name) => vec![scenario(&name)?],
                None => ALL.to_vec(),
            };
            let mut failing = Vec::new();
            let runs = scenarios.len() as u64 * seeds;
            for name in scenarios {
                for seed in 1..=seeds {
                    if !scenario::run(name, nodes, seed, calls).passed {
                        failing.push(format!("{} --seed {seed}", name.label()));
                    }
                }
            }
            println!("{runs} runs, {} failing", failing.len());
            for run in &failing {
                println!("  nebula-sim run --scenario {run} --nodes {nodes} --calls {calls}");
            }
            if !failing.is_empty() {
                std::process::exit(1);
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
