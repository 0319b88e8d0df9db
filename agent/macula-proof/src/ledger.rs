//! The realm ledger (docs/proofs.md §5): signed, hash-chained records of proof results with the
//! reward each earned, one chain per author, replicated to every member.
//!
//! Every record is `wire(Record)` signed by its author in the domain `macula/v1/ledger-record`;
//! `prev` is the hash of the author's previous record and `seq` its position, so an author's chain
//! cannot be reordered, cut or forked without it showing. The realm ledger is the union of all
//! authors' chains: a grow-only set of signed records, so two nodes that hold the same records
//! are in the same state (same [`Ledger::head`]) whatever order they received them in — no leader,
//! no consensus. A record is verified on arrival (signature, chain link, the prover's signature
//! over its answer, the reward recomputed from the result, the challenge not used before) and
//! refused otherwise. Records that arrive ahead of a gap are refused with [`LedgerError::Gap`];
//! the anti-entropy pull ([`Ledger::summary`], [`Ledger::records_after`]) fills the gap.
//!
//! A copy is kept on disk as [`Ledger::snapshot`] and read back with [`Ledger::restore`], which
//! verifies every record as if it came from the network and checks the saved head.

use std::collections::{BTreeMap, BTreeSet};

use macula_core::domains::Domain;
use macula_core::wire::WireError;
use macula_core::{NodeId, NodeKey, wire};
use macula_mesh::sig::Sig;
use serde::{Deserialize, Serialize};

use crate::{ProofKind, verify_answer_sig};

/// Largest encoded record.
pub const MAX_RECORD: usize = 4096;
/// Largest ledger copy [`Ledger::restore`] reads (docs/proofs.md §5.3): about 1 million records.
pub const MAX_SNAPSHOT: usize = 256 << 20;

/// Why a proof failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Failure {
    /// No answer before the deadline (after retries).
    NoAnswer,
    /// The answer came after the deadline.
    Late,
    /// Capacity: a spot-checked segment of the hash chain was wrong.
    BadWork,
    /// Storage: a group was missing or did not match its shard's root.
    BadGroup,
    /// The answer was signed by another key, was for another challenge, or did not decode.
    Forged,
    /// Capacity: it refused a shard write for lack of space (quota or disk full) while its
    /// signed resource report claimed room for it (`driver::judge_refusal`).
    Refused,
}

/// What a verifier found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A capacity proof passed: measured time and the resulting `C` in thousandths.
    Capacity {
        t_ms: u64,
        capacity_milli: u64,
    },
    /// A storage proof passed: this many groups checked.
    Storage {
        groups: u32,
    },
    Failed(Failure),
}

/// The result of one proof, written by its verifier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofResult {
    pub prover: NodeId,
    pub kind: ProofKind,
    pub epoch: u64,
    /// Digest of the challenge (unique: a challenge is answered once).
    pub challenge: [u8; 32],
    pub outcome: Outcome,
    /// The prover's signature over its answer's digest (both sides sign); `None` without an
    /// answer.
    pub answer: Option<([u8; 32], Sig)>,
    /// Reward earned, in micro-units of RW1 (capacity) or RW2 (storage); must equal
    /// [`RewardParams::reward`] of the outcome.
    pub reward_micro: u64,
}

/// One ledger record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub author: NodeId,
    pub seq: u64,
    pub prev: [u8; 32],
    pub result: ProofResult,
}

/// A record as stored and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedRecord {
    #[serde(with = "macula_core::wire::bytes")]
    pub body: Vec<u8>,
    pub sig: Sig,
}

impl SignedRecord {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// The record's hash (what the next record's `prev` names).
    pub fn hash(&self) -> [u8; 32] {
        blake3::derive_key("macula/v1/ledger-hash", &self.encode())
    }
}

