//! Local delivery of publications: each [`crate::node::Subscription`] has its own queue between
//! the node's driver and the subscriber, bounded by bytes in total and per publisher, so that a
//! member flooding a topic (or a subscriber falling behind) cannot make the node hold more than
//! [`INBOX_BYTES`] per subscription, nor push out other publishers' publications while its own
//! share is full.
//!
//! Drop policy, applied when a publication arrives (each publication counts its payload and topic
//! plus [`ENTRY_OVERHEAD`]):
//! 1. if its publisher would hold more than [`INBOX_PUBLISHER_BYTES`] in the queue, that
//!    publisher's oldest queued publications are dropped until it fits;
//! 2. while the queue would hold more than [`INBOX_BYTES`], the oldest publication of the
//!    publisher holding the most bytes (its publisher counting the arriving one; ties to the
//!    larger node ID) is dropped — the arriving one itself when its publisher holds nothing else.
//!
//! The subscriber learns how many were dropped ([`Inbox::recv`], logged by
//! [`crate::node::Subscription::recv`]). A publication larger than a publisher's share cannot
//! exist: [`crate::pubsub::MAX_PAYLOAD`] and [`crate::pubsub::MAX_TOPIC`] keep it far below.

use macula_core::sync::Locked;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use macula_core::NodeId;
use tokio::sync::Notify;

use crate::pubsub::Publication;

/// Bytes one subscription's queue may hold.
pub const INBOX_BYTES: usize = 2 << 20;
/// Bytes one publisher's publications may take in one subscription's queue.
pub const INBOX_PUBLISHER_BYTES: usize = 512 << 10;
/// What a queued publication counts besides its payload and topic.
pub const ENTRY_OVERHEAD: usize = 256;

fn cost(p: &Publication) -> usize {
    p.payload.len() + p.topic.len() + ENTRY_OVERHEAD
}

/// The bounded queue itself (no I/O, no waiting).
#[derive(Debug, Default)]
pub struct Queue {
    items: VecDeque<Publication>,
    bytes: usize,
    per_publisher: HashMap<NodeId, usize>,
    dropped: u64,
}

impl Queue {
    /// Queues `p`, dropping older publications by the policy of this module.
    pub fn push(&mut self, p: Publication) {
        let c = cost(&p);
        while self.per_publisher.get(&p.publisher).copied().unwrap_or(0) + c > INBOX_PUBLISHER_BYTES
        {
            if !self.drop_oldest_of(p.publisher) {
                break;
            }
        }
        while self.bytes + c > INBOX_BYTES {
            // The publisher of `p` counts what it adds; ties go to the larger node ID, so the
            // outcome does not depend on the map's order.
            let mine = self.per_publisher.get(&p.publisher).copied().unwrap_or(0) + c;
            let heaviest = self
                .per_publisher
                .iter()
                .filter(|(n, _)| **n != p.publisher)
                .map(|(n, b)| (*b, *n))
                .chain(std::iter::once((mine, p.publisher)))
                .max()
                .map_or(p.publisher, |(_, n)| n);
            if !self.drop_oldest_of(heaviest) {
                // `p` alone outweighs every other publisher's share: it is the one dropped.
                self.dropped += 1;
                return;
            }
        }
        self.bytes += c;
        *self.per_publisher.entry(p.publisher).or_default() += c;
        self.items.push_back(p);
    }

    /// The oldest queued publication.
    pub fn pop(&mut self) -> Option<Publication> {
        let p = self.items.pop_front()?;
        self.forget(&p);
        Some(p)
    }

    /// Bytes queued (as counted by the policy).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Publications dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    fn drop_oldest_of(&mut self, publisher: NodeId) -> bool {
        let Some(i) = self.items.iter().position(|q| q.publisher == publisher) else {
            return false;
        };
        if let Some(p) = self.items.remove(i) {
            self.forget(&p);
            self.dropped += 1;
        }
        true
    }

    fn forget(&mut self, p: &Publication) {
        let c = cost(p);
        self.bytes -= c;
        if let Some(b) = self.per_publisher.get_mut(&p.publisher) {
            *b -= c;
            if *b == 0 {
                self.per_publisher.remove(&p.publisher);
            }
        }
    }
}

/// A [`Queue`] shared by the node's driver (pushing) and one subscriber (receiving).
#[derive(Debug, Default)]
pub struct Inbox {
    state: Mutex<(Queue, bool)>,
    ready: Notify,
}

