//! Shard placement: deterministic from membership, free capacity and failure-domain labels.
//!
//! Capacity-weighted rendezvous hashing (highest random weight, logarithmic method): every node
//! gets a score `weight / −ln(u)` for a segment, where `u ∈ (0, 1)` comes from
//! `BLAKE3-derive_key("macula/v1/placement", segment ID ‖ node ID)` and `weight` is the node's
//! announced capacity (not its live free space, which would move placements as nodes fill). Nodes are taken greedily by fewest shards of this segment already in the same site,
//! then in the same power domain, then by score; a node never gets two shards of one segment, and a
//! node without room for one shard is skipped. Every node computing the placement from the same
//! membership view gets the same answer, and a membership change moves only the shards of the
//! nodes that joined or left (the rendezvous property). Pure function: no I/O.

use std::collections::BTreeMap;

use macula_core::NodeId;

use crate::header::SegmentId;

/// What placement knows about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub id: NodeId,
    /// Capacity the node announces for storage (its quota), in bytes: the placement weight. It
    /// changes only when the operator changes it, so placements stay put as nodes fill up.
    pub capacity_bytes: u64,
    /// Free space the node reports, in bytes: a node without room for a shard is skipped.
    pub free_bytes: u64,
    /// Failure-domain labels (e.g. `site = "home"`, `power = "ups-1"`).
    pub site: String,
    pub power: String,
}

/// Why no placement exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "not enough nodes with room for a {shard_bytes}-byte shard: have {have}, need {need} (one shard per node); add nodes or free space"
    )]
    NotEnoughNodes {
        have: usize,
        need: usize,
        shard_bytes: u64,
    },
}

/// `blake3::derive_key` context for placement scores.
pub const PLACEMENT_CONTEXT: &str = "macula/v1/placement";

/// The rendezvous score of `node` for `segment` with the node's capacity as weight.
pub fn score(segment: &SegmentId, node: &NodeInfo) -> f64 {
    let mut h = blake3::Hasher::new_derive_key(PLACEMENT_CONTEXT);
    h.update(&segment.0);
    h.update(node.id.as_bytes());
    let x = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
    // u in (0, 1): 53 random bits, never 0.
    let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    // Weight in MiB so that tiny differences in announced bytes do not matter.
    let weight = (node.capacity_bytes >> 20).max(1) as f64;
    weight / -u.ln()
}

/// Chooses `n` distinct nodes for the shards of `segment`, excluding nodes in `exclude` (e.g.
/// nodes that already hold a shard of it). Result order = shard index order.
pub fn place(
    segment: &SegmentId,
    n: usize,
    shard_bytes: u64,
    nodes: &[NodeInfo],
    exclude: &[NodeId],
) -> Result<Vec<NodeId>, PlacementError> {
    place_with_domains(segment, n, shard_bytes, nodes, exclude, &[])
}

