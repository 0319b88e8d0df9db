//! Shard inventories shared over pub/sub: every node publishes the complete list of shards it
//! holds (after any change to its store, debounced, and periodically as anti-entropy), so the
//! holders of a segment learn at once when a shard is gone from another holder.
//!
//! A list is split into parts of at most [`ENTRIES_PER_PART`] entries (46 bytes each, well under
//! the pub/sub payload limit). Each part carries the publisher's round number and the part count;
//! an [`Assembler`] per receiver collects the parts of a round and yields the complete list only
//! when all parts arrived, since a partial list would look like lost shards. Wire encoding:
//! `macula_core::wire` of [`InventoryPart`] (docs/protocol.md).
//!
//! An inventory also finishes deletes: a node that was down when an owner deleted a segment
//! (or when a failed put's cleanup ran) still lists its shards; a node holding the owner's
//! signed delete for that segment sends it (the [`DeleteEcho`] says when), and the listing node
//! checks the signature against its shard's header and deletes.

use std::collections::BTreeMap;
use std::collections::btree_map;
use std::time::{Duration, Instant};

use macula_core::{NodeId, wire};
use serde::{Deserialize, Serialize};

use crate::header::SegmentId;
use crate::repair::HeldShard;
use crate::store::DeleteRequest;

/// Pub/sub topic on which nodes share their shard inventory.
pub const TOPIC: &str = "macula.storage.inventory";

/// Longest time between two publications of an unchanged inventory (anti-entropy).
pub const REFRESH: Duration = Duration::from_secs(60);

/// How long after a change of the store its inventory is published: a burst of changes (a put
/// stores many shards) makes one publication.
pub const DEBOUNCE: Duration = Duration::from_secs(1);

/// When this node publishes its inventory (sans-IO: the caller passes the time and publishes):
/// at start, [`DEBOUNCE`] after the first of a burst of changes, and at the latest [`REFRESH`]
/// (or the local audit interval, if shorter) after the previous publication.
#[derive(Debug)]
pub struct Schedule {
    refresh: Duration,
    round: u64,
    due: Instant,
}

impl Schedule {
    /// The first publication is due at `now`, with round `first_round + 1`; rounds grow by one a
    /// publication. `maculad` starts them at the wall clock's milliseconds so a restarted node's
    /// rounds are new to everyone's [`Assembler`].
    pub fn new(first_round: u64, audit_interval: Duration, now: Instant) -> Self {
        Self {
            refresh: audit_interval.min(REFRESH),
            round: first_round,
            due: now,
        }
    }

    /// The local store changed at `now`.
    pub fn changed(&mut self, now: Instant) {
        self.due = self.due.min(now + DEBOUNCE);
    }

    /// When [`Schedule::poll`] has a publication to make.
    pub fn next(&self) -> Instant {
        self.due
    }

    /// The round to publish now, if one is due.
    pub fn poll(&mut self, now: Instant) -> Option<u64> {
        if now < self.due {
            return None;
        }
        self.round += 1;
        self.due = now + self.refresh;
        Some(self.round)
    }
}

/// Entries per published part.
pub const ENTRIES_PER_PART: usize = 1000;

/// Parts per round accepted from a publisher (a million shards).
pub const MAX_PARTS: u16 = 1000;

/// One entry: segment ID, index, k, m, serialised shard length.
type Entry = ([u8; 32], u16, u16, u16, u64);

/// One published part of a node's inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryPart {
    /// Publisher's round number (a new list gets a new number).
    pub round: u64,
    /// This part's number, `0..parts`.
    pub part: u16,
    pub parts: u16,
    pub entries: Vec<Entry>,
}

/// Why a received part was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    #[error("undecodable inventory part: {0}")]
    Decode(String),
    #[error("inventory part {part} of {parts} is out of range (at most {MAX_PARTS} parts)")]
    BadPart { part: u16, parts: u16 },
    #[error("inventory part holds {0} entries, more than {ENTRIES_PER_PART}")]
    TooManyEntries(usize),
}

