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
    (problem.status(), error_body(problem)).into_response()
}
