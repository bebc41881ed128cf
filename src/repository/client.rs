//! [`RepositoryClient`]: upload and download blobs, streaming and verified.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, RANGE};
use std::time::Duration;

use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::RepositoryError;
use crate::digest::{Sha256Digest, Sha256Hasher};
use crate::wire::BlobRef;

/// Where a repository is and the token it wants: what a node or a researcher
/// configures to reach one. This is the only place a blob is ever fetched
/// from, and the only server the token is ever sent to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryLink {
    /// Base URL, e.g. `http://127.0.0.1:8844`.
    pub url: String,
    /// Bearer token, when the repository requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Seconds to wait for a connection to open.
    #[serde(default = "default_connect_secs")]
    pub connect_timeout_secs: u64,
    /// Seconds a transfer may go without receiving a byte.
    #[serde(default = "default_read_secs")]
    pub read_timeout_secs: u64,
    /// Seconds one whole upload or download may take.
    #[serde(default = "default_total_secs")]
    pub total_timeout_secs: u64,
}

fn default_connect_secs() -> u64 {
    10
}

fn default_read_secs() -> u64 {
    60
}

fn default_total_secs() -> u64 {
    3600
}

impl RepositoryLink {
    /// A link to `url` with `token` and the default timeouts.
    pub fn new(url: impl Into<String>, token: Option<String>) -> Self {
        RepositoryLink {
            url: url.into(),
            token,
            connect_timeout_secs: default_connect_secs(),
            read_timeout_secs: default_read_secs(),
            total_timeout_secs: default_total_secs(),
        }
    }

    /// A client of the linked repository.
    pub fn client(&self) -> RepositoryClient {
        RepositoryClient::with_timeouts(
            &self.url,
            self.token.clone(),
            Timeouts {
                connect: Duration::from_secs(self.connect_timeout_secs.max(1)),
                read: Duration::from_secs(self.read_timeout_secs.max(1)),
                total: Duration::from_secs(self.total_timeout_secs.max(1)),
            },
        )
    }
}

/// How long a client waits: to connect, between two received bytes, and for
/// a whole transfer. A repository that stalls is given up on, never waited
/// for for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a connection.
    pub connect: Duration,
    /// Silence within a transfer.
    pub read: Duration,
    /// One whole request, body included.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(default_connect_secs()),
            read: Duration::from_secs(default_read_secs()),
            total: Duration::from_secs(default_total_secs()),
        }
    }
}

/// A client of one repository. Blobs are addressed by digest under its base
/// URL; redirects are never followed, so the token goes nowhere else.
#[derive(Debug, Clone)]
pub struct RepositoryClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
    /// How long an upload keeps trying while the repository is busy.
    total: Duration,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RepositoryError {
    let what = what.into();
    move |source| RepositoryError::Io { what, source }
}

/// A transfer error without the URL (the repository's address stays on this machine).
fn unreachable(e: reqwest::Error) -> RepositoryError {
    let reason = if e.is_timeout() {
        "it did not answer in time".to_string()
    } else {
        e.without_url().to_string()
    };
    RepositoryError::Unreachable { reason }
}

/// What an upload sends, so that it can be sent again.
enum Upload<'a> {
    /// A file, streamed.
    File(&'a Path),
    /// Bytes in memory (cheap to clone).
    Bytes(bytes::Bytes),
}

impl Upload<'_> {
    /// A fresh request body.
    async fn body(&self) -> Result<reqwest::Body, RepositoryError> {
        match self {
            Upload::File(path) => {
                let file = tokio::fs::File::open(path)
                    .await
                    .map_err(io(format!("opening {}", path.display())))?;
                Ok(reqwest::Body::wrap_stream(ReaderStream::with_capacity(
                    file,
                    1 << 20,
                )))
            }
            Upload::Bytes(bytes) => Ok(reqwest::Body::from(bytes.clone())),
        }
    }
}