/// The reward constants (from `[proofs]`; docs/proofs.md §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RewardParams {
    /// RW1 micro-units per unit of `C` held for a whole day.
    pub rw1_micro_per_c_day: u64,
    /// RW2 micro-units per storage group proven.
    pub rw2_micro_per_group: u64,
    /// Seconds per epoch (one capacity proof per node and epoch).
    pub epoch_s: u64,
}

impl Default for RewardParams {
    fn default() -> Self {
        Self {
            rw1_micro_per_c_day: 1_000_000,
            rw2_micro_per_group: 1_000,
            epoch_s: 3600,
        }
    }
}

impl RewardParams {
    /// RW1 for a passed capacity proof: `C × rw1 × epoch_s / 86 400` (so a node proving `C`
    /// every epoch earns `C × rw1` a day); RW2 for a passed storage proof: `groups × rw2`;
    /// nothing for a failure.
    pub fn reward(&self, outcome: &Outcome) -> u64 {
        match *outcome {
            Outcome::Capacity { capacity_milli, .. } => (u128::from(capacity_milli)
                * u128::from(self.rw1_micro_per_c_day)
                * u128::from(self.epoch_s)
                / (1000 * 86_400))
                .min(u128::from(u64::MAX))
                as u64,
            Outcome::Storage { groups } => {
                u64::from(groups).saturating_mul(self.rw2_micro_per_group)
            }
            Outcome::Failed(_) => 0,
        }
    }
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("undecodable ledger record: {0}")]
    Decode(String),
    #[error("ledger record signature does not verify for author {0}")]
    BadSignature(String),
    #[error(
        "record {got} of {author} arrived before record {have}: pull the missing records first"
    )]
    Gap { author: String, have: u64, got: u64 },
    #[error("record {seq} of {author} does not link to the previous record")]
    BadLink { author: String, seq: u64 },
    #[error(
        "{author} signed two different records at position {seq}: equivocation, the author is recorded as a forger"
    )]
    Equivocation { author: String, seq: u64 },
    #[error("the prover's signature on the answer does not verify: forged evidence")]
    BadEvidence,
    #[error("a passed proof without the prover's signed answer")]
    MissingEvidence,
    #[error("reward {have} does not follow from the result (expected {want})")]
    BadReward { have: u64, want: u64 },
    #[error("challenge already recorded: a replayed proof")]
    Replay,
}

/// What [`Ledger::insert`] did with a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    /// Already held (idempotent).
    Known,
}

/// Why a saved ledger copy was refused ([`Ledger::restore`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("undecodable ledger copy: {0}")]
    Decode(#[from] WireError),
    #[error("record {index} of the ledger copy is refused: {error}")]
    Record { index: usize, error: LedgerError },
    #[error("record {index} of the ledger copy is there twice")]
    Duplicate { index: usize },
    #[error("equivocation evidence {index} of the ledger copy does not show an equivocation")]
    Fork { index: usize },
    #[error(
        "the ledger copy's records give head {computed}, not the head {stored} it was saved with: \
         records are missing or were changed"
    )]
    Head { stored: String, computed: String },
}

/// A ledger copy as written to disk: `wire(Snapshot)`.
#[derive(Serialize, Deserialize)]
struct Snapshot {
    /// [`Ledger::head`] when saved.
    head: [u8; 32],
    /// Every record, chain by chain in author order, each chain from its first record.
    records: Vec<SignedRecord>,
    /// Per equivocating author, the record that conflicted with its chain (the evidence).
    forks: Vec<SignedRecord>,
}

#[derive(Debug, Clone)]
struct Entry {
    hash: [u8; 32],
    signed: SignedRecord,
    record: Record,
}

/// One node's copy of the realm ledger.
#[derive(Debug, Clone)]
pub struct Ledger {
    params: RewardParams,
    chains: BTreeMap<NodeId, Vec<Entry>>,
    challenges: BTreeSet<[u8; 32]>,
    /// Authors caught equivocating, each with the first conflicting record seen.
    equivocators: BTreeMap<NodeId, SignedRecord>,
}

