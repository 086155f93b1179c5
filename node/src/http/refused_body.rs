//! Request bodies read against a limit, and what is left of a refused one
//! read and dropped: a server that closes a connection with unread bytes
//! makes the kernel reset it, and the client, still writing, sees a broken
//! pipe instead of the refusal.

use std::time::Duration;

use axum::body::{Body, Bytes};
use bytes::BytesMut;
use futures::StreamExt;

/// After refusing an oversized body, read (and drop) up to this much more of
/// it, for at most `DRAIN_AFTER_REFUSAL`, so the client gets to read the refusal.
const DRAIN_AFTER_REFUSAL_BYTES: u64 = 64 << 20;
const DRAIN_AFTER_REFUSAL: Duration = Duration::from_secs(10);

/// Why a body was not read whole.
pub enum BodyError {
    /// Over the limit: the rest was drained; at least this many bytes were sent.
    TooLarge(u64),
    /// The client went away mid-body.
    Broken(String),
}

/// The whole body, if it is at most `limit` bytes.
pub async fn read_within(body: Body, limit: u64) -> Result<Bytes, BodyError> {
    let mut stream = body.into_data_stream();
    let mut read = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| BodyError::Broken(error.to_string()))?;
        if (read.len() + chunk.len()) as u64 > limit {
            let sent = (read.len() + chunk.len()) as u64;
            return Err(BodyError::TooLarge(sent + drain(stream).await));
        }
        read.extend_from_slice(&chunk);
    }
    Ok(read.freeze())
}

/// Reads and drops what is left of a refused body, within the bounds above;
/// returns how many bytes it read.
pub async fn drain(mut stream: axum::body::BodyDataStream) -> u64 {
    let mut drained = 0u64;
    let reading = async {
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len() as u64;
            if drained > DRAIN_AFTER_REFUSAL_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_AFTER_REFUSAL, reading).await;
    drained
}

/// Whether a body announced `excess` bytes over the limit is worth draining
/// (beyond that the connection is let go).
pub fn worth_draining(excess: u64) -> bool {
    excess <= DRAIN_AFTER_REFUSAL_BYTES
}
