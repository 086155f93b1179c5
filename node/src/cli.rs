//! Command-line interface: `nebula node` runs a node; every other command is a
//! client of a node's HTTP API (`--node`, default the local node).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::bundle::{ManifestFlags, function_bytes};
use crate::client::{NodeClient, error_message};
use crate::http::FootprintReport;
use crate::service::{ModuleSummary, NodeStatus, PeerSummary};
use crate::settings::NodeSettings;

pub const DEFAULT_NODE_URL: &str = "http://127.0.0.1:8080";

#[derive(Parser, Debug)]
#[command(name = "nebula", version, about = "A mesh of nodes running pure WebAssembly functions")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node.
    Node(Box<NodeArgs>),
    /// Inspect a node's settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print the peer id of the node whose data directory this is (creating
    /// its key if it has none yet), to hand to other nodes' `--peer`.
    Id {
        #[arg(long, default_value = "./nebula-data")]
        data: PathBuf,
    },
    /// Print a new random swarm key: give the same file to every node's
    /// `--swarm-key` and only they can join the mesh.
    SwarmKey,
    /// Deploy a function: a wasm module, or a module with fixed arguments,
    /// environment and read-only files (flags below, or a manifest file:
    /// TOML with `module`, `args`, `env`, `dir`, `mount`). Prints its id
    /// (the BLAKE3 hash of what was deployed).
    Deploy {
        file: PathBuf,
        #[command(flatten)]
        manifest: ManifestFlags,
        /// Also point this name at the module.
        #[arg(long)]
        name: Option<String>,
        /// Pack this file into the module's data slot first (a new module;
        /// the file on disk is unchanged). See `nebula pack`.
        #[arg(long)]
        data: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Print the id (BLAKE3 hash) a deploy would give each file (a module
    /// or a manifest file, with the same flags), without deploying it: one
    /// `HASH  FILE` line per file.
    Hash {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        manifest: ManifestFlags,
    },
    /// Write data into a module's data slot, giving a new module: a function
    /// compiled once carries different data (Academemes' meme catalogue).
    Pack {
        file: PathBuf,
        /// The data to pack.
        #[arg(long)]
        data: PathBuf,
        /// Where to write the packed module.
        #[arg(long, short)]
        out: PathBuf,
    },
    /// Call a function: by name, hash or hash prefix. Input words are joined
    /// by spaces; "-" reads the input from stdin.
    Call {
        module: String,
        input: Vec<String>,
        /// Show where the answer came from and what it cost (on stderr).
        #[arg(short, long)]
        verbose: bool,
        #[arg(long)]
        fuel: Option<u64>,
        #[arg(long)]
        deadline_ms: Option<u64>,
        #[arg(long)]
        memory_bytes: Option<u64>,
        #[arg(long)]
        output_bytes: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Point a name at a module (hash, prefix or another name).
    Name {
        name: String,
        module: String,
        #[command(flatten)]
        target: Target,
    },
    /// List modules and their names.
    Ls {
        #[command(flatten)]
        target: Target,
    },
    /// List the peers a node knows, with addresses and round-trip times.
    Peers {
        #[command(flatten)]
        target: Target,
    },
    /// Show a node's status.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// What each function costs on a node: calls, executions, cache hits,
    /// CPU and wall time, fuel, peak memory and energy.
    Footprint {
        #[command(flatten)]
        target: Target,
    },
    /// Compile one stored module into a node's compiled-code cache (the node
    /// runs this itself, as a child process, for every compile).
    #[command(hide = true)]
    CompileModule {
        #[arg(long)]
        module: nebula_protocol::ModuleId,
        #[arg(long)]
        blob: PathBuf,
        #[arg(long)]
        compiled_dir: PathBuf,
        #[arg(long)]
        concurrency: u32,
        #[arg(long)]
        max_memory_bytes: u64,
        /// The node's `--compact-memory-reservation`.
        #[arg(long)]
        compact_memory_reservation: bool,
    },
    /// Check a data directory offline (the node must be stopped): every blob
    /// hashes to its name, every indexed module has its blob, every record
    /// decodes. Exits 1 on any inconsistency.
    Fsck {
        #[arg(long, default_value = "./nebula-data")]
        data: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct Target {
    /// Base URL of the node to talk to.
    #[arg(long = "node", env = "NEBULA_NODE", default_value = DEFAULT_NODE_URL)]
    pub url: String,
    /// The node's admin token, for deploys and name changes on a node that has one.
    #[arg(long, env = "NEBULA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl Target {
    fn client(&self) -> NodeClient {
        NodeClient::new(&self.url).with_token(self.token.clone())
    }
}

/// `nebula node`: settings from a file, then `NEBULA_<KEY>` variables, then flags.
#[derive(Args, Debug)]
pub struct NodeArgs {
    /// A TOML file of settings: every flag below is a key (`--max-fuel` is
    /// `max_fuel`; see nebula.example.toml). `NEBULA_<KEY>` environment
    /// variables override the file, flags override both.
    #[arg(long, env = "NEBULA_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub flags: NodeSettings,
}

impl NodeArgs {
    /// The settings in force, every layer applied.
    pub fn settings(&self) -> anyhow::Result<NodeSettings> {
        crate::settings::layered(self.config.as_deref(), &self.flags)
    }
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print the effective settings of `nebula node` given the same
    /// `--config`, environment and flags, as a config file.
    Show(Box<NodeArgs>),
}

/// Runs a client command; returns the process exit code.
pub async fn run_client(command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Node(_) => unreachable!("`nebula node` is handled by main"),
        Command::Config(ConfigCommand::Show(args)) => {
            let effective = args.settings()?.effective()?;
            print!(
                "# nebula node's effective settings: defaults, then the config file, then NEBULA_* variables, then flags\n{}",
                effective.to_toml_every_key()
            );
            Ok(0)
        }
        Command::SwarmKey => {
            print!("{}", crate::mesh::new_swarm_key()?);
            Ok(0)
        }
        Command::Id { data } => {
            std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
            let key = crate::mesh::load_or_create_key(&data.join("node-key"))?;
            println!("{}", key.public().to_peer_id());
            Ok(0)
        }
        Command::CompileModule {
            module,
            blob,
            compiled_dir,
            concurrency,
            max_memory_bytes,
            compact_memory_reservation,
        } => {
            let spec = crate::runtime::EngineSpec { concurrency, max_memory_bytes, compact_memory_reservation };
            let request = crate::runtime::CompileRequest { module, blob, compiled_dir, spec };
            Ok(crate::runtime::run_compile_worker(&request))
        }
        Command::Deploy { file, manifest, name, data, target } => {
            let mut wasm = function_bytes(&file, &manifest)?;
            if let Some(data) = data {
                wasm = pack_file(&wasm, &data)?;
            }
            let deployed = target.client().deploy(wasm, name.as_deref()).await?;
            println!("{}", deployed["module"].as_str().unwrap_or_default());
            Ok(0)
        }
        Command::Hash { files, manifest } => {
            for file in files {
                let bytes = function_bytes(&file, &manifest)?;
                println!("{}  {}", nebula_protocol::ModuleId::of_bytes(&bytes), file.display());
            }
            Ok(0)
        }
        Command::Pack { file, data, out } => {
            let wasm = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let packed = pack_file(&wasm, &data)?;
            std::fs::write(&out, &packed).with_context(|| format!("writing {}", out.display()))?;
            println!("{}", nebula_protocol::ModuleId::of_bytes(&packed));
            Ok(0)
        }
        Command::Call { module, input, verbose, fuel, deadline_ms, memory_bytes, output_bytes, target } => {
            let input = read_input(&input)?;
            let limits: Vec<(&str, u64)> = [
                ("fuel", fuel),
                ("deadline_ms", deadline_ms),
                ("memory_bytes", memory_bytes),
                ("output_bytes", output_bytes),
            ]
            .into_iter()
            .filter_map(|(key, value)| value.map(|value| (key, value)))
            .collect();
            let answer = target.client().call(&module, input, &limits).await?;
            if verbose {
                for (name, value) in answer.headers.iter().filter(|(name, _)| name.as_str().starts_with("x-nebula-")) {
                    eprintln!("{}: {}", &name.as_str()["x-nebula-".len()..], value.to_str().unwrap_or("?"));
                }
            }
            if !answer.status.is_success() {
                eprintln!("error: {}", error_message(answer.status, &answer.body));
                return Ok(1);
            }
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&answer.body)?;
            if stdout.is_terminal() && !answer.body.ends_with(b"\n") {
                writeln!(stdout)?;
            }
            Ok(0)
        }
        Command::Name { name, module, target } => {
            let record = target.client().set_name(&name, &module).await?;
            println!("{name} -> {} (version {})", record["module"].as_str().unwrap_or("?"), record["version"]);
            Ok(0)
        }
        Command::Ls { target } => {
            let modules: Vec<ModuleSummary> = target.client().get_json("/modules").await?;
            println!("{:<64}  {:>10}  {:<9}  NAMES", "MODULE", "BYTES", "STATE");
            for module in modules {
                println!("{}  {:>10}  {:<9}  {}", module.module, module.size, module.state, module.names.join(", "));
                if let Some(manifest) = &module.manifest {
                    println!("    {}", describe_manifest(manifest));
                }
                if let Some(failure) = &module.failure {
                    println!("    failed: {failure}");
                }
            }
            Ok(0)
        }
        Command::Peers { target } => {
            let peers: Vec<PeerSummary> = target.client().get_json("/peers").await?;
            println!("{:<54} {:>9} {:>9} {:>6}  ADDRESSES", "PEER", "STATE", "RTT", "LOAD");
            for peer in peers {
                let rtt = peer.rtt_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2}ms"));
                let state = match (&peer.refused, peer.connected) {
                    (Some(_), _) => "refused",
                    (None, true) => "connected",
                    (None, false) => "gone",
                };
                let load = format!("{}/{}", peer.executing, peer.capacity);
                println!("{:<54} {state:>9} {rtt:>9} {load:>6}  {}", peer.peer, peer.addresses.join(" "));
                if let Some(reason) = &peer.refused {
                    println!("    refused: {reason}");
                }
            }
            Ok(0)
        }
        Command::Status { target } => {
            let client = target.client();
            let status: NodeStatus = client.get_json("/status").await?;
            println!("node        {} ({})", status.node_id, client.base());
            println!("version     {}", status.version);
            println!("uptime      {} s", status.uptime_seconds);
            println!("modules     {}   names {}   compiling {}", status.modules, status.names, status.compiling);
            println!(
                "cache       {} results in memory ({} bytes), {} on disk",
                status.memory_cache_entries, status.memory_cache_bytes, status.stored_results
            );
            println!(
                "calls       {} in flight ({} waiting for a slot), {} at once",
                status.calls_in_flight, status.calls_queued, status.concurrency
            );
            println!("peers       {} connected", status.peers_connected);
            let deploys = match status.deploys_open {
                true => "open: anyone who reaches this node may deploy and re-point names",
                false => "need the admin token",
            };
            println!("deploys     {deploys}");
            for address in &status.listen_addresses {
                println!("listening   {address}");
            }
            Ok(0)
        }
        Command::Footprint { target } => {
            let report: FootprintReport = target.client().get_json("/footprint").await?;
            print!("{}", footprint_table(&report));
            Ok(0)
        }
        Command::Fsck { data, json } => {
            let report = crate::store::check_data_dir(&data);
            match json {
                true => println!("{}", serde_json::to_string_pretty(&report)?),
                false => print!("{}", report.render()),
            }
            Ok(if report.is_consistent() { 0 } else { 1 })
        }
    }
}

/// `nebula footprint`: one row per function; means are per execution here.
pub fn footprint_table(report: &FootprintReport) -> String {
    let mut out = format!(
        "{:<20} {:>7} {:>7} {:>7} {:>10} {:>10} {:>11} {:>9} {:>10} {:>10}  {}\n",
        "FUNCTION",
        "CALLS",
        "EXECS",
        "HITS",
        "CPU/EXEC",
        "WALL/EXEC",
        "FUEL/EXEC",
        "PEAK MEM",
        "µWh/EXEC",
        "µWh/CALL",
        "ENERGY"
    );
    for row in &report.functions {
        let function = match row.names.is_empty() {
            true => row.module.short(),
            false => row.names.join(","),
        };
        out += &format!(
            "{function:<20} {:>7} {:>7} {:>7} {:>10} {:>10} {:>11.0} {:>9} {:>10} {:>10}  {}\n",
            row.calls,
            row.executions,
            row.cache_hits,
            micros(row.mean_cpu_us),
            micros(row.mean_wall_us),
            row.mean_fuel,
            bytes(row.peak_memory_bytes),
            energy(row.energy_uwh_per_execution),
            energy(row.energy_uwh_per_call),
            row.energy_source.as_str(),
        );
    }
    out +=
        &format!("energy: {} at {:.2} W per busy core\n", report.energy.source.as_str(), report.energy.watts_per_core);
    out
}

fn micros(us: f64) -> String {
    match us {
        us if us >= 10_000.0 => format!("{:.1} ms", us / 1e3),
        us => format!("{us:.1} µs"),
    }
}

/// Microwatt-hours, readable from 1e-6 to thousands.
fn energy(uwh: f64) -> String {
    match uwh {
        0.0 => "0".to_owned(),
        uwh if uwh >= 0.01 => format!("{uwh:.3}"),
        uwh => format!("{uwh:.2e}"),
    }
}

fn bytes(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1 << 20) as f64),
        b => format!("{} KiB", b.div_ceil(1024)),
    }
}

