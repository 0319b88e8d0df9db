//! Proof of capacity (docs/proofs.md §3): the whitepaper's `C = P/Q·(√t·o) + [sR − sT]`, with `t`
//! read so that answering slowly never raises `C`.
//!
//! The verifier sends a [`Challenge`] carrying a fresh nonce. The prover runs a sequential BLAKE3
//! hash chain of `steps` links seeded from the whole challenge (so it cannot start before the
//! nonce is known, nor reuse an answer) and answers with `segments` checkpoints. The verifier
//! measures `t_ms` itself, from sending the challenge to receiving the answer, and recomputes
//! `spot` segments chosen from the answer's own hash (so the prover cannot know which ones before
//! committing to all of them): verification costs `spot/segments` of the work.
//!
//! Reading of `t`: the capacity term uses the rate `steps / t_ms`, i.e. `√t` of the formula is
//! `√(steps / t_ms)`. A slower answer means a larger `t_ms` and so a smaller rate; past the
//! deadline the term is 0 and the proof fails. The literal reading (`√t_ms`) would pay a node
//! for being slow.

use macula_core::{NodeId, wire};
use serde::{Deserialize, Serialize};

/// What the verifier sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub verifier: NodeId,
    pub prover: NodeId,
    pub epoch: u64,
    pub nonce: [u8; 32],
    /// Links of the hash chain.
    pub steps: u32,
    /// Checkpoints in the answer (`steps` is a multiple of it).
    pub segments: u16,
    /// Milliseconds after sending within which the answer must arrive.
    pub deadline_ms: u32,
}

/// Most links a challenge may ask for (a prover refuses more).
pub const MAX_STEPS: u32 = 1 << 26;
/// Most checkpoints in an answer.
pub const MAX_SEGMENTS: u16 = 1024;

/// Why a capacity answer is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    #[error(
        "challenge asks for {steps} steps in {segments} segments: steps must be a non-zero multiple of segments, at most {MAX_STEPS} steps and {MAX_SEGMENTS} segments"
    )]
    BadShape { steps: u32, segments: u16 },
    #[error("answer is for another challenge")]
    WrongChallenge,
    #[error("answer has {have} checkpoints, the challenge asks for {want}")]
    Checkpoints { have: usize, want: usize },
    #[error("checkpoint {0} does not follow from the previous one: the work was not done")]
    BadWork(usize),
}

impl Challenge {
    fn check_shape(&self) -> Result<(), CapacityError> {
        if self.segments == 0
            || self.steps == 0
            || self.steps > MAX_STEPS
            || self.segments > MAX_SEGMENTS
            || self.steps % u32::from(self.segments) != 0
        {
            return Err(CapacityError::BadShape {
                steps: self.steps,
                segments: self.segments,
            });
        }
        Ok(())
    }

    /// The challenge's digest (binds an answer to it).
    pub fn digest(&self) -> [u8; 32] {
        blake3::derive_key("macula/v1/capacity-challenge", &wire::encode(self))
    }

    /// The chain's first value and the key of every link.
    fn start(&self) -> [u8; 32] {
        blake3::derive_key("macula/v1/capacity-work", &wire::encode(self))
    }
}

/// What the prover returns (signed as a [`crate::SignedAnswer`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    /// [`Challenge::digest`] of the challenge answered.
    pub challenge: [u8; 32],
    /// The chain value after each segment; the last is the chain's end.
    pub checkpoints: Vec<[u8; 32]>,
}

/// `links` links of the chain: `x ← BLAKE3-keyed(key, x)`. Keying every link with the
/// challenge's start value means no stretch of another challenge's chain fits this one.
fn run(key: &[u8; 32], mut x: [u8; 32], links: u32) -> [u8; 32] {
    for _ in 0..links {
        x = *blake3::keyed_hash(key, &x).as_bytes();
    }
    x
}

/// The prover's work: runs the chain and returns the answer.
pub fn prove(ch: &Challenge) -> Result<Answer, CapacityError> {
    ch.check_shape()?;
    let per = ch.steps / u32::from(ch.segments);
    let key = ch.start();
    let mut x = key;
    let mut checkpoints = Vec::with_capacity(usize::from(ch.segments));
    for _ in 0..ch.segments {
        x = run(&key, x, per);
        checkpoints.push(x);
    }
    Ok(Answer {
        challenge: ch.digest(),
        checkpoints,
    })
}

