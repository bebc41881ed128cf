//! [`GuardedListener`]: the repository's connections, bounded in number,
//! per peer, in silence and in the time a request's headers may take.
//!
//! axum's server sets no timer, so a client that opens a connection and
//! never sends a request (or stops half-way through its headers) would hold
//! it for ever. Each accepted connection here holds one of a fixed number of
//! places, and is closed when it has received nothing for the idle timeout,
//! whether between requests or within one. That alone does not stop a
//! slow client ("slowloris") that sends one header byte every few seconds:
//! so a request's headers must be complete within a total deadline from
//! their first byte, and one peer address holds at most a share of the
//! places, so the others are always served.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The limits of a [`GuardedListener`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    /// Connections open at once.
    pub(crate) total: usize,
    /// Connections open at once from one peer address.
    pub(crate) per_peer: usize,
    /// Silence (no byte either way) before a connection is closed.
    pub(crate) idle: Duration,
    /// Time from a request's first byte to the end of its headers.
    pub(crate) headers: Duration,
}

/// Connections open per peer address.
type PeerCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Accepts connections while fewer than its limit are open, and fewer than
/// its per-peer limit from the same address.
pub(crate) struct GuardedListener {
    listener: TcpListener,
    places: Arc<Semaphore>,
    peers: PeerCounts,
    limits: ConnectionLimits,
}

impl GuardedListener {
    /// Connections on `listener` within `limits`.
    pub(crate) fn new(listener: TcpListener, limits: ConnectionLimits) -> Self {
        GuardedListener {
            listener,
            places: Arc::new(Semaphore::new(limits.total.max(1))),
            peers: Arc::default(),
            limits,
        }
    }

    /// Count a connection from `peer`, unless it has its share already.
    fn admit(&self, peer: IpAddr) -> Option<PeerPlace> {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let open = peers.entry(peer).or_default();
        if *open >= self.limits.per_peer.max(1) {
            return None;
        }
        *open += 1;
        Some(PeerPlace {
            peers: self.peers.clone(),
            peer,
        })
    }
}

/// One connection counted against its peer's share; uncounted when dropped.
struct PeerPlace {
    peers: PeerCounts,
    peer: IpAddr,
}

impl Drop for PeerPlace {
    fn drop(&mut self) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(open) = peers.get_mut(&self.peer) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                peers.remove(&self.peer);
            }
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
                    let Some(peer) = self.admit(addr.ip()) else {
                        // Closed at once: this address holds its share.
                        tracing::warn!(
                            "refused a connection from {}: it has {} open, the per-peer limit",
                            addr.ip(),
                            self.limits.per_peer
                        );
                        continue;
                    };
                    // Responses are written as headers then body: without
                    // TCP_NODELAY the body waits for the client's delayed ACK,
                    // ~40 ms per download on a kept-alive connection.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::warn!("cannot set TCP_NODELAY: {e}");
                    }
                    let stream = GuardedStream {
                        stream,
                        idle: self.limits.idle,
                        deadline: Box::pin(tokio::time::sleep(self.limits.idle)),
                        headers: HeaderClock::new(self.limits.headers),
                        _place: place,
                        _peer: peer,
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

/// Where a connection is in its current request's headers, and by when
/// they must end: from a request's first byte to the blank line that ends
/// its headers. A response written means the next byte read starts the
/// next request (requests on a kept-alive connection follow responses).
struct HeaderClock {
    limit: Duration,
    /// Set while headers are being received.
    deadline: Option<Pin<Box<Sleep>>>,
    /// How much of `\r\n\r\n` the last bytes matched.
    matched: usize,
    /// Waiting for a request's first byte.
    between_requests: bool,
}

impl HeaderClock {
    fn new(limit: Duration) -> Self {
        HeaderClock {
            limit,
            deadline: None,
            matched: 0,
            between_requests: true,
        }
    }

    /// `bytes` were received.
    fn received(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.between_requests {
            self.between_requests = false;
            self.matched = 0;
            self.deadline = Some(Box::pin(tokio::time::sleep(self.limit)));
        }
        if self.deadline.is_none() {
            return;
        }
        const END: &[u8] = b"\r\n\r\n";
        for &b in bytes {
            self.matched = if b == END[self.matched] {
                self.matched + 1
            } else if b == END[0] {
                1
            } else {
                0
            };
            if self.matched == END.len() {
                self.deadline = None;
                return;
            }
        }
    }

    /// A response is being written: the request's headers are long over.
    fn responded(&mut self) {
        self.deadline = None;
        self.between_requests = true;
    }

    /// Whether the current headers ran past their deadline.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline
            .as_mut()
            .is_some_and(|d| d.as_mut().poll(cx).is_ready())
    }
}

/// A connection that fails its reads after `idle` without a byte going
/// either way (a download in progress keeps it alive), or when a request's
/// headers take longer than their deadline.
pub(crate) struct GuardedStream {
    stream: TcpStream,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
    headers: HeaderClock,
    _place: OwnedSemaphorePermit,
    _peer: PeerPlace,
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
        if self.headers.expired(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request's headers took too long",
            )));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    self.active();
                    let this = &mut *self;
                    this.headers.received(&buf.filled()[before..]);
                }
                Poll::Ready(result)
            }
            Poll::Pending if self.headers.expired(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request's headers took too long",
            ))),
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
            self.headers.responded();
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
            self.headers.responded();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_header_clock_runs_from_a_requests_first_byte_to_its_blank_line() {
        let mut clock = HeaderClock::new(Duration::from_secs(5));
        assert!(clock.deadline.is_none(), "no clock between requests");
        clock.received(b"GET / HTTP/1.1\r\nHost: x\r");
        assert!(clock.deadline.is_some());
        clock.received(b"\n\r");
        assert!(clock.deadline.is_some(), "split across reads");
        clock.received(b"\nbody bytes");
        assert!(clock.deadline.is_none(), "headers ended");
        clock.received(b"more body \r\n\r\n");
        assert!(clock.deadline.is_none(), "a body is not headers");
        clock.responded();
        clock.received(b"G");
        assert!(
            clock.deadline.is_some(),
            "the next request starts its clock"
        );
    }
}
