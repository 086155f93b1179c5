//! The task that drives the node's mesh core (the rust-libp2p file-sharing
//! pattern): callers, the swarm and the node's workers send it inputs; it
//! feeds them to the core with the time, carries out the actions the core
//! returns, and sleeps until the core's next deadline. A caller that finds
//! the core free drives it itself instead (`CoreHandle::submit`): handing a
//! call to another task and its reply back cost more than a quick call's
//! bookkeeping, as one task's wake-ups spill onto the other async worker.
//! The core and its driver's state sit behind one lock, so one thread at a
//! time drives them. Nothing here blocks: store I/O, hashing, compiling and
//! executions run on blocking threads and report back.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use nebula_protocol::wire::{ModuleSlice, Request, Response};
use nebula_protocol::{
    Action, Answer, CallError, CallKey, CallerId, Core, Event, ExecutionRecord, InboundId, Limits, LookupId, ModuleId,
    NameRecord, Reply, RequestId, Resolver,
};
use tokio::sync::{Mutex, Notify, mpsc, oneshot};

use super::activity::CallSeen;
use super::executions::{self, ExecutionJob, Finished};
use super::{Shared, internal};
use crate::mesh::{Command, NetworkEvent, NetworkHandle};
use crate::sealing::OutgoingSigner;
use crate::store::BlobDownload;

/// A question about the core's state, answered by whoever drives the core.
pub(super) type CoreQuery = Box<dyn FnOnce(&Core<PeerId>) + Send>;

/// What callers ask of the core.
pub(super) enum Input {
    Call {
        reference: String,
        input: Arc<[u8]>,
        limits: Limits,
        reply: oneshot::Sender<Reply>,
    },
    /// A deployed module is stored and compiled; `done` once the core knows it.
    Deployed {
        module: ModuleId,
        size: u64,
        done: oneshot::Sender<()>,
    },
    /// Points a name at a module; the reply comes once the record is durable.
    PublishName {
        name: String,
        reference: String,
        reply: oneshot::Sender<Result<NameRecord, CallError>>,
    },
    /// Reads the core's state (peers, modules, status).
    Query(CoreQuery),
    /// Stops the swarm and this task; `done` once the task has let go of the node.
    Shutdown(oneshot::Sender<()>),
}

/// A call a peer forwarded here, as the dashboard shows it.
struct ForwardedCall {
    reference: String,
    input: Vec<u8>,
    hops: u8,
}

/// What the node's workers report back.
pub(super) enum Completion {
    LookedUp {
        lookup: LookupId,
        found: Option<Arc<ExecutionRecord>>,
    },
    Executed(Finished),
    /// A peer's slice of a module, checked (and written to the module's
    /// download if it verified).
    SliceChecked {
        request: RequestId,
        from: PeerId,
        module: ModuleId,
        size: u64,
        index: u64,
        verified: bool,
    },
    /// A verified slice could not be written here: not the peer's fault.
    SliceNotWritten {
        request: RequestId,
        module: ModuleId,
        reason: String,
    },
    ModuleStored {
        module: ModuleId,
        size: u64,
    },
    ModuleNotStored {
        module: ModuleId,
        reason: String,
        invalid: bool,
    },
}

/// How callers reach the core: at once when it is free, else through the
/// core task's inbox.
#[derive(Clone)]
pub(super) struct CoreHandle {
    inbox: mpsc::UnboundedSender<Input>,
    driver: Arc<Driver>,
}

/// The core and its driver's state, locked by whoever drives them: the
/// core task, or a caller that found them free.
struct Driver {
    /// `None` once the node has shut down.
    task: Mutex<Option<CoreTask>>,
    /// Wakes the core task when a caller brought the core's next deadline forward.
    rearm: Notify,
}

