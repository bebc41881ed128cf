//! [`NodeLink`]: talk to nodes through the broker.
//!
//! Replies from every node arrive on one topic; a link keeps those addressed
//! to its researcher id and hands them out by request. Replies to other
//! requests, scalars, logs and node-status changes are kept in arrival order
//! for whoever asks next, so nothing is lost between two calls.
//!
//! Train requests are *tracked* until answered: a broker restarted without
//! persistence forgets what it was carrying, so when our connection comes
//! back, or a node announces itself online again, every unanswered request to
//! it is sent again. Nodes recognise a request they already have by its id
//! and answer it once (the node's `recent` replies), so a re-sent request never trains twice.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::ResearcherError;
use crate::transport::{BrokerConfig, Delivery, MqttClient, Publisher, Session};
use crate::wire::{
    Answer, DatasetSummary, ErrorMessage, ListReply, ListRequest, Message, NodeStatus, Ping, Pong,
    SearchReply, SearchRequest, decode, topics,
};

/// A researcher id for a link that was not given one: the process id and a
/// count of the ids made so far in this process. The id is also the link's
/// MQTT client id, and a broker hands a client id's session to its newest
/// connection, so two live links with one id (two experiments in one program)
/// would keep taking the connection from each other and lose replies.
pub fn generated_researcher_id() -> String {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    format!("researcher-{}-{n}", std::process::id())
}

/// A node's answer to a request: its reply, or the error it sent instead.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// The expected reply message.
    Answer(Message),
    /// A [`Message::Error`] naming this request.
    Error(Message),
}

impl Reply {
    /// The message, whichever it is.
    pub fn message(&self) -> &Message {
        match self {
            Reply::Answer(m) | Reply::Error(m) => m,
        }
    }
}

/// A researcher's connection to the nodes.
pub struct NodeLink {
    researcher_id: String,
    client: MqttClient,
    publisher: Publisher,
    inbox: mpsc::UnboundedReceiver<Delivery>,
    /// Messages received but not yet asked for.
    backlog: VecDeque<Message>,
    /// Last status heard from each node (retained messages included).
    online: BTreeMap<String, bool>,
    /// Makes this link's request ids unlike those of any earlier link with
    /// the same researcher id, whose late replies may still arrive.
    nonce: String,
    next_request: u64,
    /// Unanswered train requests by request id: the node and the message.
    tracked: BTreeMap<String, (String, Message)>,
    /// Connections of our client seen so far; more means a reconnection.
    sessions_seen: u64,
}

/// Most messages kept for later; past this the oldest are dropped, so a
/// flood from a misbehaving client cannot exhaust the researcher's memory.
const MAX_BACKLOG: usize = 16 * 1024;

/// How often a waiting link checks whether its connection was re-established.
const RECONNECT_CHECK: Duration = Duration::from_millis(500);

/// The request a reply answers, by id (pongs answer pings, by sequence).
fn answered_request(message: &Message) -> Option<&str> {
    match message.answers() {
        Some(Answer::Request(id)) => Some(id),
        Some(Answer::Ping(_)) | None => None,
    }
}

/// Whether `message` answers request `request_id` (for pings: sequence).
fn answers(message: &Message, request_id: &str) -> Option<Reply> {
    let matches = match message.answers() {
        Some(Answer::Request(r)) => r == request_id,
        Some(Answer::Ping(sequence)) => sequence.to_string() == request_id,
        None => false,
    };
    match (matches, message) {
        (false, _) => None,
        (true, Message::Error(ErrorMessage { .. })) => Some(Reply::Error(message.clone())),
        (true, _) => Some(Reply::Answer(message.clone())),
    }
}

/// Eight hex digits from the clock, the process and a counter.
fn link_nonce() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LINKS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let seed = format!(
        "{nanos}-{}-{}",
        std::process::id(),
        LINKS.fetch_add(1, Ordering::Relaxed)
    );
    crate::digest::Sha256Digest::of(seed.as_bytes()).to_hex()[..8].to_string()
}

