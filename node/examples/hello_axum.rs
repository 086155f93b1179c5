//! The ceiling of the HTTP load benchmark (`scripts/bench-http`): the
//! smallest axum server, on the same route shape as a node and built and run
//! like one (release, tokio's multi-threaded runtime), answering every call
//! with a fixed body. A node can only be slower; the ratio says by how much.
//!
//! `cargo run --release -p nebula-node --example hello_axum -- 127.0.0.1:8090`

use axum::Router;
use axum::routing::get;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let address = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8090".to_owned());
    let app = Router::new().route("/api/{module}/{input}", get(|| async { "2880067194370816120" }));
    let listener = tokio::net::TcpListener::bind(&address).await?;
    eprintln!("hello_axum serving http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}
