//! Every call failure maps to one HTTP status and a JSON body
//! `{"error": kind, "message": text, "detail": {...}}`: a [`CallError`] (the
//! call never ran) or a guest [`Failure`] (it ran and failed).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nebula_protocol::{CallError, Failure};
use serde::Serialize;

/// A failure a call can answer with.
pub trait Problem: std::fmt::Display + Serialize {
    fn kind(&self) -> &'static str;
    fn status(&self) -> StatusCode;
    /// When a retry may succeed, for a `Retry-After` header.
    fn retry_after_ms(&self) -> Option<u64> {
        None
    }
}

impl Problem for CallError {
    fn kind(&self) -> &'static str {
        CallError::kind(self)
    }

    fn status(&self) -> StatusCode {
        match self {
            CallError::InputTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            CallError::InvalidModule { .. } | CallError::InvalidName { .. } => StatusCode::BAD_REQUEST,
            CallError::ModuleNotFound { .. } | CallError::NameNotFound { .. } => StatusCode::NOT_FOUND,
            CallError::AmbiguousPrefix { .. } => StatusCode::CONFLICT,
            CallError::ModuleCorrupt { .. } | CallError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            // Peers answered, but not in a way this node can trust.
            CallError::Unverified { .. } => StatusCode::BAD_GATEWAY,
            CallError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn retry_after_ms(&self) -> Option<u64> {
        match self {
            CallError::Overloaded { retry_after_ms, .. } => Some(*retry_after_ms),
            _ => None,
        }
    }
}

impl Problem for Failure {
    fn kind(&self) -> &'static str {
        Failure::kind(self)
    }

    /// The function ran and failed: the request was fine, its processing was not.
    fn status(&self) -> StatusCode {
        match self {
            Failure::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

pub fn status_for(problem: &impl Problem) -> StatusCode {
    problem.status()
}

pub fn error_body(problem: &impl Problem) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "error": problem.kind(),
        "message": problem.to_string(),
        "detail": problem,
    }))
}

pub fn error_response(problem: &impl Problem) -> Response {
    let mut response = (problem.status(), error_body(problem)).into_response();
    if let Some(millis) = problem.retry_after_ms() {
        // Retry-After counts whole seconds.
        let seconds = millis.div_ceil(1000).max(1);
        response.headers_mut().insert(axum::http::header::RETRY_AFTER, seconds.into());
    }
    response
}

/// Every refusal is Nebula's JSON error: the few that axum's extractors
/// answer in plain text (a body over the input limit, a malformed query or
/// JSON body) are rewrapped, keeping their status and text.
pub async fn json_refusals(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "input_too_large",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        _ if status.is_server_error() => "internal",
        _ => "bad_request",
    };
    // Extractor rejections are a line of text: small, and read from memory.
    let text = match axum::body::to_bytes(response.into_body(), 64 * 1024).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = match text.is_empty() {
        true => status.canonical_reason().unwrap_or("refused").to_owned(),
        false => text,
    };
    let body = serde_json::json!({ "error": kind, "message": message, "detail": {} });
    (status, Json(body)).into_response()
}
