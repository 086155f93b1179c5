//! Raw bytes as a gossip message: never a panic; what decodes round-trips.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nebula_protocol::fuzzing::wire_gossip(data));
