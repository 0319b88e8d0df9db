//! Repair planning as a sans-IO state machine.
//!
//! Inputs are events (membership changes, shard inventory and audit results, repair outcomes)
//! and the current time in milliseconds; outputs are [`RepairAction`]s: "read these k shards,
//! reconstruct, store these indices on these nodes". The planner never touches the network, the
//! disk or the clock, so it is tested by deterministic simulation (`tests/repair_sim.rs`).
//!
//! Rules:
//! - a shard counts as lost when its holder has been down longer than `grace_ms` (a reboot is not
//!   a loss), when its holder left the membership, or when an audit or read found it missing or
//!   corrupt; an index nobody has reported counts as lost only `grace_ms` after the segment was
//!   first reported (inventory reports arrive piecemeal);
//! - segments with the fewest remaining shards are repaired first;
//! - at most `max_inflight` repairs run at once and repair writes are limited by a token bucket
//!   (`bytes_per_sec`, `burst_bytes`), so repair never starves foreground traffic;
//! - targets come from [`crate::placement`], excluding every node that already holds a shard of
//!   the segment, with the remaining holders counted toward the failure-domain spread.

use std::collections::{BTreeMap, BTreeSet};

use macula_core::NodeId;

use crate::header::SegmentId;
use crate::placement::{self, NodeInfo};

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
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            grace_ms: 10 * 60 * 1000,
            max_inflight: 2,
            bytes_per_sec: 32 << 20,
            burst_bytes: 64 << 20,
            retry_ms: 30_000,
        }
    }
}

/// What the planner is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A node is a live member (joined, came back, or reported new capacity/labels).
    NodeUp(NodeInfo),
    /// A node stopped answering (suspected or confirmed dead by membership).
    NodeDown(NodeId),
    /// A node left the membership for good: its shards are lost at once.
    NodeLeft(NodeId),
    /// A node holds a verified shard (inventory report, completed write).
    ShardHeld {
        segment: SegmentId,
        index: u16,
        node: NodeId,
        k: u16,
        m: u16,
        shard_bytes: u64,
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
}

/// A snapshot for status displays.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairStatus {
    pub segments: usize,
    /// Segments missing at least one shard (queued or running).
    pub degraded: usize,
    pub inflight: usize,
    /// Segments with fewer than `k` reachable shards: cannot be repaired until holders return.
    pub unrecoverable: Vec<SegmentId>,
}

#[derive(Debug, Clone)]
struct NodeState {
    info: NodeInfo,
    down_since: Option<u64>,
}

#[derive(Debug, Clone)]
struct SegState {
    k: u16,
    m: u16,
    shard_bytes: u64,
    holders: BTreeMap<u16, NodeId>,
    inflight: bool,
    retry_at: u64,
    /// When the segment was first reported. Indices nobody reported count as lost only from
    /// `first_seen + grace_ms` on, so a partial inventory (reports still arriving after a start
    /// or a partition) does not trigger repairs.
    first_seen: u64,
}

/// The repair planner.
#[derive(Debug, Clone)]
pub struct RepairPlanner {
    cfg: RepairConfig,
    nodes: BTreeMap<NodeId, NodeState>,
    segments: BTreeMap<SegmentId, SegState>,
    inflight: usize,
    tokens: u64,
    refilled_at: u64,
}

impl RepairPlanner {
    pub fn new(cfg: RepairConfig, now: u64) -> Self {
        let tokens = cfg.burst_bytes;
        Self {
            cfg,
            nodes: BTreeMap::new(),
            segments: BTreeMap::new(),
            inflight: 0,
            tokens,
            refilled_at: now,
        }
    }

