//! `GET /api/{module}/{input}` (the original Nebula route) and
//! `POST /api/{module}` (body on stdin). The response body is the function's
//! stdout; headers tell where the answer came from and what it cost.

use std::fmt::Write;
use std::sync::{Arc, Weak};

use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nebula_protocol::core::Answer;
use nebula_protocol::{CacheStatus, CallKey, ExecutionRecord, LimitOverrides, ModuleId, Outcome};
use quick_cache::sync::Cache;
use serde::Deserialize;

use super::errors::{self, error_body, status_for};
use super::header_values::HeaderValues;
use super::refused_body::{self, BodyError};
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

/// The call's limit overrides from its query string; most calls have none,
/// and skip parsing (a third of the cost of extracting a cached call).
pub struct CallLimits(LimitOverrides);

impl<S: Send + Sync> FromRequestParts<S> for CallLimits {
    type Rejection = QueryRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_none() {
            return Ok(CallLimits(LimitOverrides::default()));
        }
        let Query(query) = Query::<LimitQuery>::from_request_parts(parts, state).await?;
        Ok(CallLimits(query.into()))
    }
}

/// The request's `If-None-Match`, the one request header a call reads
/// (extracting the whole `HeaderMap` would copy every header per call).
pub struct IfNoneMatch(Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(IfNoneMatch::of(&parts.headers))
    }
}

pub async fn call_with_path_input(
    State(calls): State<Calls>,
    Path((module, input)): Path<(String, String)>,
    CallLimits(limits): CallLimits,
    request: IfNoneMatch,
) -> Response {
    calls.answer(&module, input.into_bytes(), &limits, &request).await
}

pub async fn call_without_input(
    State(calls): State<Calls>,
    Path(module): Path<String>,
    CallLimits(limits): CallLimits,
    request: IfNoneMatch,
) -> Response {
    calls.answer(&module, Vec::new(), &limits, &request).await
}

pub async fn call_with_body(
    State(calls): State<Calls>,
    Path(module): Path<String>,
    CallLimits(limits): CallLimits,
    request: IfNoneMatch,
    body: Body,
) -> Response {
    let limit = calls.node().config().max_limits.input_bytes;
    match refused_body::read_within(body, limit).await {
        Ok(input) => calls.answer(&module, input.to_vec(), &limits, &request).await,
        // Plain text: `errors::json_refusals` wraps it as `input_too_large`.
        Err(BodyError::TooLarge(sent)) => {
            let message = format!("the input ({sent}+ bytes) is over this node's limit of {limit} bytes");
            (StatusCode::PAYLOAD_TOO_LARGE, message).into_response()
        }
        Err(BodyError::Broken(error)) => {
            (StatusCode::BAD_REQUEST, format!("the input broke off: {error}")).into_response()
        }
    }
}

// Header names built once (`from_static` checks the name at each call otherwise).
const X_NEBULA_NODE: HeaderName = HeaderName::from_static("x-nebula-node");
const X_NEBULA_MICROS: HeaderName = HeaderName::from_static("x-nebula-micros");
const X_NEBULA_MODULE: HeaderName = HeaderName::from_static("x-nebula-module");
const X_NEBULA_CALL_KEY: HeaderName = HeaderName::from_static("x-nebula-call-key");
const X_NEBULA_CACHE: HeaderName = HeaderName::from_static("x-nebula-cache");
const X_NEBULA_JOINED: HeaderName = HeaderName::from_static("x-nebula-joined");
const X_NEBULA_FUEL: HeaderName = HeaderName::from_static("x-nebula-fuel");
const X_NEBULA_EXECUTED_BY: HeaderName = HeaderName::from_static("x-nebula-executed-by");
const X_NEBULA_TIMINGS_US: HeaderName = HeaderName::from_static("x-nebula-timings-us");
const X_NEBULA_FOOTPRINT: HeaderName = HeaderName::from_static("x-nebula-footprint");
const X_NEBULA_CPU_US: HeaderName = HeaderName::from_static("x-nebula-cpu-us");
const X_NEBULA_WALL_US: HeaderName = HeaderName::from_static("x-nebula-wall-us");
const X_NEBULA_PEAK_MEMORY_BYTES: HeaderName = HeaderName::from_static("x-nebula-peak-memory-bytes");
const X_NEBULA_ENERGY_UWH: HeaderName = HeaderName::from_static("x-nebula-energy-uwh");
const X_NEBULA_ENERGY_SOURCE: HeaderName = HeaderName::from_static("x-nebula-energy-source");

/// Lower-case hex of 32 bytes, on the stack.
fn hex32(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, byte) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(byte >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
    }
    out
}

