//! MQTT topic names. Every topic comes from one of these functions; nothing
//! formats a topic by hand elsewhere, so the broker ACL in the docs and the
//! code cannot drift apart.
//!
//! | topic | direction |
//! |---|---|
//! | `fedwasm/v2/nodes/all` | researcher → every node |
//! | `fedwasm/v2/nodes/<node_id>` | researcher → one node |
//! | `fedwasm/v2/researchers/<researcher_id>/replies` | nodes → that researcher |
//! | `fedwasm/v2/researchers/<researcher_id>/monitoring` | nodes → that researcher (scalars) |
//! | `fedwasm/v2/researchers/<researcher_id>/logs` | nodes → that researcher (log records) |
//! | `fedwasm/v2/researchers/anonymous/replies` | nodes → whoever sent a message without a readable researcher id |
//! | `fedwasm/v2/status/<node_id>` | node online (retained) / last will |
//!
//! Each researcher has topics of its own, so a broker ACL can let a
//! researcher read its replies and nobody else's (see the README's recipe):
//! a node (user = node id) reads `nodes/all` and `nodes/<its id>` and writes
//! `researchers/#` and `status/<its id>`; a researcher (user = researcher id)
//! writes `nodes/#` and reads `researchers/<its id>/#`,
//! `researchers/anonymous/#` and `status/#`.

const ROOT: &str = "fedwasm/v2";

/// The researcher id of errors answering messages whose sender cannot be read.
pub const ANONYMOUS: &str = "anonymous";

/// Researcher → every node.
pub fn all_nodes() -> String {
    format!("{ROOT}/nodes/all")
}

/// Researcher → one node.
pub fn node(node_id: &str) -> String {
    format!("{ROOT}/nodes/{node_id}")
}

/// Nodes → one researcher: replies and errors (`None`: the anonymous topic).
pub fn replies(researcher_id: Option<&str>) -> String {
    format!(
        "{ROOT}/researchers/{}/replies",
        researcher_id.unwrap_or(ANONYMOUS)
    )
}

/// Nodes → one researcher: training scalars.
pub fn monitoring(researcher_id: &str) -> String {
    format!("{ROOT}/researchers/{researcher_id}/monitoring")
}

/// Nodes → one researcher: log records of its tasks.
pub fn logs(researcher_id: &str) -> String {
    format!("{ROOT}/researchers/{researcher_id}/logs")
}

/// Everything a researcher reads about its own requests.
pub fn researcher(researcher_id: &str) -> String {
    format!("{ROOT}/researchers/{researcher_id}/#")
}

/// A node's online status (retained; its last will sets it offline).
pub fn node_status(node_id: &str) -> String {
    format!("{ROOT}/status/{node_id}")
}

/// Every node's status, for the researcher to subscribe to.
pub fn all_node_status() -> String {
    format!("{ROOT}/status/+")
}

/// Longest node, researcher, experiment or dataset id.
pub const MAX_ID_BYTES: usize = 64;

/// Longest request id (a researcher id, a nonce and a counter).
pub const MAX_REQUEST_ID_BYTES: usize = 128;

/// Whether `id` is a safe name of at most `max` bytes: letters, digits, `-`,
/// `_` and `.`, not only dots. Such a name can be part of a topic (no MQTT
/// wildcards or separators) and of a file name (no `/`, never `.` or `..`).
pub fn valid_name(id: &str, max: usize) -> bool {
    !id.is_empty()
        && id.len() <= max
        && !id.bytes().all(|b| b == b'.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Whether `id` can name a node, researcher, experiment or dataset: see
/// [`valid_name`]. Node ids are checked with this at `node init`, and every id
/// in a received message by [`crate::wire::decode`].
pub fn valid_id(id: &str) -> bool {
    valid_name(id, MAX_ID_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_ids() {
        assert_eq!(node("hospital-a"), "fedwasm/v2/nodes/hospital-a");
        assert_eq!(node_status("n1"), "fedwasm/v2/status/n1");
        assert_eq!(
            replies(Some("alice")),
            "fedwasm/v2/researchers/alice/replies"
        );
        assert_eq!(replies(None), "fedwasm/v2/researchers/anonymous/replies");
        assert_eq!(researcher("alice"), "fedwasm/v2/researchers/alice/#");
        assert!(valid_id("node_1.a-b"));
        for bad in [
            "",
            "a/b",
            "a+b",
            "a#",
            "a b",
            ".",
            "..",
            "...",
            "/abs",
            &"x".repeat(65),
        ] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
