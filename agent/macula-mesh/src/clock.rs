//! Time a node can rely on without a correct wall clock (sans-IO).
//!
//! A Raspberry Pi has no real-time clock: it boots at the last saved time or at 1970. Two things
//! in membership used to follow the wall clock and so went backwards with it: the SWIM generation
//! of a restarted node (Unix seconds) and the version of its signed metadata (Unix milliseconds),
//! which peers compare to keep the newest. [`MetaClock`] makes both grow across restarts whatever
//! the clock says: it follows the wall clock when that is ahead, and otherwise counts on from a
//! small record ([`ClockState`]) the node persists before it uses any value covered by it.

use serde::{Deserialize, Serialize};

/// How far ahead of the newest version the persisted ceiling is set (1 hour of milliseconds):
/// versions up to the ceiling need no write; the next one past it moves the ceiling first.
pub const VERSION_LEASE: u64 = 3_600_000;

/// What a node persists (in its state directory, fsync'd) so that its generation and metadata
/// versions never repeat or go back after a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockState {
    /// The SWIM generation of the current run.
    pub generation: u32,
    /// No metadata version above this has been used; the next run starts above it.
    pub ceiling: u64,
}

impl ClockState {
    /// Text form of the state file: `generation ceiling\n`.
    pub fn to_text(&self) -> String {
        format!("{} {}\n", self.generation, self.ceiling)
    }

    pub fn from_text(text: &str) -> Result<Self, ClockStateError> {
        let mut it = text.split_whitespace();
        let (Some(g), Some(c), None) = (it.next(), it.next(), it.next()) else {
            return Err(ClockStateError::Shape);
        };
        Ok(Self {
            generation: g.parse().map_err(|source| ClockStateError::Generation {
                text: g.into(),
                source,
            })?,
            ceiling: c.parse().map_err(|source| ClockStateError::Ceiling {
                text: c.into(),
                source,
            })?,
        })
    }
}

/// Why a state file's text is not a [`ClockState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClockStateError {
    #[error("expected `<generation> <version ceiling>`")]
    Shape,
    #[error("generation {text:?}: {source}")]
    Generation {
        text: String,
        source: std::num::ParseIntError,
    },
    #[error("version ceiling {text:?}: {source}")]
    Ceiling {
        text: String,
        source: std::num::ParseIntError,
    },
}

/// Generations and metadata versions that only grow, run after run.
#[derive(Debug, Clone)]
pub struct MetaClock {
    generation: u32,
    /// The last version handed out (or the previous run's ceiling).
    last: u64,
    /// Versions up to here are covered by persisted state; `u64::MAX` when nothing is persisted.
    ceiling: u64,
}

impl MetaClock {
    /// A clock that persists nothing: the generation is the clock's Unix seconds at `now_ms`,
    /// versions follow the clock or count on from the last one within this run (simulations and
    /// tests that do not restart a node).
    pub fn volatile(now_ms: u64) -> Self {
        Self {
            generation: u32::try_from(now_ms / 1000).unwrap_or(u32::MAX).max(1),
            last: 0,
            ceiling: u64::MAX,
        }
    }

    /// Resumes after a restart from the state the previous run persisted (`None`: first start).
    /// The returned state must be persisted before the generation or any version is used.
    pub fn resume(saved: Option<ClockState>, now_ms: u64) -> (Self, ClockState) {
        let clock_secs = u32::try_from(now_ms / 1000).unwrap_or(u32::MAX);
        let generation = saved
            .map_or(1, |s| s.generation.saturating_add(1))
            .max(clock_secs);
        let last = saved.map_or(0, |s| s.ceiling);
        let state = ClockState {
            generation,
            ceiling: last.max(now_ms).saturating_add(VERSION_LEASE),
        };
        let clock = Self {
            generation,
            last,
            ceiling: state.ceiling,
        };
        (clock, state)
    }

    /// The SWIM generation of this run.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The next metadata version: `now_ms` when the clock is ahead, else one more than the last
    /// (and never below `floor`). When it passes the persisted ceiling, also returns the new
    /// state, which must be persisted before the version is used.
    pub fn next(&mut self, now_ms: u64, floor: u64) -> (u64, Option<ClockState>) {
        let v = now_ms.max(self.last.saturating_add(1)).max(floor);
        self.last = v;
        if v <= self.ceiling {
            return (v, None);
        }
        self.ceiling = v.saturating_add(VERSION_LEASE);
        let state = ClockState {
            generation: self.generation,
            ceiling: self.ceiling,
        };
        (v, Some(state))
    }
}

