//! The swarm task: one loop over swarm events and commands from the node.
//! Network facts and peers' messages go to the node as [`NetworkEvent`]s;
//! what the node's core decided comes back as [`Command`]s.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, identify, mdns, ping};
use nebula_protocol::wire::{self, Gossip, MAX_GOSSIP_BYTES, Response};
use nebula_protocol::{InboundId, MessageId, RequestId, Verdict};
use tokio::sync::mpsc;

use super::behaviour::{Behaviour, BehaviourEvent, build_swarm};
use super::flood::PeerBudgets;
use super::{Command, MeshSettings, NetworkEvent, NetworkHandle, PeerLink};
use crate::metrics::{DropReason, Metrics};

/// How soon a lost bootstrap peer is dialled again: after a partition heals,
/// this bounds how long the two sides stay apart (5 s made heals take 2.5 s
/// on average). Only while one is missing: a connected mesh has no timer here.
const REDIAL: Duration = Duration::from_secs(1);

/// How long a peer speaking another wire version stays refused before it may
/// connect again (an operator may have upgraded it meanwhile).
const REFUSAL_HOLD: Duration = Duration::from_secs(60);

/// How long a refused peer's connection is kept open for it to receive this
/// node's identify info, so that it can say why too. (Cutting it off as soon
/// as identify says "answered" was not enough: the answer could still be
/// queued when the connection closed.)
const INFORM_GRACE: Duration = Duration::from_secs(2);

/// Gossip topics, one per kind of announcement.
fn topic_of(gossip: &Gossip) -> &'static str {
    match gossip {
        Gossip::ModuleAvailable { .. } => "nebula/modules/1",
        Gossip::Name(_) => "nebula/names/1",
        Gossip::Load { .. } => "nebula/load/1",
        Gossip::Member { .. } => "nebula/members/1",
    }
}
pub(super) const TOPICS: [&str; 4] = ["nebula/modules/1", "nebula/names/1", "nebula/load/1", "nebula/members/1"];

/// How often this node considers telling the mesh it is a member: at once
/// when its connections changed, otherwise every `MEMBER_REFRESH`.
const MEMBER_CHECK: Duration = Duration::from_secs(2);
const MEMBER_REFRESH: Duration = Duration::from_secs(60);
/// At most this many of its addresses go into a membership message.
const MEMBER_ADDRESSES: usize = 8;

/// Starts the swarm task. It ends on [`Command::Shutdown`], or when every
/// [`NetworkHandle`] is gone (the command channel closes).
pub fn spawn(
    key: Keypair,
    settings: MeshSettings,
    events: mpsc::UnboundedSender<NetworkEvent>,
    metrics: &Metrics,
) -> anyhow::Result<NetworkHandle> {
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
        events,
        dropped: metrics.dropped_counter(),
        bootstrap: settings.bootstrap,
        links: handle.links.clone(),
        listening: handle.listening.clone(),
        requests: HashMap::new(),
        inbound: HashMap::new(),
        gossip: HashMap::new(),
        next_token: 0,
        budgets: PeerBudgets::new(settings.peer_message_budget),
        protocol: super::announced_protocol(settings.wire_version),
        refusals: HashMap::new(),
        member_told: None,
    };
    tokio::spawn(driver.run(receiver));
    Ok(handle)
}

struct Driver {
    swarm: Swarm<Behaviour>,
    events: mpsc::UnboundedSender<NetworkEvent>,
    dropped: crate::metrics::DroppedCounter,
    bootstrap: Vec<Multiaddr>,
    links: Arc<Mutex<BTreeMap<String, PeerLink>>>,
    listening: Arc<Mutex<Vec<Multiaddr>>>,
    /// The node's requests awaiting their answer.
    requests: HashMap<OutboundRequestId, RequestId>,
    /// Peers' requests awaiting the node's answer.
    inbound: HashMap<InboundId, ResponseChannel<Response>>,
    /// Gossip awaiting the core's verdict: gossipsub's id and who passed it on.
    gossip: HashMap<MessageId, (gossipsub::MessageId, PeerId)>,
    next_token: u64,
    budgets: PeerBudgets,
    /// Identify's protocol version this node announces and expects.
    protocol: String,
    /// Peers refused for speaking another wire version.
    refusals: HashMap<PeerId, Refusal>,
    /// When this node last told the mesh it is a member, and how many peers it had then.
    member_told: Option<(Instant, usize)>,
}

