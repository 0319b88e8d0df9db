//! Proof of storage (docs/proofs.md §4): each epoch a node is challenged for random shards from
//! its own inventory and a random 16 KiB group of each, drawn from the verifier's fresh nonce. It
//! answers with each shard's owner-signed header, the group's bytes and the group's Merkle proof
//! (`macula_store::tree::proof`); anyone can check an item from the answer alone: the header's
//! owner signature, the header hashing to the challenged segment ID, the index, and the group
//! against the shard's root listed in the header.

use macula_core::{NodeId, wire};
use macula_store::header::{SegmentId, ShardHeader};
use macula_store::store::LocalStore;
use macula_store::tree;
use serde::{Deserialize, Serialize};

/// Most picks in one challenge.
pub const MAX_PICKS: usize = 128;

/// One challenged group: shard `index` of `segment`, group `selector mod groups(shard)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pick {
    pub segment: [u8; 32],
    pub index: u16,
    pub selector: u32,
}

/// What the verifier sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub verifier: NodeId,
    pub prover: NodeId,
    pub epoch: u64,
    pub nonce: [u8; 32],
    pub picks: Vec<Pick>,
    pub deadline_ms: u32,
}

impl Challenge {
    pub fn digest(&self) -> [u8; 32] {
        blake3::derive_key("macula/v1/storage-challenge", &wire::encode(self))
    }
}

/// Draws `shards` distinct shards of `inventory` (the prover's published list, any order) and
/// `groups` selectors for each from `nonce`; deterministic, so anyone can check that a challenge
/// was drawn honestly from its nonce. At most [`MAX_PICKS`] picks.
pub fn draw(
    nonce: &[u8; 32],
    inventory: &[(SegmentId, u16)],
    shards: usize,
    groups: usize,
) -> Vec<Pick> {
    let mut inv: Vec<(SegmentId, u16)> = inventory.to_vec();
    inv.sort();
    inv.dedup();
    let mut xof = blake3::Hasher::new_derive_key("macula/v1/storage-draw")
        .update(nonce)
        .finalize_xof();
    let mut next = || {
        let mut b = [0u8; 8];
        xof.fill(&mut b);
        u64::from_le_bytes(b)
    };
    let groups = groups.max(1);
    let want = shards.min(inv.len()).min(MAX_PICKS / groups);
    // Partial Fisher–Yates over the sorted list.
    for i in 0..want {
        let j = i + (next() % (inv.len() - i) as u64) as usize;
        inv.swap(i, j);
    }
    let mut picks = Vec::with_capacity(want * groups);
    for (seg, index) in &inv[..want] {
        for _ in 0..groups {
            picks.push(Pick {
                segment: seg.0,
                index: *index,
                selector: next() as u32,
            });
        }
    }
    picks
}

/// One answered pick.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// The shard's encoded header (`ShardHeader::encode`).
    #[serde(with = "macula_core::wire::bytes")]
    pub header: Vec<u8>,
    #[serde(with = "macula_core::wire::bytes")]
    pub data: Vec<u8>,
    /// Sibling chaining values from the root down (`tree::proof`).
    pub proof: Vec<[u8; 32]>,
}

/// What the prover returns: one entry per pick, `None` where it cannot produce the group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub challenge: [u8; 32],
    pub items: Vec<Option<Item>>,
}

/// Where a prover reads challenged groups from.
pub trait ShardSource {
    /// The shard's encoded header, the group's bytes and its proof; `None` when not held or
    /// unreadable.
    fn item(&self, segment: &SegmentId, index: u16, selector: u32) -> Option<Item>;
}

/// The group a selector names in a shard of `shard_len` bytes.
pub fn group_of(selector: u32, shard_len: u32) -> usize {
    selector as usize % tree::group_count(shard_len as usize)
}

impl ShardSource for LocalStore {
    fn item(&self, segment: &SegmentId, index: u16, selector: u32) -> Option<Item> {
        let header = self.header(segment, index).ok()?;
        let group = group_of(selector, header.desc().shard_len);
        let (data, proof) = self.read_group_with_proof(segment, index, group).ok()?;
        Some(Item {
            header: header.encode(),
            data,
            proof,
        })
    }
}

/// The prover's side.
pub fn prove(ch: &Challenge, source: &impl ShardSource) -> Answer {
    Answer {
        challenge: ch.digest(),
        items: ch
            .picks
            .iter()
            .map(|p| source.item(&SegmentId(p.segment), p.index, p.selector))
            .collect(),
    }
}

/// Why one pick failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("no answer for this group")]
    Missing,
    #[error("header does not parse or its owner signature fails: {0}")]
    Header(String),
    #[error("header belongs to another segment or shard index")]
    WrongShard,
    #[error("group bytes do not match the shard's root")]
    BadGroup,
}

/// Why a whole answer is refused before looking at items.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    #[error("answer is for another challenge")]
    WrongChallenge,
    #[error("answer has {have} items, the challenge has {want} picks")]
    Items { have: usize, want: usize },
}

