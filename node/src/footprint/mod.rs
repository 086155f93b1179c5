//! What calls cost: CPU time, wall time, fuel, peak memory and energy of each
//! execution, and their totals per function.
//!
//! Only executions cost anything worth measuring: a cache hit runs nothing,
//! and a result computed elsewhere was paid for by another node. So a call's
//! answer carries the footprint of the execution that produced it when that
//! execution ran here (a joined call shares it), and says `cached` or
//! `elsewhere` otherwise.

mod cpu;
mod energy;
mod ledger;

use serde::{Deserialize, Serialize};

pub use cpu::{thread_cpu_time, with_cpu_time};
pub use energy::{DEFAULT_WATTS_PER_CORE, EnergyMeter, EnergyModel, EnergySource};
pub use ledger::{AnswerKind, FunctionFootprint, Ledger};

/// The cost of one execution on this node.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// CPU time of the executing thread (instantiate and run).
    pub cpu_ns: u64,
    /// Wall time of the same span.
    pub wall_ns: u64,
    pub fuel: u64,
    /// The largest linear memory the guest had.
    pub peak_memory_bytes: u64,
    /// Energy in microwatt-hours; see [`EnergySource`] for how it was obtained.
    pub energy_uwh: f64,
    pub energy_source: EnergySource,
}

/// How a call's answer relates to this node's executions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CallFootprint {
    /// The answer came from an execution on this node.
    Executed(Footprint),
    /// Answered from a stored result: nothing ran for this call.
    Cached,
    /// Another node executed it (a forward, or a result fetched from a peer).
    Elsewhere,
    /// The call never reached a module (bad reference, input too large, …).
    None,
}
