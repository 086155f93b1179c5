//! The swarm task: one loop over swarm events, commands from the node, and
//! the core's clock tick.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, mdns, ping};
use nebula_protocol::wire::{self, Gossip, MAX_GOSSIP_BYTES, Response};
use nebula_protocol::{Event, FetchFailure};
use tokio::sync::mpsc;

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};

use super::behaviour::{Behaviour, BehaviourEvent, build_swarm};
use super::flood::PeerBudgets;
use super::{Command, MeshHost, MeshSettings, NetworkHandle, PeerLink, Purpose};
use crate::metrics::DropReason;

/// How soon a lost bootstrap peer is dialled again: after a partition heals,
/// this bounds how long the two sides stay apart (5 s made heals take 2.5 s
/// on average). Cheap: a peer being dialled or connected is skipped.
const REDIAL: Duration = Duration::from_secs(1);

/// Gossip topics, one per kind of announcement.
fn topic_of(gossip: &Gossip) -> &'static str {
    match gossip {
        Gossip::ModuleAvailable { .. } => "nebula/modules/1",
        Gossip::Name(_) => "nebula/names/1",
        Gossip::ResultAvailable { .. } => "nebula/results/1",
        Gossip::Load { .. } => "nebula/load/1",
    }
}
pub(super) const TOPICS: [&str; 4] = ["nebula/modules/1", "nebula/names/1", "nebula/results/1", "nebula/load/1"];

/// Starts the swarm task. It ends when the node drops its handle (the
/// command channel closes) or the host is gone.
pub fn spawn(key: Keypair, settings: MeshSettings, host: Weak<dyn MeshHost>) -> anyhow::Result<NetworkHandle> {
    let mut swarm = build_swarm(key, &settings)?;
    for topic in TOPICS {
        swarm.behaviour_mut().gossipsub.subscribe(&gossipsub::IdentTopic::new(topic))?;
    }
    for address in &settings.listen {
        // A private mesh has no QUIC transport (see `behaviour::private_tcp`).
        if settings.swarm_key.is_some() && super::is_quic(address) {
            tracing::info!(%address, "not listening on QUIC: a private mesh runs on TCP only");
            continue;
        }
        swarm.listen_on(address.clone())?;
    }
    let (commands, receiver) = mpsc::unbounded_channel();
    let handle = NetworkHandle {
        commands,
        local_peer: *swarm.local_peer_id(),
        links: Arc::default(),
        listening: Arc::default(),
    };
    let driver = Driver {
        swarm,
        host,
        bootstrap: settings.bootstrap,
        tick: settings.tick,
        links: handle.links.clone(),
        listening: handle.listening.clone(),
        pending: HashMap::new(),
        channels: HashMap::new(),
        next_token: 0,
        started: Instant::now(),
        budgets: PeerBudgets::new(settings.peer_message_budget),
    };
    tokio::spawn(driver.run(receiver));
    Ok(handle)
}

