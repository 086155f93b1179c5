//! Modules, names and results spread; any node answers any call.

use std::time::Duration;

use nebula_protocol::CallKey;
use nebula_protocol::manifest::{FunctionParts, encode_bundle};
use reqwest::StatusCode;

use crate::common::{fixture, function};
use crate::harness::{Mesh, eventually};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modules_names_and_results_reach_every_node() {
    let mesh = Mesh::start(3, |_, _| {}).await;
    let [a, b, c] = [&mesh.nodes[0], &mesh.nodes[1], &mesh.nodes[2]];
    let hash = a.deploy(function("fibonacci-recursive"), "fib").await;

    for node in [b, c] {
        eventually("the module and its name arrive", Duration::from_secs(10), || async {
            node.node.modules().await.iter().any(|m| m.module.to_hex() == hash && m.names == ["fib"])
        })
        .await;
    }
    // Replicated bytes were verified and stored on disk.
    let stored = std::fs::read(c.node.config().data_dir.join("blobs").join(&hash)).unwrap();
    assert_eq!(stored, function("fibonacci-recursive"));

    // A call runs at its key's best owner, which hands the result to the
    // other owners: with three nodes and three owners per key, every node.
    let key = |input: &[u8]| CallKey::new(&hash.parse().unwrap(), input);
    let owner = a.node.owners(&key(b"25")).await.remove(0);
    let first = a.get("/api/fib/25").await;
    assert_eq!((first.text().as_str(), first.header("x-nebula-cache")), ("75025", "miss"));
    assert_eq!(first.header("x-nebula-executed-by"), owner, "run by the key's best owner");
    for node in [b, c] {
        eventually("the result arrives", Duration::from_secs(10), || async { node.node.is_cached("fib", b"25") }).await;
        let answer = node.get("/api/fib/25").await;
        assert_eq!((answer.text().as_str(), answer.header("x-nebula-cache")), ("75025", "hit"));
        assert_eq!(answer.header("x-nebula-executed-by"), owner, "a hit, run once in the mesh");
    }
    // And from c: its owner computes, a gets the hit.
    let owner = c.node.owners(&key(b"24")).await.remove(0);
    assert_eq!(c.get("/api/fib/24").await.header("x-nebula-executed-by"), owner);
    eventually("c's result reaches a", Duration::from_secs(10), || async { a.node.is_cached("fib", b"24") }).await;

    assert_eq!(b.get("/peers").await.json().as_array().unwrap().len(), 2);
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_the_module_forwards_the_call_to_a_holder() {
    // Node 1 neither replicates nor fetches modules: it must forward.
    let mesh = Mesh::start(2, |i, config| {
        if i == 1 {
            config.replicate_budget_bytes = 0;
            config.fetch_for_call_max_bytes = 0;
        }
    })
    .await;
    let hash = mesh.nodes[0].deploy(function("fibonacci"), "fibonacci").await;
    let b = &mesh.nodes[1];
    eventually("b learns who holds the module", Duration::from_secs(10), || async {
        b.get(&format!("/api/{hash}/10")).await.status == StatusCode::OK
    })
    .await;
    let answer = b.get(&format!("/api/{}/12", &hash[..10])).await;
    assert_eq!(answer.text(), "144");
    assert_eq!(answer.header("x-nebula-executed-by"), mesh.id(0), "forwarded to the holder");
    assert!(b.node.modules().await.is_empty(), "the module was not copied to b");
    // The forwarded answer is cached at b too.
    assert!(b.node.is_cached(&hash, b"12"));
    mesh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_mesh_over_quic_alone() {
    use nebula_node::mesh::MeshSettings;

    use crate::common::TestNode;

    let quic_only =
        || MeshSettings { listen: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()], ..MeshSettings::loopback() };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = TestNode::start_with(dir_a.path(), |config| config.mesh = Some(quic_only())).await;
    let bootstrap = vec![crate::harness::peer_address(&a, "/quic-v1/").await.parse().unwrap()];
    let b = TestNode::start_with(dir_b.path(), |config| config.mesh = Some(MeshSettings { bootstrap, ..quic_only() }))
        .await;
    a.deploy(function("echo"), "echo").await;
    eventually("the module reaches b over QUIC", Duration::from_secs(10), || async {
        !b.node.modules().await.is_empty()
    })
    .await;
    let answer = b.get("/api/echo/over-quic").await;
    assert_eq!(answer.text(), "over-quic");
    let executed_by = answer.header("x-nebula-executed-by");
    assert!(executed_by == a.node.id() || executed_by == b.node.id(), "run by the key's owner: {executed_by}");
    b.stop().await;
    a.stop().await;
}

/// Two nodes that know only a third one find each other through its
/// membership gossip: every node must see every member to agree on owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_that_know_one_peer_connect_to_every_member() {
    use nebula_node::mesh::MeshSettings;

    use crate::common::TestNode;

    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let hub = TestNode::start_with(dirs[0].path(), |config| config.mesh = Some(MeshSettings::loopback())).await;
    let bootstrap = vec![crate::harness::tcp_address(&hub).await.parse().unwrap()];
    let mut spokes = Vec::new();
    for dir in &dirs[1..] {
        let bootstrap = bootstrap.clone();
        spokes.push(
            TestNode::start_with(dir.path(), |config| {
                config.mesh = Some(MeshSettings { bootstrap, ..MeshSettings::loopback() })
            })
            .await,
        );
    }
    let (b, c) = (&spokes[0], &spokes[1]);
    eventually("the spokes connect to each other", Duration::from_secs(20), || async {
        b.node.peers().await.iter().any(|peer| peer.connected && peer.peer == c.node.id())
    })
    .await;
    let module = hub.deploy(function("echo"), "echo").await;
    let key = CallKey::new(&module.parse().unwrap(), b"same owners");
    eventually("every member sees the same three owners", Duration::from_secs(10), || async {
        let owners = hub.node.owners(&key).await;
        owners.len() == 3 && b.node.owners(&key).await == owners && c.node.owners(&key).await == owners
    })
    .await;
    for node in spokes.into_iter().chain([hub]) {
        node.stop().await;
    }
}

