//! Quarantine (docs/proofs.md §6): a pure state machine fed proof results in the ledger's
//! canonical order, so every node that holds the same ledger reaches the same verdicts.
//!
//! A node that fails `max_failures` proofs within `window_epochs` epochs, or that is caught
//! forging (a forged answer, equivocating in its own ledger chain), is quarantined. It leaves
//! quarantine after `probation_passes` consecutive passed proofs; a failure during probation
//! starts the count again. An admin revocation is final.

use std::collections::{BTreeMap, VecDeque};

use macula_core::NodeId;
use serde::{Deserialize, Serialize};

use crate::ledger::{Failure, Ledger, Outcome, ProofResult};

/// One node's quarantine state as an epoch summary carries it ([`Tracker::export`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeVerdict {
    pub node: NodeId,
    pub status: Status,
    /// Epochs of its failures still within the window (while active).
    pub failures: Vec<u64>,
}

/// The thresholds (from `[proofs]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineParams {
    /// K: failures within the window that quarantine a node.
    pub max_failures: u32,
    /// The window, in epochs.
    pub window_epochs: u64,
    /// N: consecutive passed proofs that end a quarantine.
    pub probation_passes: u32,
}

impl Default for QuarantineParams {
    fn default() -> Self {
        Self {
            max_failures: 3,
            window_epochs: 24,
            probation_passes: 6,
        }
    }
}

/// A node's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    Active,
    Quarantined {
        since_epoch: u64,
        /// Consecutive passes so far in probation.
        passes: u32,
    },
    Revoked,
}

/// A change of standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Quarantined { node: NodeId, epoch: u64 },
    Released { node: NodeId, epoch: u64 },
}

#[derive(Debug, Clone)]
struct NodeState {
    status: Status,
    failures: VecDeque<u64>,
}

/// The verdicts about every node seen.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    params: QuarantineParams,
    nodes: BTreeMap<NodeId, NodeState>,
}

impl Tracker {
    pub fn new(params: QuarantineParams) -> Self {
        Self {
            params,
            nodes: BTreeMap::new(),
        }
    }

    fn state(&mut self, node: NodeId) -> &mut NodeState {
        self.nodes.entry(node).or_insert(NodeState {
            status: Status::Active,
            failures: VecDeque::new(),
        })
    }

    pub fn status(&self, node: &NodeId) -> Status {
        self.nodes.get(node).map_or(Status::Active, |s| s.status)
    }