impl NodeLink {
    /// Connect as `researcher_id` and listen to replies, monitoring, logs and node status.
    pub async fn connect(
        broker: &BrokerConfig,
        researcher_id: &str,
    ) -> Result<NodeLink, ResearcherError> {
        if !topics::valid_id(researcher_id) || researcher_id == topics::ANONYMOUS {
            return Err(ResearcherError::BadId(researcher_id.into()));
        }
        let session = Session {
            client_id: researcher_id.into(),
            subscriptions: vec![
                topics::researcher(researcher_id),
                topics::replies(None),
                topics::all_node_status(),
            ],
            last_will: None,
            announce: None,
        };
        let (client, inbox) = MqttClient::connect(broker, session).await?;
        Ok(NodeLink {
            researcher_id: researcher_id.into(),
            publisher: client.publisher(),
            client,
            inbox,
            backlog: VecDeque::new(),
            online: BTreeMap::new(),
            nonce: link_nonce(),
            tracked: BTreeMap::new(),
            sessions_seen: 0,
            next_request: 0,
        })
    }

    /// Our researcher id.
    pub fn researcher_id(&self) -> &str {
        &self.researcher_id
    }

    /// A fresh request id, unique for this link and unlike any other link's.
    pub fn request_id(&mut self) -> String {
        self.next_request += 1;
        format!(
            "{}-{}-{}",
            self.researcher_id, self.nonce, self.next_request
        )
    }

    /// Publish `message` to one node, or to every node with `None`.
    pub async fn send(&self, node: Option<&str>, message: &Message) -> Result<(), ResearcherError> {
        let topic = node.map_or_else(topics::all_nodes, topics::node);
        Ok(self.publisher.publish(&topic, message).await?)
    }

    /// Publish a train request to `node` and keep it until it is answered,
    /// sending it again after a reconnection (see the module docs).
    pub async fn send_tracked(
        &mut self,
        node: &str,
        request_id: &str,
        message: Message,
    ) -> Result<(), ResearcherError> {
        self.send(Some(node), &message).await?;
        self.tracked
            .insert(request_id.to_string(), (node.to_string(), message));
        Ok(())
    }

    /// Stop tracking every request (the round they belong to is over).
    pub fn untrack_all(&mut self) {
        self.tracked.clear();
    }

    /// Send again every tracked request, or those to `node`.
    async fn resend(&mut self, node: Option<&str>) {
        let again: Vec<(String, Message)> = self
            .tracked
            .values()
            .filter(|(n, _)| node.is_none_or(|node| node == n))
            .cloned()
            .collect();
        for (node, message) in again {
            tracing::info!("sending an unanswered request to {node} again");
            if let Err(e) = self.send(Some(&node), &message).await {
                tracing::warn!("cannot send a request to {node} again: {e}");
            }
        }
    }

    /// Keep `message` for a later call, dropping the oldest past the bound.
    fn keep(&mut self, message: Message) {
        if self.backlog.len() >= MAX_BACKLOG {
            self.backlog.pop_front();
        }
        self.backlog.push_back(message);
    }

    /// Publish raw bytes to a node's topic (for tests of bad input).
    pub async fn send_bytes(&self, node: &str, payload: Vec<u8>) -> Result<(), ResearcherError> {
        Ok(self
            .publisher
            .publish_bytes(&topics::node(node), payload)
            .await?)
    }

