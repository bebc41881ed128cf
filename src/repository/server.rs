//! The repository server: `PUT` and `GET /blobs/<sha256>`.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use super::RepositoryError;
use crate::digest::{Sha256Digest, Sha256Hasher};

/// How a repository server runs.
#[derive(Debug, Clone)]
pub struct RepositoryConfig {
    /// Folder holding `blobs/` and `tmp/`.
    pub dir: PathBuf,
    /// Bearer token every request must carry; `None` accepts everyone.
    pub token: Option<String>,
    /// Largest blob accepted, in bytes.
    pub max_blob_bytes: u64,
}

impl RepositoryConfig {
    /// A repository in `dir` with no token and a 4 GiB blob limit.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RepositoryConfig {
            dir: dir.into(),
            token: None,
            max_blob_bytes: 4 << 30,
        }
    }
}

struct Shared {
    config: RepositoryConfig,
    uploads: AtomicU64,
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

fn blob_path(config: &RepositoryConfig, digest: &Sha256Digest) -> PathBuf {
    config.dir.join("blobs").join(digest.to_hex())
}

async fn check_token(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if let Some(token) = &shared.config.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
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
        Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn put_blob(
    State(shared): State<Arc<Shared>>,
    Path(digest): Path<String>,
    body: Body,
) -> Response {
    let Ok(expected) = digest.parse::<Sha256Digest>() else {
        return bad_digest();
    };
    let config = &shared.config;
    let tmp_dir = config.dir.join("tmp");
    let n = shared.uploads.fetch_add(1, Ordering::Relaxed);
    let tmp = tmp_dir.join(format!("{}-{n}", expected.short()));
    let result = async {
        // Large buffer: each write of a tokio file is a trip to a blocking thread.
        let mut file =
            tokio::io::BufWriter::with_capacity(1 << 20, tokio::fs::File::create(&tmp).await?);
        let mut hasher = Sha256Hasher::default();
        let mut size = 0u64;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(std::io::Error::other)?;
            size += chunk.len() as u64;
            if size > config.max_blob_bytes {
                return Ok(Err(text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("blob over the limit of {} bytes", config.max_blob_bytes),
                )));
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        file.flush().await?;
        let actual = hasher.finish();
        if actual != expected {
            return Ok(Err(text(
                StatusCode::BAD_REQUEST,
                format!("body has SHA-256 {actual}, the URL says {expected}"),
            )));
        }
        tokio::fs::rename(&tmp, blob_path(config, &expected)).await?;
        Ok::<_, std::io::Error>(Ok(size))
    }
    .await;
    let _ = tokio::fs::remove_file(&tmp).await;
    match result {
        Ok(Ok(size)) => (
            StatusCode::CREATED,
            format!("{{\"sha256\":\"{expected}\",\"size\":{size}}}"),
        )
            .into_response(),
        Ok(Err(refusal)) => refusal,
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storing the blob failed: {e}"),
        ),
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
    let shared = Arc::new(Shared {
        config,
        uploads: AtomicU64::new(0),
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
    use axum::serve::ListenerExt;
    let app = router(config)?;
    // Responses are written as headers then body: without TCP_NODELAY the body
    // waits for the client's delayed ACK, ~40 ms per download on a kept-alive connection.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::warn!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| RepositoryError::Server(e.to_string()))
}
