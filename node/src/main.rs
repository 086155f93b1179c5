use clap::Parser;
use nebula_node::cli::{Cli, Command, run_client};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, Command::Node(_)) { "info" } else { "warn" };
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
    let mut config = args.config()?;
    config.admin_token = args.admin_token()?;
    args.check_protected_mode(config.admin_token.as_deref())?;
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {}: {error}", config.http_addr))?;
    let node = nebula_node::Node::open(config).await?;
    eprintln!("nebula node {} serving http://{}", node.id(), listener.local_addr()?);
    // The p2p listeners report their addresses shortly after start.
    let announcer = node.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        for address in announcer.listen_addresses() {
            eprintln!("nebula peer address {address}");
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
