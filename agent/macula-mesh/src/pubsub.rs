//! Realm-scoped publish/subscribe (sans-IO): acknowledged subscriptions and Plumtree epidemic
//! broadcast (Leitão et al., 2007) among a topic's subscribers, with delivery de-duplicated by
//! (publisher, sequence).
//!
//! * Subscribing sends `Subscribe` to every known peer; each answers `SubAck`. New peers get our
//!   subscriptions when they come up. So every node knows every topic's subscribers.
//! * A message travels by eager push along a spanning tree of the subscribers and by lazy push
//!   (`IHave` announcements) along the remaining links. A duplicate eager copy prunes that link
//!   to lazy; an announced message that does not arrive in time is fetched with `Graft`, which
//!   also turns the link eager again. The tree thus forms and repairs itself.
//! * Publishers need not subscribe: they push to a few subscribers, who take it from there.
//! * Every publication is signed by its publisher's node key; a receiver verifies it before it
//!   remembers, delivers or forwards it, so no member can publish in another's name (forge its
//!   storage inventory, say) or use up its sequence numbers.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use ed25519_dalek::Signature;
use macula_core::domains::Domain;
use macula_core::{NodeId, NodeKey, wire};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::sig::Sig;

/// Longest topic name.
pub const MAX_TOPIC: usize = 128;
/// Largest payload.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Eager peers a node starts with per topic.
pub const EAGER_FANOUT: usize = 4;
/// Size of a node's partial view of a topic's subscribers (eager + lazy links).
pub const VIEW: usize = 8;
/// How long to wait for an announced message before grafting.
pub const GRAFT_TIMEOUT: Duration = Duration::from_millis(500);
/// Messages remembered for de-duplication and grafts.
pub const SEEN_CAPACITY: usize = 4096;
/// Bytes of publications (payload and topic) kept for grafts, in total...
pub const STORE_BYTES: usize = 16 << 20;
/// ...and per publisher: a member flooding its own publications pushes out only its own.
pub const STORE_BYTES_PER_PUBLISHER: usize = 2 << 20;
/// Topics with subscribers this node keeps links for, in total...
pub const MAX_TOPICS: usize = 4096;
/// ...and per subscribing peer (a subscription beyond it is not acknowledged).
pub const MAX_TOPICS_PER_PEER: usize = 256;

/// A message identity: (publisher, per-publisher sequence number).
pub type MsgId = (NodeId, u64);

/// A publication, signed by its publisher: [`Publication::verify`] holds for every publication
/// the state machine delivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    pub topic: String,
    pub publisher: NodeId,
    pub seq: u64,
    #[serde(with = "macula_core::wire::bytes")]
    pub payload: Vec<u8>,
    /// Ed25519 by `publisher` over `macula/v1/publication ‖ 0 ‖ wire((topic, publisher, seq,
    /// payload))`.
    pub sig: Sig,
}

impl Publication {
    /// A publication by the holder of `key`.
    pub fn sign(key: &NodeKey, topic: String, seq: u64, payload: Vec<u8>) -> Self {
        let publisher = key.node_id();
        let sig = Sig(key
            .sign(
                Domain::Publication,
                &Self::signed_bytes(&topic, &publisher, seq, &payload),
            )
            .to_bytes());
        Self {
            topic,
            publisher,
            seq,
            payload,
            sig,
        }
    }

    /// Whether `publisher` signed it.
    pub fn verify(&self) -> bool {
        self.publisher
            .verify(
                Domain::Publication,
                &Self::signed_bytes(&self.topic, &self.publisher, self.seq, &self.payload),
                &Signature::from_bytes(&self.sig.0),
            )
            .is_ok()
    }

    fn signed_bytes(topic: &str, publisher: &NodeId, seq: u64, payload: &[u8]) -> Vec<u8> {
        wire::encode(&Signed {
            topic,
            publisher,
            seq,
            payload,
        })
    }
}

/// The signed part of a [`Publication`] (its fields but the signature, same encoding).
#[derive(Serialize)]
struct Signed<'a> {
    topic: &'a str,
    publisher: &'a NodeId,
    seq: u64,
    #[serde(with = "macula_core::wire::bytes")]
    payload: &'a [u8],
}

