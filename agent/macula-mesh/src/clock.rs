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

    pub fn from_text(text: &str) -> Result<Self, String> {
        let mut it = text.split_whitespace();
        let (Some(g), Some(c), None) = (it.next(), it.next(), it.next()) else {
            return Err("expected `<generation> <version ceiling>`".into());
        };
        Ok(Self {
            generation: g.parse().map_err(|e| format!("generation {g:?}: {e}"))?,
            ceiling: c
                .parse()
                .map_err(|e| format!("version ceiling {c:?}: {e}"))?,
        })
    }
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
}
