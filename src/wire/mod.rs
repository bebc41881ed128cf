//! The protocol between researcher and nodes: one struct per message
//! ([`TrainRequest`], [`TrainReply`], …), one enum over them ([`Message`],
//! tagged by `command`), JSON on the wire, and the MQTT topics it travels on.
//!
//! Each message carries `protocol_version` (`major.minor`). A receiver first
//! checks the major version, so a message from an incompatible peer is
//! answered with a clear error rather than a confusing field error, then
//! decodes the body, refusing unknown fields (a misspelt field in a train
//! request must not be silently ignored). Large payloads — plans and
//! parameters — never travel in messages: only their SHA-256 and size do
//! ([`BlobRef`]).
//!
//! Since 5.0 every message is signed by its sender and travels in an
//! envelope ([`seal`], [`open`]): a receiver believes a message only when
//! the signature verifies under the key its roster pins for the sender the
//! message names (see [`crate::identity`]).

mod decode;
mod envelope;
pub(crate) mod float;
mod messages;
pub mod topics;

pub use decode::{MAX_MESSAGE_BYTES, WireError, decode, encode};
pub use envelope::{OpenError, Opened, SignerRef, open, seal, seal_raw};
pub use messages::*;

/// The protocol version this build speaks. Peers must share the major version.
/// 2.0: blobs are named by digest and size only (no URL), a `busy` error code.
/// 3.0: train requests no longer carry `aggregator_args` (sent empty, never
/// read: a node refusing unknown fields cannot take a 2.0 request).
/// 4.0: a node's timings split into data, sandbox and transfer (a 3.0
/// researcher refusing unknown fields cannot read a 4.0 reply).
/// 5.0: every message is signed by its sender's Ed25519 key and travels in
/// an envelope (see [`seal`] and [`open`]); request ids are random 128-bit.
pub const PROTOCOL_VERSION: &str = "5.0";

/// Longest free text (an error's message, a log record) a node sends: a
/// plan's own text is cut to this, so a message always fits the broker's
/// packet limit and the node stays connected.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// `text` cut to at most `max` bytes on a character boundary, saying how
/// much was cut, so a long error still arrives (shortened) rather than not at all.
pub fn bounded_text(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let note = format!(" … [{} more bytes cut]", text.len());
    let mut end = max.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let cut = text.len() - end;
    format!("{} … [{cut} more bytes cut]", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary_and_says_so() {
        assert_eq!(bounded_text("short".into(), 100), "short");
        let long = "é".repeat(50_000);
        let cut = bounded_text(long.clone(), MAX_TEXT_BYTES);
        assert!(cut.len() <= MAX_TEXT_BYTES, "{}", cut.len());
        assert!(cut.starts_with("éé"));
        let kept = cut.split(" … [").next().unwrap().len();
        assert!(
            cut.ends_with(&format!("[{} more bytes cut]", long.len() - kept)),
            "{}",
            &cut[cut.len() - 40..]
        );
    }
}
