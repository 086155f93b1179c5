//! The ceiling of the HTTP load benchmark (`scripts/bench-http`): the
//! smallest axum server, on the same route shape as a node and built and run
//! like one (release, tokio's multi-threaded runtime), answering every call
//! with a fixed body. A node can only be slower; the ratio says by how much.
//!
//! With `--node-headers`, every answer also carries the headers a node sends
//! with a cached answer (provenance, caching, security), fixed and built once:
//! the same bytes on the wire, without the work of finding the answer. It
//! tells how much of a node's distance to the ceiling is the size of its
//! answers rather than its work.
//!
//! `cargo run --release -p nebula-node --example hello_axum -- 127.0.0.1:8090 [--node-headers]`

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// A node's headers on a cached `fibonacci 90` (`curl -si`), less the ones hyper adds.
const NODE_HEADERS: &[(&str, &str)] = &[
    ("x-content-type-options", "nosniff"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'; sandbox",
    ),
    ("referrer-policy", "no-referrer"),
    ("x-nebula-node", "12D3KooWLVbrJom6AnmCGLkFH5AjF9GbFUZ1QEpwQFwyFdE5cs1n"),
    ("x-nebula-module", "36398baad9ef56e5a5542e9030ee3c7340b8dc90998294a885969cd9f87a4b61"),
    ("x-nebula-call-key", "8827c02922753393c25ba071aeda0a4deebb83c7e48601e69cb4f10c7962622a"),
    ("x-nebula-cache", "hit"),
    ("x-nebula-fuel", "33675"),
    ("x-nebula-executed-by", "12D3KooWLVbrJom6AnmCGLkFH5AjF9GbFUZ1QEpwQFwyFdE5cs1n"),
    ("x-nebula-timings-us", "queue=62 instantiate=130 run=130"),
    ("x-nebula-footprint", "cached"),
    ("content-type", "text/plain; charset=utf-8"),
    ("cache-control", "public, max-age=5"),
    ("etag", "\"8827c02922753393c25ba071aeda0a4deebb83c7e48601e69cb4f10c7962622a\""),
    ("x-nebula-micros", "5"),
];

const ANSWER: &str = "2880067194370816120";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let app = match args.next().as_deref() {
        Some("--node-headers") => {
            let mut headers = HeaderMap::new();
            for (name, value) in NODE_HEADERS {
                headers.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
            }
            // Shared: axum clones the handler per request.
            let headers = Arc::new(headers);
            Router::new().route("/api/{module}/{input}", get(move || with_headers(headers.clone())))
        }
        _ => Router::new().route("/api/{module}/{input}", get(|| async { ANSWER })),
    };
    let listener = tokio::net::TcpListener::bind(&address).await?;
    eprintln!("hello_axum serving http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn with_headers(headers: Arc<HeaderMap>) -> Response {
    let mut response = ANSWER.into_response();
    *response.headers_mut() = HeaderMap::clone(&headers);
    response
}
