//! What the node parses itself behind the HTTP API: names, module references
//! (name, hash, prefix), name publishing and limit overrides.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nebula_protocol::fuzzing::http_input(data));