    pub fn handle(&mut self, now: u64, event: Event) {
        match event {
            Event::NodeUp(info) => {
                self.nodes.insert(
                    info.id,
                    NodeState {
                        info,
                        down_since: None,
                    },
                );
            }
            Event::NodeDown(id) => {
                if let Some(n) = self.nodes.get_mut(&id) {
                    n.down_since.get_or_insert(now);
                }
            }
            Event::NodeLeft(id) => {
                self.nodes.remove(&id);
            }
            Event::ShardHeld {
                segment,
                index,
                node,
                k,
                m,
                shard_bytes,
            } => {
                let s = self.segments.entry(segment).or_insert_with(|| SegState {
                    k,
                    m,
                    shard_bytes,
                    holders: BTreeMap::new(),
                    inflight: false,
                    retry_at: 0,
                    first_seen: now,
                });
                if usize::from(index) < usize::from(s.k) + usize::from(s.m) {
                    s.holders.insert(index, node);
                }
            }
            Event::ShardLost {
                segment,
                index,
                node,
            } => {
                if let Some(s) = self.segments.get_mut(&segment)
                    && s.holders.get(&index) == Some(&node)
                {
                    s.holders.remove(&index);
                }
            }
            Event::RepairDone { segment, stored } => {
                if let Some(s) = self.segments.get_mut(&segment) {
                    for (index, node) in stored {
                        s.holders.insert(index, node);
                    }
                    if s.inflight {
                        s.inflight = false;
                        self.inflight -= 1;
                    }
                }
            }
            Event::RepairFailed { segment } => {
                if let Some(s) = self.segments.get_mut(&segment)
                    && s.inflight
                {
                    s.inflight = false;
                    s.retry_at = now + self.cfg.retry_ms;
                    self.inflight -= 1;
                }
            }
        }
    }

    /// Whether a holder's shard is usable as a repair source now.
    fn reachable(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_some_and(|n| n.down_since.is_none())
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
        let n = s.k + s.m;
        let settled = now.saturating_sub(s.first_seen) >= self.cfg.grace_ms;
        (0..n)
            .filter(|i| match s.holders.get(i) {
                Some(h) => !self.counts(h, now),
                None => settled,
            })
            .collect()
    }

    /// The next repair allowed at `now`, if any. Call until it returns `None`.
    pub fn poll(&mut self, now: u64) -> Option<RepairAction> {
        self.refill(now);
        if self.inflight >= self.cfg.max_inflight {
            return None;
        }
        // Most endangered first: fewest counted shards, then segment ID.
        let mut queue: Vec<(usize, SegmentId)> = self
            .segments
            .iter()
            .filter(|(_, s)| !s.inflight && s.retry_at <= now)
            .filter_map(|(id, s)| {
                let missing = self.missing(s, now).len();
                (missing > 0).then(|| (usize::from(s.k + s.m) - missing, *id))
            })
            .collect();
        queue.sort();
        let up: Vec<NodeInfo> = self
            .nodes
            .values()
            .filter(|n| n.down_since.is_none())
            .map(|n| n.info.clone())
            .collect();
        for (_, id) in queue {
            let s = &self.segments[&id];
            let sources: Vec<(u16, NodeId)> = s
                .holders
                .iter()
                .filter(|(_, h)| self.reachable(h))
                .map(|(i, h)| (*i, *h))
                .take(usize::from(s.k))
                .collect();
            if sources.len() < usize::from(s.k) {
                continue; // unrecoverable for now
            }
            let missing = self.missing(s, now);
            let bytes = s.shard_bytes * missing.len() as u64;
            if self.tokens < bytes.min(self.cfg.burst_bytes) {
                // Throttled: wait for tokens rather than letting smaller repairs jump the queue.
                return None;
            }
            let holders: Vec<NodeId> = s.holders.values().copied().collect();
            let occupied: Vec<NodeInfo> = s
                .holders
                .iter()
                .filter(|(i, h)| !missing.contains(i) && self.counts(h, now))
                .filter_map(|(_, h)| self.nodes.get(h).map(|n| n.info.clone()))
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
            self.inflight += 1;
            let s = self.segments.get_mut(&id).expect("segment exists");
            s.inflight = true;
            return Some(RepairAction {
                segment: id,
                sources,
                targets,
                bytes,
            });
        }
        None
    }

    /// The earliest time after `now` at which [`RepairPlanner::poll`] could return something new
    /// without another event (grace expiry, retry, or token refill), for the shell's timer.
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
        for s in self.segments.values() {
            consider(s.retry_at);
            consider(s.first_seen + self.cfg.grace_ms);
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
            inflight: self.inflight,
            ..Default::default()
        };
        for (id, s) in &self.segments {
            if !self.missing(s, now).is_empty() {
                st.degraded += 1;
            }
            let reachable = s.holders.values().filter(|h| self.reachable(h)).count();
            if reachable < usize::from(s.k) {
                st.unrecoverable.push(*id);
            }
        }
        st
    }

    /// Holders currently recorded for a segment (index → node).
    pub fn holders(&self, segment: &SegmentId) -> Option<&BTreeMap<u16, NodeId>> {
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