    /// Nodes whose last status said online.
    pub fn online_nodes(&self) -> BTreeSet<String> {
        self.online
            .iter()
            .filter(|(_, up)| **up)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The last status heard from `node`: online, offline, or nothing yet.
    pub fn status_of(&self, node: &str) -> Option<bool> {
        self.online.get(node).copied()
    }

    /// Next message for us, waiting until `until`: from the backlog first.
    /// Messages for other researchers are skipped; node status is recorded.
    pub async fn next_message(&mut self, until: Instant) -> Option<Message> {
        if let Some(m) = self.backlog.pop_front() {
            return Some(m);
        }
        self.receive(until).await
    }

    async fn receive(&mut self, until: Instant) -> Option<Message> {
        loop {
            let sessions = self.client.sessions();
            if sessions != self.sessions_seen {
                if self.sessions_seen != 0 {
                    self.resend(None).await;
                }
                self.sessions_seen = sessions;
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            let slice = (until - now).min(RECONNECT_CHECK);
            let delivery = match tokio::time::timeout(slice, self.inbox.recv()).await {
                Err(_) => continue,
                Ok(None) => return None,
                Ok(Some(delivery)) => delivery,
            };
            let message = match decode(&delivery.payload) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!("ignoring an unreadable message on {}: {e}", delivery.topic);
                    continue;
                }
            };
            if let Message::NodeStatus(NodeStatus { node_id, online }) = &message {
                self.online.insert(node_id.clone(), *online);
                // A node announces itself after every (re)connection, once
                // subscribed: what it may have missed is sent again. A
                // restarted broker may never have told us it was gone.
                if *online {
                    let node = node_id.clone();
                    self.resend(Some(&node)).await;
                }
            }
            if self.is_for_us(&message) {
                if let Some(request_id) = answered_request(&message) {
                    self.tracked.remove(request_id);
                }
                return Some(message);
            }
        }
    }

    fn is_for_us(&self, message: &Message) -> bool {
        message.addressee().is_none_or(|r| r == self.researcher_id)
    }

    /// Gather replies to `request_id` until every node of `expected` has
    /// answered or `window` has passed. With `expected = None`, whoever
    /// answers, until every node known to be online has (node status is
    /// retained by the broker and reaches us before any reply) or the window
    /// passes. Other messages stay in the backlog.
    pub async fn gather(
        &mut self,
        request_id: &str,
        expected: Option<&BTreeSet<String>>,
        window: Duration,
    ) -> BTreeMap<String, Reply> {
        let until = Instant::now() + window;
        let mut replies = BTreeMap::new();
        let done = |link: &Self, replies: &BTreeMap<String, Reply>| match expected {
            Some(e) => e.iter().all(|n| replies.contains_key(n)),
            None => {
                let online = link.online_nodes();
                !online.is_empty() && online.iter().all(|n| replies.contains_key(n))
            }
        };
        let mut kept = VecDeque::new();
        while let Some(m) = self.backlog.pop_front() {
            match (answers(&m, request_id), m.sender_node()) {
                (Some(reply), Some(node)) => {
                    replies.insert(node.to_string(), reply);
                }
                _ => kept.push_back(m),
            }
        }
        self.backlog = kept;
        while !done(self, &replies) {
            let Some(m) = self.receive(until).await else {
                break;
            };
            match (answers(&m, request_id), m.sender_node()) {
                (Some(reply), Some(node)) => {
                    if expected.is_none_or(|e| e.contains(node)) {
                        replies.insert(node.to_string(), reply);
                    }
                }
                _ => self.keep(m),
            }
        }
        replies
    }

    /// Ping nodes (all, or `nodes`) and gather pongs.
    pub async fn ping(
        &mut self,
        nodes: Option<&BTreeSet<String>>,
        window: Duration,
    ) -> Result<BTreeMap<String, Reply>, ResearcherError> {
        self.next_request += 1;
        let sequence = self.next_request;
        let ping = Message::Ping(Ping {
            researcher_id: self.researcher_id.clone(),
            sequence,
        });
        self.broadcast(nodes, &ping).await?;
        Ok(self.gather(&sequence.to_string(), nodes, window).await)
    }

