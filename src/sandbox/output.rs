//! [`CappedOutput`]: where a plan's stdout and stderr go.
//!
//! wasmtime's `MemoryOutputPipe` fails a write past its capacity, and Rust's
//! `print!` panics on a failed write, so a plan that prints a lot would die
//! with "Broken pipe". This buffer keeps the first bytes up to its capacity
//! and drops the rest *silently*, counting them: printing never fails, and
//! the host still holds at most the capacity.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The most a plan may hand over in one write; what fits is kept.
const WRITE_PERMIT: usize = 64 * 1024;

#[derive(Debug, Default)]
struct Buffer {
    kept: Vec<u8>,
    dropped: u64,
}

/// A bounded, shared output buffer that never refuses a write.
#[derive(Debug, Clone)]
pub(crate) struct CappedOutput {
    capacity: usize,
    buffer: Arc<Mutex<Buffer>>,
}

impl CappedOutput {
    /// An empty buffer keeping at most `capacity` bytes.
    pub(crate) fn new(capacity: usize) -> Self {
        CappedOutput {
            capacity,
            buffer: Arc::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buffer> {
        // Nothing panics while the lock is held, so a poisoned one is consistent.
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep what fits of `bytes`, count the rest.
    fn keep(&self, bytes: &[u8]) {
        let mut buffer = self.lock();
        let room = self.capacity.saturating_sub(buffer.kept.len());
        let take = room.min(bytes.len());
        buffer.kept.extend_from_slice(&bytes[..take]);
        buffer.dropped += (bytes.len() - take) as u64;
    }

    /// What was kept, as text, with a note of how much was dropped.
    pub(crate) fn text(&self) -> String {
        let buffer = self.lock();
        let mut text = String::from_utf8_lossy(&buffer.kept).into_owned();
        if buffer.dropped > 0 {
            text.push_str(&format!(" … [{} more bytes dropped]", buffer.dropped));
        }
        text
    }
}

impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.keep(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_start_drops_the_rest_and_never_fails() {
        let out = CappedOutput::new(10);
        let mut stream = out.p2_stream();
        for _ in 0..3 {
            stream.write(Bytes::from_static(b"hello ")).unwrap();
            assert!(stream.check_write().unwrap() > 0);
        }
        assert_eq!(out.text(), "hello hell … [8 more bytes dropped]");
    }
}
