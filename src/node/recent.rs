//! [`RecentRequests`]: which train requests a node has in hand or answered.
//!
//! After a broker restart a researcher sends its unanswered requests again,
//! and a node may already be running one of them, or may have answered it
//! while the broker was away. The node recognises such a request by its
//! researcher and request ids: one in hand is not queued twice, one answered
//! gets the same answer again, so no request ever trains twice.

use std::collections::{HashMap, VecDeque};

use crate::wire::Message;

/// What the node knows of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    /// Never seen (now recorded as in hand).
    New,
    /// Queued or running: its answer will come.
    InHand,
    /// Answered with this message.
    Answered(Box<Message>),
}

/// Requests in hand (as many as the queue holds, plus the one running) and
/// the answers of the latest answered ones.
#[derive(Debug)]
pub struct RecentRequests {
    states: HashMap<(String, String), Seen>,
    /// Answered requests, oldest first, to forget the oldest past `keep`.
    answered: VecDeque<(String, String)>,
    keep: usize,
}

impl RecentRequests {
    /// Remember the answers of the latest `keep` requests.
    pub fn new(keep: usize) -> Self {
        RecentRequests {
            states: HashMap::new(),
            answered: VecDeque::new(),
            keep: keep.max(1),
        }
    }

    /// What is known of `request_id` from `researcher`; a new one is
    /// recorded as in hand.
    pub fn begin(&mut self, researcher: &str, request_id: &str) -> Seen {
        let key = (researcher.to_string(), request_id.to_string());
        match self.states.get(&key) {
            Some(seen) => seen.clone(),
            None => {
                self.states.insert(key, Seen::InHand);
                Seen::New
            }
        }
    }

    /// Forget a request that was refused before it was queued, so that
    /// sending it again later is a new attempt.
    pub fn forget(&mut self, researcher: &str, request_id: &str) {
        self.states
            .remove(&(researcher.to_string(), request_id.to_string()));
    }

    /// Record the answer sent for a request.
    pub fn answer(&mut self, researcher: &str, request_id: &str, message: Message) {
        let key = (researcher.to_string(), request_id.to_string());
        let before = self
            .states
            .insert(key.clone(), Seen::Answered(Box::new(message)));
        if !matches!(before, Some(Seen::Answered(_))) {
            self.answered.push_back(key);
        }
        while self.answered.len() > self.keep {
            if let Some(old) = self.answered.pop_front() {
                self.states.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Pong;

    fn pong(sequence: u64) -> Message {
        Message::Pong(Pong {
            researcher_id: "r".into(),
            sequence,
            node_id: "n".into(),
            busy: false,
        })
    }

    #[test]
    fn a_request_is_run_once_and_answered_again_from_memory() {
        let mut recent = RecentRequests::new(2);
        assert_eq!(recent.begin("r", "q1"), Seen::New);
        assert_eq!(recent.begin("r", "q1"), Seen::InHand);
        assert_eq!(
            recent.begin("other", "q1"),
            Seen::New,
            "ids are per researcher"
        );
        recent.answer("r", "q1", pong(1));
        assert_eq!(recent.begin("r", "q1"), Seen::Answered(Box::new(pong(1))));
        // Only the latest answers are kept.
        for (i, id) in ["q2", "q3"].iter().enumerate() {
            assert_eq!(recent.begin("r", id), Seen::New);
            recent.answer("r", id, pong(i as u64 + 2));
        }
        assert_eq!(
            recent.begin("r", "q1"),
            Seen::New,
            "the oldest answer was forgotten"
        );
        assert_eq!(recent.begin("r", "q3"), Seen::Answered(Box::new(pong(3))));
        // A refused request can be tried again.
        assert_eq!(recent.begin("r", "q9"), Seen::New);
        recent.forget("r", "q9");
        assert_eq!(recent.begin("r", "q9"), Seen::New);
    }
}
