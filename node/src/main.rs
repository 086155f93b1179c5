use clap::Parser;
use nebula_node::cli::{Cli, Command, run_client};
use tracing_subscriber::EnvFilter;

/// mimalloc rather than glibc's malloc: an uncached call allocates on one
/// thread (the guest's) and frees on others (the HTTP answer, the cache),
/// which drains glibc's per-thread caches into its slow path. Measured on
/// one core (`scripts/bench-http`): 12-31% more uncached calls per second,
/// ~10 MiB more memory under load (README, "The uncached path"). The
/// library, its tests and the bare `hello_wasm` baseline keep glibc's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    // wasmtime-wasi opens an INFO span around every host call a guest
    // makes; formatting them cost ~10% of an uncached call's instructions
    // and they say nothing a node operator needs (RUST_LOG still can).
    let default_level = if matches!(cli.command, Command::Node(_)) { "info,wasmtime_wasi=warn" } else { "warn" };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level)))
        .with_writer(std::io::stderr)
        .init();
    let code = match cli.command {
        Command::Node(args) => match run_node(*args).await {
            Ok(()) => 0,
            Err(error) => {
                eprintln!("error: {error:#}");
                1
            }
        },
        // A refusal (or any other failure) exits 1, an unreachable node 2.
        command => run_client(command).await.unwrap_or_else(|error| {
            eprintln!("error: {error:#}");
            nebula_node::client::exit_status(&error)
        }),
    };
    std::process::exit(code);
}

async fn run_node(args: nebula_node::cli::NodeArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    // A ready file left by an earlier run must not announce this one.
    if let Some(path) = &settings.ready_file {
        let _ = std::fs::remove_file(path);
    }
    let mut config = settings.config()?;
    config.admin_token = settings.admin_token()?;
    settings.check_protected_mode(config.admin_token.as_deref())?;
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", config.http_addr))?;
    let node = nebula_node::Node::open(config).await?;
    let http_url = format!("http://{}", listener.local_addr()?);
    eprintln!("nebula node {} serving {http_url}", node.id());
    // Announced once the p2p listeners have their addresses.
    let announcer = node.clone();
    let ready_file = settings.ready_file.clone();
    tokio::spawn(async move {
        let readiness = nebula_node::ready::readiness(&announcer, http_url).await;
        for address in &readiness.p2p_addresses {
            eprintln!("nebula peer address {address}");
        }
        if let Some(path) = ready_file
            && let Err(error) = nebula_node::ready::write(&path, &readiness)
        {
            eprintln!("error: cannot write the ready file {}: {error}", path.display());
        }
    });
    nebula_node::serve(node, listener, shutdown_signal()).await
}

/// The first SIGTERM or SIGINT stops the node gracefully: no new calls,
/// calls under way finish (within their deadlines), results are flushed,
/// the swarm closes its connections. A second one exits at once.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("stopping: finishing the calls under way (signal again to exit at once)");
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("second signal: exiting without waiting for the calls under way");
        std::process::exit(1);
    });
}