/// A response body that shares the stored result instead of copying it.
struct Stdout(Arc<ExecutionRecord>);

impl AsRef<[u8]> for Stdout {
    fn as_ref(&self) -> &[u8] {
        match &self.0.outcome {
            Outcome::Success { stdout } => stdout,
            Outcome::Failed(_) => &[],
        }
    }
}

/// What the call handlers share: the node, and the headers of answers it
/// served from its cache, kept per answer. A repeated call clones them
/// instead of building ~17 headers again, which took a fifth of its time.
#[derive(Clone)]
pub struct Calls {
    node: Node,
    hits: Arc<Cache<(CallKey, bool), Arc<HitHeaders>>>,
}

/// The headers of one cached answer, as served by hash (`true`) or by name.
struct HitHeaders {
    /// The record they describe (weak: the memory tier decides what stays).
    record: Weak<ExecutionRecord>,
    headers: HeaderMap,
}

/// Answers whose headers are kept: about 2 MiB at most.
const HIT_HEADERS_KEPT: usize = 1024;

impl Calls {
    pub fn new(node: Node) -> Self {
        Calls { node, hits: Arc::new(Cache::new(HIT_HEADERS_KEPT)) }
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    /// Calls `reference` with `input` and answers over HTTP.
    pub async fn answer(
        &self,
        reference: &str,
        input: Vec<u8>,
        limits: &LimitOverrides,
        request: &IfNoneMatch,
    ) -> Response {
        let response = self.node.call(reference, input, limits).await;
        self.respond(reference, request, response)
    }

    fn respond(&self, reference: &str, request: &IfNoneMatch, response: CallResponse) -> Response {
        let node = &self.node;
        let micros = HeaderValue::from(response.elapsed.as_micros() as u64);
        let answer = match response.reply {
            Ok(answer) => answer,
            Err(error) => {
                let mut headers = node_headers(node);
                headers.insert(X_NEBULA_MICROS, micros);
                let mut response = errors::error_response(&error);
                response.headers_mut().extend(headers);
                return response;
            }
        };
        let by_hash = reference.parse::<ModuleId>().is_ok_and(|module| module == answer.record.module);
        let mut headers = match answer.cache {
            CacheStatus::Hit => self.hit_headers(by_hash, &answer),
            _ => answer_headers(node, by_hash, &answer, &response.footprint).0,
        };
        // Into the slot `answer_headers` left: a kept map's clone has no room
        // for a new entry, and growing it would copy every header again.
        match headers.get_mut(X_NEBULA_MICROS) {
            Some(slot) => *slot = micros,
            None => drop(headers.insert(X_NEBULA_MICROS, micros)),
        }
        match &answer.record.outcome {
            Outcome::Success { .. } => {
                if request.matches(&answer.key) {
                    return (StatusCode::NOT_MODIFIED, headers).into_response();
                }
                // Built directly: `(headers, body).into_response()` would merge
                // the headers into a second map, hashing each one again.
                let mut response = Response::new(Body::from(Bytes::from_owner(Stdout(answer.record))));
                *response.headers_mut() = headers;
                response
            }
            Outcome::Failed(error) => (status_for(error), headers, error_body(error)).into_response(),
        }
    }

    /// The headers of an answer served from the cache: kept ones if they
    /// describe this very record, built (and kept when final) otherwise.
    fn hit_headers(&self, by_hash: bool, answer: &Answer) -> HeaderMap {
        let slot = (answer.key, by_hash);
        if let Some(kept) = self.hits.get(&slot)
            && std::ptr::eq(kept.record.as_ptr(), Arc::as_ptr(&answer.record))
        {
            return kept.headers.clone();
        }
        let (headers, is_final) = answer_headers(&self.node, by_hash, answer, &CallFootprint::Cached);
        if is_final {
            let kept = HitHeaders { record: Arc::downgrade(&answer.record), headers: headers.clone() };
            self.hits.insert(slot, Arc::new(kept));
        }
        headers
    }
}

impl FromRef<Calls> for Node {
    fn from_ref(calls: &Calls) -> Node {
        calls.node.clone()
    }
}

impl IfNoneMatch {
    pub fn of(headers: &HeaderMap) -> Self {
        IfNoneMatch(headers.get(header::IF_NONE_MATCH).cloned())
    }

