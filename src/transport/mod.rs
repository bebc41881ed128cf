//! MQTT transport: how researcher and nodes exchange [`crate::wire`] messages.
//!
//! - `config`: [`BrokerConfig`], the broker URL, credentials, TLS and limits.
//! - `client`: [`MqttClient`], a connection that retries with backoff,
//!   re-subscribes after every reconnect and hands incoming messages to a channel.
//! - `broker`: `EmbeddedBroker`, an in-process rumqttd for zero-setup runs
//!   (feature `broker`).
//!
//! Every node only connects outwards (to the broker), which is what hospital
//! firewalls allow. Messages are QoS 1 (at least once); requests carry ids so
//! a duplicate is harmless.

#[cfg(feature = "broker")]
pub(crate) mod broker;
pub(crate) mod client;
pub(crate) mod config;
mod error;

#[cfg(feature = "broker")]
pub use broker::EmbeddedBroker;
pub use client::{Delivery, MqttClient, Publisher, Session};
pub use config::BrokerConfig;
pub use error::TransportError;
