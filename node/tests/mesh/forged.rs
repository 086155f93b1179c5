//! Peers that lie about results: a forged signature is refused outright; a
//! correctly signed lie is caught by re-executing (`verify_remote`). The
//! liar is a member of the mesh, so it owns some calls' results: the victim
//! asks it for those.

use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, gossipsub, request_response};
use nebula_node::mesh::MeshSettings;
use nebula_protocol::wire::{RemoteAnswer, Request, Response};
use nebula_protocol::{CacheStatus, CallKey, ExecutionRecord, ModuleId, Outcome, Timings};

use crate::common::{TestNode, function};
use crate::harness::tcp_address;
use crate::rogue::{RogueBehaviourEvent, rogue_peer};

/// A peer that answers every call it owns with its lie about it.
async fn run_forger(identity: Keypair, victim: Multiaddr, lies: Vec<(CallKey, ExecutionRecord)>) {
    let mut swarm = rogue_peer(identity, &gossipsub::IdentTopic::new("nebula/modules/1"));
    swarm.dial(victim).unwrap();
    loop {
        if let SwarmEvent::Behaviour(RogueBehaviourEvent::Rpc(request_response::Event::Message {
            message: request_response::Message::Request { request, channel, .. },
            ..
        })) = swarm.select_next_some().await
        {
            let response = match request {
                Request::Call { reference, input, .. } => {
                    let key = CallKey::new(&reference.parse().unwrap(), &input);
                    match lies.iter().find(|(k, _)| *k == key) {
                        Some((key, lie)) => {
                            Response::Call(Ok(RemoteAnswer { key: *key, cache: CacheStatus::Hit, record: lie.clone() }))
                        }
                        None => Response::Refused("forger".into()),
                    }
                }
                _ => Response::Refused("forger".into()),
            };
            let _ = swarm.behaviour_mut().rpc.send_response(channel, response);
        }
    }
}

/// Inputs the forger lies about.
const LIED_ABOUT: usize = 40;

/// The forger's signed lies about echo's answer to `hello0`, `hello1`, …,
/// each naming `executed_by` as the node that ran it.
fn lies(identity: &Keypair, module: ModuleId, executed_by: &str) -> Vec<(CallKey, ExecutionRecord)> {
    (0..LIED_ABOUT)
        .map(|n| {
            let key = CallKey::new(&module, format!("hello{n}").as_bytes());
            let mut lie = lie_about(module, executed_by.to_owned());
            nebula_node::signing::sign(identity, &key, &mut lie);
            (key, lie)
        })
        .collect()
}

/// Calls echo with `hello0`, `hello1`, … until the victim penalises a peer;
/// every answer must be the true one.
async fn call_until_penalised(victim: &TestNode) {
    for n in 0..LIED_ABOUT {
        let input = format!("hello{n}");
        assert_eq!(victim.get(&format!("/api/echo/{input}")).await.text(), input, "a lie got through");
        if victim.metric("nebula_peer_penalties_total").await >= 1.0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("the liar was never caught");
}

fn lie_about(module: ModuleId, executed_by: String) -> ExecutionRecord {
    ExecutionRecord {
        module,
        outcome: Outcome::Success { stdout: b"lie".to_vec() },
        fuel_used: 1,
        timings: Timings::default(),
        executed_by,
        signature: Vec::new(),
    }
}

async fn victim(verify_remote: u8) -> (TestNode, tempfile::TempDir, ModuleId) {
    let dir = tempfile::tempdir().unwrap();
    let node = TestNode::start_with(dir.path(), |config| {
        config.mesh = Some(MeshSettings::loopback());
        config.verify_remote = verify_remote;
    })
    .await;
    let wasm = function("echo");
    node.deploy(wasm.clone(), "echo").await;
    (node, dir, ModuleId::of_bytes(&wasm))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_with_a_forged_signature_is_refused_and_its_sender_penalised() {
    let (victim, _dir, module) = victim(0).await;
    // Signed by the forger, but pinned on the victim itself.
    let forger_identity = Keypair::generate_ed25519();
    let lies = lies(&forger_identity, module, victim.node.id());
    let forger = tokio::spawn(run_forger(forger_identity, tcp_address(&victim).await.parse().unwrap(), lies));
    call_until_penalised(&victim).await;
    forger.abort();
    victim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correctly_signed_lie_is_caught_by_running_the_call_again() {
    let (victim, _dir, module) = victim(1).await;
    let forger_identity = Keypair::generate_ed25519();
    let forger_id = forger_identity.public().to_peer_id().to_string();
    let lies = lies(&forger_identity, module, &forger_id);
    let forger = tokio::spawn(run_forger(forger_identity, tcp_address(&victim).await.parse().unwrap(), lies));
    call_until_penalised(&victim).await;
    forger.abort();
    victim.stop().await;
}
