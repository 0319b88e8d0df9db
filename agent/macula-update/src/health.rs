//! When may the running slot be marked good? A pure function of what the agent observed.
//!
//! The boot loader counts every boot of a slot as a try until RAUC marks it good. The agent marks
//! it good only when all its health checks pass and have been passing for the settle time, so a
//! system that comes up and immediately degrades is not confirmed. A check that is still failing
//! at the deadline is final: the slot stays unconfirmed and the next reset falls back to the
//! previous slot. A slot that is already good needs nothing.

use std::time::Duration;

/// Wait before trying again to mark the slot good when RAUC refused.
pub const MARK_RETRY: Duration = Duration::from_secs(1);

/// The slot the boot loader started (`rauc.slot=` on the kernel command line, `/proc/cmdline`),
/// if any: only such a boot has a slot to confirm.
pub fn booted_slot(cmdline: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rauc.slot="))
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// How long to wait before confirming, and until when a failing check may still recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// All checks must have passed continuously for this long.
    pub settle: Duration,
    /// Since the agent started; after this a failing check is final.
    pub deadline: Duration,
}

/// The result of one health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckState {
    /// Passing since this time (relative to the agent's start).
    PassingSince(Duration),
    /// Not decided yet (e.g. a subsystem still starting).
    Pending,
    /// Failing, with the reason people see.
    Failing(String),
}

/// One named health check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub state: CheckState,
}

/// What the agent knows at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Time since the agent started.
    pub now: Duration,
    /// The booted slot's boot name (`A`/`B`), or `None` when not booted from a RAUC slot
    /// (development machine): then there is nothing to confirm.
    pub booted: Option<String>,
    pub checks: Vec<Check>,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Mark this slot good.
    MarkGood { slot: String },
    /// Look again after this long.
    Wait { recheck_in: Duration },
    /// Nothing to do: the system did not boot from a RAUC slot. A slot RAUC already reports good
    /// is still confirmed after the checks: with U-Boot a slot is "good" while it has attempts
    /// left, and only marking it good restores them (else it falls back after 3 boots).
    Nothing,
    /// The deadline passed with failing checks: leave the slot unconfirmed (the boot loader falls
    /// back at the next reset). Names the failing checks with their reasons.
    Unhealthy { failing: Vec<String> },
}

/// How often to look again while waiting (bounded by the settle and deadline times).
const RECHECK: Duration = Duration::from_secs(1);

/// Decides for one observation. Deterministic: same observation, same decision.
pub fn decide(policy: &Policy, obs: &Observation) -> Decision {
    let Some(slot) = &obs.booted else {
        return Decision::Nothing;
    };
    let failing: Vec<String> = obs
        .checks
        .iter()
        .filter_map(|c| match &c.state {
            CheckState::Failing(why) => Some(format!("{}: {why}", c.name)),
            _ => None,
        })
        .collect();
    let pending = obs
        .checks
        .iter()
        .any(|c| matches!(c.state, CheckState::Pending));
    if !failing.is_empty() || pending {
        if obs.now >= policy.deadline {
            let failing = if failing.is_empty() {
                obs.checks
                    .iter()
                    .filter(|c| c.state == CheckState::Pending)
                    .map(|c| format!("{}: still pending at the deadline", c.name))
                    .collect()
            } else {
                failing
            };
            return Decision::Unhealthy { failing };
        }
        return Decision::Wait {
            recheck_in: RECHECK.min(policy.deadline - obs.now),
        };
    }
    // every check passes: since when have all of them passed?
    let all_since = obs
        .checks
        .iter()
        .filter_map(|c| match c.state {
            CheckState::PassingSince(t) => Some(t),
            _ => None,
        })
        .max()
        .unwrap_or(Duration::ZERO);
    let settled_at = all_since + policy.settle;
    if obs.now >= settled_at {
        Decision::MarkGood { slot: slot.clone() }
    } else {
        Decision::Wait {
            recheck_in: (settled_at - obs.now).min(RECHECK),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booted_slot_from_cmdline() {
        assert_eq!(
            booted_slot("console=ttyS0 root=PARTLABEL=rootfs-b rauc.slot=B quiet").as_deref(),
            Some("B")
        );
        assert_eq!(booted_slot("console=ttyS0 quiet"), None);
        assert_eq!(booted_slot("rauc.slot="), None);
    }

    const S: Duration = Duration::from_secs(1);

    fn policy() -> Policy {
        Policy {
            settle: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
        }
    }

    fn obs(now: u64, checks: Vec<(&str, CheckState)>) -> Observation {
        Observation {
            now: Duration::from_secs(now),
            booted: Some("B".into()),
            checks: checks
                .into_iter()
                .map(|(n, s)| Check {
                    name: n.into(),
                    state: s,
                })
                .collect(),
        }
    }

    fn pass(since: u64) -> CheckState {
        CheckState::PassingSince(Duration::from_secs(since))
    }

    #[test]
    fn marks_good_only_after_settling() {
        let p = policy();
        let checks = || vec![("bus", pass(0)), ("state-dir", pass(2))];
        assert_eq!(
            decide(&p, &obs(3, checks())),
            Decision::Wait { recheck_in: S }
        );
        assert_eq!(
            decide(&p, &obs(6, checks())),
            Decision::Wait {
                recheck_in: Duration::from_secs(1)
            }
        );
        assert_eq!(
            decide(&p, &obs(7, checks())),
            Decision::MarkGood { slot: "B".into() }
        );
    }

    #[test]
    fn waits_while_pending_or_failing_then_gives_up_at_the_deadline() {
        let p = policy();
        let failing = || {
            vec![
                ("bus", pass(0)),
                ("state-dir", CheckState::Failing("read-only".into())),
            ]
        };
        assert!(matches!(
            decide(&p, &obs(10, failing())),
            Decision::Wait { .. }
        ));
        assert_eq!(
            decide(&p, &obs(60, failing())),
            Decision::Unhealthy {
                failing: vec!["state-dir: read-only".into()]
            }
        );
        let pending = vec![("mesh", CheckState::Pending)];
        assert!(matches!(
            decide(&p, &obs(59, pending.clone())),
            Decision::Wait { recheck_in } if recheck_in == S
        ));
        assert_eq!(
            decide(&p, &obs(61, pending)),
            Decision::Unhealthy {
                failing: vec!["mesh: still pending at the deadline".into()]
            }
        );
    }

    #[test]
    fn a_recovered_check_restarts_the_settle_time() {
        let p = policy();
        // failing until t=20, passing since: not good before t=25
        assert!(matches!(
            decide(&p, &obs(22, vec![("bus", pass(20))])),
            Decision::Wait { .. }
        ));
        assert_eq!(
            decide(&p, &obs(25, vec![("bus", pass(20))])),
            Decision::MarkGood { slot: "B".into() }
        );
    }

    #[test]
    fn every_rauc_boot_is_confirmed_and_other_boots_are_left_alone() {
        let p = policy();
        let mut o = obs(100, vec![("bus", pass(0))]);
        assert_eq!(decide(&p, &o), Decision::MarkGood { slot: "B".into() });
        o.booted = None;
        assert_eq!(decide(&p, &o), Decision::Nothing);
    }

    #[test]
    fn no_checks_means_settle_from_start() {
        let p = policy();
        assert!(matches!(decide(&p, &obs(4, vec![])), Decision::Wait { .. }));
        assert_eq!(
            decide(&p, &obs(5, vec![])),
            Decision::MarkGood { slot: "B".into() }
        );
    }
}