fn pack_file(wasm: &[u8], data: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(data).with_context(|| format!("reading {}", data.display()))?;
    crate::data_slot::pack(wasm, &bytes).map_err(|reason| anyhow::anyhow!("packing {}: {reason}", data.display()))
}

fn read_input(words: &[String]) -> anyhow::Result<Vec<u8>> {
    if let [only] = words
        && only == "-"
    {
        let mut input = Vec::new();
        std::io::stdin().read_to_end(&mut input).context("reading stdin")?;
        return Ok(input);
    }
    if words.iter().any(|word| word == "-") {
        bail!("'-' (read stdin) must be the only input argument");
    }
    Ok(words.join(" ").into_bytes())
}

/// One line for `nebula ls`: what a function's manifest gives its calls.
fn describe_manifest(manifest: &nebula_protocol::manifest::Manifest) -> String {
    let mut line = format!("module {}", manifest.module.short());
    if !manifest.args.is_empty() {
        line += &format!("  args {:?}", manifest.args);
    }
    if !manifest.env.is_empty() {
        let env: Vec<String> = manifest.env.iter().map(|(name, value)| format!("{name}={value}")).collect();
        line += &format!("  env {env:?}");
    }
    if !manifest.files.is_empty() {
        line += &format!("  files {} ({} bytes) at {}", manifest.files.len(), manifest.file_bytes(), manifest.mount);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_args(args: &[&str]) -> NodeArgs {
        let cli = Cli::try_parse_from([&["nebula", "node"], args].concat()).unwrap();
        let Command::Node(args) = cli.command else { unreachable!() };
        *args
    }

    fn node_config(args: &[&str]) -> crate::NodeConfig {
        node_args(args).settings().unwrap().config().unwrap()
    }

    #[test]
    fn explicit_ceilings_bound_what_callers_may_ask_for() {
        let config = node_config(&["--memory-bytes", "1000", "--max-memory-bytes", "4000", "--max-deadline-ms", "500"]);
        assert_eq!((config.default_limits.memory_bytes, config.max_limits.memory_bytes), (1000, 4000));
        assert_eq!((config.default_limits.deadline_ms, config.max_limits.deadline_ms), (500, 500));
        // Without them, a default above the built-in ceiling raises it.
        let config = node_config(&["--memory-bytes", "4294967296"]);
        assert_eq!(config.max_limits.memory_bytes, 4 << 30);
        let config = node_config(&["--max-output-bytes", "1024", "--max-fuel", "5000"]);
        assert_eq!((config.default_limits.output_bytes, config.max_limits.output_bytes), (1024, 1024));
        assert_eq!((config.default_limits.fuel, config.max_limits.fuel), (5000, 5000));
    }

    #[test]
    fn an_api_open_to_the_network_needs_a_token_or_an_explicit_opt_out() {
        let args = |extra: &[&str]| node_args(extra).flags;
        let token = Some("a-token-of-sixteen-chars");
        assert!(args(&[]).check_protected_mode(None).is_ok(), "loopback by default");
        assert!(args(&["--http", "[::1]:8080"]).check_protected_mode(None).is_ok());
        let refused = args(&["--http", "0.0.0.0:8080"]).check_protected_mode(None).unwrap_err().to_string();
        assert!(refused.contains("--token-file") && refused.contains("--allow-unauthenticated-deploys"), "{refused}");
        assert!(args(&["--http", "10.0.0.5:8080"]).check_protected_mode(None).is_err());
        assert!(args(&["--http", "0.0.0.0:8080"]).check_protected_mode(token).is_ok());
        let opted_out = args(&["--http", "0.0.0.0:8080", "--allow-unauthenticated-deploys"]);
        assert!(opted_out.check_protected_mode(None).is_ok());
    }

    #[test]
    fn mesh_trust_and_flood_settings_reach_the_node() {
        let config = node_config(&["--verify-remote", "2", "--peer-message-budget", "50"]);
        assert_eq!(config.verify_remote, 2);
        assert_eq!(config.mesh.unwrap().peer_message_budget, 50);
        let defaults = node_config(&[]);
        assert_eq!(defaults.verify_remote, 0);
        assert_eq!(defaults.mesh.unwrap().peer_message_budget, 1000);
        assert!(node_config(&["--standalone"]).mesh.is_none());
    }
}
