//! Any bytes from the broker: decoded or refused, never a panic; what decodes
//! encodes to bytes that decode to the same message.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fedwasm::fuzzing::wire_decode(data));
