//! The uncached ceiling of the HTTP load benchmark (`scripts/bench-http`):
//! the bare axum handler a user would write instead of running a node. On
//! `GET /api/{module}/{input}` it runs one module, with the input on stdin,
//! through Nebula's own runtime: the same engine (pooling allocator, fuel,
//! epoch deadlines), the same prepared instance (`InstancePre`), the same
//! WASI purity profile and the node's default limits. Nothing else: no
//! cache, no store, no signature, no bookkeeping, no execution slots. The
//! guest runs on tokio's blocking pool, as a busy node's do: run inline on
//! the async worker instead, it was faster with the server free to use both
//! CPUs (34,000 against 19,000 requests/s) but far slower pinned to one, as
//! `scripts/bench-http` runs it (3,100 against 7,900).
//!
//! The engine is the one a node with the same `NEBULA_*` variables builds
//! (`NEBULA_CONCURRENCY`, `NEBULA_MAX_MEMORY_BYTES`,
//! `NEBULA_COMPACT_MEMORY_RESERVATION`), so the two run the same code.
//!
//! `cargo run --release -p nebula-node --example hello_wasm -- 127.0.0.1:8092 target/functions/hash.wasm`

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nebula_node::runtime::{CompileWorker, Prepared, Runtime};
use nebula_node::settings::NodeSettings;
use nebula_protocol::{CallKey, Limits, ModuleId, Outcome};

struct Function {
    runtime: Runtime,
    module: ModuleId,
    prepared: Prepared,
    limits: Limits,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:8092".to_owned());
    let wasm_path = args.next().unwrap_or_else(|| "target/functions/hash.wasm".to_owned());
    let wasm = std::fs::read(&wasm_path)?;
    let compiled = tempfile::tempdir()?;
    let node = nebula_node::settings::layered(None, &NodeSettings::default())?.config()?;
    let settings = nebula_node::runtime::RuntimeSettings { compile_worker: CompileWorker::InProcess, ..node.runtime };
    let max_memory_bytes = node.max_limits.memory_bytes;
    let runtime = Runtime::with_settings(compiled.path().to_owned(), node.concurrency, max_memory_bytes, settings)?;
    let limits = node.default_limits;
    let module = ModuleId::of_bytes(&wasm);
    let prepared = runtime.load(&module, &wasm).map_err(|error| anyhow::anyhow!("{wasm_path}: {error}"))?;
    let function = Arc::new(Function { runtime, module, prepared, limits });

    let app = Router::new().route("/api/{module}/{input}", get(call)).with_state(function);
    let listener = tokio::net::TcpListener::bind(&address).await?;
    eprintln!("hello_wasm serving {wasm_path} at http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

async fn call(State(function): State<Arc<Function>>, Path((_, input)): Path<(String, String)>) -> Response {
    let run = move || {
        // The call key seeds the guest's random numbers, as on a node.
        let key = CallKey::new(&function.module, input.as_bytes());
        function.runtime.execute_blocking(&function.prepared, &key, input.as_bytes(), &function.limits)
    };
    let Ok(report) = tokio::task::spawn_blocking(run).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "the execution panicked").into_response();
    };
    match report.outcome {
        Outcome::Success { stdout, .. } => {
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], stdout).into_response()
        }
        Outcome::Failed(failure) => (StatusCode::UNPROCESSABLE_ENTITY, failure.to_string()).into_response(),
    }
}
