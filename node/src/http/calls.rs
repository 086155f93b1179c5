//! `GET /api/{module}/{input}` (the original Nebula route) and
//! `POST /api/{module}` (body on stdin). The response body is the function's
//! stdout; headers tell where the answer came from and what it cost.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nebula_protocol::{CacheStatus, LimitOverrides, Outcome};
use serde::Deserialize;

use super::errors::{error_body, status_for};
use crate::footprint::CallFootprint;
use crate::service::{CallResponse, Node};

/// Served with every call answer. A function's HTML may style itself and
/// link to other pages, nothing more: no script runs (`sandbox` also gives
/// the page an opaque origin), nothing loads from elsewhere, no form posts.
pub const FUNCTION_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox";

/// Answers by full module hash never change; by name they may (a re-point), so briefly.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const BY_NAME: &str = "public, max-age=5";

/// Per-call limit overrides, e.g. `?fuel=1000000&deadline_ms=50`.
#[derive(Debug, Default, Deserialize)]
pub struct LimitQuery {
    fuel: Option<u64>,
    deadline_ms: Option<u64>,
    memory_bytes: Option<u64>,
    output_bytes: Option<u64>,
}

impl From<LimitQuery> for LimitOverrides {
    fn from(query: LimitQuery) -> Self {
        LimitOverrides {
            fuel: query.fuel,
            deadline_ms: query.deadline_ms,
            memory_bytes: query.memory_bytes,
            output_bytes: query.output_bytes,
        }
    }
}

pub async fn call_with_path_input(
    State(node): State<Node>,
    Path((module, input)): Path<(String, String)>,
    Query(limits): Query<LimitQuery>,
    request: HeaderMap,
) -> Response {
    let response = node.call(&module, input.into_bytes(), &limits.into()).await;
    respond(&node, &module, &request, response)
}

pub async fn call_without_input(
    State(node): State<Node>,
    Path(module): Path<String>,
    Query(limits): Query<LimitQuery>,
    request: HeaderMap,
) -> Response {
    let response = node.call(&module, Vec::new(), &limits.into()).await;
    respond(&node, &module, &request, response)
}

pub async fn call_with_body(
    State(node): State<Node>,
    Path(module): Path<String>,
    Query(limits): Query<LimitQuery>,
    request: HeaderMap,
    body: Bytes,
) -> Response {
    let response = node.call(&module, body.to_vec(), &limits.into()).await;
    respond(&node, &module, &request, response)
}

fn respond(node: &Node, reference: &str, request: &HeaderMap, response: CallResponse) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(FUNCTION_CSP));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    set(&mut headers, "x-nebula-node", &response.node_id);
    set(&mut headers, "x-nebula-micros", &response.elapsed.as_micros().to_string());
    let answer = match response.reply {
        Ok(answer) => answer,
        Err(error) => return (status_for(&error), headers, error_body(&error)).into_response(),
    };
    let record = &answer.record;
    set(&mut headers, "x-nebula-module", &record.module.to_hex());
    set(&mut headers, "x-nebula-call-key", &answer.key.to_hex());
    set(&mut headers, "x-nebula-cache", if answer.cache == CacheStatus::Hit { "hit" } else { "miss" });
    if answer.cache == CacheStatus::Joined {
        set(&mut headers, "x-nebula-joined", "true");
    }
    set(&mut headers, "x-nebula-fuel", &record.fuel_used.to_string());
    set(&mut headers, "x-nebula-executed-by", &record.executed_by);
    let timings = &record.timings;
    let timing = format!("queue={} instantiate={} run={}", timings.queue_us, timings.instantiate_us, timings.run_us);
    set(&mut headers, "x-nebula-timings-us", &timing);
    set_footprint(&mut headers, &response.footprint);
    match &record.outcome {
        Outcome::Success { stdout } => {
            // The module's declared type (part of its hash, the same on every
            // node); without one, plain text or bytes: never what the output
            // itself looks like.
            let declared = node.content_type(&record.module);
            let content_type = declared.flatten().unwrap_or(match std::str::from_utf8(stdout) {
                Ok(_) => "text/plain; charset=utf-8",
                Err(_) => "application/octet-stream",
            });
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            // The call key names this exact answer: module, profile and input.
            let etag = format!("\"{}\"", answer.key.to_hex());
            let by_hash = reference.eq_ignore_ascii_case(&record.module.to_hex());
            let cache_control = match declared {
                // This node does not hold the module yet, so the type may be
                // wrong for now: let no one keep this answer.
                None => "no-store",
                Some(_) if by_hash => IMMUTABLE,
                Some(_) => BY_NAME,
            };
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
            if let Ok(value) = HeaderValue::from_str(&etag) {
                headers.insert(header::ETAG, value);
            }
            let unchanged = request
                .get(header::IF_NONE_MATCH)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*"));
            if unchanged {
                return (StatusCode::NOT_MODIFIED, headers).into_response();
            }
            (headers, stdout.clone()).into_response()
        }
        Outcome::Failed(error) => (status_for(error), headers, error_body(error)).into_response(),
    }
}

/// `x-nebula-footprint: here` with the execution's cost when it ran on this
/// node (a joined call shares it); `cached` (nothing ran) or `elsewhere`
/// (another node paid, see `x-nebula-executed-by`) otherwise.
fn set_footprint(headers: &mut HeaderMap, footprint: &CallFootprint) {
    let footprint = match footprint {
        CallFootprint::Executed(footprint) => footprint,
        CallFootprint::Cached => return set(headers, "x-nebula-footprint", "cached"),
        CallFootprint::Elsewhere => return set(headers, "x-nebula-footprint", "elsewhere"),
        CallFootprint::None => return,
    };
    set(headers, "x-nebula-footprint", "here");
    set(headers, "x-nebula-cpu-us", &format!("{:.1}", footprint.cpu_ns as f64 / 1e3));
    set(headers, "x-nebula-wall-us", &format!("{:.1}", footprint.wall_ns as f64 / 1e3));
    set(headers, "x-nebula-peak-memory-bytes", &footprint.peak_memory_bytes.to_string());
    set(headers, "x-nebula-energy-uwh", &format!("{:.3e}", footprint.energy_uwh));
    set(headers, "x-nebula-energy-source", footprint.energy_source.as_str());
}

fn set(headers: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(HeaderName::from_static(name), value);
    }
}
