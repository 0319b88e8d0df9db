//! What a node keeps of the realm's proofs and decides from it (sans-IO: the shell, `maculad`,
//! moves records over pub/sub and RPC and passes in membership): its copy of the ledger, the
//! others' shard inventories (for storage challenges), the quarantine verdicts recomputed from
//! the ledger, and the anti-entropy pulls (how much a reply carries, when to ask again, whom next).
//! It also says when the ledger copy is worth writing to disk ([`ProofBook::unsaved`]) and reads
//! a saved copy back ([`ProofBook::restore`]); the shell does the file I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use macula_core::{NodeId, NodeKey};
use macula_store::repair::HeldShard;

use crate::config::ProofsConfig;
use crate::ledger::{
    Inserted, Ledger, LedgerError, ProofResult, SignedRecord, SnapshotError, SummaryError, Vote,
    Voted,
};
use crate::quarantine::{QuarantineParams, Status, Tracker, Transition};

/// Realm topic of signed ledger records.
pub const LEDGER_TOPIC: &str = "macula/ledger";
/// RPC procedure a prover serves: a challenge in, its signed answer out.
pub const PROC_CHALLENGE: &str = "proofs.challenge";
/// RPC procedure every member serves: a ledger summary in, the records the caller lacks out.
pub const PROC_LEDGER: &str = "proofs.ledger";
/// Realm topic of members' votes for ledger epoch summaries (`ledger::Vote`).
pub const LEDGER_SUMMARY_TOPIC: &str = "macula/ledger-summary";
/// RPC procedure every member serves: a ledger summary (records per author) in,
/// `wire(Option<certified summary bytes>)` out: the certified epoch summary when the caller lacks
/// records it covers (asked before `proofs.ledger` in each pull).
pub const PROC_LEDGER_CERTIFIED: &str = "proofs.ledger.certified";
/// Most records one `proofs.ledger` reply carries (the caller asks again for more).
pub const PULL_BATCH: usize = 512;
/// Most `proofs.ledger` requests of one pull.
pub const PULL_ROUNDS: usize = 16;
/// Longest wait for one `proofs.ledger` reply.
pub const PULL_DEADLINE: Duration = Duration::from_secs(5);
/// Anti-entropy: a pull from one member (in turn) this often.
pub const PULL_EVERY: Duration = Duration::from_secs(5);

/// How often the shell looks for the challenges due: four times an epoch, 250 ms to 60 s apart.
pub fn tick_interval(epoch_s: u64) -> Duration {
    Duration::from_millis((epoch_s.saturating_mul(1000) / 4).clamp(250, 60_000))
}

/// How often the shell writes the ledger copy to disk when it changed: every half epoch, 1 s to
/// 30 s apart (records come in bursts at the start of each epoch; a crash loses at most this
/// much, which the node pulls back from the others).
pub fn save_interval(epoch_s: u64) -> Duration {
    Duration::from_millis((epoch_s.saturating_mul(1000) / 2).clamp(1000, 30_000))
}

/// The ledger copy to write to disk ([`ProofBook::unsaved`]).
#[derive(Debug)]
pub struct Unsaved {
    /// `Ledger::snapshot()`.
    pub bytes: Vec<u8>,
    /// Records in it.
    pub records: usize,
    /// Its head.
    pub head: [u8; 32],
    mark: Mark,
}

/// What identifies a state of the ledger: its head, how many equivocators it knows and the range
/// of its summary (compaction leaves the head as it was).
type Mark = ([u8; 32], usize, Option<u64>);

/// What [`ProofBook::insert`] made of received records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Received {
    /// Records new to this copy.
    pub new: usize,
    /// Some came before records of their chain this copy lacks: pull from the sender.
    pub gap: bool,
    /// Records refused (bad signature, equivocation, replay…), each with why.
    pub refused: Vec<LedgerError>,
}

/// The quarantined members changed ([`ProofBook::reassess`]).
#[derive(Debug, PartialEq, Eq)]
pub struct Verdicts {
    /// Members quarantined now: placement avoids them, the repair planner hears them as down.
    pub quarantined: Vec<NodeId>,
    /// What changed, for the log.
    pub transitions: Vec<Transition>,
}

/// What [`ProofBook::restore`] read.
#[derive(Debug, PartialEq, Eq)]
pub struct Restored {
    /// Records in the copy.
    pub records: usize,
    /// The verdicts recomputed from it (`None`: nobody quarantined).
    pub verdicts: Option<Verdicts>,
}

