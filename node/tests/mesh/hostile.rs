//! Peers that vanish mid-call, and a peer that lies about a module's bytes.

use std::time::Duration;

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, gossipsub, request_response};
use nebula_protocol::ModuleId;
use nebula_protocol::wire::{self, Gossip, ModuleSlice, Request, Response, SliceIndex};

use crate::common::{TestNode, function};
use crate::harness::{Mesh, eventually, tcp_address};
use crate::rogue::{RogueBehaviourEvent, rogue_peer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_the_executing_node_vanishing() {
    // Node 2 must forward (it never holds modules); 0 and 1 hold the module.
    let mesh = Mesh::start(3, |i, config| {
        if i == 2 {
            config.replicate_budget_bytes = 0;
            config.fetch_for_call_max_bytes = 0;
        }
    })
    .await;
    mesh.nodes[0].deploy(function("fibonacci-recursive"), "fib").await;
    eventually("node 1 replicates the module", Duration::from_secs(10), || async {
        !mesh.nodes[1].node.modules().await.is_empty()
    })
    .await;
    let caller = &mesh.nodes[2];
    eventually("node 2 knows both holders", Duration::from_secs(10), || async {
        caller.node.peers().await.iter().filter(|peer| peer.capacity > 0).count() == 2
    })
    .await;

    // A slow call (~1 s of work); whichever holder runs it vanishes mid-call.
    let call = tokio::spawn({
        let url = caller.url.clone();
        async move { reqwest::get(format!("{url}/api/fib/35")).await.unwrap() }
    });
    let executing = std::sync::Mutex::new(None);
    eventually("a holder starts executing", Duration::from_secs(10), || async {
        for i in 0..2 {
            if mesh.nodes[i].node.status().await.calls_in_flight > 0 {
                *executing.lock().unwrap() = Some(i);
                return true;
            }
        }
        false
    })
    .await;
    let vanished = executing.into_inner().unwrap().unwrap();
    mesh.nodes[vanished].node.leave_mesh();

    let answer = call.await.unwrap();
    let executed_by = answer.headers()["x-nebula-executed-by"].to_str().unwrap().to_owned();
    assert_eq!(answer.text().await.unwrap(), "9227465");
    assert_eq!(executed_by, mesh.id(1 - vanished), "retried at the other holder");
    mesh.stop().await;
}

/// A peer that announces a module and then serves wrong slices of it,
/// telling `asked` which slice each request was for.
async fn run_liar(
    victim: Multiaddr,
    module: ModuleId,
    size: u64,
    asked: tokio::sync::mpsc::UnboundedSender<SliceIndex>,
) {
    let topic = gossipsub::IdentTopic::new("nebula/modules/1");
    let mut swarm = rogue_peer(Keypair::generate_ed25519(), &topic);
    swarm.dial(victim).unwrap();
    let mut announce = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = announce.tick() => {
                // Fails until the victim's subscription arrives; keep trying.
                let lie = Gossip::ModuleAvailable { module, size };
                let _ = swarm.behaviour_mut().gossipsub.publish(topic.clone(), wire::encode(&lie));
            }
            event = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(RogueBehaviourEvent::Rpc(request_response::Event::Message {
                    message: request_response::Message::Request { request, channel, .. }, ..
                })) = event {
                    let response = match request {
                        Request::FetchSlice { slice, .. } => {
                            let _ = asked.send(slice);
                            let encoded = b"\0asm definitely not it".to_vec();
                            Response::Slice(Some(ModuleSlice { size, index: 0, encoded }))
                        }
                        _ => Response::Refused("liar".into()),
                    };
                    let _ = swarm.behaviour_mut().rpc.send_response(channel, response);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slices_that_do_not_verify_are_rejected_after_one_and_fetched_elsewhere() {
    let honest_dir = tempfile::tempdir().unwrap();
    let honest =
        TestNode::start_with(honest_dir.path(), |c| c.mesh = Some(nebula_node::mesh::MeshSettings::loopback())).await;
    let wasm = function("echo");
    let module = ModuleId::of_bytes(&wasm);
    honest.deploy(wasm.clone(), "echo").await;

    let victim_dir = tempfile::tempdir().unwrap();
    let victim =
        TestNode::start_with(victim_dir.path(), |c| c.mesh = Some(nebula_node::mesh::MeshSettings::loopback())).await;
    let (asked, mut slices_asked) = tokio::sync::mpsc::unbounded_channel();
    let address = tcp_address(&victim).await.parse().unwrap();
    let liar = tokio::spawn(run_liar(address, module, wasm.len() as u64, asked));

    eventually("the victim catches the liar", Duration::from_secs(15), || async {
        victim.metric("nebula_peer_penalties_total").await >= 1.0
    })
    .await;
    assert!(victim.node.modules().await.is_empty(), "the lie was not stored");
    // Each fetch (the liar announces again and again) asks it for one slice,
    // the first: caught there, it is asked nothing more.
    let mut seen = Vec::new();
    while let Ok(slice) = slices_asked.try_recv() {
        seen.push(slice);
    }
    // (Read after: a slice asked for is answered at once, and judged soon after.)
    let penalties = victim.metric("nebula_peer_penalties_total").await;
    assert!(seen.iter().all(|slice| *slice == SliceIndex::Last), "{seen:?}");
    assert!(seen.len() as f64 <= penalties + 1.0, "{} slices asked for {penalties} penalties", seen.len());

    // An honest holder appears: the module is fetched from it and works.
    victim.node.dial(&tcp_address(&honest).await).unwrap();
    eventually("the module arrives from the honest peer", Duration::from_secs(15), || async {
        victim.node.modules().await.iter().any(|m| m.module == module)
    })
    .await;
    assert_eq!(victim.get("/api/echo/hello").await.text(), "hello");
    let blob = std::fs::read(victim.node.config().data_dir.join("blobs").join(module.to_hex())).unwrap();
    assert_eq!(blob, wasm);
    liar.abort();
    victim.stop().await;
    honest.stop().await;
}
