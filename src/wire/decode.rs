//! Encoding and checked decoding of messages.

use serde_json::Value;

use super::topics::{MAX_ID_BYTES, MAX_REQUEST_ID_BYTES, valid_name};
use super::{Message, PROTOCOL_VERSION, RequestRef};

/// Fields that name something and may end up in a topic or a file name, with
/// their longest allowed length.
const NAME_FIELDS: [(&str, usize); 5] = [
    ("researcher_id", MAX_ID_BYTES),
    ("node_id", MAX_ID_BYTES),
    ("experiment_id", MAX_ID_BYTES),
    ("dataset_id", MAX_ID_BYTES),
    ("request_id", MAX_REQUEST_ID_BYTES),
];

/// The first name field of `map` (or of the request an error answers, or of
/// a dataset in a reply) that is not a safe name, with the rule it breaks.
fn bad_name(map: &serde_json::Map<String, Value>) -> Option<String> {
    let nested = map
        .get("request")
        .and_then(Value::as_object)
        .into_iter()
        .chain(
            map.get("datasets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object),
        );
    for object in std::iter::once(map).chain(nested) {
        for (field, max) in NAME_FIELDS {
            if let Some(Value::String(name)) = object.get(field)
                && !valid_name(name, max)
            {
                return Some(format!(
                    "`{field}` must be 1 to {max} letters, digits, `-`, `_` or `.` (and not only dots)"
                ));
            }
        }
    }
    None
}

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

    /// The researcher who sent it, when readable and a safe name.
    pub fn researcher_id(bytes: &[u8]) -> Option<String> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return None;
        }
        let v: Value = serde_json::from_slice(bytes).ok()?;
        let id = v.get("researcher_id")?.as_str()?;
        valid_name(id, MAX_ID_BYTES).then(|| id.to_string())
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