pub(super) struct CoreTask {
    core: Core<PeerId>,
    shared: Arc<Shared>,
    network: Option<NetworkHandle>,
    /// The snapshot callers resolve with, as last published.
    published: Arc<Resolver>,
    completions: mpsc::UnboundedSender<Completion>,
    callers: HashMap<CallerId, oneshot::Sender<Reply>>,
    next_caller: CallerId,
    /// Modules arriving from peers, slice by slice, until the core says to
    /// store or drop them (see `Event::SliceReceived`).
    downloads: HashMap<ModuleId, Arc<BlobDownload>>,
    /// The module each slice request in flight asks for: its answer is
    /// checked against it.
    slice_requests: HashMap<RequestId, ModuleId>,
    /// Calls peers forwarded here, until answered: counted like local ones.
    forwarded: HashMap<InboundId, (ForwardedCall, Instant)>,
    /// The key each peer's `FetchResult` asked for, until answered: the
    /// answer is signed for it.
    result_fetches: HashMap<InboundId, CallKey>,
    /// Signs the results this node ran as they leave it.
    signer: OutgoingSigner,
    /// The core's clock starts here.
    origin: Instant,
    /// The deadline the core task sleeps until (see `Driver::arm`).
    armed: Option<Instant>,
}

/// Where the core task takes its inputs from.
struct Inputs {
    inbox: mpsc::UnboundedReceiver<Input>,
    network: Option<mpsc::UnboundedReceiver<NetworkEvent>>,
}

impl CoreHandle {
    /// Hands `input` to the core: right here when no one else drives it
    /// (then a quick call's reply is ready before this returns, and the
    /// core task is woken only if its deadline moved forward), else
    /// through the core task's inbox. `Err` gives it back once the node
    /// has shut down.
    pub(super) fn submit(&self, input: Input) -> Result<(), Input> {
        // A closed inbox means the core task is gone; driving the core
        // spawns Tokio tasks.
        if !self.inbox.is_closed()
            && tokio::runtime::Handle::try_current().is_ok()
            && let Ok(mut driving) = self.driver.task.try_lock()
            && let Some(task) = driving.as_mut()
        {
            // A panic in the core ends it for every caller, as it would
            // have on the core task, rather than leave it half updated.
            if let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(|| task.on_input(input))) {
                driving.take();
                std::panic::resume_unwind(panic);
            }
            if task.deadline_brought_forward() {
                self.driver.rearm.notify_one();
            }
            return Ok(());
        }
        self.queue(input)
    }

    /// Hands `input` to the core task's inbox (`Shutdown` must come this way).
    pub(super) fn queue(&self, input: Input) -> Result<(), Input> {
        self.inbox.send(input).map_err(|unsent| unsent.0)
    }
}

/// The core task: takes inputs, completions, network events and the core's
/// deadlines, one at a time, until the node shuts down.
async fn run(driver: Arc<Driver>, mut inputs: Inputs, mut completed: mpsc::UnboundedReceiver<Completion>) {
    let _ends_the_core = EndsTheCore(driver.clone());
    loop {
        let Some(deadline) = driver.arm().await else { return };
        tokio::select! {
            input = inputs.inbox.recv() => match input {
                // Every `Node` handle is gone.
                None => break,
                Some(Input::Shutdown(done)) => {
                    let task = driver.task.lock().await.take();
                    if let Some(task) = task {
                        task.stop_network();
                    }
                    let _ = done.send(());
                    return;
                }
                Some(input) => driver.drive(|task| task.on_input(input)).await,
            },
            Some(completion) = completed.recv() => driver.drive(|task| task.on_completion(completion)).await,
            event = next_network_event(&mut inputs.network) => match event {
                Some(event) => driver.drive(|task| task.on_network_event(event)).await,
                // The swarm stopped (`Node::leave_mesh`): no more network events.
                None => inputs.network = None,
            },
            _ = sleep_until(deadline), if deadline.is_some() => driver.drive(|task| task.handle(Event::Timeout)).await,
            // A caller moved the deadline: sleep again, until the new one.
            () = driver.rearm.notified() => {}
        }
    }
    driver.drive(|task| task.stop_network()).await;
}

/// Drops the core when the core task ends, by returning or by a panic: no
/// caller drives it then (its inbox is closed), and the node's stores are
/// let go of.
struct EndsTheCore(Arc<Driver>);

impl Drop for EndsTheCore {
    fn drop(&mut self) {
        if let Ok(mut driving) = self.0.task.try_lock() {
            driving.take();
        }
    }
}

impl Driver {
    /// Runs `step` on the core and its driver's state, unless the node has shut down.
    async fn drive(&self, step: impl FnOnce(&mut CoreTask)) {
        if let Some(task) = self.task.lock().await.as_mut() {
            step(task);
        }
    }

