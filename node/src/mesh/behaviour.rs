//! The libp2p behaviours a node runs, and how the swarm is built.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    PeerId, Swarm, SwarmBuilder, Transport, allow_block_list, connection_limits, gossipsub, identify,
    identity::Keypair, mdns, noise, ping, request_response, tcp, yamux,
};
use nebula_protocol::wire::MAX_GOSSIP_BYTES;

use super::MeshSettings;
use super::codec::{PROTOCOL, WireCodec};

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    pub limits: connection_limits::Behaviour,
    pub blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    pub identify: identify::Behaviour,
    pub ping: ping::Behaviour,
    pub gossipsub: gossipsub::Behaviour,
    pub rpc: request_response::Behaviour<WireCodec>,
    pub mdns: Toggle<mdns::tokio::Behaviour>,
}

pub fn build_swarm(key: Keypair, settings: &MeshSettings) -> anyhow::Result<Swarm<Behaviour>> {
    let builder = SwarmBuilder::with_existing_identity(key).with_tokio();
    let idle_timeout = settings.idle_timeout;
    let swarm = match settings.swarm_key {
        None => builder
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)?
            .with_quic()
            .with_behaviour(|key| behaviour(key, settings))?
            .with_swarm_config(|config| config.with_idle_connection_timeout(idle_timeout))
            .build(),
        Some(swarm_key) => builder
            .with_other_transport(|key| private_tcp(key, swarm_key))?
            .with_behaviour(|key| behaviour(key, settings))?
            .with_swarm_config(|config| config.with_idle_connection_timeout(idle_timeout))
            .build(),
    };
    Ok(swarm)
}

/// TCP where every byte, the handshakes included, is encrypted with the
/// mesh's pre-shared key (libp2p pnet): a node without the key cannot even
/// start a noise handshake. QUIC brings its own TLS and cannot be wrapped, so
/// a private mesh runs on TCP only.
fn private_tcp(key: &Keypair, swarm_key: PreSharedKey) -> Result<Boxed<(PeerId, StreamMuxerBox)>, BoxedError> {
    let noise = noise::Config::new(key)?;
    Ok(tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
        .and_then(move |socket, _| PnetConfig::new(swarm_key).handshake(socket))
        .upgrade(upgrade::Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .timeout(PRIVATE_HANDSHAKE_TIMEOUT)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

/// How long a connection may take to pass the pnet, noise and yamux handshakes.
const PRIVATE_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

type BoxedError = Box<dyn std::error::Error + Send + Sync>;

fn behaviour(key: &Keypair, settings: &MeshSettings) -> Result<Behaviour, BoxedError> {
    let peer_id = key.public().to_peer_id();
    let gossipsub_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(settings.gossip_heartbeat)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .max_transmit_size(MAX_GOSSIP_BYTES + 4096)
        // Each message is checked (size, format, budget) before it is passed on.
        .validate_messages()
        // Message ids stay the default (author + sequence number): with
        // content ids, a second holder's identical "I hold module M"
        // would be dropped as a duplicate of the first holder's.
        .build()?;
    let mdns = match settings.mdns {
        true => Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer_id)?),
        false => None,
    };
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(512))
        .with_max_established_per_peer(Some(4))
        .with_max_pending_incoming(Some(64));
    let mut gossipsub =
        gossipsub::Behaviour::new(gossipsub::MessageAuthenticity::Signed(key.clone()), gossipsub_config)?;
    gossipsub.with_peer_score(gossip_scoring(), gossipsub::PeerScoreThresholds::default())?;
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        blocked: allow_block_list::Behaviour::default(),
        identify: identify::Behaviour::new(
            identify::Config::new(super::announced_protocol(settings.wire_version), key.public())
                .with_agent_version(super::agent_version()),
        ),
        ping: ping::Behaviour::new(
            ping::Config::new().with_interval(settings.ping_interval).with_timeout(settings.ping_interval),
        ),
        gossipsub,
        rpc: request_response::Behaviour::with_codec(
            WireCodec::default(),
            [(PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default().with_request_timeout(settings.request_timeout),
        ),
        mdns: Toggle::from(mdns),
    })
}

/// Gossipsub peer scores that count only invalid messages (malformed ones,
/// rejected by the driver): a peer sending a few is graylisted (its messages
/// ignored) until its score decays. The other score components are off: they
/// reward busy topics and would count quiet honest peers, or many nodes on
/// one lab machine (same IP), against them.
fn gossip_scoring() -> gossipsub::PeerScoreParams {
    let invalid_only = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.0,
        first_message_deliveries_weight: 0.0,
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        invalid_message_deliveries_decay: 0.9,
        ..Default::default()
    };
    let mut params = gossipsub::PeerScoreParams { ip_colocation_factor_weight: 0.0, ..Default::default() };
    for topic in super::driver::TOPICS {
        params.topics.insert(gossipsub::IdentTopic::new(topic).hash(), invalid_only.clone());
    }
    params
}
