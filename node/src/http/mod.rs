//! The HTTP API of a node (axum). Handlers only translate between HTTP and
//! [`Node`]; every decision is made below them.

mod auth;
mod calls;
pub mod dashboard;
mod deploy;
mod errors;
mod header_values;
mod hot_path;
mod refused_body;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};

use crate::footprint::{EnergyModel, FunctionFootprint};

use crate::service::Node;
pub use auth::MIN_TOKEN_LEN;
pub use errors::status_for;

/// The body of `GET /footprint`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FootprintReport {
    pub energy: EnergyModel,
    pub functions: Vec<FunctionFootprint>,
}

/// The node's HTTP service: the hot call route first, then every route.
pub fn service(node: Node) -> hot_path::HotPath {
    let calls = calls::Calls::new(node);
    hot_path::HotPath::new(calls.clone(), router(calls))
}

fn router(calls: calls::Calls) -> Router {
    // Call inputs are read whole, up to the input limit (`calls`); modules
    // stream to disk (`deploy`): each checks its own limit as bytes arrive
    // and drains a refused body (`refused_body`).
    Router::new()
        .route("/", get(dashboard::dashboard))
        .route("/help", get(index))
        .route("/api/{module}", get(calls::call_without_input).post(calls::call_with_body))
        .route("/api/{module}/{input}", get(calls::call_with_path_input))
        .route("/modules", get(list_modules).post(deploy::deploy))
        .route("/modules/{module}", get(show_module))
        .route("/names", get(list_names))
        .route("/names/{name}", put(set_name))
        .route("/peers", get(peers))
        .route("/health", get(health))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/footprint", get(footprint))
        .layer(axum::middleware::map_response(errors::json_refusals))
        .with_state(calls)
}

async fn index(State(node): State<Node>) -> impl IntoResponse {
    let text = format!(
        "Nebula node {}\n\nGET  /api/{{module}}/{{input}}   call (module = name, hash or hash prefix)\n\
         POST /api/{{module}}           call with the body on stdin\n\
         POST /modules?name=NAME       deploy a wasm module (body = bytes)\n\
         GET  /modules, /names, /peers, /status, /health, /metrics, /footprint\n",
        node.id()
    );
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text)
}

async fn list_modules(State(node): State<Node>) -> impl IntoResponse {
    Json(node.modules().await)
}

async fn show_module(State(node): State<Node>, Path(reference): Path<String>) -> Response {
    let module = match node.resolve(&reference) {
        Ok(module) => module,
        Err(error) => return errors::error_response(&error),
    };
    match node.modules().await.into_iter().find(|summary| summary.module == module) {
        Some(summary) => Json(summary).into_response(),
        None => errors::error_response(&nebula_protocol::CallError::ModuleNotFound { reference }),
    }
}

async fn list_names(State(node): State<Node>) -> impl IntoResponse {
    Json(node.names())
}

#[derive(Deserialize)]
struct SetNameBody {
    module: String,
}

async fn set_name(
    State(node): State<Node>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Json(body): Json<SetNameBody>,
) -> Response {
    if let Some(refused) = auth::refusal(node.config().admin_token.as_deref(), &headers) {
        return refused;
    }
    match node.set_name(&name, &body.module).await {
        Ok(record) => Json(record).into_response(),
        Err(error) => errors::error_response(&error),
    }
}

async fn peers(State(node): State<Node>) -> impl IntoResponse {
    Json(node.peers().await)
}

async fn health(State(node): State<Node>) -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok", "node": node.id() }))
}

async fn status(State(node): State<Node>) -> impl IntoResponse {
    Json(node.status().await)
}

/// Per-function footprint (`nebula footprint`, the dashboard), with the energy model.
async fn footprint(State(node): State<Node>) -> impl IntoResponse {
    Json(FootprintReport { energy: node.energy_model(), functions: node.footprint() })
}

async fn metrics(State(node): State<Node>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], node.metrics_text())
}
