//! A peer flooding a node with malformed gossip and requests: the sender's
//! gossip is ignored once it has sent a few bad messages, the excess of its
//! requests is dropped unread, and the node keeps serving its own callers.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, gossipsub, request_response};
use nebula_node::mesh::MeshSettings;
use nebula_protocol::wire::{Gossip, Request, Response};
use tokio::sync::oneshot;

use crate::common::{TestNode, function};
use crate::harness::{eventually, tcp_address};
use crate::rogue::{RogueBehaviourEvent, rogue_peer};

const REQUESTS: usize = 5_000;
const GARBAGE: usize = 200;

#[derive(Debug, Default)]
struct FloodReport {
    told: usize,
    refused: usize,
    failed: usize,
    garbage_published: usize,
}

/// Publishes `GARBAGE` malformed gossip messages, then, once the test says
/// the victim has read some (`go`), sends `REQUESTS` requests as fast as the
/// connection takes them; returns what came back once every request is
/// answered. The phases follow events, not time: a loaded machine makes
/// them slower, never different (every wait is bounded).
async fn flood(victim: Multiaddr, published: oneshot::Sender<()>, mut go: oneshot::Receiver<()>) -> FloodReport {
    let topic = gossipsub::IdentTopic::new("nebula/load/1");
    let mut swarm = rogue_peer(Keypair::generate_ed25519(), &topic);
    swarm.dial(victim).unwrap();
    let mut report = FloodReport::default();
    let victim_id = loop {
        if let SwarmEvent::ConnectionEstablished { peer_id, .. } = swarm.select_next_some().await {
            break peer_id;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut publish = tokio::time::interval(Duration::from_millis(5));
    while report.garbage_published < GARBAGE && Instant::now() < deadline {
        tokio::select! {
            _ = publish.tick() => {
                let garbage = format!("not a nebula message {}", report.garbage_published).into_bytes();
                // Fails until the victim's subscription arrives; keep trying.
                if swarm.behaviour_mut().gossipsub.publish(topic.clone(), garbage).is_ok() {
                    report.garbage_published += 1;
                }
            }
            _ = swarm.select_next_some() => {}
        }
    }
    let _ = published.send(());
    while Instant::now() < deadline {
        tokio::select! {
            _ = &mut go => break,
            _ = swarm.select_next_some() => {}
        }
    }
    for _ in 0..REQUESTS {
        let load = Gossip::Load { executing: 0, capacity: 1 };
        swarm.behaviour_mut().rpc.send_request(&victim_id, Request::Tell(load));
    }
    while report.told + report.refused + report.failed < REQUESTS && Instant::now() < deadline {
        match swarm.select_next_some().await {
            SwarmEvent::Behaviour(RogueBehaviourEvent::Rpc(request_response::Event::Message {
                message: request_response::Message::Response { response, .. },
                ..
            })) => match response {
                Response::Told => report.told += 1,
                _ => report.refused += 1,
            },
            SwarmEvent::Behaviour(RogueBehaviourEvent::Rpc(request_response::Event::OutboundFailure { .. })) => {
                report.failed += 1;
            }
            _ => {}
        }
    }
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_peer_is_throttled_and_callers_are_still_served() {
    let dir = tempfile::tempdir().unwrap();
    let victim = TestNode::start_with(dir.path(), |config| {
        // Low enough that even a victim slowed down by a busy machine reads
        // requests faster than its budget refills.
        config.mesh = Some(MeshSettings { peer_message_budget: 50, ..MeshSettings::loopback() });
    })
    .await;
    victim.deploy(function("echo"), "echo").await;
    let (published, garbage_sent) = oneshot::channel();
    let (go, requests_may_start) = oneshot::channel();
    let flooder = tokio::spawn(flood(tcp_address(&victim).await.parse().unwrap(), published, requests_may_start));
    // The garbage meets a full budget: the first few messages are read (and
    // rejected) until the flooder's gossipsub score falls.
    garbage_sent.await.unwrap();
    let malformed = r#"nebula_peer_messages_dropped_total{reason="malformed"}"#;
    eventually("the victim reads some garbage", Duration::from_secs(60), || async {
        victim.metric(malformed).await >= 1.0
    })
    .await;
    go.send(()).unwrap();

    // Callers are served all along.
    let mut served = 0;
    while !flooder.is_finished() && served < 200 {
        let input = format!("during-flood-{served}");
        assert_eq!(victim.get(&format!("/api/echo/{input}")).await.text(), input);
        served += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = flooder.await.unwrap();
    println!("{report:?}, {served} calls served during the flood");
    assert!(report.refused > 0, "the excess was refused: {report:?}");
    assert!(report.told < REQUESTS, "{report:?}");
    assert_eq!(report.garbage_published, GARBAGE, "{report:?}");
    let over_budget = victim.metric(r#"nebula_peer_messages_dropped_total{reason="over_budget"}"#).await;
    assert!(over_budget >= report.refused as f64, "dropped {over_budget} over budget, {report:?}");
    // After a few malformed messages the flooder's gossip is ignored
    // (graylisted by its score) before it reaches the node's own code.
    let malformed_read = victim.metric(malformed).await;
    assert!(malformed_read < (GARBAGE / 4) as f64, "{malformed_read} of {GARBAGE} malformed messages were read");
    victim.stop().await;
}
