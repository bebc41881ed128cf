//! The repository server: `PUT` and `GET /blobs/<sha256>`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::RepositoryError;
use super::guarded::{ConnectionLimits, GuardedListener};
use crate::digest::{Sha256Digest, Sha256Hasher};

/// How a repository server runs, and what it refuses: every upload is
/// bounded in size, in time, in number at once, and by a disk quota.
#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    /// Folder holding `blobs/` and `tmp/`.
    pub dir: PathBuf,
    /// Bearer token every request must carry; `None` accepts everyone.
    pub token: Option<String>,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
    /// Bytes all stored blobs together may take (uploads under way count).
    pub max_total_bytes: u64,
    /// Uploads received at the same time; more are answered 503.
    pub max_concurrent_uploads: usize,
    /// Longest silence within an upload's body before it is dropped, and of
    /// a connection (no byte either way) before it is closed.
    pub read_timeout: Duration,
    /// Connections open at once; more wait until one closes.
    pub max_connections: usize,
    /// Connections open at once from one peer address; more are closed at
    /// once, so one client cannot take every place.
    pub max_connections_per_peer: usize,
    /// Longest time from a request's first byte to the end of its headers:
    /// a client trickling its headers is closed past it.
    pub header_timeout: Duration,
    /// Longest time one upload may take.
    pub upload_timeout: Duration,
}

impl RepositoryConfig {
    /// A repository in `dir` with no token, a 4 GiB blob limit, a 64 GiB
    /// quota, 16 uploads and 256 connections at once (32 per peer address),
    /// 30 s of silence, 10 s for a request's headers and 1 h per upload.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RepositoryConfig {
            dir: dir.into(),
            token: None,
            max_blob_bytes: 4 << 30,
            max_total_bytes: 64 << 30,
            max_concurrent_uploads: 16,
            read_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_connections_per_peer: 32,
            header_timeout: Duration::from_secs(10),
            upload_timeout: Duration::from_secs(3600),
        }
    }
}

/// How long an upload waits for one of the concurrent places before 503.
const UPLOAD_SLOT_WAIT: Duration = Duration::from_millis(500);

struct Shared {
    config: RepositoryConfig,
    uploads: AtomicU64,
    /// Bytes stored plus bytes reserved by uploads under way.
    used: AtomicU64,
    /// One permit per upload under way.
    upload_slots: Arc<Semaphore>,
}

/// Bytes of the regular files in `dir` (the blobs already stored).
fn stored_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .fold(0, u64::saturating_add)
}

impl Shared {
    /// Reserve `size` bytes of the quota, or say how much is left.
    fn reserve(&self, size: u64) -> Result<(), u64> {
        let limit = self.config.max_total_bytes;
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(size).filter(|total| *total <= limit)
            })
            .map(drop)
            .map_err(|used| limit.saturating_sub(used))
    }

    fn release(&self, size: u64) {
        let _ = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                Some(used.saturating_sub(size))
            });
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (status, message.into()).into_response()
}

/// The answer to a blob URL that is not a digest (which also keeps paths
/// like `../x` out of the blob folder).
fn bad_digest() -> Response {
    text(
        StatusCode::BAD_REQUEST,
        "blobs are addressed by 64 hexadecimal digits",
    )
}

/// The answer to an upload of a blob that is now stored.
fn stored(digest: &Sha256Digest, size: u64) -> Response {
    (
        StatusCode::CREATED,
        format!("{{\"sha256\":\"{digest}\",\"size\":{size}}}"),
    )
        .into_response()
}

fn blob_path(config: &RepositoryConfig, digest: &Sha256Digest) -> PathBuf {
    config.dir.join("blobs").join(digest.to_hex())
}

/// Whether `given` is `token`, in time that tells nothing of how much of
/// it matched: both are hashed first (hiding the length too) and the
/// digests compared in constant time.
fn same_token(given: &str, token: &str) -> bool {
    use subtle::ConstantTimeEq as _;
    let given = Sha256Digest::of(given.as_bytes());
    let token = Sha256Digest::of(token.as_bytes());
    given.bytes().ct_eq(token.bytes()).into()
}

async fn check_token(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(token) = &shared.config.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|given| same_token(given, token)) {
            return text(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        }
    }
    next.run(request).await
}

