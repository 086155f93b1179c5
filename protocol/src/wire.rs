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
/// 5: modules travel in verified slices (`Request::FetchSlice`,
/// `Response::Slice`), not whole in one frame.
pub const WIRE_VERSION: u8 = 5;

/// Largest request-response frame, checked before anything is allocated:
/// a call's answer at the node's default largest output (64 MiB, `--max-output-bytes`)
/// plus headroom. Modules no longer set it: they travel in slices of
/// [`SLICE_BYTES`].
pub const MAX_FRAME_BYTES: usize = 80 << 20;

/// Modules travel between nodes in slices of this many bytes (the last one
/// shorter), each checked on arrival against the module id by BLAKE3 verified
/// streaming (bao, as `bao-tree` encodes it): the module's BLAKE3 tree, cut
/// into chunk groups of one slice, proves each slice with the few hashes on
/// its path to the root, so a slice that is not part of the module is caught
/// as soon as it arrives, and a module of any size moves with bounded memory.
pub const SLICE_BYTES: u64 = 1 << 20;

/// [`SLICE_BYTES`] as bao-tree's block size: 2^10 BLAKE3 chunks of 1 KiB.
pub const SLICE_CHUNK_LOG: u8 = 10;

/// Largest answer to a slice request: a slice, its proof (64 bytes per level
/// of the module's tree, at most a few KiB) and headroom. A peer that sends
/// more for a slice is cut off at the frame's length, before it is read.
pub const MAX_SLICE_FRAME_BYTES: usize = SLICE_BYTES as usize + 64 * 1024;

/// The largest response `request` may be answered with.
pub fn max_response_bytes(request: &Request) -> usize {
    match request {
        Request::FetchSlice { .. } => MAX_SLICE_FRAME_BYTES,
        _ => MAX_FRAME_BYTES,
    }
}

/// How many slices a module of `size` bytes travels in (an empty one in one, empty).
pub fn slice_count(size: u64) -> u64 {
    size.div_ceil(SLICE_BYTES).max(1)
}

/// The bytes slice `index` of a module of `size` bytes covers, if it has that slice.
pub fn slice_range(size: u64, index: u64) -> Option<std::ops::Range<u64>> {
    if index >= slice_count(size) {
        return None;
    }
    let start = index * SLICE_BYTES;
    Some(start..size.min(start.saturating_add(SLICE_BYTES)))
}

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
    /// One slice of a module the peer holds, with its proof
    /// (`Response::Slice`): modules travel slice by slice.
    FetchSlice {
        module: ModuleId,
        slice: SliceIndex,
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
    /// A slice of the module asked for; `None` if the peer does not hold it.
    Slice(Option<ModuleSlice>),
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

/// Which slice of a module a `Request::FetchSlice` asks for.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SliceIndex {
    /// The slice that ends the module, whatever its size: its proof also
    /// proves the module's size (asked first, before the size is known).
    Last,
    At(u64),
}

/// A slice of a module and its proof, checked against the module id by the
/// node that asked for it.
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleSlice {
    /// The module's size in bytes, as the sender holds it (the tree's shape
    /// depends on it; the last slice proves it).
    pub size: u64,
    /// Which slice this is ([`slice_range`]).
    pub index: u64,
    /// The slice in BLAKE3 verified streaming's encoding (bao, chunk groups
    /// of [`SLICE_BYTES`]): the hash pairs from the root down to the slice,
    /// then its bytes.
    pub encoded: Vec<u8>,
}

impl std::fmt::Debug for ModuleSlice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A megabyte of bytes helps no log.
        f.debug_struct("ModuleSlice")
            .field("size", &self.size)
            .field("index", &self.index)
            .field("encoded_bytes", &self.encoded.len())
            .finish()
    }
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
    fn modules_are_cut_into_slices_that_cover_them_exactly() {
        assert_eq!((slice_count(0), slice_range(0, 0), slice_range(0, 1)), (1, Some(0..0), None));
        assert_eq!((slice_count(1), slice_range(1, 0)), (1, Some(0..1)));
        assert_eq!((slice_count(SLICE_BYTES), slice_range(SLICE_BYTES, 1)), (1, None));
        let size = 3 * SLICE_BYTES + 5;
        assert_eq!(slice_count(size), 4);
        assert_eq!(slice_range(size, 2), Some(2 * SLICE_BYTES..3 * SLICE_BYTES));
        assert_eq!(slice_range(size, 3), Some(3 * SLICE_BYTES..size));
        assert_eq!(slice_range(size, 4), None);
        assert_eq!(slice_count(u64::MAX), u64::MAX.div_ceil(SLICE_BYTES));
        assert_eq!(slice_range(u64::MAX, slice_count(u64::MAX) - 1).map(|range| range.end), Some(u64::MAX));
        assert_eq!(SLICE_BYTES, 1024 << SLICE_CHUNK_LOG);
        let slice = ModuleSlice { size, index: 3, encoded: vec![7; 4096] };
        let response = Response::Slice(Some(slice));
        assert_eq!(decode::<Response>(&encode(&response), MAX_FRAME_BYTES), Ok(response));
        // A whole slice with the deepest proof fits the slice frame.
        let deepest = ModuleSlice { size: u64::MAX, index: u64::MAX, encoded: vec![0; SLICE_BYTES as usize + 64 * 64] };
        let frame = encode_frame(&Response::Slice(Some(deepest))).unwrap();
        assert!(frame.len() <= MAX_SLICE_FRAME_BYTES);
        let request = Request::FetchSlice { module: ModuleId::of_bytes(b"m"), slice: SliceIndex::Last };
        assert_eq!(max_response_bytes(&request), MAX_SLICE_FRAME_BYTES);
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
        let request = Request::FetchSlice { module: ModuleId::of_bytes(b"m"), slice: SliceIndex::Last };
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
