//! The protocol between researcher and nodes: every message in one enum,
//! JSON on the wire, and the MQTT topics it travels on.
//!
//! Each message carries `protocol_version` (`major.minor`). A receiver first
//! checks the major version, so a message from an incompatible peer is
//! answered with a clear error rather than a confusing field error, then
//! decodes the body, refusing unknown fields (a misspelt field in a train
//! request must not be silently ignored). Large payloads — plans and
//! parameters — never travel in messages: only their repository URL and
//! SHA-256 do ([`BlobRef`]).

mod decode;
mod messages;
pub mod topics;

pub use decode::{MAX_MESSAGE_BYTES, WireError, decode, encode};
pub use messages::*;

/// The protocol version this build speaks. Peers must share the major version.
pub const PROTOCOL_VERSION: &str = "1.0";