/// One reading of a peer's wall clock against ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeSample {
    /// The peer's clock minus ours at the middle of the exchange, in milliseconds.
    pub offset_ms: i64,
    /// Round-trip time of the exchange: the reading is uncertain by half of it.
    pub rtt_ms: u64,
    /// The peer is a hub (certified with the hub role): hubs are preferred as time sources.
    pub hub: bool,
}

/// The realm's time as seen from one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// The realm's clock minus ours, in milliseconds (positive: our clock is behind).
    pub offset_ms: i64,
    /// How many peers the estimate is the median of.
    pub peers: usize,
    /// Whether those peers are hubs.
    pub hubs: bool,
    /// Whether the estimate comes from NTP servers (`peers` counts the servers then).
    pub ntp: bool,
}

/// What to do about our clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No peer answered yet, or too few samples to say.
    Unknown,
    /// Our clock agrees with the realm's within the threshold.
    Agrees(Estimate),
    /// Our clock is off by more than the threshold: say so.
    Off(Estimate),
    /// Our clock is off by more than the threshold and we may set it: step it by `offset_ms`.
    Step(Estimate),
}

/// Learns the time (sans-IO): the median offset of the NTP servers that answered, else of the
/// realm's hubs that answered, else of all answering peers. Samples whose round trip exceeds
/// [`RealmClock::MAX_RTT_MS`] are dropped (too uncertain).
#[derive(Debug, Clone)]
pub struct RealmClock {
    samples: std::collections::HashMap<macula_core::NodeId, TimeSample>,
    ntp: Vec<i64>,
    threshold_ms: u64,
}

impl RealmClock {
    /// Round trips longer than this do not count.
    pub const MAX_RTT_MS: u64 = 2000;

    /// `threshold_ms`: how far our clock may be from the realm's before it is called wrong.
    pub fn new(threshold_ms: u64) -> Self {
        Self {
            samples: Default::default(),
            ntp: Vec::new(),
            threshold_ms,
        }
    }

    /// Records `peer`'s newest reading (replacing its previous one).
    pub fn sample(&mut self, peer: macula_core::NodeId, s: TimeSample) {
        if s.rtt_ms <= Self::MAX_RTT_MS {
            self.samples.insert(peer, s);
        }
    }

    /// Records an NTP server's reading (see [`crate::ntp::read_reply`]).
    pub fn sample_ntp(&mut self, offset_ms: i64, rtt_ms: u64) {
        if rtt_ms <= Self::MAX_RTT_MS {
            self.ntp.push(offset_ms);
        }
    }

    /// The median offset of the NTP servers' readings, else of the hubs' samples, else of all
    /// samples.
    pub fn estimate(&self) -> Option<Estimate> {
        let hubs: Vec<i64> = self
            .samples
            .values()
            .filter(|s| s.hub)
            .map(|s| s.offset_ms)
            .collect();
        let (mut offsets, hub, ntp) = if !self.ntp.is_empty() {
            (self.ntp.clone(), false, true)
        } else if hubs.is_empty() {
            (
                self.samples.values().map(|s| s.offset_ms).collect(),
                false,
                false,
            )
        } else {
            (hubs, true, false)
        };
        if offsets.is_empty() {
            return None;
        }
        offsets.sort_unstable();
        let n = offsets.len();
        // The lower median for an even count: with two samples that disagree, the smaller
        // correction.
        let offset_ms = if n % 2 == 1 {
            offsets[n / 2]
        } else {
            let (a, b) = (offsets[n / 2 - 1], offsets[n / 2]);
            if a.unsigned_abs() <= b.unsigned_abs() {
                a
            } else {
                b
            }
        };
        Some(Estimate {
            offset_ms,
            peers: n,
            hubs: hub,
            ntp,
        })
    }