/// A node's earnings and record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Balance {
    pub rw1_micro: u64,
    pub rw2_micro: u64,
    pub passed: u64,
    pub failed: u64,
}

impl Ledger {
    pub fn new(params: RewardParams) -> Self {
        Self {
            params,
            chains: BTreeMap::new(),
            challenges: BTreeSet::new(),
            equivocators: BTreeMap::new(),
        }
    }

    /// The copy to keep on disk: `wire(Snapshot { head, records, forks })` (docs/proofs.md §5.3).
    pub fn snapshot(&self) -> Vec<u8> {
        wire::encode(&Snapshot {
            head: self.head(),
            records: self
                .chains
                .values()
                .flatten()
                .map(|e| e.signed.clone())
                .collect(),
            forks: self.equivocators.values().cloned().collect(),
        })
    }

    /// Reads back a [`Ledger::snapshot`], trusting nothing in it: every record is inserted as if
    /// received from the network (signature, chain link, evidence, reward under `params`, no
    /// replay), every fork must show its author's equivocation, and the records must give the
    /// saved head (nothing cut off the end of a chain).
    pub fn restore(params: RewardParams, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let snap: Snapshot = wire::decode_with_limit(bytes, MAX_SNAPSHOT)?;
        let mut ledger = Self::new(params);
        for (index, r) in snap.records.iter().enumerate() {
            match ledger.insert(&r.encode()) {
                Ok(Inserted::New) => {}
                Ok(Inserted::Known) => return Err(SnapshotError::Duplicate { index }),
                Err(error) => return Err(SnapshotError::Record { index, error }),
            }
        }
        for (index, f) in snap.forks.iter().enumerate() {
            if !matches!(
                ledger.insert(&f.encode()),
                Err(LedgerError::Equivocation { .. })
            ) {
                return Err(SnapshotError::Fork { index });
            }
        }
        let computed = ledger.head();
        if computed != snap.head {
            return Err(SnapshotError::Head {
                stored: blake3::Hash::from(snap.head).to_hex().to_string(),
                computed: blake3::Hash::from(computed).to_hex().to_string(),
            });
        }
        Ok(ledger)
    }

    pub fn params(&self) -> &RewardParams {
        &self.params
    }

    /// Appends a record authored by `key` for `result` (the reward is filled in here) and
    /// returns it signed, ready to spread.
    pub fn append(
        &mut self,
        key: &NodeKey,
        mut result: ProofResult,
    ) -> Result<SignedRecord, LedgerError> {
        result.reward_micro = self.params.reward(&result.outcome);
        let author = key.node_id();
        let chain = self.chains.get(&author);
        let record = Record {
            author,
            seq: chain.map_or(0, |c| c.len() as u64),
            prev: chain.and_then(|c| c.last()).map_or([0; 32], |e| e.hash),
            result,
        };
        let body = wire::encode(&record);
        let sig = Sig(key.sign(Domain::LedgerRecord, &body).to_bytes());
        let signed = SignedRecord { body, sig };
        self.insert(&signed.encode())?;
        Ok(signed)
    }

