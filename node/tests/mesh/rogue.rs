//! A bare libp2p peer that speaks Nebula's gossip and request-response but
//! none of its rules: the tests script what it lies about or floods.

use std::time::Duration;

use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::{Swarm, SwarmBuilder, gossipsub, noise, request_response, tcp, yamux};
use nebula_node::mesh::codec::{PROTOCOL, WireCodec};

#[derive(NetworkBehaviour)]
pub struct RogueBehaviour {
    pub gossipsub: gossipsub::Behaviour,
    pub rpc: request_response::Behaviour<WireCodec>,
}

/// A rogue peer with `identity`, subscribed to `topic`; it dials nothing yet.
pub fn rogue_peer(identity: Keypair, topic: &gossipsub::IdentTopic) -> Swarm<RogueBehaviour> {
    let mut swarm = SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(tcp::Config::default(), noise::Config::new, yamux::Config::default)
        .unwrap()
        .with_behaviour(|key| RogueBehaviour {
            gossipsub: gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossipsub::Config::default(),
            )
            .unwrap(),
            rpc: request_response::Behaviour::with_codec(
                WireCodec::default(),
                [(PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(30)),
            ),
        })
        .unwrap()
        .with_swarm_config(|config| config.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm.behaviour_mut().gossipsub.subscribe(topic).unwrap();
    swarm
}
