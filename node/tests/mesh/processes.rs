//! Five real `nebula` processes on loopback: deploy on one, call on all,
//! kill one, keep calling.

use std::process::{Child, Command};
use std::time::Duration;

use crate::common::{function, nebula_binary};
use crate::node_process::spawn_until_ready;

pub(crate) struct Process {
    pub(crate) child: Child,
    pub(crate) http: String,
    pub(crate) peer_address: String,
}

impl Process {
    pub(crate) fn start(data: &std::path::Path, bootstrap: &[String]) -> Process {
        Process::start_with(data, bootstrap, &[])
    }

    pub(crate) fn start_with(data: &std::path::Path, bootstrap: &[String], extra: &[&str]) -> Process {
        // Beside the data directory: each process has its own.
        let ready_file = data.with_extension("ready");
        let mut command = Command::new(nebula_binary());
        command.args(["node", "--data", data.to_str().unwrap(), "--http", "127.0.0.1:0", "--no-mdns"]);
        command.args(extra);
        command.args(["--listen", "/ip4/127.0.0.1/tcp/0"]);
        for peer in bootstrap {
            command.args(["--peer", peer]);
        }
        let (child, readiness) = spawn_until_ready(&mut command, &ready_file);
        let peer_address = readiness.p2p_addresses.first().expect("a mesh node has a p2p address").clone();
        Process { child, http: readiness.http_url, peer_address }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `condition` until it holds, for at most a minute: freezing a peer
/// and thawing it takes the frozen-peer test ~14 s on a quiet machine, and
/// these tests share two cores with all the others (15 s timed out once).
pub(crate) async fn wait_for<F: AsyncFnMut() -> bool>(what: &str, mut condition: F) {
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_deploy_call_kill_and_keep_calling() {
    let dir = tempfile::tempdir().unwrap();
    let mut processes: Vec<Process> = Vec::new();
    for i in 0..5 {
        let bootstrap: Vec<String> = processes.iter().map(|p| p.peer_address.clone()).collect();
        processes.push(Process::start(&dir.path().join(format!("node-{i}")), &bootstrap));
    }
    let client = reqwest::Client::new();
    let deployed: serde_json::Value = client
        .post(format!("{}/modules?name=fib", processes[0].http))
        .body(function("fibonacci"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hash = deployed["module"].as_str().unwrap().to_owned();

    for process in &processes {
        wait_for("every process can call the module by name", async || {
            let answer = client.get(format!("{}/api/fib/30", process.http)).send().await.unwrap();
            answer.status().is_success() && answer.text().await.unwrap() == "832040"
        })
        .await;
        // A call can succeed by being forwarded to the first node before the
        // module's replica is stored here: wait for the replica itself, or
        // the first node's death would leave this one without a holder.
        wait_for("every process holds the module", async || {
            let modules: Vec<serde_json::Value> =
                client.get(format!("{}/modules", process.http)).send().await.unwrap().json().await.unwrap();
            modules.iter().any(|module| module["module"] == hash.as_str())
        })
        .await;
    }

    // Kill the node the module was deployed on, with SIGKILL.
    let mut first = processes.remove(0);
    first.child.kill().unwrap();
    first.child.wait().unwrap();

    for (n, process) in processes.iter().enumerate() {
        let input = 40 + n;
        let answer = client.get(format!("{}/api/{}/{input}", process.http, &hash[..8])).send().await.unwrap();
        assert!(answer.status().is_success(), "{}", answer.text().await.unwrap());
        // Cached answers from before the kill still come back too.
        let cached = client.get(format!("{}/api/fib/30", process.http)).send().await.unwrap();
        assert_eq!(cached.headers()["x-nebula-cache"], "hit");
    }
}

/// Whether `process` sees `peer` as connected, per its `/peers`.
pub(crate) async fn sees(client: &reqwest::Client, process: &Process, peer: &str) -> bool {
    let peers: Vec<serde_json::Value> =
        client.get(format!("{}/peers", process.http)).send().await.unwrap().json().await.unwrap();
    peers.iter().any(|p| p["peer"] == peer && p["connected"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_peer_is_dropped_and_rejoins_when_it_thaws() {
    let dir = tempfile::tempdir().unwrap();
    let liveness = ["--ping-interval-s", "1"];
    let a = Process::start_with(&dir.path().join("a"), &[], &liveness);
    let b = Process::start_with(&dir.path().join("b"), std::slice::from_ref(&a.peer_address), &liveness);
    let client = reqwest::Client::new();
    let b_id = b.peer_address.rsplit('/').next().unwrap().to_owned();
    wait_for("a sees b", async || sees(&client, &a, &b_id).await).await;

    // A frozen process keeps its TCP connections open but answers nothing:
    // only the liveness pings can tell.
    let signal = |name: &str| {
        let status = Command::new("kill").args([name, &b.child.id().to_string()]).status().unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    wait_for("a drops the frozen b", async || !sees(&client, &a, &b_id).await).await;
    signal("-CONT");
    wait_for("b redials a and is back", async || sees(&client, &a, &b_id).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stopped_gracefully_is_seen_leaving_at_once_not_after_a_ping_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Pings an hour apart: only the closing connections can tell `a` that `b` left.
    let no_liveness = ["--ping-interval-s", "3600"];
    let a = Process::start_with(&dir.path().join("a"), &[], &no_liveness);
    let mut b = Process::start_with(&dir.path().join("b"), std::slice::from_ref(&a.peer_address), &no_liveness);
    let client = reqwest::Client::new();
    let b_id = b.peer_address.rsplit('/').next().unwrap().to_owned();
    wait_for("a sees b", async || sees(&client, &a, &b_id).await).await;

    let status = Command::new("kill").args(["-TERM", &b.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    wait_for("b exits", async || b.child.try_wait().unwrap().is_some()).await;
    assert!(b.child.wait().unwrap().success(), "a graceful stop exits 0");
    wait_for("a sees b gone", async || !sees(&client, &a, &b_id).await).await;
}
