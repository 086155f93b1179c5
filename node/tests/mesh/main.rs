//! Several real nodes in one process, talking libp2p over loopback.

mod big_modules;
mod browser;
#[path = "../single_node/common.rs"]
#[allow(dead_code)]
mod common;
mod flood;
mod forged;
mod harness;
mod hostile;
#[path = "../single_node/node_process.rs"]
#[allow(dead_code)]
mod node_process;
mod partition;
mod private;
mod processes;
mod propagation;
mod rogue;
mod versions;