/// Which segments the verifier recomputes: `spot` distinct indices derived from the answer.
pub fn spot_segments(ch: &Challenge, answer: &Answer, spot: u16) -> Vec<usize> {
    let mut h = blake3::Hasher::new_derive_key("macula/v1/capacity-spot");
    h.update(&ch.digest());
    for c in &answer.checkpoints {
        h.update(c);
    }
    let mut xof = h.finalize_xof();
    let n = usize::from(ch.segments);
    let want = usize::from(spot).min(n);
    let mut out: Vec<usize> = Vec::with_capacity(want);
    while out.len() < want {
        let mut b = [0u8; 8];
        xof.fill(&mut b);
        let i = (u64::from_le_bytes(b) % n as u64) as usize;
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out.sort_unstable();
    out
}

/// Checks an answer: bound to this challenge, the right shape, and `spot` recomputed segments.
pub fn verify(ch: &Challenge, answer: &Answer, spot: u16) -> Result<(), CapacityError> {
    ch.check_shape()?;
    if answer.challenge != ch.digest() {
        return Err(CapacityError::WrongChallenge);
    }
    if answer.checkpoints.len() != usize::from(ch.segments) {
        return Err(CapacityError::Checkpoints {
            have: answer.checkpoints.len(),
            want: usize::from(ch.segments),
        });
    }
    let per = ch.steps / u32::from(ch.segments);
    let key = ch.start();
    for i in spot_segments(ch, answer, spot) {
        let from = if i == 0 {
            key
        } else {
            answer.checkpoints[i - 1]
        };
        if run(&key, from, per) != answer.checkpoints[i] {
            return Err(CapacityError::BadWork(i));
        }
    }
    Ok(())
}

/// The constants of the formula (from `[proofs]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FormulaParams {
    /// `o`: the share of its processing the node offers, in thousandths.
    pub offer_permille: u32,
    /// Bytes per unit of the disk term (1 GiB by default).
    pub disk_unit_bytes: u64,
}

/// What the verifier knows about the prover when it scores an answer: P, Q, sR, sT from the
/// prover's signed resource report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    pub processors: u32,
    pub cores_per_processor: u32,
    pub disk_reported: u64,
    pub disk_taken: u64,
}

/// `C` for a challenge of `steps` links answered after `t_ms` measured by the verifier, or
/// `None` when the answer came after the deadline (the proof fails; nothing is earned). The
/// processing term is `P/Q · √(steps / t_ms) · o` with `t_ms ≥ 1`; the disk term is
/// `max(0, sR − sT)` in disk units.
pub fn capacity(
    claim: &Claim,
    steps: u32,
    t_ms: u64,
    deadline_ms: u32,
    p: &FormulaParams,
) -> Option<f64> {
    if t_ms > u64::from(deadline_ms) {
        return None;
    }
    let pq = f64::from(claim.processors) / f64::from(claim.cores_per_processor.max(1));
    let rate = f64::from(steps) / t_ms.max(1) as f64;
    let o = f64::from(p.offer_permille.min(1000)) / 1000.0;
    let disk = claim.disk_reported.saturating_sub(claim.disk_taken) as f64
        / p.disk_unit_bytes.max(1) as f64;
    Some(pq * rate.sqrt() * o + disk)
}

