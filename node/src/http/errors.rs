//! Every call failure maps to one HTTP status and a JSON body
//! `{"error": kind, "message": text, "detail": {...}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nebula_protocol::CallError;

pub fn status_for(error: &CallError) -> StatusCode {
    match error {
        // The function ran and failed: the request was fine, its processing was not.
        CallError::NonZeroExit { .. }
        | CallError::Trap { .. }
        | CallError::OutOfFuel { .. }
        | CallError::MemoryLimit { .. }
        | CallError::OutputTooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        CallError::DeadlineExceeded { .. } => StatusCode::GATEWAY_TIMEOUT,
        CallError::InputTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        CallError::InvalidModule { .. } | CallError::InvalidName { .. } => StatusCode::BAD_REQUEST,
        CallError::ModuleNotFound { .. } | CallError::NameNotFound { .. } => StatusCode::NOT_FOUND,
        CallError::AmbiguousPrefix { .. } => StatusCode::CONFLICT,
        CallError::ModuleCorrupt { .. } | CallError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        // Peers answered, but not in a way this node can trust.
        CallError::Unverified { .. } => StatusCode::BAD_GATEWAY,
    }
}

pub fn error_body(error: &CallError) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "error": error.kind(),
        "message": error.to_string(),
        "detail": error,
    }))
}

pub fn error_response(error: &CallError) -> Response {
    (status_for(error), error_body(error)).into_response()
}