    /// Verifies and adds one received record (its encoded bytes).
    pub fn insert(&mut self, bytes: &[u8]) -> Result<Inserted, LedgerError> {
        let signed: SignedRecord = wire::decode_with_limit(bytes, MAX_RECORD)
            .map_err(|e| LedgerError::Decode(e.to_string()))?;
        let record: Record = wire::decode_with_limit(&signed.body, MAX_RECORD)
            .map_err(|e| LedgerError::Decode(e.to_string()))?;
        let author = record.author;
        author
            .verify(
                Domain::LedgerRecord,
                &signed.body,
                &ed25519_dalek::Signature::from_bytes(&signed.sig.0),
            )
            .map_err(|_| LedgerError::BadSignature(author.to_string()))?;
        let hash = signed.hash();
        let chain = self.chains.get(&author).map_or(&[][..], |c| &c[..]);
        let have = chain.len() as u64;
        if record.seq < have {
            if chain[record.seq as usize].hash == hash {
                return Ok(Inserted::Known);
            }
            self.equivocators.entry(author).or_insert(signed);
            return Err(LedgerError::Equivocation {
                author: author.to_string(),
                seq: record.seq,
            });
        }
        if record.seq > have {
            return Err(LedgerError::Gap {
                author: author.to_string(),
                have,
                got: record.seq,
            });
        }
        let prev = chain.last().map_or([0; 32], |e| e.hash);
        if record.prev != prev {
            return Err(LedgerError::BadLink {
                author: author.to_string(),
                seq: record.seq,
            });
        }
        let r = &record.result;
        match (&r.outcome, &r.answer) {
            (Outcome::Failed(_), None) => {}
            (_, Some((digest, sig))) => verify_answer_sig(&r.prover, r.kind, digest, sig)
                .map_err(|_| LedgerError::BadEvidence)?,
            (_, None) => return Err(LedgerError::MissingEvidence),
        }
        let want = self.params.reward(&r.outcome);
        if r.reward_micro != want {
            return Err(LedgerError::BadReward {
                have: r.reward_micro,
                want,
            });
        }
        if self.challenges.contains(&r.challenge) {
            return Err(LedgerError::Replay);
        }
        self.challenges.insert(r.challenge);
        self.chains.entry(author).or_default().push(Entry {
            hash,
            signed,
            record,
        });
        Ok(Inserted::New)
    }

    /// Whether a result with this challenge digest is held (a second one would be a replay).
    pub fn has_challenge(&self, challenge: &[u8; 32]) -> bool {
        self.challenges.contains(challenge)
    }

