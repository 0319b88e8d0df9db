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
//!
//! Compaction (docs/proofs.md §5.4): each member computes, from the records it holds, a
//! [`Summary`] of every chain's prefix up to an epoch (chain lengths and last hashes, balances,
//! quarantine state) and signs its hash ([`Vote`]). Members holding the same records compute the
//! same summary; once more than half of the members signed the hash this node computed, the
//! summarized records are dropped and the summary with those votes ([`Certified`]) stands in for
//! them. A member that signed another hash is kept as a disagreement ([`Ledger::disagreements`]),
//! never merged. A node that lacks summarized records adopts the certified summary instead
//! ([`Ledger::adopt`]).

use std::collections::{BTreeMap, BTreeSet};

use macula_core::domains::Domain;
use macula_core::wire::WireError;
use macula_core::{NodeId, NodeKey, wire};
use macula_mesh::sig::Sig;
use serde::{Deserialize, Serialize};

use crate::quarantine::{NodeVerdict, QuarantineParams, Tracker};
use crate::{ProofKind, verify_answer_sig};

/// Largest encoded record.
pub const MAX_RECORD: usize = 4096;
/// Largest ledger copy [`Ledger::restore`] reads (docs/proofs.md §5.3): about 1 million records.
pub const MAX_SNAPSHOT: usize = 256 << 20;
/// Version of the epoch summary format ([`Summary`], [`Vote`], [`Certified`]) and of the copy on
/// disk that carries it.
pub const SUMMARY_VERSION: u8 = 1;
/// Largest encoded [`Certified`] summary (a summary of about 20 000 authors with their votes).
pub const MAX_CERTIFIED: usize = 8 << 20;
/// Largest encoded [`Vote`].
pub const MAX_VOTE: usize = 256;
/// Most summary ranges with votes pending at once (the oldest are forgotten beyond it).
pub const MAX_PENDING: usize = 64;

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
    #[error("ledger copy of format version {0}, this node reads version {SUMMARY_VERSION}")]
    Version(u8),
    #[error("the ledger copy's summary is refused: {0}")]
    Summary(#[from] SummaryError),
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
    /// [`SUMMARY_VERSION`].
    version: u8,
    /// [`Ledger::head`] when saved.
    head: [u8; 32],
    /// The certified summary the records follow (`None`: never compacted).
    base: Option<Certified>,
    /// Every record, chain by chain in author order, each chain from its first record.
    records: Vec<SignedRecord>,
    /// Per equivocating author, the record that conflicted with its chain (the evidence).
    forks: Vec<SignedRecord>,
}

/// The copy on disk as written before epoch summaries existed: read back (an upgraded node keeps
/// its ledger), never written.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct LegacySnapshot {
    head: [u8; 32],
    records: Vec<SignedRecord>,
    forks: Vec<SignedRecord>,
}

/// Where a summary cuts one author's chain: the records it covers and the hash of the last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainCut {
    pub author: NodeId,
    pub len: u64,
    pub last: [u8; 32],
}

/// An epoch summary: what the records of every chain's prefix up to `upto_epoch` amount to
/// (cumulative: a summary stands in for every record before its cuts, earlier summaries
/// included). Computed by each member from its records ([`Ledger::propose`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// [`SUMMARY_VERSION`].
    pub version: u8,
    /// Each chain is cut after its longest prefix of records of epochs `<= upto_epoch`.
    pub upto_epoch: u64,
    /// The largest epoch among the summarized records.
    pub last_epoch: u64,
    /// Per author (in author order) with a record summarized.
    pub chains: Vec<ChainCut>,
    /// Per prover (in node order): its balance over the summarized records.
    pub balances: Vec<(NodeId, Balance)>,
    /// Per node (in node order): its quarantine state after the summarized records.
    pub verdicts: Vec<NodeVerdict>,
}

impl Summary {
    /// `derive_key("macula/v1/ledger-summary-hash", wire(summary))`: what members sign.
    pub fn hash(&self) -> [u8; 32] {
        blake3::derive_key("macula/v1/ledger-summary-hash", &wire::encode(self))
    }
}

/// A member's signature on the hash of the summary it computed for `upto_epoch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub upto_epoch: u64,
    pub hash: [u8; 32],
    pub signer: NodeId,
    /// Over `wire((SUMMARY_VERSION, upto_epoch, hash))` in the domain `macula/v1/ledger-summary`.
    pub sig: Sig,
}

