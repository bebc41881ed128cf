//! What the fuzz targets in `fuzz/` check, one function per target, so that
//! `cargo fuzz` and the corpus replay in `cargo test` run the same code. Each
//! takes arbitrary bytes, as they would arrive from a broker, a repository, a
//! plan's worker or an operator's file, and panics only when a promise is
//! broken: never on bad input itself.

use std::path::Path;

/// Bytes from the broker: as a signed envelope, opened or refused (with a
/// roster that trusts on first use, so a valid signature reaches the body);
/// as a message body, decoded or refused. What opens or decodes encodes to
/// bytes that decode to the same message.
pub fn wire_decode(data: &[u8]) {
    use crate::identity::{KeyRing, Roster};
    let keyring = KeyRing::in_memory(Roster {
        trust_on_first_use: true,
        ..Roster::default()
    });
    let opened = crate::wire::open(data, &keyring).ok().map(|o| o.message);
    for message in opened.into_iter().chain(crate::wire::decode(data).ok()) {
        let again = crate::wire::decode(&crate::wire::encode(&message))
            .expect("an encoded message decodes");
        assert_eq!(format!("{again:?}"), format!("{message:?}"));
    }
}

/// Bytes as a parameter file: decoded within a 64 MiB budget or refused;
/// what decodes encodes back.
pub fn safetensors_read(data: &[u8]) {
    if let Ok((tensors, metadata)) = crate::tensors::from_bytes_within(data, 64 << 20) {
        crate::tensors::to_bytes(&tensors, &metadata).expect("decoded tensors encode");
    }
}

/// Bytes as an operator's CSV or NPY file: a table, or an error naming the problem.
pub fn table_load(data: &[u8]) {
    let name = Path::new("fuzzed");
    if let Ok(table) = crate::dataset::Table::from_npy_bytes(data, name) {
        assert!(table.rows() > 0 && table.width() > 0);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(table) = crate::dataset::Table::from_csv_text(text, name)
    {
        assert_eq!(table.names().len(), table.width());
    }
}

/// A line of the worker protocol, either way: a task as the worker reads it,
/// an event as the node reads it; an event that decodes survives a round trip.
pub fn worker_protocol(data: &[u8]) {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let _ = crate::training::worker::decode_task_line(line);
    if let Ok(encoded) = crate::training::worker::round_trip_event_line(line) {
        let again = crate::training::worker::round_trip_event_line(&encoded)
            .expect("an encoded event decodes");
        assert_eq!(again, encoded);
    }
}
