//! Errors of the repository client and server.
//!
//! A node's error replies carry these texts to a researcher, so none of them
//! names a URL, a response body or a digest the server computed: a hostile
//! sender must not learn anything about the repository's network or pages.

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
    /// The repository could not be reached or stalled.
    #[error("cannot reach the repository: {reason}")]
    Unreachable {
        /// The client's message, without the URL.
        reason: String,
    },
    /// The server refused the token.
    #[error(
        "the repository refused the token (HTTP 401); check the repository token in the configuration"
    )]
    Unauthorized,
    /// No blob with that digest.
    #[error("the repository has no blob {digest}")]
    NotFound {
        /// The digest asked for.
        digest: String,
    },
    /// Any other HTTP status (the body is not repeated).
    #[error("the repository answered HTTP {status}")]
    Http {
        /// Status code.
        status: u16,
    },
    /// Downloaded bytes did not have the announced size and digest.
    #[error(
        "the downloaded file does not have the announced size and SHA-256: it was altered or corrupted"
    )]
    Corrupt,
    /// The blob is larger than the caller allows.
    #[error("a blob of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The announced size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The server could not start.
    #[error("repository server: {0}")]
    Server(String),
}