/// Splits a complete list into encoded parts for round `round` (one empty part for no shards).
pub fn encode(round: u64, shards: &[HeldShard]) -> Vec<Vec<u8>> {
    let chunks: Vec<&[HeldShard]> = if shards.is_empty() {
        vec![&[]]
    } else {
        shards.chunks(ENTRIES_PER_PART).collect()
    };
    let parts = u16::try_from(chunks.len()).unwrap_or(u16::MAX);
    chunks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            wire::encode(&InventoryPart {
                round,
                part: i as u16,
                parts,
                entries: c
                    .iter()
                    .map(|h| (h.segment.0, h.index, h.k, h.m, h.shard_bytes))
                    .collect(),
            })
        })
        .collect()
}

/// Decodes and checks one part.
pub fn decode(bytes: &[u8]) -> Result<InventoryPart, InventoryError> {
    let p: InventoryPart = wire::decode_with_limit(bytes, 64 << 10)
        .map_err(|e| InventoryError::Decode(e.to_string()))?;
    if p.parts == 0 || p.parts > MAX_PARTS || p.part >= p.parts {
        return Err(InventoryError::BadPart {
            part: p.part,
            parts: p.parts,
        });
    }
    if p.entries.len() > ENTRIES_PER_PART {
        return Err(InventoryError::TooManyEntries(p.entries.len()));
    }
    Ok(p)
}

#[derive(Debug)]
struct Pending {
    round: u64,
    parts: Vec<Option<Vec<Entry>>>,
}

/// How far below a publisher's last completed round a part still counts as a late copy of an
/// old round (ignored) rather than a restart with a clock that went back (accepted). Rounds go
/// up by one per publication, at most about one a second.
const STALE_ROUNDS: u64 = 64;

/// Reassembles the rounds of every publisher (sans-IO: fed received parts).
///
/// Pub/sub does not keep a publisher's messages in order (a message missed by eager push is
/// fetched later), so an old round can arrive after a newer one: it is ignored, or it would
/// take back shards the publisher has since received (and the repair planner would rebuild
/// them again).
#[derive(Debug, Default)]
pub struct Assembler {
    pending: BTreeMap<NodeId, Pending>,
    /// Each publisher's last completed round.
    last: BTreeMap<NodeId, u64>,
}

impl Assembler {
    /// Feeds a part published by `from`; returns that node's complete list when this part
    /// completes its round. A part of another round replaces an unfinished one (a lost part
    /// only delays the list until the next round).
    pub fn feed(
        &mut self,
        from: NodeId,
        bytes: &[u8],
    ) -> Result<Option<Vec<HeldShard>>, InventoryError> {
        let p = decode(bytes)?;
        if let Some(&last) = self.last.get(&from)
            && p.round <= last
            && last - p.round < STALE_ROUNDS
        {
            return Ok(None);
        }
        let pending = self.pending.entry(from).or_insert_with(|| Pending {
            round: p.round,
            parts: Vec::new(),
        });
        if pending.round != p.round || pending.parts.len() != usize::from(p.parts) {
            pending.round = p.round;
            pending.parts = vec![None; usize::from(p.parts)];
        }
        pending.parts[usize::from(p.part)] = Some(p.entries);
        if pending.parts.iter().any(Option::is_none) {
            return Ok(None);
        }
        let done = self.pending.remove(&from).expect("pending round");
        self.last.insert(from, done.round);
        Ok(Some(
            done.parts
                .into_iter()
                .flatten()
                .flatten()
                .map(|(seg, index, k, m, shard_bytes)| HeldShard {
                    segment: SegmentId(seg),
                    index,
                    k,
                    m,
                    shard_bytes,
                })
                .collect(),
        ))
    }
}

/// How long before a node whose inventory still lists a deleted segment is sent the owner's
/// delete again after a send that went through (inventories published before it arrived still
/// list the segment). A send that failed ([`DeleteEcho::failed`]) is repeated at the node's next
/// inventory.
pub const ECHO_AGAIN: Duration = Duration::from_secs(300);

