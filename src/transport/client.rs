//! [`MqttClient`]: one MQTT connection that survives broker restarts.
//!
//! rumqttc's event loop does the protocol work; a task of ours drives it,
//! forwards incoming publications to a channel, re-subscribes and re-announces
//! after every reconnection, and backs off between failed attempts. A broker's
//! refusal (bad credentials, not authorised) is final: retrying would only be
//! refused again, so it is reported, not retried.

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, LastWill, MqttOptions,
    Outgoing, Packet, QoS, SubscribeFilter, SubscribeReasonCode, Transport,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{BrokerConfig, TransportError};
use crate::identity::Identity;
use crate::wire::{MAX_MESSAGE_BYTES, Message, seal};

/// A publication received on one of the session's subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Topic it was published on.
    pub topic: String,
    /// Raw bytes; decode with [`crate::wire::decode`].
    pub payload: Vec<u8>,
}

/// Who we are on the broker and what we listen to.
#[derive(Debug, Clone)]
pub struct Session {
    /// MQTT client id; unique per broker.
    pub client_id: String,
    /// Topic filters to subscribe to (QoS 1), again after every reconnection.
    pub subscriptions: Vec<String>,
    /// Published (retained) by the broker when we vanish without disconnecting.
    pub last_will: Option<(String, Message)>,
    /// Published (retained) after every successful connection, e.g. "online".
    pub announce: Option<(String, Message)>,
    /// Signs every message published on this connection.
    pub identity: Arc<Identity>,
}

/// Publishes messages on the connection, each signed with the session's
/// identity; cheap to clone and share between tasks.
#[derive(Debug, Clone)]
pub struct Publisher {
    client: AsyncClient,
    identity: Arc<Identity>,
}

/// `message` signed, unless it is over the size a peer accepts: rumqttc
/// would otherwise drop the whole connection over one packet.
fn encoded(message: &Message, identity: &Identity) -> Result<Vec<u8>, TransportError> {
    let bytes = seal(message, identity);
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(TransportError::TooLarge(bytes.len()));
    }
    Ok(bytes)
}

impl Publisher {
    /// Publish `message` on `topic` with QoS 1.
    pub async fn publish(&self, topic: &str, message: &Message) -> Result<(), TransportError> {
        self.client
            .publish(
                topic,
                QoS::AtLeastOnce,
                false,
                encoded(message, &self.identity)?,
            )
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Publish raw bytes (tests use this to send what a well-behaved peer never would).
    pub async fn publish_bytes(&self, topic: &str, payload: Vec<u8>) -> Result<(), TransportError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|_| TransportError::Closed)
    }

    /// Publish `message` on `topic` with QoS 1, retained by the broker for later subscribers.
    pub async fn publish_retained(
        &self,
        topic: &str,
        message: &Message,
    ) -> Result<(), TransportError> {
        self.client
            .publish(
                topic,
                QoS::AtLeastOnce,
                true,
                encoded(message, &self.identity)?,
            )
            .await
            .map_err(|_| TransportError::Closed)
    }
}

/// A live connection: a [`Publisher`] plus the task that drives it.
#[derive(Debug)]
pub struct MqttClient {
    publisher: Publisher,
    driver: JoinHandle<()>,
    sessions: Arc<AtomicU64>,
    connected: Arc<std::sync::atomic::AtomicBool>,
}

/// Longest wait for a clean disconnection (what is queued sent, the broker
/// told) before the connection is dropped instead.
const DISCONNECT_WAIT: Duration = Duration::from_secs(2);

/// Delay before reconnection attempt `attempt` (0-based): 100 ms doubling up to 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1 << attempt.min(6))).min(Duration::from_secs(5))
}

fn refusal(code: ConnectReturnCode) -> String {
    match code {
        ConnectReturnCode::BadUserNamePassword => "bad username or password".into(),
        ConnectReturnCode::NotAuthorized => {
            "not authorised (a wrong username or password, or a user the broker does not let in)"
                .into()
        }
        ConnectReturnCode::BadClientId => "client id rejected".into(),
        ConnectReturnCode::RefusedProtocolVersion => "protocol version not supported".into(),
        ConnectReturnCode::ServiceUnavailable => "service unavailable".into(),
        ConnectReturnCode::Success => "success".into(),
    }
}