impl Inbox {
    /// Queues `p` (nothing once closed); returns how many publications this dropped.
    pub fn push(&self, p: Publication) -> u64 {
        let mut s = self.state.locked();
        if s.1 {
            return 0;
        }
        let before = s.0.dropped();
        s.0.push(p);
        let dropped = s.0.dropped() - before;
        drop(s);
        self.ready.notify_one();
        dropped
    }

    /// No more publications: `recv` returns `None` once the queue is empty.
    pub fn close(&self) {
        self.state.locked().1 = true;
        self.ready.notify_one();
    }

    /// The next publication and how many were dropped in all so far; `None` once closed and
    /// drained. One receiver at a time.
    pub async fn recv(&self) -> Option<(Publication, u64)> {
        loop {
            {
                let mut s = self.state.locked();
                if let Some(p) = s.0.pop() {
                    return Some((p, s.0.dropped()));
                }
                if s.1 {
                    return None;
                }
            }
            self.ready.notified().await;
        }
    }

    /// Bytes queued (as counted by the policy).
    pub fn bytes(&self) -> usize {
        self.state.locked().0.bytes()
    }
}

#[cfg(test)]
mod tests {
    use macula_core::NodeKey;

    use super::*;
    use crate::pubsub::MAX_PAYLOAD;

    /// The queue does not verify (the state machine did): an unsigned publication will do.
    fn publication(key: &NodeKey, seq: u64, len: usize) -> Publication {
        Publication {
            topic: "t".into(),
            publisher: key.node_id(),
            seq,
            payload: vec![0; len],
            sig: crate::sig::Sig([0; 64]),
        }
    }

    #[test]
    fn a_flooding_publisher_pushes_out_only_its_own_and_the_queue_stays_bounded() {
        let (honest, rogue) = (NodeKey::from_seed([1; 32]), NodeKey::from_seed([2; 32]));
        let mut q = Queue::default();
        q.push(publication(&honest, 1, 100));
        for seq in 1..=1000 {
            q.push(publication(&rogue, seq, MAX_PAYLOAD));
            assert!(q.bytes() <= INBOX_BYTES);
        }
        assert!(q.bytes() <= INBOX_PUBLISHER_BYTES + 100 + 1 + ENTRY_OVERHEAD);
        let first = q.pop().unwrap();
        assert_eq!((first.publisher, first.seq), (honest.node_id(), 1));
        // The rogue's newest publications are the ones kept, in order.
        let kept: Vec<u64> = std::iter::from_fn(|| q.pop()).map(|p| p.seq).collect();
        assert_eq!(*kept.last().unwrap(), 1000);
        assert!(kept.windows(2).all(|w| w[0] + 1 == w[1]));
        assert_eq!(q.dropped(), 1000 - kept.len() as u64);
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn many_publishers_share_the_total_and_the_heaviest_gives_way() {
        let keys: Vec<NodeKey> = (0..10).map(|i| NodeKey::from_seed([i + 10; 32])).collect();
        let mut q = Queue::default();
        for seq in 1..=5 {
            for k in &keys {
                q.push(publication(k, seq, 60 << 10));
                assert!(q.bytes() <= INBOX_BYTES);
            }
        }
        // 10 publishers × 5 × 60 KiB offered: 2 MiB kept, spread over all of them.
        assert!(q.bytes() > INBOX_BYTES - (64 << 10));
        let mut per: HashMap<NodeId, usize> = HashMap::new();
        while let Some(p) = q.pop() {
            *per.entry(p.publisher).or_default() += 1;
        }
        assert_eq!(per.len(), keys.len());
        let (lo, hi) = (per.values().min().unwrap(), per.values().max().unwrap());
        assert!(hi - lo <= 1, "{per:?}");
    }

    #[tokio::test]
    async fn the_subscriber_waits_hears_of_drops_and_sees_the_end() {
        let k = NodeKey::from_seed([3; 32]);
        let inbox = std::sync::Arc::new(Inbox::default());
        let rx = inbox.clone();
        let waiting = tokio::spawn(async move { rx.recv().await.map(|(p, d)| (p.seq, d)) });
        tokio::task::yield_now().await;
        inbox.push(publication(&k, 1, 10));
        assert_eq!(waiting.await.unwrap(), Some((1, 0)));
        for seq in 2..=20 {
            inbox.push(publication(&k, seq, MAX_PAYLOAD));
        }
        let (p, dropped) = inbox.recv().await.unwrap();
        assert!(dropped > 0 && p.seq == 2 + dropped);
        inbox.close();
        while inbox.recv().await.is_some() {}
        assert!(inbox.recv().await.is_none());
        assert_eq!(inbox.bytes(), 0);
    }
}
