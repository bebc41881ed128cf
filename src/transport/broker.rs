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
