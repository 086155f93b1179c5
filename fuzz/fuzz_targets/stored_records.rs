//! Raw bytes as the node's stored records (postcard of an ExecutionRecord or a
//! NameRecord) and as a whole request-response frame (length + message).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nebula_protocol::fuzzing::stored_records(data));
