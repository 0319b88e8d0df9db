//! The epoch driver's rules, sans-IO: which provers this node verifies in an epoch, the
//! challenge it sends each, what a prover answers, and how the verifier judges an answer (or its
//! absence) into a [`ProofResult`] for the ledger. The daemon feeds it the time, the membership,
//! inventories, random nonces and the bytes it received, and does the sending and timing.

use std::collections::BTreeSet;

use macula_core::{NodeId, NodeKey, wire};
use macula_store::header::SegmentId;
use macula_store::repair::HeldShard;
use serde::{Deserialize, Serialize};

use crate::capacity::{self, Claim};
use crate::config::ProofsConfig;
use crate::ledger::{Failure, Outcome, ProofResult};
use crate::storage::{self, ShardSource};
use crate::{ProofKind, SignedAnswer, verifier_for};

/// Largest encoded request accepted (a storage challenge of [`storage::MAX_PICKS`] picks).
pub const MAX_REQUEST: usize = 16 * 1024;

/// A challenge as sent to the prover (RPC `proofs.challenge`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Capacity(capacity::Challenge),
    Storage(storage::Challenge),
}

/// Why a prover refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("undecodable proof request: {0}")]
    Decode(String),
    #[error("the challenge is for prover {0}, not this node")]
    NotMine(String),
    #[error("{caller} is not this node's verifier in epoch {epoch}")]
    NotVerifier { caller: String, epoch: u64 },
    #[error("{0}")]
    Capacity(#[from] capacity::CapacityError),
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, RequestError> {
        let r: Request = wire::decode_with_limit(bytes, MAX_REQUEST)
            .map_err(|e| RequestError::Decode(e.to_string()))?;
        if let Request::Storage(ch) = &r
            && ch.picks.len() > storage::MAX_PICKS
        {
            return Err(RequestError::Decode(format!(
                "{} picks, at most {}",
                ch.picks.len(),
                storage::MAX_PICKS
            )));
        }
        Ok(r)
    }

    pub fn kind(&self) -> ProofKind {
        match self {
            Request::Capacity(_) => ProofKind::Capacity,
            Request::Storage(_) => ProofKind::Storage,
        }
    }

    fn parts(&self) -> (NodeId, NodeId, u64, u32) {
        match self {
            Request::Capacity(c) => (c.verifier, c.prover, c.epoch, c.deadline_ms),
            Request::Storage(c) => (c.verifier, c.prover, c.epoch, c.deadline_ms),
        }
    }

    pub fn prover(&self) -> NodeId {
        self.parts().1
    }

    pub fn epoch(&self) -> u64 {
        self.parts().2
    }

    pub fn deadline_ms(&self) -> u32 {
        self.parts().3
    }

    /// The challenge digest the ledger keeps (unique per challenge).
    pub fn digest(&self) -> [u8; 32] {
        match self {
            Request::Capacity(c) => c.digest(),
            Request::Storage(c) => c.digest(),
        }
    }
}

/// The epoch of a Unix time.
pub fn epoch_of(unix_s: u64, epoch_s: u64) -> u64 {
    unix_s / epoch_s.max(1)
}

/// Which proofs this node still has to run: per epoch, every member whose designated verifier
/// ([`verifier_for`]) is this node gets one capacity and one storage challenge.
#[derive(Debug)]
pub struct Duties {
    me: NodeId,
    started: BTreeSet<(u64, NodeId)>,
}

impl Duties {
    pub fn new(me: NodeId) -> Self {
        Self {
            me,
            started: BTreeSet::new(),
        }
    }

    /// The provers to challenge now in `epoch` given the current `members` (this node
    /// included); each is returned once per epoch. Older epochs are forgotten.
    pub fn due(&mut self, epoch: u64, members: &[NodeId]) -> Vec<NodeId> {
        self.started.retain(|(e, _)| *e >= epoch);
        let mut out = Vec::new();
        for p in members {
            if *p == self.me || verifier_for(p, epoch, members) != Some(self.me) {
                continue;
            }
            if self.started.insert((epoch, *p)) {
                out.push(*p);
            }
        }
        out
    }
}