async fn get_blob(
    State(shared): State<Arc<Shared>>,
    Path(digest): Path<String>,
    request: Request,
) -> Response {
    let Ok(digest) = digest.parse::<Sha256Digest>() else {
        return bad_digest();
    };
    let path = blob_path(&shared.config, &digest);
    if !path.exists() {
        return text(StatusCode::NOT_FOUND, format!("no blob {digest}"));
    }
    // ServeFile streams the file and answers Range and HEAD requests.
    match ServeFile::new(path).oneshot(request).await {
        Ok(response) => response.map(Body::new),
        Err(e) => {
            tracing::warn!("serving blob {digest} failed: {e}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "reading the blob failed")
        }
    }
}

/// 503 with `Retry-After`: every one of the `places` uploads is under way.
fn busy(places: usize) -> Response {
    let mut busy = text(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{places} uploads are under way, the limit; retry shortly"),
    );
    busy.headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    busy
}

/// Stream `body` into `tmp`, hashing it, and move it to `target` when it
/// has the digest `expected`: `Ok(true)` stored, `Ok(false)` another upload
/// of the same blob finished first, `Err` the refusal to answer with.
async fn receive_blob(
    config: &RepositoryConfig,
    body: Body,
    tmp: &std::path::Path,
    target: &std::path::Path,
    expected: &Sha256Digest,
) -> std::io::Result<Result<bool, Response>> {
    // Large buffer: each write of a tokio file is a trip to a blocking thread.
    let mut file =
        tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(&tmp).await?);
    let mut hasher = Sha256Hasher::default();
    let mut stream = body.into_data_stream();
    loop {
        let next = tokio::time::timeout(config.read_timeout, stream.next()).await;
        let chunk = match next {
            Err(_) => {
                return Ok(Err(text(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the upload sent nothing for {} s",
                        config.read_timeout.as_secs()
                    ),
                )));
            }
            Ok(None) => break,
            Ok(Some(Ok(chunk))) => chunk,
            // The client's side of the connection failed or went silent.
            Ok(Some(Err(_))) => {
                return Ok(Err(text(
                    StatusCode::REQUEST_TIMEOUT,
                    "the upload broke off before its end",
                )));
            }
        };
        hasher.update(&chunk);
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    if hasher.finish() != *expected {
        return Ok(Err(text(
            StatusCode::BAD_REQUEST,
            format!("the body does not have the SHA-256 {expected} its URL names"),
        )));
    }
    if tokio::fs::try_exists(&target).await.unwrap_or(false) {
        // Another upload of the same blob finished first.
        return Ok(Ok(false));
    }
    tokio::fs::rename(&tmp, &target).await?;
    Ok(Ok(true))
}

async fn put_blob(
    State(shared): State<Arc<Shared>>,
    Path(digest): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(expected) = digest.parse::<Sha256Digest>() else {
        return bad_digest();
    };
    let config = &shared.config;
    let Some(size) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return text(
            StatusCode::LENGTH_REQUIRED,
            "an upload must say its Content-Length",
        );
    };
    if size > config.max_blob_bytes {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("blob over the limit of {} bytes", config.max_blob_bytes),
        );
    }
    // A blob stored already is answered at once, without reading the body
    // or writing anything: a re-upload costs neither disk nor quota.
    let target = blob_path(config, &expected);
    if tokio::fs::try_exists(&target).await.unwrap_or(false) {
        return stored(&expected, size);
    }
    // Wait a little for a place (many nodes finish a round at once), then
    // ask the client to come back: the body is not read meanwhile.
    let slot = tokio::time::timeout(
        UPLOAD_SLOT_WAIT,
        shared.upload_slots.clone().acquire_owned(),
    )
    .await;
    let Ok(Ok(_slot)) = slot else {
        return busy(config.max_concurrent_uploads);
    };
    if let Err(left) = shared.reserve(size) {
        return text(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "the repository's quota has {left} bytes left, fewer than the {size} of this blob"
            ),
        );
    }
    let n = shared.uploads.fetch_add(1, Ordering::Relaxed);
    let tmp = config
        .dir
        .join("tmp")
        .join(format!("{}-{n}", expected.short()));
    let receive = receive_blob(config, body, &tmp, &target, &expected);
    let result = match tokio::time::timeout(config.upload_timeout, receive).await {
        Ok(result) => result,
        Err(_) => Ok(Err(text(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the upload took longer than {} s",
                config.upload_timeout.as_secs()
            ),
        ))),
    };
    let _ = tokio::fs::remove_file(&tmp).await;
    match result {
        Ok(Ok(kept)) => {
            if !kept {
                shared.release(size);
            }
            stored(&expected, size)
        }
        Ok(Err(refusal)) => {
            shared.release(size);
            refusal
        }
        Err(e) => {
            shared.release(size);
            tracing::warn!("storing blob {expected} failed: {e}");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "storing the blob failed; see the repository's log",
            )
        }
    }
}

/// The repository's routes.
pub fn router(config: RepositoryConfig) -> Result<Router, RepositoryError> {
    for sub in ["blobs", "tmp"] {
        let dir = config.dir.join(sub);
        std::fs::create_dir_all(&dir).map_err(|source| RepositoryError::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
    }
    let used = stored_bytes(&config.dir.join("blobs"));
    let shared = Arc::new(Shared {
        upload_slots: Arc::new(Semaphore::new(config.max_concurrent_uploads.max(1))),
        config,
        uploads: AtomicU64::new(0),
        used: AtomicU64::new(used),
    });
    Ok(Router::new()
        .route("/blobs/{digest}", get(get_blob).put(put_blob))
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(middleware::from_fn_with_state(shared.clone(), check_token))
        .with_state(shared))
}

/// Serve the repository on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    config: RepositoryConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RepositoryError> {
    // Twice the body's read timeout, so that a stalled upload is answered by
    // the handler (408) before its connection is closed under it.
    let limits = ConnectionLimits {
        total: config.max_connections,
        per_peer: config.max_connections_per_peer,
        idle: config.read_timeout.saturating_mul(2),
        headers: config.header_timeout,
    };
    let listener = GuardedListener::new(listener, limits);
    let app = router(config)?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| RepositoryError::Server(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_by_digest_whatever_their_length() {
        assert!(same_token("s3cret", "s3cret"));
        for wrong in [
            "",
            "s3cre",
            "s3cret!",
            "S3cret",
            "x".repeat(10_000).as_str(),
        ] {
            assert!(!same_token(wrong, "s3cret"), "{wrong}");
        }
    }
}
