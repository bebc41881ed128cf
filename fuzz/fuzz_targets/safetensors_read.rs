//! Any bytes as a parameter file: decoded within a 64 MiB budget or refused,
//! never a panic nor an allocation past the budget.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fedwasm::fuzzing::safetensors_read(data));
