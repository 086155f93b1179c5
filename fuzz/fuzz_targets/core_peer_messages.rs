//! A fresh mesh core fed what hostile peers and callers can make happen:
//! no panic, one reply per caller, nothing left running once all is answered.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| nebula_protocol::fuzzing::core_peer_messages(data));
