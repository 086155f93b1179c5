//! A node's mesh settings. Node and simulator use the same defaults, so their
//! figures (convergence, timeouts) are comparable.

use crate::limits::Limits;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfig {
    /// Calls this node executes at once; beyond it, calls may be forwarded.
    pub capacity: u32,
    /// The most a forwarded call may ask of this node (the caller's limits
    /// come along, clamped to these).
    pub max_limits: Limits,
    /// The largest module this node stores; bigger fetched bytes are refused.
    pub max_module_bytes: u64,
    /// Announced modules are fetched ahead of need until they take this much.
    pub replicate_budget_bytes: u64,
    /// A call needing a module at most this big fetches it; a bigger one is forwarded.
    pub fetch_for_call_max_bytes: u64,
    /// Where modules live. 0: everywhere, fetched ahead of need within
    /// `replicate_budget_bytes` (a deploy is announced to the whole mesh and
    /// every replica tells its neighbours): right for a lab-sized mesh.
    /// k > 0: on the module id's k owners (rendezvous hashing, as for
    /// results), told of it by the node it was deployed at; every other node
    /// fetches it from them when a call needs it and keeps it. A mesh of
    /// thousands of nodes, most of which never run most modules, needs this:
    /// replicating everywhere costs every node every module, and N² tells.
    pub module_owners: u8,
    /// Owners of each call's result (see `owners.rs`): the members that store
    /// it, the first of them the one that computes it. 0: results have no
    /// owners, and each node keeps what it computes or is answered with.
    pub owners: u8,
    /// A call for a module held here whose last run here loaded and ran in
    /// less than this many µs runs here instead of asking the key's owner,
    /// and its result stays here (stored if this node owns it, else in the
    /// near cache): asking costs more than running it (a forward on loopback
    /// measured ~0.6 ms of CPU over both nodes and ~0.4 ms of latency;
    /// `hash` runs in ~0.05 ms), and so would each owner's taking in the
    /// result. 0: owners are always asked and always get results.
    pub run_here_below_us: u64,
    /// Results to owners wait at most this long to travel in one batch.
    pub handoff_interval_ms: u64,
    /// An owner that has not answered a call within this long may be cut
    /// off (a partition is only noticed when pings fail): the call then also
    /// runs here, if the module is held, and the first answer wins.
    pub owner_patience_ms: u64,
    /// An owner whose answer to a forwarded call took this much longer
    /// than the work it reports is asked after the key's other owners for
    /// `slow_owner_for_ms` (see `slow_owners.rs`).
    pub slow_owner_ms: u64,
    pub slow_owner_for_ms: u64,
    /// A forwarded call is never forwarded more than this many times.
    pub max_hops: u8,
    /// Anti-entropy with each connected peer.
    pub sync_interval_ms: u64,
    /// Load changes are told to neighbours at most this often.
    pub load_interval_ms: u64,
    /// How long a peer may take to answer a request (a result, a sync, a tell).
    pub request_timeout_ms: u64,
    /// A forwarded call may take its own deadline plus this.
    pub forward_margin_ms: u64,
    /// A slice of a module (see `wire::SLICE_BYTES`) may take
    /// `request_timeout_ms` plus the time to move the slices in flight at this rate.
    pub min_transfer_bytes_per_s: u64,
    /// Slices of one module asked of its holder at once: enough to keep a
    /// link busy over a round trip, few enough to bound the memory a
    /// transfer holds (a slice each).
    pub slices_in_flight: u32,
    /// The latest results held here, handed to peers that connect and own them.
    pub recent_results_len: usize,
    /// A result from a peer is trusted only once this many other executors
    /// (other peers, or this node) produced the same outcome. 0 trusts a
    /// peer's (signed) result as it is.
    pub verify_remote: u8,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            capacity: 2,
            max_limits: Limits::default(),
            max_module_bytes: 64 << 20,
            replicate_budget_bytes: 1 << 30,
            fetch_for_call_max_bytes: 16 << 20,
            module_owners: 0,
            owners: 3,
            run_here_below_us: 500,
            handoff_interval_ms: 100,
            owner_patience_ms: 500,
            slow_owner_ms: 100,
            slow_owner_for_ms: 30_000,
            max_hops: 2,
            sync_interval_ms: 10_000,
            load_interval_ms: 1_000,
            request_timeout_ms: 10_000,
            forward_margin_ms: 5_000,
            min_transfer_bytes_per_s: 1 << 20,
            slices_in_flight: 4,
            recent_results_len: 10_000,
            verify_remote: 0,
        }
    }
}

impl MeshConfig {
    /// How long a peer may take to answer one slice request: the slices in
    /// flight share the link, so each may wait for all of them.
    pub(super) fn slice_timeout_ms(&self) -> u64 {
        let in_flight = crate::wire::SLICE_BYTES.saturating_mul(u64::from(self.slices_in_flight.max(1)));
        let transfer = in_flight.saturating_mul(1000) / self.min_transfer_bytes_per_s.max(1);
        self.request_timeout_ms.saturating_add(transfer)
    }

    /// How long a forwarded call with these limits may take.
    pub(super) fn forward_timeout_ms(&self, limits: &Limits) -> u64 {
        limits.deadline_ms.saturating_add(self.forward_margin_ms)
    }
}
