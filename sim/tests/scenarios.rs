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
fn verified_results_keep_a_lying_node_from_fooling_anyone_else() {
    let args = ["--scenario", "lying-node", "--nodes", "10", "--seed", "3", "--calls", "1000", "--verify-remote", "1"];
    let run = report(&args);
    assert_eq!(run["checks"]["by_hash_violations"], 0, "{run}");
    assert!(run["checks"]["availability"].as_f64().unwrap() > 0.95, "{run}");
    assert!(run["peer_penalties"].as_u64().unwrap() > 0, "the liar is caught: {run}");
    // Its forged, replayed and misattributed records, and its answers of the
    // wrong kind, are refused by the cores themselves.
    assert!(run["forged_records_rejected"].as_u64().unwrap() > 0, "{run}");
    for lie in ["altered", "replayed", "pinned_on_another", "wrong_kind", "bad_module_bytes"] {
        assert!(run["lies_told"][lie].as_u64().unwrap() > 0, "the liar told no {lie}: {run}");
    }
    let caught = &run["misbehaviours"];
    for kind in ["forged_record", "wrong_kind", "bad_module_bytes"] {
        assert!(caught[kind].as_u64().unwrap() > 0, "no {kind} caught: {run}");
    }
    // Every wrong slice is caught where it arrives, and costs the liar that fetch.
    assert_eq!(caught["bad_module_bytes"], run["lies_told"]["bad_module_bytes"], "{run}");
    assert_eq!(run["passed"], true);
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

#[test]
fn every_recorded_regression_run_still_passes() {
    let runs = include_str!("regressions.txt");
    let mut count = 0;
    for line in runs.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [scenario, seed, nodes, calls] = fields[..] else { panic!("malformed regression line: {line}") };
        let args = ["run", "--scenario", scenario, "--seed", seed, "--nodes", nodes, "--calls", calls];
        let (passed, output) = sim(&args);
        assert!(passed, "regression {line} fails again:\n{output}");
        count += 1;
    }
    assert!(count >= 5, "the regression list was not read");
}

#[test]
fn the_new_scenarios_keep_by_hash_answers_consistent() {
    for scenario in ["bridge-node", "random-groups", "slow-nodes"] {
        let run = report(&["--scenario", scenario, "--nodes", "20", "--seed", "11", "--calls", "1500"]);
        assert_eq!(run["checks"]["by_hash_violations"], 0, "{scenario}");
        assert!(run["checks"]["availability"].as_f64().unwrap() > 0.95, "{scenario}: {}", run["checks"]);
    }
    // The bridge node keeps both halves in touch: nothing goes unanswered there.
    let bridge = report(&["--scenario", "bridge-node", "--nodes", "20", "--seed", "11", "--calls", "1500"]);
    assert_eq!(bridge["checks"]["partitioned_sides"].as_object().unwrap().len(), 3);
}

#[test]
fn a_recorded_history_is_judged_the_same_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.json");
    let direct = dir.path().join("direct.json");
    let judged = dir.path().join("judged.json");
    let svg = dir.path().join("plot.svg");
    let args = ["--scenario", "split-brain", "--nodes", "10", "--seed", "2", "--calls", "500"];
    let mut run = vec!["run"];
    run.extend_from_slice(&args);
    run.extend_from_slice(&["--history", history.to_str().unwrap(), "--json", direct.to_str().unwrap()]);
    assert!(sim(&run).0);
    let check =
        ["check", history.to_str().unwrap(), "--json", judged.to_str().unwrap(), "--svg", svg.to_str().unwrap()];
    let (passed, output) = sim(&check);
    assert!(passed, "{output}");
    let read = |path: &std::path::Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let (direct, judged) = (read(&direct), read(&judged));
    assert_eq!(direct["checks"], judged["checks"]);
    assert_eq!(direct["convergence_after_heal_ms"], judged["convergence_after_heal_ms"]);
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg") && plot.contains("<polyline"), "a plot with lines");

    // A tampered answer is caught from the file alone.
    let mut tampered: serde_json::Value = read(&history);
    let call = tampered["calls"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|call| call["by_name"] == false && call["result"]["Ok"]["stdout"].is_string())
        .unwrap();
    call["result"]["Ok"]["stdout"] = serde_json::json!("00");
    std::fs::write(&history, tampered.to_string()).unwrap();
    let (passed, output) = sim(&["check", history.to_str().unwrap()]);
    assert!(!passed, "{output}");
    assert!(output.contains("by-hash consistency violations: 1"), "{output}");
}

