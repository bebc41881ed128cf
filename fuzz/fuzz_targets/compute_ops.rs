//! Any bytes as a plan's calls to the `compute` import (uploads, operations
//! with arbitrary dimensions on live, dropped and forged handles, reads and
//! drops): each succeeds, is refused, or stops the plan; the host never
//! panics and never holds more than the plan's memory budget.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| fedwasm::fuzzing::compute_ops(data));