impl Vote {
    fn message(upto_epoch: u64, hash: &[u8; 32]) -> Vec<u8> {
        wire::encode(&(SUMMARY_VERSION, upto_epoch, *hash))
    }

    pub fn sign(key: &NodeKey, upto_epoch: u64, hash: [u8; 32]) -> Self {
        let sig = key.sign(Domain::LedgerSummary, &Self::message(upto_epoch, &hash));
        Self {
            upto_epoch,
            hash,
            signer: key.node_id(),
            sig: Sig(sig.to_bytes()),
        }
    }

    pub fn verifies(&self) -> bool {
        self.signer
            .verify(
                Domain::LedgerSummary,
                &Self::message(self.upto_epoch, &self.hash),
                &ed25519_dalek::Signature::from_bytes(&self.sig.0),
            )
            .is_ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }
}

/// A summary with the votes that certified it: more than half of the members signed its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certified {
    pub summary: Summary,
    pub votes: Vec<Vote>,
}

impl Certified {
    /// Checks the version, that every vote is a valid signature on this summary's hash, and
    /// that distinct signers are more than half of `members` and more than half of the authors
    /// whose chains the summary cuts (so the copy on disk, read back before the membership is
    /// known, can check the same quorum against the authors).
    pub fn check(&self, members: &[NodeId]) -> Result<[u8; 32], SummaryError> {
        if self.summary.version != SUMMARY_VERSION {
            return Err(SummaryError::Version(self.summary.version));
        }
        let hash = self.summary.hash();
        let mut signers = BTreeSet::new();
        for v in &self.votes {
            if v.upto_epoch != self.summary.upto_epoch || v.hash != hash || !v.verifies() {
                return Err(SummaryError::BadVote(v.signer.to_string()));
            }
            if members.contains(&v.signer) {
                signers.insert(v.signer);
            }
        }
        if !quorum(signers.len(), members.len()) {
            return Err(SummaryError::NoQuorum {
                have: signers.len(),
                members: members.len(),
            });
        }
        let authors = &self.summary.chains;
        let signing_authors = authors
            .iter()
            .filter(|c| self.votes.iter().any(|v| v.signer == c.author))
            .count();
        if !quorum(signing_authors, authors.len()) {
            return Err(SummaryError::NoQuorum {
                have: signing_authors,
                members: authors.len(),
            });
        }
        Ok(hash)
    }
}

/// More than half of `members`.
fn quorum(signers: usize, members: usize) -> bool {
    members > 0 && 2 * signers > members
}

/// Why a summary vote or certified summary was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SummaryError {
    #[error("undecodable ledger summary or vote: {0}")]
    Decode(String),
    #[error("ledger summary version {0}, this node reads version {SUMMARY_VERSION}")]
    Version(u8),
    #[error("a summary vote by {0} does not verify or is not for this summary")]
    BadVote(String),
    #[error("summary vote by {0}, who is not a member")]
    NotMember(String),
    #[error(
        "summary signed by {have} of {members} members (or of the authors it summarizes): more than half must sign"
    )]
    NoQuorum { have: usize, members: usize },
    #[error(
        "certified summary cuts the chain of {0} where this copy holds another record, or before \
         this copy's own summary: not adopted"
    )]
    Conflict(String),
}

