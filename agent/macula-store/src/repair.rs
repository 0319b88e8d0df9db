//! Repair planning as a sans-IO state machine, one per node.
//!
//! Inputs are events (membership changes, shard inventories, audit and read results, repair
//! outcomes) and the current time in milliseconds; outputs are [`RepairAction`]s: "read these k
//! shards, reconstruct, store these indices on these nodes". The planner never touches the
//! network, the disk or the clock, so it is tested by deterministic simulation
//! (`tests/repair_sim.rs`, one planner per simulated node).
//!
//! Rules:
//! - every node runs a planner and tracks exactly the segments it holds a shard of itself (its
//!   own inventory says which); what others report about other segments is kept only briefly:
//!   each node's latest inventory for [`RECENT_INVENTORY_MS`] (at most [`RECENT_ENTRIES`]
//!   entries in all), so a segment this node starts tracking learns its holders from the lists
//!   that arrived just before its own (a put stores every shard at once and the holders'
//!   inventories cross), and memory stays bounded by the local store;
//! - an [`Event::Inventory`] is a node's complete list of shards: a shard it no longer lists is
//!   gone from it (removed as corrupt, deleted, lost with a disk);
//! - an [`Event::Deleted`] (this node applied the owner's delete) forgets the segment at once:
//!   the other holders' inventories that stop listing it may arrive before this node's own;
//! - **one repair leader per segment:** the segment's holders that are not down (suspected ones
//!   included) are ranked by
//!   `BLAKE3(segment ‖ node)` (domain `macula/v1/repair-leader`); the first plans the repair at
//!   once, the holder ranked `r` only once the segment has been degraded for `r × takeover_ms`,
//!   so a leader that cannot act is replaced without every holder reading k shards at once;
//! - a suspected holder (membership has not heard from it lately) is neither a repair source nor
//!   a repair target until it is up again, but its shards still count: most suspicions are
//!   refuted within seconds, so a suspicion alone starts no grace period and no repair;
//! - a shard counts as lost when its holder has been down longer than `grace_ms` (a reboot is not
//!   a loss), when its holder left the membership (revoked, certificate expired, forgotten), when its holder's inventory stopped listing it,
//!   or when an audit or read found it corrupt; an index nobody has ever reported counts as lost
//!   only `grace_ms` after the segment was first tracked and once every reachable node has
//!   reported since (inventories arrive piecemeal, and a put may still be storing shards);
//! - a segment is repaired only once every reachable node has reported an inventory since this
//!   node started tracking it (or `takeover_ms` passed), so its holders are all known and no
//!   target already holds a shard of it;
//! - segments with the fewest remaining shards are repaired first;
//! - at most `max_inflight` repairs run at once and repair writes are limited by a token bucket
//!   (`bytes_per_sec`, `burst_bytes`), so repair never starves foreground traffic;
//! - sources prefer this node's own shard (a local read); targets come from [`crate::placement`],
//!   excluding every node that already holds a shard of the segment, with the remaining holders
//!   counted toward the failure-domain spread.

use std::collections::{BTreeMap, BTreeSet};

use macula_core::NodeId;

use crate::header::SegmentId;
use crate::placement::{self, NodeInfo};

/// How long another node's latest inventory is kept for segments this node may start tracking.
pub const RECENT_INVENTORY_MS: u64 = 30_000;
/// Most inventory entries kept that way, over every node (≈ 2.2 MB).
pub const RECENT_ENTRIES: usize = 1 << 16;

/// Repair throttling and timing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairConfig {
    /// How long a node may be down before its shards count as lost (default 10 min).
    pub grace_ms: u64,
    /// Repairs running at once (default 2).
    pub max_inflight: usize,
    /// Sustained repair write rate (default 32 MiB/s).
    pub bytes_per_sec: u64,
    /// Token bucket depth (default 64 MiB).
    pub burst_bytes: u64,
    /// Wait before retrying a failed repair (default 30 s).
    pub retry_ms: u64,
    /// How long a degraded segment waits for each holder ranked before this node, and the
    /// longest wait for inventories of nodes that never report (default 30 min).
    pub takeover_ms: u64,
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            grace_ms: 10 * 60 * 1000,
            max_inflight: 2,
            bytes_per_sec: 32 << 20,
            burst_bytes: 64 << 20,
            retry_ms: 30_000,
            takeover_ms: 30 * 60 * 1000,
        }
    }
}