/// A node's state of the realm's proofs.
#[derive(Debug)]
pub struct ProofBook {
    quarantine: QuarantineParams,
    retention: u64,
    ledger: Ledger,
    inventories: HashMap<NodeId, Vec<HeldShard>>,
    tracker: Tracker,
    quarantined: Vec<NodeId>,
    verified: u64,
    turn: usize,
    /// The state last written to disk (or read from it).
    saved: Mark,
    /// Members a pull came back complete from since the start, or that will not give records
    /// ([`ProofBook::pull_failed`]): what [`ProofBook::may_record`] waits for.
    pulled_from: BTreeSet<NodeId>,
    /// Pulls that failed for a reason that may pass, per member, before it is in `pulled_from`.
    failed_pulls: BTreeMap<NodeId, u32>,
    /// [`ProofBook::may_record`] said yes once: it stays so.
    caught_up: bool,
}

/// What the shell knows of the other members when it asks [`ProofBook::may_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Alive in the membership now.
    Alive,
    /// Known to the membership but not alive (suspect or down).
    Away,
}

/// Pulls from one member that may fail (unreachable, deadline, overloaded) before a restarted node
/// stops waiting for it ([`ProofBook::pull_failed`]).
pub const PULL_GIVE_UP: u32 = 3;

/// How long a restarted node waits for ledger authors the membership has not heard of since the
/// start (a member removed for good) before it records without pulling from them.
pub const UNSEEN_AUTHOR_GRACE: Duration = Duration::from_secs(60);

impl ProofBook {
    pub fn new(cfg: &ProofsConfig) -> Self {
        let ledger = Ledger::new(cfg.rewards);
        let saved = mark(&ledger);
        Self {
            quarantine: cfg.quarantine,
            retention: cfg.ledger_retention_epochs,
            ledger,
            inventories: HashMap::new(),
            tracker: Tracker::new(cfg.quarantine),
            quarantined: Vec::new(),
            verified: 0,
            turn: 0,
            saved,
            pulled_from: BTreeSet::new(),
            failed_pulls: BTreeMap::new(),
            caught_up: false,
        }
    }

    /// Whether this node (`me`) may write records of its own. Its own chain may be shorter than
    /// the realm's after a restart (records written after the last save, or a saved copy
    /// refused): a record written on a shorter chain would sit at a position the others hold
    /// already, and they would take it for equivocation. Any member may hold the tail of this
    /// node's chain, and one that lacks it answers a pull as completely as one that has it, so
    /// one complete pull is not enough: yes once a pull came back complete
    /// ([`ProofBook::pulled`]) from every member alive now (at least one; a member whose pulls
    /// fail counts after [`ProofBook::pull_failed`] gave up on it), and every other node
    /// this copy names (`Ledger::participants`: authors and provers) is known to the membership
    /// (`peers`: the others and what the membership says of them) — a node it has not heard of
    /// since the start may be alive and holding the tail; after [`UNSEEN_AUTHOR_GRACE`] since
    /// the start (`since_start`) such nodes are taken as gone for good. Once yes, it stays yes.
    pub fn may_record(
        &mut self,
        me: &NodeId,
        peers: &[(NodeId, Seen)],
        since_start: Duration,
    ) -> bool {
        if self.caught_up {
            return true;
        }
        let mut alive = peers
            .iter()
            .filter(|(n, s)| n != me && *s == Seen::Alive)
            .peekable();
        if alive.peek().is_none() {
            return false;
        }
        if !alive.all(|(n, _)| self.pulled_from.contains(n)) {
            return false;
        }
        let known = |a: &NodeId| a == me || peers.iter().any(|(n, _)| n == a);
        if since_start < UNSEEN_AUTHOR_GRACE && !self.ledger.participants().iter().all(known) {
            return false;
        }
        self.caught_up = true;
        true
    }

    /// A pull from `member` ended with this copy holding everything the member had.
    pub fn pulled(&mut self, member: NodeId) {
        self.pulled_from.insert(member);
    }