/// A function with a manifest is one blob to the mesh: it replicates,
/// verified by its hash, and any node runs it with the manifest's arguments
/// and environment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_with_a_manifest_replicates_and_runs_the_same_everywhere() {
    let mesh = Mesh::start(2, |_, _| {}).await;
    let [a, b] = [&mesh.nodes[0], &mesh.nodes[1]];
    let bundle = encode_bundle(FunctionParts {
        module: &fixture("read-files-env"),
        args: vec!["--mode".into(), "mesh".into()],
        env: vec![("REGION".into(), "lab".into())],
        mount: None,
        files: vec![],
    })
    .unwrap();
    let hash = a.deploy(bundle.clone(), "setup").await;
    eventually("the function and its name arrive", Duration::from_secs(10), || async {
        b.node.modules().await.iter().any(|m| m.module.to_hex() == hash && m.names == ["setup"])
    })
    .await;
    let stored = std::fs::read(b.node.config().data_dir.join("blobs").join(&hash)).unwrap();
    assert_eq!(stored, bundle, "the bundle travels whole");

    // Calls from b run at their keys' owners: with inputs enough, some at b itself.
    let (mut executors, mut answers) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    for input in 0..24 {
        let answer = b.call("setup", input.to_string().as_bytes(), "").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        answers.insert(answer.text());
        executors.insert(answer.header("x-nebula-executed-by").to_owned());
    }
    assert_eq!(answers.len(), 1, "the same answer wherever it ran: {answers:?}");
    let seen = answers.into_iter().next().unwrap();
    assert!(seen.contains(r#"env=["REGION"] args=["main", "--mode", "mesh"]"#), "{seen}");
    assert!(executors.contains(b.node.id()) && executors.contains(a.node.id()), "{executors:?}");
    mesh.stop().await;
}

/// `--owners` (here 1) decides how many nodes keep each result; every node
/// agrees on them, and a call anywhere runs at the key's one owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_number_of_owners_is_a_node_setting() {
    let mesh = Mesh::start(3, |_, config| config.owners = 1).await;
    let hash = mesh.nodes[0].deploy(function("fibonacci"), "fibonacci").await;
    let key = CallKey::new(&hash.parse().unwrap(), b"30");
    let owners = mesh.nodes[0].node.owners(&key).await;
    assert_eq!(owners.len(), 1, "{owners:?}");
    for node in &mesh.nodes {
        // Compiled too: an owner still compiling past the caller's patience would have it run there.
        eventually("every node has the module ready and agrees on the owner", Duration::from_secs(30), || async {
            let modules = node.node.modules().await;
            node.node.owners(&key).await == owners && modules.len() == 1 && modules[0].state == "ready"
        })
        .await;
    }
    let caller = mesh.nodes.iter().find(|node| node.node.id() != owners[0]).unwrap();
    let answer = caller.get("/api/fibonacci/30").await;
    assert_eq!(answer.text(), "832040");
    assert_eq!(answer.header("x-nebula-executed-by"), owners[0], "run at the key's one owner");
    mesh.stop().await;
}