/// One shard a node holds, as its inventory reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeldShard {
    pub segment: SegmentId,
    pub index: u16,
    pub k: u16,
    pub m: u16,
    /// Serialised shard length.
    pub shard_bytes: u64,
}

/// What the planner is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node is a live member (joined, came back, or reported new capacity/labels).
    NodeUp(NodeInfo),
    /// Membership suspects a node (it missed probes): not used for repairs until it is up
    /// again; its shards still count.
    NodeSuspect(NodeId),
    /// A node stopped answering (confirmed dead by membership).
    NodeDown(NodeId),
    /// A node left the membership for good (revoked, certificate expired, forgotten after being
    /// down): its shards are lost at once.
    NodeLeft(NodeId),
    /// The complete list of shards `node` holds (its own store for this node's planner).
    Inventory {
        node: NodeId,
        shards: Vec<HeldShard>,
    },
    /// A shard was found missing or corrupt on a node (audit, failed read).
    ShardLost {
        segment: SegmentId,
        index: u16,
        node: NodeId,
    },
    /// A repair completed: these indices are now stored on these nodes.
    RepairDone {
        segment: SegmentId,
        stored: Vec<(u16, NodeId)>,
    },
    /// A repair failed (source unreachable, target refused); retried after `retry_ms`.
    RepairFailed { segment: SegmentId },
    /// This node applied the owner's signed delete of the segment: every holder is told to
    /// delete it, so the shards the other holders stop listing are not losses to repair.
    Deleted { segment: SegmentId },
}

/// What the planner asks the I/O shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairAction {
    pub segment: SegmentId,
    /// `k` shards to read, as (index, holder).
    pub sources: Vec<(u16, NodeId)>,
    /// Shards to reconstruct and store, as (index, target node).
    pub targets: Vec<(u16, NodeId)>,
    /// Bytes this repair writes.
    pub bytes: u64,
    /// This node's place in the segment's repair order when it began: 0 for the leader, `r`
    /// for a holder taking over after `r × takeover_ms` (logged with the repair).
    pub rank: usize,
}

/// A snapshot for status displays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairStatus {
    /// Segments this node holds a shard of (and watches).
    pub segments: usize,
    /// Segments missing at least one shard (queued or running).
    pub degraded: usize,
    pub inflight: usize,
    /// Degraded segments this node leads the repair of (the others are led by another holder).
    pub leading: usize,
    /// Segments with fewer than `k` reachable shards: cannot be repaired until holders return.
    pub unrecoverable: Vec<SegmentId>,
    /// Shards this node rebuilt and stored since start.
    pub repaired: u64,
    /// Repair attempts of this node that failed (each is retried after `retry_ms`).
    pub failed: u64,
}

#[derive(Debug, Clone)]
struct NodeState {
    info: NodeInfo,
    down_since: Option<u64>,
    /// Suspected by membership (and not down): neither a source nor a target.
    suspect: bool,
    /// Inventory count when this node's latest inventory was taken in (0: none yet).
    reported: u64,
}

#[derive(Debug, Clone)]
struct SegState {
    k: u16,
    m: u16,
    shard_bytes: u64,
    /// Index → nodes reported holding it. A present key with no node: the index was held and
    /// is gone. An absent key: nobody has reported it yet.
    holders: BTreeMap<u16, BTreeSet<NodeId>>,
    retry_at: u64,
    /// Holders are known from every node whose latest inventory was taken in after this count:
    /// the ones taken in after tracking began, and the recent ones it started from.
    tracked_at: u64,
    /// When this node started tracking the segment. Indices nobody reported count as lost only
    /// from `first_seen + grace_ms` on, so a partial inventory (reports still arriving after a
    /// start or a partition) does not trigger repairs.
    first_seen: u64,
    /// Since when the segment has been missing shards (for the leader takeover).
    degraded_since: Option<u64>,
    /// Shards this node's repairs stored, until the target's inventory confirms them: an
    /// inventory taken before the repair (still in flight when it finished) does not undo them
    /// before this time.
    unconfirmed: BTreeMap<(u16, NodeId), u64>,
}

impl SegState {
    fn new(h: &HeldShard, now: u64, tracked_at: u64) -> Self {
        Self {
            k: h.k,
            m: h.m,
            shard_bytes: h.shard_bytes,
            holders: BTreeMap::new(),
            retry_at: 0,
            tracked_at,
            first_seen: now,
            degraded_since: None,
            unconfirmed: BTreeMap::new(),
        }
    }

    fn n(&self) -> u16 {
        self.k + self.m
    }