    /// What to do: `may_step` says whether this node may set its clock (root on the
    /// appliance, allowed by configuration).
    pub fn decide(&self, may_step: bool) -> Decision {
        match self.estimate() {
            None => Decision::Unknown,
            Some(e) if e.offset_ms.unsigned_abs() <= self.threshold_ms => Decision::Agrees(e),
            Some(e) if may_step => Decision::Step(e),
            Some(e) => Decision::Off(e),
        }
    }

    /// Our clock was stepped by `by_ms`: the samples taken before now read that much less.
    pub fn stepped(&mut self, by_ms: i64) {
        for s in self.samples.values_mut() {
            s.offset_ms = s.offset_ms.saturating_sub(by_ms);
        }
        for o in &mut self.ntp {
            *o = o.saturating_sub(by_ms);
        }
    }
}

/// The offset of a peer's clock from an exchange: we read `sent_ms` on our clock, the peer
/// answered `peer_ms`, and the answer came back `rtt_ms` later (measured on a monotonic clock).
pub fn offset_from_exchange(sent_ms: u64, rtt_ms: u64, peer_ms: u64) -> i64 {
    let mid = i128::from(sent_ms) + i128::from(rtt_ms / 2);
    i64::try_from(i128::from(peer_ms) - mid).unwrap_or(if peer_ms as i128 > mid {
        i64::MAX
    } else {
        i64::MIN
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;
    const NOW: u64 = 1_800_000_000_000;

    #[test]
    fn versions_grow_across_restarts_whatever_the_clock_says() {
        let (mut c, disk) = MetaClock::resume(None, NOW);
        assert_eq!(c.generation(), (NOW / 1000) as u32);
        assert_eq!(c.next(NOW, 0), (NOW, None), "a right clock is the version");
        // Many updates, then a restart with the clock three hours behind.
        let mut disk = disk;
        let mut last = 0;
        for i in 1..=5000u64 {
            let (v, persist) = c.next(NOW + i * 1000, 0);
            if let Some(s) = persist {
                assert!(s.ceiling >= v);
                disk = s;
            }
            last = v;
        }
        for behind in [NOW - 3 * HOUR, 0] {
            let gen_before = c.generation();
            let (mut c2, state) = MetaClock::resume(Some(disk), behind);
            assert!(c2.generation() > gen_before);
            let (v, persist) = c2.next(behind, 0);
            assert!(v > last, "{v} after {last}");
            assert_eq!(persist, None, "resume persisted the ceiling already");
            disk = state;
            c = c2;
            last = v;
        }
        // Within a run, the clock stepping back does not lower the version either.
        let (a, _) = c.next(5, 0);
        let (b, _) = c.next(4, 0);
        assert!(b > a && a > last);
        // The floor (the current version of own metadata) is respected.
        assert_eq!(c.next(0, b + 100).0, b + 100);
    }

    #[test]
    fn state_file_errors_keep_their_type() {
        assert_eq!(ClockState::from_text("1"), Err(ClockStateError::Shape));
        assert!(matches!(
            ClockState::from_text("x 5"),
            Err(ClockStateError::Generation { ref text, .. }) if text == "x"
        ));
        assert!(matches!(
            ClockState::from_text("1 -5"),
            Err(ClockStateError::Ceiling { ref text, .. }) if text == "-5"
        ));
    }

    #[test]
    fn the_ceiling_moves_before_a_version_passes_it() {
        let (mut c, disk) = MetaClock::resume(None, 0);
        assert_eq!(disk.ceiling, VERSION_LEASE);
        assert_eq!(disk.generation, 1, "a node at 1970 still gets a generation");
        let mut writes = 0;
        let mut ceiling = disk.ceiling;
        for _ in 0..3 * VERSION_LEASE / 1000 {
            let (v, persist) = c.next(0, 0);
            if let Some(s) = persist {
                writes += 1;
                ceiling = s.ceiling;
            }
            assert!(v <= ceiling);
        }
        assert_eq!(writes, 0, "3600 updates fit in one lease");
        let (v, persist) = c.next(VERSION_LEASE * 2, 0);
        assert_eq!(persist.unwrap().ceiling, v + VERSION_LEASE);
    }

    #[test]
    fn state_text_round_trips_and_rejects_garbage() {
        let s = ClockState {
            generation: 7,
            ceiling: 123,
        };
        assert_eq!(ClockState::from_text(&s.to_text()).unwrap(), s);
        for bad in ["", "7", "7 x", "7 1 2", "-1 5"] {
            assert!(ClockState::from_text(bad).is_err(), "{bad:?}");
        }
    }

    fn peer(i: u8) -> macula_core::NodeId {
        macula_core::NodeKey::from_seed([i; 32]).node_id()
    }

    fn s(offset_ms: i64, hub: bool) -> TimeSample {
        TimeSample {
            offset_ms,
            rtt_ms: 10,
            hub,
        }
    }

    #[test]
    fn ntp_servers_come_before_hubs_and_slow_answers_do_not_count() {
        let mut rc = RealmClock::new(5_000);
        rc.sample(peer(1), s(7, true));
        rc.sample_ntp(3 * 3_600_000, 30);
        rc.sample_ntp(3 * 3_600_000 + 20, 40);
        rc.sample_ntp(-86_400_000, RealmClock::MAX_RTT_MS + 1);
        let e = rc.estimate().unwrap();
        assert_eq!(
            (e.offset_ms, e.peers, e.hubs, e.ntp),
            (3 * 3_600_000, 2, false, true)
        );
        assert_eq!(rc.decide(true), Decision::Step(e));
        rc.stepped(3 * 3_600_000);
        assert_eq!(rc.decide(true), Decision::Agrees(rc.estimate().unwrap()));
        // No NTP reading: the hub's clock.
        let mut rc = RealmClock::new(5_000);
        rc.sample(peer(1), s(7, true));
        assert!(!rc.estimate().unwrap().ntp);
    }

    #[test]
    fn the_realm_time_is_the_median_of_hubs_first() {
        let mut rc = RealmClock::new(5_000);
        assert_eq!(rc.decide(true), Decision::Unknown);
        // Three edges, one of them far off: the median ignores it.
        rc.sample(peer(1), s(3 * 3_600_000, false));
        rc.sample(peer(2), s(3 * 3_600_000 + 40, false));
        rc.sample(peer(3), s(-86_400_000, false));
        let e = rc.estimate().unwrap();
        assert_eq!((e.offset_ms, e.peers, e.hubs), (3 * 3_600_000, 3, false));
        assert_eq!(rc.decide(false), Decision::Off(e));
        assert_eq!(rc.decide(true), Decision::Step(e));
        // A hub answers: hubs win over any number of edges.
        rc.sample(peer(4), s(3 * 3_600_000 + 7, true));
        let e = rc.estimate().unwrap();
        assert_eq!((e.offset_ms, e.peers, e.hubs), (3 * 3_600_000 + 7, 1, true));
        // After stepping by that much, the same samples say the clock agrees.
        rc.stepped(e.offset_ms);
        assert!(matches!(rc.decide(true), Decision::Agrees(a) if a.offset_ms == 0));
        // With two hubs that disagree, the smaller correction is taken.
        let mut rc = RealmClock::new(5_000);
        rc.sample(peer(5), s(-100, true));
        rc.sample(peer(6), s(9_000, true));
        assert_eq!(rc.estimate().unwrap().offset_ms, -100);
        assert!(matches!(rc.decide(true), Decision::Agrees(_)));
    }

    #[test]
    fn slow_answers_do_not_count_and_exchanges_are_read_at_their_middle() {
        let mut rc = RealmClock::new(1_000);
        rc.sample(
            peer(1),
            TimeSample {
                offset_ms: 50_000,
                rtt_ms: RealmClock::MAX_RTT_MS + 1,
                hub: true,
            },
        );
        assert_eq!(rc.decide(true), Decision::Unknown);
        // We sent at 1000 (our clock), the answer 4000 came back 200 ms later: the peer read
        // 4000 at our 1100, so it is 2900 ahead.
        assert_eq!(offset_from_exchange(1000, 200, 4000), 2900);
        assert_eq!(offset_from_exchange(5000, 0, 0), -5000);
        assert_eq!(offset_from_exchange(0, 0, u64::MAX), i64::MAX);
    }

    #[test]
    fn time_reply_vector() {
        // The `mesh.time` reply body (docs/protocol.md §8): wire(u64 Unix ms).
        let body = macula_core::wire::encode(&1_800_000_000_000u64);
        assert_eq!(hex(&body), "0180a0f1c2b134");
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
