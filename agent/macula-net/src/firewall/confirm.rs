//! Commit-confirm as a sans-IO state machine: every apply arms a deadline; `Confirm` before the
//! deadline keeps the ruleset; otherwise the ruleset saved before the *first* unconfirmed apply is
//! restored. Time is whatever monotonic [`Duration`] the caller feeds in.

use std::time::Duration;

/// What the shell must do after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmAction<S> {
    /// Wake up at this time and feed [`ConfirmGuard::tick`].
    ArmTimer(Duration),
    /// Restore this saved state now.
    Rollback(S),
    /// Nothing to do.
    Nothing,
}

/// `Confirm` arrived while nothing was pending.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "nothing to confirm: no firewall apply is pending (it was confirmed or already rolled back); run `maculactl firewall show`"
)]
pub struct NothingToConfirm;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending<S> {
    deadline: Duration,
    saved: S,
    generation: u64,
}

/// The confirm timer logic. `S` is the saved state to roll back to.
#[derive(Debug, Clone)]
pub struct ConfirmGuard<S> {
    pending: Option<Pending<S>>,
    generation: u64,
}

impl<S> Default for ConfirmGuard<S> {
    fn default() -> Self {
        Self {
            pending: None,
            generation: 0,
        }
    }
}

impl<S: Clone> ConfirmGuard<S> {
    /// A ruleset was applied at `now`; `saved` is the state before it. If an earlier apply is still
    /// unconfirmed, its (older) saved state is kept: rollback returns to the last confirmed state.
    /// Returns the apply's generation and the timer to arm.
    pub fn applied(
        &mut self,
        now: Duration,
        timeout: Duration,
        saved: S,
    ) -> (u64, ConfirmAction<S>) {
        self.generation += 1;
        let deadline = now + timeout;
        let saved = match self.pending.take() {
            Some(p) => p.saved,
            None => saved,
        };
        self.pending = Some(Pending {
            deadline,
            saved,
            generation: self.generation,
        });
        (self.generation, ConfirmAction::ArmTimer(deadline))
    }

    /// The operator confirmed; returns the confirmed generation.
    pub fn confirm(&mut self) -> Result<u64, NothingToConfirm> {
        self.pending
            .take()
            .map(|p| p.generation)
            .ok_or(NothingToConfirm)
    }

    /// A timer fired at `now`. Stale timers (from an apply that was re-armed or confirmed) do nothing.
    pub fn tick(&mut self, now: Duration) -> ConfirmAction<S> {
        match &self.pending {
            Some(p) if now >= p.deadline => {
                let p = self.pending.take().expect("checked");
                ConfirmAction::Rollback(p.saved)
            }
            _ => ConfirmAction::Nothing,
        }
    }

    /// The deadline of the pending apply, if any.
    pub fn deadline(&self) -> Option<Duration> {
        self.pending.as_ref().map(|p| p.deadline)
    }

    /// The generation of the pending apply, if any.
    pub fn pending_generation(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.generation)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn unconfirmed_apply_rolls_back_at_the_deadline() {
        let mut g = ConfirmGuard::default();
        let (generation, a) = g.applied(10 * S, 30 * S, "old");
        assert_eq!(generation, 1);
        assert_eq!(a, ConfirmAction::ArmTimer(40 * S));
        assert_eq!(g.tick(39 * S), ConfirmAction::Nothing);
        assert_eq!(g.tick(40 * S), ConfirmAction::Rollback("old"));
        assert_eq!(g.tick(41 * S), ConfirmAction::Nothing);
        assert_eq!(g.confirm(), Err(NothingToConfirm));
    }

    #[test]
    fn confirm_cancels_the_rollback() {
        let mut g = ConfirmGuard::default();
        g.applied(Duration::ZERO, 5 * S, "old");
        assert_eq!(g.confirm(), Ok(1));
        assert_eq!(g.tick(100 * S), ConfirmAction::Nothing);
        assert_eq!(g.deadline(), None);
    }

    #[test]
    fn second_apply_keeps_the_first_saved_state_and_rearms() {
        let mut g = ConfirmGuard::default();
        g.applied(Duration::ZERO, 5 * S, "confirmed");
        let (generation, a) = g.applied(3 * S, 5 * S, "unconfirmed");
        assert_eq!(generation, 2);
        assert_eq!(a, ConfirmAction::ArmTimer(8 * S));
        // The first timer fires at 5 s: stale, nothing happens.
        assert_eq!(g.tick(5 * S), ConfirmAction::Nothing);
        assert_eq!(g.tick(8 * S), ConfirmAction::Rollback("confirmed"));
    }

    /// Deterministic simulation: random interleavings of apply/confirm/tick against a reference
    /// model (the state is rolled back iff the last apply was not confirmed before its deadline).
    #[test]
    fn simulation_against_model() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for _ in 0..200 {
            let mut g = ConfirmGuard::default();
            let mut now = Duration::ZERO;
            let mut live = 0u32; // the "ruleset": a version number
            let mut confirmed = 0u32;
            let mut model_deadline: Option<Duration> = None;
            for step in 1..100u32 {
                now += Duration::from_millis(next() % 3000);
                match next() % 3 {
                    0 => {
                        let (_, a) = g.applied(now, 5 * S, live);
                        live = step;
                        assert_eq!(a, ConfirmAction::ArmTimer(now + 5 * S));
                        model_deadline = Some(now + 5 * S);
                    }
                    1 => {
                        let r = g.confirm();
                        assert_eq!(r.is_ok(), model_deadline.is_some());
                        if r.is_ok() {
                            confirmed = live;
                        }
                        model_deadline = None;
                    }
                    _ => match g.tick(now) {
                        ConfirmAction::Rollback(saved) => {
                            assert!(model_deadline.is_some_and(|d| now >= d));
                            assert_eq!(saved, confirmed);
                            live = saved;
                            model_deadline = None;
                        }
                        ConfirmAction::Nothing => {
                            assert!(model_deadline.is_none_or(|d| now < d));
                        }
                        ConfirmAction::ArmTimer(_) => unreachable!(),
                    },
                }
                if model_deadline.is_none() {
                    assert_eq!(
                        live, confirmed,
                        "no pending apply ⇒ live state is confirmed"
                    );
                }
            }
        }
    }
}