    /// Ping until every node of `nodes` has answered; `false` when
    /// `patience` runs out first. A node still connecting misses a ping, so
    /// the missing ones are asked again every 50 ms, and a pong to any of
    /// these pings counts, however late it comes.
    pub async fn wait_for_nodes(
        &mut self,
        nodes: &BTreeSet<String>,
        patience: Duration,
    ) -> Result<bool, ResearcherError> {
        const PING_EVERY: Duration = Duration::from_millis(50);
        let deadline = Instant::now() + patience;
        let mut answered = BTreeSet::new();
        let mut sent = BTreeSet::new();
        let mut next_ping = Instant::now();
        loop {
            if answered.is_superset(nodes) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if now >= next_ping {
                let missing: BTreeSet<String> = nodes.difference(&answered).cloned().collect();
                self.next_request += 1;
                let sequence = self.next_request;
                sent.insert(sequence);
                let ping = Message::Ping(Ping {
                    researcher_id: self.researcher_id.clone(),
                    sequence,
                });
                self.broadcast(Some(&missing), &ping).await?;
                next_ping = now + PING_EVERY;
            }
            match self.receive(next_ping.min(deadline)).await {
                Some(Message::Pong(Pong {
                    sequence, node_id, ..
                })) if sent.contains(&sequence) => {
                    answered.insert(node_id);
                }
                Some(other) => self.keep(other),
                None => {}
            }
        }
    }

    /// Every dataset of the nodes that answer.
    pub async fn list(
        &mut self,
        nodes: Option<&BTreeSet<String>>,
        window: Duration,
    ) -> Result<BTreeMap<String, Result<Vec<DatasetSummary>, Message>>, ResearcherError> {
        let request_id = self.request_id();
        let request = Message::ListRequest(ListRequest {
            researcher_id: self.researcher_id.clone(),
            request_id: request_id.clone(),
        });
        self.broadcast(nodes, &request).await?;
        Ok(datasets_of(self.gather(&request_id, nodes, window).await))
    }

    /// The datasets carrying every one of `tags`, per node that answers.
    pub async fn search(
        &mut self,
        tags: &[String],
        nodes: Option<&BTreeSet<String>>,
        window: Duration,
    ) -> Result<BTreeMap<String, Result<Vec<DatasetSummary>, Message>>, ResearcherError> {
        let request_id = self.request_id();
        let request = Message::SearchRequest(SearchRequest {
            researcher_id: self.researcher_id.clone(),
            request_id: request_id.clone(),
            tags: tags.to_vec(),
        });
        self.broadcast(nodes, &request).await?;
        Ok(datasets_of(self.gather(&request_id, nodes, window).await))
    }

    /// Send to each node of `nodes`, or to every node.
    async fn broadcast(
        &self,
        nodes: Option<&BTreeSet<String>>,
        message: &Message,
    ) -> Result<(), ResearcherError> {
        match nodes {
            None => self.send(None, message).await,
            Some(nodes) => {
                for node in nodes {
                    self.send(Some(node), message).await?;
                }
                Ok(())
            }
        }
    }

    /// Disconnect cleanly.
    pub async fn disconnect(self) {
        self.client.disconnect().await;
    }
}

fn datasets_of(
    replies: BTreeMap<String, Reply>,
) -> BTreeMap<String, Result<Vec<DatasetSummary>, Message>> {
    replies
        .into_iter()
        .map(|(node, reply)| {
            let datasets = match reply {
                Reply::Answer(
                    Message::SearchReply(SearchReply { datasets, .. })
                    | Message::ListReply(ListReply { datasets, .. }),
                ) => Ok(datasets),
                Reply::Answer(other) | Reply::Error(other) => Err(other),
            };
            (node, datasets)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_differ_and_are_valid_topic_ids() {
        let (a, b) = (generated_researcher_id(), generated_researcher_id());
        assert_ne!(a, b);
        assert!(topics::valid_id(&a) && topics::valid_id(&b), "{a} {b}");
    }
}