/// Checks an answer; returns the result per pick (a proof passes when all are `Ok`).
pub fn verify(ch: &Challenge, answer: &Answer) -> Result<Vec<Result<(), ItemError>>, StorageError> {
    if answer.challenge != ch.digest() {
        return Err(StorageError::WrongChallenge);
    }
    if answer.items.len() != ch.picks.len() {
        return Err(StorageError::Items {
            have: answer.items.len(),
            want: ch.picks.len(),
        });
    }
    Ok(ch
        .picks
        .iter()
        .zip(&answer.items)
        .map(|(p, item)| verify_item(p, item.as_ref()))
        .collect())
}

fn verify_item(p: &Pick, item: Option<&Item>) -> Result<(), ItemError> {
    let item = item.ok_or(ItemError::Missing)?;
    let (h, len) =
        ShardHeader::parse_verified(&item.header).map_err(|e| ItemError::Header(e.to_string()))?;
    if len != item.header.len() {
        return Err(ItemError::Header("trailing bytes after the header".into()));
    }
    if h.segment_id().0 != p.segment || h.index != p.index {
        return Err(ItemError::WrongShard);
    }
    let sl = h.desc().shard_len;
    let group = group_of(p.selector, sl);
    if !tree::verify_proof(&h.root(), sl as usize, group, &item.data, &item.proof) {
        return Err(ItemError::BadGroup);
    }
    Ok(())
}

/// Probability that `picks` distinct shards drawn from a node that lost a share `lost` of its
/// shards include at least one lost shard, over `epochs` independent epochs:
/// `1 − (1 − lost)^(picks·epochs)` (sampling with replacement; without replacement it is higher).
pub fn detection_probability(lost: f64, picks: usize, epochs: u32) -> f64 {
    1.0 - (1.0 - lost).powf(picks as f64 * f64::from(epochs))
}

