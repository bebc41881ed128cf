//! [`EmbeddedBroker`]: rumqttd in this process, so one machine needs nothing
//! else installed. Any standard MQTT 3.1.1 broker (mosquitto, EMQX, …) can
//! replace it; nothing in fedwasm depends on rumqttd beyond this file.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

use super::{BrokerConfig, TransportError};

/// A running in-process broker. Its threads live as long as the process:
/// rumqttd has no way to stop a broker, so a process that starts one keeps it.
#[derive(Debug, Clone)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

/// How long [`EmbeddedBroker::start`] waits for the listener to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

impl EmbeddedBroker {
    /// Start a broker listening on `bind` (port 0 picks a free port). With
    /// `users`, clients must log in with one of these username → password pairs.
    /// Returns once the broker accepts TCP connections.
    pub fn start(
        bind: SocketAddr,
        users: Option<HashMap<String, String>>,
    ) -> Result<EmbeddedBroker, TransportError> {
        let addr = if bind.port() == 0 {
            // rumqttd binds by address, so find a free port first.
            let probe = TcpListener::bind(bind)
                .map_err(|e| TransportError::Broker(format!("cannot bind {bind}: {e}")))?;
            probe
                .local_addr()
                .map_err(|e| TransportError::Broker(e.to_string()))?
        } else {
            // Fail here, with a clear message, rather than in rumqttd's thread.
            drop(TcpListener::bind(bind).map_err(|e| {
                TransportError::Broker(format!(
                    "cannot listen on {bind}: {e}; is another broker running there?"
                ))
            })?);
            bind
        };
        let mut broker = Broker::new(config(addr, users));
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!("embedded MQTT broker stopped: {e}");
                }
            })
            .map_err(|e| TransportError::Broker(format!("cannot start its thread: {e}")))?;
        let started = Instant::now();
        let connect_to = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        while TcpStream::connect_timeout(&connect_to, Duration::from_secs(1)).is_err() {
            if started.elapsed() > READY_TIMEOUT {
                return Err(TransportError::Broker(format!(
                    "not accepting connections on {addr} after {READY_TIMEOUT:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        set_listener_nodelay(addr);
        Ok(EmbeddedBroker { addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `mqtt://` URL for clients on this machine.
    pub fn url(&self) -> String {
        let host = if self.addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.addr.ip().to_string()
        };
        format!("mqtt://{host}:{}", self.addr.port())
    }
}

fn config(addr: SocketAddr, users: Option<HashMap<String, String>>) -> Config {
    let max_packet = BrokerConfig::max_packet_bytes();
    let server = ServerSettings {
        name: "fedwasm".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: max_packet,
            max_inflight_count: 100,
            auth: users,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 1024,
            max_outgoing_packet_count: 200,
            // The commit log keeps recent messages per topic: a few full-size ones.
            max_segment_size: 4 * max_packet,
            max_segment_count: 4,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Config::default()
    }
}

/// Turn on TCP_NODELAY for the connections rumqttd accepts on `addr`.
///
/// rumqttd does not set it, and without it Nagle's algorithm meets delayed
/// ACKs: a broker that writes a PUBACK and then forwards a reply on the same
/// connection holds the reply ~40 ms (measured: ping round trip 44 ms, 0.3 ms
/// with this). Accepted sockets inherit TCP_NODELAY from their listener on
/// Linux, and rumqttd's listener is private to its thread, so we find it among
/// this process's file descriptors by its local address and set it there.
#[cfg(target_os = "linux")]
fn set_listener_nodelay(addr: SocketAddr) {
    use std::os::fd::BorrowedFd;

    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let is_socket = std::fs::read_link(entry.path())
            .is_ok_and(|target| target.to_string_lossy().starts_with("socket:"));
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if !is_socket {
            continue;
        }
        // SAFETY: the descriptor is only borrowed for three socket option
        // calls, during which it stays open: the listener we look for lives as
        // long as the process, and on any other descriptor (even one closed
        // and reused meanwhile) these calls fail or change nothing we rely on.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let listening = socket.is_listener().unwrap_or(false);
        let ours = socket
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .is_some_and(|a| a == addr);
        if listening && ours {
            if let Err(e) = socket.set_tcp_nodelay(true) {
                tracing::warn!("cannot set TCP_NODELAY on the broker's listener: {e}");
            }
            return;
        }
    }
}

/// Elsewhere rumqttd's connections keep Nagle's algorithm.
#[cfg(not(target_os = "linux"))]
fn set_listener_nodelay(_addr: SocketAddr) {}