/// Which owner-signed deletes to send to a node whose inventory lists segments this node holds
/// tombstones of (sans-IO: the caller finds the tombstones, `LocalStore::maybe_deleted` / `deletes_of`, and
/// sends what this returns). Memory: the deletes sent in the last [`ECHO_AGAIN`].
#[derive(Debug, Default)]
pub struct DeleteEcho {
    sent: BTreeMap<(NodeId, SegmentId), Instant>,
}

impl DeleteEcho {
    /// Of the deletes `found` for `node`'s inventory, those to send now (each (node, segment)
    /// at most once per [`ECHO_AGAIN`]).
    pub fn due(
        &mut self,
        node: NodeId,
        found: Vec<DeleteRequest>,
        now: Instant,
    ) -> Vec<DeleteRequest> {
        self.sent
            .retain(|_, at| now.saturating_duration_since(*at) < ECHO_AGAIN);
        found
            .into_iter()
            .filter(|r| match self.sent.entry((node, r.segment)) {
                btree_map::Entry::Occupied(_) => false,
                btree_map::Entry::Vacant(v) => {
                    v.insert(now);
                    true
                }
            })
            .collect()
    }

    /// The deletes of `segments` did not reach `node` (it went down again, the call failed):
    /// its next inventory that lists them is answered again.
    pub fn failed(&mut self, node: NodeId, segments: &[SegmentId]) {
        for s in segments {
            self.sent.remove(&(node, *s));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delete_is_echoed_once_per_node_until_the_interval_passes() {
        let t0 = Instant::now();
        let owner = macula_core::NodeKey::from_seed([7; 32]);
        let (a, b) = (
            macula_core::NodeKey::from_seed([1; 32]).node_id(),
            macula_core::NodeKey::from_seed([2; 32]).node_id(),
        );
        let del = |i: u8| DeleteRequest::sign(SegmentId([i; 32]), &owner);
        let mut e = DeleteEcho::default();
        assert_eq!(e.due(a, vec![del(1), del(2)], t0), vec![del(1), del(2)]);
        // the next inventory of the same node (the deletes still on their way): nothing again
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(e.due(a, vec![del(1), del(2), del(3)], t1), vec![del(3)]);
        // another node listing the same segment is answered on its own
        assert_eq!(e.due(b, vec![del(1)], t1), vec![del(1)]);
        // still listed after the interval: the delete was lost, sent again
        let t2 = t0 + ECHO_AGAIN;
        assert_eq!(e.due(a, vec![del(1)], t2), vec![del(1)]);
        assert_eq!(e.due(a, vec![del(3)], t2), vec![]);
        assert_eq!(e.sent.len(), 3);
        // a send that failed is repeated at the next inventory, not after the interval
        e.failed(b, &[SegmentId([1; 32])]);
        assert_eq!(e.due(b, vec![del(1)], t2), vec![del(1)]);
        assert_eq!(e.due(b, vec![del(1)], t2), vec![]);
    }

    #[test]
    fn inventory_is_published_at_start_after_a_burst_and_as_anti_entropy() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut s = Schedule::new(1000, Duration::from_secs(3600), t0);
        assert_eq!(s.poll(t0), Some(1001));
        assert_eq!(s.next(), t0 + REFRESH);
        // A burst: published once, a second after its first change.
        s.changed(at(5_000));
        s.changed(at(5_300));
        s.changed(at(5_900));
        assert_eq!(s.next(), at(6_000));
        assert_eq!(s.poll(at(5_999)), None);
        assert_eq!(s.poll(at(6_000)), Some(1002));
        assert_eq!(s.poll(at(6_001)), None);
        // Unchanged: again after the refresh.
        assert_eq!(s.next(), at(6_000) + REFRESH);
        assert_eq!(s.poll(at(6_000) + REFRESH), Some(1003));
        // A shorter audit interval makes the refresh shorter.
        let mut s = Schedule::new(0, Duration::from_secs(2), t0);
        assert_eq!(s.poll(t0), Some(1));
        assert_eq!(s.next(), at(2_000));
        // A change never puts the next publication later.
        s.changed(at(1_500));
        assert_eq!(s.next(), at(2_000));
    }
    use macula_core::NodeKey;

    fn shards(n: usize) -> Vec<HeldShard> {
        (0..n)
            .map(|i| HeldShard {
                segment: SegmentId(*blake3::hash(&i.to_le_bytes()).as_bytes()),
                index: (i % 6) as u16,
                k: 4,
                m: 2,
                shard_bytes: 300_000 + i as u64,
            })
            .collect()
    }

    #[test]
    fn lists_round_trip_in_any_part_order() {
        let from = NodeKey::from_seed([1; 32]).node_id();
        for n in [0, 1, 999, 1000, 1001, 2500] {
            let list = shards(n);
            let mut parts = encode(7, &list);
            assert_eq!(parts.len(), n.div_ceil(ENTRIES_PER_PART).max(1));
            assert!(parts.iter().all(|p| p.len() < 60 << 10));
            parts.reverse();
            let mut a = Assembler::default();
            let last = parts.pop().unwrap();
            for p in &parts {
                assert_eq!(a.feed(from, p).unwrap(), None, "incomplete round");
            }
            let mut got = a.feed(from, &last).unwrap().expect("complete");
            got.sort();
            let mut want = list.clone();
            want.sort();
            assert_eq!(got, want);
        }
    }

    #[test]
    fn a_new_round_replaces_an_unfinished_one() {
        let from = NodeKey::from_seed([2; 32]).node_id();
        let other = NodeKey::from_seed([3; 32]).node_id();
        let mut a = Assembler::default();
        let old = encode(1, &shards(2500));
        assert_eq!(a.feed(from, &old[0]).unwrap(), None);
        // Another publisher's parts do not mix in.
        assert_eq!(
            a.feed(other, &encode(1, &shards(3))[0])
                .unwrap()
                .unwrap()
                .len(),
            3
        );
        let new = encode(2, &shards(5));
        assert_eq!(a.feed(from, &new[0]).unwrap().unwrap().len(), 5);
        // The stale round's remaining parts start over and never complete on their own.
        assert_eq!(a.feed(from, &old[1]).unwrap(), None);
    }

    #[test]
    fn a_late_copy_of_an_old_round_is_ignored_and_a_restart_is_not() {
        let from = NodeKey::from_seed([5; 32]).node_id();
        let mut a = Assembler::default();
        let newer = encode(1_000_002, &shards(4));
        let older = encode(1_000_001, &shards(3));
        assert_eq!(a.feed(from, &newer[0]).unwrap().unwrap().len(), 4);
        // Round 1_000_001 fetched late: it would take back a shard received since.
        assert_eq!(a.feed(from, &older[0]).unwrap(), None);
        // The same round again (a duplicate delivery) is ignored too.
        assert_eq!(a.feed(from, &newer[0]).unwrap(), None);
        assert_eq!(
            a.feed(from, &encode(1_000_003, &shards(2))[0])
                .unwrap()
                .unwrap()
                .len(),
            2
        );
        // A restart whose clock went back far: its rounds are new, not stale.
        assert_eq!(
            a.feed(from, &encode(5_000, &shards(1))[0])
                .unwrap()
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn malformed_parts_are_refused() {
        let from = NodeKey::from_seed([4; 32]).node_id();
        let mut a = Assembler::default();
        assert!(matches!(
            a.feed(from, b"\x01garbage"),
            Err(InventoryError::Decode(_))
        ));
        for (part, parts) in [(0, 0), (3, 3), (0, MAX_PARTS + 1)] {
            let bad = wire::encode(&InventoryPart {
                round: 1,
                part,
                parts,
                entries: Vec::new(),
            });
            assert_eq!(
                a.feed(from, &bad),
                Err(InventoryError::BadPart { part, parts })
            );
        }
        let big = wire::encode(&InventoryPart {
            round: 1,
            part: 0,
            parts: 1,
            entries: vec![([0; 32], 0, 1, 1, 1); ENTRIES_PER_PART + 1],
        });
        assert!(a.feed(from, &big).is_err());
    }
}