/// The major part of a `major.minor` version.
pub(super) fn major(version: &str) -> Option<&str> {
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
            .filter(|id| valid_name(id, MAX_REQUEST_ID_BYTES))
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
    if let Some(reason) = bad_name(&map) {
        return Err(WireError::BadFields {
            command,
            reason,
            request,
        });
    }
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
    use crate::wire::Ping;

    fn ping() -> Message {
        Message::Ping(Ping {
            researcher_id: "r".into(),
            sequence: 3,
        })
    }

    #[test]
    fn round_trips_with_the_version() {
        let bytes = encode(&ping());
        assert!(String::from_utf8_lossy(&bytes).contains(r#""protocol_version":"5.0""#));
        assert_eq!(decode(&bytes).unwrap(), ping());
    }

    #[test]
    fn refuses_other_major_versions_and_accepts_other_minors() {
        let v2 = br#"{"protocol_version":"1.0","command":"list_request","researcher_id":"r","request_id":"q1","extra":1}"#;
        let err = decode(v2).unwrap_err();
        assert!(matches!(err, WireError::Version { .. }), "{err}");
        assert_eq!(err.request().unwrap().request_id.as_deref(), Some("q1"));
        let none = br#"{"command":"ping","researcher_id":"r","sequence":1}"#;
        assert!(matches!(
            decode(none).unwrap_err(),
            WireError::Version { theirs: None, .. }
        ));
        let minor =
            br#"{"protocol_version":"5.7","command":"ping","researcher_id":"r","sequence":1}"#;
        assert_eq!(
            decode(minor).unwrap(),
            Message::Ping(Ping {
                researcher_id: "r".into(),
                sequence: 1
            })
        );
    }

    #[test]
    fn a_train_reply_of_protocol_3_is_refused_by_version() {
        let old = br#"{"protocol_version":"3.0","command":"train_reply","researcher_id":"r","request_id":"q8"}"#;
        let err = decode(old).unwrap_err();
        assert!(
            matches!(&err, WireError::Version { theirs: Some(v), .. } if v == "3.0"),
            "{err}"
        );
    }

    #[test]
    fn a_train_request_of_protocol_2_is_refused_by_version_not_by_field() {
        // What a 2.0 researcher sends: `aggregator_args` was dropped in 3.0.
        let old = br#"{"protocol_version":"2.0","command":"train_request","researcher_id":"r","experiment_id":"e","request_id":"q7","round":1,"dataset_id":"d","plan":{"sha256":"abababababababababababababababababababababababababababababababab","size":1},"params":{"sha256":"abababababababababababababababababababababababababababababababab","size":1},"gradient_correction":null,"model_args":{},"training_args":{},"aggregator_args":{},"seed":1,"training":true}"#;
        let err = decode(old).unwrap_err();
        assert!(
            matches!(&err, WireError::Version { theirs: Some(v), .. } if v == "2.0"),
            "{err}"
        );
        assert_eq!(err.request().unwrap().request_id.as_deref(), Some("q7"));
        assert!(err.to_string().contains("upgrade the older side"), "{err}");
        // The same request in current words still names the stray field.
        let stray = String::from_utf8_lossy(old).replace(r#""2.0""#, r#""5.0""#);
        let err = decode(stray.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("aggregator_args"), "{err}");
    }

    #[test]
    fn names_the_bad_field_and_unknown_commands() {
        let extra = br#"{"protocol_version":"5.0","command":"ping","researcher_id":"r","sequence":1,"seqence":2}"#;
        let err = decode(extra).unwrap_err().to_string();
        assert!(
            err.contains("bad `ping` message") && err.contains("seqence"),
            "{err}"
        );
        let typed =
            br#"{"protocol_version":"5.0","command":"ping","researcher_id":"r","sequence":"one"}"#;
        let err = decode(typed).unwrap_err().to_string();
        assert!(err.contains("invalid type"), "{err}");
        let unknown = br#"{"protocol_version":"5.0","command":"reboot","request_id":"x"}"#;
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

    #[test]
    fn refuses_names_that_could_be_paths_or_topics() {
        let cases = [
            (
                r#""command":"pong","researcher_id":"r","sequence":1,"node_id":"../x","busy":false"#,
                "node_id",
            ),
            (
                r#""command":"pong","researcher_id":"r","sequence":1,"node_id":"/etc","busy":false"#,
                "node_id",
            ),
            (
                r#""command":"pong","researcher_id":"r","sequence":1,"node_id":"..","busy":false"#,
                "node_id",
            ),
            (
                r#""command":"ping","researcher_id":"a/#","sequence":1"#,
                "researcher_id",
            ),
            (
                r#""command":"error","researcher_id":null,"node_id":"n","code":"internal","message":"m","request":{"command":"x","request_id":"../q"}"#,
                "request_id",
            ),
            (
                r#""command":"list_reply","researcher_id":"r","request_id":"q","node_id":"n","datasets":[{"dataset_id":"..","name":"","tags":[],"description":"","data_type":"csv","shape":[],"columns":[],"dtypes":[],"target":null}]"#,
                "dataset_id",
            ),
        ];
        for (body, field) in cases {
            let bytes = format!(r#"{{"protocol_version":"{PROTOCOL_VERSION}",{body}}}"#);
            let err = decode(bytes.as_bytes()).unwrap_err();
            assert!(
                matches!(&err, WireError::BadFields { reason, .. } if reason.contains(field)),
                "{body}: {err}"
            );
        }
        let long = "q".repeat(MAX_REQUEST_ID_BYTES + 1);
        let bytes = format!(
            r#"{{"protocol_version":"{PROTOCOL_VERSION}","command":"list_request","researcher_id":"r","request_id":"{long}"}}"#
        );
        let err = decode(bytes.as_bytes()).unwrap_err();
        assert_eq!(
            err.request().unwrap().request_id,
            None,
            "an unsafe id is not echoed"
        );
        assert_eq!(
            WireError::researcher_id(br#"{"researcher_id":"../r"}"#),
            None
        );
    }
}
