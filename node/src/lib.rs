//! The Nebula node: runtime (wasmtime), storage, HTTP API and CLI around the
//! sans-io core of `nebula-protocol`.

pub mod bundle;
pub mod cli;
pub mod client;
pub mod config;
pub mod data_slot;
pub mod footprint;
pub mod http;
pub mod mesh;
pub mod metrics;
pub mod ready;
pub mod result_cache;
pub mod runtime;
pub mod sealing;
pub mod service;
pub mod settings;
pub mod signing;
pub mod store;

pub use config::NodeConfig;
pub use service::Node;

use std::future::Future;

/// Serves `node`'s HTTP API on `listener` until `shutdown` resolves, then
/// makes cached results durable.
pub async fn serve(
    node: Node,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = http::service(node.clone());
    axum::serve(listener, axum::ServiceExt::<axum::extract::Request>::into_make_service(app))
        .with_graceful_shutdown(shutdown)
        .await?;
    node.flush()?;
    // Peers see the connections close now, not after a ping timeout.
    node.shutdown().await;
    Ok(())
}
