//! Encoding and checked decoding of messages.

use serde_json::Value;

use super::{Message, PROTOCOL_VERSION, RequestRef};

/// Largest message accepted, in bytes. Messages carry URLs, not payloads.
pub const MAX_MESSAGE_BYTES: usize = 1 << 20;

/// Why bytes are not a message this build accepts. Each variant keeps what
/// could be read of the request, so the error reply can say what it answers.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Not JSON, or not a JSON object.
    #[error("malformed message: {reason}")]
    Malformed {
        /// The parser's message.
        reason: String,
    },
    /// Over [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes is over the 1 MiB limit; large data goes through the repository")]
    TooLarge(usize),
    /// Missing, malformed or of another major version.
    #[error(
        "protocol version {theirs:?} is not compatible with this node's {PROTOCOL_VERSION}; upgrade the older side"
    )]
    Version {
        /// What the sender said, if anything.
        theirs: Option<String>,
        /// What could be read of the request.
        request: Option<RequestRef>,
    },
    /// A `command` this build does not know.
    #[error("unknown command `{command}`")]
    UnknownCommand {
        /// The command.
        command: String,
        /// What could be read of the request.
        request: Option<RequestRef>,
    },
    /// A known command with a missing, unknown or ill-typed field.
    #[error("bad `{command}` message: {reason}")]
    BadFields {
        /// The command.
        command: String,
        /// serde's message, naming the field.
        reason: String,
        /// What could be read of the request.
        request: Option<RequestRef>,
    },
}

impl WireError {
    /// The request the bad message was, as far as it could be read.
    pub fn request(&self) -> Option<&RequestRef> {
        match self {
            WireError::Malformed { .. } | WireError::TooLarge(_) => None,
            WireError::Version { request, .. }
            | WireError::UnknownCommand { request, .. }
            | WireError::BadFields { request, .. } => request.as_ref(),
        }
    }

    /// The researcher who sent it, when readable.
    pub fn researcher_id(bytes: &[u8]) -> Option<String> {
        let v: Value = serde_json::from_slice(bytes).ok()?;
        v.get("researcher_id")?.as_str().map(str::to_string)
    }
}

/// JSON bytes of `message` with the protocol version.
pub fn encode(message: &Message) -> Vec<u8> {
    let mut value = serde_json::to_value(message).expect("messages always serialise");
    if let Value::Object(map) = &mut value {
        map.insert(
            "protocol_version".into(),
            Value::String(PROTOCOL_VERSION.into()),
        );
    }
    serde_json::to_vec(&value).expect("a JSON value always serialises")
}

fn major(version: &str) -> Option<&str> {
    let (major, minor) = version.split_once('.')?;
    (major.parse::<u32>().is_ok() && minor.parse::<u32>().is_ok()).then_some(major)
}

/// Decode and check one message.
pub fn decode(bytes: &[u8]) -> Result<Message, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| WireError::Malformed {
        reason: e.to_string(),
    })?;
    let Value::Object(mut map) = value else {
        return Err(WireError::Malformed {
            reason: "a message is a JSON object".into(),
        });
    };
    let command = map
        .get("command")
        .and_then(Value::as_str)
        .map(str::to_string);
    let request = command.clone().map(|command| RequestRef {
        command,
        request_id: map
            .get("request_id")
            .and_then(Value::as_str)
            .map(str::to_string),
    });
    let theirs = match map.remove("protocol_version") {
        Some(Value::String(v)) => Some(v),
        _ => None,
    };
    let ours = major(PROTOCOL_VERSION);
    if theirs.as_deref().and_then(major) != ours {
        return Err(WireError::Version { theirs, request });
    }
    let Some(command) = command else {
        return Err(WireError::Malformed {
            reason: "the message has no `command`".into(),
        });
    };
    serde_json::from_value(Value::Object(map)).map_err(|e| {
        let reason = e.to_string();
        if reason.starts_with("unknown variant") {
            WireError::UnknownCommand { command, request }
        } else {
            WireError::BadFields {
                command,
                reason,
                request,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping() -> Message {
        Message::Ping {
            researcher_id: "r".into(),
            sequence: 3,
        }
    }

    #[test]
    fn round_trips_with_the_version() {
        let bytes = encode(&ping());
        assert!(String::from_utf8_lossy(&bytes).contains(r#""protocol_version":"1.0""#));
        assert_eq!(decode(&bytes).unwrap(), ping());
    }

    #[test]
    fn refuses_other_major_versions_and_accepts_other_minors() {
        let v2 = br#"{"protocol_version":"2.0","command":"list_request","researcher_id":"r","request_id":"q1","extra":1}"#;
        let err = decode(v2).unwrap_err();
        assert!(matches!(err, WireError::Version { .. }), "{err}");
        assert_eq!(err.request().unwrap().request_id.as_deref(), Some("q1"));
        let none = br#"{"command":"ping","researcher_id":"r","sequence":1}"#;
        assert!(matches!(
            decode(none).unwrap_err(),
            WireError::Version { theirs: None, .. }
        ));
        let minor =
            br#"{"protocol_version":"1.7","command":"ping","researcher_id":"r","sequence":1}"#;
        assert_eq!(
            decode(minor).unwrap(),
            Message::Ping {
                researcher_id: "r".into(),
                sequence: 1
            }
        );
    }

    #[test]
    fn names_the_bad_field_and_unknown_commands() {
        let extra = br#"{"protocol_version":"1.0","command":"ping","researcher_id":"r","sequence":1,"seqence":2}"#;
        let err = decode(extra).unwrap_err().to_string();
        assert!(
            err.contains("bad `ping` message") && err.contains("seqence"),
            "{err}"
        );
        let typed =
            br#"{"protocol_version":"1.0","command":"ping","researcher_id":"r","sequence":"one"}"#;
        let err = decode(typed).unwrap_err().to_string();
        assert!(err.contains("invalid type"), "{err}");
        let unknown = br#"{"protocol_version":"1.0","command":"reboot","request_id":"x"}"#;
        let err = decode(unknown).unwrap_err();
        assert!(
            matches!(err, WireError::UnknownCommand { ref command, .. } if command == "reboot"),
            "{err}"
        );
        assert!(matches!(
            decode(b"{not json").unwrap_err(),
            WireError::Malformed { .. }
        ));
        assert!(matches!(
            decode(b"[1,2]").unwrap_err(),
            WireError::Malformed { .. }
        ));
        assert!(matches!(
            decode(&vec![b' '; MAX_MESSAGE_BYTES + 1]).unwrap_err(),
            WireError::TooLarge(_)
        ));
    }
}