    /// True if the client already holds this answer (its ETag is the call key).
    fn matches(&self, key: &CallKey) -> bool {
        let Some(tags) = self.0.as_ref().and_then(|value| value.to_str().ok()) else { return false };
        let key_hex = hex32(key.as_bytes());
        tags.split(',').map(str::trim).any(|tag| {
            tag == "*"
                || tag.strip_prefix('"').and_then(|tag| tag.strip_suffix('"')) == std::str::from_utf8(&key_hex).ok()
        })
    }
}

/// Headers of every call answer from this node.
fn node_headers(node: &Node) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(24);
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(FUNCTION_CSP));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(X_NEBULA_NODE, node.id_header());
    headers
}

/// Every header of an answer (`x-nebula-micros` as a placeholder); false with them if they
/// may change for the same record (this node does not hold the module yet).
fn answer_headers(node: &Node, by_hash: bool, answer: &Answer, footprint: &CallFootprint) -> (HeaderMap, bool) {
    let mut headers = node_headers(node);
    let mut values = HeaderValues::new();
    let record = &answer.record;
    values.bytes(X_NEBULA_MODULE, &hex32(record.module.as_bytes()));
    let key_hex = hex32(answer.key.as_bytes());
    values.bytes(X_NEBULA_CALL_KEY, &key_hex);
    let cache = if answer.cache == CacheStatus::Hit { "hit" } else { "miss" };
    headers.insert(X_NEBULA_CACHE, HeaderValue::from_static(cache));
    if answer.cache == CacheStatus::Joined {
        headers.insert(X_NEBULA_JOINED, HeaderValue::from_static("true"));
    }
    values.number(X_NEBULA_FUEL, record.fuel_used);
    if record.executed_by == node.id() {
        headers.insert(X_NEBULA_EXECUTED_BY, node.id_header());
    } else {
        values.bytes(X_NEBULA_EXECUTED_BY, record.executed_by.as_bytes());
    }
    let timings = &record.timings;
    values.print(X_NEBULA_TIMINGS_US, |text| {
        write!(text, "queue={} instantiate={} run={}", timings.queue_us, timings.instantiate_us, timings.run_us)
    });
    set_footprint(&mut headers, &mut values, footprint);
    headers.insert(X_NEBULA_MICROS, HeaderValue::from_static("0"));
    let Outcome::Success { stdout } = &record.outcome else {
        values.insert_into(&mut headers);
        return (headers, true);
    };
    // The module's declared type (part of its hash, the same on every node);
    // without one, plain text or bytes: never what the output itself looks like.
    let declared = node.content_type(&record.module);
    let content_type = declared.flatten().unwrap_or(match std::str::from_utf8(stdout) {
        Ok(_) => "text/plain; charset=utf-8",
        Err(_) => "application/octet-stream",
    });
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let cache_control = match declared {
        // This node does not hold the module yet, so the type may be wrong
        // for now: let no one keep this answer.
        None => "no-store",
        Some(_) if by_hash => IMMUTABLE,
        Some(_) => BY_NAME,
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
    // The call key names this exact answer: module, profile and input.
    let mut etag = [b'"'; 66];
    etag[1..65].copy_from_slice(&key_hex);
    values.bytes(header::ETAG, &etag);
    values.insert_into(&mut headers);
    (headers, declared.is_some())
}

/// `x-nebula-footprint: here` with the execution's cost when it ran on this
/// node (a joined call shares it); `cached` (nothing ran) or `elsewhere`
/// (another node paid, see `x-nebula-executed-by`) otherwise.
fn set_footprint(headers: &mut HeaderMap, values: &mut HeaderValues, footprint: &CallFootprint) {
    let footprint = match footprint {
        CallFootprint::Executed(footprint) => footprint,
        CallFootprint::Cached => {
            headers.insert(X_NEBULA_FOOTPRINT, HeaderValue::from_static("cached"));
            return;
        }
        CallFootprint::Elsewhere => {
            headers.insert(X_NEBULA_FOOTPRINT, HeaderValue::from_static("elsewhere"));
            return;
        }
        CallFootprint::None => return,
    };
    headers.insert(X_NEBULA_FOOTPRINT, HeaderValue::from_static("here"));
    values.print(X_NEBULA_CPU_US, |text| write!(text, "{:.1}", footprint.cpu_ns as f64 / 1e3));
    values.print(X_NEBULA_WALL_US, |text| write!(text, "{:.1}", footprint.wall_ns as f64 / 1e3));
    values.number(X_NEBULA_PEAK_MEMORY_BYTES, footprint.peak_memory_bytes);
    values.print(X_NEBULA_ENERGY_UWH, |text| write!(text, "{:.3e}", footprint.energy_uwh));
    headers.insert(X_NEBULA_ENERGY_SOURCE, HeaderValue::from_static(footprint.energy_source.as_str()));
}