/// A refused peer is first kept connected for a moment, so that it learns
/// this node's version, then blocked for a while.
struct Refusal {
    blocked: bool,
    /// When this phase ends.
    until: Instant,
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut redial = tokio::time::interval(REDIAL);
        redial.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut redialling = !self.bootstrap.is_empty();
        let mut refusals = tokio::time::interval(Duration::from_secs(1));
        let mut membership = tokio::time::interval(MEMBER_CHECK);
        membership.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    if self.on_swarm_event(event) {
                        redialling = true;
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Shutdown) | None => break,
                    Some(command) => self.on_command(command),
                },
                _ = redial.tick(), if redialling => redialling = self.dial_bootstrap_peers(),
                _ = refusals.tick(), if !self.refusals.is_empty() => self.carry_out_refusals(),
                _ = membership.tick() => self.announce_membership(),
            }
        }
        tracing::debug!("network stopped");
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    fn tell_node(&self, event: NetworkEvent) {
        // Fails only once the node has stopped; the swarm follows shortly.
        let _ = self.events.send(event);
    }

    fn dropped(&self, peer: &PeerId, reason: DropReason) {
        tracing::debug!(%peer, reason = reason.as_str(), "dropped a peer's message");
        self.dropped.inc(reason);
    }

    /// Dials the bootstrap peers not connected; true while any is missing.
    fn dial_bootstrap_peers(&mut self) -> bool {
        let mut missing = false;
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
            missing = true;
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
        missing
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
            Command::Verdict { message, verdict } => {
                if let Some((id, source)) = self.gossip.remove(&message) {
                    let acceptance = match verdict {
                        Verdict::Accept => gossipsub::MessageAcceptance::Accept,
                        Verdict::Reject => gossipsub::MessageAcceptance::Reject,
                        Verdict::Ignore => gossipsub::MessageAcceptance::Ignore,
                    };
                    let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                    gossipsub.report_message_validation_result(&id, &source, acceptance);
                }
            }
            Command::Send { to, request, message } => {
                let id = self.swarm.behaviour_mut().rpc.send_request(&to, message);
                self.requests.insert(id, request);
            }
            Command::Respond { inbound, response } => {
                if let Some(channel) = self.inbound.remove(&inbound) {
                    // Err: the peer went away meanwhile; nothing to do.
                    let _ = self.swarm.behaviour_mut().rpc.send_response(channel, response);
                }
            }
            Command::Block(peer) => {
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
            Command::Unblock(peer) => {
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                let _ = self.swarm.dial(peer);
            }
            Command::Dial(address) => {
                if let Err(error) = self.swarm.dial(address.clone()) {
                    tracing::warn!(%address, %error, "dial failed");
                }
            }
            // The run loop stops on it before it gets here.
            Command::Shutdown => {}
        }
    }

    /// Handles one swarm event; true if a connection closed (bootstrap
    /// peers may need dialling again).
    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) -> bool {
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
                    self.tell_node(NetworkEvent::Connected(peer_id));
                }
            }
            SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                self.budgets.forget(&peer_id);
                // Closed before its grace ended: it may come back and be judged again.
                self.refusals.retain(|peer, refusal| *peer != peer_id || refusal.blocked);
                if let Some(link) = self.links.lock().expect("links lock").get_mut(&peer_id.to_string()) {
                    link.connected = false;
                }
                tracing::info!(peer = %peer_id, "peer disconnected");
                self.tell_node(NetworkEvent::Disconnected(peer_id));
                return true;
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
        false
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, .. })
                if self.is_refused(&propagation_source) =>
            {
                let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                gossipsub.report_message_validation_result(
                    &message_id,
                    &propagation_source,
                    gossipsub::MessageAcceptance::Ignore,
                );
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message { propagation_source, message_id, message }) => {
                // A flood is cut off before anything is decoded. The rest goes
                // to the core, whose verdict decides whether gossipsub passes it on.
                if !self.budgets.allow(propagation_source, Instant::now()) {
                    self.dropped(&propagation_source, DropReason::OverBudget);
                    let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
                    gossipsub.report_message_validation_result(
                        &message_id,
                        &propagation_source,
                        gossipsub::MessageAcceptance::Ignore,
                    );
                    return;
                }
                let gossip = wire::decode::<Gossip>(&message.data, MAX_GOSSIP_BYTES).map_err(|error| {
                    tracing::warn!(peer = %propagation_source, %error, "malformed gossip");
                    self.dropped(&propagation_source, DropReason::Malformed);
                    error.to_string()
                });
                let token = self.token();
                self.gossip.insert(token, (message_id, propagation_source));
                let from = message.source.unwrap_or(propagation_source);
                if let Ok(Gossip::Member { addresses }) = &gossip {
                    self.dial_member(from, addresses);
                }
                self.tell_node(NetworkEvent::Gossip { from, message: token, gossip });
            }
            BehaviourEvent::Rpc(event) => self.on_rpc_event(event),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, address) in found {
                    if !self.swarm.is_connected(&peer) {
                        let _ = self.swarm.dial(address);
                    }
                }
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if info.protocol_version != self.protocol =>
            {
                self.refuse(peer_id, &info);
            }
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. }) => {
                for address in &info.listen_addrs {
                    self.swarm.add_peer_address(peer_id, address.clone());
                }
                let mut links = self.links.lock().expect("links lock");
                let link = links.entry(peer_id.to_string()).or_default();
                link.addresses = info.listen_addrs.iter().map(ToString::to_string).collect();
                link.refused = None;
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

    /// A peer speaking another wire version would misread every message and
    /// have its own misread: say why in the log and in `/peers`, and cut it
    /// off once it has had time to learn this node's version.
    fn refuse(&mut self, peer: PeerId, info: &identify::Info) {
        let reason = format!(
            "speaks {} ({}), this node {} ({}): not compatible",
            info.protocol_version,
            info.agent_version,
            self.protocol,
            super::agent_version()
        );
        tracing::warn!(%peer, %reason, "refusing a peer of another protocol version");
        let mut links = self.links.lock().expect("links lock");
        let link = links.entry(peer.to_string()).or_default();
        link.refused = Some(reason);
        link.addresses = info.listen_addrs.iter().map(ToString::to_string).collect();
        drop(links);
        if !self.is_refused(&peer) {
            // For the core the peer is gone now; what it still sends is dropped.
            self.tell_node(NetworkEvent::Disconnected(peer));
            self.refusals.insert(peer, Refusal { blocked: false, until: Instant::now() + INFORM_GRACE });
        }
    }

    /// Tells the mesh this node is a member and where to reach it, when its
    /// connections changed or a while has passed: every node then connects to
    /// every member, so that all see the same members and agree on who owns
    /// which result (a node started with one bootstrap peer would otherwise
    /// know only that one).
    fn announce_membership(&mut self) {
        let connected = self.swarm.connected_peers().count();
        let fresh = self.member_told.is_some_and(|(at, count)| count == connected && at.elapsed() < MEMBER_REFRESH);
        if connected == 0 || fresh {
            return;
        }
        let listening = self.listening.lock().expect("listening lock");
        let addresses = listening.iter().take(MEMBER_ADDRESSES).map(ToString::to_string).collect();
        drop(listening);
        let gossip = Gossip::Member { addresses };
        let topic = gossipsub::IdentTopic::new(topic_of(&gossip));
        // Fails until a peer's subscription has arrived: tried again at the next check.
        if self.swarm.behaviour_mut().gossipsub.publish(topic, wire::encode(&gossip)).is_ok() {
            self.member_told = Some((Instant::now(), connected));
        }
    }

    /// Connects to a member heard of by gossip, unless connected or refused.
    fn dial_member(&mut self, member: PeerId, addresses: &[String]) {
        if member == *self.swarm.local_peer_id() || self.swarm.is_connected(&member) || self.is_refused(&member) {
            return;
        }
        let addresses: Vec<Multiaddr> =
            addresses.iter().take(MEMBER_ADDRESSES).filter_map(|address| address.parse().ok()).collect();
        let dial =
            DialOpts::peer_id(member).condition(PeerCondition::DisconnectedAndNotDialing).addresses(addresses).build();
        if let Err(error) = self.swarm.dial(dial) {
            tracing::debug!(%member, %error, "dialling a member failed");
        }
    }

    fn is_refused(&self, peer: &PeerId) -> bool {
        self.refusals.contains_key(peer)
    }

    /// Moves each refusal whose phase is over on: a peer whose grace ended is
    /// disconnected and blocked; one blocked long enough is let in again.
    fn carry_out_refusals(&mut self) {
        let now = Instant::now();
        let due: Vec<PeerId> =
            self.refusals.iter().filter(|(_, refusal)| refusal.until <= now).map(|(peer, _)| *peer).collect();
        for peer in due {
            let blocked = &mut self.swarm.behaviour_mut().blocked;
            match self.refusals[&peer].blocked {
                false => {
                    blocked.block_peer(peer);
                    let _ = self.swarm.disconnect_peer_id(peer);
                    self.refusals.insert(peer, Refusal { blocked: true, until: now + REFUSAL_HOLD });
                }
                true => {
                    blocked.unblock_peer(peer);
                    self.refusals.remove(&peer);
                }
            }
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
            Rpc::Message { peer, message: Message::Request { channel, .. }, .. } if self.is_refused(&peer) => {
                let refusal = Response::Refused("this node speaks another protocol version".into());
                let _ = self.swarm.behaviour_mut().rpc.send_response(channel, refusal);
            }
            Rpc::Message { peer, message: Message::Request { request, channel, .. }, .. } => {
                let inbound = self.token();
                self.inbound.insert(inbound, channel);
                self.tell_node(NetworkEvent::Request { from: peer, inbound, request });
            }
            Rpc::Message { peer, message: Message::Response { request_id, response }, .. } => {
                let Some(request) = self.requests.remove(&request_id) else { return };
                self.tell_node(NetworkEvent::Response { request, from: peer, response });
            }
            Rpc::OutboundFailure { request_id, error, peer, .. } => {
                if let Some(request) = self.requests.remove(&request_id) {
                    tracing::debug!(%peer, %error, "request failed");
                    self.tell_node(NetworkEvent::RequestFailed { request, reason: error.to_string() });
                }
            }
            Rpc::InboundFailure { peer, error, .. } => {
                tracing::debug!(%peer, %error, "answering a request failed");
            }
            Rpc::ResponseSent { .. } => {}
        }
    }
}
