//! Messages between nodes: gossip (small announcements) and request-response
//! (fetches, forwarded calls, anti-entropy). Encoded with postcard inside a
//! versioned envelope; decoding bounds sizes and rejects trailing bytes.
//!
//! postcard is positional: append enum variants and fields at the end only,
//! and bump [`WIRE_VERSION`] for anything else.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ids::{CallKey, ModuleId};
use crate::limits::Limits;
use crate::names::NameRecord;
use crate::outcome::{CacheStatus, CallError, ExecutionRecord};

/// 3: guest failures and call errors are separate types (`Failure`, `CallError`).
/// 4: results live at their owners: no result announcements or result logs
/// in anti-entropy; results travel to owners in `Request::Store`.
pub const WIRE_VERSION: u8 = 4;

/// Largest request-response frame: a module of the largest deployable size
/// plus headroom. Checked before anything is allocated.
pub const MAX_FRAME_BYTES: usize = 80 << 20;

/// Largest request: a call's input at the largest input limit, plus headroom.
/// Only responses carry modules.
pub const MAX_REQUEST_BYTES: usize = (8 << 20) + 64 * 1024;

/// Gossip is for metadata; anything bigger is fetched by request-response.
pub const MAX_GOSSIP_BYTES: usize = 60 * 1024;

#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Gossip {
    /// The sender holds this module (verified and compiled).
    ModuleAvailable {
        module: ModuleId,
        size: u64,
    },
    Name(NameRecord),
    /// The sender's execution load, for routing.
    Load {
        executing: u32,
        capacity: u32,
    },
    /// The sender is a member of the mesh, reachable at these addresses:
    /// nodes connect to every member they hear of, so that they agree on
    /// who owns which result (the shell dials; the core only accepts it).
    Member {
        addresses: Vec<String>,
    },
}

#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
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
    /// Results this peer owns (or is to hold for their owners): a replica
    /// from the node that computed or stores them, or a handoff.
    Store(Vec<StoredResult>),
}

#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
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
    /// Receipt of a `Request::Store`.
    Stored,
}

#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteAnswer {
    pub key: CallKey,
    pub cache: CacheStatus,
    pub record: ExecutionRecord,
}

/// One result for a peer to keep.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResult {
    pub key: CallKey,
    pub record: ExecutionRecord,
}

/// Anti-entropy of modules and names: "here is a digest of what I hold";
/// the answer carries only what differs. Results are not in it: they live
/// at their owners (see `Request::Store`).
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    pub modules_digest: [u8; 32],
    pub names_digest: [u8; 32],
    /// The sender's execution load, piggybacked.
    pub load: Load,
}

#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Load {
    pub executing: u32,
    pub capacity: u32,
}

#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// Present only when the digests differ.
    pub modules: Option<Vec<(ModuleId, u64)>>,
    pub names: Option<Vec<NameRecord>>,
    pub load: Load,
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

/// Bytes of the length that starts every request-response frame.
pub const FRAME_HEADER_BYTES: usize = 4;

/// The body length announced by a request-response frame header (4 bytes,
/// big-endian), refused when over `max_len` ([`MAX_REQUEST_BYTES`] for a
/// request, [`MAX_FRAME_BYTES`] for a response): check it before allocating
/// the body.
pub fn frame_length(header: [u8; FRAME_HEADER_BYTES], max_len: usize) -> Result<usize, DecodeError> {
    let length = u32::from_be_bytes(header) as usize;
    match length > max_len {
        true => Err(DecodeError::TooLarge(length, max_len)),
        false => Ok(length),
    }
}

/// A request-response frame: the body's length, then the [`encode`]d body.
pub fn encode_frame<T: Serialize>(message: &T) -> Result<Vec<u8>, DecodeError> {
    let body = encode(message);
    if body.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::TooLarge(body.len(), MAX_FRAME_BYTES));
    }
    let mut frame = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Decodes exactly one whole frame (header and body) held in memory, its
/// body at most `max_len` bytes.
pub fn decode_frame<T: DeserializeOwned>(frame: &[u8], max_len: usize) -> Result<T, DecodeError> {
    let Some((header, body)) = frame.split_first_chunk::<FRAME_HEADER_BYTES>() else {
        return Err(DecodeError::Malformed(format!("a frame of {} bytes has no complete length", frame.len())));
    };
    let length = frame_length(*header, max_len)?;
    match body.len().cmp(&length) {
        std::cmp::Ordering::Less => Err(DecodeError::Malformed(format!(
            "frame body of {} bytes is shorter than its length {length}",
            body.len()
        ))),
        std::cmp::Ordering::Greater => Err(DecodeError::TrailingBytes(body.len() - length)),
        std::cmp::Ordering::Equal => decode(body, max_len),
    }
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

    #[test]
    fn frames_round_trip_and_bad_lengths_are_refused() {
        let request = Request::FetchModule { module: ModuleId::of_bytes(b"m") };
        let frame = encode_frame(&request).unwrap();
        assert_eq!(frame_length(frame[..4].try_into().unwrap(), MAX_REQUEST_BYTES), Ok(frame.len() - 4));
        assert_eq!(decode_frame::<Request>(&frame, MAX_REQUEST_BYTES), Ok(request));
        assert_eq!(
            frame_length(u32::MAX.to_be_bytes(), MAX_FRAME_BYTES),
            Err(DecodeError::TooLarge(u32::MAX as usize, MAX_FRAME_BYTES))
        );
        assert!(matches!(decode_frame::<Request>(&frame[..3], MAX_REQUEST_BYTES), Err(DecodeError::Malformed(_))));
        assert!(matches!(
            decode_frame::<Request>(&frame[..frame.len() - 1], MAX_REQUEST_BYTES),
            Err(DecodeError::Malformed(_))
        ));
        let mut trailing = frame.clone();
        trailing.push(0);
        assert_eq!(decode_frame::<Request>(&trailing, MAX_REQUEST_BYTES), Err(DecodeError::TrailingBytes(1)));
        assert!(decode_frame::<Request>(&[0, 0, 0, 3, 1, 250, 250], MAX_REQUEST_BYTES).is_err());
    }
}
