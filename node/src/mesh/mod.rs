//! The libp2p side of a node: a swarm task that turns network events into
//! [`NetworkEvent`]s for the node and carries out the [`Command`]s it is
//! given. It decides nothing about calls, modules, names or peers' honesty
//! (the core does); it only protects the node from floods (per-peer message
//! budgets) and oversized frames, and keeps connections alive.

mod behaviour;
pub mod codec;
mod driver;
mod flood;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId};
use nebula_protocol::wire::{Gossip, Request, Response};
use nebula_protocol::{InboundId, MessageId, RequestId, Verdict};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

pub use driver::spawn;

#[derive(Debug, Clone)]
pub struct MeshSettings {
    pub listen: Vec<Multiaddr>,
    /// Dialled at start and again whenever the connection is lost.
    pub bootstrap: Vec<Multiaddr>,
    /// Multicast discovery on the LAN; off in tests and containers.
    pub mdns: bool,
    pub idle_timeout: Duration,
    /// libp2p's own bound on a request. The core gives up on each request
    /// much sooner, by its own deadlines; this only frees a stream that a
    /// silent peer would hold forever.
    pub request_timeout: Duration,
    /// The timers an idle node still runs (see README, "Idle footprint"):
    /// gossipsub's mesh maintenance, the liveness ping of each connection,
    /// and anti-entropy with each peer (kept by the core).
    pub gossip_heartbeat: Duration,
    /// How often each connection is pinged; a ping unanswered for as long
    /// closes the connection. TCP alone would keep a connection across a
    /// partition for many minutes, holding requests until they time out.
    pub ping_interval: Duration,
    pub sync_interval: Duration,
    /// Pre-shared key of a private mesh: only nodes holding it can connect
    /// (TCP only; QUIC listen addresses are skipped).
    pub swarm_key: Option<libp2p::pnet::PreSharedKey>,
    /// Messages (gossip and requests) a peer may send per second, sustained;
    /// beyond, they are dropped unread.
    pub peer_message_budget: u32,
    /// The wire version announced to peers (identify's protocol version);
    /// another one only in tests of a mesh with mixed versions.
    pub wire_version: u8,
}

impl Default for MeshSettings {
    fn default() -> Self {
        Self {
            listen: vec!["/ip4/0.0.0.0/tcp/0".parse().unwrap(), "/ip4/0.0.0.0/udp/0/quic-v1".parse().unwrap()],
            bootstrap: Vec::new(),
            mdns: true,
            idle_timeout: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(15 * 60),
            gossip_heartbeat: Duration::from_secs(1),
            ping_interval: Duration::from_secs(15),
            sync_interval: Duration::from_secs(10),
            swarm_key: None,
            peer_message_budget: 1000,
            wire_version: nebula_protocol::wire::WIRE_VERSION,
        }
    }
}

impl MeshSettings {
    /// Loopback only, no multicast: for tests and local clusters.
    pub fn loopback() -> Self {
        Self {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap(), "/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
            mdns: false,
            ..Self::default()
        }
    }
}

/// What the node asks of the swarm (every decision was made by the core).
#[derive(Debug)]
pub enum Command {
    Publish(Gossip),
    /// The core's verdict on a gossip message the swarm delivered.
    Verdict {
        message: MessageId,
        verdict: Verdict,
    },
    Send {
        to: PeerId,
        request: RequestId,
        message: Request,
    },
    Respond {
        inbound: InboundId,
        response: Response,
    },
    Block(PeerId),
    Unblock(PeerId),
    Dial(Multiaddr),
    /// Close every connection and stop the swarm.
    Shutdown,
}

/// What the swarm tells the node: network facts and peers' messages, decoded.
#[derive(Debug)]
pub enum NetworkEvent {
    Connected(PeerId),
    Disconnected(PeerId),
    /// A gossip message (or why it did not decode), awaiting the core's verdict.
    Gossip {
        from: PeerId,
        message: MessageId,
        gossip: Result<Gossip, String>,
    },
    /// A peer's request, awaiting the node's [`Command::Respond`].
    Request {
        from: PeerId,
        inbound: InboundId,
        request: Request,
    },
    /// A peer's answer (a module's slice too: the node checks it before
    /// the core judges it).
    Response {
        request: RequestId,
        from: PeerId,
        response: Response,
    },
    RequestFailed {
        request: RequestId,
        reason: String,
    },
}

/// Network facts about a peer, for `/peers`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerLink {
    pub addresses: Vec<String>,
    pub rtt_ms: Option<f64>,
    pub connected: bool,
    /// Why this node refused the peer (it speaks another wire version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// What a node announces as identify's protocol version: its wire version.
pub fn announced_protocol(wire_version: u8) -> String {
    format!("/nebula/wire/{wire_version}")
}

/// What a node announces as identify's agent version.
pub fn agent_version() -> String {
    format!("nebula/{}", env!("CARGO_PKG_VERSION"))
}

#[derive(Clone)]
pub struct NetworkHandle {
    commands: mpsc::UnboundedSender<Command>,
    local_peer: PeerId,
    links: Arc<Mutex<BTreeMap<String, PeerLink>>>,
    listening: Arc<Mutex<Vec<Multiaddr>>>,
}

impl NetworkHandle {
    pub fn send(&self, command: Command) {
        // Fails only once the swarm task has ended (shutdown).
        let _ = self.commands.send(command);
    }

    pub fn local_peer(&self) -> PeerId {
        self.local_peer
    }

    pub fn links(&self) -> BTreeMap<String, PeerLink> {
        self.links.lock().expect("links lock").clone()
    }

    /// Addresses other nodes can dial, each ending in `/p2p/<peer id>`.
    pub fn listen_addresses(&self) -> Vec<Multiaddr> {
        let local = self.local_peer;
        self.listening
            .lock()
            .expect("listening lock")
            .iter()
            .map(|address| address.clone().with(libp2p::multiaddr::Protocol::P2p(local)))
            .collect()
    }
}

/// Whether `address` is a QUIC one (which a private, pre-shared-key mesh cannot use).
fn is_quic(address: &Multiaddr) -> bool {
    address
        .iter()
        .any(|protocol| matches!(protocol, libp2p::multiaddr::Protocol::QuicV1 | libp2p::multiaddr::Protocol::Quic))
}

/// Reads a swarm key file (the go-libp2p format `nebula swarm-key` writes).
pub fn read_swarm_key(path: &Path) -> anyhow::Result<libp2p::pnet::PreSharedKey> {
    let text = std::fs::read_to_string(path).map_err(|error| anyhow::anyhow!("reading {}: {error}", path.display()))?;
    text.parse().map_err(|error| anyhow::anyhow!("{} is not a swarm key file: {error}", path.display()))
}

/// The node key stored at `path`; `None` if there is no file to read.
pub fn read_key(path: &Path) -> Option<anyhow::Result<Keypair>> {
    let bytes = std::fs::read(path).ok()?;
    Some(
        Keypair::from_protobuf_encoding(&bytes)
            .map_err(|error| anyhow::anyhow!("{} is not a valid node key: {error}", path.display())),
    )
}

/// A new random swarm key, in the file format.
pub fn new_swarm_key() -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(libp2p::pnet::PreSharedKey::new(bytes).to_key_file())
}

/// The node's libp2p key, created on first start and kept in the data directory.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<Keypair> {
    if let Some(key) = read_key(path) {
        return key;
    }
    let key = Keypair::generate_ed25519();
    crate::store::write_atomically(path, &key.to_protobuf_encoding()?)?;
    Ok(key)
}