    /// The core's next deadline, which the core task is about to sleep
    /// until; `None` once the node has shut down.
    async fn arm(&self) -> Option<Option<Instant>> {
        let mut driving = self.task.lock().await;
        let task = driving.as_mut()?;
        task.armed = task.deadline();
        Some(task.armed)
    }
}

impl CoreTask {
    pub(super) fn spawn(
        core: Core<PeerId>,
        shared: Arc<Shared>,
        network: Option<NetworkHandle>,
        network_events: Option<mpsc::UnboundedReceiver<NetworkEvent>>,
    ) -> CoreHandle {
        let (completions, completed) = mpsc::unbounded_channel();
        let (inbox, received) = mpsc::unbounded_channel();
        let task = CoreTask {
            published: core.resolver().clone(),
            signer: OutgoingSigner::new(shared.identity.clone()),
            core,
            shared,
            network,
            completions,
            callers: HashMap::new(),
            next_caller: 0,
            downloads: HashMap::new(),
            slice_requests: HashMap::new(),
            forwarded: HashMap::new(),
            result_fetches: HashMap::new(),
            origin: Instant::now(),
            armed: None,
        };
        let driver = Arc::new(Driver { task: Mutex::new(Some(task)), rearm: Notify::new() });
        let inputs = Inputs { inbox: received, network: network_events };
        tokio::spawn(run(driver.clone(), inputs, completed));
        CoreHandle { inbox, driver }
    }

    fn deadline(&self) -> Option<Instant> {
        self.core.poll_timeout().map(|ms| self.origin + Duration::from_millis(ms))
    }

    /// True if the core now needs waking before the core task would wake.
    fn deadline_brought_forward(&self) -> bool {
        match (self.deadline(), self.armed) {
            (Some(next), Some(armed)) => next < armed,
            (next, None) => next.is_some(),
            (None, Some(_)) => false,
        }
    }

    fn stop_network(&self) {
        if let Some(network) = &self.network {
            network.send(Command::Shutdown);
        }
    }

    fn now_ms(&self) -> u64 {
        self.origin.elapsed().as_millis() as u64
    }

    fn handle(&mut self, event: Event<PeerId>) {
        let actions = self.core.handle(self.now_ms(), event);
        self.perform(actions);
    }

    fn on_input(&mut self, input: Input) {
        match input {
            Input::Call { reference, input, limits, reply } => {
                let caller = self.next_caller;
                self.next_caller += 1;
                self.callers.insert(caller, reply);
                self.handle(Event::CallRequested { caller, reference, input, limits });
            }
            Input::Deployed { module, size, done } => {
                self.handle(Event::ModuleStored { module, size });
                let _ = done.send(());
            }
            Input::PublishName { name, reference, reply } => self.publish_name(&name, &reference, reply),
            Input::Query(ask) => ask(&self.core),
            Input::Shutdown(_) => unreachable!("queued to the run loop, never submitted"),
        }
    }

    /// A name set here is durable before it is acknowledged or announced.
    fn publish_name(&mut self, name: &str, reference: &str, reply: oneshot::Sender<Result<NameRecord, CallError>>) {
        let (record, actions) = match self.core.publish_name(name, reference) {
            Ok(published) => published,
            Err(error) => {
                let _ = reply.send(Err(error));
                return;
            }
        };
        self.publish_resolver();
        let (shared, network) = (self.shared.clone(), self.network.clone());
        tokio::spawn(async move {
            let durable = record.clone();
            let stored = tokio::task::spawn_blocking(move || shared.persist_name(&durable)).await;
            let stored = stored.unwrap_or_else(|error| Err(internal(&error.to_string())));
            if stored.is_ok() {
                for action in actions {
                    if let (Action::Publish(gossip), Some(network)) = (action, &network) {
                        network.send(Command::Publish(gossip));
                    }
                }
            }
            let _ = reply.send(stored.map(|()| record));
        });
    }

