//! Errors of the MQTT transport.

/// Why the transport failed; each message says what to check.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The broker URL cannot be used.
    #[error("broker URL `{url}`: {reason}; expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The broker answered the connection with a refusal.
    #[error(
        "the broker at {url} refused client `{client_id}`: {reason}; check the username and password (`[broker]` in node.toml, or --username / --password) and the broker's ACL"
    )]
    Refused {
        /// Broker URL.
        url: String,
        /// Our client id.
        client_id: String,
        /// The broker's return code, in words.
        reason: String,
    },
    /// No connection after every attempt.
    #[error("cannot reach the broker at {url} after {attempts} attempts: {reason}; is it running?")]
    Unreachable {
        /// Broker URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        reason: String,
    },
    /// TLS settings could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// The connection is gone (closed, or the broker stopped answering).
    #[error("the MQTT connection is closed")]
    Closed,
    /// A message over the size every peer accepts; it was not sent, so the
    /// connection is not dropped for it.
    #[error("a message of {0} bytes is over the 1 MiB limit and was not sent")]
    TooLarge(usize),
    /// The embedded broker could not start.
    #[error("embedded broker: {0}")]
    Broker(String),
}
