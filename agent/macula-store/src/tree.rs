//! The per-shard BLAKE3 tree with 16 KiB chunk groups (Bao-compatible root).
//!
//! A shard's root is exactly `blake3::hash(shard)`. The *outboard* kept beside a shard lists the
//! chaining values of its 16 KiB groups (32 bytes per 16 KiB, 0.2 %). A reader checks the outboard
//! once against the root (recomputing the BLAKE3 tree above the groups), then checks every group
//! it reads against its chaining value, so a read is verified group by group without hashing the
//! whole shard first. Shards of one group have an empty outboard.

use blake3::hazmat::{HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root};

use crate::header::GROUP_LOG2;

/// Bytes per chunk group.
pub const GROUP_LEN: usize = 1 << GROUP_LOG2;

/// Number of chunk groups of a shard of `len` bytes (at least one).
pub fn group_count(len: usize) -> usize {
    len.div_ceil(GROUP_LEN).max(1)
}

/// Length of the outboard of a shard of `len` bytes.
pub fn outboard_len(len: usize) -> usize {
    let g = group_count(len);
    if g == 1 { 0 } else { 32 * g }
}

fn group_cv(data: &[u8], group: usize) -> [u8; 32] {
    let start = group * GROUP_LEN;
    let end = (start + GROUP_LEN).min(data.len());
    blake3::Hasher::new()
        .set_input_offset(start as u64)
        .update(&data[start..end])
        .finalize_non_root()
}

/// Root and outboard of `data`.
pub fn build(data: &[u8]) -> ([u8; 32], Vec<u8>) {
    let g = group_count(data.len());
    if g == 1 {
        return (*blake3::hash(data).as_bytes(), Vec::new());
    }
    let mut outboard = Vec::with_capacity(32 * g);
    for i in 0..g {
        outboard.extend_from_slice(&group_cv(data, i));
    }
    let root = root_from_cvs(&outboard, data.len());
    debug_assert_eq!(&root, blake3::hash(data).as_bytes());
    (root, outboard)
}

/// Where the BLAKE3 tree splits the groups `[lo, hi)` of a shard of `len` bytes: the left subtree
/// is the largest power-of-two number of chunks strictly smaller than the subtree, which is a
/// whole number of groups.
fn split(lo: usize, hi: usize, len: usize) -> usize {
    let bytes = (hi * GROUP_LEN).min(len) - lo * GROUP_LEN;
    lo + blake3::hazmat::left_subtree_len(bytes as u64) as usize / GROUP_LEN
}

fn merge(l: &[u8; 32], r: &[u8; 32], root: bool) -> [u8; 32] {
    if root {
        *merge_subtrees_root(l, r, Mode::Hash).as_bytes()
    } else {
        merge_subtrees_non_root(l, r, Mode::Hash)
    }
}

fn cv_at(outboard: &[u8], i: usize) -> [u8; 32] {
    outboard[32 * i..32 * i + 32].try_into().expect("32 bytes")
}

/// The chaining value (or, with `root`, the root hash) of the subtree over groups `[lo, hi)`.
fn subtree(outboard: &[u8], lo: usize, hi: usize, len: usize, root: bool) -> [u8; 32] {
    if hi - lo == 1 {
        return cv_at(outboard, lo);
    }
    let mid = split(lo, hi, len);
    let l = subtree(outboard, lo, mid, len, false);
    let r = subtree(outboard, mid, hi, len, false);
    merge(&l, &r, root)
}

/// Recomputes the root from the group chaining values of a shard of `len` bytes (at least two
/// groups).
fn root_from_cvs(outboard: &[u8], len: usize) -> [u8; 32] {
    subtree(outboard, 0, group_count(len), len, true)
}

/// A Merkle proof for one group: the chaining values of the sibling subtrees on the path from the
/// root down to the group (top first), `ceil(log2(groups))` entries at most (4 for a 256 KiB
/// shard, 32 B each). Built by a holder from its outboard; lets anyone holding only the 32-byte
/// root check a single 16 KiB group (streaming reads, proofs of storage).
pub fn proof(outboard: &[u8], len: usize, group: usize) -> Vec<[u8; 32]> {
    let (mut lo, mut hi) = (0, group_count(len));
    let mut siblings = Vec::new();
    while hi - lo > 1 {
        let mid = split(lo, hi, len);
        if group < mid {
            siblings.push(subtree(outboard, mid, hi, len, false));
            hi = mid;
        } else {
            siblings.push(subtree(outboard, lo, mid, len, false));
            lo = mid;
        }
    }
    siblings
}