    fn on_completion(&mut self, completion: Completion) {
        let event = match completion {
            Completion::LookedUp { lookup, found } => Event::ResultLookedUp { lookup, found },
            Completion::Executed(Finished { flight, result }) => Event::ExecutionFinished { flight, result },
            Completion::SliceChecked { request, from, module, size, index, verified } => {
                Event::SliceReceived { request, from, module, size, index, verified }
            }
            Completion::SliceNotWritten { request, module, reason } => {
                self.handle(Event::RequestFailed { request, reason });
                // A slice of a fetch that has ended meanwhile: nothing collects its download.
                if !self.core.is_fetching(&module) {
                    self.downloads.remove(&module);
                }
                return;
            }
            Completion::ModuleStored { module, size } => {
                self.shared.metrics.modules.inc();
                tracing::info!(module = %module.short(), size, "module replicated");
                Event::ModuleStored { module, size }
            }
            Completion::ModuleNotStored { module, reason, invalid } => {
                Event::ModuleNotStored { module, reason, invalid }
            }
        };
        self.handle(event);
    }

    fn on_network_event(&mut self, event: NetworkEvent) {
        let event = match event {
            NetworkEvent::Connected(peer) => Event::PeerConnected { peer },
            NetworkEvent::Disconnected(peer) => Event::PeerDisconnected { peer },
            NetworkEvent::Gossip { from, message, gossip } => Event::GossipReceived { from, message, gossip },
            NetworkEvent::Request { from, inbound, request } => {
                match &request {
                    Request::Call { reference, input, hops, .. } => {
                        let call = ForwardedCall { reference: reference.clone(), input: input.clone(), hops: *hops };
                        self.forwarded.insert(inbound, (call, Instant::now()));
                    }
                    Request::FetchResult { key } => {
                        self.result_fetches.insert(inbound, *key);
                    }
                    _ => {}
                }
                Event::PeerRequest { from, inbound, request }
            }
            NetworkEvent::Response { request, from, response } => {
                let asked = self.slice_requests.remove(&request);
                match (asked, response) {
                    (Some(module), Response::Slice(Some(slice))) => {
                        return self.check_slice(request, from, module, slice);
                    }
                    (_, response) => Event::PeerResponse { request, from, response },
                }
            }
            NetworkEvent::RequestFailed { request, reason } => {
                self.slice_requests.remove(&request);
                Event::RequestFailed { request, reason }
            }
        };
        self.handle(event);
    }

    /// Checks a peer's slice of `module` on a blocking thread (hashing a
    /// megabyte is not for this task) and writes it, if it verifies, to the
    /// module's download; the core judges the verdict.
    fn check_slice(&mut self, request: RequestId, from: PeerId, module: ModuleId, slice: ModuleSlice) {
        let download = self.downloads.entry(module).or_insert_with(|| Arc::new(self.shared.blobs.download())).clone();
        let done = self.completions.clone();
        let max_module_bytes = self.shared.config.max_module_bytes;
        tokio::task::spawn_blocking(move || {
            let (size, index) = (slice.size, slice.index);
            let verified = crate::store::verify_slice(&module, &slice);
            drop(slice);
            let completion = match verified {
                // Verified but over this node's limit: the core refuses the module; nothing is written.
                Ok(_) if size > max_module_bytes => {
                    Completion::SliceChecked { request, from, module, size, index, verified: true }
                }
                Ok((offset, bytes)) => match download.write_at(offset, &bytes) {
                    Ok(()) => Completion::SliceChecked { request, from, module, size, index, verified: true },
                    Err(error) => {
                        tracing::warn!(%error, module = %module.short(), "writing a module's slice failed");
                        let reason = format!("writing the slice here: {error}");
                        Completion::SliceNotWritten { request, module, reason }
                    }
                },
                Err(error) => {
                    tracing::debug!(%from, %error, module = %module.short(), index, "a slice did not verify");
                    Completion::SliceChecked { request, from, module, size, index, verified: false }
                }
            };
            let _ = done.send(completion);
        });
    }

    /// Carries out actions; the answers that need no I/O go straight back
    /// to the core.
    fn perform(&mut self, actions: Vec<Action<PeerId>>) {
        let mut queue = VecDeque::from(actions);
        while let Some(action) = queue.pop_front() {
            if let Some(event) = self.perform_one(action) {
                queue.extend(self.core.handle(self.now_ms(), event));
            }
        }
        self.publish_resolver();
    }

