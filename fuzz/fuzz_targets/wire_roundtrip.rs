//! Any well-formed message encodes and decodes back to itself (also framed);
//! its truncations and extensions are refused.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nebula_protocol::fuzzing::wire_roundtrip(data));