    fn holds(&self, node: &NodeId) -> bool {
        self.holders.values().any(|h| h.contains(node))
    }

    fn add(&mut self, index: u16, node: NodeId) {
        if index < self.n() {
            self.holders.entry(index).or_default().insert(node);
        }
    }

    /// Takes in `node`'s complete list of indices: it holds exactly these now (keys of indices
    /// it no longer holds stay: those indices were held). Recently repaired shards not listed
    /// yet stay until their confirmation time.
    fn report(&mut self, node: &NodeId, indices: &BTreeSet<u16>, now: u64) {
        self.unconfirmed
            .retain(|(i, n), until| n != node || (!indices.contains(i) && now < *until));
        for (i, h) in self.holders.iter_mut() {
            if !indices.contains(i) && !self.unconfirmed.contains_key(&(*i, *node)) {
                h.remove(node);
            }
        }
        for &i in indices {
            self.add(i, *node);
        }
    }
}

/// Rank key of `node` for leading the repair of `segment` (lowest leads).
fn leader_rank(segment: &SegmentId, node: &NodeId) -> [u8; 32] {
    *blake3::Hasher::new_derive_key("macula/v1/repair-leader")
        .update(&segment.0)
        .update(node.as_bytes())
        .finalize()
        .as_bytes()
}

/// Another node's latest inventory, kept for [`RECENT_INVENTORY_MS`].
#[derive(Debug, Clone)]
struct Recent {
    /// Inventory count when it was taken in.
    count: u64,
    at: u64,
    shards: Vec<(SegmentId, u16)>,
}

/// The repair planner of one node.
#[derive(Debug, Clone)]
pub struct RepairPlanner {
    me: NodeId,
    cfg: RepairConfig,
    nodes: BTreeMap<NodeId, NodeState>,
    segments: BTreeMap<SegmentId, SegState>,
    /// Repairs handed out and not yet reported done or failed (their segment may have been
    /// forgotten meanwhile).
    inflight: BTreeSet<SegmentId>,
    /// Inventories taken in so far.
    inventories: u64,
    /// Other nodes' latest inventories of the last [`RECENT_INVENTORY_MS`], if that recent. The
    /// counts kept are the newest ones: every node whose latest inventory came after the oldest
    /// kept here has its latest here (they leave oldest first).
    recent: BTreeMap<NodeId, Recent>,
    recent_entries: usize,
    /// Segments deleted here in the last [`RECENT_INVENTORY_MS`] (at most [`RECENT_ENTRIES`]),
    /// oldest first: a listing of this node's store taken just before the delete does not
    /// start tracking them again.
    deleted: std::collections::VecDeque<(u64, SegmentId)>,
    tokens: u64,
    refilled_at: u64,
    repaired: u64,
    failed: u64,
}

impl RepairPlanner {
    /// The planner of node `me`.
    pub fn new(me: NodeId, cfg: RepairConfig, now: u64) -> Self {
        let tokens = cfg.burst_bytes;
        Self {
            me,
            cfg,
            nodes: BTreeMap::new(),
            segments: BTreeMap::new(),
            inflight: BTreeSet::new(),
            inventories: 0,
            recent: BTreeMap::new(),
            recent_entries: 0,
            deleted: std::collections::VecDeque::new(),
            tokens,
            refilled_at: now,
            repaired: 0,
            failed: 0,
        }
    }