fn options(config: &BrokerConfig, session: &Session) -> Result<MqttOptions, TransportError> {
    let endpoint = config.endpoint()?;
    let mut options = MqttOptions::new(&session.client_id, &endpoint.host, endpoint.port);
    options
        .set_keep_alive(config.keep_alive())
        .set_clean_session(true)
        .set_max_packet_size(
            BrokerConfig::max_packet_bytes(),
            BrokerConfig::max_packet_bytes(),
        )
        .set_request_channel_capacity(64);
    match (&config.username, &config.password) {
        (Some(user), password) => {
            options.set_credentials(user, password.clone().unwrap_or_default());
        }
        (None, Some(_)) => {
            return Err(TransportError::BadUrl {
                url: config.url.clone(),
                reason: "a password is set without a username".into(),
            });
        }
        (None, None) => {}
    }
    if let Some((topic, message)) = &session.last_will {
        options.set_last_will(LastWill::new(
            topic,
            seal(message, &session.identity),
            QoS::AtLeastOnce,
            true,
        ));
    }
    if endpoint.tls {
        let transport = match &config.ca_file {
            Some(path) => {
                let ca = std::fs::read(path).map_err(|e| {
                    TransportError::Tls(format!("cannot read CA file {}: {e}", path.display()))
                })?;
                native_tls::Certificate::from_pem(&ca).map_err(|e| {
                    TransportError::Tls(format!("{} is not a PEM certificate: {e}", path.display()))
                })?;
                Transport::tls_with_config(rumqttc::TlsConfiguration::SimpleNative {
                    ca,
                    client_auth: None,
                })
            }
            None => Transport::tls_with_config(rumqttc::TlsConfiguration::Native),
        };
        options.set_transport(transport);
    }
    Ok(options)
}

impl MqttClient {
    /// Connect, subscribe and announce; returns once the broker has
    /// acknowledged the subscriptions, so nothing published to us after this
    /// returns can be missed. Incoming publications arrive on the receiver.
    pub async fn connect(
        config: &BrokerConfig,
        session: Session,
    ) -> Result<(MqttClient, mpsc::UnboundedReceiver<Delivery>), TransportError> {
        let options = options(config, &session)?;
        let identity = session.identity.clone();
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        // Messages are small and latency matters: without TCP_NODELAY, Nagle's
        // algorithm meets delayed ACKs and every exchange waits ~40 ms.
        let mut network = eventloop.network_options();
        network.set_tcp_nodelay(true);
        eventloop.set_network_options(network);
        let (deliveries, inbox) = mpsc::unbounded_channel();
        let (ready, connected) = oneshot::channel();
        let sessions = Arc::new(AtomicU64::new(0));
        let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let driver = Driver {
            sessions: sessions.clone(),
            connected: up.clone(),
            client: client.clone(),
            url: config.url.clone(),
            session,
            attempts: config.connect_attempts.max(1),
            logs_in: config.username.is_some(),
            deliveries,
            ready: Some(ready),
        };
        let driver = tokio::spawn(driver.run(eventloop));
        match connected.await {
            Ok(Ok(())) => Ok((
                MqttClient {
                    publisher: Publisher { client, identity },
                    driver,
                    sessions,
                    connected: up,
                },
                inbox,
            )),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(TransportError::Closed),
        }
    }

    /// A handle to publish with.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// How many times the connection was (re)established and subscribed.
    /// When it grows, the broker may have lost what was sent meanwhile (a
    /// restarted broker without persistence): what is still unanswered must
    /// be sent again.
    pub fn sessions(&self) -> u64 {
        self.sessions.load(Ordering::SeqCst)
    }

    /// Whether the broker connection is up now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Disconnect cleanly (the broker then does not publish the last will)
    /// after sending what is queued, and wait for the connection to end —
    /// at most [`DISCONNECT_WAIT`]. With the broker away, nothing can be
    /// sent: the connection is dropped at once.
    pub async fn disconnect(self) {
        if !self.is_connected() {
            self.driver.abort();
            return;
        }
        let MqttClient {
            publisher,
            mut driver,
            ..
        } = self;
        let clean = async {
            if publisher.client.disconnect().await.is_ok() {
                let _ = (&mut driver).await;
            }
        };
        let _ = tokio::time::timeout(DISCONNECT_WAIT, clean).await;
        // Ended already, or stuck: either way it goes now.
        driver.abort();
    }
}

