//! What a call can come to: an [`Outcome`] of the function (success, or a
//! [`Failure`] of the guest or of a limit), or a [`CallError`] when it never
//! ran. Each is its own variant so users (and HTTP status codes) can tell a
//! bad module from a trap from a limit.

use serde::{Deserialize, Serialize};

use crate::ids::{CallKey, ModuleId};

#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Exit status 0 (or `_start` returned): stdout is the answer.
    Success {
        stdout: Vec<u8>,
    },
    Failed(Failure),
}

/// How a run of the function went wrong: the function itself, or one of the
/// limits it ran under. (Stored records hold these: append variants only.)
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Failure {
    #[error("the function exited with status {code}: {stderr_tail}")]
    NonZeroExit { code: i32, stderr_tail: String },
    #[error("the function trapped: {message}{}", tail_suffix(stderr_tail))]
    Trap { message: String, stderr_tail: String },
    #[error("the function ran out of fuel (limit {limit})")]
    OutOfFuel { limit: u64 },
    #[error("the function exceeded its deadline of {deadline_ms} ms")]
    DeadlineExceeded { deadline_ms: u64 },
    #[error("the function exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit { limit_bytes: u64 },
    #[error("the function's output exceeded {limit_bytes} bytes")]
    OutputTooLarge { limit_bytes: u64 },
}

/// Why a call was not answered with an outcome of the function: it never
/// reached a module (a bad reference, input too large, no reachable holder)
/// or the module could not be run at all.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum CallError {
    #[error("the input of {size} bytes exceeds the limit of {limit_bytes} bytes")]
    InputTooLarge { size: u64, limit_bytes: u64 },
    #[error("invalid module: {reason}")]
    InvalidModule { reason: String },
    #[error("no module matches '{reference}'")]
    ModuleNotFound { reference: String },
    #[error("no name '{name}' is known")]
    NameNotFound { name: String },
    #[error("hash prefix '{prefix}' matches {} modules; give more characters", matches.len())]
    AmbiguousPrefix { prefix: String, matches: Vec<ModuleId> },
    #[error("the stored bytes of module {module} do not match its hash; it will not be executed")]
    ModuleCorrupt { module: ModuleId },
    #[error("internal error: {message}")]
    Internal { message: String },
    #[error("bad name '{name}': {reason}")]
    InvalidName { name: String, reason: String },
    /// Peers' results could not be confirmed by enough independent executors.
    #[error("the result could not be verified: {reason}")]
    Unverified { reason: String },
    /// Too many calls of this module wait for an execution slot.
    #[error("{queued} calls of module {module} already wait to run on this node; retry in {retry_after_ms} ms")]
    Overloaded { module: ModuleId, queued: u64, retry_after_ms: u64 },
}

fn tail_suffix(stderr_tail: &str) -> String {
    match stderr_tail.is_empty() {
        true => String::new(),
        false => format!(" (stderr: {stderr_tail})"),
    }
}

impl Failure {
    /// Short stable label, used in JSON bodies, metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::NonZeroExit { .. } => "non_zero_exit",
            Failure::Trap { .. } => "trap",
            Failure::OutOfFuel { .. } => "out_of_fuel",
            Failure::DeadlineExceeded { .. } => "deadline_exceeded",
            Failure::MemoryLimit { .. } => "memory_limit",
            Failure::OutputTooLarge { .. } => "output_too_large",
        }
    }

    /// A failure that any node would reproduce for the same call, whatever its
    /// limits: safe to cache under the call key. Limit hits depend on the
    /// caller's limits and the machine, so they are never cached.
    pub fn is_cacheable(&self) -> bool {
        matches!(self, Failure::NonZeroExit { .. } | Failure::Trap { .. })
    }
}

impl CallError {
    /// Short stable label, used in JSON bodies, metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::InputTooLarge { .. } => "input_too_large",
            CallError::InvalidModule { .. } => "invalid_module",
            CallError::ModuleNotFound { .. } => "module_not_found",
            CallError::NameNotFound { .. } => "name_not_found",
            CallError::AmbiguousPrefix { .. } => "ambiguous_prefix",
            CallError::ModuleCorrupt { .. } => "module_corrupt",
            CallError::Internal { .. } => "internal",
            CallError::InvalidName { .. } => "invalid_name",
            CallError::Unverified { .. } => "unverified",
            CallError::Overloaded { .. } => "overloaded",
        }
    }
}

impl Outcome {
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Success { .. } => "success",
            Outcome::Failed(failure) => failure.kind(),
        }
    }

    pub fn is_cacheable(&self) -> bool {
        match self {
            Outcome::Success { .. } => true,
            Outcome::Failed(failure) => failure.is_cacheable(),
        }
    }
}

/// Where an answer came from.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CacheStatus {
    /// Answered from a stored result; nothing ran.
    Hit,
    /// This caller's request started the execution.
    Miss,
    /// Joined an identical call that was already running.
    Joined,
}

/// Where the time of one execution went, in microseconds.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Waiting for an execution slot.
    pub queue_us: u64,
    /// Loading (from memory, disk cache or compiling) and instantiating.
    pub instantiate_us: u64,
    /// Running `_start`.
    pub run_us: u64,
}

/// One execution's result, as cached and as replied.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionRecord {
    pub module: ModuleId,
    pub outcome: Outcome,
    pub fuel_used: u64,
    pub timings: Timings,
    /// The node that ran it (empty if nothing ran).
    pub executed_by: String,
    /// `executed_by`'s signature over [`ExecutionRecord::signed_content`]
    /// (empty if unsigned): a peer passing a result on cannot alter it or
    /// pin it on another node.
    pub signature: Vec<u8>,
}

impl ExecutionRecord {
    /// What the executor signs: the call it answers and everything about the
    /// answer that other nodes rely on (timings are informational and left out).
    pub fn signed_content(&self, key: &CallKey) -> Vec<u8> {
        #[derive(Serialize)]
        struct Signed<'a> {
            domain: &'static str,
            key: &'a CallKey,
            module: &'a ModuleId,
            outcome: &'a Outcome,
            fuel_used: u64,
            executed_by: &'a str,
        }
        let signed = Signed {
            domain: "nebula execution record v1",
            key,
            module: &self.module,
            outcome: &self.outcome,
            fuel_used: self.fuel_used,
            executed_by: &self.executed_by,
        };
        postcard::to_stdvec(&signed).expect("in-memory encoding cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_limit_independent_outcomes_are_cacheable() {
        assert!(Outcome::Success { stdout: vec![] }.is_cacheable());
        assert!(
            Outcome::Failed(Failure::Trap { message: "unreachable".into(), stderr_tail: String::new() }).is_cacheable()
        );
        assert!(!Outcome::Failed(Failure::OutOfFuel { limit: 1 }).is_cacheable());
        assert!(!Outcome::Failed(Failure::DeadlineExceeded { deadline_ms: 1 }).is_cacheable());
        assert!(!Outcome::Failed(Failure::MemoryLimit { limit_bytes: 1 }).is_cacheable());
        assert!(!Outcome::Failed(Failure::OutputTooLarge { limit_bytes: 1 }).is_cacheable());
    }
}
