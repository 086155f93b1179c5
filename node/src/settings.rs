//! A node's settings, in layers: built-in defaults, then a TOML file
//! (`--config`), then `NEBULA_<KEY>` environment variables, then flags. One
//! struct is the flags, the file's keys and the variables' names at once
//! (`--max-fuel` is `max_fuel` in the file and `NEBULA_MAX_FUEL`), so no
//! setting can exist in one layer and be missing from another.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, CommandFactory};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use libp2p::Multiaddr;
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::NodeConfig;

/// More owners than this would send every result to most of a lab mesh.
const MAX_OWNERS: u8 = 16;
use crate::mesh::MeshSettings;

pub const DEFAULT_DATA_DIR: &str = "./nebula-data";
pub const DEFAULT_HTTP: &str = "127.0.0.1:8080";
const DEFAULT_LISTEN: [&str; 2] = ["/ip4/0.0.0.0/tcp/0", "/ip4/0.0.0.0/udp/0/quic-v1"];
pub const ENV_PREFIX: &str = "NEBULA_";

/// Every setting of `nebula node`. `None` (or `false`) means "not set in
/// this layer"; [`NodeSettings::config`] applies the defaults.
#[derive(Args, Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// Data directory (modules, names, cached results, node identity)
    /// [default: ./nebula-data].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<PathBuf>,
    /// Address of the HTTP API [default: 127.0.0.1:8080].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<SocketAddr>,
    /// Calls executing at once (default: number of CPUs, at least 2).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Calls of one module that may wait for an execution slot; more are
    /// refused with 503 `overloaded` and a Retry-After (default 256).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_per_module: Option<u32>,
    /// Default fuel per call.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Default wall-clock deadline per call, in milliseconds.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Default memory limit per call, in bytes.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// The most memory a caller may ask for per call (`?memory_bytes=`), in
    /// bytes (default 1 GiB): with --concurrency, what bounds the node's memory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
    /// The longest deadline a caller may ask for per call, in milliseconds
    /// (default 60000): how long one call may hold an execution slot.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_deadline_ms: Option<u64>,
    /// The most output a caller may ask for per call (`?output_bytes=`), in
    /// bytes (default 64 MiB): with --max-memory-bytes, the rest of a call's memory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u64>,
    /// The most fuel a caller may ask for per call (`?fuel=`; default ten
    /// times the default fuel).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_fuel: Option<u64>,
    /// Bytes of results kept in memory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_cache_bytes: Option<u64>,
    /// Bytes of results kept on disk (default 1 GiB); beyond it the oldest
    /// go, 64 MiB at a time. Each stored result also takes about 30 bytes
    /// of memory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_disk_bytes: Option<u64>,
    /// The largest module a deploy may upload, in bytes (default 512 MiB).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_module_bytes: Option<u64>,
    /// Compiled code kept loaded in memory, in bytes (default 1 GiB); the
    /// least recently called modules beyond it are reloaded from disk.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded_module_bytes: Option<u64>,
    /// Compile modules on a thread of the node instead of a child process
    /// (for measurements: part of what the compile freed stays with the
    /// node, ~45 MiB after a 12 MiB module).
    #[arg(long, hide = true)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub compile_in_process: bool,
    /// Reserve address space for each wasm linear memory only up to
    /// max_memory_bytes, not wasmtime's 4 GiB, so that the instance pool fits
    /// where address space is scarce (valgrind, `ulimit -v`). Guests see no
    /// difference; compiled code checks bounds explicitly, so calls run a
    /// little slower, and it is cached apart from the default's.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub compact_memory_reservation: bool,
    /// Peer-to-peer listen address (repeatable)
    /// [default: /ip4/0.0.0.0/tcp/0 /ip4/0.0.0.0/udp/0/quic-v1].
    #[arg(long = "listen")]
    #[serde(default, deserialize_with = "addresses", skip_serializing_if = "Option::is_none")]
    pub listen: Option<Vec<Multiaddr>>,
    /// A peer to join, e.g. /ip4/10.0.0.5/tcp/4001/p2p/12D3Koo… (repeatable;
    /// `peers` in the file, a list).
    #[arg(long = "peer")]
    #[serde(default, deserialize_with = "addresses", skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<Multiaddr>>,
    /// Turn off mDNS discovery on the local network.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_mdns: bool,
    /// File holding the admin token: deploys and name changes over HTTP must
    /// then carry it (`Authorization: Bearer TOKEN`). Without this setting the
    /// node reads NEBULA_TOKEN; with neither, anyone who reaches it may deploy.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    /// Start even though the HTTP API listens beyond this machine without an
    /// admin token, so that anyone who can reach it may deploy and re-point
    /// names (for an isolated lab network; a token is the better fix).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_unauthenticated_deploys: bool,
    /// Once the node accepts calls, write a JSON document here (atomically):
    /// peer id, HTTP URL, p2p addresses, version. Wait for this file rather
    /// than for a line in the log.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_file: Option<PathBuf>,
    /// Run alone, without any peer-to-peer networking.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "is_false")]
    pub standalone: bool,
    /// Bytes of announced modules fetched ahead of need (beyond: on demand).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicate_bytes: Option<u64>,
    /// A call needing a module at most this big fetches it; a bigger one is
    /// forwarded to a holder (default 16 MiB; 0 always forwards).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_for_call_bytes: Option<u64>,
    /// How many nodes keep each call's result: its owners, chosen by hashing
    /// over the members; the first computes it (default 3, at most 16; 0: no
    /// owners, each node keeps what it computes). Give every node the same.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owners: Option<u8>,
    /// A call for a module whose last run here took less than this many µs
    /// runs here instead of asking the key's owner, which would cost more
    /// than the run (default 500; 0: always ask the owner).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_here_below_us: Option<u64>,
    /// Where modules live: 0 (default) on every node, fetched ahead of need
    /// (a lab mesh); k: on the k members a module's id hashes to, fetched by
    /// other nodes when a call needs it (a big mesh, where most nodes never
    /// run most modules). At most 16; give every node the same.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module_owners: Option<u8>,
    /// Watts one busy core draws, for energy estimates where RAPL counters
    /// cannot be read (default 10; a Raspberry Pi 4 core is nearer 1.5).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watts_per_core: Option<f64>,
    /// Timers an idle node runs; longer ones cost less idle CPU (README:
    /// "Idle footprint"). Gossipsub heartbeat, in milliseconds (default 1000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gossip_heartbeat_ms: Option<u64>,
    /// Liveness ping of each connection, in seconds (1 to 3600, default 15);
    /// a peer that leaves a ping unanswered for as long is disconnected, so
    /// this is also how fast a partition or a frozen peer is noticed.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ping_interval_s: Option<u64>,
    /// Anti-entropy with each peer, in milliseconds (default 10000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_interval_ms: Option<u64>,
    /// Swarm key file (from `nebula swarm-key`): a private mesh that only
    /// nodes with the same key can join. TCP only; QUIC listen addresses are
    /// dropped.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub swarm_key: Option<PathBuf>,
    /// Trust a result another node computed only once this many other nodes
    /// (or this one) computed the same (default 0: a result correctly signed
    /// by the node that ran it is trusted as it is).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify_remote: Option<u8>,
    /// Messages (gossip and requests together) a peer may send per second,
    /// sustained, twice that in bursts; the excess is dropped unread
    /// (default 1000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_message_budget: Option<u32>,
}

