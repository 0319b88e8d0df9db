//! When this node's storage capacity is worth a new member-metadata announcement (sans-IO: the
//! caller passes the time and re-announces with `MeshNode::set_capacity`).
//!
//! Every announcement is a rumor that every member retransmits, so a change is announced only when
//! it matters to placement and at most once per [`ANNOUNCE_INTERVAL`].

use std::time::{Duration, Instant};

use crate::membership::Capacity;

/// Least time between two announcements of this node's storage capacity.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(5);

/// Decides when a new storage capacity is worth announcing: when the quota changed, or free
/// space moved by at least 1 % of the quota or one shard (the smaller: placement skips a node
/// without room for a shard, so that much matters) since the last announcement; and at most once
/// per [`ANNOUNCE_INTERVAL`] — a change that comes sooner is held and announced (its latest value)
/// when the interval has passed.
#[derive(Debug)]
pub struct CapacityAnnouncer {
    /// What members heard last (or hear when the mesh starts).
    announced: Capacity,
    at: Option<Instant>,
    /// A change held back by the interval (a timer is due for it).
    held: Option<Capacity>,
}

/// What to do with an offered capacity.
#[derive(Debug, PartialEq, Eq)]
pub enum Announce {
    /// Announce it now.
    Now(Capacity),
    /// Call [`CapacityAnnouncer::due`] after this long.
    Later(Duration),
    Nothing,
}

impl CapacityAnnouncer {
    /// `capacity` is what the mesh announces when it starts.
    pub fn new(capacity: Capacity) -> Self {
        Self {
            announced: capacity,
            at: None,
            held: None,
        }
    }

    /// What members heard last, or hear when the mesh starts.
    pub fn announced(&self) -> Capacity {
        self.announced
    }

    /// A new capacity at `now`; `shard_bytes` is the size of one shard.
    pub fn offer(&mut self, c: Capacity, shard_bytes: u64, now: Instant) -> Announce {
        let threshold = (c.storage_total / 100).min(shard_bytes).max(1);
        let moved = c.storage_total != self.announced.storage_total
            || c.storage_free.abs_diff(self.announced.storage_free) >= threshold;
        if !moved {
            // Back near what members know: nothing to tell them.
            self.held = None;
            return Announce::Nothing;
        }
        match self.at.map(|at| now.saturating_duration_since(at)) {
            Some(since) if since < ANNOUNCE_INTERVAL => {
                if self.held.replace(c).is_some() {
                    Announce::Nothing
                } else {
                    Announce::Later(ANNOUNCE_INTERVAL - since)
                }
            }
            _ => {
                self.held = None;
                self.announced = c;
                self.at = Some(now);
                Announce::Now(c)
            }
        }
    }

    /// The held change, now announced (when a [`Announce::Later`] is due).
    pub fn due(&mut self, now: Instant) -> Option<Capacity> {
        let c = self.held.take()?;
        self.announced = c;
        self.at = Some(now);
        Some(c)
    }
}
