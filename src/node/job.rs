//! [`TrainJob`]: a train request waiting in the node's queue.

use std::time::Instant;

use crate::wire::{Message, RequestRef};

/// A train request waiting in the queue, with the time it arrived.
pub(crate) struct TrainJob {
    pub(crate) message: Message,
    pub(crate) received: Instant,
}

impl TrainJob {
    /// Queue `message` (a [`Message::TrainRequest`]) now.
    pub(crate) fn new(message: Message) -> Self {
        TrainJob {
            message,
            received: Instant::now(),
        }
    }

    /// Who sent it and which request it is, to address its answer.
    pub(crate) fn identity(&self) -> (String, RequestRef) {
        let (researcher, request_id) = match &self.message {
            Message::TrainRequest {
                researcher_id,
                request_id,
                ..
            } => (researcher_id.clone(), Some(request_id.clone())),
            _ => (String::new(), None),
        };
        let request = RequestRef {
            command: "train_request".into(),
            request_id,
        };
        (researcher, request)
    }
}