fn is_false(value: &bool) -> bool {
    !value
}

/// Addresses as a TOML list, or as one string of addresses separated by
/// spaces or commas (how they come from an environment variable).
fn addresses<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<Multiaddr>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        Many(Vec<Multiaddr>),
        Joined(String),
    }
    Ok(Some(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::Many(list) => list,
        OneOrMany::Joined(text) => text
            .split([' ', ','])
            .filter(|part| !part.is_empty())
            .map(|part| part.parse().map_err(|error| serde::de::Error::custom(format!("{part}: {error}"))))
            .collect::<Result<_, _>>()?,
    }))
}

/// An explicit ceiling wins, and pulls the default down with it.
fn apply_ceiling(explicit: Option<u64>, ceiling: &mut u64, default: &mut u64) {
    if let Some(value) = explicit {
        *ceiling = value;
        *default = (*default).min(value);
    }
}

/// The keys a file or a `NEBULA_` variable may set: the flags' own ids,
/// each with whether it is a switch (true or false, no value on the command line).
fn keys_and_switches() -> Vec<(String, bool)> {
    #[derive(clap::Parser)]
    struct Probe {
        #[command(flatten)]
        settings: NodeSettings,
    }
    Probe::command()
        .get_arguments()
        .filter(|argument| argument.get_id() != "help")
        .map(|argument| (argument.get_id().to_string(), !argument.get_action().takes_values()))
        .collect()
}

