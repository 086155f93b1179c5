//! A module far bigger than a frame travels between real `nebula` processes
//! in verified slices, straight to disk: the receiving node's memory does not
//! grow with the module.

use std::time::{Duration, Instant};

use crate::common::{function, padded};
use crate::processes::{Process, sees};

/// The most a process ever held in memory (its peak resident set), in bytes.
fn peak_rss(process: &Process) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.child.id())).unwrap();
    let line = status.lines().find(|line| line.starts_with("VmHWM:")).expect("a VmHWM line");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib << 10
}

/// Polls `condition` every 50 ms until it holds; fails after `patience`.
async fn within<F: AsyncFnMut() -> bool>(patience: Duration, what: &str, mut condition: F) -> Duration {
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < patience, "timed out after {patience:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

async fn holds(client: &reqwest::Client, process: &Process, module: &str) -> bool {
    let modules: Vec<serde_json::Value> =
        client.get(format!("{}/modules", process.http)).send().await.unwrap().json().await.unwrap();
    modules.iter().any(|listed| listed["module"] == module)
}

async fn deploy(client: &reqwest::Client, process: &Process, wasm: Vec<u8>, name: &str) -> String {
    let response = client.post(format!("{}/modules?name={name}", process.http)).body(wasm).send().await.unwrap();
    assert!(response.status().is_success(), "{}", response.text().await.unwrap());
    let deployed: serde_json::Value = response.json().await.unwrap();
    deployed["module"].as_str().unwrap().to_owned()
}

const MIB: u64 = 1 << 20;

/// The peer id at the end of a process's address.
fn id_of(process: &Process) -> String {
    process.peer_address.rsplit('/').next().unwrap().to_owned()
}

/// Calls `name` on `process` with inputs 0, 1, … until one runs at `process`
/// itself (a call runs at its key's owner: about one key in two here);
/// returns how long that call took.
async fn call_until_run_here(client: &reqwest::Client, process: &Process, name: &str) -> Duration {
    let here = id_of(process);
    for input in 0..40 {
        let started = Instant::now();
        let answer = client.get(format!("{}/api/{name}/{input}", process.http)).send().await.unwrap();
        let executed_by = answer.headers()["x-nebula-executed-by"].to_str().unwrap().to_owned();
        let took = started.elapsed();
        assert_eq!(answer.text().await.unwrap(), input.to_string());
        if executed_by == here {
            return took;
        }
    }
    panic!("no call of {name} ran at {here}");
}

/// b replicates a 100 MiB module ahead of need; c, which replicates nothing,
/// fetches it when a call needs it. Each runs it, and neither one's memory
/// grows by anything like the module's size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_of_100_mib_replicates_in_slices_and_runs_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let a = Process::start(&dir.path().join("a"), &[]);
    let b = Process::start(&dir.path().join("b"), std::slice::from_ref(&a.peer_address));
    let on_demand = ["--replicate-bytes", "0", "--fetch-for-call-bytes", "1073741824"];
    let c = Process::start_with(&dir.path().join("c"), std::slice::from_ref(&a.peer_address), &on_demand);
    let client = reqwest::Client::new();
    for (process, peer) in [(&b, &a), (&c, &a), (&c, &b)] {
        within(Duration::from_secs(30), "the nodes connect", async || sees(&client, process, &id_of(peer)).await).await;
    }

    // The baselines: connected, and having run a small module each.
    let small = deploy(&client, &a, function("echo"), "echo").await;
    within(Duration::from_secs(30), "b holds the small module", async || holds(&client, &b, &small).await).await;
    call_until_run_here(&client, &b, "echo").await;
    call_until_run_here(&client, &c, "echo").await;
    let baselines = [peak_rss(&b), peak_rss(&c)];

    let wasm = padded(function("echo"), 100 << 20);
    let size = wasm.len() as u64;
    let expected = blake3::hash(&wasm);
    let started = Instant::now();
    let big = deploy(&client, &a, wasm, "big-echo").await;
    assert_eq!(big, expected.to_hex().as_str());
    let deployed = started.elapsed();
    let replicated =
        within(Duration::from_secs(180), "b holds the 100 MiB module", async || holds(&client, &b, &big).await).await;
    assert!(!holds(&client, &c, &big).await, "c replicates nothing ahead of need");

    // a goes away: b runs the module from its own copy, and c fetches it from b.
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    for process in [&b, &c] {
        within(Duration::from_secs(30), "a is seen gone", async || !sees(&client, process, &id_of(&a)).await).await;
    }
    call_until_run_here(&client, &b, "big-echo").await;
    let fetched_and_ran = call_until_run_here(&client, &c, "big-echo").await;
    for node in ["b", "c"] {
        let stored = std::fs::File::open(dir.path().join(node).join("blobs").join(&big)).unwrap();
        assert_eq!(stored.metadata().unwrap().len(), size);
        let mut hasher = blake3::Hasher::new();
        hasher.update_reader(stored).unwrap();
        assert_eq!(hasher.finalize(), expected, "{node}'s copy is the module");
    }

    let peaks = [peak_rss(&b), peak_rss(&c)];
    eprintln!(
        "100 MiB module: deploy answered in {deployed:.1?}; at b (ahead of need) {replicated:.1?} later; \
         at c (on demand) fetched, compiled and run in {fetched_and_ran:.1?}; \
         peak RSS b {} MiB (baseline {} MiB), c {} MiB (baseline {} MiB)",
        peaks[0] / MIB,
        baselines[0] / MIB,
        peaks[1] / MIB,
        baselines[1] / MIB,
    );
    // Holding the module whole (in a frame, or to hash it) would add 100 MiB at least.
    for (node, (peak, baseline)) in ["b", "c"].iter().zip(peaks.into_iter().zip(baselines)) {
        assert!(
            peak < baseline + 60 * MIB,
            "{node}'s peak RSS grew by {} MiB while receiving a {} MiB module",
            (peak - baseline) / MIB,
            size / MIB
        );
    }
}