/// Uploads larger than this ask first whether the repository holds the
/// blob already (one round trip saves sending it again); smaller ones are
/// sent at once, and the repository answers a stored one without reading it.
const ASK_FIRST_BYTES: u64 = 64 * 1024;

impl RepositoryClient {
    /// A client of the repository at `base_url` (e.g. `http://127.0.0.1:8844`)
    /// with the default timeouts.
    pub fn new(base_url: &str, token: Option<String>) -> Self {
        Self::with_timeouts(base_url, token, Timeouts::default())
    }

    /// A client of the repository at `base_url` with these timeouts.
    pub fn with_timeouts(base_url: &str, token: Option<String>, timeouts: Timeouts) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .timeout(timeouts.total)
            .build()
            // Only TLS back-end initialisation can fail, and this client has none.
            .unwrap_or_else(|_| reqwest::Client::new());
        RepositoryClient {
            base: base_url.trim_end_matches('/').to_string(),
            token,
            http,
            total: timeouts.total,
        }
    }

    /// The URL of the blob with `digest`.
    pub fn url_for(&self, digest: &Sha256Digest) -> String {
        format!("{}/blobs/{digest}", self.base)
    }

    fn request(&self, method: reqwest::Method, digest: &Sha256Digest) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, self.url_for(digest));
        match &self.token {
            Some(t) => builder.header(AUTHORIZATION, format!("Bearer {t}")),
            None => builder,
        }
    }

    /// The response when it is a success; otherwise an error that names the
    /// status only (a response body is never repeated: it could be anything).
    fn check(
        response: reqwest::Response,
        digest: &Sha256Digest,
    ) -> Result<reqwest::Response, RepositoryError> {
        match response.status() {
            s if s.is_success() => Ok(response),
            StatusCode::UNAUTHORIZED => Err(RepositoryError::Unauthorized),
            StatusCode::NOT_FOUND => Err(RepositoryError::NotFound {
                digest: digest.to_hex(),
            }),
            status => Err(RepositoryError::Http {
                status: status.as_u16(),
            }),
        }
    }

    /// Upload a file, streamed; returns its digest and size. A blob the
    /// repository holds already is not sent again.
    pub async fn upload_file(&self, path: &Path) -> Result<BlobRef, RepositoryError> {
        let shown = path.display().to_string();
        let file = std::fs::File::open(path).map_err(io(format!("opening {shown}")))?;
        let digest = Sha256Digest::of_reader(std::io::BufReader::new(file))
            .map_err(io(format!("reading {shown}")))?;
        let size = std::fs::metadata(path)
            .map_err(io(format!("reading {shown}")))?
            .len();
        self.put(digest, size, &Upload::File(path)).await
    }

    /// Upload bytes held in memory.
    pub async fn upload_bytes(&self, bytes: Vec<u8>) -> Result<BlobRef, RepositoryError> {
        let digest = Sha256Digest::of(&bytes);
        let size = bytes.len() as u64;
        self.put(digest, size, &Upload::Bytes(bytes::Bytes::from(bytes)))
            .await
    }

    /// Upload `source`; when the repository is busy (503: too many uploads
    /// at once), wait as it asks and try again, with a fresh body, until the
    /// client's total timeout.
    async fn put(
        &self,
        digest: Sha256Digest,
        size: u64,
        source: &Upload<'_>,
    ) -> Result<BlobRef, RepositoryError> {
        let blob = BlobRef {
            sha256: digest,
            size,
        };
        if size > ASK_FIRST_BYTES && self.has(&blob).await {
            return Ok(blob);
        }
        let give_up = tokio::time::Instant::now() + self.total;
        let mut wait = Duration::from_millis(50);
        loop {
            let response = self
                .request(reqwest::Method::PUT, &digest)
                .header(CONTENT_LENGTH, size)
                .body(source.body().await?)
                .send()
                .await
                .map_err(unreachable)?;
            if response.status() == StatusCode::SERVICE_UNAVAILABLE {
                let asked = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs);
                // Sooner than asked at first: the server's hint is in whole seconds.
                let pause = asked.map_or(wait, |a| a.min(wait));
                if tokio::time::Instant::now() + pause < give_up {
                    tokio::time::sleep(pause).await;
                    wait = (wait * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
            Self::check(response, &digest)?;
            return Ok(blob);
        }
    }

    /// Whether the repository holds `blob` already (a HEAD request; any
    /// failure means "not known to": the upload then says what is wrong).
    async fn has(&self, blob: &BlobRef) -> bool {
        let response = self
            .request(reqwest::Method::HEAD, &blob.sha256)
            .send()
            .await;
        response.is_ok_and(|r| {
            r.status() == StatusCode::OK
                && r.headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    == Some(blob.size)
        })
    }

    /// Download `blob` from this repository to `dest`, streamed, resuming a
    /// partial download left in `dest` + `.partial`, and verify its size and
    /// digest. A blob announced over `limit` bytes is refused before anything
    /// is fetched, and a body longer than announced is cut off. Returns the
    /// size. On any mismatch nothing is left at `dest`.
    pub async fn download(
        &self,
        blob: &BlobRef,
        dest: &Path,
        limit: u64,
    ) -> Result<u64, RepositoryError> {
        if blob.size > limit {
            return Err(RepositoryError::TooLarge {
                size: blob.size,
                limit,
            });
        }
        let partial = PathBuf::from(format!("{}.partial", dest.display()));
        let shown = partial.display().to_string();
        let mut hasher = Sha256Hasher::default();
        let mut have = 0u64;
        if let Ok(bytes) = tokio::fs::read(&partial).await
            && bytes.len() as u64 <= blob.size
        {
            hasher.update(&bytes);
            have = bytes.len() as u64;
        }
        let mut request = self.request(reqwest::Method::GET, &blob.sha256);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let response = request.send().await.map_err(unreachable)?;
        let response = match Self::check(response, &blob.sha256) {
            // The partial file already holds everything: the server says the range is empty.
            Err(RepositoryError::Http { status: 416 }) if have == blob.size => None,
            other => Some(other?),
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(have == 0)
            .open(&partial)
            .await
            .map_err(io(format!("opening {shown}")))?;
        let fail = async |error: RepositoryError| {
            let _ = tokio::fs::remove_file(&partial).await;
            Err(error)
        };
        if let Some(response) = response {
            if have > 0 && response.status() != StatusCode::PARTIAL_CONTENT {
                // The server ignored the range: start over.
                file.set_len(0)
                    .await
                    .map_err(io(format!("truncating {shown}")))?;
                hasher = Sha256Hasher::default();
                have = 0;
            }
            file.seek(std::io::SeekFrom::Start(have))
                .await
                .map_err(io(format!("seeking in {shown}")))?;
            // Large buffer: each write of a tokio file is a trip to a blocking thread.
            let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, &mut file);
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = match chunk {
                    Ok(chunk) => chunk,
                    // Kept in `.partial`: the next attempt resumes from here.
                    Err(e) => return Err(unreachable(e)),
                };
                have += chunk.len() as u64;
                if have > blob.size {
                    drop(writer);
                    drop(file);
                    return fail(RepositoryError::Corrupt).await;
                }
                hasher.update(&chunk);
                writer
                    .write_all(&chunk)
                    .await
                    .map_err(io(format!("writing {shown}")))?;
            }
            writer
                .flush()
                .await
                .map_err(io(format!("writing {shown}")))?;
        }
        file.flush().await.map_err(io(format!("writing {shown}")))?;
        drop(file);
        if have != blob.size || hasher.finish() != blob.sha256 {
            return fail(RepositoryError::Corrupt).await;
        }
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(io(format!("moving {shown} into place")))?;
        Ok(have)
    }
}
