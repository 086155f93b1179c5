//! Nebula's shared vocabulary and its sans-io mesh core.
//!
//! Nothing in this crate performs I/O or reads a clock: the node (real sockets,
//! wasmtime, disk) and the simulator drive the same [`core::Core`] with events and
//! carry out the actions it returns.

pub mod core;
#[cfg(feature = "arbitrary")]
pub mod fuzzing;
pub mod ids;
pub mod limits;
pub mod manifest;
pub mod names;
pub mod outcome;
pub mod wire;

pub use crate::core::{
    Action, Answer, CallerId, Core, Event, FlightId, InboundId, LookupId, Members, MeshConfig, MessageId, Misbehaviour,
    ModelledSignatures, PeerKey, Reply, RequestId, Resolver, Signatures, Verdict,
};
pub use ids::{CallKey, IdParseError, ModuleId, PROFILE_VERSION};
pub use limits::{LimitOverrides, Limits};
pub use names::{NameError, NameRecord, validate_name};
pub use outcome::{CacheStatus, CallError, ExecutionRecord, Failure, Outcome, Timings};