/// The capacity challenge for `prover` in `epoch`.
pub fn capacity_request(
    me: NodeId,
    prover: NodeId,
    epoch: u64,
    nonce: [u8; 32],
    cfg: &ProofsConfig,
) -> Request {
    Request::Capacity(capacity::Challenge {
        verifier: me,
        prover,
        epoch,
        nonce,
        steps: cfg.capacity_steps,
        segments: cfg.capacity_segments,
        deadline_ms: cfg.capacity_deadline_ms,
    })
}

/// The storage challenge for `prover` from its published inventory; `None` when it holds
/// nothing (no storage proof this epoch).
pub fn storage_request(
    me: NodeId,
    prover: NodeId,
    epoch: u64,
    nonce: [u8; 32],
    inventory: &[HeldShard],
    cfg: &ProofsConfig,
) -> Option<Request> {
    let inv: Vec<(SegmentId, u16)> = inventory.iter().map(|s| (s.segment, s.index)).collect();
    let picks = storage::draw(&nonce, &inv, cfg.storage_shards, cfg.storage_groups);
    if picks.is_empty() {
        return None;
    }
    Some(Request::Storage(storage::Challenge {
        verifier: me,
        prover,
        epoch,
        nonce,
        picks,
        deadline_ms: cfg.storage_deadline_ms,
    }))
}

/// How long a verifier waits for the answer to `req`: twice the challenge's deadline, so a late
/// answer still arrives and is judged `Late` rather than `NoAnswer`.
pub fn call_deadline(req: &Request) -> std::time::Duration {
    std::time::Duration::from_millis(u64::from(req.deadline_ms()) * 2)
}

/// How many times a verifier sends a challenge of this kind before recording `NoAnswer`.
pub fn attempts(kind: ProofKind, cfg: &ProofsConfig) -> u32 {
    match kind {
        ProofKind::Capacity => 1,
        ProofKind::Storage => 1 + cfg.storage_retries,
    }
}

/// The prover's side: checks the request is for this node from its designated verifier in
/// that epoch (given `members`), does the work and signs the answer. The capacity work takes
/// time (run it off the event loop).
pub fn answer(
    key: &NodeKey,
    caller: NodeId,
    req: &Request,
    members: &[NodeId],
    source: &impl ShardSource,
) -> Result<SignedAnswer, RequestError> {
    let (verifier, prover, epoch, _) = req.parts();
    if prover != key.node_id() {
        return Err(RequestError::NotMine(prover.to_string()));
    }
    if verifier != caller || verifier_for(&prover, epoch, members) != Some(caller) {
        return Err(RequestError::NotVerifier {
            caller: caller.to_string(),
            epoch,
        });
    }
    let body = match req {
        Request::Capacity(ch) => wire::encode(&capacity::prove(ch)?),
        Request::Storage(ch) => wire::encode(&storage::prove(ch, source)),
    };
    Ok(SignedAnswer::sign(key, req.kind(), body))
}