/// A module quicker to run than to ask an owner for runs at the node the
/// call reached, once it ran there (the threshold is set far above any run
/// here, so the test does not depend on the machine's speed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_module_runs_at_the_node_the_call_reached() {
    let mesh = Mesh::start(3, |_, config| {
        config.owners = 1;
        config.run_here_below_us = 60_000_000;
    })
    .await;
    let (a, b) = (&mesh.nodes[0], &mesh.nodes[1]);
    let hash = a.deploy(function("echo"), "echo").await;
    for node in &mesh.nodes {
        eventually("every node has the module ready", Duration::from_secs(30), || async {
            let modules = node.node.modules().await;
            modules.len() == 1 && modules[0].state == "ready"
        })
        .await;
    }
    let module = hash.parse().unwrap();
    let mut owned_by = std::collections::BTreeMap::<String, Vec<Vec<u8>>>::new();
    for n in 0..60 {
        let input = format!("input-{n}").into_bytes();
        let owner = a.node.owners(&CallKey::new(&module, &input)).await.remove(0);
        owned_by.entry(owner).or_default().push(input);
    }
    let [on_a, on_b] = [a, b].map(|node| owned_by[node.node.id()].clone());

    // Never run at a yet: the key's owner is asked.
    let first = a.call("echo", &on_b[0], "").await;
    assert_eq!(first.header("x-nebula-executed-by"), b.node.id(), "asked of its owner");
    // Run at a once (a owns that key), so a knows it is quick.
    assert_eq!(a.call("echo", &on_a[0], "").await.header("x-nebula-executed-by"), a.node.id());
    // Now a call whose key b owns runs at a.
    let quick = a.call("echo", &on_b[1], "").await;
    assert_eq!((quick.text().as_bytes(), quick.header("x-nebula-cache")), (on_b[1].as_slice(), "miss"));
    assert_eq!(quick.header("x-nebula-executed-by"), a.node.id(), "run where the call arrived");
    assert!(a.node.is_cached("echo", &on_b[1]), "kept at a");
    mesh.stop().await;
}

/// Modules on one owner each: only the deployer and the module's owner hold
/// it, and a call at a node that never heard of it fetches it from the
/// owner, runs it and keeps it. (Results have no owners here, so the call
/// runs where it arrives.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_on_its_owner_is_fetched_where_a_call_needs_it() {
    let mesh = Mesh::start(3, |_, config| {
        config.module_owners = 1;
        config.owners = 0;
    })
    .await;
    let deployer = &mesh.nodes[0];
    let hash = deployer.deploy(function("fibonacci-recursive"), "fib").await;
    let module = hash.parse().unwrap();
    let owner = deployer.node.module_owners(&module).await.remove(0);
    let holder = mesh.nodes.iter().find(|node| node.node.id() == owner).expect("the owner is a member");
    eventually("the module's owner fetches it", Duration::from_secs(30), || holds(holder, module)).await;
    let other = mesh.nodes.iter().find(|node| node.node.id() != owner && node.node.id() != deployer.node.id());
    let other = other.expect("a node neither deployed to nor owning the module");
    assert!(!holds(other, module).await, "not replicated ahead of need");

    let answer = other.get(&format!("/api/{hash}/25")).await;
    assert_eq!(answer.text(), "75025");
    assert_eq!(answer.header("x-nebula-executed-by"), other.node.id(), "fetched, run here");
    assert!(holds(other, module).await, "kept for the next call");
    eventually("the name arrives", Duration::from_secs(30), || async { other.node.resolve("fib").is_ok() }).await;
    assert_eq!(other.get("/api/fib/20").await.text(), "6765");
    mesh.stop().await;
}

async fn holds(node: &crate::common::TestNode, module: nebula_protocol::ModuleId) -> bool {
    node.node.modules().await.iter().any(|summary| summary.module == module && summary.state == "ready")
}