/// Pub/sub protocol messages between two peers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PubSubMsg {
    Subscribe {
        topic: String,
    },
    SubAck {
        topic: String,
    },
    Unsubscribe {
        topic: String,
    },
    /// Eager push of a publication (`hops` travelled so far).
    Publish {
        msg: Publication,
        hops: u32,
    },
    /// Lazy push: "I have this one".
    IHave {
        topic: String,
        id: MsgId,
    },
    /// "Send me this one, and push eagerly to me from now on".
    Graft {
        topic: String,
        id: MsgId,
    },
    /// "I got this from someone else first: push lazily to me".
    Prune {
        topic: String,
    },
}

/// Timers the driver must deliver back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubSubTimer {
    /// An announced message (`id`, announced by `from`) may still be missing.
    Missing { id: MsgId, topic: String },
    /// `peer` may not have acknowledged our subscription to `topic` yet.
    Resubscribe {
        peer: NodeId,
        topic: String,
        tries: u8,
    },
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PubSubOutput {
    Send {
        to: NodeId,
        msg: PubSubMsg,
    },
    Schedule {
        after: Duration,
        timer: PubSubTimer,
    },
    /// Hand a publication to local subscribers (exactly once per (publisher, seq)).
    Deliver {
        msg: Publication,
        hops: u32,
    },
    /// `peer` acknowledged our subscription to `topic`.
    Subscribed {
        topic: String,
        peer: NodeId,
    },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PubSubError {
    #[error("topic names have 1 to {MAX_TOPIC} bytes")]
    BadTopic,
    #[error("payload of {0} bytes exceeds {MAX_PAYLOAD}")]
    TooLarge(usize),
    #[error("the node stopped")]
    Stopped,
}

fn check_topic(t: &str) -> Result<(), PubSubError> {
    if t.is_empty() || t.len() > MAX_TOPIC {
        Err(PubSubError::BadTopic)
    } else {
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Missing {
    announcers: Vec<NodeId>,
    tries: u8,
}

/// Interval between resends of an unacknowledged subscription, and how many sends at most.
pub const SUBSCRIBE_RETRY: Duration = Duration::from_secs(1);
const SUBSCRIBE_TRIES: u8 = 5;

/// Grafts sent for one missing message before giving up.
const GRAFT_TRIES: u8 = 4;

#[derive(Debug, Default)]
struct TopicState {
    /// Peers subscribed to the topic.
    subscribers: BTreeSet<NodeId>,
    /// Subscribers offered to the view so far (reservoir sampling).
    offered: u64,
    /// The partial view: eager (tree) links and lazy (announcement) links.
    eager: BTreeSet<NodeId>,
    lazy: BTreeSet<NodeId>,
}

impl TopicState {
    /// Forgets a subscriber; a gap in the view is filled from the other subscribers.
    fn remove(&mut self, peer: &NodeId) {
        self.subscribers.remove(peer);
        let was_in_view = self.eager.remove(peer) | self.lazy.remove(peer);
        if was_in_view {
            if let Some(next) = self
                .subscribers
                .iter()
                .find(|s| !self.eager.contains(s) && !self.lazy.contains(s))
            {
                self.lazy.insert(*next);
            }
        }
    }
}

/// The pub/sub state machine of one node.
pub struct PubSub {
    me: NodeId,
    /// Signs our publications.
    key: NodeKey,
    seq: u64,
    peers: BTreeSet<NodeId>,
    local: BTreeSet<String>,
    /// (topic, peer) pairs that acknowledged our subscription.
    acked: std::collections::HashSet<(String, NodeId)>,
    topics: HashMap<String, TopicState>,
    /// How many topics of `topics` each peer subscribes to.
    peer_topics: HashMap<NodeId, usize>,
    /// Recently seen messages, oldest first ([`SEEN_CAPACITY`]).
    seen: VecDeque<MsgId>,
    /// The seen messages; those still kept for grafts with their publication (within
    /// [`STORE_BYTES`] and [`STORE_BYTES_PER_PUBLISHER`]).
    store: HashMap<MsgId, Option<Publication>>,
    /// Bytes of the kept publications, in total and per publisher.
    stored_bytes: usize,
    publisher_bytes: HashMap<NodeId, usize>,
    /// Announcements of messages not received yet.
    missing: HashMap<MsgId, Missing>,
    out: Vec<PubSubOutput>,
    /// Random choices of the partial views.
    rng: StdRng,
}

impl PubSub {
    /// The pub/sub state of the node holding `key` (it signs the node's publications). Its
    /// sequence numbers start after `first_seq`: the driver passes the clock at start in
    /// microseconds, so a restarted node never reuses its previous run's numbers, which its peers
    /// still remember as seen (they would drop its new publications as duplicates).
    pub fn new(key: NodeKey, first_seq: u64) -> Self {
        let me = key.node_id();
        Self {
            me,
            key,
            seq: first_seq,
            peers: BTreeSet::new(),
            local: BTreeSet::new(),
            acked: Default::default(),
            topics: HashMap::new(),
            peer_topics: HashMap::new(),
            seen: VecDeque::new(),
            store: HashMap::new(),
            stored_bytes: 0,
            publisher_bytes: HashMap::new(),
            missing: HashMap::new(),
            out: Vec::new(),
            rng: StdRng::seed_from_u64(u64::from_le_bytes(
                me.as_bytes()[..8].try_into().expect("8 bytes"),
            )),
        }
    }

    pub fn drain(&mut self) -> std::vec::Drain<'_, PubSubOutput> {
        self.out.drain(..)
    }

    /// Topics this node subscribes to.
    pub fn subscriptions(&self) -> impl Iterator<Item = &String> {
        self.local.iter()
    }

    /// Known subscribers of `topic` (other nodes).
    pub fn subscribers(&self, topic: &str) -> Vec<NodeId> {
        self.topics
            .get(topic)
            .map(|t| t.subscribers.iter().copied().collect())
            .unwrap_or_default()
    }

    /// A peer became reachable: it learns our subscriptions.
    pub fn peer_up(&mut self, peer: NodeId) {
        if peer == self.me || !self.peers.insert(peer) {
            return;
        }
        self.offer_subscriptions(peer);
    }

    /// A peer restarted (membership saw a newer generation of it, perhaps without ever seeing
    /// it down): the new process knows none of our subscriptions, so it learns them again (its
    /// own come again from it). Without this, a node killed and restarted within the failure
    /// detector's time published to nobody.
    pub fn peer_restarted(&mut self, peer: NodeId) {
        if peer == self.me {
            return;
        }
        self.peers.insert(peer);
        self.acked.retain(|(_, p)| *p != peer);
        self.offer_subscriptions(peer);
    }

    /// Offers `peer` every subscription of this node.
    fn offer_subscriptions(&mut self, peer: NodeId) {
        for topic in self.local.clone() {
            self.offer_subscription(peer, topic, 0);
        }
    }

    /// Sends `Subscribe` and arranges a resend until the peer acknowledges.
    fn offer_subscription(&mut self, peer: NodeId, topic: String, tries: u8) {
        self.send(
            peer,
            PubSubMsg::Subscribe {
                topic: topic.clone(),
            },
        );
        self.out.push(PubSubOutput::Schedule {
            after: SUBSCRIBE_RETRY,
            timer: PubSubTimer::Resubscribe { peer, topic, tries },
        });
    }

    /// A peer is gone: forget its subscriptions and links.
    pub fn peer_down(&mut self, peer: &NodeId) {
        self.peers.remove(peer);
        self.acked.retain(|(_, p)| p != peer);
        self.peer_topics.remove(peer);
        for t in self.topics.values_mut() {
            t.remove(peer);
        }
        self.topics.retain(|_, t| !t.subscribers.is_empty());
    }

    /// Topics this node keeps subscribers and links for, and the bytes of publications it
    /// keeps for grafts: both bounded ([`MAX_TOPICS`], [`STORE_BYTES`]).
    pub fn held(&self) -> (usize, usize) {
        (self.topics.len(), self.stored_bytes)
    }

    /// Subscribes; every known peer is told and acknowledges ([`PubSubOutput::Subscribed`]).
    pub fn subscribe(&mut self, topic: &str) -> Result<(), PubSubError> {
        check_topic(topic)?;
        if self.local.insert(topic.to_string()) {
            self.acked.retain(|(t, _)| t != topic);
            for p in self.peers.clone() {
                self.offer_subscription(p, topic.to_string(), 0);
            }
        }
        Ok(())
    }

    pub fn unsubscribe(&mut self, topic: &str) {
        if self.local.remove(topic) {
            for p in self.peers.clone() {
                self.send(
                    p,
                    PubSubMsg::Unsubscribe {
                        topic: topic.to_string(),
                    },
                );
            }
        }
    }

    /// Publishes `payload` on `topic`; returns its sequence number.
    pub fn publish(&mut self, topic: &str, payload: Vec<u8>) -> Result<u64, PubSubError> {
        check_topic(topic)?;
        if payload.len() > MAX_PAYLOAD {
            return Err(PubSubError::TooLarge(payload.len()));
        }
        self.seq += 1;
        let msg = Publication::sign(&self.key, topic.to_string(), self.seq, payload);
        self.accept(msg, None, 0);
        Ok(self.seq)
    }

    /// Handles a message from the authenticated peer `from`.
    pub fn handle(&mut self, from: NodeId, msg: PubSubMsg) {
        match msg {
            PubSubMsg::Subscribe { topic } => {
                if check_topic(&topic).is_err() {
                    return;
                }
                let known = self.topics.get(&topic);
                if !known.is_some_and(|t| t.subscribers.contains(&from)) {
                    let theirs = self.peer_topics.get(&from).copied().unwrap_or(0);
                    if theirs >= MAX_TOPICS_PER_PEER
                        || (known.is_none() && self.topics.len() >= MAX_TOPICS)
                    {
                        tracing::warn!(peer = %from, %topic,
                            "subscription not kept: too many topics ({theirs} of this peer, {} in all)",
                            self.topics.len());
                        return;
                    }
                }
                let t = self.topics.entry(topic.clone()).or_default();
                if t.subscribers.insert(from) {
                    *self.peer_topics.entry(from).or_default() += 1;
                    t.offered += 1;
                    if t.eager.len() < EAGER_FANOUT {
                        t.eager.insert(from);
                    } else if t.eager.len() + t.lazy.len() < VIEW {
                        t.lazy.insert(from);
                    } else if !t.lazy.is_empty()
                        && self.rng.random_range(0..t.offered) < VIEW as u64
                    {
                        // Reservoir sampling: the view stays a uniform sample of subscribers.
                        let out = self.rng.random_range(0..t.lazy.len());
                        let out = *t.lazy.iter().nth(out).expect("in range");
                        t.lazy.remove(&out);
                        t.lazy.insert(from);
                    }
                }
                self.send(from, PubSubMsg::SubAck { topic });
            }
            PubSubMsg::SubAck { topic } => {
                if self.local.contains(&topic) && self.acked.insert((topic.clone(), from)) {
                    self.out
                        .push(PubSubOutput::Subscribed { topic, peer: from });
                }
            }
            PubSubMsg::Unsubscribe { topic } => {
                if let Some(t) = self.topics.get_mut(&topic)
                    && t.subscribers.contains(&from)
                {
                    t.remove(&from);
                    if t.subscribers.is_empty() {
                        self.topics.remove(&topic);
                    }
                    if let Some(n) = self.peer_topics.get_mut(&from) {
                        *n -= 1;
                        if *n == 0 {
                            self.peer_topics.remove(&from);
                        }
                    }
                }
            }
            PubSubMsg::Publish { msg, hops } => {
                if check_topic(&msg.topic).is_err() || msg.payload.len() > MAX_PAYLOAD {
                    return;
                }
                let id = (msg.publisher, msg.seq);
                if self.store.contains_key(&id) {
                    // Duplicate: the link need not be eager.
                    let topic = msg.topic;
                    if let Some(t) = self.topics.get_mut(&topic) {
                        if t.eager.remove(&from) {
                            t.lazy.insert(from);
                        }
                    }
                    self.send(from, PubSubMsg::Prune { topic });
                    return;
                }
                // A forgery is dropped before it is remembered: the real publication with this
                // ID still gets through.
                if !msg.verify() {
                    tracing::warn!(peer = %from, publisher = %msg.publisher,
                        "dropping a publication with a bad signature");
                    return;
                }
                // The link it came over (if it is one of ours) is a tree link.
                if let Some(t) = self.topics.get_mut(&msg.topic)
                    && t.lazy.remove(&from)
                {
                    t.eager.insert(from);
                }
                self.accept(msg, Some(from), hops + 1);
            }
            PubSubMsg::IHave { topic, id } => {
                if self.store.contains_key(&id) {
                    return;
                }
                let first = !self.missing.contains_key(&id);
                self.missing.entry(id).or_default().announcers.push(from);
                if first {
                    self.out.push(PubSubOutput::Schedule {
                        after: GRAFT_TIMEOUT,
                        timer: PubSubTimer::Missing { id, topic },
                    });
                }
            }
            PubSubMsg::Graft { topic, id } => {
                if let Some(t) = self.topics.get_mut(&topic)
                    && t.subscribers.contains(&from)
                {
                    t.lazy.remove(&from);
                    t.eager.insert(from);
                }
                if let Some(Some(msg)) = self.store.get(&id).cloned() {
                    self.send(from, PubSubMsg::Publish { msg, hops: 0 });
                }
            }
            PubSubMsg::Prune { topic } => {
                if let Some(t) = self.topics.get_mut(&topic) {
                    if t.eager.remove(&from) {
                        t.lazy.insert(from);
                    }
                }
            }
        }
    }

    pub fn handle_timer(&mut self, timer: PubSubTimer) {
        let (id, topic) = match timer {
            PubSubTimer::Missing { id, topic } => (id, topic),
            PubSubTimer::Resubscribe { peer, topic, tries } => {
                if self.local.contains(&topic)
                    && self.peers.contains(&peer)
                    && !self.acked.contains(&(topic.clone(), peer))
                    && tries + 1 < SUBSCRIBE_TRIES
                {
                    self.offer_subscription(peer, topic, tries + 1);
                }
                return;
            }
        };
        let Some(m) = self.missing.get_mut(&id) else {
            return;
        };
        if m.announcers.is_empty() || m.tries >= GRAFT_TRIES {
            self.missing.remove(&id);
            return;
        }
        // Graft from the announcers in turn, until the message arrives or we give up.
        let from = m.announcers[usize::from(m.tries) % m.announcers.len()];
        m.tries += 1;
        if let Some(t) = self.topics.get_mut(&topic) {
            t.lazy.remove(&from);
            t.eager.insert(from);
        }
        self.send(
            from,
            PubSubMsg::Graft {
                topic: topic.clone(),
                id,
            },
        );
        self.out.push(PubSubOutput::Schedule {
            after: GRAFT_TIMEOUT,
            timer: PubSubTimer::Missing { id, topic },
        });
    }

    fn accept(&mut self, msg: Publication, from: Option<NodeId>, hops: u32) {
        let id = (msg.publisher, msg.seq);
        self.missing.remove(&id);
        self.remember(id, msg.clone());
        if self.local.contains(&msg.topic) {
            self.out.push(PubSubOutput::Deliver {
                msg: msg.clone(),
                hops,
            });
        }
        let me = self.me;
        let Some(t) = self.topics.get(&msg.topic) else {
            return;
        };
        let eager: Vec<NodeId> = t
            .eager
            .iter()
            .copied()
            .filter(|p| Some(*p) != from && *p != me)
            .collect();
        let lazy: Vec<NodeId> = t
            .lazy
            .iter()
            .copied()
            .filter(|p| Some(*p) != from && *p != me)
            .collect();
        for p in eager {
            self.send(
                p,
                PubSubMsg::Publish {
                    msg: msg.clone(),
                    hops,
                },
            );
        }
        for p in lazy {
            self.send(
                p,
                PubSubMsg::IHave {
                    topic: msg.topic.clone(),
                    id,
                },
            );
        }
    }

    /// Remembers a message as seen and keeps it for grafts, making room within the byte
    /// budgets by dropping the oldest kept publications (of this publisher first).
    fn remember(&mut self, id: MsgId, msg: Publication) {
        let size = kept_size(&msg);
        let publisher = id.0;
        while self.publisher_bytes.get(&publisher).copied().unwrap_or(0) + size
            > STORE_BYTES_PER_PUBLISHER
            && self.drop_oldest(Some(publisher))
        {}
        while self.stored_bytes + size > STORE_BYTES && self.drop_oldest(None) {}
        self.stored_bytes += size;
        *self.publisher_bytes.entry(publisher).or_default() += size;
        self.seen.push_back(id);
        if let Some(Some(old)) = self.store.insert(id, Some(msg)) {
            self.forget_bytes(&old);
        }
        while self.seen.len() > SEEN_CAPACITY {
            if let Some(old) = self.seen.pop_front()
                && let Some(Some(m)) = self.store.remove(&old)
            {
                self.forget_bytes(&m);
            }
        }
    }

    /// Drops the oldest kept publication (of `publisher`, if given); its ID stays seen.
    fn drop_oldest(&mut self, publisher: Option<NodeId>) -> bool {
        let Some(id) = self
            .seen
            .iter()
            .find(|id| {
                publisher.is_none_or(|p| id.0 == p)
                    && self.store.get(*id).is_some_and(Option::is_some)
            })
            .copied()
        else {
            return false;
        };
        if let Some(m) = self.store.get_mut(&id).and_then(Option::take) {
            self.forget_bytes(&m);
        }
        true
    }

    fn forget_bytes(&mut self, m: &Publication) {
        let size = kept_size(m);
        self.stored_bytes -= size;
        if let Some(b) = self.publisher_bytes.get_mut(&m.publisher) {
            *b -= size;
            if *b == 0 {
                self.publisher_bytes.remove(&m.publisher);
            }
        }
    }

    fn send(&mut self, to: NodeId, msg: PubSubMsg) {
        self.out.push(PubSubOutput::Send { to, msg });
    }
}

/// What a kept publication counts against the budgets.
fn kept_size(m: &Publication) -> usize {
    m.payload.len() + m.topic.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> NodeKey {
        let mut s = [0u8; 32];
        s[..8].copy_from_slice(&i.to_le_bytes());
        NodeKey::from_seed(s)
    }

    fn acks(ps: &mut PubSub) -> usize {
        ps.drain()
            .filter(|o| {
                matches!(
                    o,
                    PubSubOutput::Send {
                        msg: PubSubMsg::SubAck { .. },
                        ..
                    }
                )
            })
            .count()
    }

    /// A restarted publisher numbers its publications after its previous run's: with both
    /// runs numbering from 1, the new publications had IDs the peers remembered as seen and
    /// were dropped as duplicates (found by the crash-consistency test: a storage node killed
    /// and restarted many times went unheard, its inventories never arrived).
    #[test]
    fn a_restarted_publisher_is_heard() {
        let topic = "t";
        let mut sub = PubSub::new(key(1), 0);
        sub.subscribe(topic).expect("a valid topic");
        let _ = sub.drain().count();
        let from = key(2).node_id();
        let deliver = |sub: &mut PubSub, seq: u64, payload: u8| {
            let msg = Publication::sign(&key(2), topic.into(), seq, vec![payload]);
            sub.handle(from, PubSubMsg::Publish { msg, hops: 0 });
            sub.drain()
                .filter_map(|o| match o {
                    PubSubOutput::Deliver { msg, .. } => Some(msg.payload[0]),
                    _ => None,
                })
                .collect::<Vec<u8>>()
        };
        // first run, started at 1 s (the driver passes microseconds)
        let mut run1 = PubSub::new(key(2), 1_000_000);
        for i in 0..3 {
            let seq = run1.publish(topic, vec![i]).expect("published");
            assert_eq!(deliver(&mut sub, seq, i), vec![i]);
        }
        // killed after 3 publications, restarted a second later
        let mut run2 = PubSub::new(key(2), 2_000_000);
        for i in 10..13 {
            let seq = run2.publish(topic, vec![i]).expect("published");
            assert_eq!(
                deliver(&mut sub, seq, i),
                vec![i],
                "publication {i} of the second run"
            );
        }
        // the same ID again is a duplicate: delivered once
        assert_eq!(deliver(&mut sub, 2_000_001, 10), Vec::<u8>::new());
    }

    /// A peer restarted faster than failure detection: membership reports a newer generation
    /// (no Down), and the new process must learn our subscriptions again, or it publishes to
    /// nobody (found by the crash-consistency test: a storage node killed and restarted at once
    /// sent its inventories to no one).
    #[test]
    fn a_restarted_peer_learns_our_subscriptions_again() {
        let topic = "t";
        let (a, b) = (key(1).node_id(), key(2).node_id());
        let mut sub = PubSub::new(key(1), 0);
        sub.subscribe(topic).expect("a valid topic");
        let subscribes_to_b = |sub: &mut PubSub| {
            sub.drain()
                .filter(|o| {
                    matches!(o, PubSubOutput::Send { to, msg: PubSubMsg::Subscribe { .. } } if *to == b)
                })
                .count()
        };
        sub.peer_up(b);
        assert_eq!(subscribes_to_b(&mut sub), 1);
        let mut first = PubSub::new(key(2), 1_000_000);
        first.handle(
            a,
            PubSubMsg::Subscribe {
                topic: topic.into(),
            },
        );
        assert_eq!(first.subscribers(topic), vec![a]);
        // b is killed and restarted: its new process knows no subscriber
        let mut second = PubSub::new(key(2), 2_000_000);
        assert!(second.subscribers(topic).is_empty());
        sub.peer_up(b);
        assert_eq!(subscribes_to_b(&mut sub), 0, "b was never seen down");
        sub.peer_restarted(b);
        assert_eq!(subscribes_to_b(&mut sub), 1);
        second.handle(
            a,
            PubSubMsg::Subscribe {
                topic: topic.into(),
            },
        );
        assert_eq!(second.subscribers(topic), vec![a]);
    }

    /// Issue 18: every topic a peer named stayed in the topic map for ever. A member
    /// subscribing to thousands of topics gets [`MAX_TOPICS_PER_PEER`], many members together
    /// [`MAX_TOPICS`]; an honest member still subscribes, and unsubscribing frees the entries.
    #[test]
    fn a_member_flooding_topics_is_held_to_its_share() {
        let mut ps = PubSub::new(key(1), 0);
        let rogue = key(2).node_id();
        for i in 0..10_000 {
            ps.handle(
                rogue,
                PubSubMsg::Subscribe {
                    topic: format!("flood.{i}"),
                },
            );
        }
        assert_eq!(acks(&mut ps), MAX_TOPICS_PER_PEER);
        assert_eq!(ps.held().0, MAX_TOPICS_PER_PEER);
        // Publications, grafts and prunes of unknown topics create no entries.
        let p = Publication::sign(&key(2), "other.topic".into(), 1, vec![1]);
        ps.handle(rogue, PubSubMsg::Publish { msg: p, hops: 0 });
        for i in 0..1000 {
            let topic = format!("graft.{i}");
            ps.handle(
                rogue,
                PubSubMsg::Graft {
                    topic,
                    id: (rogue, 9),
                },
            );
        }
        assert_eq!(ps.held().0, MAX_TOPICS_PER_PEER);
        let honest = key(3).node_id();
        let _ = ps.drain().count();
        ps.handle(
            honest,
            PubSubMsg::Subscribe {
                topic: "flood.1".into(),
            },
        );
        ps.handle(
            honest,
            PubSubMsg::Subscribe {
                topic: "honest".into(),
            },
        );
        assert_eq!(acks(&mut ps), 2);
        assert_eq!(ps.subscribers("honest"), vec![honest]);
        for i in 0..10_000 {
            ps.handle(
                rogue,
                PubSubMsg::Unsubscribe {
                    topic: format!("flood.{i}"),
                },
            );
        }
        assert_eq!(ps.held().0, 2, "flood.1 (honest) and honest");
        // Many members: the total holds.
        for m in 10..100 {
            for i in 0..MAX_TOPICS_PER_PEER {
                ps.handle(
                    key(m).node_id(),
                    PubSubMsg::Subscribe {
                        topic: format!("m{m}.{i}"),
                    },
                );
            }
        }
        assert_eq!(ps.held().0, MAX_TOPICS);
        ps.peer_down(&key(10).node_id());
        assert_eq!(ps.held().0, MAX_TOPICS - MAX_TOPICS_PER_PEER);
    }

    /// Issue 18: up to 4096 publications of 64 KiB (256 MiB) were kept for grafts. A member
    /// flooding publications keeps at most [`STORE_BYTES_PER_PUBLISHER`] of its own, many
    /// publishers at most [`STORE_BYTES`], and an honest publication is still delivered,
    /// forwarded and served to grafts.
    #[test]
    fn a_member_flooding_publications_is_held_to_its_share() {
        let topic = "t";
        let mut ps = PubSub::new(key(1), 0);
        ps.subscribe(topic).unwrap();
        let lazy_peer = key(9).node_id();
        ps.handle(
            lazy_peer,
            PubSubMsg::Subscribe {
                topic: topic.into(),
            },
        );
        let rogue = key(2);
        let publish = |msg: Publication| PubSubMsg::Publish { msg, hops: 0 };
        for seq in 1..=40 {
            let p = Publication::sign(&rogue, topic.into(), seq, vec![0; MAX_PAYLOAD]);
            ps.handle(rogue.node_id(), publish(p));
        }
        let _ = ps.drain().count();
        assert!(ps.held().1 <= STORE_BYTES_PER_PUBLISHER, "{}", ps.held().1);
        assert!(ps.held().1 > STORE_BYTES_PER_PUBLISHER - MAX_PAYLOAD - 16);
        // A duplicate of a dropped one is still recognised as seen.
        let again = Publication::sign(&rogue, topic.into(), 1, vec![0; MAX_PAYLOAD]);
        ps.handle(rogue.node_id(), publish(again));
        assert!(delivered(&mut ps).is_empty());
        for m in 100..109 {
            let k = key(m);
            for seq in 1..=33 {
                let p = Publication::sign(&k, topic.into(), seq, vec![0; MAX_PAYLOAD]);
                ps.handle(k.node_id(), publish(p));
            }
        }
        let _ = ps.drain().count();
        assert!(ps.held().1 <= STORE_BYTES, "{}", ps.held().1);
        assert!(
            ps.publisher_bytes
                .values()
                .all(|b| *b <= STORE_BYTES_PER_PUBLISHER)
        );
        let honest = key(3);
        let real = Publication::sign(&honest, topic.into(), 1, b"inventory".to_vec());
        ps.handle(honest.node_id(), publish(real.clone()));
        assert_eq!(delivered(&mut ps), std::slice::from_ref(&real));
        ps.handle(
            lazy_peer,
            PubSubMsg::Graft {
                topic: topic.into(),
                id: (honest.node_id(), 1),
            },
        );
        assert!(ps.drain().any(|o| matches!(o,
            PubSubOutput::Send { to, msg: PubSubMsg::Publish { msg, .. } } if to == lazy_peer && msg == real)));
    }

    fn delivered(ps: &mut PubSub) -> Vec<Publication> {
        ps.drain()
            .filter_map(|o| match o {
                PubSubOutput::Deliver { msg, .. } => Some(msg),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_member_cannot_publish_in_another_holders_name_nor_burn_its_sequence_numbers() {
        let topic = "macula.storage.inventory";
        let victim = NodeKey::from_seed([1; 32]);
        let rogue = NodeKey::from_seed([2; 32]);
        let mut receiver = PubSub::new(NodeKey::from_seed([3; 32]), 0);
        receiver.subscribe(topic).unwrap();
        receiver.peer_up(rogue.node_id());
        let _ = receiver.drain().count();
        let publish = |msg: Publication| PubSubMsg::Publish { msg, hops: 0 };

        // The victim's real publication, seq 1, which the rogue relays later.
        let real = Publication::sign(&victim, topic.into(), 1, b"real inventory".to_vec());
        // Forgeries in the victim's name: the real one's ID with other content, the rogue's
        // own signature, a far-ahead sequence number.
        let mut tampered = real.clone();
        tampered.payload = b"no shards at all".to_vec();
        let mut resigned = Publication::sign(&rogue, topic.into(), 1, b"fake".to_vec());
        resigned.publisher = victim.node_id();
        let mut ahead = real.clone();
        ahead.seq = u64::MAX;
        for forged in [tampered, resigned, ahead] {
            receiver.handle(rogue.node_id(), publish(forged));
            assert!(
                delivered(&mut receiver).is_empty(),
                "a forgery was delivered"
            );
        }
        // The real publication still gets through: no ID was used up by a forgery.
        receiver.handle(rogue.node_id(), publish(real.clone()));
        assert_eq!(delivered(&mut receiver), std::slice::from_ref(&real));
        assert!(real.verify());
        // Its own publications are signed by the node itself.
        let mut me = PubSub::new(NodeKey::from_seed([4; 32]), 0);
        me.subscribe(topic).unwrap();
        me.publish(topic, vec![7]).unwrap();
        let own = delivered(&mut me);
        assert!(own.len() == 1 && own[0].verify());
        assert_eq!(own[0].publisher, NodeKey::from_seed([4; 32]).node_id());
    }
}