    /// A pull from `member` failed: `retryable` (unreachable, deadline, overloaded) counts
    /// towards [`PULL_GIVE_UP`], after which [`ProofBook::may_record`] stops waiting for it;
    /// otherwise (it does not serve the ledger, refuses, breaks the protocol) at once — a member
    /// that will not answer is no better a witness than one that answers with nothing, and
    /// must not keep the others from recording.
    pub fn pull_failed(&mut self, member: NodeId, retryable: bool) {
        let failed = self.failed_pulls.entry(member).or_default();
        *failed += 1;
        if !retryable || *failed >= PULL_GIVE_UP {
            self.pulled_from.insert(member);
        }
    }

    /// Replaces the ledger copy by a saved one (at start, before any record came in), verified
    /// record by record (`Ledger::restore`); on refusal the copy is left as it was. The verdicts
    /// are recomputed at once, over the nodes the ledger names (`Ledger::participants`: the
    /// membership is not known before the mesh runs), so a node quarantined before a restart is
    /// excluded from the start; they are recomputed over the alive members at the next record.
    pub fn restore(&mut self, bytes: &[u8]) -> Result<Restored, SnapshotError> {
        self.ledger = Ledger::restore(*self.ledger.params(), bytes)?;
        self.saved = mark(&self.ledger);
        let verdicts = self.reassess(&self.ledger.participants());
        Ok(Restored {
            records: self.ledger.len(),
            verdicts,
        })
    }

    /// The ledger copy to write, when it changed since it was last saved or restored (an empty
    /// ledger is not written).
    pub fn unsaved(&self) -> Option<Unsaved> {
        let now = mark(&self.ledger);
        (now != self.saved).then(|| Unsaved {
            bytes: self.ledger.snapshot(),
            records: self.ledger.len(),
            head: now.0,
            mark: now,
        })
    }

