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

/// Recomputes the root from the group chaining values of a shard of `len` bytes (at least two
/// groups).
fn root_from_cvs(outboard: &[u8], len: usize) -> [u8; 32] {
    let cv = |i: usize| -> [u8; 32] { outboard[32 * i..32 * i + 32].try_into().expect("32 bytes") };
    // Merge a subtree covering groups [lo, hi) whose bytes are [lo*G, min(hi*G, len)).
    fn merge(
        cv: &dyn Fn(usize) -> [u8; 32],
        lo: usize,
        hi: usize,
        len: usize,
        root: bool,
    ) -> [u8; 32] {
        if hi - lo == 1 {
            return cv(lo);
        }
        let bytes = (hi * GROUP_LEN).min(len) - lo * GROUP_LEN;
        let left_groups = (blake3::hazmat::left_subtree_len(bytes as u64) as usize) / GROUP_LEN;
        let l = merge(cv, lo, lo + left_groups, len, false);
        let r = merge(cv, lo + left_groups, hi, len, false);
        if root {
            *merge_subtrees_root(&l, &r, Mode::Hash).as_bytes()
        } else {
            merge_subtrees_non_root(&l, &r, Mode::Hash)
        }
    }
    merge(&cv, 0, group_count(len), len, true)
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
            if !ob.is_empty() {
                let mut bad = ob.clone();
                bad[5] ^= 0x80;
                assert!(!verify_outboard(&root, len, &bad));
            }
        }
    }
}
