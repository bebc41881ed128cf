//! The file repository served in-process on loopback, driven by its client.

use std::path::Path;
use std::time::Duration;

use fedwasm::digest::Sha256Digest;
use fedwasm::repository::client::Timeouts;
use fedwasm::repository::{RepositoryClient, RepositoryConfig, RepositoryError, serve};
use fedwasm::wire::BlobRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A running server: its base URL, its folder, and the trigger that stops it.
struct Server {
    url: String,
    dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), RepositoryError>>,
}

async fn start(token: Option<&str>, max_blob_bytes: u64) -> Server {
    start_with(|c| {
        c.token = token.map(str::to_string);
        c.max_blob_bytes = max_blob_bytes;
    })
    .await
}

async fn start_with(configure: impl FnOnce(&mut RepositoryConfig)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut config = RepositoryConfig::new(dir.path());
    configure(&mut config);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, config, async {
        let _ = stopped.await;
    }));
    Server {
        url,
        dir,
        stop: Some(stop),
        task,
    }
}

impl Server {
    async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }

    fn stored(&self, digest: &Sha256Digest) -> std::path::PathBuf {
        self.dir.path().join("blobs").join(digest.to_hex())
    }
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 31 % 251) as u8).collect()
}

#[tokio::test]
async fn upload_then_download_verifies_and_is_content_addressed() {
    let server = start(None, 1 << 30).await;
    let client = RepositoryClient::new(&server.url, None);
    let data = bytes(3 << 20);
    let blob = client.upload_bytes(data.clone()).await.unwrap();
    assert_eq!(blob.sha256, Sha256Digest::of(&data));
    assert_eq!(blob.size, data.len() as u64);
    // Uploading the same bytes again is harmless.
    assert_eq!(client.upload_bytes(data.clone()).await.unwrap(), blob);

    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("copy");
    assert_eq!(
        client.download(&blob, &dest, u64::MAX).await.unwrap(),
        data.len() as u64
    );
    assert_eq!(std::fs::read(&dest).unwrap(), data);

    let file = out.path().join("source.bin");
    std::fs::write(&file, bytes(1000)).unwrap();
    let from_file = client.upload_file(&file).await.unwrap();
    assert_eq!(from_file.sha256, Sha256Digest::of_file(&file).unwrap());
    server.shutdown().await;
}

#[tokio::test]
async fn a_tampered_blob_is_detected_and_not_kept() {
    let server = start(None, 1 << 30).await;
    let client = RepositoryClient::new(&server.url, None);
    let blob = client.upload_bytes(bytes(5000)).await.unwrap();
    std::fs::write(server.stored(&blob.sha256), b"tampered parameters").unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("params.safetensors");
    let err = client.download(&blob, &dest, u64::MAX).await.unwrap_err();
    assert!(matches!(err, RepositoryError::Corrupt), "{err}");
    assert!(!dest.exists());
    assert!(!Path::new(&format!("{}.partial", dest.display())).exists());
    server.shutdown().await;
}

#[tokio::test]
async fn an_upload_under_the_wrong_digest_is_refused() {
    let server = start(None, 1 << 30).await;
    let wrong = Sha256Digest::of(b"something else");
    let response = reqwest::Client::new()
        .put(format!("{}/blobs/{wrong}", server.url))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("its URL names"));
    assert!(!server.stored(&wrong).exists());
    let bad = reqwest::Client::new()
        .get(format!("{}/blobs/../../etc/passwd", server.url))
        .send()
        .await
        .unwrap();
    assert!(bad.status().is_client_error());
    server.shutdown().await;
}