struct Driver {
    swarm: Swarm<Behaviour>,
    host: Weak<dyn MeshHost>,
    bootstrap: Vec<Multiaddr>,
    tick: Duration,
    links: Arc<Mutex<std::collections::BTreeMap<String, PeerLink>>>,
    listening: Arc<Mutex<Vec<Multiaddr>>>,
    /// Outbound requests awaiting their answer.
    pending: HashMap<OutboundRequestId, (String, Purpose)>,
    /// Inbound requests awaiting the node's answer, by token.
    channels: HashMap<u64, ResponseChannel<Response>>,
    next_token: u64,
    started: Instant,
    budgets: PeerBudgets,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        // One timer for the core's tick and the re-dial check: every wake-up
        // of this task also polls the whole swarm, so with the default 1 s
        // tick both share a single wake-up per second.
        let period = self.tick.min(REDIAL);
        let mut timer = tokio::time::interval(period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // A wake-up counts as due when at most half a period early.
        let due = |last: Option<Instant>, every: Duration| last.is_none_or(|at| at.elapsed() + period / 2 >= every);
        let (mut last_tick, mut last_redial) = (None, None);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                _ = timer.tick() => {
                    if due(last_tick, self.tick) {
                        last_tick = Some(Instant::now());
                        let now_ms = self.started.elapsed().as_millis() as u64;
                        self.to_core(Event::Tick { now_ms });
                    }
                    if due(last_redial, REDIAL) {
                        last_redial = Some(Instant::now());
                        self.dial_bootstrap_peers();
                    }
                }
            }
            if self.host.strong_count() == 0 {
                break;
            }
        }
        tracing::debug!("network stopped");
    }

    fn dropped(&self, peer: &PeerId, why: DropReason) {
        if let Some(host) = self.host.upgrade() {
            host.message_dropped(&peer.to_string(), why);
        }
    }

    fn to_core(&self, event: Event) {
        if let Some(host) = self.host.upgrade() {
            host.core_event(event);
        }
    }

    fn dial_bootstrap_peers(&mut self) {
        for address in self.bootstrap.clone() {
            let peer = address.iter().find_map(|protocol| match protocol {
                Protocol::P2p(peer) => Some(peer),
                _ => None,
            });
            if peer.is_some_and(|peer| self.swarm.is_connected(&peer)) {
                continue;
            }
            if peer.is_none() && self.swarm.connected_peers().next().is_some() {
                // Without a peer id we cannot tell whether this one is connected.
                continue;
            }
            let dial = match peer {
                Some(peer) => DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .addresses(vec![address.clone()])
                    .build(),
                None => DialOpts::unknown_peer_id().address(address.clone()).build(),
            };
            if let Err(error) = self.swarm.dial(dial) {
                tracing::debug!(%address, %error, "bootstrap dial failed");
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Publish(gossip) => {
                let topic = gossipsub::IdentTopic::new(topic_of(&gossip));
                match self.swarm.behaviour_mut().gossipsub.publish(topic, wire::encode(&gossip)) {
                    Ok(_) => {}
                    // Already sent within the duplicate window, or nobody is
                    // listening yet: anti-entropy covers both.
                    Err(gossipsub::PublishError::Duplicate | gossipsub::PublishError::NoPeersSubscribedToTopic) => {}
                    Err(error) => tracing::warn!(%error, "publishing gossip failed"),
                }
            }
            Command::TellPeers(gossip) => {
                let peers: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
                for peer in peers {
                    let id = self.swarm.behaviour_mut().rpc.send_request(&peer, wire::Request::Tell(gossip.clone()));
                    self.pending.insert(id, (peer.to_string(), Purpose::Tell));
                }
            }
            Command::Request { peer, request, purpose } => match peer.parse::<PeerId>() {
                Ok(peer_id) => {
                    let id = self.swarm.behaviour_mut().rpc.send_request(&peer_id, request);
                    self.pending.insert(id, (peer, purpose));
                }
                Err(_) => self.request_failed(peer, purpose, "not a peer id".into()),
            },
            Command::Respond { token, response } => {
                if let Some(channel) = self.channels.remove(&token) {
                    // Err: the peer went away meanwhile; nothing to do.
                    let _ = self.swarm.behaviour_mut().rpc.send_response(channel, response);
                }
            }
            Command::Block(peer) => {
                if let Ok(peer) = peer.parse::<PeerId>() {
                    self.swarm.behaviour_mut().blocked.block_peer(peer);
                }
            }
            Command::Dial(address) => {
                if let Err(error) = self.swarm.dial(address.clone()) {
                    tracing::warn!(%address, %error, "dial failed");
                }
            }
            // The run loop stops on it before it gets here.
            Command::Shutdown => {}
            Command::Unblock(peer) => {
                if let Ok(peer_id) = peer.parse::<PeerId>() {
                    self.swarm.behaviour_mut().blocked.unblock_peer(peer_id);
                    let _ = self.swarm.dial(peer_id);
                }
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
                self.listening.lock().expect("listening lock").push(address);
            }
            SwarmEvent::ConnectionEstablished { peer_id, endpoint, num_established, .. } => {
                let mut links = self.links.lock().expect("links lock");
                let link = links.entry(peer_id.to_string()).or_default();
                link.connected = true;
                let address = endpoint.get_remote_address().to_string();
                if endpoint.is_dialer() && !link.addresses.contains(&address) {
                    link.addresses.push(address);
                }
                drop(links);
                if num_established.get() == 1 {
                    tracing::info!(peer = %peer_id, "peer connected");
                    self.to_core(Event::PeerConnected { peer: peer_id.to_string() });
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.budgets.forget(&peer_id);
                if let Some(link) = self.links.lock().expect("links lock").get_mut(&peer_id.to_string()) {
                    link.connected = false;
                }
                tracing::info!(peer = %peer_id, "peer disconnected");
                self.to_core(Event::PeerDisconnected { peer: peer_id.to_string() });
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message }) => {
                // Only what is accepted here is passed on to other peers;
                // rejections count against the sender's gossipsub score.
                let (verdict, gossip) = if !self.budgets.allow(propagation_source, Instant::now()) {
                    self.dropped(&propagation_source, DropReason::OverBudget);
                    (gossipsub::MessageAcceptance::Ignore, None)
                } else {
                    match wire::decode::<Gossip>(&message.data, MAX_GOSSIP_BYTES) {
                        Ok(gossip) => (gossipsub::MessageAcceptance::Accept, Some(gossip)),
                        Err(error) => {
                            tracing::warn!(peer = %propagation_source, %error, "dropped malformed gossip");
                            self.dropped(&propagation_source, DropReason::Malformed);
                            (gossipsub::MessageAcceptance::Reject, None)
                        }
                    }
                };
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                gossipsub.report_message_validation_result(&message_id, &propagation_source, verdict);
                if let Some(gossip) = gossip {
                    let from = message.source.unwrap_or(propagation_source).to_string();
                    self.to_core(Event::GossipReceived { from, gossip });
                }
            }
            BehaviourEvent::Rpc(event) => self.on_rpc_event(event),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, address) in found {
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(address);
                    }
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for address in &info.listen_addrs {
                    self.swarm.add_peer_address(peer_id, address.clone());
                }
                let mut links = self.links.lock().expect("links lock");
                let link = links.entry(peer_id.to_string()).or_default();
                link.addresses = info.listen_addrs.iter().map(ToString::to_string).collect();
            }
            BehaviourEvent::Ping(ping::Event { peer, result: Ok(rtt), .. }) => {
                let mut links = self.links.lock().expect("links lock");
                links.entry(peer.to_string()).or_default().rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
            }
            // libp2p no longer closes a connection whose pings fail; a silent
            // peer (cut link, frozen process) must count as gone, so that
            // requests to it fail now and the core stops choosing it. A peer
            // that merely does not speak ping is left alone.
            BehaviourEvent::Ping(ping::Event { peer, connection, result: Err(error) })
                if !matches!(error, ping::Failure::Unsupported) =>
            {
                tracing::info!(%peer, %error, "peer stopped answering pings; closing the connection");
                self.swarm.close_connection(connection);
            }
            _ => {}
        }
    }

    fn on_rpc_event(&mut self, event: request_response::Event<wire::Request, Response>) {
        use request_response::{Event as Rpc, Message};
        match event {
            Rpc::Message { peer, message: Message::Request { channel, .. }, .. }
                if !self.budgets.allow(peer, Instant::now()) =>
            {
                self.dropped(&peer, DropReason::OverBudget);
                let refusal = Response::Refused("over your message budget; slow down".into());
                let _ = self.swarm.behaviour_mut().rpc.send_response(channel, refusal);
            }
            Rpc::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
                let token = self.next_token;
                self.next_token += 1;
                self.channels.insert(token, channel);
                if let Some(host) = self.host.upgrade() {
                    host.serve_request(peer.to_string(), token, request);
                }
            }
            Rpc::Message { message: Message::Response { request_id, response }, .. } => {
                if let Some((peer, purpose)) = self.pending.remove(&request_id) {
                    self.request_answered(peer, purpose, response);
                }
            }
            Rpc::OutboundFailure { request_id, error, .. } => {
                if let Some((peer, purpose)) = self.pending.remove(&request_id) {
                    tracing::debug!(%peer, %error, "request failed");
                    self.request_failed(peer, purpose, error.to_string());
                }
            }
            Rpc::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "answering a request failed");
            }
            Rpc::ResponseSent { .. } => {}
        }
    }

    fn request_answered(&mut self, peer: String, purpose: Purpose, response: Response) {
        let Some(host) = self.host.upgrade() else { return };
        match (purpose, response) {
            (Purpose::Module(module), Response::Module(bytes)) => host.module_received(module, peer, bytes),
            (Purpose::Result(flight, key), Response::Result(found)) => {
                host.core_event(Event::ResultFetched { flight, key, from: peer, found: found.map(Arc::new) })
            }
            (Purpose::Forward(flight), Response::Call(answer)) => {
                host.core_event(Event::ForwardAnswered { flight, from: peer, answer: Ok(answer) })
            }
            (Purpose::Sync, Response::Sync(response)) => host.core_event(Event::SyncAnswered { from: peer, response }),
            (Purpose::Tell, Response::Told) => {}
            (purpose, other) => {
                let reason = match other {
                    Response::Refused(reason) => reason,
                    _ => "answered with the wrong kind of message".into(),
                };
                tracing::warn!(%peer, %reason, "unusable answer");
                self.request_failed(peer, purpose, reason);
            }
        }
    }

    fn request_failed(&self, peer: String, purpose: Purpose, reason: String) {
        let event = match purpose {
            Purpose::Module(module) => {
                Event::ModuleFetchFailed { module, from: peer, failure: FetchFailure::Unreachable }
            }
            Purpose::Result(flight, key) => Event::ResultFetched { flight, key, from: peer, found: None },
            Purpose::Forward(flight) => Event::ForwardAnswered { flight, from: peer, answer: Err(reason) },
            Purpose::Sync | Purpose::Tell => return,
        };
        self.to_core(event);
    }
}
