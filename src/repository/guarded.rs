//! [`GuardedListener`]: the repository's connections, bounded in number and
//! in silence.
//!
//! axum's server sets no timer, so a client that opens a connection and
//! never sends a request (or stops half-way through its headers) would hold
//! it for ever. Each accepted connection here holds one of a fixed number of
//! places, and is closed when it has received nothing for the idle timeout,
//! whether between requests or within one.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Accepts connections while fewer than its limit are open.
pub(crate) struct GuardedListener {
    listener: TcpListener,
    places: Arc<Semaphore>,
    idle: Duration,
}

impl GuardedListener {
    /// At most `connections` open at once, each closed after `idle` of silence.
    pub(crate) fn new(listener: TcpListener, connections: usize, idle: Duration) -> Self {
        GuardedListener {
            listener,
            places: Arc::new(Semaphore::new(connections.max(1))),
            idle,
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // Wait for a place before accepting: excess clients wait in the
            // kernel's backlog instead of holding memory here.
            let Ok(place) = self.places.clone().acquire_owned().await else {
                continue;
            };
            match self.listener.accept().await {
                Ok((stream, addr)) => {
                    // Responses are written as headers then body: without
                    // TCP_NODELAY the body waits for the client's delayed ACK,
                    // ~40 ms per download on a kept-alive connection.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::warn!("cannot set TCP_NODELAY: {e}");
                    }
                    let stream = GuardedStream {
                        stream,
                        idle: self.idle,
                        deadline: Box::pin(tokio::time::sleep(self.idle)),
                        _place: place,
                    };
                    return (stream, addr);
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little, as axum does.
                    tracing::warn!("repository accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

/// A connection that fails its reads after `idle` without a byte going
/// either way (a download in progress keeps it alive).
pub(crate) struct GuardedStream {
    stream: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    _place: OwnedSemaphorePermit,
}

impl GuardedStream {
    /// Bytes moved: the silence starts again.
    fn active(&mut self) {
        let next = Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.active();
                }
                Poll::Ready(result)
            }
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client sent nothing for too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.active();
        }
        written
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            self.active();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
