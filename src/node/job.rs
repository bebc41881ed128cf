//! [`TrainJob`]: a train request waiting in the node's queue.

use std::time::Instant;

use crate::wire::{RequestRef, TrainRequest};

/// A train request waiting in the queue, with the time it arrived.
pub(crate) struct TrainJob {
    pub(crate) request: TrainRequest,
    pub(crate) received: Instant,
}

impl TrainJob {
    /// Queue `request` now.
    pub(crate) fn new(request: TrainRequest) -> Self {
        TrainJob {
            request,
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
