//! Answering peers' requests: modules and results held here, forwarded
//! calls (under this node's limits), anti-entropy, direct tells, and
//! results to keep.

use std::sync::Arc;

use super::flights::Waiter;
use super::{Action, Core, InboundId, LookupFor, PeerKey};
use crate::wire::{Request, Response, SliceIndex, slice_count};

impl<P: PeerKey> Core<P> {
    pub(super) fn on_peer_request(&mut self, from: P, inbound: InboundId, request: Request) -> Vec<Action<P>> {
        if from == self.local {
            return vec![Action::Respond { inbound, response: Response::Refused("a node does not ask itself".into()) }];
        }
        match request {
            Request::FetchSlice { module, slice } => match self.modules.info(&module) {
                Some(held) if matches!(slice, SliceIndex::At(index) if index >= slice_count(held.size)) => {
                    let reason = format!("module {module} has {} slices", slice_count(held.size));
                    vec![Action::Respond { inbound, response: Response::Refused(reason) }]
                }
                Some(_) => vec![Action::ServeSlice { inbound, module, slice }],
                None => vec![Action::Respond { inbound, response: Response::Slice(None) }],
            },
            Request::FetchResult { key } => vec![self.look_up(key, LookupFor::Peer(inbound))],
            Request::Call { reference, input, limits, hops } => {
                // The caller's limits come along; this node's maximums still hold.
                let limits = limits.clamped_to(&self.config.max_limits);
                let hops = hops.max(1);
                self.start_call(Waiter::Peer(inbound), Some(from), &reference, Arc::from(input), limits, hops)
            }
            Request::Sync(request) => {
                let response = self.sync_response(&from, &request);
                vec![Action::Respond { inbound, response: Response::Sync(response) }]
            }
            Request::Store(batch) => self.on_store_request(from, inbound, batch),
            Request::Tell(gossip) => {
                let mut actions = vec![Action::Respond { inbound, response: Response::Told }];
                // Told directly, not relayed by gossipsub: no verdict to give.
                let (_, judged) = self.on_gossip(from, gossip);
                actions.extend(judged);
                actions
            }
        }
    }
}
