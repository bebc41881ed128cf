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
use crate::identity::{Credentials, Identity, KeyRing};
use crate::transport::{BrokerConfig, Delivery, MqttClient, Publisher, Session};
use crate::wire::{
    Answer, DatasetSummary, ErrorMessage, ListReply, ListRequest, Message, NodeStatus, OpenError,
    Ping, Pong, SearchReply, SearchRequest, open, topics,
};

/// An MQTT client id for a link of `researcher_id`: the id, the process
/// and a count of links made in this process. A broker hands a client id's
/// session to its newest connection, so two live links with one client id
/// (two experiments of one researcher in one program) would keep taking the
/// connection from each other and lose replies.
fn client_id(researcher_id: &str) -> String {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    format!("{researcher_id}-{}-{n}", std::process::id())
}

/// Request ids this link sent, so that a reply to anything else (a reply
/// that came before its request, or one to another researcher's request)
/// is ignored. Bounded: the oldest are forgotten first.
#[derive(Debug, Default)]
struct SentRequests {
    ids: std::collections::HashSet<String>,
    order: VecDeque<String>,
}

/// Request ids remembered; far more than any round has in flight.
const MAX_SENT: usize = 1 << 16;

impl SentRequests {
    fn insert(&mut self, id: String) {
        if self.ids.insert(id.clone()) {
            self.order.push_back(id);
        }
        while self.order.len() > MAX_SENT {
            if let Some(old) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }
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
    /// The nodes we believe, by key.
    keyring: std::sync::Arc<KeyRing>,
    /// Our key, for bodies sent as they are ([`NodeLink::send_body`]).
    identity: std::sync::Arc<Identity>,
    /// Request ids we sent; replies to others are ignored.
    sent: SentRequests,
    /// Ping sequences we sent.
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

impl NodeLink {
    /// Connect as the researcher of `credentials` (its id and key) and
    /// listen to replies, monitoring, logs and node status; only messages
    /// signed by a node its roster pins are believed.
    pub async fn connect(
        broker: &BrokerConfig,
        credentials: &Credentials,
    ) -> Result<NodeLink, ResearcherError> {
        let researcher_id = credentials.identity.id();
        if !topics::valid_id(researcher_id) || researcher_id == topics::ANONYMOUS {
            return Err(ResearcherError::BadId(researcher_id.into()));
        }
        let session = Session {
            client_id: client_id(researcher_id),
            subscriptions: vec![
                topics::researcher(researcher_id),
                topics::replies(None),
                topics::all_node_status(),
            ],
            last_will: None,
            announce: None,
            identity: credentials.identity.clone(),
        };
        let (client, inbox) = MqttClient::connect(broker, session).await?;
        Ok(NodeLink {
            researcher_id: researcher_id.into(),
            publisher: client.publisher(),
            client,
            inbox,
            backlog: VecDeque::new(),
            online: BTreeMap::new(),
            keyring: credentials.keyring.clone(),
            identity: credentials.identity.clone(),
            sent: SentRequests::default(),
            tracked: BTreeMap::new(),
            sessions_seen: 0,
            next_request: 0,
        })
    }

    /// Our researcher id.
    pub fn researcher_id(&self) -> &str {
        &self.researcher_id
    }

    /// A fresh random 128-bit request id.
    pub fn request_id(&mut self) -> String {
        let mut bytes = [0u8; 16];
        if getrandom::fill(&mut bytes).is_err() {
            // No system randomness: still unique, from the clock and a count.
            self.next_request += 1;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let seed = format!("{nanos}-{}-{}", std::process::id(), self.next_request);
            bytes.copy_from_slice(&crate::digest::Sha256Digest::of(seed.as_bytes()).bytes()[..16]);
        }
        hex::encode(bytes)
    }

    /// Messages refused so far: unknown nodes, changed keys, forged
    /// signatures, signers speaking for others.
    pub fn refused_messages(&self) -> u64 {
        self.keyring.refused()
    }

    /// The next ping sequence, remembered as sent.
    fn ping_sequence(&mut self) -> u64 {
        self.next_request += 1;
        self.sent.insert(format!("ping-{}", self.next_request));
        self.next_request
    }

    /// Publish `message` to one node, or to every node with `None`. Its
    /// request id is remembered: only replies to requests this link sent
    /// are taken.
    pub async fn send(
        &mut self,
        node: Option<&str>,
        message: &Message,
    ) -> Result<(), ResearcherError> {
        if let Some(id) = message.request_id() {
            self.sent.insert(id.to_string());
        }
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

    /// Sign `body` as it is, whatever it holds, and publish it to a node's
    /// topic: for tests of bad input. A request id that can be read in it
    /// is remembered as sent, so the node's error reply is taken.
    pub async fn send_body(&mut self, node: &str, body: &str) -> Result<(), ResearcherError> {
        let id = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("request_id")?.as_str().map(str::to_string));
        if let Some(id) = id {
            self.sent.insert(id);
        }
        let payload = crate::wire::seal_raw(body, &self.identity);
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
            let message = match open(&delivery.payload, &self.keyring) {
                Ok(opened) => opened.message,
                Err(e) => {
                    if matches!(e, OpenError::Impostor { .. }) {
                        self.keyring.count_refusal();
                    }
                    tracing::warn!("ignoring a message on {}: {e}", delivery.topic);
                    continue;
                }
            };
            let mut message = message;
            super::printable::make_printable(&mut message);
            if !self.asked_for(&message) {
                tracing::warn!(
                    "ignoring a {} from {} that answers no request of ours",
                    message.command(),
                    message.sender().1
                );
                continue;
            }
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

    /// Whether `message`, if it is a reply, answers a request this link sent.
    fn asked_for(&self, message: &Message) -> bool {
        match message.answers() {
            Some(Answer::Request(id)) => self.sent.contains(id),
            Some(Answer::Ping(sequence)) => self.sent.contains(&format!("ping-{sequence}")),
            None => true,
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
        let sequence = self.ping_sequence();
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
                let sequence = self.ping_sequence();
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
        &mut self,
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
    fn client_ids_differ_per_link_and_are_valid_topic_ids() {
        let (a, b) = (client_id("alice"), client_id("alice"));
        assert_ne!(a, b);
        assert!(topics::valid_id(&a) && topics::valid_id(&b), "{a} {b}");
    }

    #[test]
    fn sent_requests_are_bounded_and_forget_the_oldest() {
        let mut sent = SentRequests::default();
        for n in 0..MAX_SENT + 2 {
            sent.insert(n.to_string());
        }
        assert!(!sent.contains("0") && !sent.contains("1"));
        assert!(sent.contains("2") && sent.contains(&(MAX_SENT + 1).to_string()));
        assert_eq!(sent.ids.len(), MAX_SENT);
    }
}