#[tokio::test]
async fn a_partial_download_resumes_with_a_range_request() {
    let server = start(None, 1 << 30).await;
    let client = RepositoryClient::new(&server.url, None);
    let data = bytes(200_000);
    let blob = client.upload_bytes(data.clone()).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("blob");
    // An earlier download stopped after 70 000 bytes.
    std::fs::write(format!("{}.partial", dest.display()), &data[..70_000]).unwrap();
    client.download(&blob, &dest, u64::MAX).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    // Proof that only the rest was fetched: a corrupted prefix stays corrupted
    // and the digest check catches it (a restart from zero would not).
    let mut corrupted = data[..70_000].to_vec();
    corrupted[0] ^= 0xff;
    std::fs::write(format!("{}.partial", dest.display()), &corrupted).unwrap();
    let err = client
        .download(&blob, &out.path().join("blob"), u64::MAX)
        .await
        .unwrap_err();
    assert!(matches!(err, RepositoryError::Corrupt), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn token_and_size_limits_are_enforced() {
    let server = start(Some("s3cret"), 10_000).await;
    let anonymous = RepositoryClient::new(&server.url, None);
    let err = anonymous.upload_bytes(bytes(10)).await.unwrap_err();
    assert!(matches!(err, RepositoryError::Unauthorized), "{err}");
    let wrong = RepositoryClient::new(&server.url, Some("guess".into()));
    assert!(matches!(
        wrong.upload_bytes(bytes(10)).await.unwrap_err(),
        RepositoryError::Unauthorized
    ));

    let client = RepositoryClient::new(&server.url, Some("s3cret".into()));
    let err = client.upload_bytes(bytes(20_000)).await.unwrap_err();
    assert!(
        matches!(err, RepositoryError::Http { status: 413, .. }),
        "{err}"
    );
    let small = client.upload_bytes(bytes(5_000)).await.unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = client
        .download(&small, &out.path().join("x"), 1_000)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepositoryError::TooLarge { limit: 1_000, .. }),
        "{err}"
    );
    let missing = BlobRef {
        sha256: Sha256Digest::of(b"nope"),
        size: 4,
    };
    let err = client
        .download(&missing, &out.path().join("y"), u64::MAX)
        .await
        .unwrap_err();
    assert!(matches!(err, RepositoryError::NotFound { .. }), "{err}");
    server.shutdown().await;
}

#[tokio::test]
async fn the_repository_command_serves_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url) = crate::support::spawn_server(
        std::process::Command::new(crate::support::fedwasm_bin())
            .args(["repository", "--bind", "127.0.0.1:0", "--token", "t0k"])
            .arg("--dir")
            .arg(dir.path()),
    );
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let client = RepositoryClient::new(&url, Some("t0k".into()));
    let blob = client.upload_bytes(bytes(1234)).await.unwrap();
    let dest = dir.path().join("back");
    client.download(&blob, &dest, u64::MAX).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes(1234));
    assert!(dir.path().join("blobs").join(blob.sha256.to_hex()).exists());
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Open a raw upload of `size` bytes to `digest` that sends only `sent` of them.
async fn stalled_upload(url: &str, digest: &Sha256Digest, size: usize, sent: usize) -> TcpStream {
    let mut socket = TcpStream::connect(url.trim_start_matches("http://"))
        .await
        .unwrap();
    let head =
        format!("PUT /blobs/{digest} HTTP/1.1\r\nHost: repo\r\nContent-Length: {size}\r\n\r\n");
    socket.write_all(head.as_bytes()).await.unwrap();
    socket.write_all(&vec![b'x'; sent]).await.unwrap();
    socket
}