/// What [`Ledger::vote`] made of a received vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Voted {
    /// For the summary this node computed (`compacted`: it completed a quorum).
    Agrees { compacted: bool },
    /// For another hash than this node computed: kept as a disagreement.
    Disagrees,
    /// This node has not computed that summary (yet): kept.
    Pending,
    /// For a range this copy has already summarized.
    Stale,
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
    /// Per author, the records after the base summary's cut.
    chains: BTreeMap<NodeId, Vec<Entry>>,
    challenges: BTreeSet<[u8; 32]>,
    /// Authors caught equivocating, each with the first conflicting record seen.
    equivocators: BTreeMap<NodeId, SignedRecord>,
    /// The certified summary the chains follow.
    base: Option<Certified>,
    /// From `base`: per author, records summarized and the hash of the last.
    cuts: BTreeMap<NodeId, (u64, [u8; 32])>,
    /// Summaries this node computed and voted for, by range, with their hash.
    candidates: BTreeMap<u64, [u8; 32]>,
    candidate_bodies: BTreeMap<u64, Summary>,
    /// Votes held (this node's own included), by range then signer.
    votes: BTreeMap<u64, BTreeMap<NodeId, Vote>>,
    /// Members that signed another hash than this node computed, by range.
    disagreements: BTreeMap<u64, BTreeMap<NodeId, [u8; 32]>>,
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
            base: None,
            cuts: BTreeMap::new(),
            candidates: BTreeMap::new(),
            candidate_bodies: BTreeMap::new(),
            votes: BTreeMap::new(),
            disagreements: BTreeMap::new(),
        }
    }

    /// Records of `author` summarized, and the hash of the last.
    fn cut(&self, author: &NodeId) -> (u64, [u8; 32]) {
        self.cuts.get(author).copied().unwrap_or((0, [0; 32]))
    }

    /// Length of `author`'s chain, summarized records included.
    fn chain_len(&self, author: &NodeId) -> u64 {
        self.cut(author).0 + self.chains.get(author).map_or(0, |c| c.len() as u64)
    }

    /// Hash of `author`'s last record (32 zero bytes for none).
    fn last_hash(&self, author: &NodeId) -> [u8; 32] {
        self.chains
            .get(author)
            .and_then(|c| c.last())
            .map_or(self.cut(author).1, |e| e.hash)
    }

    fn authors(&self) -> BTreeSet<NodeId> {
        self.cuts
            .keys()
            .chain(self.chains.keys())
            .copied()
            .collect()
    }

    /// The copy to keep on disk: `wire(Snapshot { head, records, forks })` (docs/proofs.md §5.3).
    pub fn snapshot(&self) -> Vec<u8> {
        wire::encode(&Snapshot {
            version: SUMMARY_VERSION,
            head: self.head(),
            base: self.base.clone(),
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
    /// A copy in the format of before epoch summaries (no version, no summary) is read too.
    pub fn restore(params: RewardParams, bytes: &[u8]) -> Result<Self, SnapshotError> {
        let current = Self::restore_snapshot(params, wire::decode_with_limit(bytes, MAX_SNAPSHOT));
        if current.is_ok() {
            return current;
        }
        match wire::decode_with_limit::<LegacySnapshot>(bytes, MAX_SNAPSHOT) {
            Ok(old) => {
                let snap = Snapshot {
                    version: SUMMARY_VERSION,
                    head: old.head,
                    base: None,
                    records: old.records,
                    forks: old.forks,
                };
                Self::restore_snapshot(params, Ok(snap)).or(current)
            }
            Err(_) => current,
        }
    }

    fn restore_snapshot(
        params: RewardParams,
        snap: Result<Snapshot, WireError>,
    ) -> Result<Self, SnapshotError> {
        let snap = snap?;
        if snap.version != SUMMARY_VERSION {
            return Err(SnapshotError::Version(snap.version));
        }
        let mut ledger = Self::new(params);
        if let Some(base) = snap.base {
            // The members are not known at load: the quorum is counted over the authors the
            // summary names.
            let authors: Vec<NodeId> = base.summary.chains.iter().map(|c| c.author).collect();
            base.check(&authors)?;
            ledger.set_base(base);
        }
        for (index, r) in snap.records.iter().enumerate() {
            match ledger.insert(&r.encode()) {
                Ok(Inserted::New) => {}
                Ok(Inserted::Known) => return Err(SnapshotError::Duplicate { index }),
                Err(error) => return Err(SnapshotError::Record { index, error }),
            }
        }
        for (index, f) in snap.forks.iter().enumerate() {
            if !(matches!(
                ledger.insert(&f.encode()),
                Err(LedgerError::Equivocation { .. })
            ) || ledger.summarized_fork(f))
            {
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
        let record = Record {
            author,
            seq: self.chain_len(&author),
            prev: self.last_hash(&author),
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
        let (base, _) = self.cut(&author);
        if record.seq < base {
            // Summarized: the members certified this chain up to there (docs/proofs.md §5.4).
            return Ok(Inserted::Known);
        }
        let chain = self.chains.get(&author).map_or(&[][..], |c| &c[..]);
        let have = base + chain.len() as u64;
        if record.seq < have {
            if chain[(record.seq - base) as usize].hash == hash {
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
        let prev = self.last_hash(&author);
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
        for author in self.authors() {
            h.update(author.as_bytes());
            h.update(&self.chain_len(&author).to_le_bytes());
            h.update(&self.last_hash(&author));
        }
        *h.finalize().as_bytes()
    }

    /// Records held per author (what an anti-entropy peer compares).
    pub fn summary(&self) -> BTreeMap<NodeId, u64> {
        self.authors()
            .into_iter()
            .map(|a| (a, self.chain_len(&a)))
            .collect()
    }

    /// Encoded records of `author` held from position `from` on (the answer to a pull; records
    /// summarized are not held).
    pub fn records_after(&self, author: &NodeId, from: u64) -> Vec<Vec<u8>> {
        let base = self.cut(author).0;
        self.chains.get(author).map_or_else(Vec::new, |c| {
            c.iter()
                .skip(from.saturating_sub(base) as usize)
                .map(|e| e.signed.encode())
                .collect()
        })
    }

    /// What `self` has that a peer with `peer_summary` lacks, in chain order (records this copy
    /// summarized are not among them: the peer needs [`Ledger::certified_for`] first).
    pub fn missing_for(&self, peer_summary: &BTreeMap<NodeId, u64>) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for author in self.chains.keys() {
            let theirs = peer_summary.get(author).copied().unwrap_or(0);
            if self.chain_len(author) > theirs {
                out.extend(self.records_after(author, theirs));
            }
        }
        out
    }

    /// The certified summary, encoded, when a peer with `peer_summary` lacks records it covers.
    pub fn certified_for(&self, peer_summary: &BTreeMap<NodeId, u64>) -> Option<Vec<u8>> {
        let lacks = self
            .cuts
            .iter()
            .any(|(a, (len, _))| peer_summary.get(a).copied().unwrap_or(0) < *len);
        let base = self.base.as_ref().filter(|_| lacks)?;
        Some(wire::encode(base))
    }

    /// Every node the ledger names, as author or prover, sorted: the membership the records were
    /// written in, as far as the ledger shows it.
    pub fn participants(&self) -> Vec<NodeId> {
        let mut v: Vec<NodeId> = self
            .chains
            .iter()
            .flat_map(|(a, c)| std::iter::once(*a).chain(c.iter().map(|e| e.record.result.prover)))
            .chain(self.equivocators.keys().copied())
            .chain(self.cuts.keys().copied())
            .chain(self.base.iter().flat_map(|b| {
                (b.summary.balances.iter().map(|(n, _)| *n))
                    .chain(b.summary.verdicts.iter().map(|v| v.node))
            }))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// All records held (those summarized are not), in a canonical order: by epoch, then prover,
    /// kind, author and position.
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

    /// Balances per prover from the whole ledger: the summary's, plus the records held.
    pub fn balances(&self) -> BTreeMap<NodeId, Balance> {
        let mut out: BTreeMap<NodeId, Balance> = self
            .base
            .iter()
            .flat_map(|b| b.summary.balances.iter().copied())
            .collect();
        for (_, r) in self.results() {
            add_to_balance(&mut out, r);
        }
        out
    }

    /// The quarantine state the summary carries and the largest epoch it summarized (empty and
    /// 0 when never compacted).
    pub fn base_verdicts(&self) -> (&[NodeVerdict], u64) {
        self.base.as_ref().map_or((&[][..], 0), |b| {
            (&b.summary.verdicts[..], b.summary.last_epoch)
        })
    }

    /// The certified summary this copy is compacted to.
    pub fn base(&self) -> Option<&Certified> {
        self.base.as_ref()
    }

    /// Records summarized (no longer held).
    pub fn summarized(&self) -> u64 {
        self.cuts.values().map(|c| c.0).sum()
    }

    /// Members that signed another summary hash than this node computed: by range, signer and
    /// the hash it signed.
    pub fn disagreements(&self) -> &BTreeMap<u64, BTreeMap<NodeId, [u8; 32]>> {
        &self.disagreements
    }

    /// Computes the summary of every chain's prefix of records of epochs `<= upto` held here
    /// (on top of the current one), signs its hash with `key` and keeps the vote: the vote to
    /// spread. Quarantine state is computed with each epoch's designated verifier over
    /// `members`. `None` when the range is already summarized, was voted for, or adds nothing.
    /// Compacts at once if the votes held already make a quorum of `members`.
    pub fn propose(
        &mut self,
        key: &NodeKey,
        upto: u64,
        quarantine: QuarantineParams,
        members: &[NodeId],
    ) -> Option<Vote> {
        if self
            .base
            .as_ref()
            .is_some_and(|b| b.summary.upto_epoch >= upto)
            || self.candidates.contains_key(&upto)
        {
            return None;
        }
        let mut prefix: Vec<(&NodeId, u64, &ProofResult)> = Vec::new();
        let mut chains = Vec::new();
        for author in self.authors() {
            let (base, base_last) = self.cut(&author);
            let held = self.chains.get(&author).map_or(&[][..], |c| &c[..]);
            let k = held
                .iter()
                .take_while(|e| e.record.result.epoch <= upto)
                .count();
            for e in &held[..k] {
                let a = &self.chains.get_key_value(&author)?.0;
                prefix.push((a, e.record.seq, &e.record.result));
            }
            let last = if k > 0 { held[k - 1].hash } else { base_last };
            if base + k as u64 > 0 {
                chains.push(ChainCut {
                    author,
                    len: base + k as u64,
                    last,
                });
            }
        }
        if prefix.is_empty() {
            return None;
        }
        prefix.sort_by(|x, y| {
            (x.2.epoch, x.2.prover, x.2.kind, x.0, x.1)
                .cmp(&(y.2.epoch, y.2.prover, y.2.kind, y.0, y.1))
        });
        let mut balances: BTreeMap<NodeId, Balance> = self
            .base
            .iter()
            .flat_map(|b| b.summary.balances.iter().copied())
            .collect();
        for (_, _, r) in &prefix {
            add_to_balance(&mut balances, r);
        }
        let (state, base_epoch) = self.base_verdicts();
        let mut tracker = Tracker::import(quarantine, state);
        let last = tracker.replay(
            prefix.iter().map(|(a, _, r)| (*a, *r)),
            &|p: &NodeId, e: u64| crate::verifier_for(p, e, members),
            &mut Vec::new(),
        );
        let summary = Summary {
            version: SUMMARY_VERSION,
            upto_epoch: upto,
            last_epoch: last.max(base_epoch),
            chains,
            balances: balances.into_iter().collect(),
            verdicts: tracker.export(),
        };
        let hash = summary.hash();
        self.candidates.insert(upto, hash);
        self.candidate_bodies.insert(upto, summary);
        for (signer, v) in self.votes.get(&upto).into_iter().flatten() {
            if v.hash != hash {
                self.disagreements
                    .entry(upto)
                    .or_default()
                    .insert(*signer, v.hash);
            }
        }
        let vote = Vote::sign(key, upto, hash);
        self.votes
            .entry(upto)
            .or_default()
            .insert(vote.signer, vote.clone());
        self.settle(members);
        self.forget_old();
        Some(vote)
    }

    /// Takes a member's vote (encoded): verified, kept, compared with the summary this node
    /// computed for the range; compacts when it completes a quorum of `members`.
    pub fn vote(&mut self, bytes: &[u8], members: &[NodeId]) -> Result<Voted, SummaryError> {
        let v: Vote = wire::decode_with_limit(bytes, MAX_VOTE)
            .map_err(|e| SummaryError::Decode(e.to_string()))?;
        if !v.verifies() {
            return Err(SummaryError::BadVote(v.signer.to_string()));
        }
        if !members.contains(&v.signer) {
            return Err(SummaryError::NotMember(v.signer.to_string()));
        }
        if self
            .base
            .as_ref()
            .is_some_and(|b| b.summary.upto_epoch >= v.upto_epoch)
        {
            return Ok(Voted::Stale);
        }
        let (upto, hash, signer) = (v.upto_epoch, v.hash, v.signer);
        self.votes.entry(upto).or_default().insert(signer, v);
        self.forget_old();
        Ok(match self.candidates.get(&upto) {
            None => Voted::Pending,
            Some(mine) if *mine != hash => {
                self.disagreements
                    .entry(upto)
                    .or_default()
                    .insert(signer, hash);
                Voted::Disagrees
            }
            Some(_) => Voted::Agrees {
                compacted: self.settle(members),
            },
        })
    }

    /// Compacts to the newest summary this node computed that more than half of `members`
    /// signed.
    fn settle(&mut self, members: &[NodeId]) -> bool {
        let done = self.candidates.iter().rev().find_map(|(upto, hash)| {
            let agreeing = || {
                self.votes
                    .get(upto)
                    .into_iter()
                    .flat_map(|m| m.values())
                    .filter(|v| v.hash == *hash && members.contains(&v.signer))
            };
            quorum(agreeing().count(), members.len())
                .then(|| (*upto, agreeing().cloned().collect::<Vec<Vote>>()))
        });
        let Some((upto, votes)) = done else {
            return false;
        };
        let Some(summary) = self.candidate_bodies.get(&upto) else {
            return false;
        };
        let c = Certified {
            summary: summary.clone(),
            votes,
        };
        if c.check(members).is_err() {
            return false;
        }
        self.compact_to(c);
        true
    }

    /// Adopts a certified summary received from a member (encoded): its votes must verify and
    /// come from more than half of `members`, and it must agree with every record this copy
    /// holds at its cuts. `Ok(false)` when this copy is already compacted that far.
    pub fn adopt(&mut self, bytes: &[u8], members: &[NodeId]) -> Result<bool, SummaryError> {
        let c: Certified = wire::decode_with_limit(bytes, MAX_CERTIFIED)
            .map_err(|e| SummaryError::Decode(e.to_string()))?;
        c.check(members)?;
        if self
            .base
            .as_ref()
            .is_some_and(|b| b.summary.upto_epoch >= c.summary.upto_epoch)
        {
            return Ok(false);
        }
        let named: BTreeSet<NodeId> = c.summary.chains.iter().map(|x| x.author).collect();
        if let Some(a) = self.cuts.keys().find(|a| !named.contains(a)) {
            return Err(SummaryError::Conflict(a.to_string()));
        }
        for cut in &c.summary.chains {
            let (base, base_last) = self.cut(&cut.author);
            let held = self.chains.get(&cut.author).map_or(&[][..], |c| &c[..]);
            let agrees = if cut.len < base {
                false
            } else if cut.len == base {
                cut.last == base_last
            } else {
                held.get((cut.len - base - 1) as usize)
                    .is_none_or(|e| e.hash == cut.last)
            };
            if !agrees {
                return Err(SummaryError::Conflict(cut.author.to_string()));
            }
        }
        self.compact_to(c);
        Ok(true)
    }

    /// Drops the records `c` summarizes and makes it the base.
    fn compact_to(&mut self, c: Certified) {
        let upto = c.summary.upto_epoch;
        for cut in &c.summary.chains {
            let (base, _) = self.cut(&cut.author);
            if let Some(chain) = self.chains.get_mut(&cut.author) {
                let drop = ((cut.len - base) as usize).min(chain.len());
                for e in chain.drain(..drop) {
                    self.challenges.remove(&e.record.result.challenge);
                }
                if chain.is_empty() {
                    self.chains.remove(&cut.author);
                }
            }
        }
        self.set_base(c);
        self.candidates.retain(|u, _| *u > upto);
        self.candidate_bodies.retain(|u, _| *u > upto);
        self.votes.retain(|u, _| *u > upto);
    }

    fn set_base(&mut self, c: Certified) {
        self.cuts = c
            .summary
            .chains
            .iter()
            .map(|x| (x.author, (x.len, x.last)))
            .collect();
        self.base = Some(c);
    }

    /// Keeps votes, candidates and disagreements of the newest [`MAX_PENDING`] ranges only.
    fn forget_old(&mut self) {
        while self.votes.len() > MAX_PENDING {
            self.votes.pop_first();
        }
        while self.candidates.len() > MAX_PENDING {
            self.candidates.pop_first();
            self.candidate_bodies.pop_first();
        }
        while self.disagreements.len() > MAX_PENDING {
            self.disagreements.pop_first();
        }
    }

    /// Whether `f` is a record its author signed at a position this copy summarized (kept as
    /// equivocation evidence from before the compaction; it cannot be compared any more).
    fn summarized_fork(&mut self, f: &SignedRecord) -> bool {
        let Ok(record) = wire::decode_with_limit::<Record>(&f.body, MAX_RECORD) else {
            return false;
        };
        let ok = record.seq < self.cut(&record.author).0
            && record
                .author
                .verify(
                    Domain::LedgerRecord,
                    &f.body,
                    &ed25519_dalek::Signature::from_bytes(&f.sig.0),
                )
                .is_ok();
        if ok {
            self.equivocators.entry(record.author).or_insert(f.clone());
        }
        ok
    }

    /// Authors caught signing two different records at one position.
    pub fn equivocators(&self) -> impl Iterator<Item = &NodeId> {
        self.equivocators.keys()
    }

    /// Number of records held (those summarized are not).
    pub fn len(&self) -> usize {
        self.chains.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn add_to_balance(out: &mut BTreeMap<NodeId, Balance>, r: &ProofResult) {
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
        // A copy written before epoch summaries existed is read back the same.
        let old: Snapshot = wire::decode(&bytes).unwrap();
        let legacy = wire::encode(&LegacySnapshot {
            head: old.head,
            records: old.records,
            forks: old.forks,
        });
        let upgraded = Ledger::restore(RewardParams::default(), &legacy).unwrap();
        assert_eq!(upgraded.snapshot(), bytes);
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
        // A compacted copy: any flipped bit in its summary or votes is refused too.
        let (keys, members, recs) = realm();
        let mut c = Ledger::new(params);
        for r in &recs[..12] {
            c.insert(r).unwrap();
        }
        let q = QuarantineParams::default();
        let hash = c.propose(&keys[0], 2, q, &members).unwrap().hash;
        c.vote(&Vote::sign(&keys[1], 2, hash).encode(), &members)
            .unwrap();
        assert_eq!(c.summarized(), 9);
        let compacted = c.snapshot();
        let bytes = sample().snapshot();
        for (i, bit) in (0..compacted.len()).flat_map(|i| [(i, 0x01), (i, 0x80)]) {
            let mut t = compacted.clone();
            t[i] ^= bit;
            assert!(
                Ledger::restore(params, &t).is_err(),
                "flipping bit {bit:#x} of byte {i} of a compacted copy was not noticed"
            );
        }
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

    /// Three members (each verifier and prover), records of epochs 0..10.
    fn realm() -> (Vec<NodeKey>, Vec<NodeId>, Vec<Vec<u8>>) {
        let keys: Vec<NodeKey> = (1..=3).map(key).collect();
        let mut members: Vec<NodeId> = keys.iter().map(NodeKey::node_id).collect();
        members.sort();
        let mut author = Ledger::new(RewardParams::default());
        let mut recs = Vec::new();
        for epoch in 0..10u64 {
            for (i, v) in keys.iter().enumerate() {
                let p = &keys[(i + 1) % 3];
                let mut r = passed(p, epoch, (epoch * 3 + i as u64) as u8);
                if epoch % 4 == 0 && i == 0 {
                    r.outcome = Outcome::Failed(Failure::BadGroup);
                    r.answer = None;
                }
                recs.push(author.append(v, r).unwrap().encode());
            }
        }
        (keys, members, recs)
    }

    #[test]
    fn members_that_agree_compact_and_keep_the_same_state() {
        let (keys, members, recs) = realm();
        let q = QuarantineParams::default();
        let mut nodes: Vec<Ledger> = (0..3)
            .map(|_| {
                let mut l = Ledger::new(RewardParams::default());
                for r in &recs {
                    l.insert(r).unwrap();
                }
                l
            })
            .collect();
        let reference = nodes[0].clone();
        let verdicts = |l: &Ledger| {
            crate::quarantine::Tracker::from_ledger(q, l, |p, e| {
                crate::verifier_for(p, e, &members)
            })
            .0
            .export()
        };
        // One vote is not a quorum of three; the second is.
        let v0 = nodes[0].propose(&keys[0], 5, q, &members).unwrap();
        assert!(nodes[0].base().is_none());
        assert_eq!(nodes[0].propose(&keys[0], 5, q, &members), None);
        let v1 = nodes[1].propose(&keys[1], 5, q, &members).unwrap();
        assert_eq!(v0.hash, v1.hash);
        assert_eq!(
            nodes[0].vote(&v1.encode(), &members),
            Ok(Voted::Agrees { compacted: true })
        );
        let n = &nodes[0];
        assert_eq!(n.summarized(), 18);
        assert_eq!(n.len(), 12);
        assert_eq!(n.head(), reference.head());
        assert_eq!(n.summary(), reference.summary());
        assert_eq!(n.balances(), reference.balances());
        assert_eq!(verdicts(n), verdicts(&reference));
        // Records summarized are known; the chains go on from the cut.
        for r in &recs {
            assert_eq!(nodes[0].insert(r), Ok(Inserted::Known));
        }
        // The copy on disk carries the certified summary.
        let back = Ledger::restore(RewardParams::default(), &nodes[0].snapshot()).unwrap();
        assert_eq!(back.head(), reference.head());
        assert_eq!(back.balances(), reference.balances());
        assert_eq!(back.snapshot(), nodes[0].snapshot());
        // A node that holds nothing adopts the certified summary and pulls the rest.
        let mut late = Ledger::new(RewardParams::default());
        let cert = nodes[0].certified_for(&late.summary()).unwrap();
        // Two signers of a realm of five are no quorum.
        let mut five = members.clone();
        five.extend([key(8).node_id(), key(9).node_id()]);
        assert_eq!(
            late.adopt(&cert, &five),
            Err(SummaryError::NoQuorum {
                have: 2,
                members: 5
            })
        );
        assert!(late.is_empty() && late.base().is_none());
        assert_eq!(late.adopt(&cert, &members), Ok(true));
        for r in nodes[0].missing_for(&late.summary()) {
            assert_eq!(late.insert(&r), Ok(Inserted::New));
        }
        assert_eq!(late.head(), reference.head());
        assert_eq!(late.balances(), reference.balances());
        assert_eq!(verdicts(&late), verdicts(&reference));
        assert_eq!(nodes[0].certified_for(&late.summary()), None);
        // The third node was not needed for the quorum: it adopts too, its records agree.
        assert_eq!(nodes[2].adopt(&cert, &members), Ok(true));
        assert_eq!(nodes[2].head(), reference.head());
        // A forged vote and a stranger's vote are refused.
        let mut forged = v1.clone();
        forged.hash[0] ^= 1;
        assert!(matches!(
            nodes[1].vote(&forged.encode(), &members),
            Err(SummaryError::BadVote(_))
        ));
        let stranger = Vote::sign(&key(9), 7, v1.hash);
        assert!(matches!(
            nodes[1].vote(&stranger.encode(), &members),
            Err(SummaryError::NotMember(_))
        ));
    }

    #[test]
    fn a_member_that_signs_another_summary_is_seen_and_nothing_is_dropped() {
        let (keys, members, recs) = realm();
        let q = QuarantineParams::default();
        let full = |skip: Option<usize>| {
            let mut l = Ledger::new(RewardParams::default());
            for (i, r) in recs.iter().enumerate() {
                if Some(i) != skip {
                    let _ = l.insert(r);
                }
            }
            l
        };
        // Node 1 misses one record of epoch 2 (and so what follows in that chain).
        let mut a = full(None);
        let mut b = full(Some(7));
        let va = a.propose(&keys[0], 5, q, &members).unwrap();
        let vb = b.propose(&keys[1], 5, q, &members).unwrap();
        assert_ne!(va.hash, vb.hash);
        assert_eq!(a.vote(&vb.encode(), &members), Ok(Voted::Disagrees));
        assert_eq!(a.disagreements()[&5][&keys[1].node_id()], vb.hash);
        assert!(a.base().is_none());
        assert_eq!(a.len(), 30);
        // A certified summary that cuts a chain at another record is not adopted.
        let vc = Vote::sign(&keys[2], 5, vb.hash);
        assert_eq!(
            b.vote(&vc.encode(), &members),
            Ok(Voted::Agrees { compacted: true })
        );
        let cert = b.certified_for(&BTreeMap::new()).unwrap();
        let before = a.head();
        // b's summary cuts the chain of keys[1] earlier: a holds more, which agrees; a chain
        // cut at a record a holds differently is a conflict.
        let mut forked = b.base().unwrap().clone();
        forked.summary.chains[0].last = [7; 32];
        let h = forked.summary.hash();
        forked.votes = keys.iter().map(|k| Vote::sign(k, 5, h)).collect();
        assert!(matches!(
            a.adopt(&wire::encode(&forked), &members),
            Err(SummaryError::Conflict(_))
        ));
        assert_eq!(a.head(), before);
        assert_eq!(a.adopt(&cert, &members), Ok(true));
        assert_eq!(a.head(), before);
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