    /// The state's fingerprint: BLAKE3 over every author's chain length and last hash, in
    /// author order. Equal on two nodes exactly when they hold the same records.
    pub fn head(&self) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("macula/v1/ledger-head");
        for (author, chain) in &self.chains {
            h.update(author.as_bytes());
            h.update(&(chain.len() as u64).to_le_bytes());
            h.update(&chain.last().map_or([0; 32], |e| e.hash));
        }
        *h.finalize().as_bytes()
    }

    /// Records held per author (what an anti-entropy peer compares).
    pub fn summary(&self) -> BTreeMap<NodeId, u64> {
        self.chains
            .iter()
            .map(|(a, c)| (*a, c.len() as u64))
            .collect()
    }

    /// Encoded records of `author` from position `from` on (the answer to a pull).
    pub fn records_after(&self, author: &NodeId, from: u64) -> Vec<Vec<u8>> {
        self.chains.get(author).map_or_else(Vec::new, |c| {
            c.iter()
                .skip(from as usize)
                .map(|e| e.signed.encode())
                .collect()
        })
    }

    /// What `self` has that a peer with `peer_summary` lacks, in chain order.
    pub fn missing_for(&self, peer_summary: &BTreeMap<NodeId, u64>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for (author, chain) in &self.chains {
            let theirs = peer_summary.get(author).copied().unwrap_or(0);
            if (chain.len() as u64) > theirs {
                out.extend(self.records_after(author, theirs));
            }
        }
        out
    }

    /// Every node the ledger names, as author or prover, sorted: the membership the records were
    /// written in, as far as the ledger shows it.
    pub fn participants(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .chains
            .iter()
            .flat_map(|(a, c)| std::iter::once(*a).chain(c.iter().map(|e| e.record.result.prover)))
            .chain(self.equivocators.keys().copied())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// All records, in a canonical order: by epoch, then prover, kind, author and position.
    pub fn results(&self) -> Vec<(&NodeId, &ProofResult)> {
        let mut v: Vec<(&NodeId, u64, &ProofResult)> = self
            .chains
            .iter()
            .flat_map(|(a, c)| c.iter().map(move |e| (a, e.record.seq, &e.record.result)))
            .collect();
        v.sort_by(|x, y| {
            (x.2.epoch, x.2.prover, x.2.kind, x.0, x.1)
                .cmp(&(y.2.epoch, y.2.prover, y.2.kind, y.0, y.1))
        });
        v.into_iter().map(|(a, _, r)| (a, r)).collect()
    }

    /// Balances per prover from the whole ledger.
    pub fn balances(&self) -> BTreeMap<NodeId, Balance> {
        let mut out: BTreeMap<NodeId, Balance> = BTreeMap::new();
        for (_, r) in self.results() {
            let b = out.entry(r.prover).or_default();
            match r.outcome {
                Outcome::Failed(_) => b.failed += 1,
                Outcome::Capacity { .. } => {
                    b.passed += 1;
                    b.rw1_micro = b.rw1_micro.saturating_add(r.reward_micro);
                }
                Outcome::Storage { .. } => {
                    b.passed += 1;
                    b.rw2_micro = b.rw2_micro.saturating_add(r.reward_micro);
                }
            }
        }
        out
    }

    /// Authors caught signing two different records at one position.
    pub fn equivocators(&self) -> impl Iterator<Item = &NodeId> {
        self.equivocators.keys()
    }

    /// Number of records held.
    pub fn len(&self) -> usize {
        self.chains.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SignedAnswer;

    fn key(i: u8) -> NodeKey {
        NodeKey::from_seed([i; 32])
    }

    fn passed(prover: &NodeKey, epoch: u64, n: u8) -> ProofResult {
        let a = SignedAnswer::sign(prover, ProofKind::Storage, vec![n, 1, 2]);
        ProofResult {
            prover: prover.node_id(),
            kind: ProofKind::Storage,
            epoch,
            challenge: [n; 32],
            outcome: Outcome::Storage { groups: 16 },
            answer: Some((a.digest(), a.sig)),
            reward_micro: 0,
        }
    }

    #[test]
    fn records_chain_verify_and_converge_in_any_order() {
        let (v1, v2, p) = (key(1), key(2), key(3));
        let mut a = Ledger::new(RewardParams::default());
        let mut recs = Vec::new();
        for n in 0..5u8 {
            recs.push(a.append(&v1, passed(&p, u64::from(n), n)).unwrap().encode());
        }
        let mut b_side = Ledger::new(RewardParams::default());
        for n in 5..8u8 {
            recs.push(b_side.append(&v2, passed(&p, 9, n)).unwrap().encode());
        }
        // Another node receives them shuffled: gaps are refused and filled by a pull.
        let mut c = Ledger::new(RewardParams::default());
        let mut pending: Vec<Vec<u8>> = recs.iter().rev().cloned().collect();
        while !pending.is_empty() {
            pending.retain(|r| match c.insert(r) {
                Ok(_) => false,
                Err(LedgerError::Gap { .. }) => true,
                Err(e) => panic!("{e}"),
            });
        }
        for r in &recs[5..] {
            assert_eq!(a.insert(r), Ok(Inserted::New));
        }
        for r in &recs {
            assert_eq!(a.insert(r), Ok(Inserted::Known));
        }
        assert_eq!(a.head(), c.head());
        assert_eq!(a.len(), 8);
        let bal = c.balances()[&p.node_id()];
        assert_eq!(bal.passed, 8);
        assert_eq!(bal.rw2_micro, 8 * 16 * 1000);
        // Anti-entropy: what b_side lacks is exactly v1's chain.
        let missing = a.missing_for(&b_side.summary());
        assert_eq!(missing.len(), 5);
        for r in &missing {
            b_side.insert(r).unwrap();
        }
        assert_eq!(b_side.head(), a.head());
    }

    #[test]
    fn bad_records_are_refused_and_change_nothing() {
        let (v, p) = (key(1), key(3));
        let mut l = Ledger::new(RewardParams::default());
        let first = l.append(&v, passed(&p, 0, 0)).unwrap();
        let head = l.head();

        // Tampered body: signature fails.
        let mut t = first.clone();
        let n = t.body.len();
        t.body[n - 1] ^= 1;
        assert!(matches!(
            l.insert(&t.encode()),
            Err(LedgerError::BadSignature(_)) | Err(LedgerError::Decode(_))
        ));

        // Signed by the author but with a wrong reward.
        let mut other = Ledger::new(RewardParams::default());
        let mut r = passed(&p, 1, 1);
        r.reward_micro = 1;
        let mut rec = Record {
            author: v.node_id(),
            seq: 1,
            prev: first.hash(),
            result: r,
        };
        let sign = |rec: &Record| {
            let body = wire::encode(rec);
            SignedRecord {
                sig: Sig(v.sign(Domain::LedgerRecord, &body).to_bytes()),
                body,
            }
            .encode()
        };
        assert_eq!(
            l.insert(&sign(&rec)),
            Err(LedgerError::BadReward {
                have: 1,
                want: 16_000
            })
        );
        // Forged evidence: the prover never signed this answer.
        rec.result.reward_micro = 16_000;
        rec.result.answer = Some(([7; 32], rec.result.answer.unwrap().1));
        assert_eq!(l.insert(&sign(&rec)), Err(LedgerError::BadEvidence));
        // A passed proof without evidence.
        rec.result.answer = None;
        assert_eq!(l.insert(&sign(&rec)), Err(LedgerError::MissingEvidence));
        // A replayed proof: the same challenge again.
        let replay = passed(&p, 1, 0);
        rec.result = ProofResult {
            reward_micro: 16_000,
            ..replay
        };
        assert_eq!(l.insert(&sign(&rec)), Err(LedgerError::Replay));
        // Wrong link.
        rec.result = ProofResult {
            reward_micro: 16_000,
            ..passed(&p, 1, 5)
        };
        rec.prev = [1; 32];
        assert!(matches!(
            l.insert(&sign(&rec)),
            Err(LedgerError::BadLink { .. })
        ));
        assert_eq!(l.head(), head);
        // Equivocation: a second, different record at position 0.
        let fork = other.append(&v, passed(&p, 0, 9)).unwrap();
        assert!(matches!(
            l.insert(&fork.encode()),
            Err(LedgerError::Equivocation { .. })
        ));
        assert!(l.equivocators().any(|e| *e == v.node_id()));
        assert_eq!(l.insert(&first.encode()), Ok(Inserted::Known));
        assert_eq!(l.head(), head);
        assert_eq!(l.insert(&[1, 2, 3]).map_err(|_| ()), Err(()));
    }

    /// A ledger with two authors' chains and one equivocation.
    fn sample() -> Ledger {
        let (v1, v2, p) = (key(1), key(2), key(3));
        let mut l = Ledger::new(RewardParams::default());
        for n in 0..3u8 {
            l.append(&v1, passed(&p, u64::from(n), n)).unwrap();
        }
        let mut failed = passed(&v1, 4, 20);
        failed.outcome = Outcome::Failed(Failure::Late);
        failed.answer = None;
        l.append(&v2, failed).unwrap();
        let fork = Ledger::new(RewardParams::default())
            .append(&v2, passed(&p, 4, 30))
            .unwrap();
        assert!(matches!(
            l.insert(&fork.encode()),
            Err(LedgerError::Equivocation { .. })
        ));
        l
    }

    #[test]
    fn a_snapshot_restores_the_same_ledger() {
        let l = sample();
        let bytes = l.snapshot();
        let back = Ledger::restore(RewardParams::default(), &bytes).unwrap();
        assert_eq!(back.head(), l.head());
        assert_eq!(back.len(), 4);
        assert_eq!(back.summary(), l.summary());
        assert_eq!(back.balances(), l.balances());
        assert_eq!(
            back.equivocators().collect::<Vec<_>>(),
            vec![&key(2).node_id()]
        );
        assert_eq!(back.snapshot(), bytes);
        // Every record is known, used challenges still refuse a replay, and the chains go on
        // where they stopped.
        let mut back = back;
        for r in &sample().missing_for(&BTreeMap::new()) {
            assert_eq!(back.insert(r), Ok(Inserted::Known));
        }
        assert_eq!(
            back.append(&key(1), passed(&key(3), 9, 0)).map(|_| ()),
            Err(LedgerError::Replay)
        );
        let next = back.append(&key(1), passed(&key(3), 9, 9)).unwrap();
        assert_eq!(
            back.records_after(&key(1).node_id(), 3),
            vec![next.encode()]
        );
        let empty = Ledger::new(RewardParams::default()).snapshot();
        assert!(
            Ledger::restore(RewardParams::default(), &empty)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_tampered_snapshot_is_refused() {
        let params = RewardParams::default();
        let bytes = sample().snapshot();
        // Any one flipped bit anywhere: refused, whatever it hit.
        for i in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut t = bytes.clone();
                t[i] ^= bit;
                assert!(
                    Ledger::restore(params, &t).is_err(),
                    "flipping bit {bit:#x} of byte {i} was not noticed"
                );
            }
        }
        // Cut short.
        assert!(matches!(
            Ledger::restore(params, &bytes[..bytes.len() - 1]),
            Err(SnapshotError::Decode(_))
        ));
        assert!(matches!(
            Ledger::restore(params, &[]),
            Err(SnapshotError::Decode(WireError::Empty))
        ));
        let snap = |b: &[u8]| -> Snapshot { wire::decode(b).unwrap() };
        // The last record of a chain dropped: every record verifies, the head does not.
        let mut s = snap(&bytes);
        s.records.pop();
        assert!(matches!(
            Ledger::restore(params, &wire::encode(&s)),
            Err(SnapshotError::Head { .. })
        ));
        // A record in the middle dropped: a gap.
        let mut s = snap(&bytes);
        s.records.remove(1);
        assert!(matches!(
            Ledger::restore(params, &wire::encode(&s)),
            Err(SnapshotError::Record {
                index: 1,
                error: LedgerError::Gap { .. }
            })
        ));
        // A record twice.
        let mut s = snap(&bytes);
        s.records.insert(1, s.records[0].clone());
        assert_eq!(
            Ledger::restore(params, &wire::encode(&s)).map(|_| ()),
            Err(SnapshotError::Duplicate { index: 1 })
        );
        // Evidence that proves nothing: a record of the chain itself as a "fork".
        let mut s = snap(&bytes);
        s.forks = vec![s.records[0].clone()];
        assert_eq!(
            Ledger::restore(params, &wire::encode(&s)).map(|_| ()),
            Err(SnapshotError::Fork { index: 0 })
        );
        // Other reward constants: the rewards recorded no longer follow.
        let other = RewardParams {
            rw2_micro_per_group: 7,
            ..params
        };
        assert!(matches!(
            Ledger::restore(other, &bytes),
            Err(SnapshotError::Record {
                error: LedgerError::BadReward { .. },
                ..
            })
        ));
        assert!(matches!(
            Ledger::restore(params, &vec![1; MAX_SNAPSHOT + 1]),
            Err(SnapshotError::Decode(WireError::TooLong { .. }))
        ));
    }

    #[test]
    fn reward_vectors() {
        let p = RewardParams::default();
        // docs/proofs.md §5.2: C = 105.6 for one hour → 105.6 × 1 RW1 / 24 = 4.4 RW1.
        assert_eq!(
            p.reward(&Outcome::Capacity {
                t_ms: 400,
                capacity_milli: 105_600
            }),
            4_400_000
        );
        assert_eq!(p.reward(&Outcome::Storage { groups: 16 }), 16_000);
        assert_eq!(p.reward(&Outcome::Failed(Failure::Late)), 0);
    }
}
