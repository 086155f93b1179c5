//! How a node is set up: where it keeps data, where it listens, its limits.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use nebula_protocol::Limits;

use crate::mesh::MeshSettings;
use crate::runtime::RuntimeSettings;

/// Real WASI builds of big tools (a CPython, an HDL synthesis suite) are
/// 65–100 MB; uploads stream to disk, so the limit is about disk, not memory.
pub const DEFAULT_MAX_MODULE_BYTES: u64 = 512 << 20;

#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub data_dir: PathBuf,
    pub http_addr: SocketAddr,
    /// Limits of a call that asks for none.
    pub default_limits: Limits,
    /// The most a caller may ask for.
    pub max_limits: Limits,
    /// Calls executing at once; more wait in a queue. Also sizes the wasm instance pool.
    pub concurrency: u32,
    /// Calls of one module that may wait for a slot; more are refused as
    /// `overloaded` with a retry hint (`--queue-per-module`).
    pub queue_per_module: u32,
    /// While a quick call ran this recently, slow modules cannot take the
    /// slots kept for quick ones (see `service/fair_slots.rs`).
    pub quick_traffic_window: Duration,
    /// A module whose calls hold a slot this long on average runs in the
    /// slow lane (see `service/fair_slots.rs`).
    pub slow_hold: Duration,
    /// Bytes of results kept in memory in front of the on-disk cache.
    pub memory_cache_bytes: u64,
    /// Bytes of results kept on disk; the oldest go first. Each also takes
    /// about 30 bytes of memory (where it lies on disk).
    pub result_disk_bytes: u64,
    /// The largest module a deploy may upload (`--max-module-bytes`).
    pub max_module_bytes: u64,
    /// Where modules compile and how much compiled code stays loaded.
    pub runtime: RuntimeSettings,
    /// Announced modules are fetched ahead of need until they take this many bytes.
    pub replicate_budget_bytes: u64,
    /// A call needing a module at most this big fetches it; a bigger one is forwarded.
    pub fetch_for_call_max_bytes: u64,
    /// The members that keep each result (`MeshConfig::owners`); 0: none.
    pub owners: u8,
    /// Calls of a module that runs here in less than this many µs run here
    /// (`MeshConfig::run_here_below_us`); 0: owners are always asked.
    pub run_here_below_us: u64,
    /// Where modules live (`MeshConfig::module_owners`): 0 everywhere, k on
    /// their k owners and fetched where calls need them.
    pub module_owners: u8,
    /// A peer's result is trusted only once this many other executors agree
    /// (0: a correctly signed result is trusted as it is).
    pub verify_remote: u8,
    /// Power of one busy core, for energy estimates where RAPL cannot be read.
    pub watts_per_core: f64,
    /// Peer-to-peer networking; `None` runs a node on its own.
    pub mesh: Option<MeshSettings>,
    /// When set, deploys and name changes over HTTP need `Authorization: Bearer TOKEN`.
    pub admin_token: Option<String>,
}

impl NodeConfig {
    pub fn new(data_dir: impl Into<PathBuf>, http_addr: SocketAddr) -> Self {
        let default_limits = Limits::default();
        Self {
            data_dir: data_dir.into(),
            http_addr,
            default_limits,
            max_limits: Limits {
                fuel: default_limits.fuel * 10,
                deadline_ms: 60_000,
                memory_bytes: 1 << 30,
                input_bytes: default_limits.input_bytes,
                output_bytes: 64 << 20,
            },
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get() as u32).max(2),
            queue_per_module: 256,
            quick_traffic_window: crate::service::QUICK_TRAFFIC_WINDOW,
            slow_hold: crate::service::SLOW_HOLD,
            memory_cache_bytes: 64 << 20,
            result_disk_bytes: 1 << 30,
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
            runtime: RuntimeSettings::default(),
            replicate_budget_bytes: 1 << 30,
            fetch_for_call_max_bytes: 16 << 20,
            owners: nebula_protocol::MeshConfig::default().owners,
            run_here_below_us: nebula_protocol::MeshConfig::default().run_here_below_us,
            module_owners: nebula_protocol::MeshConfig::default().module_owners,
            verify_remote: 0,
            watts_per_core: crate::footprint::DEFAULT_WATTS_PER_CORE,
            mesh: None,
            admin_token: None,
        }
    }
}
