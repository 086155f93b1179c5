//! The `nebula` binary end to end: a node process, and the client commands
//! of the README against it.

use std::process::{Child, Command, Output, Stdio};

use crate::common::nebula_binary;
use crate::node_process::{NodeProcess, spawn_until_ready};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn the_readme_walkthrough_works_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&dir.path().join("data"));
    let wasm = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions/fibonacci.wasm");

    let deployed = node.run(&["deploy", wasm.to_str().unwrap(), "--name", "fibonacci"], None);
    assert!(deployed.status.success(), "{deployed:?}");
    let hash = stdout(&deployed).trim().to_owned();
    assert_eq!(hash, blake3::hash(&std::fs::read(&wasm).unwrap()).to_hex().as_str());
    let hashed = Command::new(nebula_binary()).args(["hash", wasm.to_str().unwrap()]).output().unwrap();
    assert_eq!(stdout(&hashed), format!("{hash}  {}\n", wasm.display()), "the id a deploy gives, without deploying");

    let call = node.run(&["call", "fibonacci", "10"], None);
    assert_eq!((call.status.success(), stdout(&call).as_str()), (true, "55"));

    let from_stdin = node.run(&["call", &hash[..6], "-"], Some(b"10"));
    assert_eq!(stdout(&from_stdin), "55");

    let verbose = node.run(&["call", "-v", "fibonacci", "10"], None);
    let details = String::from_utf8_lossy(&verbose.stderr);
    assert!(details.contains("cache: hit") && details.contains(&format!("module: {hash}")), "{details}");

    let listed = stdout(&node.run(&["ls"], None));
    assert!(listed.contains(&hash) && listed.contains("fibonacci"), "{listed}");
    let status = stdout(&node.run(&["status"], None));
    assert!(status.contains("modules     1"), "{status}");

    let failed = node.run(&["call", "fibonacci", "not-a-number"], None);
    assert_eq!(failed.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&failed.stderr).contains("is not a valid number"));

    let missing = node.run(&["call", "nope", "1"], None);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no name 'nope'"));

    let unreachable = Command::new(nebula_binary()).args(["ls", "--node", "http://127.0.0.1:9"]).output().unwrap();
    assert_eq!(unreachable.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach the node"));
}

#[test]
fn nebula_id_prints_the_peer_id_the_node_will_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let id = |data: &std::path::Path| {
        let output = Command::new(nebula_binary()).args(["id", "--data", data.to_str().unwrap()]).output().unwrap();
        assert!(output.status.success(), "{output:?}");
        stdout(&output).trim().to_owned()
    };
    let before = id(&data);
    assert!(before.starts_with("12D3KooW"), "an ed25519 peer id: {before}");
    assert_eq!(id(&data), before, "the key is created once and kept");
    let node = NodeProcess::start(&data);
    let status = stdout(&node.run(&["status"], None));
    assert!(status.contains(&before), "the node runs as {before}: {status}");
}

