//! `nebula node --config FILE`: a node takes its settings from the file,
//! `NEBULA_<KEY>` variables override the file, flags override both; a bad
//! file or variable stops it with a message naming the key (and the line).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::nebula_binary;
use crate::node_process::spawn_until_ready;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_runs_with_the_settings_of_its_file_overridden_by_variables_and_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nebula.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &file,
        format!(
            "data = {data:?}\nhttp = \"127.0.0.1:0\"\nstandalone = true\n\
             concurrency = 3\nqueue_per_module = 7\nmax_deadline_ms = 4000\nmax_fuel = 1000\n"
        ),
    )
    .unwrap();
    let mut command = Command::new(nebula_binary());
    command.args(["node", "--config", file.to_str().unwrap(), "--concurrency", "5"]).env("NEBULA_MAX_FUEL", "5000");
    let (mut child, readiness) = spawn_until_ready(&mut command, &dir.path().join("node.ready"));

    let status: serde_json::Value =
        reqwest::get(format!("{}/status", readiness.http_url)).await.unwrap().json().await.unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(status["concurrency"], 5, "the flag wins over the file");
    assert_eq!(status["max_limits"]["fuel"], 5000, "the variable wins over the file");
    assert_eq!(status["max_limits"]["deadline_ms"], 4000, "the file's ceiling");
    assert_eq!(status["default_limits"]["deadline_ms"], 4000, "the ceiling pulls the default down");
    assert!(data.join("node-key").exists(), "the node keeps its data where the file says");
    assert!(status["listen_addresses"].as_array().unwrap().is_empty(), "standalone, as the file says");
}

#[test]
fn bad_settings_stop_the_node_with_the_key_and_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let run = |file_text: &str, env: &[(&str, &str)]| {
        let file = dir.path().join("nebula.toml");
        std::fs::write(&file, file_text).unwrap();
        let mut node = Command::new(nebula_binary())
            .args(["node", "--config", file.to_str().unwrap(), "--http", "127.0.0.1:0", "--standalone"])
            .args(["--data", dir.path().join("data").to_str().unwrap()])
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A node that accepted the settings would run until killed.
        let started = Instant::now();
        while node.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                node.kill().unwrap();
                panic!("the node started with {file_text:?} and {env:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let output = node.wait_with_output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{output:?}");
        String::from_utf8(output.stderr).unwrap()
    };
    let unknown = run("concurrency = 2\nconcurency = 4\n", &[]);
    assert!(unknown.contains("line 2") && unknown.contains("unknown field `concurency`"), "{unknown}");
    let bad_value = run("# a comment\nqueue_per_module = -1\n", &[]);
    assert!(bad_value.contains("line 2") && bad_value.contains("queue_per_module"), "{bad_value}");
    let bad_variable = run("", &[("NEBULA_PING_INTERVAL_S", "soon")]);
    assert!(bad_variable.contains("NEBULA_PING_INTERVAL_S"), "{bad_variable}");
    let out_of_range = run("ping_interval_s = 0\n", &[]);
    assert!(out_of_range.contains("ping_interval_s"), "{out_of_range}");
    assert!(!dir.path().join("data").exists(), "a refused start leaves nothing behind");
}

#[test]
fn config_show_prints_the_settings_in_force_as_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("nebula.toml");
    std::fs::write(&file, "concurrency = 3\nqueue_per_module = 7\nno_mdns = true\n").unwrap();
    let output = Command::new(nebula_binary())
        .args(["config", "show", "--config", file.to_str().unwrap(), "--queue-per-module", "9"])
        .args(["--peer", "/ip4/10.0.0.5/tcp/4001"])
        .env("NEBULA_CONCURRENCY", "4")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let shown = String::from_utf8(output.stdout).unwrap();
    for line in [
        "concurrency = 4",
        "queue_per_module = 9",
        "no_mdns = true",
        "peers = [\"/ip4/10.0.0.5/tcp/4001\"]",
        "ping_interval_s = 15",
        "# token_file is not set",
    ] {
        assert!(shown.lines().any(|shown| shown == line), "`{line}` missing from:\n{shown}");
    }
    // What it prints is a config file that gives the same settings.
    std::fs::write(&file, &shown).unwrap();
    let again =
        Command::new(nebula_binary()).args(["config", "show", "--config", file.to_str().unwrap()]).output().unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), shown);
}