#[test]
fn lost_duplicated_and_reordered_messages_break_no_by_hash_answer() {
    let args = ["sweep", "--seeds", "100", "--nodes", "8", "--calls", "200", "--loss", "0.05", "--duplicate", "0.05"];
    let (passed, output) = sim(&args);
    assert!(passed && output.contains(", 0 failing"), "{output}");
    let (refused, _) = sim(&["run", "--loss", "1.5"]);
    assert!(!refused, "a probability above 1 is refused");
}

#[test]
fn schedules_are_printed_for_the_real_node_experiment() {
    let (passed, output) = sim(&["schedule", "--scenario", "split-brain"]);
    assert!(passed, "{output}");
    let schedule: serde_json::Value = serde_json::from_str(&output).unwrap();
    assert_eq!(schedule["duration_ms"], 25_000);
    let kinds: Vec<&str> =
        schedule["faults"].as_array().unwrap().iter().map(|f| f["fault"]["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["partition", "deploy-and-repoint", "heal"]);
    assert_eq!(schedule["faults"][0]["fault"]["argument"], serde_json::json!([0.5, 0.5]));
}

#[test]
fn scale_out_keeps_calls_cheap_executes_once_and_spreads_results() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scale.json");
    let (passed, output) = sim(&["scale", "--sizes", "10,40", "--calls", "2000", "--json", path.to_str().unwrap()]);
    assert!(passed, "{output}");
    let reports: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let [small, large] = &reports.as_array().unwrap()[..] else { panic!("two sizes: {reports}") };
    let figure = |report: &serde_json::Value, name: &str| report[name].as_f64().unwrap();
    for report in [small, large] {
        assert!(figure(report, "call_messages_per_call") <= 10.0, "{report}");
        assert!(figure(report, "executions_per_distinct_key") <= 1.05, "identical calls execute once: {report}");
        assert!(figure(report, "max_execution_share") <= 3.0, "executions spread over the owners: {report}");
        assert_eq!(report["by_hash_violations"], 0, "{report}");
        assert_eq!(report["availability"], 1.0, "{report}");
    }
    // A call costs about the same however big the mesh…
    let growth = figure(large, "call_messages_per_call") / figure(small, "call_messages_per_call");
    assert!(growth <= 2.0, "messages per call grew {growth:.2}×: {reports}");
    // …and each node stores about k/N of the results: the mesh's capacity grows with N.
    assert!(figure(large, "results_per_node_mean") < figure(small, "results_per_node_mean"), "{reports}");
    assert!(output.contains("scale 40 call_messages_per_call"), "{output}");
}

#[test]
fn modules_placed_on_owners_are_fetched_where_calls_need_them_not_told_to_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let scale = |module_owners: &str| {
        let path = dir.path().join(format!("scale-{module_owners}.json"));
        let args = ["scale", "--sizes", "60", "--calls", "300", "--module-owners", module_owners];
        let (passed, output) = sim(&[&args[..], &["--json", path.to_str().unwrap()]].concat());
        assert!(passed, "{output}");
        let reports: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        reports[0].clone()
    };
    let (everywhere, placed) = (scale("0"), scale("3"));
    let figure = |report: &serde_json::Value, name: &str| report[name].as_f64().unwrap();
    for report in [&everywhere, &placed] {
        assert_eq!(report["by_hash_violations"], 0, "{report}");
        assert_eq!(report["availability"], 1.0, "{report}");
        assert!(figure(report, "executions_per_distinct_key") <= 1.05, "{report}");
    }
    assert_eq!(placed["modules_placed"], "on 3 owners");
    // Every replica told its neighbours; now only the deploys tell the owners.
    assert!(figure(&placed, "module_tells") * 20.0 < figure(&everywhere, "module_tells"), "{placed} {everywhere}");
    // 300 calls over 60 nodes: most nodes never run most modules, and never fetch them.
    assert!(figure(&placed, "module_messages") < figure(&everywhere, "module_messages") / 2.0, "{placed}");
    assert!(figure(&placed, "modules_held_per_node_mean") < figure(&everywhere, "modules_held_per_node_mean"));
    assert!(figure(&placed, "module_messages_during_calls") > 0.0, "fetched on demand: {placed}");
}

#[test]
fn modules_on_owners_keep_both_sides_of_a_split_available_and_converge_after_the_heal() {
    let args = ["--scenario", "split-brain", "--nodes", "20", "--seed", "7", "--calls", "2000", "--module-owners", "3"];
    let (run, again) = (report(&args), report(&args));
    let checks = &run["checks"];
    assert_eq!(checks["by_hash_violations"], 0, "{run}");
    for side in checks["partitioned_sides"].as_object().unwrap().values() {
        assert_eq!(side["availability"], 1.0, "each side holds or fetches every module: {side}");
    }
    assert!(run["convergence_after_heal_ms"][0].as_u64().is_some(), "every module on its owners after the heal: {run}");
    assert_eq!(run["checks"], again["checks"], "a seed replays exactly");
}
