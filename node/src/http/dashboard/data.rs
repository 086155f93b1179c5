//! Everything the dashboard shows, gathered from the node in one place, so
//! new figures (such as a module's measured footprint) are added here only.

use nebula_protocol::{ModuleId, NameRecord};

use crate::footprint::FunctionFootprint;
use crate::service::{ActivitySnapshot, ModuleCounters, Node, NodeStatus, PeerSummary};

pub struct DashboardData {
    pub status: NodeStatus,
    pub peers: Vec<PeerSummary>,
    /// Most called first.
    pub modules: Vec<ModuleRow>,
    /// Sorted by name.
    pub names: Vec<NameRecord>,
    pub activity: ActivitySnapshot,
    /// What each function's executions here cost (CPU, memory, energy), most called first.
    pub footprint: Vec<FunctionFootprint>,
}

pub struct ModuleRow {
    pub module: ModuleId,
    pub size: u64,
    pub names: Vec<String>,
    pub content_type: Option<&'static str>,
    /// `ready`, `compiling`, `failed` or `stored`.
    pub state: String,
    /// Calls, hits, executions, fuel and run time on this node since it started.
    pub counters: ModuleCounters,
}

/// Reads the node's state once per page.
pub async fn gather(node: &Node) -> DashboardData {
    let activity = node.activity();
    let summaries = node.modules().await;
    // A module's declared type may have to be read from its blob.
    let reader = node.clone();
    let held: Vec<ModuleId> = summaries.iter().map(|summary| summary.module).collect();
    let content_types = tokio::task::spawn_blocking(move || {
        held.iter().map(|module| reader.content_type(module).flatten()).collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut modules: Vec<ModuleRow> = summaries
        .into_iter()
        .zip(content_types.into_iter().chain(std::iter::repeat(None)))
        .map(|(summary, content_type)| {
            let mut names = summary.names;
            names.sort();
            ModuleRow {
                content_type,
                counters: activity.modules.get(&summary.module).copied().unwrap_or_default(),
                module: summary.module,
                size: summary.size,
                state: summary.state,
                names,
            }
        })
        .collect();
    modules.sort_by(|a, b| b.counters.calls.cmp(&a.counters.calls).then_with(|| a.names.cmp(&b.names)));
    let mut names = node.names();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    let mut peers = node.peers().await;
    peers.sort_by(|a, b| b.connected.cmp(&a.connected).then_with(|| a.peer.cmp(&b.peer)));
    DashboardData { status: node.status().await, peers, modules, names, activity, footprint: node.footprint() }
}