    /// `what` is on disk: [`ProofBook::unsaved`] is `None` until the ledger changes again.
    pub fn saved(&mut self, what: &Unsaved) {
        self.saved = what.mark;
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Members quarantined now.
    pub fn quarantined(&self) -> &[NodeId] {
        &self.quarantined
    }

    /// Where `node` stands (active, quarantined or on probation, revoked).
    pub fn status(&self, node: &NodeId) -> Status {
        self.tracker.status(node)
    }

    /// Proofs this node judged since it started.
    pub fn verified(&self) -> u64 {
        self.verified
    }

    /// The complete inventory `node` published (`macula_store::inventory::Assembler`).
    pub fn set_inventory(&mut self, node: NodeId, shards: Vec<HeldShard>) {
        self.inventories.insert(node, shards);
    }

    /// What `prover` last said it holds (storage challenges are drawn from it).
    pub fn inventory_of(&self, prover: &NodeId) -> Vec<HeldShard> {
        self.inventories.get(prover).cloned().unwrap_or_default()
    }

    /// Inserts received records in order.
    pub fn insert(&mut self, records: &[Vec<u8>]) -> Received {
        let mut out = Received::default();
        for r in records {
            match self.ledger.insert(r) {
                Ok(Inserted::New) => out.new += 1,
                Ok(Inserted::Known) => {}
                Err(LedgerError::Gap { .. }) => out.gap = true,
                Err(e) => out.refused.push(e),
            }
        }
        out
    }

    /// Appends a result this node judged, signed with `key`: the record to spread.
    pub fn record(
        &mut self,
        key: &NodeKey,
        result: ProofResult,
    ) -> Result<SignedRecord, LedgerError> {
        self.verified += 1;
        self.ledger.append(key, result)
    }

    /// Appends a refusal result ([`crate::driver::judge_refusal`]) unless this ledger already
    /// holds one for that prover and epoch (`None`: nothing to spread).
    pub fn record_refusal(
        &mut self,
        key: &NodeKey,
        result: ProofResult,
    ) -> Option<Result<SignedRecord, LedgerError>> {
        if self.ledger.has_challenge(&result.challenge) {
            return None;
        }
        Some(self.record(key, result))
    }

    /// Recomputes the verdicts from the whole ledger, counting only records written by each
    /// prover's designated verifier over `members` (sorted, this node included). `Some` when the
    /// quarantined members changed.
    pub fn reassess(&mut self, members: &[NodeId]) -> Option<Verdicts> {
        let (t, transitions) = Tracker::from_ledger(self.quarantine, &self.ledger, |p, e| {
            crate::verifier_for(p, e, members)
        });
        let quarantined = t.excluded();
        self.tracker = t;
        if self.quarantined == quarantined {
            return None;
        }
        self.quarantined = quarantined.clone();
        Some(Verdicts {
            quarantined,
            transitions,
        })
    }

    /// What this copy holds, per author (the request of a pull).
    pub fn summary(&self) -> BTreeMap<NodeId, u64> {
        self.ledger.summary()
    }

    /// The reply to a pull: records the asker lacks, at most [`PULL_BATCH`].
    pub fn missing_for(&self, summary: &BTreeMap<NodeId, u64>) -> Vec<Vec<u8>> {
        let mut missing = self.ledger.missing_for(summary);
        missing.truncate(PULL_BATCH);
        missing
    }

    /// The certified epoch summary to send first in the reply to a pull, when the asker lacks
    /// records it covers (they are no longer held here).
    pub fn certified_for(&self, summary: &BTreeMap<NodeId, u64>) -> Option<Vec<u8>> {
        self.ledger.certified_for(summary)
    }

    /// At epoch `epoch`: this node's vote for the summary of the records older than the
    /// retention window (`epoch - ledger_retention_epochs`), to spread to the members; `None`
    /// when there is nothing new to summarize. Compacts if a quorum already signed it.
    pub fn propose_summary(
        &mut self,
        key: &NodeKey,
        epoch: u64,
        members: &[NodeId],
    ) -> Option<Vote> {
        let upto = epoch.checked_sub(self.retention)?;
        self.ledger.propose(key, upto, self.quarantine, members)
    }

    /// A member's summary vote (encoded) received; compacts when it completes a quorum.
    pub fn summary_vote(
        &mut self,
        bytes: &[u8],
        members: &[NodeId],
    ) -> Result<Voted, SummaryError> {
        self.ledger.vote(bytes, members)
    }

    /// A certified summary received in a pull reply: adopted (records it covers dropped) when
    /// its votes make a quorum of `members` and it agrees with the records held.
    pub fn adopt_summary(
        &mut self,
        bytes: &[u8],
        members: &[NodeId],
    ) -> Result<bool, SummaryError> {
        self.ledger.adopt(bytes, members)
    }

    /// Whether a pull asks again after a reply of `received` records of which `new` were new:
    /// while replies come full and bring something ([`PULL_ROUNDS`] at most).
    pub fn pull_again(received: usize, new: usize) -> bool {
        received >= PULL_BATCH && new > 0
    }

    /// The members to pull from at the next anti-entropy round: one of the others, in turn;
    /// before this node may record ([`ProofBook::may_record`]), all those not pulled from yet.
    pub fn next_pulls(&mut self, me: &NodeId, members: &[NodeId]) -> Vec<NodeId> {
        let others: Vec<NodeId> = members.iter().filter(|m| *m != me).copied().collect();
        if others.is_empty() {
            return others;
        }
        if !self.caught_up {
            let unpulled: Vec<NodeId> = others
                .iter()
                .filter(|n| !self.pulled_from.contains(n))
                .copied()
                .collect();
            if !unpulled.is_empty() {
                return unpulled;
            }
        }
        self.turn = (self.turn + 1) % others.len();
        vec![others[self.turn]]
    }
}

fn mark(ledger: &Ledger) -> Mark {
    (
        ledger.head(),
        ledger.equivocators().count(),
        ledger.base().map(|b| b.summary.upto_epoch),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProofKind;
    use crate::ledger::{Failure, Outcome};

    fn id(seed: u8) -> NodeKey {
        NodeKey::from_seed([seed; 32])
    }

    fn cfg() -> ProofsConfig {
        let mut c = ProofsConfig::default();
        c.quarantine.max_failures = 1;
        c
    }

    fn failed(prover: NodeId, epoch: u64, challenge: u8) -> ProofResult {
        ProofResult {
            prover,
            kind: ProofKind::Storage,
            epoch,
            challenge: [challenge; 32],
            outcome: Outcome::Failed(Failure::NoAnswer),
            answer: None,
            reward_micro: 0,
        }
    }

    #[test]
    fn the_tick_is_a_quarter_epoch_within_bounds() {
        assert_eq!(tick_interval(2), Duration::from_millis(500));
        assert_eq!(tick_interval(0), Duration::from_millis(250));
        assert_eq!(tick_interval(3600), Duration::from_secs(60));
    }

    #[test]
    fn records_from_others_are_inserted_and_gaps_are_seen() {
        let (a, b) = (id(1), id(2));
        let mut theirs = ProofBook::new(&cfg());
        let r0 = theirs.record(&a, failed(b.node_id(), 1, 1)).unwrap();
        let r1 = theirs.record(&a, failed(b.node_id(), 2, 2)).unwrap();
        assert_eq!(theirs.verified(), 2);
        let mut mine = ProofBook::new(&cfg());
        // The second record first: a gap, to be pulled.
        let got = mine.insert(&[r1.encode()]);
        assert_eq!((got.new, got.gap), (0, true));
        let got = mine.insert(&[r0.encode(), r1.encode(), r1.encode()]);
        assert_eq!(
            got,
            Received {
                new: 2,
                gap: false,
                refused: vec![]
            }
        );
        let got = mine.insert(&[vec![1, 2, 3]]);
        assert_eq!(got.refused.len(), 1);
        // A pull of everything: what this copy lacks, in one reply.
        let empty = ProofBook::new(&cfg());
        assert_eq!(mine.missing_for(&empty.summary()).len(), 2);
        assert!(mine.missing_for(&theirs.summary()).is_empty());
    }

    #[test]
    fn refused_writes_are_recorded_once_per_epoch_and_quarantine() {
        use crate::capacity::Claim;
        use crate::driver::{Refusal, judge_refusal};
        let keys: Vec<NodeKey> = (1..=4).map(id).collect();
        let mut members: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
        members.sort();
        let prover = members[0];
        let mut c = ProofsConfig::default();
        c.quarantine.max_failures = 2;
        let lying = Claim {
            processors: 1,
            cores_per_processor: 1,
            disk_reported: 1 << 30,
            disk_taken: 0,
        };
        let refusal = Refusal {
            prover,
            need: 1 << 20,
        };
        let mut books: Vec<ProofBook> = keys.iter().map(|_| ProofBook::new(&c)).collect();
        let mut spread = Vec::new();
        for epoch in [7, 8] {
            // Every member saw refusals in this epoch (twice each); only the verifier writes, once.
            for (k, book) in keys.iter().zip(books.iter_mut()) {
                for _ in 0..2 {
                    if let Some(r) =
                        judge_refusal(&k.node_id(), &members, epoch, &refusal, &lying, &c)
                        && let Some(rec) = book.record_refusal(k, r)
                    {
                        spread.push(rec.unwrap().encode());
                    }
                }
            }
        }
        assert_eq!(spread.len(), 2, "one record per epoch");
        for book in &mut books {
            book.insert(&spread);
            assert_eq!(book.ledger().len(), 2);
            let v = book.reassess(&members).expect("the verdicts changed");
            assert_eq!(v.quarantined, vec![prover], "K = 2 refusals quarantine");
        }
        // The same refusal record offered again is known, not a second failure.
        assert_eq!(books[1].insert(&spread).new, 0);
    }

    #[test]
    fn only_the_designated_verifiers_failures_quarantine() {
        let keys: Vec<NodeKey> = (1..=3).map(id).collect();
        let mut members: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
        members.sort();
        let prover = members[0];
        let epoch = 7;
        let designated = crate::verifier_for(&prover, epoch, &members).unwrap();
        let other = *members
            .iter()
            .find(|m| **m != designated && **m != prover)
            .unwrap();
        let key_of = |n: NodeId| keys.iter().find(|k| k.node_id() == n).unwrap();
        let mut book = ProofBook::new(&cfg());
        // A member that is not the prover's verifier cannot get it quarantined.
        book.record(key_of(other), failed(prover, epoch, 1))
            .unwrap();
        assert_eq!(book.reassess(&members), None);
        book.record(key_of(designated), failed(prover, epoch, 2))
            .unwrap();
        let v = book.reassess(&members).unwrap();
        assert_eq!(v.quarantined, vec![prover]);
        assert!(!v.transitions.is_empty());
        assert_eq!(book.quarantined(), &[prover]);
        assert!(matches!(book.status(&prover), Status::Quarantined { .. }));
        // Unchanged: nothing to tell.
        assert_eq!(book.reassess(&members), None);
    }

    #[test]
    fn verdicts_are_recomputed_when_the_copy_is_restored() {
        let keys: Vec<NodeKey> = (1..=3).map(id).collect();
        let mut members: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
        members.sort();
        let prover = members[0];
        let key_of = |n: NodeId| keys.iter().find(|k| k.node_id() == n).unwrap();
        let mut book = ProofBook::new(&cfg());
        let mut honest = ProofBook::new(&cfg());
        // Records of the three members (so the ledger names them all): the designated
        // verifier's failure quarantines `prover` (K = 1); passes of the others in between.
        for epoch in 1..=3 {
            for p in &members {
                let v = crate::verifier_for(p, epoch, &members).unwrap();
                let mut r = failed(
                    *p,
                    epoch,
                    (epoch * 10) as u8 + members.iter().position(|m| m == p).unwrap() as u8,
                );
                if *p != prover || epoch != 2 {
                    r.outcome = Outcome::Capacity {
                        t_ms: 5,
                        capacity_milli: 1,
                    };
                    let answer = crate::SignedAnswer::sign(
                        key_of(*p),
                        ProofKind::Capacity,
                        vec![epoch as u8],
                    );
                    r.answer = Some((answer.digest(), answer.sig));
                    r.kind = ProofKind::Capacity;
                }
                book.record(key_of(v), r.clone()).unwrap();
                if *p != prover {
                    honest.record(key_of(v), r).unwrap();
                }
            }
        }
        let v = book.reassess(&members).unwrap();
        assert_eq!(v.quarantined, vec![prover]);
        let saved = book.unsaved().unwrap();
        // Restarted: the verdicts come back with the copy, before any record or membership.
        let mut restarted = ProofBook::new(&cfg());
        let r = restarted.restore(&saved.bytes).unwrap();
        assert_eq!(r.records, 9);
        assert_eq!(
            r.verdicts.map(|v| v.quarantined),
            Some(vec![prover]),
            "quarantined at load"
        );
        assert_eq!(restarted.quarantined(), &[prover]);
        assert!(matches!(
            restarted.status(&prover),
            Status::Quarantined { .. }
        ));
        // The same verdicts over the alive members later: nothing new to tell.
        assert_eq!(restarted.reassess(&members), None);
        // A copy in which nobody failed restores with nobody quarantined.
        let clean = honest.unsaved().unwrap();
        let r = ProofBook::new(&cfg()).restore(&clean.bytes).unwrap();
        assert_eq!(r.verdicts, None);
    }

    #[test]
    fn the_copy_is_saved_when_it_changed_and_restored_verified() {
        assert_eq!(save_interval(2), Duration::from_secs(1));
        assert_eq!(save_interval(0), Duration::from_secs(1));
        assert_eq!(save_interval(3600), Duration::from_secs(30));
        let (a, b) = (id(1), id(2));
        let mut book = ProofBook::new(&cfg());
        assert!(book.unsaved().is_none(), "an empty ledger is not written");
        book.record(&a, failed(b.node_id(), 1, 1)).unwrap();
        book.record(&a, failed(b.node_id(), 2, 2)).unwrap();
        let u = book.unsaved().unwrap();
        assert_eq!((u.records, u.head), (2, book.ledger().head()));
        book.saved(&u);
        assert!(book.unsaved().is_none());
        // A record already held changes nothing; a new one does.
        let again = book.ledger().records_after(&a.node_id(), 0);
        book.insert(&again);
        assert!(book.unsaved().is_none());
        book.record(&b, failed(a.node_id(), 3, 3)).unwrap();
        let u2 = book.unsaved().unwrap();
        assert_eq!(u2.records, 3);

        // A restarted node reads it back: same records and head, nothing to write.
        let mut back = ProofBook::new(&cfg());
        assert_eq!(back.restore(&u2.bytes).map(|r| r.records), Ok(3));
        assert_eq!(back.ledger().head(), book.ledger().head());
        assert!(back.unsaved().is_none());
        // A tampered copy is refused and leaves the book empty.
        let mut bad = u2.bytes.clone();
        let n = bad.len();
        bad[n / 2] ^= 0x10;
        let mut fresh = ProofBook::new(&cfg());
        assert!(fresh.restore(&bad).is_err());
        assert!(fresh.ledger().is_empty());
        assert!(fresh.unsaved().is_none());
        // A copy whose rewards do not follow from this node's reward constants is refused.
        let mut passed_book = ProofBook::new(&cfg());
        let answer = crate::SignedAnswer::sign(&b, ProofKind::Storage, vec![1]);
        passed_book
            .record(
                &a,
                ProofResult {
                    outcome: Outcome::Storage { groups: 1 },
                    answer: Some((answer.digest(), answer.sig)),
                    ..failed(b.node_id(), 4, 4)
                },
            )
            .unwrap();
        let saved = passed_book.unsaved().unwrap().bytes;
        assert_eq!(
            ProofBook::new(&cfg()).restore(&saved).map(|r| r.records),
            Ok(1)
        );
        let mut other = cfg();
        other.rewards.rw2_micro_per_group = 1;
        assert!(ProofBook::new(&other).restore(&saved).is_err());
    }

    #[test]
    fn a_restarted_node_records_only_after_pulling_its_own_chain() {
        let (a, b) = (id(1), id(2));
        let mut before = ProofBook::new(&cfg());
        let r0 = before.record(&a, failed(b.node_id(), 1, 1)).unwrap();
        let saved = before.unsaved().unwrap();
        before.saved(&saved);
        // Written after the last save (or the save was lost): only the others hold it.
        let r1 = before.record(&a, failed(b.node_id(), 2, 2)).unwrap();
        let mut others = ProofBook::new(&cfg());
        others.insert(&[r0.encode(), r1.encode()]);

        let mut restarted = ProofBook::new(&cfg());
        restarted.restore(&saved.bytes).unwrap();
        let (me, peer) = (a.node_id(), b.node_id());
        let peers = [(peer, Seen::Alive)];
        assert!(!restarted.may_record(&me, &peers, Duration::ZERO));
        // Recording now would fork its own chain: the others see equivocation.
        let mut hasty = ProofBook::new(&cfg());
        hasty.restore(&saved.bytes).unwrap();
        let fork = hasty.record(&a, failed(b.node_id(), 3, 3)).unwrap();
        let mut seen = ProofBook::new(&cfg());
        seen.insert(&[r0.encode(), r1.encode()]);
        assert!(matches!(
            seen.insert(&[fork.encode()]).refused[..],
            [LedgerError::Equivocation { .. }]
        ));
        // The pull brings the rest of its chain first; what it writes then links on.
        let got = restarted.insert(&others.missing_for(&restarted.summary()));
        assert_eq!(got.new, 1);
        restarted.pulled(peer);
        assert!(restarted.may_record(&me, &peers, Duration::ZERO));
        let next = restarted.record(&a, failed(b.node_id(), 3, 3)).unwrap();
        assert_eq!(others.insert(&[next.encode()]).new, 1);
    }

    #[test]
    fn a_restarted_node_waits_for_every_alive_member_and_every_author_it_has_not_seen() {
        let (a, b, c, d) = (id(1), id(2), id(3), id(4));
        let (me, nb, nc, nd) = (a.node_id(), b.node_id(), c.node_id(), d.node_id());
        let mut book = ProofBook::new(&cfg());
        // d wrote records; the membership has not heard of d yet.
        let mut ds = ProofBook::new(&cfg());
        let rd = ds.record(&d, failed(nb, 1, 1)).unwrap();
        book.insert(&[rd.encode()]);
        let peers = [(nb, Seen::Alive), (nc, Seen::Alive), (me, Seen::Alive)];
        assert!(
            !book.may_record(&me, &[], Duration::ZERO),
            "nobody to pull from"
        );
        book.pulled(nb);
        assert!(
            !book.may_record(&me, &peers, Duration::ZERO),
            "c not pulled yet"
        );
        assert_eq!(
            book.next_pulls(&me, &[me, nb, nc]),
            [nc],
            "the unpulled first"
        );
        book.pulled(nc);
        assert!(
            !book.may_record(&me, &peers, Duration::ZERO),
            "author d unheard of"
        );
        let with_d = [(nb, Seen::Alive), (nc, Seen::Alive), (nd, Seen::Away)];
        assert!(
            book.may_record(&me, &with_d, Duration::ZERO),
            "d known, away"
        );
        // Once yes, it stays yes (a member alive later is not waited for).
        let later = [(nb, Seen::Alive), (nc, Seen::Alive), (nd, Seen::Alive)];
        assert!(book.may_record(&me, &later, Duration::ZERO));

        let mut late = ProofBook::new(&cfg());
        late.insert(&[rd.encode()]);
        late.pulled(nb);
        late.pulled(nc);
        assert!(!late.may_record(&me, &peers, UNSEEN_AUTHOR_GRACE - Duration::from_secs(1)));
        assert!(
            late.may_record(&me, &peers, UNSEEN_AUTHOR_GRACE),
            "d gone for good"
        );

        // A member that does not answer pulls does not hold the others back for long.
        let mut stalled = ProofBook::new(&cfg());
        stalled.pulled(nb);
        for _ in 1..PULL_GIVE_UP {
            stalled.pull_failed(nc, true);
            assert!(!stalled.may_record(&me, &peers, Duration::ZERO));
        }
        stalled.pull_failed(nc, true);
        assert!(
            stalled.may_record(&me, &peers, Duration::ZERO),
            "c given up on"
        );
        let mut refusing = ProofBook::new(&cfg());
        refusing.pulled(nb);
        refusing.pull_failed(nc, false);
        assert!(
            refusing.may_record(&me, &peers, Duration::ZERO),
            "c serves no ledger"
        );
    }

    #[test]
    fn records_older_than_the_retention_window_are_summarized_once_a_majority_signs() {
        let keys = [id(1), id(2), id(3)];
        let mut members: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
        members.sort();
        let mut c = cfg();
        c.ledger_retention_epochs = 2;
        let mut books: Vec<ProofBook> = (0..3).map(|_| ProofBook::new(&c)).collect();
        let mut recs = Vec::new();
        for e in 0..4u64 {
            let r = books[0]
                .record(&keys[0], failed(keys[1].node_id(), e, e as u8))
                .unwrap();
            recs.push(r.encode());
        }
        for b in &mut books[1..] {
            assert_eq!(b.insert(&recs).new, 4);
        }
        // Within the window: nothing to summarize.
        assert_eq!(books[0].propose_summary(&keys[0], 1, &members), None);
        let v0 = books[0].propose_summary(&keys[0], 3, &members).unwrap();
        assert_eq!(v0.upto_epoch, 1);
        let v1 = books[1].propose_summary(&keys[1], 3, &members).unwrap();
        let before = books[0].unsaved().unwrap();
        books[0].saved(&before);
        assert_eq!(
            books[0].summary_vote(&v1.encode(), &members),
            Ok(Voted::Agrees { compacted: true })
        );
        // Compaction leaves the head as it was but the copy is worth writing again.
        let after = books[0].unsaved().unwrap();
        assert_eq!(after.head, before.head);
        assert_eq!(after.records, 2);
        // A member that lacks the summarized records gets the certified summary first.
        let asked = books[2].summary();
        assert_eq!(books[1].certified_for(&asked), None);
        let mut fresh = ProofBook::new(&c);
        let cert = books[0].certified_for(&fresh.summary()).unwrap();
        assert_eq!(fresh.adopt_summary(&cert, &members), Ok(true));
        assert_eq!(fresh.insert(&books[0].missing_for(&fresh.summary())).new, 2);
        assert_eq!(fresh.ledger().head(), books[2].ledger().head());
        assert_eq!(fresh.ledger().balances(), books[2].ledger().balances());
    }

    #[test]
    fn pulls_go_round_the_others_and_ask_again_while_replies_are_full() {
        let me = id(1).node_id();
        let (b, c) = (id(2).node_id(), id(3).node_id());
        let mut book = ProofBook::new(&cfg());
        assert_eq!(book.next_pulls(&me, &[me]), []);
        let members = [me, b, c];
        // Not caught up yet: every member not pulled from, at once.
        assert_eq!(book.next_pulls(&me, &members), [b, c]);
        book.pulled(b);
        assert_eq!(book.next_pulls(&me, &members), [c]);
        book.pulled(c);
        let peers = [(b, Seen::Alive), (c, Seen::Alive)];
        assert!(book.may_record(&me, &peers, Duration::ZERO));
        // Then one at a time, in turn.
        let first = book.next_pulls(&me, &members);
        let second = book.next_pulls(&me, &members);
        assert_eq!((first.len(), second.len()), (1, 1));
        assert_ne!(first, second);
        assert_eq!(book.next_pulls(&me, &members), first);
        assert!(ProofBook::pull_again(PULL_BATCH, 1));
        assert!(!ProofBook::pull_again(PULL_BATCH - 1, 5));
        assert!(!ProofBook::pull_again(PULL_BATCH, 0));
        let inv = vec![];
        book.set_inventory(b, inv.clone());
        assert_eq!(book.inventory_of(&b), inv);
        assert!(book.inventory_of(&c).is_empty());
    }
}
