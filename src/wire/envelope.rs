//! Signed messages (protocol 5.0): what travels on MQTT is an envelope
//!
//! ```json
//! {"protocol_version": "5.0",
//!  "signer": {"role": "node", "id": "hospital-a", "key": "ed25519:…"},
//!  "body": "{\"command\":\"train_reply\", …}",
//!  "signature": "<128 hex digits>"}
//! ```
//!
//! The signature covers a domain-separation line, the signer's role and id,
//! and the body's exact bytes — kept as a string, so no re-encoding can
//! change what was signed. A receiver ([`open`]) checks, in this order and
//! before reading the body: the protocol version, that the key is the one
//! its roster pins for that id (see [`crate::identity::KeyRing`]), that the
//! signature verifies; then it decodes the body as before ([`super::decode`])
//! and refuses a body whose sender is not the signer (a node signing a reply
//! "from" another node).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::decode::{MAX_MESSAGE_BYTES, WireError, decode, encode, major};
use super::topics::{MAX_ID_BYTES, valid_name};
use super::{Message, PROTOCOL_VERSION, RequestRef};
use crate::identity::{Identity, KeyRing, PublicKey, Refusal, Role, Trust};

/// Who signed an envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignerRef {
    /// Node or researcher.
    pub role: Role,
    /// The id it signs as.
    pub id: String,
    /// Its public key (what the receiver's roster must pin for the id).
    pub key: PublicKey,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    protocol_version: String,
    signer: SignerRef,
    body: String,
    signature: String,
}

/// The bytes a signature covers.
fn signed_bytes(role: Role, id: &str, body: &str) -> Vec<u8> {
    let mut bytes = format!("fedwasm signed message v5\n{role}\n{id}\n").into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// `message` encoded and signed by `identity`: the bytes to publish.
pub fn seal(message: &Message, identity: &Identity) -> Vec<u8> {
    let body = String::from_utf8(encode(message)).expect("serde_json writes UTF-8");
    seal_raw(&body, identity)
}

/// `body` signed by `identity` as it is, whatever it holds: what a signed
/// but hostile peer can send. For tests and fuzzing; [`seal`] is the way
/// to send a message.
#[doc(hidden)]
pub fn seal_raw(body: &str, identity: &Identity) -> Vec<u8> {
    let signature = identity.sign(&signed_bytes(identity.role(), identity.id(), body));
    let envelope = Envelope {
        protocol_version: PROTOCOL_VERSION.into(),
        signer: SignerRef {
            role: identity.role(),
            id: identity.id().to_string(),
            key: identity.public(),
        },
        body: body.to_string(),
        signature: hex::encode(signature),
    };
    serde_json::to_vec(&envelope).expect("an envelope always serialises")
}

/// A message whose signature checked out.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The message.
    pub message: Message,
    /// The key that signed it: what a node keys queues and memory by.
    pub key: PublicKey,
    /// Pinned before, or just now (trust on first use).
    pub trust: Trust,
}

/// Why received bytes were not taken as a message.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Not a message of this protocol (a clear error can go back).
    #[error(transparent)]
    Wire(#[from] WireError),
    /// The signer is not believed: unknown key, another key, bad signature.
    #[error(transparent)]
    Refused(Refusal),
    /// A signed body that speaks for someone other than its signer.
    #[error("{signer_role} `{signer}` signed a message from {role} `{claimed}`: refused")]
    Impostor {
        /// Who signed.
        signer_role: Role,
        /// Its id.
        signer: String,
        /// Whom the body claims to be from.
        role: Role,
        /// That id.
        claimed: String,
    },
}

impl OpenError {
    /// The researcher to tell about a bad message, when one can be read and
    /// telling it leaks nothing: the signer of a request with a
    /// researcher's key, or the `researcher_id` of an old-protocol message.
    pub fn researcher_id(&self, bytes: &[u8]) -> Option<String> {
        match self {
            OpenError::Wire(_) | OpenError::Refused(Refusal::Unknown { .. }) => signer_of(bytes)
                .filter(|s| s.role == Role::Researcher)
                .map(|s| s.id)
                .or_else(|| WireError::researcher_id(bytes)),
            OpenError::Refused(_) | OpenError::Impostor { .. } => None,
        }
    }

