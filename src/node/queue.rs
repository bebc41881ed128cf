//! The node's training queue: bounded, and fair between researchers.
//!
//! A train request holds up to a message's worth of memory and a task's worth
//! of the node's time, so the queue has two caps: one for all researchers
//! together and one per researcher. A request past either is refused at once
//! with a "busy" error rather than kept. Waiting requests are served round
//! robin by researcher, so one researcher's burst cannot starve another's
//! single request.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

/// How many train requests a node keeps waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueLimits {
    /// All researchers together.
    pub total: usize,
    /// One researcher.
    pub per_researcher: usize,
}

/// Why a request was not queued; the error reply says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueFull {
    /// Every place is taken.
    #[error(
        "the node's training queue is full ({0} requests waiting); send the request again later"
    )]
    Total(usize),
    /// This researcher already has its share waiting.
    #[error(
        "this researcher already has {0} train requests waiting on the node, its limit; send the request again once one is answered"
    )]
    Researcher(usize),
    /// The node is stopping.
    #[error("the node is shutting down; send the request again later")]
    Closed,
}

#[derive(Debug)]
struct State<T> {
    /// Waiting items of each researcher, oldest first.
    waiting: BTreeMap<String, VecDeque<T>>,
    /// Researchers with waiting items, in serving order.
    turns: VecDeque<String>,
    total: usize,
    closed: bool,
}

/// A bounded queue of `T`, served round robin by researcher.
#[derive(Debug)]
pub struct FairQueue<T> {
    limits: QueueLimits,
    state: Mutex<State<T>>,
    ready: Notify,
}

impl<T> FairQueue<T> {
    /// An empty queue with these limits.
    pub fn new(limits: QueueLimits) -> Self {
        FairQueue {
            limits,
            state: Mutex::new(State {
                waiting: BTreeMap::new(),
                turns: VecDeque::new(),
                total: 0,
                closed: false,
            }),
            ready: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State<T>> {
        // Nothing under this lock can panic half-way, so a poisoned lock is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue `item` for `researcher`, or say why not.
    pub fn push(&self, researcher: &str, item: T) -> Result<(), QueueFull> {
        let mut state = self.state();
        if state.closed {
            return Err(QueueFull::Closed);
        }
        if state.total >= self.limits.total {
            return Err(QueueFull::Total(state.total));
        }
        let mine = state.waiting.get(researcher).map_or(0, VecDeque::len);
        if mine >= self.limits.per_researcher {
            return Err(QueueFull::Researcher(mine));
        }
        if mine == 0 {
            state.turns.push_back(researcher.to_string());
        }
        state
            .waiting
            .entry(researcher.to_string())
            .or_default()
            .push_back(item);
        state.total += 1;
        drop(state);
        self.ready.notify_one();
        Ok(())
    }

    fn take(&self) -> Option<Option<T>> {
        let mut state = self.state();
        if state.closed {
            return Some(None);
        }
        let researcher = state.turns.pop_front()?;
        let queue = state.waiting.get_mut(&researcher)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            state.waiting.remove(&researcher);
        } else {
            state.turns.push_back(researcher);
        }
        state.total -= 1;
        Some(item)
    }

    /// The next item, waiting for one; `None` once the queue is closed.
    pub async fn pop(&self) -> Option<T> {
        loop {
            let notified = self.ready.notified();
            if let Some(item) = self.take() {
                return item;
            }
            notified.await;
        }
    }

    /// Refuse new items, wake the consumer, and hand back what was waiting
    /// so each can be answered.
    pub fn close(&self) -> Vec<T> {
        let mut state = self.state();
        state.closed = true;
        state.turns.clear();
        state.total = 0;
        let left = std::mem::take(&mut state.waiting)
            .into_values()
            .flatten()
            .collect();
        drop(state);
        self.ready.notify_waiters();
        self.ready.notify_one();
        left
    }

    /// How many items wait now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().total
    }

    /// Whether nothing waits.
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(total: usize, per_researcher: usize) -> FairQueue<u32> {
        FairQueue::new(QueueLimits {
            total,
            per_researcher,
        })
    }

    #[tokio::test]
    async fn refuses_past_both_limits_and_serves_researchers_in_turn() {
        let q = queue(5, 3);
        for i in 0..3 {
            q.push("greedy", i).unwrap();
        }
        assert_eq!(q.push("greedy", 3), Err(QueueFull::Researcher(3)));
        q.push("polite", 10).unwrap();
        q.push("other", 20).unwrap();
        assert_eq!(q.push("late", 30), Err(QueueFull::Total(5)));
        let mut served = Vec::new();
        while !q.is_empty() {
            served.push(q.pop().await.unwrap());
        }
        // One of each researcher before the greedy one's second request.
        assert_eq!(served, [0, 10, 20, 1, 2]);
    }

    #[tokio::test]
    async fn close_wakes_the_consumer_and_returns_what_waited() {
        let q = std::sync::Arc::new(queue(4, 4));
        let consumer = tokio::spawn({
            let q = q.clone();
            async move { q.pop().await }
        });
        tokio::task::yield_now().await;
        assert!(q.close().is_empty());
        assert_eq!(consumer.await.unwrap(), None);
        assert_eq!(q.push("r", 1), Err(QueueFull::Closed));

        let q = queue(4, 4);
        q.push("a", 1).unwrap();
        q.push("b", 2).unwrap();
        assert_eq!(q.close(), [1, 2]);
        assert_eq!(q.pop().await, None);
    }
}