/// Epochs needed to reach `target` detection probability (e.g. 0.99).
pub fn epochs_to_detect(lost: f64, picks: usize, target: f64) -> u32 {
    (1..=100_000)
        .find(|&e| detection_probability(lost, picks, e) >= target)
        .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use macula_core::NodeKey;
    use macula_store::codec::CodecId;
    use macula_store::crypto::{AeadId, ObjectKey};
    use macula_store::header::SegmentKind;
    use macula_store::segment::{SegmentParams, encode_segment};
    use std::collections::HashMap;

    /// An in-memory holder of whole shards.
    pub(crate) struct Mem(pub HashMap<(SegmentId, u16), macula_store::segment::Shard>);

    impl ShardSource for Mem {
        fn item(&self, segment: &SegmentId, index: u16, selector: u32) -> Option<Item> {
            let s = self.0.get(&(*segment, index))?;
            let sl = s.header.desc().shard_len;
            let g = group_of(selector, sl);
            let start = g * tree::GROUP_LEN;
            let end = (start + tree::GROUP_LEN).min(sl as usize);
            Some(Item {
                header: s.header.encode(),
                data: s.data[start..end].to_vec(),
                proof: tree::proof(&s.outboard, sl as usize, g),
            })
        }
    }

    fn shards(count: usize) -> Mem {
        let owner = NodeKey::from_seed([5; 32]);
        let p = SegmentParams {
            kind: SegmentKind::Data,
            codec: CodecId::RsGf16Leopard,
            aead: AeadId::ChaCha20Poly1305,
            k: 2,
            m: 1,
            segment_index: 0,
            segment_count: 1,
        };
        let mut m = HashMap::new();
        for i in 0..count {
            let plain: Vec<u8> = (0..100_000).map(|b| (b * 7 + i) as u8).collect();
            let seg = encode_segment(&plain, &p, &ObjectKey::generate(), &owner).unwrap();
            for j in 0..3 {
                let s = seg.shard(j);
                m.insert((s.header.segment_id(), s.header.index), s);
            }
        }
        Mem(m)
    }

    fn challenge(mem: &Mem, nonce: u8, n: usize) -> Challenge {
        let inv: Vec<(SegmentId, u16)> = mem.0.keys().copied().collect();
        Challenge {
            verifier: NodeKey::from_seed([1; 32]).node_id(),
            prover: NodeKey::from_seed([2; 32]).node_id(),
            epoch: 3,
            nonce: [nonce; 32],
            picks: draw(&[nonce; 32], &inv, n, 1),
            deadline_ms: 5000,
        }
    }

    #[test]
    fn honest_holder_passes_and_every_kind_of_cheat_fails() {
        let mem = shards(4);
        let ch = challenge(&mem, 1, 8);
        assert_eq!(ch.picks.len(), 8);
        let a = prove(&ch, &mem);
        assert!(verify(&ch, &a).unwrap().iter().all(|r| r.is_ok()));
        // Round trip through the wire encoding.
        let bytes = wire::encode(&a);
        assert_eq!(
            wire::decode_with_limit::<Answer>(&bytes, crate::MAX_ANSWER).unwrap(),
            a
        );

        // A dropped shard.
        let mut dropped = Mem(mem.0.clone());
        let p0 = ch.picks[0];
        dropped.0.remove(&(SegmentId(p0.segment), p0.index));
        let r = verify(&ch, &prove(&ch, &dropped)).unwrap();
        assert_eq!(r[0], Err(ItemError::Missing));
        // A flipped byte.
        let mut bad = a.clone();
        bad.items[1].as_mut().unwrap().data[10] ^= 1;
        assert_eq!(verify(&ch, &bad).unwrap()[1], Err(ItemError::BadGroup));
        // Another shard's (valid) group in place of the challenged one.
        let mut swapped = a.clone();
        swapped.items.swap(0, 1);
        let r = verify(&ch, &swapped).unwrap();
        assert!(r[0].is_err() && r[1].is_err());
        // The right shard but another group (unless the selector lands on the same one).
        let mut other_group = ch.clone();
        other_group.picks[2].selector = other_group.picks[2].selector.wrapping_add(1);
        let mut moved = a.clone();
        moved.challenge = other_group.digest();
        assert_eq!(
            verify(&other_group, &moved).unwrap()[2],
            Err(ItemError::BadGroup)
        );
        // A forged header.
        let mut forged = a.clone();
        let h = &mut forged.items[3].as_mut().unwrap().header;
        let n = h.len();
        h[n - 10] ^= 1;
        assert!(matches!(
            verify(&ch, &forged).unwrap()[3],
            Err(ItemError::Header(_))
        ));
        // A replay of this answer for a fresh nonce.
        let fresh = challenge(&mem, 2, 8);
        assert_eq!(verify(&fresh, &a), Err(StorageError::WrongChallenge));
        let mut short = a;
        short.items.pop();
        assert_eq!(
            verify(&ch, &short),
            Err(StorageError::Items { have: 7, want: 8 })
        );
    }

    /// The prover's real source: shards on disk in a `LocalStore`, read group by group.
    #[test]
    fn local_store_answers_and_loses_what_is_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path(), 1 << 30).unwrap();
        let mem = shards(3);
        for s in mem.0.values() {
            store.put(&s.to_bytes()).unwrap();
        }
        let ch = challenge(&mem, 4, 9);
        let from_disk = prove(&ch, &store);
        // The same bytes as from memory, and every item verifies.
        assert_eq!(from_disk, prove(&ch, &mem));
        assert!(verify(&ch, &from_disk).unwrap().iter().all(|r| r.is_ok()));
        // The shard the first pick names is deleted from disk: that pick fails, the rest pass.
        let p0 = ch.picks[0];
        let seg = SegmentId(p0.segment);
        // Store layout (docs/storage-format.md): shards/<hex[..2]>/<hex>.<index>.
        let hex = seg.to_hex();
        let path = store
            .root()
            .join("shards")
            .join(&hex[..2])
            .join(format!("{hex}.{}", p0.index));
        std::fs::remove_file(path).unwrap();
        let r = verify(&ch, &prove(&ch, &store)).unwrap();
        assert_eq!(r[0], Err(ItemError::Missing));
        assert!(r[1..].iter().all(|x| x.is_ok()));
    }

    #[test]
    fn draw_is_deterministic_distinct_and_spread() {
        let inv: Vec<(SegmentId, u16)> =
            (0..200u16).map(|i| (SegmentId([i as u8; 32]), i)).collect();
        let a = draw(&[1; 32], &inv, 44, 1);
        let mut rev = inv.clone();
        rev.reverse();
        assert_eq!(a, draw(&[1; 32], &rev, 44, 1));
        assert_ne!(a, draw(&[2; 32], &inv, 44, 1));
        let mut distinct: Vec<_> = a.iter().map(|p| (p.segment, p.index)).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 44);
        assert_eq!(draw(&[1; 32], &inv[..3], 44, 2).len(), 6);
        assert_eq!(draw(&[1; 32], &inv, 500, 1).len(), MAX_PICKS);
        // Every shard is drawn about equally often over many nonces.
        let mut hits = vec![0u32; 200];
        for n in 0..500u32 {
            let mut nonce = [0u8; 32];
            nonce[..4].copy_from_slice(&n.to_le_bytes());
            for p in draw(&nonce, &inv, 20, 1) {
                hits[p.index as usize] += 1;
            }
        }
        // Expected 50 each.
        assert!(hits.iter().all(|&h| (20..=90).contains(&h)), "{hits:?}");
    }

    #[test]
    fn detection_table() {
        // docs/proofs.md §4.3 with the default 16 picks per epoch.
        assert_eq!(epochs_to_detect(0.10, 16, 0.99), 3);
        assert_eq!(epochs_to_detect(0.01, 16, 0.99), 29);
        assert_eq!(epochs_to_detect(0.10, 44, 0.99), 1);
        assert!(detection_probability(0.1, 44, 1) > 0.99);
    }
}