    /// The request it was, as far as it could be read.
    pub fn request(&self, bytes: &[u8]) -> Option<RequestRef> {
        match self {
            OpenError::Wire(e) => e.request().cloned().or_else(|| body_request(bytes)),
            OpenError::Refused(Refusal::Unknown { .. }) => body_request(bytes),
            OpenError::Refused(_) | OpenError::Impostor { .. } => None,
        }
    }
}

/// The signer an envelope names, if it reads as one.
fn signer_of(bytes: &[u8]) -> Option<SignerRef> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return None;
    }
    let envelope: Envelope = serde_json::from_slice(bytes).ok()?;
    valid_name(&envelope.signer.id, MAX_ID_BYTES).then_some(envelope.signer)
}

/// The command and request id of an envelope's body, as far as it reads.
fn body_request(bytes: &[u8]) -> Option<RequestRef> {
    let envelope: Envelope = serde_json::from_slice(bytes).ok()?;
    match decode(envelope.body.as_bytes()) {
        Ok(_) => None,
        Err(e) => e.request().cloned(),
    }
    .or_else(|| {
        let body: Value = serde_json::from_str(&envelope.body).ok()?;
        Some(RequestRef {
            command: body.get("command")?.as_str()?.to_string(),
            request_id: body
                .get("request_id")
                .and_then(Value::as_str)
                .filter(|id| valid_name(id, super::topics::MAX_REQUEST_ID_BYTES))
                .map(str::to_string),
        })
    })
}

