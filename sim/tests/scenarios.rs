//! The simulator's claims, checked on every test run.

use std::process::Command;

fn sim(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_nebula-sim")).args(args).output().unwrap();
    (output.status.success(), String::from_utf8_lossy(&output.stdout).into_owned())
}

fn report(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", path.to_str().unwrap()]);
    sim(&all);
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

#[test]
fn a_seed_replays_exactly() {
    let args = ["--scenario", "flapping", "--nodes", "15", "--seed", "42", "--calls", "800"];
    let (mut first, mut second) = (report(&args), report(&args));
    for run in [&mut first, &mut second] {
        run.as_object_mut().unwrap().remove("wall_time_ms");
    }
    assert_eq!(first, second);
    let other = report(&["--scenario", "flapping", "--nodes", "15", "--seed", "43", "--calls", "800"]);
    assert_ne!(first["checks"], other["checks"], "a different seed is a different run");
}

#[test]
fn split_brain_keeps_by_hash_calls_consistent_and_available_on_both_sides() {
    let run = report(&["--scenario", "split-brain", "--nodes", "20", "--seed", "7", "--calls", "2000"]);
    let checks = &run["checks"];
    assert_eq!(checks["by_hash_violations"], 0);
    let sides = checks["partitioned_sides"].as_object().unwrap();
    assert_eq!(sides.len(), 2);
    for side in sides.values() {
        assert!(side["calls"].as_u64().unwrap() > 100);
        assert_eq!(side["availability"], 1.0, "{side}");
    }
    // Names are the inconsistent part: re-pointed on both sides, some answers were stale.
    assert!(checks["by_name_stale"].as_u64().unwrap() > 0);
    assert!(run["convergence_after_heal_ms"][0].as_u64().is_some(), "converged after the heal");
}

#[test]
fn the_checker_catches_a_lying_node() {
    let run = report(&["--scenario", "lying-node", "--nodes", "10", "--seed", "3", "--calls", "1000"]);
    assert!(run["checks"]["by_hash_violations"].as_u64().unwrap() > 0, "wrong answers must be counted");
}

#[test]
fn crashes_lose_only_calls_at_the_crashed_nodes() {
    let run = report(&["--scenario", "crash-restart-storm", "--nodes", "20", "--seed", "5", "--calls", "1500"]);
    let checks = &run["checks"];
    assert_eq!(checks["by_hash_violations"], 0);
    assert!(checks["availability"].as_f64().unwrap() > 0.8);
    assert_eq!(run["convergence_after_heal_ms"].as_array().unwrap().len(), 2);
}

#[test]
fn a_sweep_over_many_seeds_finds_no_failure() {
    let (passed, output) = sim(&["sweep", "--seeds", "1000", "--nodes", "8", "--calls", "200"]);
    assert!(passed, "{output}");
    assert!(output.contains(", 0 failing"), "{output}");
}