/// The status line the server sends back on `socket`.
async fn status_line(socket: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(crate::federation::PATIENCE, socket.read(&mut buf))
        .await
        .expect("the server answers")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn uploads_are_bounded_in_number_time_and_disk() {
    let server = start_with(|c| {
        c.max_total_bytes = 10_000;
        c.max_concurrent_uploads = 2;
        c.read_timeout = Duration::from_secs(3);
    })
    .await;
    let client = RepositoryClient::new(&server.url, None);
    let digest = Sha256Digest::of(b"never sent");
    // Two uploads that stall take both places; a third is asked to retry.
    let mut stalled = [
        stalled_upload(&server.url, &digest, 1000, 10).await,
        stalled_upload(&server.url, &digest, 1000, 10).await,
    ];
    // A client that may wait only 1.5 s (the server holds it 0.5 s per
    // try) is told the repository is busy…
    let impatient = RepositoryClient::with_timeouts(
        &server.url,
        None,
        Timeouts {
            total: Duration::from_millis(1500),
            ..Timeouts::default()
        },
    );
    let mut refused = None;
    let mut size = 100;
    for _ in 0..200 {
        match impatient.upload_bytes(bytes(size)).await {
            Err(RepositoryError::Http { status: 503 }) => {
                refused = Some(503);
                break;
            }
            // Stored before the stalled uploads' headers were read: a
            // stored blob is answered at once, without taking a place, so
            // the next try sends a new one.
            Ok(_) => {
                size += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    assert_eq!(refused, Some(503), "a third concurrent upload was refused");
    // …one that may wait retries until the stalled uploads are dropped after
    // their read timeout, freeing their places.
    assert!(client.upload_bytes(bytes(200)).await.is_ok());
    for socket in &mut stalled {
        let line = status_line(socket).await;
        assert!(line.contains("408"), "{line}");
    }
    assert!(client.upload_bytes(bytes(6_000)).await.is_ok());
    // The quota counts what is stored: the same bytes again are free, new ones are not.
    assert!(client.upload_bytes(bytes(6_000)).await.is_ok());
    let err = client.upload_bytes(vec![7u8; 6_000]).await.unwrap_err();
    assert!(
        matches!(err, RepositoryError::Http { status: 507 }),
        "{err}"
    );
    assert!(client.upload_bytes(vec![7u8; 3_000]).await.is_ok());
    // An upload must say its size up front.
    let mut chunked = TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "PUT /blobs/{digest} HTTP/1.1\r\nHost: repo\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    );
    chunked.write_all(head.as_bytes()).await.unwrap();
    let line = status_line(&mut chunked).await;
    assert!(line.contains("411"), "{line}");
    // A connection that never sends a request is closed after the read timeout.
    let mut silent = TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(crate::federation::PATIENCE, silent.read(&mut buf))
        .await
        .expect("the server closes a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    drop((stalled, chunked));
    server.shutdown().await;
}

/// A connection to `url` from the loopback address `source` (another
/// "host" on this machine: the whole of 127.0.0.0/8 is local).
async fn connect_from(source: [u8; 4], url: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from((source, 0)))
        .unwrap();
    let target: std::net::SocketAddr = url.trim_start_matches("http://").parse().unwrap();
    socket.connect(target).await.unwrap()
}

/// Slowloris: 256 connections from one host each send a byte of headers
/// and hold on. One host holds at most its share of the places, so an
/// honest download from another host completes at once (within 2 s).
#[tokio::test]
async fn slowloris_from_one_host_leaves_room_for_the_others() {
    let server = start_with(|_| {}).await;
    let client = RepositoryClient::new(&server.url, None);
    let blob = client.upload_bytes(bytes(100_000)).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..256 {
        let mut socket = connect_from([127, 0, 0, 2], &server.url).await;
        // Refused connections may already be closed: a failed write is fine.
        let _ = socket.write_all(b"G").await;
        held.push(socket);
    }
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let got = tokio::time::timeout(
        crate::federation::PATIENCE,
        client.download(&blob, &dir.path().join("b"), u64::MAX),
    )
    .await
    .expect("the download is served")
    .unwrap();
    assert_eq!(got, 100_000);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the honest download took {:?}",
        started.elapsed()
    );
    drop(held);
    server.shutdown().await;
}

/// A client that trickles its headers, one byte at a time and never
/// silent for long, is closed once the headers' deadline passes.
#[tokio::test]
async fn headers_trickled_past_their_deadline_close_the_connection() {
    let server = start_with(|c| c.header_timeout = Duration::from_secs(1)).await;
    let mut socket = TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut closed = false;
    // Bounded: the safety net is PATIENCE, never reached when things work.
    while started.elapsed() < crate::federation::PATIENCE {
        if socket.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            _ => {}
        }
    }
    assert!(closed, "the trickling connection was never closed");
    // The idle timeout (60 s) never fired: the headers' deadline did.
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    server.shutdown().await;
}

/// A re-upload of a stored blob is answered at once: nothing is read into
/// `tmp/`, nothing counts against the quota.
#[tokio::test]
async fn a_reupload_of_a_stored_blob_writes_nothing() {
    let server = start_with(|c| c.max_total_bytes = 1_000).await;
    let client = RepositoryClient::new(&server.url, None);
    let blob = client.upload_bytes(bytes(600)).await.unwrap();
    // The same digest again, announcing far more than the quota and
    // sending only a little: answered before the body.
    let mut again = stalled_upload(&server.url, &blob.sha256, 600, 10).await;
    let line = status_line(&mut again).await;
    assert!(line.contains("201"), "{line}");
    let tmp: Vec<_> = std::fs::read_dir(server.dir.path().join("tmp"))
        .unwrap()
        .collect();
    assert!(tmp.is_empty(), "{tmp:?}");
    // The quota still has its 400 bytes.
    assert!(client.upload_bytes(vec![3u8; 400]).await.is_ok());
    // A large blob the repository holds is not sent again at all.
    let big = start_with(|_| {}).await;
    let client = RepositoryClient::new(&big.url, None);
    let first = client.upload_bytes(bytes(200_000)).await.unwrap();
    assert_eq!(client.upload_bytes(bytes(200_000)).await.unwrap(), first);
    drop(again);
    server.shutdown().await;
    big.shutdown().await;
}
