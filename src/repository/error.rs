//! Errors of the repository client and server.

use crate::digest::Sha256Digest;

/// Why a repository operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// A local file could not be read or written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The repository could not be reached.
    #[error("cannot reach the repository at {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// The client's message.
        reason: String,
    },
    /// The server refused the token.
    #[error(
        "the repository at {url} refused our token (HTTP 401); check the repository token in the configuration"
    )]
    Unauthorized {
        /// The URL.
        url: String,
    },
    /// No blob with that digest.
    #[error("the repository has no blob {digest}")]
    NotFound {
        /// The digest asked for.
        digest: String,
    },
    /// Any other HTTP error.
    #[error("the repository answered HTTP {status} for {url}: {body}")]
    Http {
        /// Status code.
        status: u16,
        /// The URL.
        url: String,
        /// The start of the response body.
        body: String,
    },
    /// Downloaded bytes did not have the promised digest.
    #[error(
        "downloaded file has SHA-256 {actual}, but {expected} was announced: it was altered or corrupted"
    )]
    HashMismatch {
        /// The promised digest.
        expected: Sha256Digest,
        /// What arrived.
        actual: Sha256Digest,
    },
    /// The blob is larger than the caller allows.
    #[error("blob is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The server could not start.
    #[error("repository server: {0}")]
    Server(String),
}