/// Like [`place`], counting `occupied` (nodes already holding shards of this segment) toward the
/// failure-domain spread without choosing them again.
pub fn place_with_domains(
    segment: &SegmentId,
    n: usize,
    shard_bytes: u64,
    nodes: &[NodeInfo],
    exclude: &[NodeId],
    occupied: &[NodeInfo],
) -> Result<Vec<NodeId>, PlacementError> {
    let mut candidates: Vec<(f64, &NodeInfo)> = nodes
        .iter()
        .filter(|nd| {
            nd.free_bytes >= shard_bytes
                && !exclude.contains(&nd.id)
                && !occupied.iter().any(|o| o.id == nd.id)
        })
        .map(|nd| (score(segment, nd), nd))
        .collect();
    // Highest score first; ties by node ID so the order is total.
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
    // Dedupe in case membership lists a node twice.
    candidates.dedup_by(|a, b| a.1.id == b.1.id);
    if candidates.len() < n {
        return Err(PlacementError::NotEnoughNodes {
            have: candidates.len(),
            need: n,
            shard_bytes,
        });
    }
    let mut sites: BTreeMap<&str, usize> = BTreeMap::new();
    let mut powers: BTreeMap<&str, usize> = BTreeMap::new();
    for o in occupied {
        *sites.entry(o.site.as_str()).or_default() += 1;
        *powers.entry(o.power.as_str()).or_default() += 1;
    }
    let mut chosen = Vec::with_capacity(n);
    for _ in 0..n {
        let (pos, _) = candidates
            .iter()
            .enumerate()
            .min_by_key(|(pos, (_, nd))| {
                (
                    sites.get(nd.site.as_str()).copied().unwrap_or(0),
                    powers.get(nd.power.as_str()).copied().unwrap_or(0),
                    *pos,
                )
            })
            .expect("enough candidates");
        let (_, nd) = candidates.remove(pos);
        *sites.entry(nd.site.as_str()).or_default() += 1;
        *powers.entry(nd.power.as_str()).or_default() += 1;
        chosen.push(nd.id);
    }
    Ok(chosen)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use macula_core::NodeKey;

    use super::*;

    fn node(i: u8, free_gib: u64, site: &str, power: &str) -> NodeInfo {
        NodeInfo {
            id: NodeKey::from_seed([i; 32]).node_id(),
            capacity_bytes: free_gib << 30,
            free_bytes: free_gib << 30,
            site: site.into(),
            power: power.into(),
        }
    }

    fn seg(i: u32) -> SegmentId {
        SegmentId(blake3::hash(&i.to_le_bytes()).into())
    }

    #[test]
    fn distinct_nodes_spread_over_sites_and_deterministic() {
        let nodes: Vec<NodeInfo> = (0..9)
            .map(|i| {
                node(
                    i,
                    100,
                    ["a", "b", "c"][usize::from(i % 3)],
                    ["p1", "p2"][usize::from(i % 2)],
                )
            })
            .collect();
        for s in 0..200 {
            let p = place(&seg(s), 6, 1 << 20, &nodes, &[]).unwrap();
            assert_eq!(p.iter().collect::<HashSet<_>>().len(), 6);
            let mut per_site = BTreeMap::new();
            for id in &p {
                let n = nodes.iter().find(|n| n.id == *id).unwrap();
                *per_site.entry(n.site.clone()).or_insert(0) += 1;
            }
            assert!(
                per_site.values().all(|&c| c == 2),
                "6 shards over 3 sites: 2 each, got {per_site:?}"
            );
            // Same input, same answer, regardless of membership order.
            let mut rev = nodes.clone();
            rev.reverse();
            assert_eq!(place(&seg(s), 6, 1 << 20, &rev, &[]).unwrap(), p);
        }
        assert_eq!(
            place(&seg(0), 10, 1, &nodes, &[]),
            Err(PlacementError::NotEnoughNodes {
                have: 9,
                need: 10,
                shard_bytes: 1
            })
        );
    }

    #[test]
    fn capacity_weights_and_full_nodes() {
        // One node with 4x the capacity gets picked first about 4x as often (one shard each).
        let mut nodes: Vec<NodeInfo> = (0..5).map(|i| node(i, 100, "a", "p")).collect();
        nodes.push(node(9, 400, "a", "p"));
        let big = nodes[5].id;
        let firsts = (0..4000)
            .filter(|&s| place(&seg(s), 1, 1, &nodes, &[]).unwrap()[0] == big)
            .count();
        // Expected share 400 / 900 = 0.44.
        assert!(
            (1500..2000).contains(&firsts),
            "big node first in {firsts}/4000"
        );
        // Nodes filling up do not move placements (the weight is the announced capacity).
        let before: Vec<_> = (0..100)
            .map(|s| place(&seg(s), 3, 1 << 20, &nodes, &[]).unwrap())
            .collect();
        let mut fuller = nodes.clone();
        for (i, n) in fuller.iter_mut().enumerate() {
            n.free_bytes /= 2 + i as u64;
        }
        let after: Vec<_> = (0..100)
            .map(|s| place(&seg(s), 3, 1 << 20, &fuller, &[]).unwrap())
            .collect();
        assert_eq!(before, after);
        // A node without room for the shard is never chosen.
        nodes[5].free_bytes = 10;
        assert!((0..100).all(|s| {
            !place(&seg(s), 5, 1 << 20, &nodes, &[])
                .unwrap()
                .contains(&big)
        }));
    }

    #[test]
    fn membership_change_moves_only_affected_shards() {
        let nodes: Vec<NodeInfo> = (0..10).map(|i| node(i, 100, "a", "p")).collect();
        let gone = nodes[3].id;
        let fewer: Vec<NodeInfo> = nodes.iter().filter(|n| n.id != gone).cloned().collect();
        for s in 0..200 {
            let before = place(&seg(s), 4, 1, &nodes, &[]).unwrap();
            let after = place(&seg(s), 4, 1, &fewer, &[]).unwrap();
            let kept: Vec<_> = before.iter().filter(|id| **id != gone).collect();
            // Survivors stay chosen (in the same relative order).
            let after_kept: Vec<_> = after.iter().filter(|id| kept.contains(id)).collect();
            assert_eq!(after_kept, kept);
        }
    }
}
