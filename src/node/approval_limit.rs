//! [`ApprovalLimit`]: how often one researcher key may ask this node's
//! operator to approve a plan. Each request is written to the node's log
//! for the operator to read; without a limit, a researcher could fill the
//! log (and the operator's attention) as fast as the broker carries
//! messages.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Requests one key may make at once before waiting.
const BURST: f64 = 10.0;

/// One more request allowed per this much time.
const REFILL: Duration = Duration::from_secs(6);

/// Keys remembered; past this the least recently seen is forgotten.
const MAX_KEYS: usize = 1024;

/// Longest approval description written to the log, in characters.
pub(crate) const MAX_DESCRIPTION_CHARS: usize = 500;

/// A token bucket per researcher key.
#[derive(Debug, Default)]
pub(crate) struct ApprovalLimit {
    buckets: HashMap<String, (f64, Instant)>,
}

impl ApprovalLimit {
    /// Whether `key` may ask again at `now` (and count it if so).
    pub(crate) fn allow(&mut self, key: &str, now: Instant) -> bool {
        if !self.buckets.contains_key(key) && self.buckets.len() >= MAX_KEYS {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                self.buckets.remove(&oldest);
            }
        }
        let (tokens, seen) = self.buckets.entry(key.to_string()).or_insert((BURST, now));
        let refilled = now.saturating_duration_since(*seen).as_secs_f64() / REFILL.as_secs_f64();
        *tokens = (*tokens + refilled).min(BURST);
        *seen = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A description as the operator reads it in the log: control characters
/// (terminal escapes among them) replaced, at most
/// [`MAX_DESCRIPTION_CHARS`] characters, saying how much was cut.
pub(crate) fn loggable(description: &str) -> String {
    let total = description.chars().count();
    let mut shown: String = description
        .chars()
        .take(MAX_DESCRIPTION_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if total > MAX_DESCRIPTION_CHARS {
        shown.push_str(&format!(
            " … [{} more characters cut]",
            total - MAX_DESCRIPTION_CHARS
        ));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_a_burst_then_one_request_per_refill() {
        let mut limit = ApprovalLimit::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(limit.allow("k", t0));
        }
        assert!(!limit.allow("k", t0));
        assert!(limit.allow("other", t0), "keys are counted apart");
        assert!(limit.allow("k", t0 + REFILL));
        assert!(!limit.allow("k", t0 + REFILL));
    }

    #[test]
    fn the_memory_of_keys_is_bounded() {
        let mut limit = ApprovalLimit::default();
        let t0 = Instant::now();
        for n in 0..MAX_KEYS + 10 {
            limit.allow(&n.to_string(), t0 + Duration::from_millis(n as u64));
        }
        assert_eq!(limit.buckets.len(), MAX_KEYS);
    }

    #[test]
    fn descriptions_are_cut_and_lose_their_escapes() {
        assert_eq!(loggable("fine"), "fine");
        assert_eq!(loggable("red\u{1b}[31m\nline"), "red [31m line");
        let long = loggable(&"x".repeat(2000));
        assert!(long.ends_with("[1500 more characters cut]"), "{long}");
        assert_eq!(
            long.chars().filter(|&c| c == 'x').count(),
            MAX_DESCRIPTION_CHARS
        );
    }
}