    /// Nodes currently quarantined or revoked (excluded from placement and repair sources).
    pub fn excluded(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, s)| s.status != Status::Active)
            .map(|(n, _)| *n)
            .collect()
    }

    /// One proof result for `node` in `epoch`.
    pub fn observe(&mut self, node: NodeId, epoch: u64, outcome: &Outcome) -> Option<Transition> {
        let params = self.params;
        let s = self.state(node);
        let failed = matches!(outcome, Outcome::Failed(_));
        let forged = matches!(outcome, Outcome::Failed(Failure::Forged));
        match s.status {
            Status::Revoked => None,
            Status::Active => {
                if !failed {
                    return None;
                }
                s.failures.push_back(epoch);
                while s
                    .failures
                    .front()
                    .is_some_and(|&e| e + params.window_epochs <= epoch)
                {
                    s.failures.pop_front();
                }
                if forged || s.failures.len() as u32 >= params.max_failures {
                    s.failures.clear();
                    s.status = Status::Quarantined {
                        since_epoch: epoch,
                        passes: 0,
                    };
                    return Some(Transition::Quarantined { node, epoch });
                }
                None
            }
            Status::Quarantined {
                since_epoch,
                passes,
            } => {
                if failed {
                    s.status = Status::Quarantined {
                        since_epoch,
                        passes: 0,
                    };
                    return None;
                }
                if passes + 1 >= params.probation_passes {
                    s.status = Status::Active;
                    return Some(Transition::Released { node, epoch });
                }
                s.status = Status::Quarantined {
                    since_epoch,
                    passes: passes + 1,
                };
                None
            }
        }
    }

    /// Quarantines a node caught forging outside a proof (ledger equivocation).
    pub fn forger(&mut self, node: NodeId, epoch: u64) -> Option<Transition> {
        self.observe(node, epoch, &Outcome::Failed(Failure::Forged))
    }

    /// An admin's revocation: final.
    pub fn revoke(&mut self, node: NodeId) {
        self.state(node).status = Status::Revoked;
    }

    /// Verdicts from a whole ledger: from the state its epoch summary carries (if compacted,
    /// [`Ledger::base_verdicts`]), then its records in canonical order, counting only those
    /// written by the node's designated verifier for that epoch (`designated(prover, epoch)`,
    /// e.g. [`crate::verifier_for`] over the membership), so a member cannot get another
    /// quarantined by writing failures about it. Equivocating authors are quarantined as forgers.
    pub fn from_ledger(
        params: QuarantineParams,
        ledger: &Ledger,
        designated: impl Fn(&NodeId, u64) -> Option<NodeId>,
    ) -> (Self, Vec<Transition>) {
        let (state, base_epoch) = ledger.base_verdicts();
        let mut t = Self::import(params, state);
        let mut transitions = Vec::new();
        let last_epoch = t.replay(ledger.results(), &designated, &mut transitions);
        let last_epoch = last_epoch.max(base_epoch);
        for &e in ledger.equivocators() {
            transitions.extend(t.forger(e, last_epoch));
        }
        (t, transitions)
    }

    /// Observes `results` (canonical order) written by each prover's designated verifier;
    /// returns the largest epoch seen.
    pub(crate) fn replay<'a>(
        &mut self,
        results: impl IntoIterator<Item = (&'a NodeId, &'a ProofResult)>,
        designated: &impl Fn(&NodeId, u64) -> Option<NodeId>,
        transitions: &mut Vec<Transition>,
    ) -> u64 {
        let mut last_epoch = 0;
        for (author, r) in results {
            last_epoch = last_epoch.max(r.epoch);
            if designated(&r.prover, r.epoch).as_ref() != Some(author) {
                continue;
            }
            transitions.extend(self.observe(r.prover, r.epoch, &r.outcome));
        }
        last_epoch
    }

    /// The state of every node seen, in node order (what an epoch summary carries).
    pub fn export(&self) -> Vec<NodeVerdict> {
        self.nodes
            .iter()
            .map(|(n, s)| NodeVerdict {
                node: *n,
                status: s.status,
                failures: s.failures.iter().copied().collect(),
            })
            .collect()
    }

    /// A tracker in the state [`Tracker::export`] gave.
    pub fn import(params: QuarantineParams, state: &[NodeVerdict]) -> Self {
        let mut t = Self::new(params);
        for v in state {
            t.nodes.insert(
                v.node,
                NodeState {
                    status: v.status,
                    failures: v.failures.iter().copied().collect(),
                },
            );
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use macula_core::NodeKey;

    const PASS: Outcome = Outcome::Storage { groups: 1 };
    const FAIL: Outcome = Outcome::Failed(Failure::BadGroup);

    #[test]
    fn k_failures_in_window_quarantine_and_n_passes_release() {
        let n = NodeKey::from_seed([1; 32]).node_id();
        let mut t = Tracker::new(QuarantineParams {
            max_failures: 3,
            window_epochs: 10,
            probation_passes: 4,
        });
        // Failures spread wider than the window never add up.
        for e in [0, 6, 12, 18, 24] {
            assert_eq!(t.observe(n, e, &FAIL), None);
        }
        assert_eq!(t.status(&n), Status::Active);
        assert_eq!(t.observe(n, 29, &FAIL), None);
        assert_eq!(
            t.observe(n, 30, &FAIL),
            Some(Transition::Quarantined { node: n, epoch: 30 })
        );
        assert_eq!(t.excluded(), vec![n]);
        // Probation: a failure restarts the count.
        for e in 31..34 {
            assert_eq!(t.observe(n, e, &PASS), None);
        }
        assert_eq!(t.observe(n, 34, &FAIL), None);
        assert_eq!(
            t.status(&n),
            Status::Quarantined {
                since_epoch: 30,
                passes: 0
            }
        );
        for e in 35..38 {
            assert_eq!(t.observe(n, e, &PASS), None);
        }
        assert_eq!(
            t.observe(n, 38, &PASS),
            Some(Transition::Released { node: n, epoch: 38 })
        );
        assert_eq!(t.status(&n), Status::Active);
        // Forgery is immediate; revocation final.
        assert!(t.forger(n, 40).is_some());
        t.revoke(n);
        for e in 41..60 {
            assert_eq!(t.observe(n, e, &PASS), None);
        }
        assert_eq!(t.status(&n), Status::Revoked);
    }
}
