//! The fuzz targets of `fuzz/` replayed on their corpus (seeds, and every
//! input a fuzzer ever crashed on, kept as a regression), plus seeded
//! mutations of each: a short, deterministic run of the same checks in every
//! `cargo test`. The long runs use `cargo fuzz run <target>` (README).

use std::path::Path;

use crate::support::root;

/// Every file of `fuzz/corpus/<target>`, and `count` mutations of each.
fn replay(target: &str, check: fn(&[u8]), count: usize) {
    let dir = root().join("fuzz/corpus").join(target);
    let mut inputs: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
    inputs.sort();
    // xorshift: the same mutations on every run.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for input in &inputs {
        check(input);
        for _ in 0..count {
            let mut mutated = input.clone();
            match next() % 4 {
                0 if !mutated.is_empty() => {
                    let at = (next() as usize) % mutated.len();
                    mutated[at] ^= 1 << (next() % 8);
                }
                1 => mutated.truncate((next() as usize) % (input.len() + 1)),
                2 if !mutated.is_empty() => {
                    let at = (next() as usize) % mutated.len();
                    mutated[at] = [b'"', b'9', b'-', 0, 0xff, b'e', b']'][(next() % 7) as usize];
                }
                _ => {
                    let at = (next() as usize) % (mutated.len() + 1);
                    let repeat = mutated[..at.min(16)].to_vec();
                    mutated.splice(at..at, repeat);
                }
            }
            check(&mutated);
        }
    }
}

#[test]
fn fuzz_targets_hold_on_their_corpus_and_its_mutations() {
    assert!(Path::new(&root().join("fuzz/Cargo.toml")).is_file());
    replay("wire_decode", fedwasm::fuzzing::wire_decode, 300);
    replay("safetensors_read", fedwasm::fuzzing::safetensors_read, 300);
    replay("table_load", fedwasm::fuzzing::table_load, 300);
    replay("worker_protocol", fedwasm::fuzzing::worker_protocol, 300);
    replay("compute_ops", fedwasm::fuzzing::compute_ops, 300);
}
