//! [`BrokerConfig`]: where the broker is and how to talk to it.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::TransportError;
use crate::wire::MAX_MESSAGE_BYTES;

/// How to reach the MQTT broker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// `mqtt://host[:port]` (plain, default port 1883) or `mqtts://host[:port]` (TLS, 8883).
    pub url: String,
    /// MQTT username, when the broker checks credentials.
    pub username: Option<String>,
    /// MQTT password.
    pub password: Option<String>,
    /// PEM file of the certificate authority that signed the broker's
    /// certificate (mqtts only); the system roots otherwise.
    pub ca_file: Option<PathBuf>,
    /// Seconds between keep-alive pings; the broker declares us gone (and
    /// publishes our last will) after 1.5× this without traffic.
    pub keep_alive_secs: u64,
    /// Connection attempts before giving up at start; after the first
    /// success the client retries forever.
    pub connect_attempts: u32,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig::new("mqtt://127.0.0.1:1883")
    }
}

impl BrokerConfig {
    /// A plain configuration for `url`, with defaults.
    pub fn new(url: impl Into<String>) -> Self {
        BrokerConfig {
            url: url.into(),
            username: None,
            password: None,
            ca_file: None,
            keep_alive_secs: 30,
            connect_attempts: 20,
        }
    }

    /// Largest MQTT packet sent or accepted: a full message plus the header.
    pub fn max_packet_bytes() -> usize {
        MAX_MESSAGE_BYTES + 4096
    }

    /// Keep-alive interval.
    pub fn keep_alive(&self) -> Duration {
        Duration::from_secs(self.keep_alive_secs.max(5))
    }

    /// Host, port and whether TLS is used, from the URL.
    pub fn endpoint(&self) -> Result<Endpoint, TransportError> {
        let bad = |reason: &str| TransportError::BadUrl {
            url: self.url.clone(),
            reason: reason.to_string(),
        };
        let (tls, rest) = if let Some(rest) = self.url.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = self.url.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(bad("unknown scheme"));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('@') {
            return Err(bad(
                "paths and credentials do not belong in the URL; set username and password separately",
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| bad(&format!("port `{port}` is not a number from 0 to 65535")))?;
                (host, port)
            }
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if self.ca_file.is_some() && !tls {
            return Err(bad(
                "ca_file is set but the scheme is mqtt://; use mqtts://",
            ));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
            tls,
        })
    }
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether to speak TLS.
    pub tls: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Result<Endpoint, String> {
        BrokerConfig::new(url).endpoint().map_err(|e| e.to_string())
    }

    #[test]
    fn urls() {
        let e = endpoint("mqtt://127.0.0.1:1884").unwrap();
        assert_eq!((e.host.as_str(), e.port, e.tls), ("127.0.0.1", 1884, false));
        let e = endpoint("mqtts://broker.example.org").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.tls),
            ("broker.example.org", 8883, true)
        );
        assert_eq!(endpoint("mqtt://localhost/").unwrap().port, 1883);
        assert_eq!(endpoint("mqtt://[::1]:1999").unwrap().host, "::1");
        for (bad, why) in [
            ("http://x", "unknown scheme"),
            ("mqtt://x:99999", "port `99999`"),
            ("mqtt://u:p@x", "credentials"),
            ("mqtt://:1883", "no host"),
        ] {
            let err = endpoint(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
        let mut tls_on_plain = BrokerConfig::new("mqtt://x");
        tls_on_plain.ca_file = Some("ca.pem".into());
        assert!(
            tls_on_plain
                .endpoint()
                .unwrap_err()
                .to_string()
                .contains("mqtts://")
        );
    }
}
