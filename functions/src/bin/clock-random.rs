//! Reads the wall clock, the monotonic clock, random bytes and a HashMap's
//! iteration order: on Nebula all of them are fixed by the call, so the
//! output is the same on every node.
use std::collections::HashMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let input = nebula_functions::input_text();
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let start = Instant::now();
    let map: HashMap<usize, char> = input.chars().enumerate().collect();
    let order: String = map.values().collect();
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).expect("random_get is provided");
    nebula_functions::print(format!(
        "wall={since_epoch} elapsed={:?} order={order} random={}",
        start.elapsed(),
        hex(&random)
    ));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
