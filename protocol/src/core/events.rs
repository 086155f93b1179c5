//! What the shell tells the core ([`Event`]) and what the core asks of the
//! shell ([`Action`]). Every decision lies between the two.

use std::fmt;
use std::sync::Arc;

use crate::ids::{CallKey, ModuleId};
use crate::limits::Limits;
use crate::names::NameRecord;
use crate::outcome::{CacheStatus, CallError, ExecutionRecord};
use crate::wire::{Gossip, Request, Response, SliceIndex};

/// Chosen by the shell: one local caller waiting for a [`Reply`].
pub type CallerId = u64;

/// Chosen by the shell: a peer's request waiting for this node's response.
pub type InboundId = u64;

/// Chosen by the shell: a gossip message waiting for a [`Verdict`].
pub type MessageId = u64;

/// Chosen by the core: a request this node sent to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(super) u64);

/// Chosen by the core: one execution (or lookup, fetch, forward) shared by identical calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlightId(pub(super) u64);

/// Chosen by the core: one look-up of a stored result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub(super) u64);

impl RequestId {
    /// The id as a number (for logs and shell-side maps).
    pub fn get(self) -> u64 {
        self.0
    }
}

#[derive(Debug, Clone)]
pub struct Answer {
    pub key: CallKey,
    pub cache: CacheStatus,
    pub record: Arc<ExecutionRecord>,
}

/// `Err` means the call never ran (bad reference, input too large, no
/// reachable holder); failures of the function itself are in
/// `Answer::record.outcome`.
pub type Reply = Result<Answer, CallError>;

/// What gossipsub should do with a message: pass it on, count it against
/// its sender, or drop it quietly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Reject,
    Ignore,
}

/// A rule a peer broke; it costs the peer a penalty here (asked last, and
/// counted by the shell's metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misbehaviour {
    /// A result whose signature does not hold for the call asked: altered,
    /// replayed from another call, or pinned on another node.
    ForgedRecord { reason: String },
    /// A correctly signed result, of another call than the one asked.
    AnotherCall,
    /// An answer of another kind than the question (a module for a result…).
    WrongKind { asked: &'static str, answered: &'static str },
    /// A slice that is not the part of the module asked for: its bytes or
    /// its proof do not verify against the module id, it is another slice
    /// than the one asked, or it claims another size than the module's.
    BadModuleBytes { module: ModuleId },
    /// A name record no node may publish.
    InvalidName,
    /// Gossip this node cannot decode.
    MalformedGossip { error: String },
    /// A result this node's own run contradicts.
    Contradicted,
}