/// The verifier's judgement of one challenge: `reply` is the prover's encoded
/// [`SignedAnswer`] (`None`: no answer after every attempt), `t_ms` the time the verifier
/// measured from sending to receiving, `claim` the prover's figures from its latest signed
/// resource report. The reward is filled in by the ledger.
pub fn judge(
    req: &Request,
    reply: Option<&[u8]>,
    t_ms: u64,
    claim: &Claim,
    cfg: &ProofsConfig,
) -> ProofResult {
    let result = |outcome, answer| ProofResult {
        prover: req.prover(),
        kind: req.kind(),
        epoch: req.epoch(),
        challenge: req.digest(),
        outcome,
        answer,
        reward_micro: 0,
    };
    let Some(bytes) = reply else {
        return result(Outcome::Failed(Failure::NoAnswer), None);
    };
    let signed = match SignedAnswer::decode_verified(bytes, &req.prover()) {
        Ok(s) if s.kind == req.kind() => s,
        _ => return result(Outcome::Failed(Failure::Forged), None),
    };
    let evidence = Some((signed.digest(), signed.sig));
    if t_ms > u64::from(req.deadline_ms()) {
        return result(Outcome::Failed(Failure::Late), evidence);
    }
    let outcome = match req {
        Request::Capacity(ch) => match wire::decode::<capacity::Answer>(&signed.body) {
            Err(_) => Outcome::Failed(Failure::Forged),
            Ok(a) => match capacity::verify(ch, &a, cfg.capacity_spot) {
                Ok(()) => Outcome::Capacity {
                    t_ms,
                    capacity_milli: capacity::capacity_milli(
                        claim,
                        ch.steps,
                        t_ms,
                        ch.deadline_ms,
                        &cfg.formula(),
                    ),
                },
                Err(capacity::CapacityError::BadWork(_)) => Outcome::Failed(Failure::BadWork),
                Err(_) => Outcome::Failed(Failure::Forged),
            },
        },
        Request::Storage(ch) => match wire::decode::<storage::Answer>(&signed.body) {
            Err(_) => Outcome::Failed(Failure::Forged),
            Ok(a) => match storage::verify(ch, &a) {
                Err(_) => Outcome::Failed(Failure::Forged),
                Ok(items) if items.iter().all(Result::is_ok) => Outcome::Storage {
                    groups: items.len() as u32,
                },
                Ok(_) => Outcome::Failed(Failure::BadGroup),
            },
        },
    };
    result(outcome, evidence)
}

/// A shard write `prover` refused for lack of space (its store's quota, or its disk full), as
/// seen by the node that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub prover: NodeId,
    /// Bytes of the refused shard.
    pub need: u64,
}

/// Whether `claim` (the prover's latest signed resource report) is contradicted by refusing a
/// write of `need` bytes: it claimed more free space (`sR − sT`) than the write plus the slack its
/// report may lag by (a report is spread again only once a figure moved by `threshold_permille`,
/// so an honest node may have up to that share of `sR` less than it last said).
pub fn contradicts(claim: &Claim, need: u64, threshold_permille: u32) -> bool {
    let free = claim.disk_reported.saturating_sub(claim.disk_taken);
    let slack =
        u64::try_from(u128::from(claim.disk_reported) * u128::from(threshold_permille) / 1000)
            .unwrap_or(u64::MAX);
    free > need.saturating_add(slack)
}

/// The challenge digest of a refusal record: one per prover and epoch
/// (`BLAKE3-derive_key("macula/v1/capacity-refusal", prover ‖ epoch_le)`), so a prover is charged
/// at most one refusal failure per epoch and a copied record is a replay.
pub fn refusal_digest(prover: &NodeId, epoch: u64) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("macula/v1/capacity-refusal");
    h.update(prover.as_bytes());
    h.update(&epoch.to_le_bytes());
    *h.finalize().as_bytes()
}