#[test]
fn nebula_swarm_key_prints_a_fresh_key_file_a_node_accepts() {
    let key = || {
        let output = Command::new(nebula_binary()).arg("swarm-key").output().unwrap();
        assert!(output.status.success(), "{output:?}");
        stdout(&output)
    };
    let (first, second) = (key(), key());
    assert_ne!(first, second, "each key is random");
    assert!(first.starts_with("/key/swarm/psk/1.0.0/\n/base16/\n"), "{first}");
    first.parse::<libp2p::pnet::PreSharedKey>().unwrap();

    // A node refuses a file that is not a swarm key, saying which.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("swarm.key");
    std::fs::write(&bad, "not a key").unwrap();
    let data = dir.path().join("data");
    let output = Command::new(nebula_binary())
        .args(["node", "--data", data.to_str().unwrap(), "--http", "127.0.0.1:0", "--swarm-key", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a swarm key file"), "{stderr}");
}

#[test]
fn every_command_exits_1_when_refused_and_2_when_the_node_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_with(&dir.path().join("data"), &["--max-module-bytes", "100000"]);
    let functions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions");
    let file = |name: &str| functions.join(name).to_str().unwrap().to_owned();
    let not_wasm = file("fixtures/not-wasm.wasm");
    let big = file("academemes.wasm");
    assert!(std::fs::metadata(&big).unwrap().len() > 100_000);

    let refused: &[&[&str]] = &[
        &["deploy", &not_wasm],
        &["deploy", &big],
        &["call", "nosuch", "1"],
        &["name", "Bad Name", "nosuch"],
        &["name", "good-name", "nosuch"],
    ];
    for args in refused {
        let output = node.run(args, None);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(!stderr.contains("cannot reach"), "{args:?}: {stderr}");
    }
    let too_big = node.run(&["deploy", &big], None);
    let stderr = String::from_utf8_lossy(&too_big.stderr);
    assert!(stderr.contains("over the node's limit of 100000 bytes"), "{stderr}");

    let unreachable = "http://127.0.0.1:9";
    let commands: &[&[&str]] = &[
        &["deploy", &not_wasm],
        &["call", "echo", "1"],
        &["name", "echo", "abcd"],
        &["ls"],
        &["peers"],
        &["status"],
        &["footprint"],
    ];
    for args in commands {
        let output = Command::new(nebula_binary()).args(*args).args(["--node", unreachable]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot reach the node"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_node_open_to_the_network_without_a_token_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = |extra: &[&str]| {
        let mut command = Command::new(nebula_binary());
        command.args(["node", "--standalone", "--data", data.to_str().unwrap(), "--http", "0.0.0.0:0"]);
        command.args(extra).env_remove("NEBULA_TOKEN").stdin(Stdio::null());
        command
    };
    let refused = run(&[]).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("refusing to start") && stderr.contains("--token-file"), "{stderr}");
    // Opting out explicitly starts it: it serves until killed.
    let ready_file = dir.path().join("node.ready");
    let (mut started, readiness) = spawn_until_ready(&mut run(&["--allow-unauthenticated-deploys"]), &ready_file);
    started.kill().unwrap();
    started.wait().unwrap();
    assert!(readiness.http_url.starts_with("http://0.0.0.0:"), "{readiness:?}");
}

/// Waits (bounded) for a node process to exit; its status, or None if it did not.
fn exited_within(child: &mut Child, limit: std::time::Duration) -> Option<std::process::ExitStatus> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    None
}

