//! Mesh figures on loopback, measured in one run with N in-process nodes:
//! how long until a deployed module is callable on every node, until a result
//! computed on one node is a cache hit on all others, and what forwarding a
//! call costs over running it locally.
//!
//!     cargo run --release -p nebula-node --example mesh_figures -- 5
//!     cargo run --release -p nebula-node --example mesh_figures -- 20

use futures::executor::block_on;
use std::path::Path;
use std::time::{Duration, Instant};

use nebula_node::mesh::MeshSettings;
use nebula_node::{Node, NodeConfig};
use nebula_protocol::{LimitOverrides, ModuleId};

const POLL: Duration = Duration::from_micros(50);
const GIVE_UP: Duration = Duration::from_secs(30);

fn percentile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

fn report(what: &str, samples: &mut [Duration]) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p95, max) = (percentile(samples, 0.5), percentile(samples, 0.95), percentile(samples, 1.0));
    println!(
        "{what:<52} p50 {:>8.2} ms  p95 {:>8.2} ms  max {:>8.2} ms  (n={})",
        ms(p50),
        ms(p95),
        ms(max),
        samples.len()
    );
}

/// `wasm` with a custom section holding `n`: a different module, same behaviour.
fn variant(wasm: &[u8], n: u64) -> Vec<u8> {
    const NAME: &[u8] = b"nebula-figures";
    let mut bytes = wasm.to_vec();
    bytes.push(0); // custom section
    bytes.push((1 + NAME.len() + 8) as u8);
    bytes.push(NAME.len() as u8);
    bytes.extend_from_slice(NAME);
    bytes.extend_from_slice(&n.to_le_bytes());
    bytes
}

/// Polls on a thread of its own: tokio's timer ticks in whole milliseconds,
/// too coarse for what is measured here (state the core holds is read with
/// `block_on`, from that thread).
async fn wait_until(condition: impl FnMut() -> bool + Send + 'static) -> Duration {
    let mut condition = condition;
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        while !condition() {
            assert!(started.elapsed() < GIVE_UP, "gave up waiting");
            std::thread::sleep(POLL);
        }
        started.elapsed()
    })
    .await
    .unwrap()
}

async fn start_mesh(n: usize, scratch: &Path) -> Vec<Node> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut addresses = Vec::new();
    for i in 0..n {
        let mut config = NodeConfig::new(scratch.join(format!("node-{i}")), "127.0.0.1:0".parse().unwrap());
        config.concurrency = 2;
        if i == n - 1 {
            // The last node never holds modules, so its calls are forwarded.
            config.replicate_budget_bytes = 0;
            config.fetch_for_call_max_bytes = 0;
        }
        config.mesh = Some(MeshSettings { bootstrap: addresses.clone(), ..MeshSettings::loopback() });
        let node = Node::open(config).await.unwrap();
        let listening = node.clone();
        wait_until(move || !listening.listen_addresses().is_empty()).await;
        addresses.push(node.listen_addresses()[0].parse().unwrap());
        nodes.push(node);
    }
    for node in nodes.clone() {
        wait_until(move || block_on(node.peers()).iter().filter(|p| p.connected).count() == n - 1).await;
    }
    // Let gossipsub meshes form (subscriptions travel on the first heartbeats).
    tokio::time::sleep(Duration::from_secs(2)).await;
    nodes
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let echo = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/functions/echo.wasm"))
        .expect("run scripts/build-functions first");
    let scratch = tempfile::tempdir().unwrap();
    let nodes = start_mesh(n, scratch.path()).await;
    let holders = nodes[..n - 1].to_vec();
    println!("{n} nodes on loopback (node {} forwards, the others replicate)", n - 1);

    let mut module_times = Vec::new();
    for round in 0..20 {
        let wasm = variant(&echo, round);
        let module = ModuleId::of_bytes(&wasm);
        let deployed = Instant::now();
        nodes[0].deploy_bytes(wasm, None).await.unwrap();
        let holders = holders.clone();
        wait_until(move || holders.iter().all(|node| block_on(node.modules()).iter().any(|m| m.module == module)))
            .await;
        module_times.push(deployed.elapsed());
    }
    report("deploy -> module callable on every replicating node", &mut module_times);

    let reference = ModuleId::of_bytes(&variant(&echo, 0)).to_hex();
    let overrides = LimitOverrides::default();
    let mut result_times = Vec::new();
    for round in 0..50 {
        let input = format!("result-{round}").into_bytes();
        nodes[0].call(&reference, input.clone(), &overrides).await.reply.unwrap();
        let computed = Instant::now();
        let (others, reference) = (nodes[1..].to_vec(), reference.clone());
        wait_until(move || others.iter().all(|node| node.is_cached(&reference, &input))).await;
        result_times.push(computed.elapsed());
    }
    report("result computed -> cache hit on every other node", &mut result_times);

    let forwarder = nodes[n - 1].clone();
    let watched = forwarder.clone();
    wait_until(move || block_on(watched.peers()).iter().filter(|p| p.capacity > 0).count() == n - 1).await;
    let (mut local, mut forwarded) = (Vec::new(), Vec::new());
    for round in 0..200 {
        // Spaced out, so each call meets an idle mesh: the gossip that the
        // previous calls caused (signature checks on every node) would
        // otherwise queue ahead of it on these two cores.
        tokio::time::sleep(Duration::from_millis(10)).await;
        let input = format!("latency-{round}").into_bytes();
        let started = Instant::now();
        nodes[0].call(&reference, input.clone(), &overrides).await.reply.unwrap();
        local.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
        let input = format!("forwarded-{round}").into_bytes();
        let started = Instant::now();
        let answer = forwarder.call(&reference, input, &overrides).await.reply.unwrap();
        forwarded.push(started.elapsed());
        assert_ne!(answer.record.executed_by, forwarder.id());
    }
    report("uncached call, local", &mut local);
    report("uncached call, forwarded to a holder", &mut forwarded);
    let overhead = percentile(&mut forwarded, 0.5).as_secs_f64() - percentile(&mut local, 0.5).as_secs_f64();
    println!("forwarding overhead (median forwarded - median local): {:.3} ms", overhead * 1e3);
}