    /// Carries out one action; an event if the core's answer is known at once.
    fn perform_one(&mut self, action: Action<PeerId>) -> Option<Event<PeerId>> {
        match action {
            Action::Reply { caller, reply } => {
                // The caller may have gone (HTTP client hung up); nothing to do then.
                if let Some(waiter) = self.callers.remove(&caller) {
                    let _ = waiter.send(reply);
                }
            }
            Action::LookupResult { lookup, key } => {
                if let Some(record) = self.shared.memory.get(&key) {
                    return Some(Event::ResultLookedUp { lookup, found: Some(record) });
                }
                // A miss needs no trip to a blocking thread.
                if !self.shared.result_log.may_hold(&key) {
                    return Some(Event::ResultLookedUp { lookup, found: None });
                }
                let (shared, done) = (self.shared.clone(), self.completions.clone());
                tokio::task::spawn_blocking(move || {
                    let found = shared.lookup_result(&key);
                    let _ = done.send(Completion::LookedUp { lookup, found });
                });
            }
            Action::Execute { flight, key, module, input, limits } => {
                let job = ExecutionJob { flight, key, module, input, limits, queued: Instant::now() };
                let finished = executions::start(&self.shared, job, self.completions.clone());
                if let Some(Finished { flight, result }) = finished {
                    return Some(Event::ExecutionFinished { flight, result });
                }
            }
            Action::StoreResult { key, record } => {
                self.shared.memory.insert(key, record.clone());
                self.shared.results.submit(key, record);
            }
            // The near cache: a result owned elsewhere, kept in memory only.
            Action::CacheResult { key, record } => self.shared.memory.insert(key, record),
            Action::PersistName(record) => {
                let shared = self.shared.clone();
                tokio::task::spawn_blocking(move || {
                    if let Err(error) = shared.persist_name(&record) {
                        tracing::warn!(%error, name = %record.name, "could not store a name record");
                    }
                });
            }
            Action::Publish(gossip) => self.to_network(Command::Publish(gossip)),
            Action::GossipVerdict { message, verdict } => self.to_network(Command::Verdict { message, verdict }),
            Action::Send { to, request, mut message } => match &self.network {
                Some(network) => {
                    if let Request::FetchSlice { module, .. } = &message {
                        self.slice_requests.insert(request, *module);
                    }
                    self.signer.sign_request(&mut message);
                    network.send(Command::Send { to, request, message });
                }
                None => return Some(Event::RequestFailed { request, reason: "this node runs without a mesh".into() }),
            },
            Action::Respond { inbound, mut response } => {
                self.count_forwarded(inbound, &response);
                let fetched = self.result_fetches.remove(&inbound);
                self.signer.sign_response(&mut response, fetched.as_ref());
                self.to_network(Command::Respond { inbound, response });
            }
            Action::ServeSlice { inbound, module, slice } => {
                let (shared, network) = (self.shared.clone(), self.network.clone());
                tokio::task::spawn_blocking(move || {
                    let served = shared.blobs.slice(&module, slice);
                    if let Err(error) = &served {
                        tracing::warn!(%error, module = %module.short(), ?slice, "could not serve a module's slice");
                    }
                    if let Some(network) = network {
                        network.send(Command::Respond { inbound, response: Response::Slice(served.ok()) });
                    }
                });
            }
            Action::StoreReceivedModule { module, size } => {
                // Taken out of `downloads`, so a later discard of this module (a late slice) cannot touch it.
                let download = self.downloads.remove(&module).unwrap_or_else(|| Arc::new(self.shared.blobs.download()));
                self.store_received_module(module, size, download);
            }
            Action::DiscardReceivedModule { module } => {
                // Never the download being stored: StoreReceivedModule took it out of `downloads`.
                self.downloads.remove(&module);
            }
            Action::Penalise { peer, misbehaviour } => {
                tracing::warn!(%peer, %misbehaviour, "peer penalised");
                self.shared.metrics.record_penalty(misbehaviour.kind());
            }
        }
        None
    }

    /// A call a peer forwarded here is answered: counted as a local call is
    /// (metrics, dashboard, footprint).
    fn count_forwarded(&mut self, inbound: InboundId, response: &Response) {
        let Some((call, started)) = self.forwarded.remove(&inbound) else { return };
        let Response::Call(answer) = response else { return };
        let reply = answer.clone().map(|remote| Answer {
            key: remote.key,
            cache: remote.cache,
            record: Arc::new(remote.record),
        });
        let seen = CallSeen { reference: &call.reference, input: &call.input, hops: call.hops.max(1) };
        self.shared.answered(started, seen, reply);
    }