fn keys() -> Vec<String> {
    keys_and_switches().into_iter().map(|(key, _)| key).collect()
}

/// The settings in force: `file` (if any), overridden by `NEBULA_<KEY>`
/// variables, overridden by `flags`.
pub fn layered(file: Option<&Path>, flags: &NodeSettings) -> anyhow::Result<NodeSettings> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading the config file {}", path.display()))?;
        // toml names the line and column of an unknown key or a bad value;
        // figment, layering, would name only the key.
        toml::from_str::<NodeSettings>(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
        figment = figment.merge(Toml::string(&text));
    }
    let keys = keys();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    figment = figment.merge(Env::prefixed(ENV_PREFIX).only(&keys)).merge(Serialized::defaults(flags));
    figment.extract().map_err(|error| anyhow::anyhow!("{}", describe(error)))
}

/// A figment error, with `NEBULA_KEY` named when a variable was at fault.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|error| {
            let key = error.path.join(".");
            let from_env = error.metadata.as_ref().is_some_and(|metadata| metadata.name.contains("environment"));
            match from_env {
                true => format!("{ENV_PREFIX}{}: {}", key.to_uppercase(), error.kind),
                false => format!("{key}: {}", error.kind),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl NodeSettings {
    pub fn data_dir(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.unwrap_or_else(|| DEFAULT_HTTP.parse().expect("a valid default address"))
    }

    /// The admin token from `token_file` or NEBULA_TOKEN, if any; refuses
    /// one short enough to guess.
    pub fn admin_token(&self) -> anyhow::Result<Option<String>> {
        let token = match &self.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("reading the token file {}", path.display()))?
                    .trim()
                    .to_owned(),
            ),
            None => std::env::var("NEBULA_TOKEN").ok().map(|token| token.trim().to_owned()),
        };
        if let Some(token) = &token
            && token.len() < crate::http::MIN_TOKEN_LEN
        {
            bail!("the admin token must be at least {} characters long", crate::http::MIN_TOKEN_LEN);
        }
        Ok(token)
    }

    /// Protected mode (as Redis has it): an API reachable from other machines
    /// without a token would let anyone replace what this node serves, so
    /// the node refuses to start unless that is asked for explicitly.
    pub fn check_protected_mode(&self, token: Option<&str>) -> anyhow::Result<()> {
        let http = self.http_addr();
        if http.ip().is_loopback() || token.is_some() || self.allow_unauthenticated_deploys {
            return Ok(());
        }
        bail!(
            "refusing to start: the HTTP API would listen on {http}, beyond this machine, with no admin token, \
             so anyone who can reach it could deploy modules and re-point names. Set a token \
             (--token-file FILE, or NEBULA_TOKEN; at least {} characters), listen on 127.0.0.1, or, on a \
             network you trust, pass --allow-unauthenticated-deploys",
            crate::http::MIN_TOKEN_LEN
        )
    }

    /// The node's configuration: these settings over the defaults.
    pub fn config(&self) -> anyhow::Result<NodeConfig> {
        let mut config = NodeConfig::new(self.data_dir(), self.http_addr());
        config.verify_remote = self.verify_remote.unwrap_or(0);
        if let Some(concurrency) = self.concurrency {
            config.concurrency = concurrency.max(1);
        }
        if let Some(queue) = self.queue_per_module {
            config.queue_per_module = queue.max(1);
        }
        let limits = &mut config.default_limits;
        limits.fuel = self.fuel.unwrap_or(limits.fuel);
        limits.deadline_ms = self.deadline_ms.unwrap_or(limits.deadline_ms);
        limits.memory_bytes = self.memory_bytes.unwrap_or(limits.memory_bytes);
        // A default above the ceiling would be clamped anyway; raise the ceiling instead.
        let max = &mut config.max_limits;
        max.fuel = max.fuel.max(config.default_limits.fuel);
        max.deadline_ms = max.deadline_ms.max(config.default_limits.deadline_ms);
        max.memory_bytes = max.memory_bytes.max(config.default_limits.memory_bytes);
        let (max, default) = (&mut config.max_limits, &mut config.default_limits);
        apply_ceiling(self.max_memory_bytes, &mut max.memory_bytes, &mut default.memory_bytes);
        apply_ceiling(self.max_deadline_ms, &mut max.deadline_ms, &mut default.deadline_ms);
        apply_ceiling(self.max_output_bytes, &mut max.output_bytes, &mut default.output_bytes);
        apply_ceiling(self.max_fuel, &mut max.fuel, &mut default.fuel);
        if let Some(bytes) = self.memory_cache_bytes {
            config.memory_cache_bytes = bytes;
        }
        if let Some(bytes) = self.result_disk_bytes {
            config.result_disk_bytes = bytes;
        }
        if let Some(bytes) = self.max_module_bytes {
            config.max_module_bytes = bytes;
        }
        if let Some(bytes) = self.loaded_module_bytes {
            config.runtime.loaded_module_bytes = bytes;
        }
        config.runtime.compact_memory_reservation = self.compact_memory_reservation;
        if !self.compile_in_process {
            // This very executable compiles, as `nebula compile-module`.
            if let Ok(program) = std::env::current_exe() {
                config.runtime.compile_worker = crate::runtime::CompileWorker::Process(program);
            }
        }
        if let Some(bytes) = self.replicate_bytes {
            config.replicate_budget_bytes = bytes;
        }
        if let Some(bytes) = self.fetch_for_call_bytes {
            config.fetch_for_call_max_bytes = bytes;
        }
        if let Some(owners) = self.owners {
            if owners > MAX_OWNERS {
                bail!("owners must be between 0 and {MAX_OWNERS}, not {owners}");
            }
            config.owners = owners;
        }
        if let Some(micros) = self.run_here_below_us {
            config.run_here_below_us = micros;
        }
        if let Some(owners) = self.module_owners {
            if owners > MAX_OWNERS {
                bail!("module_owners must be between 0 and {MAX_OWNERS}, not {owners}");
            }
            config.module_owners = owners;
        }
        if let Some(watts) = self.watts_per_core {
            if !(watts.is_finite() && watts > 0.0) {
                bail!("watts_per_core must be a positive number of watts, not {watts}");
            }
            config.watts_per_core = watts;
        }
        // Checked even when standalone: a bad setting is refused, not ignored.
        let mesh = self.mesh_settings()?;
        if !self.standalone {
            config.mesh = Some(mesh);
        }
        Ok(config)
    }

    fn mesh_settings(&self) -> anyhow::Result<MeshSettings> {
        let defaults = MeshSettings::default();
        let millis = |value: Option<u64>, default: Duration| value.map_or(default, Duration::from_millis);
        if let Some(seconds) = self.ping_interval_s
            && !(1..=3600).contains(&seconds)
        {
            bail!("ping_interval_s must be between 1 and 3600 seconds, not {seconds}");
        }
        let swarm_key = self.swarm_key.as_deref().map(crate::mesh::read_swarm_key).transpose()?;
        let listen = match &self.listen {
            Some(listen) => listen.clone(),
            None => DEFAULT_LISTEN.iter().map(|address| address.parse().expect("a valid default address")).collect(),
        };
        Ok(MeshSettings {
            listen,
            swarm_key,
            bootstrap: self.peers.clone().unwrap_or_default(),
            mdns: !self.no_mdns,
            gossip_heartbeat: millis(self.gossip_heartbeat_ms, defaults.gossip_heartbeat),
            ping_interval: self.ping_interval_s.map_or(defaults.ping_interval, Duration::from_secs),
            sync_interval: millis(self.sync_interval_ms, defaults.sync_interval),
            peer_message_budget: self.peer_message_budget.unwrap_or(defaults.peer_message_budget),
            ..defaults
        })
    }

    /// Every setting, each with the value in force (`nebula config show`):
    /// as a file, it configures a node exactly as these settings do.
    pub fn effective(&self) -> anyhow::Result<NodeSettings> {
        let config = self.config()?;
        let mesh = match config.mesh.clone() {
            Some(mesh) => mesh,
            None => self.mesh_settings()?,
        };
        Ok(NodeSettings {
            data: Some(config.data_dir.clone()),
            http: Some(config.http_addr),
            concurrency: Some(config.concurrency),
            queue_per_module: Some(config.queue_per_module),
            fuel: Some(config.default_limits.fuel),
            deadline_ms: Some(config.default_limits.deadline_ms),
            memory_bytes: Some(config.default_limits.memory_bytes),
            max_memory_bytes: Some(config.max_limits.memory_bytes),
            max_deadline_ms: Some(config.max_limits.deadline_ms),
            max_output_bytes: Some(config.max_limits.output_bytes),
            max_fuel: Some(config.max_limits.fuel),
            memory_cache_bytes: Some(config.memory_cache_bytes),
            result_disk_bytes: Some(config.result_disk_bytes),
            max_module_bytes: Some(config.max_module_bytes),
            loaded_module_bytes: Some(config.runtime.loaded_module_bytes),
            compile_in_process: self.compile_in_process,
            compact_memory_reservation: config.runtime.compact_memory_reservation,
            listen: Some(mesh.listen),
            peers: Some(mesh.bootstrap),
            no_mdns: !mesh.mdns,
            token_file: self.token_file.clone(),
            allow_unauthenticated_deploys: self.allow_unauthenticated_deploys,
            ready_file: self.ready_file.clone(),
            standalone: self.standalone,
            replicate_bytes: Some(config.replicate_budget_bytes),
            fetch_for_call_bytes: Some(config.fetch_for_call_max_bytes),
            owners: Some(config.owners),
            run_here_below_us: Some(config.run_here_below_us),
            module_owners: Some(config.module_owners),
            watts_per_core: Some(config.watts_per_core),
            gossip_heartbeat_ms: Some(mesh.gossip_heartbeat.as_millis() as u64),
            ping_interval_s: Some(mesh.ping_interval.as_secs()),
            sync_interval_ms: Some(mesh.sync_interval.as_millis() as u64),
            swarm_key: self.swarm_key.clone(),
            verify_remote: Some(config.verify_remote),
            peer_message_budget: Some(mesh.peer_message_budget),
        })
    }

    /// These settings as a TOML file.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("settings are plain values")
    }

    /// As [`Self::to_toml`], with the switches that are off and the paths
    /// that are not set written out too, so that every key shows.
    pub fn to_toml_every_key(&self) -> String {
        let mut text = self.to_toml();
        let present: toml::Table = toml::from_str(&text).expect("our own TOML reads back");
        for (key, switch) in keys_and_switches() {
            match (present.contains_key(&key), switch) {
                (true, _) => {}
                (false, true) => text += &format!("{key} = false\n"),
                (false, false) => text += &format!("# {key} is not set\n"),
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../nebula.example.toml");

    fn from_file(text: &str) -> anyhow::Result<NodeSettings> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nebula.toml");
        std::fs::write(&path, text).unwrap();
        layered(Some(&path), &NodeSettings::default())
    }

    #[test]
    fn the_example_file_names_every_key_and_sets_the_defaults() {
        for key in keys() {
            let set = EXAMPLE.lines().any(|line| line.trim_start_matches("# ").starts_with(&format!("{key} = ")));
            assert!(set, "nebula.example.toml does not mention `{key}`");
        }
        let example = from_file(EXAMPLE).unwrap().config().unwrap();
        let defaults = NodeSettings::default().config().unwrap();
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nebula.toml");
        std::fs::write(&path, "concurrency = 3\nqueue_per_module = 7\npeers = [\"/ip4/10.0.0.5/tcp/4001\"]\n").unwrap();
        let flags = NodeSettings { concurrency: Some(5), standalone: true, ..NodeSettings::default() };
        let settings = layered(Some(&path), &flags).unwrap();
        assert_eq!((settings.concurrency, settings.queue_per_module, settings.standalone), (Some(5), Some(7), true));
        assert_eq!(settings.peers.unwrap(), vec!["/ip4/10.0.0.5/tcp/4001".parse::<Multiaddr>().unwrap()]);
    }

    #[test]
    fn a_bad_file_is_refused_with_its_line() {
        let unknown = from_file("concurrency = 3\nconcurency = 4\n").unwrap_err().to_string();
        assert!(unknown.contains("line 2") && unknown.contains("concurency"), "{unknown}");
        let bad_value = from_file("http = \"127.0.0.1:8080\"\n\nconcurrency = \"many\"\n").unwrap_err().to_string();
        assert!(bad_value.contains("line 3") && bad_value.contains("concurrency"), "{bad_value}");
        let bad_address = from_file("peers = [\"not an address\"]\n").unwrap_err().to_string();
        assert!(bad_address.contains("line 1") && bad_address.contains("peers"), "{bad_address}");
        let out_of_range = from_file("ping_interval_s = 0\n").unwrap().config().unwrap_err().to_string();
        assert!(out_of_range.contains("ping_interval_s"), "{out_of_range}");
        let too_many_owners = from_file("owners = 17\n").unwrap().config().unwrap_err().to_string();
        assert!(too_many_owners.contains("owners must be between 0 and 16"), "{too_many_owners}");
        assert_eq!(from_file("owners = 0\n").unwrap().config().unwrap().owners, 0);
        let too_many = from_file("module_owners = 17\n").unwrap().config().unwrap_err().to_string();
        assert!(too_many.contains("module_owners must be between 0 and 16"), "{too_many}");
        assert_eq!(from_file("module_owners = 3\n").unwrap().config().unwrap().module_owners, 3);
        let missing = layered(Some(Path::new("/nonexistent/nebula.toml")), &NodeSettings::default());
        assert!(missing.unwrap_err().to_string().contains("/nonexistent/nebula.toml"));
    }

    #[test]
    fn the_effective_settings_configure_a_node_the_same_way() {
        let settings = from_file("concurrency = 3\nmax_fuel = 5000\nno_mdns = true\nping_interval_s = 4\n").unwrap();
        let shown = settings.effective().unwrap().to_toml_every_key();
        for key in keys() {
            assert!(shown.contains(&format!("{key} = ")) || shown.contains(&format!("# {key} is not set")), "{shown}");
        }
        assert!(shown.contains("max_fuel = 5000") && shown.contains("\nfuel = 5000"), "{shown}");
        let again = from_file(&shown).unwrap();
        assert_eq!(format!("{:?}", again.config().unwrap()), format!("{:?}", settings.config().unwrap()));
    }
}
