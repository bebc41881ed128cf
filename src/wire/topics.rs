//! MQTT topic names. Every topic comes from one of these functions; nothing
//! formats a topic by hand elsewhere, so the broker ACL in the docs and the
//! code cannot drift apart.
//!
//! | topic | direction |
//! |---|---|
//! | `fedwasm/v1/nodes/all` | researcher → every node |
//! | `fedwasm/v1/nodes/<node_id>` | researcher → one node |
//! | `fedwasm/v1/researcher/replies` | nodes → researcher |
//! | `fedwasm/v1/researcher/monitoring` | nodes → researcher (scalars) |
//! | `fedwasm/v1/researcher/logs` | nodes → researcher (log records) |
//! | `fedwasm/v1/researcher/status/<node_id>` | node online (retained) / last will |
//!
//! A broker ACL then lets a node (user = node id) read `fedwasm/v1/nodes/all`
//! and `fedwasm/v1/nodes/<its id>` and write `fedwasm/v1/researcher/#`.

const ROOT: &str = "fedwasm/v1";

/// Researcher → every node.
pub fn all_nodes() -> String {
    format!("{ROOT}/nodes/all")
}

/// Researcher → one node.
pub fn node(node_id: &str) -> String {
    format!("{ROOT}/nodes/{node_id}")
}

/// Nodes → researcher: replies and errors.
pub fn replies() -> String {
    format!("{ROOT}/researcher/replies")
}

/// Nodes → researcher: training scalars.
pub fn monitoring() -> String {
    format!("{ROOT}/researcher/monitoring")
}

/// Nodes → researcher: log records.
pub fn logs() -> String {
    format!("{ROOT}/researcher/logs")
}

/// A node's online status (retained; its last will sets it offline).
pub fn node_status(node_id: &str) -> String {
    format!("{ROOT}/researcher/status/{node_id}")
}

/// Every node's status, for the researcher to subscribe to.
pub fn all_node_status() -> String {
    format!("{ROOT}/researcher/status/+")
}

/// Whether `id` can be part of a topic: non-empty, no MQTT wildcards or
/// separators, printable ASCII. Node ids are checked with this at `node init`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_ids() {
        assert_eq!(node("hospital-a"), "fedwasm/v1/nodes/hospital-a");
        assert_eq!(node_status("n1"), "fedwasm/v1/researcher/status/n1");
        assert!(valid_id("node_1.a-b"));
        for bad in ["", "a/b", "a+b", "a#", "a b", &"x".repeat(65)] {
            assert!(!valid_id(bad), "{bad}");
        }
    }
}
