//! [`TrainJob`]: a train request waiting in the node's queue.

use std::time::Instant;

use crate::identity::PublicKey;
use crate::wire::{RequestRef, TrainRequest};

/// A train request waiting in the queue, with the key that signed it and
/// the time it arrived.
pub(crate) struct TrainJob {
    pub(crate) request: TrainRequest,
    /// The researcher's verified key: what queue places and the memory of
    /// answered requests are counted by, never the id a message claims.
    pub(crate) sender: PublicKey,
    pub(crate) received: Instant,
}

impl TrainJob {
    /// Queue `request`, signed by `sender`, now.
    pub(crate) fn new(request: TrainRequest, sender: PublicKey) -> Self {
        TrainJob {
            request,
            sender,
            received: Instant::now(),
        }
    }

    /// Who sent it and which request it is, to address its answer.
    pub(crate) fn identity(&self) -> (String, RequestRef) {
        let researcher = self.request.researcher_id.clone();
        let request_id = Some(self.request.request_id.clone());
        let request = RequestRef {
            command: "train_request".into(),
            request_id,
        };
        (researcher, request)
    }
}
