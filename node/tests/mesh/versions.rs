//! A mesh with mixed versions: a node refuses a peer that speaks another wire
//! version, says why, and goes on serving the peers that speak its own.

use std::time::{Duration, Instant};

use nebula_node::mesh::MeshSettings;
use nebula_protocol::wire::WIRE_VERSION;

use crate::common::{TestNode, function};
use crate::harness::{eventually, tcp_address};

fn settings(wire_version: u8, bootstrap: Vec<libp2p::Multiaddr>) -> MeshSettings {
    MeshSettings { bootstrap, wire_version, ..MeshSettings::loopback() }
}

/// The reason `node` gives (in `/peers`) for refusing `peer`, once it has.
async fn refusal(node: &TestNode, peer: &TestNode) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let peers = node.get("/peers").await.json();
        let entry = peers.as_array().unwrap().iter().find(|entry| entry["peer"] == peer.node.id()).cloned();
        if let Some(reason) = entry.and_then(|entry| entry["refused"].as_str().map(str::to_owned)) {
            return reason;
        }
        assert!(Instant::now() < deadline, "timed out waiting for the node to refuse the peer: {peers}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_wire_version_is_refused_with_a_reason() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let first = TestNode::start_with(dirs[0].path(), |c| c.mesh = Some(settings(WIRE_VERSION, vec![]))).await;
    let address: libp2p::Multiaddr = tcp_address(&first).await.parse().unwrap();
    let newer = WIRE_VERSION + 1;
    let upgraded =
        TestNode::start_with(dirs[1].path(), |c| c.mesh = Some(settings(newer, vec![address.clone()]))).await;

    let reason = refusal(&first, &upgraded).await;
    assert!(reason.contains(&format!("/nebula/wire/{newer}")) && reason.contains("not compatible"), "{reason}");
    let reason = refusal(&upgraded, &first).await;
    assert!(reason.contains(&format!("/nebula/wire/{WIRE_VERSION}")), "{reason}");

    // The first node goes on with a peer of its own version.
    let same = TestNode::start_with(dirs[2].path(), |c| c.mesh = Some(settings(WIRE_VERSION, vec![address]))).await;
    first.deploy(function("echo"), "echo").await;
    eventually("a peer of the same version replicates the module", Duration::from_secs(15), || async {
        same.get("/api/echo/same").await.text() == "same"
    })
    .await;
    // The refused peer is cut off once it has had a moment to learn why.
    eventually("only the peer of the same version stays connected", Duration::from_secs(30), || async {
        let peers = first.node.peers().await;
        peers.iter().filter(|peer| peer.connected).map(|peer| peer.peer.as_str()).eq([same.node.id()])
    })
    .await;
    assert!(upgraded.node.modules().await.is_empty(), "nothing crossed to the refused peer");
    for node in [first, upgraded, same] {
        node.stop().await;
    }
}