/// The task that drives rumqttc's event loop.
struct Driver {
    sessions: Arc<AtomicU64>,
    /// Whether the broker acknowledged the connection and it has not failed since.
    connected: Arc<std::sync::atomic::AtomicBool>,
    client: AsyncClient,
    url: String,
    session: Session,
    attempts: u32,
    logs_in: bool,
    deliveries: mpsc::UnboundedSender<Delivery>,
    ready: Option<oneshot::Sender<Result<(), TransportError>>>,
}

impl Driver {
    fn fail(&mut self, error: TransportError) {
        match self.ready.take() {
            Some(ready) => {
                let _ = ready.send(Err(error));
            }
            None => tracing::error!("{error}"),
        }
    }

    async fn run(mut self, mut eventloop: EventLoop) {
        let mut failures = 0u32;
        let mut closing = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    failures = 0;
                    self.connected.store(true, Ordering::SeqCst);
                    self.on_connected();
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if ack
                        .return_codes
                        .iter()
                        .any(|c| matches!(c, SubscribeReasonCode::Failure))
                    {
                        let error = TransportError::Refused {
                            url: self.url.clone(),
                            client_id: self.session.client_id.clone(),
                            reason: format!(
                                "subscribing to {:?} was refused",
                                self.session.subscriptions
                            ),
                        };
                        self.fail(error);
                        return;
                    }
                    self.sessions.fetch_add(1, Ordering::SeqCst);
                    if let Some(ready) = self.ready.take() {
                        let _ = ready.send(Ok(()));
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let delivery = Delivery {
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                    };
                    // Nobody listening any more is not an error of the connection.
                    let _ = self.deliveries.send(delivery);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => closing = true,
                Ok(_) => {}
                Err(_) if closing => return,
                Err(ConnectionError::ConnectionRefused(code)) => {
                    let error = TransportError::Refused {
                        url: self.url.clone(),
                        client_id: self.session.client_id.clone(),
                        reason: refusal(code),
                    };
                    self.fail(error);
                    return;
                }
                Err(ConnectionError::RequestsDone) => return,
                // A certificate that does not verify will not verify on retry either.
                Err(ConnectionError::Tls(e)) if self.ready.is_some() => {
                    let error = TransportError::Tls(format!(
                        "{e}; check the broker's certificate and the `ca_file` setting"
                    ));
                    self.fail(error);
                    return;
                }
                Err(e) => {
                    self.connected.store(false, Ordering::SeqCst);
                    failures += 1;
                    if self.ready.is_some() && failures >= self.attempts {
                        let error = TransportError::Unreachable {
                            url: self.url.clone(),
                            attempts: failures,
                            reason: if self.logs_in {
                                format!(
                                    "{e} (a broker that is running may also close the connection because it refuses the username or password)"
                                )
                            } else {
                                e.to_string()
                            },
                        };
                        self.fail(error);
                        return;
                    }
                    tracing::warn!("MQTT connection to {} failed ({e}); retrying", self.url);
                    tokio::time::sleep(backoff(failures - 1)).await;
                }
            }
        }
    }

    /// Subscribe and announce on a fresh connection. `try_` calls: the event
    /// loop we are driving is what drains the request channel, so awaiting
    /// room in it here could deadlock.
    fn on_connected(&mut self) {
        let filters = self
            .session
            .subscriptions
            .iter()
            .map(|t| SubscribeFilter::new(t.clone(), QoS::AtLeastOnce));
        if !self.session.subscriptions.is_empty()
            && let Err(e) = self.client.try_subscribe_many(filters)
        {
            tracing::error!("cannot subscribe: {e}");
        }
        if let Some((topic, message)) = &self.session.announce
            && let Err(e) = self.client.try_publish(
                topic,
                QoS::AtLeastOnce,
                true,
                seal(message, &self.session.identity),
            )
        {
            tracing::error!("cannot announce on {topic}: {e}");
        }
        if self.session.subscriptions.is_empty() {
            self.sessions.fetch_add(1, Ordering::SeqCst);
            if let Some(ready) = self.ready.take() {
                let _ = ready.send(Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert_eq!(backoff(10), Duration::from_secs(5));
    }
}
