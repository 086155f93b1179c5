//! Messages between nodes: gossip (small announcements) and request-response
//! (fetches, forwarded calls, anti-entropy). Encoded with postcard inside a
//! versioned envelope; decoding bounds sizes and rejects trailing bytes.
//!
//! postcard is positional: append enum variants and fields at the end only,
//! and bump [`WIRE_VERSION`] for anything else.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::core::CacheStatus;
use crate::ids::{CallKey, ModuleId};
use crate::limits::Limits;
use crate::names::NameRecord;
use crate::outcome::{CallError, ExecutionRecord};

pub const WIRE_VERSION: u8 = 2;

/// Largest request-response frame: a module of the largest deployable size
/// plus headroom. Checked before anything is allocated.
pub const MAX_FRAME_BYTES: usize = 80 << 20;

/// Largest request: a call's input at the largest input limit, plus headroom.
/// Only responses carry modules.
pub const MAX_REQUEST_BYTES: usize = (8 << 20) + 64 * 1024;

/// Gossip is for metadata; anything bigger is fetched by request-response.
pub const MAX_GOSSIP_BYTES: usize = 60 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gossip {
    /// The sender holds this module (verified and compiled).
    ModuleAvailable {
        module: ModuleId,
        size: u64,
    },
    Name(NameRecord),
    /// The sender holds this result; small ones travel inline.
    ResultAvailable {
        key: CallKey,
        module: ModuleId,
        size: u64,
        inline: Option<ExecutionRecord>,
    },
    /// The sender's execution load, for routing.
    Load {
        executing: u32,
        capacity: u32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    FetchModule {
        module: ModuleId,
    },
    FetchResult {
        key: CallKey,
    },
    Call {
        reference: String,
        input: Vec<u8>,
        limits: Limits,
        hops: u8,
    },
    Sync(SyncRequest),
    /// Gossip meant for this peer only (see `Action::TellPeers`).
    Tell(Gossip),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Module(Option<Vec<u8>>),
    Result(Option<ExecutionRecord>),
    Call(Result<RemoteAnswer, CallError>),
    Sync(SyncResponse),
    /// The request could not be decoded or is not allowed.
    Refused(String),
    /// Receipt of a `Request::Tell`.
    Told,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteAnswer {
    pub key: CallKey,
    pub cache: CacheStatus,
    pub record: ExecutionRecord,
}

/// Anti-entropy: "here is a digest of what I hold, and the last of your
/// results I have seen"; the answer carries only what differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub modules_digest: [u8; 32],
    pub names_digest: [u8; 32],
    /// Sequence number of the responder's result log already seen.
    pub results_since: u64,
    /// The sender's execution load, piggybacked.
    pub load: Load,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    pub executing: u32,
    pub capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// Present only when the digests differ.
    pub modules: Option<Vec<(ModuleId, u64)>>,
    pub names: Option<Vec<NameRecord>>,
    pub results: Vec<ResultRef>,
    /// Cursor to ask from next time.
    pub results_next: u64,
    /// More results are waiting beyond this batch.
    pub more: bool,
    pub load: Load,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResultRef {
    pub key: CallKey,
    pub module: ModuleId,
    pub size: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message of {0} bytes is over the limit of {1}")]
    TooLarge(usize, usize),
    #[error("wire version {0} is not supported (this node speaks {WIRE_VERSION})")]
    Version(u8),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
}

#[derive(Serialize)]
struct EnvelopeRef<'a, T> {
    version: u8,
    body: &'a T,
}

pub fn encode<T: Serialize>(body: &T) -> Vec<u8> {
    postcard::to_stdvec(&EnvelopeRef { version: WIRE_VERSION, body }).expect("in-memory encoding cannot fail")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], max_len: usize) -> Result<T, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge(bytes.len(), max_len));
    }
    let (version, rest): (u8, &[u8]) =
        postcard::take_from_bytes(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if version != WIRE_VERSION {
        return Err(DecodeError::Version(version));
    }
    let (body, rest): (T, &[u8]) =
        postcard::take_from_bytes(rest).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::TrailingBytes(rest.len()));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let gossip = Gossip::ModuleAvailable { module: ModuleId::of_bytes(b"m"), size: 7 };
        assert_eq!(decode::<Gossip>(&encode(&gossip), MAX_GOSSIP_BYTES), Ok(gossip));
        let request =
            Request::Call { reference: "fib".into(), input: b"10".to_vec(), limits: Limits::default(), hops: 1 };
        assert_eq!(decode::<Request>(&encode(&request), MAX_FRAME_BYTES), Ok(request));
    }

    #[test]
    fn bad_frames_are_rejected() {
        let bytes = encode(&Gossip::Load { executing: 1, capacity: 2 });
        assert_eq!(decode::<Gossip>(&bytes, 3), Err(DecodeError::TooLarge(bytes.len(), 3)));
        let mut wrong_version = bytes.clone();
        wrong_version[0] = 9;
        assert_eq!(decode::<Gossip>(&wrong_version, 1024), Err(DecodeError::Version(9)));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(decode::<Gossip>(&trailing, 1024), Err(DecodeError::TrailingBytes(1)));
        assert!(matches!(decode::<Gossip>(&bytes[..2], 1024), Err(DecodeError::Malformed(_))));
        assert!(matches!(decode::<Gossip>(&[WIRE_VERSION, 200, 1], 1024), Err(DecodeError::Malformed(_))));
    }
}