/// Check and decode received bytes: version, pinned key, signature, body,
/// sender (see the module docs).
pub fn open(bytes: &[u8], keyring: &KeyRing) -> Result<Opened, OpenError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()).into());
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| WireError::Malformed {
        reason: e.to_string(),
    })?;
    let theirs = value.get("protocol_version").and_then(Value::as_str);
    if theirs.and_then(major) != major(PROTOCOL_VERSION) {
        // An older peer's unsigned message: say which version it speaks.
        return Err(decode(bytes)
            .err()
            .unwrap_or(WireError::Version {
                theirs: theirs.map(str::to_string),
                request: None,
            })
            .into());
    }
    let envelope: Envelope = serde_json::from_value(value).map_err(|e| WireError::Malformed {
        reason: format!(
            "a {PROTOCOL_VERSION} message is a signed envelope (protocol_version, signer, body, signature): {e}"
        ),
    })?;
    let SignerRef { role, id, key } = &envelope.signer;
    if !valid_name(id, MAX_ID_BYTES) {
        return Err(WireError::Malformed {
            reason: "the signer's id is not a valid id".into(),
        }
        .into());
    }
    let mut signature = [0u8; 64];
    hex::decode_to_slice(&envelope.signature, &mut signature).map_err(|_| {
        WireError::Malformed {
            reason: "`signature` must be 128 hex digits".into(),
        }
    })?;
    let trust = keyring
        .verify(
            *role,
            id,
            key,
            &signed_bytes(*role, id, &envelope.body),
            &signature,
        )
        .map_err(OpenError::Refused)?;
    let message = decode(envelope.body.as_bytes())?;
    let (claimed_role, claimed) = message.sender();
    if claimed_role != *role || claimed != id {
        return Err(OpenError::Impostor {
            signer_role: *role,
            signer: id.clone(),
            role: claimed_role,
            claimed: claimed.to_string(),
        });
    }
    Ok(Opened {
        message,
        key: *key,
        trust,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Roster;
    use crate::wire::{NodeStatus, Ping};

    fn alice() -> Identity {
        Identity::from_seed(Role::Researcher, "alice", [1; 32])
    }

    fn ring(pins: &[&Identity]) -> KeyRing {
        let mut roster = Roster::default();
        for identity in pins {
            roster
                .pin(identity.role(), identity.id(), identity.public())
                .unwrap();
        }
        KeyRing::in_memory(roster)
    }

    fn ping(from: &str) -> Message {
        Message::Ping(Ping {
            researcher_id: from.into(),
            sequence: 7,
        })
    }

    #[test]
    fn a_sealed_message_opens_under_the_pinned_key() {
        let bytes = seal(&ping("alice"), &alice());
        let opened = open(&bytes, &ring(&[&alice()])).unwrap();
        assert_eq!(opened.message, ping("alice"));
        assert_eq!(opened.key, alice().public());
        assert_eq!(opened.trust, Trust::Pinned);
        insta::assert_snapshot!(String::from_utf8(bytes).unwrap());
    }

    #[test]
    fn an_unknown_or_other_key_is_refused_and_counted() {
        let mallory = Identity::from_seed(Role::Researcher, "alice", [9; 32]);
        let keyring = ring(&[&alice()]);
        let err = open(&seal(&ping("alice"), &mallory), &keyring).unwrap_err();
        assert!(
            matches!(err, OpenError::Refused(Refusal::Changed { .. })),
            "{err}"
        );
        let stranger = Identity::from_seed(Role::Researcher, "eve", [8; 32]);
        let err = open(&seal(&ping("eve"), &stranger), &keyring).unwrap_err();
        assert!(
            matches!(err, OpenError::Refused(Refusal::Unknown { .. })),
            "{err}"
        );
        assert_eq!(keyring.refused(), 2);
    }

    #[test]
    fn a_tampered_body_or_signer_is_refused() {
        let keyring = ring(&[&alice()]);
        let bytes = String::from_utf8(seal(&ping("alice"), &alice())).unwrap();
        let tampered = bytes.replace(r#"\"sequence\":7"#, r#"\"sequence\":8"#);
        assert_ne!(tampered, bytes);
        let err = open(tampered.as_bytes(), &keyring).unwrap_err();
        assert!(
            matches!(err, OpenError::Refused(Refusal::BadSignature { .. })),
            "{err}"
        );
        let node = Identity::from_seed(Role::Node, "alice", [1; 32]);
        let keyring = ring(&[&alice(), &node]);
        let as_node = bytes.replace(r#""role":"researcher""#, r#""role":"node""#);
        let err = open(as_node.as_bytes(), &keyring).unwrap_err();
        assert!(
            matches!(err, OpenError::Refused(Refusal::BadSignature { .. })),
            "{err}"
        );
    }

    #[test]
    fn a_signer_speaking_for_another_is_an_impostor() {
        let n1 = Identity::from_seed(Role::Node, "n1", [4; 32]);
        let keyring = ring(&[&n1, &alice()]);
        let lie = Message::NodeStatus(NodeStatus {
            node_id: "n2".into(),
            online: false,
        });
        let err = open(&seal(&lie, &n1), &keyring).unwrap_err();
        assert!(matches!(err, OpenError::Impostor { .. }), "{err}");
        let err = open(&seal(&ping("bob"), &alice()), &keyring).unwrap_err();
        assert!(
            err.to_string()
                .contains("`alice` signed a message from researcher `bob`")
        );
    }

    #[test]
    fn an_old_or_unsigned_message_gets_a_readable_error() {
        let keyring = ring(&[]);
        let old = br#"{"protocol_version":"4.0","command":"list_request","researcher_id":"r","request_id":"q1"}"#;
        let err = open(old, &keyring).unwrap_err();
        assert!(
            matches!(err, OpenError::Wire(WireError::Version { .. })),
            "{err}"
        );
        assert_eq!(err.researcher_id(old).as_deref(), Some("r"));
        assert_eq!(err.request(old).unwrap().request_id.as_deref(), Some("q1"));
        let unsigned =
            br#"{"protocol_version":"5.0","command":"ping","researcher_id":"r","sequence":1}"#;
        let err = open(unsigned, &keyring).unwrap_err();
        assert!(err.to_string().contains("signed envelope"), "{err}");
        assert!(open(b"[]", &keyring).is_err());
    }
}
