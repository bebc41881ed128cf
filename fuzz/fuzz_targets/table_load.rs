//! Any bytes as a node operator's CSV or NPY file: a table or an error that
//! names the problem, never a panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fedwasm::fuzzing::table_load(data));
