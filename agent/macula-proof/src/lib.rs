//! Macula resource monitor, proofs of capacity and storage, the realm ledger and quarantine
//! (`docs/proofs.md`).
//!
//! Everything here is sans-IO except [`resources::read_sample`] (a thin `/proc` + `statvfs`
//! reader): challenges, answers and their verification take bytes and times as arguments and
//! return results; the ledger and the quarantine tracker are state machines fed records. A
//! deterministic simulation of a realm with a cheating node lives in `tests/realm_sim.rs`.

pub mod book;
pub mod capacity;
pub mod config;
pub mod driver;
pub mod fuzzing;
pub mod ledger;
pub mod quarantine;
pub mod resources;
pub mod storage;

use macula_core::domains::Domain;
use macula_core::{NodeId, NodeKey, wire};
use macula_mesh::sig::Sig;
use serde::{Deserialize, Serialize};

/// Largest encoded answer accepted (a storage answer carries up to
/// [`storage::MAX_PICKS`] groups of 16 KiB).
pub const MAX_ANSWER: usize = 4 << 20;

/// Why a signed answer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("undecodable proof answer: {0}")]
    Decode(String),
    #[error("proof answer is signed by {have}, expected the prover {want}")]
    WrongProver { have: String, want: String },
    #[error("proof answer signature does not verify: forged or corrupted")]
    BadSignature,
}

/// A prover's answer as sent: the encoded answer (`wire(capacity::Answer)` or
/// `wire(storage::Answer)`) signed by the prover in the domain `macula/v1/proof-answer` over
/// `kind ‖ BLAKE3(body)`, so the ledger can keep the 32-byte digest and the signature as
/// evidence without the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAnswer {
    pub prover: NodeId,
    pub kind: ProofKind,
    #[serde(with = "macula_core::wire::bytes")]
    pub body: Vec<u8>,
    pub sig: Sig,
}

/// The two kinds of proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ProofKind {
    Capacity,
    Storage,
}

/// The message the prover signs for an answer with body digest `digest`.
pub fn answer_message(kind: ProofKind, digest: &[u8; 32]) -> Vec<u8> {
    let mut m = vec![kind as u8];
    m.extend_from_slice(digest);
    m
}

impl SignedAnswer {
    pub fn sign(key: &NodeKey, kind: ProofKind, body: Vec<u8>) -> Self {
        let digest = *blake3::hash(&body).as_bytes();
        let sig = Sig(key
            .sign(Domain::ProofAnswer, &answer_message(kind, &digest))
            .to_bytes());
        Self {
            prover: key.node_id(),
            kind,
            body,
            sig,
        }
    }

    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&self.body).as_bytes()
    }

    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Decodes an answer and checks it is signed by `prover`.
    pub fn decode_verified(bytes: &[u8], prover: &NodeId) -> Result<Self, AnswerError> {
        let a: SignedAnswer = wire::decode_with_limit(bytes, MAX_ANSWER)
            .map_err(|e| AnswerError::Decode(e.to_string()))?;
        if &a.prover != prover {
            return Err(AnswerError::WrongProver {
                have: a.prover.to_string(),
                want: prover.to_string(),
            });
        }
        verify_answer_sig(prover, a.kind, &a.digest(), &a.sig)?;
        Ok(a)
    }
}

/// Checks a prover's signature over an answer digest (also used on ledger evidence).
pub fn verify_answer_sig(
    prover: &NodeId,
    kind: ProofKind,
    digest: &[u8; 32],
    sig: &Sig,
) -> Result<(), AnswerError> {
    prover
        .verify(
            Domain::ProofAnswer,
            &answer_message(kind, digest),
            &ed25519_dalek::Signature::from_bytes(&sig.0),
        )
        .map_err(|_| AnswerError::BadSignature)
}

/// The verifier of `prover` in `epoch`: the member (other than the prover) with the lowest
/// `BLAKE3-derive_key("macula/v1/proof-verifier", prover ‖ epoch ‖ member)`. Every node computes
/// the same from the same membership, like the repair leader; a new epoch moves the duty, so a
/// prover cannot keep a colluding verifier.
pub fn verifier_for(prover: &NodeId, epoch: u64, members: &[NodeId]) -> Option<NodeId> {
    members
        .iter()
        .filter(|m| *m != prover)
        .min_by_key(|m| {
            blake3::Hasher::new_derive_key("macula/v1/proof-verifier")
                .update(prover.as_bytes())
                .update(&epoch.to_le_bytes())
                .update(m.as_bytes())
                .finalize()
                .as_bytes()
                .to_owned()
        })
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_signed_by_their_prover() {
        let k = NodeKey::from_seed([3; 32]);
        let other = NodeKey::from_seed([4; 32]).node_id();
        let a = SignedAnswer::sign(&k, ProofKind::Capacity, vec![1, 2, 3]);
        let bytes = a.encode();
        assert_eq!(
            SignedAnswer::decode_verified(&bytes, &k.node_id()).unwrap(),
            a
        );
        assert!(matches!(
            SignedAnswer::decode_verified(&bytes, &other),
            Err(AnswerError::WrongProver { .. })
        ));
        let mut tampered = a.clone();
        tampered.body[0] ^= 1;
        assert_eq!(
            SignedAnswer::decode_verified(&tampered.encode(), &k.node_id()),
            Err(AnswerError::BadSignature)
        );
        // The kind is signed too: a capacity answer cannot pass as a storage answer.
        let mut relabelled = a;
        relabelled.kind = ProofKind::Storage;
        assert_eq!(
            SignedAnswer::decode_verified(&relabelled.encode(), &k.node_id()),
            Err(AnswerError::BadSignature)
        );
        assert!(SignedAnswer::decode_verified(&bytes[..bytes.len() - 1], &k.node_id()).is_err());
    }

    #[test]
    fn verifier_is_deterministic_never_the_prover_and_rotates() {
        let members: Vec<NodeId> = (0..10u8)
            .map(|i| NodeKey::from_seed([i; 32]).node_id())
            .collect();
        let p = members[0];
        let mut seen = std::collections::BTreeSet::new();
        for epoch in 0..50 {
            let v = verifier_for(&p, epoch, &members).unwrap();
            assert_ne!(v, p);
            let mut shuffled = members.clone();
            shuffled.reverse();
            assert_eq!(verifier_for(&p, epoch, &shuffled), Some(v));
            seen.insert(v);
        }
        assert!(seen.len() >= 6, "{} distinct verifiers", seen.len());
        assert_eq!(verifier_for(&p, 1, &[p]), None);
    }
}