    pub fn handle(&mut self, now: u64, event: Event) {
        match event {
            Event::NodeUp(info) => {
                let reported = self.nodes.get(&info.id).map_or(0, |n| n.reported);
                self.nodes.insert(
                    info.id,
                    NodeState {
                        info,
                        down_since: None,
                        suspect: false,
                        reported,
                    },
                );
            }
            Event::NodeSuspect(id) => {
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.suspect = true;
                }
            }
            Event::NodeDown(id) => {
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.down_since.get_or_insert(now);
                }
            }
            Event::NodeLeft(id) => {
                self.nodes.remove(&id);
                if let Some(r) = self.recent.remove(&id) {
                    self.recent_entries -= r.shards.len();
                }
            }
            Event::Inventory { node, shards } => self.inventory(now, node, shards),
            Event::ShardLost {
                segment,
                index,
                node,
            } => {
                if let Some(s) = self.segments.get_mut(&segment)
                    && let Some(h) = s.holders.get_mut(&index)
                {
                    h.remove(&node);
                    if node == self.me && !s.holds(&node) {
                        // This node holds nothing of the segment any more: another holder
                        // leads its repair (it learns of the loss from our inventory).
                        self.segments.remove(&segment);
                    }
                }
            }
            Event::RepairDone { segment, stored } => {
                self.inflight.remove(&segment);
                self.repaired += stored.len() as u64;
                if let Some(s) = self.segments.get_mut(&segment) {
                    for (index, node) in stored {
                        s.add(index, node);
                        s.unconfirmed.insert((index, node), now + self.cfg.grace_ms);
                    }
                }
            }
            Event::Deleted { segment } => {
                self.segments.remove(&segment);
                if self.deleted.len() >= RECENT_ENTRIES {
                    self.deleted.pop_front();
                }
                self.deleted.push_back((now, segment));
            }
            Event::RepairFailed { segment } => {
                self.failed += 1;
                if self.inflight.remove(&segment)
                    && let Some(s) = self.segments.get_mut(&segment)
                {
                    s.retry_at = now + self.cfg.retry_ms;
                }
            }
        }
    }

    fn inventory(&mut self, now: u64, node: NodeId, shards: Vec<HeldShard>) {
        self.inventories += 1;
        let count = self.inventories;
        if let Some(n) = self.nodes.get_mut(&node) {
            n.reported = count;
        }
        self.expire_recent(now);
        if node == self.me {
            // Track exactly the segments held here, but none deleted since the listing began.
            while self
                .deleted
                .front()
                .is_some_and(|(at, _)| now.saturating_sub(*at) > RECENT_INVENTORY_MS)
            {
                self.deleted.pop_front();
            }
            let deleted: BTreeSet<SegmentId> = self.deleted.iter().map(|(_, s)| *s).collect();
            let held: BTreeSet<SegmentId> = shards
                .iter()
                .map(|h| h.segment)
                .filter(|s| !deleted.contains(s))
                .collect();
            self.segments.retain(|id, _| held.contains(id));
            for h in &shards {
                if held.contains(&h.segment) && !self.segments.contains_key(&h.segment) {
                    let s = self.start_tracking(h, now, count);
                    self.segments.insert(h.segment, s);
                }
            }
        } else {
            self.remember(now, node, count, &shards);
        }
        let mut listed: BTreeMap<SegmentId, BTreeSet<u16>> = BTreeMap::new();
        for h in &shards {
            if self.segments.contains_key(&h.segment) {
                listed.entry(h.segment).or_default().insert(h.index);
            }
        }
        let none = BTreeSet::new();
        for (id, s) in self.segments.iter_mut() {
            s.report(&node, listed.get(id).unwrap_or(&none), now);
        }
    }

    /// A newly held segment: its holders as the recent inventories of the others list them.
    /// Every node whose latest inventory is among those counts as reported since tracking began.
    fn start_tracking(&self, h: &HeldShard, now: u64, count: u64) -> SegState {
        let mut s = SegState::new(h, now, count);
        for (node, r) in &self.recent {
            let listed: BTreeSet<u16> = r
                .shards
                .iter()
                .filter(|(seg, _)| *seg == h.segment)
                .map(|(_, i)| *i)
                .collect();
            s.report(node, &listed, now);
            s.tracked_at = s.tracked_at.min(r.count - 1);
        }
        s
    }

    /// Keeps `node`'s latest inventory for a while, dropping the oldest kept to stay within
    /// [`RECENT_ENTRIES`] (all of them if this one alone is too big, so that what is kept is
    /// always the newest).
    fn remember(&mut self, now: u64, node: NodeId, count: u64, shards: &[HeldShard]) {
        if let Some(old) = self.recent.remove(&node) {
            self.recent_entries -= old.shards.len();
        }
        if shards.len() > RECENT_ENTRIES {
            self.recent.clear();
            self.recent_entries = 0;
            return;
        }
        while self.recent_entries + shards.len() > RECENT_ENTRIES {
            self.drop_oldest_recent();
        }
        self.recent_entries += shards.len();
        self.recent.insert(
            node,
            Recent {
                count,
                at: now,
                shards: shards.iter().map(|h| (h.segment, h.index)).collect(),
            },
        );
    }

    fn expire_recent(&mut self, now: u64) {
        while self
            .recent
            .values()
            .map(|r| r.at)
            .min()
            .is_some_and(|at| now.saturating_sub(at) > RECENT_INVENTORY_MS)
        {
            self.drop_oldest_recent();
        }
    }

    fn drop_oldest_recent(&mut self) {
        let oldest = self
            .recent
            .iter()
            .min_by_key(|(_, r)| r.count)
            .map(|(id, _)| *id);
        if let Some(r) = oldest.and_then(|id| self.recent.remove(&id)) {
            self.recent_entries -= r.shards.len();
        }
    }

    /// Whether a holder's shard is usable as a repair source now (up and not suspected).
    fn reachable(&self, node: &NodeId) -> bool {
        self.nodes
            .get(node)
            .is_some_and(|n| n.down_since.is_none() && !n.suspect)
    }

    /// Whether a holder's shard still counts (reachable, or down for less than the grace time).
    fn counts(&self, node: &NodeId, now: u64) -> bool {
        self.nodes.get(node).is_some_and(|n| {
            n.down_since
                .is_none_or(|since| now.saturating_sub(since) < self.cfg.grace_ms)
        })
    }

    fn refill(&mut self, now: u64) {
        let elapsed = now.saturating_sub(self.refilled_at);
        let add = u128::from(elapsed) * u128::from(self.cfg.bytes_per_sec) / 1000;
        self.tokens = (u128::from(self.tokens) + add).min(u128::from(self.cfg.burst_bytes)) as u64;
        self.refilled_at = now;
    }

    /// Indices of `s` that are lost at `now`.
    fn missing(&self, s: &SegState, now: u64) -> Vec<u16> {
        let settled =
            now.saturating_sub(s.first_seen) >= self.cfg.grace_ms && self.view_complete(s, now);
        (0..s.n())
            .filter(|i| match s.holders.get(i) {
                Some(h) => !h.iter().any(|n| self.counts(n, now)),
                None => settled,
            })
            .collect()
    }

    fn update_degraded(&mut self, now: u64) {
        let degraded: BTreeSet<SegmentId> = self
            .segments
            .iter()
            .filter(|(_, s)| !self.missing(s, now).is_empty())
            .map(|(id, _)| *id)
            .collect();
        for (id, s) in &mut self.segments {
            if degraded.contains(id) {
                s.degraded_since.get_or_insert(now);
            } else {
                s.degraded_since = None;
            }
        }
    }

    /// Whether every reachable node has reported an inventory since this node started tracking
    /// the segment, so every holder is known and a repair cannot pick a target that already
    /// holds a shard of it. A node that never reports (a broken publisher) delays this by
    /// `takeover_ms` at most.
    fn view_complete(&self, s: &SegState, now: u64) -> bool {
        now.saturating_sub(s.first_seen) >= self.cfg.takeover_ms
            || self
                .nodes
                .iter()
                .filter(|(id, n)| **id != self.me && n.down_since.is_none())
                .all(|(_, n)| n.reported > s.tracked_at)
    }

    /// This node's place among the holders of a segment that are not down (0 = leader). A
    /// suspected holder keeps its place: most suspicions are refuted within seconds (a busy
    /// leader), and the next holder acting at once would repeat its repair; a leader that is
    /// really gone is soon down, and one that cannot act is replaced after the takeover time.
    fn rank(&self, id: &SegmentId, s: &SegState) -> usize {
        let mine = leader_rank(id, &self.me);
        let holders: BTreeSet<&NodeId> = s.holders.values().flatten().collect();
        holders
            .into_iter()
            .filter(|n| **n != self.me && self.nodes.get(n).is_some_and(|s| s.down_since.is_none()))
            .filter(|n| leader_rank(id, n) < mine)
            .count()
    }

    /// When this node may start repairing a degraded segment (its takeover time).
    fn turn(&self, id: &SegmentId, s: &SegState) -> Option<u64> {
        let since = s.degraded_since?;
        Some(since + self.rank(id, s) as u64 * self.cfg.takeover_ms)
    }

    /// The next repair allowed at `now`, if any. Call until it returns `None`.
    pub fn poll(&mut self, now: u64) -> Option<RepairAction> {
        self.refill(now);
        self.update_degraded(now);
        if self.inflight.len() >= self.cfg.max_inflight {
            return None;
        }
        // Most endangered first: fewest counted shards, then segment ID.
        let mut queue: Vec<(usize, SegmentId)> = self
            .segments
            .iter()
            .filter(|(id, s)| !self.inflight.contains(id) && s.retry_at <= now)
            .filter(|(id, s)| self.turn(id, s).is_some_and(|t| t <= now))
            .filter(|(_, s)| self.view_complete(s, now))
            .map(|(id, s)| (usize::from(s.n()) - self.missing(s, now).len(), *id))
            .collect();
        queue.sort();
        // Targets: members up and not suspected.
        let up: Vec<NodeInfo> = self
            .nodes
            .values()
            .filter(|n| n.down_since.is_none() && !n.suspect)
            .map(|n| n.info.clone())
            .collect();
        for (_, id) in queue {
            let s = &self.segments[&id];
            // One reachable holder per index, this node's own shards first (local reads).
            let mut sources: Vec<(u16, NodeId)> = Vec::new();
            for (i, h) in &s.holders {
                let pick = if h.contains(&self.me) && self.reachable(&self.me) {
                    Some(self.me)
                } else {
                    h.iter().find(|n| self.reachable(n)).copied()
                };
                if let Some(n) = pick {
                    sources.push((*i, n));
                }
            }
            sources.sort_by_key(|(_, n)| *n != self.me);
            sources.truncate(usize::from(s.k));
            if sources.len() < usize::from(s.k) {
                continue; // unrecoverable for now
            }
            sources.sort();
            let missing = self.missing(s, now);
            let bytes = s.shard_bytes * missing.len() as u64;
            if self.tokens < bytes.min(self.cfg.burst_bytes) {
                // Throttled: wait for tokens rather than letting smaller repairs jump the queue.
                return None;
            }
            let holders: Vec<NodeId> = s
                .holders
                .values()
                .flatten()
                .copied()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            let occupied: Vec<NodeInfo> = s
                .holders
                .iter()
                .filter(|(i, _)| !missing.contains(i))
                .flat_map(|(_, h)| h.iter())
                .filter(|h| self.counts(h, now))
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter_map(|h| self.nodes.get(h).map(|n| n.info.clone()))
                .collect();
            let Ok(nodes) = placement::place_with_domains(
                &id,
                missing.len(),
                s.shard_bytes,
                &up,
                &holders,
                &occupied,
            ) else {
                continue; // not enough spare nodes; stays degraded
            };
            let targets: Vec<(u16, NodeId)> = missing.into_iter().zip(nodes).collect();
            self.tokens -= bytes.min(self.tokens);
            self.inflight.insert(id);
            return Some(RepairAction {
                segment: id,
                sources,
                targets,
                bytes,
                rank: self.rank(&id, s),
            });
        }
        None
    }

    /// The earliest time after `now` at which [`RepairPlanner::poll`] could return something new
    /// without another event (grace expiry, takeover, retry, or token refill), for the shell's
    /// timer.
    pub fn next_wakeup(&self, now: u64) -> Option<u64> {
        let mut t: Option<u64> = None;
        let mut consider = |x: u64| {
            if x > now {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        for n in self.nodes.values() {
            if let Some(since) = n.down_since {
                consider(since + self.cfg.grace_ms);
            }
        }
        for (id, s) in &self.segments {
            consider(s.retry_at);
            consider(s.first_seen + self.cfg.grace_ms);
            if let Some(turn) = self.turn(id, s) {
                consider(turn);
            }
        }
        if self.tokens < self.cfg.burst_bytes && self.cfg.bytes_per_sec > 0 {
            let need = self.cfg.burst_bytes - self.tokens;
            consider(now + (need * 1000).div_ceil(self.cfg.bytes_per_sec).max(1));
        }
        t
    }

    pub fn status(&self, now: u64) -> RepairStatus {
        let mut st = RepairStatus {
            segments: self.segments.len(),
            inflight: self.inflight.len(),
            repaired: self.repaired,
            failed: self.failed,
            ..Default::default()
        };
        for (id, s) in &self.segments {
            if !self.missing(s, now).is_empty() {
                st.degraded += 1;
                if self.rank(id, s) == 0 {
                    st.leading += 1;
                }
            }
            let reachable = s
                .holders
                .values()
                .filter(|h| h.iter().any(|n| self.reachable(n)))
                .count();
            // Judged only once every holder is known.
            if reachable < usize::from(s.k) && self.view_complete(s, now) {
                st.unrecoverable.push(*id);
            }
        }
        st
    }

    /// Holders currently recorded for a segment this node tracks (index → nodes).
    pub fn holders(&self, segment: &SegmentId) -> Option<&BTreeMap<u16, BTreeSet<NodeId>>> {
        self.segments.get(segment).map(|s| &s.holders)
    }

    /// Node IDs known to the planner and up.
    pub fn up_nodes(&self) -> BTreeSet<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.down_since.is_none())
            .map(|(id, _)| *id)
            .collect()
    }
}
