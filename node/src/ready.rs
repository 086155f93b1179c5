//! `nebula node --ready-file PATH`: once the node accepts calls (and, with a
//! mesh, once its p2p listeners have their addresses), it writes a small
//! JSON document there, atomically (a temp file renamed into place), so
//! scripts and tests wait for that file instead of scraping the log.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Node;

/// How long a mesh node waits for its p2p listeners before announcing
/// without them (they bind within milliseconds unless something is wrong).
const LISTENERS_PATIENCE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub peer_id: String,
    pub http_url: String,
    /// Full addresses other nodes pass to `--peer` (empty without a mesh).
    pub p2p_addresses: Vec<String>,
    pub version: String,
}

/// The node's addresses, once its p2p listeners (if any) have them.
pub async fn readiness(node: &Node, http_url: String) -> Readiness {
    let mut p2p_addresses = node.listen_addresses();
    if node.config().mesh.is_some() {
        let waited = tokio::time::Instant::now();
        while p2p_addresses.is_empty() && waited.elapsed() < LISTENERS_PATIENCE {
            tokio::time::sleep(Duration::from_millis(10)).await;
            p2p_addresses = node.listen_addresses();
        }
    }
    Readiness { peer_id: node.id().to_string(), http_url, p2p_addresses, version: env!("CARGO_PKG_VERSION").to_owned() }
}

/// Writes `readiness` to `path` so that a reader never sees half a file.
pub fn write(path: &Path, readiness: &Readiness) -> anyhow::Result<()> {
    crate::store::write_atomically(path, &serde_json::to_vec_pretty(readiness)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_appears_whole_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.json");
        let readiness = Readiness {
            peer_id: "12D3KooW".into(),
            http_url: "http://127.0.0.1:1".into(),
            p2p_addresses: vec!["/ip4/127.0.0.1/tcp/2/p2p/12D3KooW".into()],
            version: "0.1.0".into(),
        };
        write(&path, &readiness).unwrap();
        let read: Readiness = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(read, readiness);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temp file left");
    }
}
