//! A private mesh: only nodes holding the same pre-shared key can connect.

use std::time::Duration;

use libp2p::pnet::PreSharedKey;
use nebula_node::mesh::MeshSettings;

use crate::common::{TestNode, function};
use crate::harness::{eventually, tcp_address};

/// Loopback settings, QUIC listen address included: a keyed node skips it.
fn keyed(swarm_key: Option<PreSharedKey>, bootstrap: Vec<libp2p::Multiaddr>) -> MeshSettings {
    MeshSettings { bootstrap, swarm_key, ..MeshSettings::loopback() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_nodes_with_the_swarm_key_join() {
    let lab_key: PreSharedKey = nebula_node::mesh::new_swarm_key().unwrap().parse().unwrap();
    let other_key: PreSharedKey = nebula_node::mesh::new_swarm_key().unwrap().parse().unwrap();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();

    let first = TestNode::start_with(dirs[0].path(), |c| c.mesh = Some(keyed(Some(lab_key), vec![]))).await;
    let address: libp2p::Multiaddr = tcp_address(&first).await.parse().unwrap();
    let member =
        TestNode::start_with(dirs[1].path(), |c| c.mesh = Some(keyed(Some(lab_key), vec![address.clone()]))).await;
    let wrong_key =
        TestNode::start_with(dirs[2].path(), |c| c.mesh = Some(keyed(Some(other_key), vec![address.clone()]))).await;
    let no_key = TestNode::start_with(dirs[3].path(), |c| c.mesh = Some(keyed(None, vec![address]))).await;

    first.deploy(function("echo"), "echo").await;
    eventually("the member joins and replicates the module", Duration::from_secs(15), || async {
        member.get("/api/echo/lab").await.text() == "lab"
    })
    .await;
    // The outsiders have been redialling every second all along.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for outsider in [&wrong_key, &no_key] {
        assert!(outsider.node.peers().await.iter().all(|peer| !peer.connected), "an outsider connected");
        assert!(outsider.node.modules().await.is_empty());
    }
    let connected: Vec<String> =
        first.node.peers().await.into_iter().filter(|peer| peer.connected).map(|peer| peer.peer).collect();
    assert_eq!(connected, vec![member.node.id().to_owned()]);
    for node in [first, member, wrong_key, no_key] {
        node.stop().await;
    }
}