/// `C` in thousandths of a unit, the form recorded in the ledger (0 when late).
pub fn capacity_milli(
    claim: &Claim,
    steps: u32,
    t_ms: u64,
    deadline_ms: u32,
    p: &FormulaParams,
) -> u64 {
    capacity(claim, steps, t_ms, deadline_ms, p).map_or(0, |c| (c * 1000.0).floor() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use macula_core::NodeKey;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    fn challenge(nonce: u8) -> Challenge {
        Challenge {
            verifier: NodeKey::from_seed([1; 32]).node_id(),
            prover: NodeKey::from_seed([2; 32]).node_id(),
            epoch: 7,
            nonce: [nonce; 32],
            steps: 4096,
            segments: 64,
            deadline_ms: 5000,
        }
    }

    #[test]
    fn honest_answer_verifies_and_is_bound_to_its_nonce() {
        let ch = challenge(1);
        let a = prove(&ch).unwrap();
        assert_eq!(a.checkpoints.len(), 64);
        // Every segment, not only the spot-checked ones.
        verify(&ch, &a, 64).unwrap();
        let other = challenge(2);
        assert_eq!(verify(&other, &a, 8), Err(CapacityError::WrongChallenge));
        // An answer for another nonce, relabelled, fails on the work itself.
        let mut relabelled = prove(&other).unwrap();
        relabelled.challenge = ch.digest();
        assert!(matches!(
            verify(&ch, &relabelled, 1),
            Err(CapacityError::BadWork(_))
        ));
        assert_ne!(prove(&other).unwrap().checkpoints, a.checkpoints);
    }

    #[test]
    fn skipped_work_is_caught_when_spot_checked() {
        let ch = challenge(3);
        let good = prove(&ch).unwrap();
        // A prover that fakes one segment is caught when it is checked: with every segment
        // checked always; with 8 of 64 at the rate the spot check predicts.
        for bad in [0usize, 17, 63] {
            let mut a = good.clone();
            a.checkpoints[bad] = [9; 32];
            assert!(matches!(
                verify(&ch, &a, 64),
                Err(CapacityError::BadWork(_))
            ));
        }
        let mut caught = 0;
        for bad in 0..64 {
            let mut a = good.clone();
            a.checkpoints[bad] = [bad as u8; 32];
            caught += usize::from(verify(&ch, &a, 8).is_err());
        }
        assert!(caught >= 4, "caught {caught} of 64 single-segment fakes");
        let mut short = good.clone();
        short.checkpoints.pop();
        assert_eq!(
            verify(&ch, &short, 8),
            Err(CapacityError::Checkpoints { have: 63, want: 64 })
        );
        let mut odd = ch.clone();
        odd.steps = 4097;
        assert!(matches!(prove(&odd), Err(CapacityError::BadShape { .. })));
    }

    const PARAMS: FormulaParams = FormulaParams {
        offer_permille: 500,
        disk_unit_bytes: 1 << 30,
    };

    fn claim() -> Claim {
        Claim {
            processors: 4,
            cores_per_processor: 4,
            disk_reported: 100 << 30,
            disk_taken: 20 << 30,
        }
    }

    /// docs/proofs.md §3.4 worked example and vectors.
    #[test]
    fn worked_example_and_vectors() {
        // 1 048 576 links in 400 ms: rate 2621.44, √ = 51.2; P/Q = 1; o = 0.5 → 25.6; disk 80.
        let c = capacity(&claim(), 1 << 20, 400, 10_000, &PARAMS).unwrap();
        assert!((c - 105.6).abs() < 1e-9, "{c}");
        assert_eq!(
            capacity_milli(&claim(), 1 << 20, 400, 10_000, &PARAMS),
            105_600
        );
        // Twice as slow: √ shrinks by √2.
        assert_eq!(
            capacity_milli(&claim(), 1 << 20, 800, 10_000, &PARAMS),
            98_101
        );
        // Late: nothing.
        assert_eq!(capacity(&claim(), 1 << 20, 10_001, 10_000, &PARAMS), None);
        // 2 sockets × 2 threads per core: P = 16, Q = 4.
        let big = Claim {
            processors: 16,
            cores_per_processor: 4,
            disk_reported: 0,
            disk_taken: 0,
        };
        assert_eq!(capacity_milli(&big, 1 << 20, 100, 10_000, &PARAMS), 204_800);
        // More taken than reported counts as no free space, never negative.
        let full = Claim {
            disk_taken: 200 << 30,
            ..claim()
        };
        assert_eq!(capacity_milli(&full, 1 << 20, 400, 10_000, &PARAMS), 25_600);
        // Chain vector: a fixed challenge's last checkpoint.
        let ch = Challenge {
            verifier: NodeKey::from_seed([1; 32]).node_id(),
            prover: NodeKey::from_seed([2; 32]).node_id(),
            epoch: 1,
            nonce: [0; 32],
            steps: 1024,
            segments: 4,
            deadline_ms: 1000,
        };
        let a = prove(&ch).unwrap();
        assert_eq!(
            macula_store::header::hex(&a.checkpoints[3]),
            CHAIN_VECTOR,
            "docs/proofs.md §3.5"
        );
    }

    const CHAIN_VECTOR: &str = "f87c5fd68fd427d1c14e2b10294d9f25a2ecc8cd18aecb023260c4712b981145";

    /// The property that motivates the reading of `t`: for any claim and work, a slower answer
    /// never scores more; past the deadline it scores nothing.
    #[test]
    fn slower_never_scores_more() {
        let mut rng = StdRng::seed_from_u64(11);
        for _ in 0..20_000 {
            let claim = Claim {
                processors: rng.random_range(1..=256),
                cores_per_processor: rng.random_range(0..=64),
                disk_reported: rng.random(),
                disk_taken: rng.random(),
            };
            let p = FormulaParams {
                offer_permille: rng.random_range(0..=1200),
                disk_unit_bytes: rng.random_range(0..=1u64 << 40),
            };
            let steps = rng.random_range(1..=MAX_STEPS);
            let deadline = rng.random_range(1..=120_000);
            let t1 = rng.random_range(0..=200_000u64);
            let t2 = t1 + rng.random_range(0..=200_000u64);
            let c1 = capacity_milli(&claim, steps, t1, deadline, &p);
            let c2 = capacity_milli(&claim, steps, t2, deadline, &p);
            assert!(c2 <= c1, "t {t1} → {c1}, slower t {t2} → {c2}");
            if t2 > u64::from(deadline) {
                assert_eq!(c2, 0);
            }
        }
        // And over a sweep of t for the worked example: strictly decreasing until the deadline.
        let mut last = u64::MAX;
        for t in 1..=10_000 {
            let c = capacity_milli(&claim(), 1 << 20, t, 10_000, &PARAMS);
            assert!(c <= last);
            last = c;
        }
    }
}