/// Waits (bounded) until `nebula status` shows the slow call under way.
fn wait_until_one_call_is_in_flight(node: &NodeProcess) {
    let waited = std::time::Instant::now();
    while !stdout(&node.run(&["status"], None)).contains("1 in flight") {
        assert!(waited.elapsed() < std::time::Duration::from_secs(30), "the slow call never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, signal) }, 0);
}

#[test]
fn sigterm_lets_the_calls_under_way_finish_keeps_what_was_acknowledged_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let functions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions");
    let mut node = NodeProcess::start(&data);
    let deployed = node.run(&["deploy", functions.join("echo.wasm").to_str().unwrap(), "--name", "echo"], None);
    assert!(deployed.status.success(), "{deployed:?}");
    let looping = functions.join("fixtures/endless-loop.wasm");
    assert!(node.run(&["deploy", looping.to_str().unwrap(), "--name", "loop"], None).status.success());
    assert_eq!(stdout(&node.run(&["call", "echo", "kept"], None)), "kept");

    // A call under way: an endless loop bounded by a 2 s deadline.
    let slow = Command::new(nebula_binary())
        .args(["call", "loop", "x", "--fuel", "100000000000", "--deadline-ms", "2000", "--node", &node.url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_one_call_is_in_flight(&node);
    signal(&node.child, libc::SIGTERM);
    // The call under way gets its own answer, not a reset connection.
    let answered = slow.wait_with_output().unwrap();
    assert!(String::from_utf8_lossy(&answered.stderr).contains("exceeded its deadline"), "{answered:?}");
    let exit = exited_within(&mut node.child, std::time::Duration::from_secs(60)).expect("the node stopped");
    assert!(exit.success(), "{exit:?}");

    // Restarted on the same data: the module, its name and the result are there.
    let restarted = NodeProcess::start(&data);
    let answer = restarted.run(&["call", "-v", "echo", "kept"], None);
    assert_eq!(stdout(&answer), "kept");
    assert!(String::from_utf8_lossy(&answer.stderr).contains("cache: hit"), "{answer:?}");
}

#[test]
fn a_second_signal_stops_a_node_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let functions = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions");
    let mut node = NodeProcess::start_with(&dir.path().join("data"), &["--max-deadline-ms", "600000"]);
    let looping = functions.join("fixtures/endless-loop.wasm");
    assert!(node.run(&["deploy", looping.to_str().unwrap(), "--name", "loop"], None).status.success());
    // A call that would hold a graceful stop for ten minutes.
    let mut slow = Command::new(nebula_binary())
        .args(["call", "loop", "x", "--fuel", "100000000000000", "--deadline-ms", "600000", "--node", &node.url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_until_one_call_is_in_flight(&node);
    signal(&node.child, libc::SIGTERM);
    assert!(exited_within(&mut node.child, std::time::Duration::from_millis(500)).is_none(), "waiting for the call");
    signal(&node.child, libc::SIGINT);
    let exit =
        exited_within(&mut node.child, std::time::Duration::from_secs(60)).expect("the second signal stopped it");
    assert!(!exit.success(), "an interrupted stop is not a clean one: {exit:?}");
    // Its connection closed with the node, so the client ends too.
    assert!(exited_within(&mut slow, std::time::Duration::from_secs(60)).is_some(), "the client was left hanging");
}

#[test]
fn the_ready_file_says_where_a_node_answers_once_it_does() {
    let dir = tempfile::tempdir().unwrap();
    let ready_file = dir.path().join("node.ready");
    std::fs::write(&ready_file, "left by an earlier run").unwrap();
    let node = NodeProcess::start_announcing(&dir.path().join("data"), &[], &ready_file);
    let readiness = node.readiness.clone();
    let on_disk: nebula_node::ready::Readiness = serde_json::from_slice(&std::fs::read(&ready_file).unwrap()).unwrap();
    assert_eq!(on_disk, readiness, "this run's file replaced the earlier one");
    assert!(readiness.http_url.starts_with("http://127.0.0.1:"), "{readiness:?}");
    assert!(readiness.p2p_addresses.is_empty(), "a standalone node has no p2p address");
    assert_eq!(readiness.version, env!("CARGO_PKG_VERSION"));
    let status = stdout(&node.run(&["status"], None));
    assert!(status.contains(&readiness.peer_id), "{status}");
}

#[test]
fn deploy_gives_a_module_arguments_environment_and_files_by_flags_or_manifest_file() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(&dir.path().join("data"));
    let wasm =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions/fixtures/read-files-env.wasm");
    let wasm = wasm.to_str().unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(files.join("sub")).unwrap();
    std::fs::write(files.join("sub/notes.txt"), "notes").unwrap();
    let files = files.to_str().unwrap();
    let flags = ["--arg", "-v", "--arg", "two words", "--env", "MODE=fast", "--dir", files, "--mount", "/in"];

    let deployed = node.run(&[&["deploy", wasm, "--name", "with-setup"][..], &flags[..]].concat(), None);
    assert!(deployed.status.success(), "{deployed:?}");
    let id = stdout(&deployed).trim().to_owned();
    let hashed = Command::new(nebula_binary()).args([&["hash", wasm][..], &flags[..]].concat()).output().unwrap();
    assert_eq!(stdout(&hashed), format!("{id}  {wasm}\n"), "hash gives the id deploy gives");

    let seen = stdout(&node.run(&["call", "with-setup"], None));
    assert!(seen.contains(r#"args=["main", "-v", "two words"]"#) && seen.contains(r#"env=["MODE"]"#), "{seen}");
    let listed = stdout(&node.run(&["ls"], None));
    assert!(listed.contains(&id), "{listed}");
    assert!(listed.contains(r#"args ["-v", "two words"]"#) && listed.contains("files 1 (5 bytes) at /in"), "{listed}");

    // The same function from a manifest file has the same id.
    let manifest = dir.path().join("with-setup.toml");
    std::fs::write(
        &manifest,
        format!("module = {wasm:?}\nargs = [\"-v\", \"two words\"]\ndir = {files:?}\nmount = \"/in\"\n[env]\nMODE = \"fast\"\n"),
    )
    .unwrap();
    let from_file = node.run(&["deploy", manifest.to_str().unwrap()], None);
    assert_eq!(stdout(&from_file).trim(), id, "{from_file:?}");

    // A bad manifest is refused before anything is sent (exit 1), with its reason.
    let escaping = node.run(&["deploy", wasm, "--dir", files, "--mount", "relative/path"], None);
    assert_eq!(escaping.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&escaping.stderr).contains("must be an absolute path"), "{escaping:?}");
    let bad_env = node.run(&["deploy", wasm, "--env", "NOEQUALS"], None);
    assert_eq!(bad_env.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_env.stderr).contains("NAME=VALUE"), "{bad_env:?}");
}
