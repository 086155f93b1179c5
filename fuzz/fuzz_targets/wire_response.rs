//! Raw bytes as a request-response response: never a panic; what decodes round-trips.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nebula_protocol::fuzzing::wire_response(data));
