//! The simulator running the real guest functions (`--features wasm`):
//! every by-hash answer must equal what the function computes.
#![cfg(feature = "wasm")]

use std::process::Command;

#[test]
fn real_functions_give_consistent_answers_through_a_partition() {
    let functions = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/functions");
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let history = dir.path().join("history.json");
    let output = Command::new(env!("CARGO_BIN_EXE_nebula-sim"))
        .args(["run", "--scenario", "split-brain", "--nodes", "12", "--seed", "4", "--calls", "600"])
        .args(["--wasm", functions, "--json", report.to_str().unwrap(), "--history", history.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["checks"]["by_hash_violations"], 0);
    // The outputs are the functions' own: fibonacci(10) is 55 wherever it was asked.
    let history: serde_json::Value = serde_json::from_slice(&std::fs::read(&history).unwrap()).unwrap();
    let decoded: Vec<String> = history["calls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|call| call["result"]["Ok"]["stdout"].as_str())
        .map(|hex| String::from_utf8(hex::decode(hex).unwrap()).unwrap_or_default())
        .collect();
    assert!(decoded.iter().any(|stdout| stdout == "55"), "a real fibonacci(10) answer is in the history");
}
