//! Any line on either side of the worker protocol: a task line as the worker
//! reads it, an event line as the node reads it. Decoded or refused, never a
//! panic; an event that decodes survives a round trip.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fedwasm::fuzzing::worker_protocol(data));
