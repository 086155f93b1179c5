//! What the node does with what arrives from peers: core events pass
//! through once every result in them is checked against its executor's
//! signature; requests are answered from the store, the cache, the core or a
//! call; fetched modules are verified before anything else.

use std::sync::Arc;

use nebula_protocol::wire::{Gossip, RemoteAnswer, Request, Response};
use nebula_protocol::{CallKey, Event, ExecutionRecord, FetchFailure, ModuleId};

use super::Shared;
use crate::mesh::MeshHost;
use crate::signing;

impl MeshHost for Shared {
    fn core_event(&self, event: Event) {
        // Signatures are checked before the core is locked: every call waits on that lock.
        let events = vetted(event);
        let actions: Vec<_> = {
            let mut core = self.core();
            events.into_iter().flat_map(|event| core.handle(event)).collect()
        };
        self.arc().perform(actions);
    }

    fn serve_request(&self, from: String, token: u64, request: Request) {
        let shared = self.arc();
        match request {
            Request::FetchModule { module } => {
                tokio::task::spawn_blocking(move || {
                    let bytes = shared.blobs.get(&module).ok();
                    shared.respond(token, Response::Module(bytes));
                });
            }
            Request::FetchResult { key } => {
                let found = shared.lookup_result(&key).map(|record| (*record).clone());
                shared.respond(token, Response::Result(found));
            }
            Request::Call { reference, input, limits, hops } => {
                tokio::spawn(async move {
                    // The caller's limits come along; this node's maximums still hold.
                    let limits = limits.clamped_to(&shared.config.max_limits);
                    let answer = shared.call(&reference, input, limits, hops).await.reply.map(|answer| RemoteAnswer {
                        key: answer.key,
                        cache: answer.cache,
                        record: (*answer.record).clone(),
                    });
                    shared.respond(token, Response::Call(answer));
                });
            }
            Request::Sync(request) => shared.core_event(Event::SyncRequested { from, token, request }),
            Request::Tell(gossip) => {
                shared.respond(token, Response::Told);
                shared.core_event(Event::GossipReceived { from, gossip });
            }
        }
    }

    fn message_dropped(&self, peer: &str, why: crate::metrics::DropReason) {
        tracing::debug!(%peer, why = why.as_str(), "dropped a peer's message");
        self.metrics.record_dropped(why);
    }

    fn module_received(&self, module: ModuleId, from: String, bytes: Option<Vec<u8>>) {
        let shared = self.arc();
        let Some(bytes) = bytes else {
            return shared.core_event(Event::ModuleFetchFailed { module, from, failure: FetchFailure::NotFound });
        };
        tokio::spawn(async move {
            // Compiling is CPU-bound. A burst of announced modules (a new peer,
            // a restart) compiled all at once shared the cores evenly and so
            // finished all at once, seconds later, holding back deploys and
            // calls meanwhile; a few at a time are stored one after another.
            let Ok(slot) = shared.replication_slots.clone().acquire_owned().await else { return };
            let stored = tokio::task::spawn_blocking(move || {
                shared.store_received_module(module, from, bytes);
                drop(slot);
            });
            let _ = stored.await;
        });
    }
}

/// The events to feed the core for `event`: itself, or, when a result in it
/// fails its signature check, what the core should see instead (a fetch that
/// found nothing, a failed forward, nothing of the announcement) and that
/// the sender misbehaved.
fn vetted(event: Event) -> Vec<Event> {
    // The misbehaviour to report, if the record's signature fails.
    let forged = |key: &CallKey, record: &ExecutionRecord, from: &str| {
        signing::verify(key, record).err().map(|error| Event::PeerMisbehaved {
            peer: from.to_owned(),
            reason: format!("sent a forged result: {error}"),
        })
    };
    match event {
        Event::ResultFetched { flight, key, from, found: Some(record) } => match forged(&key, &record, &from) {
            None => vec![Event::ResultFetched { flight, key, from, found: Some(record) }],
            Some(misbehaved) => vec![Event::ResultFetched { flight, key, from, found: None }, misbehaved],
        },
        Event::ForwardAnswered { flight, from, answer: Ok(Ok(remote)) } => {
            match forged(&remote.key, &remote.record, &from) {
                None => vec![Event::ForwardAnswered { flight, from, answer: Ok(Ok(remote)) }],
                Some(misbehaved) => {
                    let answer = Err("the answer's signature is forged".to_owned());
                    vec![Event::ForwardAnswered { flight, from, answer }, misbehaved]
                }
            }
        }
        Event::GossipReceived { from, gossip: Gossip::ResultAvailable { key, module, size, inline: Some(record) } } => {
            match forged(&key, &record, &from) {
                None => {
                    let gossip = Gossip::ResultAvailable { key, module, size, inline: Some(record) };
                    vec![Event::GossipReceived { from, gossip }]
                }
                Some(misbehaved) => vec![misbehaved],
            }
        }
        other => vec![other],
    }
}

impl Shared {
    /// Verifies, compiles and stores a module a peer sent (on a blocking thread).
    fn store_received_module(&self, module: ModuleId, from: String, bytes: Vec<u8>) {
        let size = bytes.len() as u64;
        // Bytes from a peer are trusted only once they hash to what was asked for.
        let event = if ModuleId::of_bytes(&bytes) != module {
            Event::ModuleFetchFailed { module, from, failure: FetchFailure::BadHash }
        } else if size > self.config.max_module_bytes {
            let reason = format!("{size} bytes is over this node's module limit");
            Event::ModuleFetchFailed { module, from, failure: FetchFailure::Invalid(reason) }
        } else {
            match self.store_module(module, &bytes) {
                Ok(()) => {
                    self.metrics.modules.inc();
                    tracing::info!(module = %module.short(), %from, size, "module replicated");
                    Event::ModuleStored { module, size }
                }
                Err(nebula_protocol::CallError::InvalidModule { reason }) => {
                    Event::ModuleFetchFailed { module, from, failure: FetchFailure::Invalid(reason) }
                }
                Err(error) => {
                    tracing::warn!(%error, module = %module.short(), "storing a fetched module failed");
                    Event::ModuleFetchFailed { module, from, failure: FetchFailure::Unreachable }
                }
            }
        };
        self.core_event(event);
    }

    /// The `Arc` this shared state lives in (the host is only ever called through one).
    fn arc(&self) -> Arc<Shared> {
        self.this.upgrade().expect("the node is alive while it handles events")
    }

    fn respond(&self, token: u64, response: Response) {
        if let Some(network) = self.network.get() {
            network.respond(token, response);
        }
    }
}