/// Checks group `group` (bytes `data`) of a shard of `len` bytes against the shard's root with a
/// [`proof`].
pub fn verify_proof(
    root: &[u8; 32],
    len: usize,
    group: usize,
    data: &[u8],
    proof: &[[u8; 32]],
) -> bool {
    let g = group_count(len);
    if group >= g || data.len() != ((group + 1) * GROUP_LEN).min(len) - group * GROUP_LEN {
        return false;
    }
    if g == 1 {
        return proof.is_empty() && blake3::hash(data).as_bytes() == root;
    }
    // Walk down to learn which side the group is on at each level.
    let (mut lo, mut hi) = (0, g);
    let mut left_sides = Vec::new();
    while hi - lo > 1 {
        let mid = split(lo, hi, len);
        left_sides.push(group < mid);
        if group < mid {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if left_sides.len() != proof.len() {
        return false;
    }
    let mut cv = blake3::Hasher::new()
        .set_input_offset((group * GROUP_LEN) as u64)
        .update(data)
        .finalize_non_root();
    for (level, (is_left, sibling)) in left_sides.iter().zip(proof).enumerate().rev() {
        let at_root = level == 0;
        cv = if *is_left {
            merge(&cv, sibling, at_root)
        } else {
            merge(sibling, &cv, at_root)
        };
    }
    &cv == root
}

/// Checks an outboard against the root of a shard of `len` bytes.
pub fn verify_outboard(root: &[u8; 32], len: usize, outboard: &[u8]) -> bool {
    if outboard.len() != outboard_len(len) {
        return false;
    }
    if outboard.is_empty() {
        // A one-group shard is checked as a whole by `verify_group`.
        return true;
    }
    &root_from_cvs(outboard, len) == root
}

/// Checks group `group` (its bytes in `data`) of a shard of `len` bytes against a verified
/// outboard (or, for one-group shards, against the root).
pub fn verify_group(
    root: &[u8; 32],
    len: usize,
    outboard: &[u8],
    group: usize,
    data: &[u8],
) -> bool {
    let g = group_count(len);
    if group >= g {
        return false;
    }
    let expect_len = ((group + 1) * GROUP_LEN).min(len) - group * GROUP_LEN;
    if data.len() != expect_len {
        return false;
    }
    if g == 1 {
        return blake3::hash(data).as_bytes() == root;
    }
    let cv = blake3::Hasher::new()
        .set_input_offset((group * GROUP_LEN) as u64)
        .update(data)
        .finalize_non_root();
    outboard[32 * group..32 * group + 32] == cv
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_blake3_hash_and_groups_verify() {
        for len in [
            0,
            1,
            1023,
            1024,
            GROUP_LEN,
            GROUP_LEN + 1,
            3 * GROUP_LEN,
            5 * GROUP_LEN + 77,
            262_144,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let (root, ob) = build(&data);
            assert_eq!(&root, blake3::hash(&data).as_bytes(), "len {len}");
            assert_eq!(ob.len(), outboard_len(len));
            assert!(verify_outboard(&root, len, &ob));
            for gi in 0..group_count(len) {
                let s = gi * GROUP_LEN;
                let e = (s + GROUP_LEN).min(len);
                assert!(verify_group(&root, len, &ob, gi, &data[s..e]));
                if e > s {
                    let mut bad = data[s..e].to_vec();
                    bad[0] ^= 1;
                    assert!(!verify_group(&root, len, &ob, gi, &bad));
                }
            }
            for gi in 0..group_count(len) {
                let s = gi * GROUP_LEN;
                let e = (s + GROUP_LEN).min(len);
                let p = proof(&ob, len, gi);
                assert!(
                    p.len() <= usize::BITS as usize - group_count(len).leading_zeros() as usize
                );
                assert!(
                    verify_proof(&root, len, gi, &data[s..e], &p),
                    "len {len} group {gi}"
                );
                if e > s {
                    let mut bad = data[s..e].to_vec();
                    bad[e - s - 1] ^= 4;
                    assert!(!verify_proof(&root, len, gi, &bad, &p));
                }
                if let Some(first) = p.first() {
                    let mut wrong = p.clone();
                    wrong[0] = [first[0] ^ 1; 32];
                    assert!(!verify_proof(&root, len, gi, &data[s..e], &wrong));
                }
                if gi > 0 {
                    assert!(
                        !verify_proof(&root, len, gi - 1, &data[s..e], &p)
                            || data[s..e] == data[s - GROUP_LEN..s]
                    );
                }
            }
            if !ob.is_empty() {
                let mut bad = ob.clone();
                bad[5] ^= 0x80;
                assert!(!verify_outboard(&root, len, &bad));
            }
        }
    }
}
