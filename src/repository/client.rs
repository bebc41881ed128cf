//! [`RepositoryClient`]: upload and download blobs, streaming and verified.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, RANGE};
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use super::RepositoryError;
use crate::digest::{Sha256Digest, Sha256Hasher};
use crate::wire::BlobRef;

/// Where a repository is and the token it wants: what a node or a researcher
/// configures to reach one.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryLink {
    /// Base URL, e.g. `http://127.0.0.1:8844`.
    pub url: String,
    /// Bearer token, when the repository requires one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

impl RepositoryLink {
    /// A client of the linked repository.
    pub fn client(&self) -> RepositoryClient {
        RepositoryClient::new(&self.url, self.token.clone())
    }
}

/// A client of one repository.
#[derive(Debug, Clone)]
pub struct RepositoryClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RepositoryError {
    let what = what.into();
    move |source| RepositoryError::Io { what, source }
}

impl RepositoryClient {
    /// A client of the repository at `base_url` (e.g. `http://127.0.0.1:8844`).
    pub fn new(base_url: &str, token: Option<String>) -> Self {
        RepositoryClient {
            base: base_url.trim_end_matches('/').to_string(),
            token,
            http: reqwest::Client::new(),
        }
    }

    /// The URL of the blob with `digest`.
    pub fn url_for(&self, digest: &Sha256Digest) -> String {
        format!("{}/blobs/{digest}", self.base)
    }

    fn request(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, url);
        match &self.token {
            Some(t) => builder.header(AUTHORIZATION, format!("Bearer {t}")),
            None => builder,
        }
    }

    async fn check(
        &self,
        url: &str,
        response: reqwest::Response,
        digest: &Sha256Digest,
    ) -> Result<reqwest::Response, RepositoryError> {
        match response.status() {
            s if s.is_success() => Ok(response),
            StatusCode::UNAUTHORIZED => Err(RepositoryError::Unauthorized {
                url: url.to_string(),
            }),
            StatusCode::NOT_FOUND => Err(RepositoryError::NotFound {
                digest: digest.to_hex(),
            }),
            status => {
                let body = response.text().await.unwrap_or_default();
                Err(RepositoryError::Http {
                    status: status.as_u16(),
                    url: url.to_string(),
                    body: body.chars().take(300).collect(),
                })
            }
        }
    }

    fn unreachable(url: &str) -> impl FnOnce(reqwest::Error) -> RepositoryError {
        let url = url.to_string();
        move |e| RepositoryError::Unreachable {
            url,
            reason: e.to_string(),
        }
    }

    /// Upload a file, streamed; returns where it now lives and its digest.
    pub async fn upload_file(&self, path: &Path) -> Result<BlobRef, RepositoryError> {
        let shown = path.display().to_string();
        let file = std::fs::File::open(path).map_err(io(format!("opening {shown}")))?;
        let digest = Sha256Digest::of_reader(std::io::BufReader::new(file))
            .map_err(io(format!("reading {shown}")))?;
        let size = std::fs::metadata(path)
            .map_err(io(format!("reading {shown}")))?
            .len();
        let file = tokio::fs::File::open(path)
            .await
            .map_err(io(format!("opening {shown}")))?;
        let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, 1 << 20));
        self.put(digest, body, size).await
    }

    /// Upload bytes held in memory.
    pub async fn upload_bytes(&self, bytes: Vec<u8>) -> Result<BlobRef, RepositoryError> {
        let digest = Sha256Digest::of(&bytes);
        let size = bytes.len() as u64;
        self.put(digest, reqwest::Body::from(bytes), size).await
    }

    async fn put(
        &self,
        digest: Sha256Digest,
        body: reqwest::Body,
        size: u64,
    ) -> Result<BlobRef, RepositoryError> {
        let url = self.url_for(&digest);
        let response = self
            .request(reqwest::Method::PUT, &url)
            .header(CONTENT_LENGTH, size)
            .body(body)
            .send()
            .await
            .map_err(Self::unreachable(&url))?;
        self.check(&url, response, &digest).await?;
        Ok(BlobRef {
            url,
            sha256: digest,
        })
    }

    /// Download `blob` to `dest`, streamed, resuming a partial download left
    /// in `dest` + `.partial`, and verify its digest. At most `limit` bytes.
    /// Returns the size. On a digest mismatch nothing is left at `dest`.
    pub async fn download(
        &self,
        blob: &BlobRef,
        dest: &Path,
        limit: u64,
    ) -> Result<u64, RepositoryError> {
        let partial = PathBuf::from(format!("{}.partial", dest.display()));
        let shown = partial.display().to_string();
        let mut hasher = Sha256Hasher::default();
        let mut have = 0u64;
        if let Ok(bytes) = tokio::fs::read(&partial).await {
            hasher.update(&bytes);
            have = bytes.len() as u64;
        }
        let mut request = self.request(reqwest::Method::GET, &blob.url);
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let response = request.send().await.map_err(Self::unreachable(&blob.url))?;
        let response = match self.check(&blob.url, response, &blob.sha256).await {
            // The partial file already holds everything: the server says the range is empty.
            Err(RepositoryError::Http { status: 416, .. }) if have > 0 => None,
            other => Some(other?),
        };
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&partial)
            .await
            .map_err(io(format!("opening {shown}")))?;
        if let Some(response) = response {
            if have > 0 && response.status() != StatusCode::PARTIAL_CONTENT {
                // The server ignored the range: start over.
                file.set_len(0)
                    .await
                    .map_err(io(format!("truncating {shown}")))?;
                hasher = Sha256Hasher::default();
                have = 0;
            }
            // Large buffer: each write of a tokio file is a trip to a blocking thread.
            let mut writer = tokio::io::BufWriter::with_capacity(1 << 20, &mut file);
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(Self::unreachable(&blob.url))?;
                have += chunk.len() as u64;
                if have > limit {
                    drop(writer);
                    drop(file);
                    let _ = tokio::fs::remove_file(&partial).await;
                    return Err(RepositoryError::TooLarge { limit });
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
        let actual = hasher.finish();
        if actual != blob.sha256 {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(RepositoryError::HashMismatch {
                expected: blob.sha256,
                actual,
            });
        }
        tokio::fs::rename(&partial, dest)
            .await
            .map_err(io(format!("moving {shown} into place")))?;
        Ok(have)
    }
}
