//! Starting a mesh of in-process nodes and waiting for it to settle.

use std::future::Future;
use std::time::{Duration, Instant};

use nebula_node::NodeConfig;
use nebula_node::mesh::MeshSettings;
use tempfile::TempDir;

use crate::common::TestNode;

pub struct Mesh {
    pub nodes: Vec<TestNode>,
    _dirs: Vec<TempDir>,
}

impl Mesh {
    /// `n` nodes on loopback, each dialling every node started before it.
    pub async fn start(n: usize, configure: impl Fn(usize, &mut NodeConfig)) -> Mesh {
        let mut nodes: Vec<TestNode> = Vec::new();
        let mut dirs = Vec::new();
        for i in 0..n {
            let dir = tempfile::tempdir().unwrap();
            let mut bootstrap = Vec::new();
            for node in &nodes {
                bootstrap.push(tcp_address(node).await.parse().unwrap());
            }
            let node = TestNode::start_with(dir.path(), |config| {
                config.mesh = Some(MeshSettings { bootstrap, ..MeshSettings::loopback() });
                configure(i, config);
            })
            .await;
            nodes.push(node);
            dirs.push(dir);
        }
        let mesh = Mesh { nodes, _dirs: dirs };
        for node in &mesh.nodes {
            eventually("every node connects to every other", Duration::from_secs(15), || async {
                node.node.peers().await.iter().filter(|peer| peer.connected).count() == n - 1
            })
            .await;
        }
        mesh
    }

    pub fn id(&self, i: usize) -> String {
        self.nodes[i].node.id().to_owned()
    }

    /// Blocks every link between the two groups, on both sides.
    pub fn partition(&self, left: &[usize], right: &[usize], blocked: bool) {
        for &l in left {
            for &r in right {
                self.nodes[l].node.block_peer(&self.id(r), blocked);
                self.nodes[r].node.block_peer(&self.id(l), blocked);
            }
        }
    }

    pub async fn stop(self) {
        for node in self.nodes {
            node.stop().await;
        }
    }
}

/// The node's TCP address to dial (with /p2p/ id), once it listens.
pub async fn tcp_address(node: &TestNode) -> String {
    peer_address(node, "/tcp/").await
}

/// The node's address to dial over the transport whose multiaddr holds `transport`.
pub async fn peer_address(node: &TestNode, transport: &str) -> String {
    let mut found = None;
    eventually("the node listens", Duration::from_secs(10), || {
        found = node.node.listen_addresses().into_iter().find(|address| address.contains(transport));
        let ok = found.is_some();
        async move { ok }
    })
    .await;
    found.unwrap()
}

/// Polls `condition` until it holds, failing the test after `timeout`.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    loop {
        if condition().await {
            return started.elapsed();
        }
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