/// The ledger result for a refusal seen by `me` in `epoch`: a capacity failure
/// ([`Failure::Refused`]) when `me` is the prover's designated verifier for the epoch over
/// `members` (only its records count toward quarantine, as for every proof) and the prover's
/// claim is contradicted ([`contradicts`]); otherwise `None`.
pub fn judge_refusal(
    me: &NodeId,
    members: &[NodeId],
    epoch: u64,
    refusal: &Refusal,
    claim: &Claim,
    cfg: &ProofsConfig,
) -> Option<ProofResult> {
    if verifier_for(&refusal.prover, epoch, members).as_ref() != Some(me)
        || !contradicts(claim, refusal.need, cfg.spread.threshold_permille)
    {
        return None;
    }
    Some(ProofResult {
        prover: refusal.prover,
        kind: ProofKind::Capacity,
        epoch,
        challenge: refusal_digest(&refusal.prover, epoch),
        outcome: Outcome::Failed(Failure::Refused),
        answer: None,
        reward_micro: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Item;

    struct Nothing;
    impl ShardSource for Nothing {
        fn item(&self, _: &SegmentId, _: u16, _: u32) -> Option<Item> {
            None
        }
    }

    fn keys(n: u8) -> Vec<NodeKey> {
        (0..n).map(|i| NodeKey::from_seed([i + 1; 32])).collect()
    }

    fn small() -> ProofsConfig {
        ProofsConfig {
            capacity_steps: 1024,
            capacity_segments: 16,
            ..Default::default()
        }
    }

    #[test]
    fn a_refused_write_contradicts_only_a_claim_with_room_beyond_the_slack() {
        let claim = |reported: u64, taken: u64| Claim {
            processors: 1,
            cores_per_processor: 1,
            disk_reported: reported,
            disk_taken: taken,
        };
        let mib = 1 << 20;
        // 1000 MiB reported, 5 % slack = 50 MiB: a 1 MiB shard refused with 51+ MiB claimed free.
        assert!(contradicts(&claim(1000 * mib, 900 * mib), mib, 50));
        assert!(contradicts(&claim(1000 * mib, 0), mib, 50));
        assert!(!contradicts(&claim(1000 * mib, 949 * mib), mib, 50));
        assert!(!contradicts(&claim(1000 * mib, 1000 * mib), mib, 50));
        // A node that reports nothing (or is full) is never contradicted; a claim of exactly the
        // write plus the slack is not either.
        assert!(!contradicts(&claim(0, 0), mib, 50));
        assert!(!contradicts(&claim(100 * mib, 100 * mib + 1), mib, 50));
        assert!(!contradicts(&claim(u64::MAX, u64::MAX - mib), mib, 0));
        assert!(contradicts(&claim(u64::MAX, u64::MAX - 2 * mib), mib, 0));
        assert!(contradicts(&claim(u64::MAX, 0), mib, 1000 - 1));
        // Without slack, any room beyond the write.
        assert!(contradicts(&claim(10 * mib, 8 * mib), mib, 0));
        assert!(!contradicts(&claim(10 * mib, 9 * mib), mib, 0));
    }

    #[test]
    fn a_refusal_is_recorded_by_the_designated_verifier_once_per_epoch() {
        let ks = keys(5);
        let mut members: Vec<NodeId> = ks.iter().map(NodeKey::node_id).collect();
        members.sort();
        let prover = members[0];
        let cfg = small();
        let lying = Claim {
            processors: 1,
            cores_per_processor: 1,
            disk_reported: 1 << 30,
            disk_taken: 0,
        };
        let full = Claim {
            disk_taken: 1 << 30,
            ..lying
        };
        let refusal = Refusal {
            prover,
            need: 1 << 20,
        };
        for epoch in 0..20 {
            let verifier = verifier_for(&prover, epoch, &members).unwrap();
            for me in &members {
                let r = judge_refusal(me, &members, epoch, &refusal, &lying, &cfg);
                if *me != verifier {
                    assert_eq!(r, None, "only the designated verifier records");
                    continue;
                }
                let r = r.expect("the verifier records a contradicted claim");
                assert_eq!(r.prover, prover);
                assert_eq!(r.kind, ProofKind::Capacity);
                assert_eq!(r.epoch, epoch);
                assert_eq!(r.outcome, Outcome::Failed(Failure::Refused));
                assert_eq!(r.answer, None);
                assert_eq!(r.challenge, refusal_digest(&prover, epoch));
                assert_eq!(
                    judge_refusal(me, &members, epoch, &refusal, &full, &cfg),
                    None,
                    "an honest full node is not charged"
                );
            }
        }
        assert_ne!(refusal_digest(&prover, 1), refusal_digest(&prover, 2));
        assert_ne!(refusal_digest(&prover, 1), refusal_digest(&members[1], 1));
    }

    #[test]
    fn a_verifier_waits_twice_the_challenge_deadline() {
        let ks = keys(2);
        let cfg = ProofsConfig {
            capacity_deadline_ms: 1500,
            ..small()
        };
        let req = capacity_request(ks[0].node_id(), ks[1].node_id(), 1, [0; 32], &cfg);
        assert_eq!(call_deadline(&req), std::time::Duration::from_secs(3));
    }

    #[test]
    fn every_member_is_due_once_per_epoch_at_its_verifier() {
        let ks = keys(5);
        let members: Vec<NodeId> = ks.iter().map(NodeKey::node_id).collect();
        let mut duties: Vec<Duties> = members.iter().map(|m| Duties::new(*m)).collect();
        for epoch in 10..13 {
            let mut all: Vec<NodeId> = duties
                .iter_mut()
                .flat_map(|d| d.due(epoch, &members))
                .collect();
            all.sort();
            let mut want = members.clone();
            want.sort();
            assert_eq!(all, want, "each prover exactly once in epoch {epoch}");
            assert!(duties.iter_mut().all(|d| d.due(epoch, &members).is_empty()));
        }
        assert_eq!(epoch_of(7199, 3600), 1);
    }

    #[test]
    fn an_honest_capacity_answer_passes_and_a_wrong_one_fails() {
        let ks = keys(3);
        let members: Vec<NodeId> = ks.iter().map(NodeKey::node_id).collect();
        let prover = &ks[0];
        let epoch = 4;
        let v = verifier_for(&prover.node_id(), epoch, &members).unwrap();
        let cfg = small();
        let req = capacity_request(v, prover.node_id(), epoch, [9; 32], &cfg);
        let bytes = Request::decode(&req.encode()).unwrap();
        assert_eq!(bytes, req);
        let claim = Claim {
            processors: 4,
            cores_per_processor: 4,
            disk_reported: 0,
            disk_taken: 0,
        };
        let a = answer(prover, v, &req, &members, &Nothing).unwrap();
        let r = judge(&req, Some(&a.encode()), 5, &claim, &cfg);
        assert!(
            matches!(r.outcome, Outcome::Capacity { t_ms: 5, .. }),
            "{r:?}"
        );
        assert!(r.answer.is_some());
        // Late, missing, signed by someone else, or asked by a non-verifier.
        let late = judge(&req, Some(&a.encode()), 10_001, &claim, &cfg);
        assert_eq!(late.outcome, Outcome::Failed(Failure::Late));
        let none = judge(&req, None, 0, &claim, &cfg);
        assert_eq!(none.outcome, Outcome::Failed(Failure::NoAnswer));
        let other = SignedAnswer::sign(&ks[1], ProofKind::Capacity, a.body.clone());
        let forged = judge(&req, Some(&other.encode()), 5, &claim, &cfg);
        assert_eq!(forged.outcome, Outcome::Failed(Failure::Forged));
        let stranger = members.iter().find(|m| **m != v && **m != prover.node_id());
        assert!(matches!(
            answer(prover, *stranger.unwrap(), &req, &members, &Nothing),
            Err(RequestError::NotVerifier { .. })
        ));
        // An answer to another challenge (replayed) is refused.
        let req2 = capacity_request(v, prover.node_id(), epoch, [8; 32], &cfg);
        let replay = judge(&req2, Some(&a.encode()), 5, &claim, &cfg);
        assert_eq!(replay.outcome, Outcome::Failed(Failure::Forged));
    }

    #[test]
    fn a_storage_answer_without_the_groups_fails() {
        let ks = keys(2);
        let members: Vec<NodeId> = ks.iter().map(NodeKey::node_id).collect();
        let v = members[1];
        let inv = vec![HeldShard {
            segment: SegmentId([3; 32]),
            index: 1,
            k: 2,
            m: 1,
            shard_bytes: 100,
        }];
        let cfg = small();
        let req = storage_request(v, members[0], 1, [5; 32], &inv, &cfg).unwrap();
        assert!(storage_request(v, members[0], 1, [5; 32], &[], &cfg).is_none());
        let a = answer(&ks[0], v, &req, &members, &Nothing).unwrap();
        let claim = Claim {
            processors: 1,
            cores_per_processor: 1,
            disk_reported: 0,
            disk_taken: 0,
        };
        let r = judge(&req, Some(&a.encode()), 1, &claim, &cfg);
        assert_eq!(r.outcome, Outcome::Failed(Failure::BadGroup));
        assert_eq!(attempts(ProofKind::Storage, &cfg), 3);
    }
}