    fn to_network(&self, command: Command) {
        // The core only talks to peers it heard of, which needs a mesh.
        if let Some(network) = &self.network {
            network.send(command);
        }
    }

    /// Checks, compiles and stores a module whose slices all arrived, a few
    /// at a time: a burst of announced modules (a new peer, a restart)
    /// compiled all at once would share the cores evenly and so finish all
    /// at once, seconds later, holding back deploys and calls meanwhile.
    fn store_received_module(&self, module: ModuleId, size: u64, download: Arc<BlobDownload>) {
        let (shared, done) = (self.shared.clone(), self.completions.clone());
        tokio::spawn(async move {
            let Ok(slot) = shared.replication_slots.clone().acquire_owned().await else { return };
            let reported = done.clone();
            let stored = tokio::task::spawn_blocking(move || {
                let completion = match shared.store_downloaded(&download, module, size) {
                    Ok(()) => Completion::ModuleStored { module, size },
                    Err(CallError::InvalidModule { reason }) => {
                        Completion::ModuleNotStored { module, reason, invalid: true }
                    }
                    Err(error) => {
                        tracing::warn!(%error, module = %module.short(), "storing a fetched module failed");
                        Completion::ModuleNotStored { module, reason: error.to_string(), invalid: false }
                    }
                };
                drop(slot);
                let _ = done.send(completion);
            })
            .await;
            if stored.is_err() {
                // A panic while storing: the fetch must still end, or it would hold the module forever.
                let reason = "storing the module failed unexpectedly".to_owned();
                let _ = reported.send(Completion::ModuleNotStored { module, reason, invalid: false });
            }
        });
    }

    /// Callers resolve with the core's newest names and modules.
    fn publish_resolver(&mut self) {
        if !Arc::ptr_eq(self.core.resolver(), &self.published) {
            self.published = self.core.resolver().clone();
            self.shared.resolver.store(self.published.clone());
        }
    }
}

async fn next_network_event(network: &mut Option<mpsc::UnboundedReceiver<NetworkEvent>>) -> Option<NetworkEvent> {
    match network {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use nebula_protocol::LimitOverrides;

    use crate::{Node, NodeConfig};

    /// The deadline the core task sleeps until, and the core's next one.
    type Deadlines = (Option<Instant>, Option<Instant>);

    /// Waits (at most 10 s) until the node's deadlines are as `wanted`.
    async fn until(node: &Node, what: &str, wanted: impl Fn(Deadlines) -> bool) {
        let started = Instant::now();
        loop {
            let deadlines = {
                let driving = node.core.driver.task.lock().await;
                let task = driving.as_ref().expect("the node runs");
                (task.armed, task.deadline())
            };
            if wanted(deadlines) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "timed out waiting until {what}: {deadlines:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A caller that drove the core itself and set its next deadline (here,
    /// the load announcement after an execution) wakes the core task to
    /// sleep until that deadline instead of its old one: a missed wake-up
    /// would leave the deadline unkept until some other input came.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_deadline_a_caller_sets_is_kept_by_the_core_task() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = NodeConfig::new(dir.path(), "127.0.0.1:0".parse().unwrap());
        // Quick whatever its first run costs on a busy machine.
        config.slow_hold = Duration::from_secs(60);
        let node = Node::open(config).await.unwrap();
        let module = wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#).unwrap();
        node.deploy_bytes(module, Some("nothing")).await.unwrap();
        let overrides = LimitOverrides::default();
        let call = |input: &'static [u8]| node.call("nothing", input.to_vec(), &overrides);
        // The first run (on a blocking thread) tells the node the module is
        // quick: the next runs in place, on this task, while it drives the core.
        assert!(call(b"first").await.reply.is_ok());
        until(&node, "the core has no deadline left", |(_, next)| next.is_none()).await;
        assert!(call(b"second").await.reply.is_ok());
        until(&node, "the core task sleeps until the core's deadline", |(armed, next)| armed == next).await;
        node.shutdown().await;
    }
}
