//! What peers answer to this node's requests, and what happens when they
//! do not: every answer is routed by what was asked, and an answer of the
//! wrong kind is the peer's misbehaviour.

use super::events::FetchFailure;
use super::requests::{Purpose, answered};
use super::timers::Timer;
use super::{Action, Core, Misbehaviour, PeerKey, RequestId};
use crate::wire::Response;

impl<P: PeerKey> Core<P> {
    pub(super) fn on_peer_response(&mut self, request: RequestId, from: P, response: Response) -> Vec<Action<P>> {
        // Unknown: answered after it timed out, or a duplicate. Nothing waits for it.
        let Some(open) = self.requests.finish(request) else { return Vec::new() };
        self.timers.cancel(&Timer::Request(request));
        match (open.purpose, response) {
            (Purpose::Forward { flight }, Response::Call(answer)) => {
                if let Ok(answer) = &answer {
                    self.slow_owners.observe(&open.to, answer, open.sent_ms, self.now_ms, &self.config);
                }
                self.on_forward_answered(flight, open.to, Ok(answer))
            }
            (Purpose::Sync, Response::Sync(response)) => self.on_sync_answered(open.to, response),
            (Purpose::Tell, Response::Told) | (Purpose::Store, Response::Stored) => Vec::new(),
            (Purpose::FetchSlice { module }, Response::Slice(None)) => {
                self.slice_request_failed(module, request, open.to, FetchFailure::NotFound)
            }
            (purpose, Response::Refused(reason)) => self.purpose_failed(purpose, request, open.to, &reason),
            // The shell delivers slices as `SliceReceived`, verified; not the peer's fault.
            (purpose @ Purpose::FetchSlice { .. }, Response::Slice(Some(_))) => {
                self.purpose_failed(purpose, request, open.to, "a slice delivered unverified")
            }
            (purpose, other) => {
                let misbehaviour = Misbehaviour::WrongKind { asked: purpose.asked(), answered: answered(&other) };
                let mut actions = vec![self.penalise(&from, misbehaviour)];
                actions.extend(self.purpose_failed(purpose, request, open.to, "answered the wrong kind of message"));
                actions
            }
        }
    }

    /// A request failed in transport, or timed out (`Timer::Request`).
    pub(super) fn on_request_failed(&mut self, request: RequestId, reason: &str) -> Vec<Action<P>> {
        let Some(open) = self.requests.finish(request) else { return Vec::new() };
        self.timers.cancel(&Timer::Request(request));
        self.purpose_failed(open.purpose, request, open.to, reason)
    }

    /// What `request` asked of `peer` will not be answered.
    pub(super) fn purpose_failed(
        &mut self,
        purpose: Purpose,
        request: RequestId,
        peer: P,
        reason: &str,
    ) -> Vec<Action<P>> {
        match purpose {
            Purpose::Forward { flight } => self.on_forward_answered(flight, peer, Err(reason.to_owned())),
            Purpose::FetchSlice { module } => {
                self.slice_request_failed(module, request, peer, FetchFailure::Unreachable)
            }
            // Results that did not reach an owner are handed over again when it reconnects.
            Purpose::Sync | Purpose::Tell | Purpose::Store => Vec::new(),
        }
    }

    /// A lost connection fails every request still open to the peer, as
    /// libp2p does: nothing waits for a timeout.
    pub(super) fn fail_requests_to(&mut self, peer: &P) -> Vec<Action<P>> {
        let mut actions = Vec::new();
        for request in self.requests.to_peer(peer) {
            actions.extend(self.on_request_failed(request, "the connection was lost"));
        }
        actions
    }
}
