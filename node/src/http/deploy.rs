//! `POST /modules`: the upload streams to a temp file beside the blobs while
//! it is hashed (a module is never held whole in memory), and the deploy is
//! answered once the bytes are checked and stored; compiling follows in the
//! background. Every refusal is a JSON error.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{auth, errors, refused_body};
use crate::service::Node;
use crate::store::{BlobWriter, StagedBlob};

/// Chunks in flight between the connection and the disk writer.
const WRITE_QUEUE_CHUNKS: usize = 16;

#[derive(Deserialize)]
pub struct DeployQuery {
    name: Option<String>,
}

pub async fn deploy(
    State(node): State<Node>,
    Query(query): Query<DeployQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Some(refused) = auth::refusal(node.config().admin_token.as_deref(), &headers) {
        return refused;
    }
    let limit = node.config().max_module_bytes;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(size) = announced.filter(|size| *size > limit) {
        if refused_body::worth_draining(size - limit) {
            refused_body::drain(body.into_data_stream()).await;
        }
        return too_large(size, limit);
    }
    let staged = match receive(&node, body, limit).await {
        Ok(staged) => staged,
        Err(refusal) => return refusal,
    };
    match node.deploy(staged, query.name.as_deref()).await {
        Ok(deployed) => {
            let status = if deployed.new { StatusCode::CREATED } else { StatusCode::OK };
            (status, Json(deployed)).into_response()
        }
        Err(error) => errors::error_response(&error),
    }
}

/// What the connection hands the disk writer: chunks, then `End` once the
/// whole body arrived. A writer whose queue closes without `End` drops what
/// it wrote, and the refusal waits for that, so nothing of it outlives the
/// answer.
enum Upload {
    Chunk(Bytes),
    End,
}

/// Streams the body into a staged blob on a blocking thread; refuses it
/// (and drops what was written) once it passes `limit` bytes.
async fn receive(node: &Node, body: Body, limit: u64) -> Result<StagedBlob, Response> {
    let writer = node.stage_upload().map_err(|error| storage_failure(&error))?;
    let (chunks, mut received) = mpsc::channel::<Upload>(WRITE_QUEUE_CHUNKS);
    let writing = tokio::task::spawn_blocking(move || write_chunks(writer, &mut received));
    let streamed = stream_body(body, limit, &chunks).await;
    if streamed.is_ok() {
        let _ = chunks.send(Upload::End).await;
    }
    drop(chunks);
    let written = writing.await;
    streamed?;
    match written {
        Ok(Ok(staged)) => Ok(staged),
        Ok(Err(error)) => Err(storage_failure(&error)),
        Err(error) => Err(storage_failure(&std::io::Error::other(error.to_string()))),
    }
}

/// Sends the body's chunks to the writer; the refusal if it breaks off or
/// passes `limit` bytes.
async fn stream_body(body: Body, limit: u64, chunks: &mpsc::Sender<Upload>) -> Result<(), Response> {
    let mut stream = body.into_data_stream();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| bad_upload(&format!("the upload broke off: {error}")))?;
        size += chunk.len() as u64;
        if size > limit {
            let drained = refused_body::drain(stream).await;
            return Err(too_large(size + drained, limit));
        }
        if chunks.send(Upload::Chunk(chunk)).await.is_err() {
            break; // The writer failed; its error is reported by `receive`.
        }
    }
    Ok(())
}

fn write_chunks(mut writer: BlobWriter, chunks: &mut mpsc::Receiver<Upload>) -> std::io::Result<StagedBlob> {
    while let Some(upload) = chunks.blocking_recv() {
        match upload {
            Upload::Chunk(chunk) => writer.write(&chunk)?,
            Upload::End => return writer.finish(),
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "the upload was refused"))
}

fn too_large(size: u64, limit: u64) -> Response {
    let body = serde_json::json!({
        "error": "module_too_large",
        "message": format!(
            "the module is {size} bytes or more, over this node's limit of {limit} bytes (nebula node --max-module-bytes)"
        ),
        "detail": { "size_at_least": size, "limit_bytes": limit },
    });
    (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response()
}

fn bad_upload(message: &str) -> Response {
    let body = serde_json::json!({ "error": "bad_request", "message": message, "detail": {} });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// The disk refused the bytes (full, read-only): nothing was stored.
fn storage_failure(error: &std::io::Error) -> Response {
    let status = match error.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    let body = serde_json::json!({
        "error": "storage",
        "message": format!("the node could not store the module: {error}"),
        "detail": {},
    });
    (status, Json(body)).into_response()
}