impl Misbehaviour {
    /// Short stable label, for metrics and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Misbehaviour::ForgedRecord { .. } => "forged_record",
            Misbehaviour::AnotherCall => "another_call",
            Misbehaviour::WrongKind { .. } => "wrong_kind",
            Misbehaviour::BadModuleBytes { .. } => "bad_module_bytes",
            Misbehaviour::InvalidName => "invalid_name",
            Misbehaviour::MalformedGossip { .. } => "malformed_gossip",
            Misbehaviour::Contradicted => "contradicted",
        }
    }
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misbehaviour::ForgedRecord { reason } => write!(f, "sent a forged result: {reason}"),
            Misbehaviour::AnotherCall => f.write_str("answered with another call's result"),
            Misbehaviour::WrongKind { asked, answered } => write!(f, "answered {asked} with {answered}"),
            Misbehaviour::BadModuleBytes { module } => write!(f, "sent a slice that is not part of module {module}"),
            Misbehaviour::InvalidName => f.write_str("announced a name no node may publish"),
            Misbehaviour::MalformedGossip { error } => write!(f, "sent malformed gossip: {error}"),
            Misbehaviour::Contradicted => f.write_str("its result differs from this node's own run"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Event<P> {
    /// A local caller asks for a call.
    CallRequested {
        caller: CallerId,
        reference: String,
        input: Arc<[u8]>,
        limits: Limits,
    },
    /// Answer to [`Action::LookupResult`].
    ResultLookedUp {
        lookup: LookupId,
        found: Option<Arc<ExecutionRecord>>,
    },
    /// Answer to [`Action::Execute`]: the record of the run, or why the module
    /// could not be run at all (its bytes are gone or corrupt, say).
    ExecutionFinished {
        flight: FlightId,
        result: Result<Arc<ExecutionRecord>, CallError>,
    },
    /// A module's bytes are stored, verified and compiled here: deployed, or
    /// the answer to [`Action::StoreReceivedModule`].
    ModuleStored {
        module: ModuleId,
        size: u64,
    },
    /// Answer to [`Action::StoreReceivedModule`] when the module was not stored:
    /// `invalid` if its bytes are not an acceptable module (every holder has
    /// the same bytes), otherwise this node could not store it.
    ModuleNotStored {
        module: ModuleId,
        reason: String,
        invalid: bool,
    },
    PeerConnected {
        peer: P,
    },
    PeerDisconnected {
        peer: P,
    },
    /// A gossip message, or why it could not be decoded; answer with
    /// [`Action::GossipVerdict`] for the same `message`.
    GossipReceived {
        from: P,
        message: MessageId,
        gossip: Result<Gossip, String>,
    },
    /// A peer's request; answered by [`Action::Respond`] (or
    /// [`Action::ServeSlice`]) with the same `inbound`.
    PeerRequest {
        from: P,
        inbound: InboundId,
        request: Request,
    },
    /// A peer's answer to [`Action::Send`]. A module's slice comes as
    /// [`Event::SliceReceived`] instead.
    PeerResponse {
        request: RequestId,
        from: P,
        response: Response,
    },
    /// A peer's slice of `module`, the answer to a `Request::FetchSlice`,
    /// checked by the shell (the hashing is the shell's; the judgement the
    /// core's): `verified` if its proof and bytes verify against the module
    /// id for a module of `size` bytes (the peer's claim), as slice `index`.
    /// The shell keeps one download per module, made when the module's first
    /// slice arrives; a verified slice's bytes are in it already. It holds it
    /// until [`Action::StoreReceivedModule`] or [`Action::DiscardReceivedModule`].
    SliceReceived {
        request: RequestId,
        from: P,
        module: ModuleId,
        size: u64,
        index: u64,
        verified: bool,
    },
    /// [`Action::Send`] failed in transport: connection lost, peer refused the stream.
    RequestFailed {
        request: RequestId,
        reason: String,
    },
    /// The time [`Core::poll_timeout`](super::Core::poll_timeout) asked for has come.
    Timeout,
}

#[derive(Debug)]
pub enum Action<P> {
    /// Answer a local caller.
    Reply {
        caller: CallerId,
        reply: Reply,
    },
    /// Answer a peer's request.
    Respond {
        inbound: InboundId,
        response: Response,
    },
    /// Answer a peer's slice fetch with a slice of a module held here, and
    /// its proof (`Response::Slice(None)` if the store cannot read it after all).
    ServeSlice {
        inbound: InboundId,
        module: ModuleId,
        slice: SliceIndex,
    },
    /// Send a request; its answer comes as [`Event::PeerResponse`],
    /// [`Event::SliceReceived`] or [`Event::RequestFailed`]. The core times
    /// it out itself; answers that come later are ignored.
    Send {
        to: P,
        request: RequestId,
        message: Request,
    },
    /// Publish on the gossip topic of this kind of message (reaches every node).
    Publish(Gossip),
    /// What gossipsub should do with the message it delivered.
    GossipVerdict {
        message: MessageId,
        verdict: Verdict,
    },
    /// Look `key` up in the local result store; answer with [`Event::ResultLookedUp`].
    LookupResult {
        lookup: LookupId,
        key: CallKey,
    },
    /// Run the module here; answer with [`Event::ExecutionFinished`].
    Execute {
        flight: FlightId,
        key: CallKey,
        module: ModuleId,
        input: Arc<[u8]>,
        limits: Limits,
    },
    /// Store a result this node owns, durably (and in the memory cache).
    StoreResult {
        key: CallKey,
        record: Arc<ExecutionRecord>,
    },
    /// Keep a result this node answered with but does not own in its near
    /// cache: memory only, bounded by the shell, lost on restart.
    CacheResult {
        key: CallKey,
        record: Arc<ExecutionRecord>,
    },
    PersistName(NameRecord),
    /// Every slice of `module` is in its download (see
    /// [`Event::SliceReceived`]): check the whole against the module id,
    /// then compile and store it; answer with [`Event::ModuleStored`] or
    /// [`Event::ModuleNotStored`].
    StoreReceivedModule {
        module: ModuleId,
        size: u64,
    },
    /// Drop the download of `module` (nothing if there is none): the fetch
    /// gave up, or the slice that made it came after the fetch ended.
    DiscardReceivedModule {
        module: ModuleId,
    },
    Penalise {
        peer: P,
        misbehaviour: Misbehaviour,
    },
}

/// Why fetching a slice of a module from a peer failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FetchFailure {
    /// The slice did not verify against the module id: the peer lied or is broken.
    BadSlice,
    /// The peer does not have it (any more).
    NotFound,
    /// No answer: timeout, connection lost, peer gone, refused.
    Unreachable,
}
