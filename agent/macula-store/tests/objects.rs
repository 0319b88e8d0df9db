//! Objects end to end over in-process stores (real directories, real shard files): put/get of
//! awkward sizes, holder losses, corruption detection and repair, planner-driven repair.

use std::sync::Arc;

use macula_core::{NodeId, NodeKey};
use macula_store::codec::CodecId;
use macula_store::crypto::AeadId;
use macula_store::header::SegmentId;
use macula_store::network::{Client, ClientError, InProcessNetwork, PutConfig};
use macula_store::placement::NodeInfo;
use macula_store::repair::RepairConfig;
use macula_store::store::LocalStore;

#[path = "common/planners.rs"]
mod planners;
use planners::Planners;

struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<NodeInfo>,
    client: Client<InProcessNetwork>,
}

impl Cluster {
    fn new(n: usize, cfg: PutConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let net = InProcessNetwork::default();
        let mut nodes = Vec::new();
        for i in 0..n {
            let id = NodeKey::from_seed([i as u8 + 100; 32]).node_id();
            let store = LocalStore::open(&dir.path().join(format!("node{i}")), 1 << 30).unwrap();
            net.add_node(id, Arc::new(store));
            nodes.push(NodeInfo {
                id,
                capacity_bytes: 1 << 30,
                free_bytes: 1 << 30,
                site: format!("s{}", i % 3),
                power: format!("p{}", i % 2),
            });
        }
        let client = Client::new(net, NodeKey::from_seed([1; 32]), cfg);
        Self {
            _dir: dir,
            nodes,
            client,
        }
    }

    fn net(&self) -> &InProcessNetwork {
        self.client.network()
    }

    /// Members with their current free space.
    fn members(&self) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .map(|n| NodeInfo {
                free_bytes: self.net().store(&n.id).unwrap().free(),
                ..n.clone()
            })
            .collect()
    }

    /// (segment, index, node) of every stored shard.
    fn inventory(&self) -> Vec<(SegmentId, u16, NodeId)> {
        let mut out = Vec::new();
        for n in &self.nodes {
            for (s, i) in self.net().store(&n.id).unwrap().list().unwrap() {
                out.push((s, i, n.id));
            }
        }
        out
    }

    async fn put(&self, data: &[u8]) -> macula_store::object::Capability {
        self.client
            .put(&self.members(), &mut &data[..], data.len() as u64)
            .await
            .unwrap()
    }

    async fn get(
        &self,
        cap: &macula_store::object::Capability,
    ) -> Result<(Vec<u8>, macula_store::network::GetReport), ClientError> {
        let mut out = Vec::new();
        let report = self.client.get(&self.members(), cap, &mut out).await?;
        Ok((out, report))
    }
}

fn data(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn small_segments() -> PutConfig {
    PutConfig {
        segment_len: 64 << 10,
        ..PutConfig::default()
    }
}

#[tokio::test]
async fn hundred_awkward_objects_round_trip() {
    let c = Cluster::new(8, small_segments());
    let seg = 64 << 10;
    let mut sizes = vec![
        0,
        1,
        2,
        3,
        15,
        16,
        17,
        63,
        64,
        65,
        1000,
        4095,
        4096,
        4097,
        seg - 17,
        seg - 16,
        seg - 1,
        seg,
        seg + 1,
    ];
    sizes.extend([
        2 * seg - 1,
        2 * seg,
        2 * seg + 1,
        3 * seg + 12_345,
        1 << 20,
        (1 << 20) + 7,
    ]);
    let mut s = 7u64;
    while sizes.len() < 100 {
        s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        sizes.push(((s >> 33) as usize % (2 * seg)) | 1); // odd sizes up to 2 segments
    }
    let mut caps = Vec::new();
    for (i, &len) in sizes.iter().enumerate() {
        let d = data(i as u64, len);
        caps.push((c.put(&d).await, d));
    }
    for (cap, d) in &caps {
        let text = cap.to_string();
        let cap: macula_store::object::Capability = text.parse().unwrap();
        let (got, report) = c.get(&cap).await.unwrap();
        assert_eq!(&got, d, "object of {} bytes", d.len());
        assert_eq!(report.bytes, d.len() as u64);
        assert!(report.corrupt.is_empty() && report.degraded.is_empty());
    }
    // Never two shards of one segment on one node; every segment has all k+m shards.
    let inv = c.inventory();
    let mut per_segment = std::collections::BTreeMap::<SegmentId, Vec<(u16, NodeId)>>::new();
    for (s, i, n) in inv {
        per_segment.entry(s).or_default().push((i, n));
    }
    for (s, shards) in &per_segment {
        assert_eq!(shards.len(), 6, "segment {s:?}");
        let nodes: std::collections::BTreeSet<_> = shards.iter().map(|x| x.1).collect();
        assert_eq!(nodes.len(), 6, "segment {s:?} has two shards on one node");
    }
    // 100 manifests + data segments (empty objects have none).
    let data_segments: usize = sizes.iter().map(|&l| l.div_ceil(seg)).sum();
    assert_eq!(per_segment.len(), 100 + data_segments);
}

#[tokio::test]
async fn get_survives_m_losses_and_names_the_shortfall_beyond() {
    for codec in [CodecId::RsGf8Matrix, CodecId::RsGf16Leopard] {
        let c = Cluster::new(
            6,
            PutConfig {
                codec,
                aead: AeadId::ChaCha20Poly1305,
                ..small_segments()
            },
        );
        let d = data(5, 300_000);
        let cap = c.put(&d).await;
        c.net().set_up(&c.nodes[0].id, false);
        c.net().set_up(&c.nodes[4].id, false);
        let (got, report) = c.get(&cap).await.unwrap();
        assert_eq!(got, d, "{codec:?}: readable with m = 2 holders down");
        assert!(!report.degraded.is_empty());
        c.net().set_up(&c.nodes[2].id, false);
        let err = c.get(&cap).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::NotEnoughShards {
                    have: 3,
                    need: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("not enough shards (have 3, need 4)"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn flipped_byte_is_detected_object_still_readable_and_shard_repaired() {
    let c = Cluster::new(7, small_segments());
    let d = data(9, 150_000);
    let cap = c.put(&d).await;
    // Flip one byte in the middle of some stored data shard file.
    let (seg, idx, node) = c.inventory().into_iter().find(|(_, i, _)| *i == 1).unwrap();
    let store = c.net().store(&node).unwrap();
    let path = store
        .root()
        .join("shards")
        .join(&seg.to_hex()[..2])
        .join(format!("{}.{idx}", seg.to_hex()));
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    let (got, report) = c.get(&cap).await.unwrap();
    assert_eq!(got, d);
    assert_eq!(
        report.corrupt,
        vec![(seg, idx, node)],
        "the corrupt shard is detected and named"
    );
    assert_eq!(report.segments_to_repair(), vec![seg]);
    assert!(!path.exists(), "the holder dropped its corrupt copy");

    let stored = c
        .client
        .repair_segment(&c.members(), seg, 4, 2)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, idx);
    let holders: Vec<_> = c
        .inventory()
        .into_iter()
        .filter(|(s, _, _)| *s == seg)
        .collect();
    assert_eq!(holders.len(), 6);
    assert_eq!(
        holders
            .iter()
            .map(|h| h.2)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        6
    );
    let (got, report) = c.get(&cap).await.unwrap();
    assert_eq!(got, d);
    assert!(report.corrupt.is_empty() && report.degraded.is_empty());
    // Nothing else to repair.
    assert!(
        c.client
            .repair_segment(&c.members(), seg, 4, 2)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn planner_restores_redundancy_after_a_node_dies() {
    let c = Cluster::new(9, small_segments());
    let objects: Vec<Vec<u8>> = (0..5)
        .map(|i| data(100 + i, 100_000 + 7 * i as usize))
        .collect();
    let mut caps = Vec::new();
    for d in &objects {
        caps.push(c.put(d).await);
    }
    let cfg = RepairConfig {
        grace_ms: 1000,
        ..RepairConfig::default()
    };
    // One planner per node; inventories come from the shard headers themselves
    // (self-describing shards).
    let mut planners = Planners::new(&c.client, &c.members(), cfg);
    let dead = c.nodes[3].id;
    c.net().set_up(&dead, false);
    planners.node_down(dead, 10);
    assert_eq!(
        planners.run(&c.client, 500).await,
        0,
        "within grace: no repair"
    );
    assert!(planners.degraded(500) == 0);
    let repaired = planners.run(&c.client, 1010).await;
    assert!(repaired > 0);
    assert_eq!(planners.degraded(1010), 0);
    // Every lost shard was rebuilt exactly once: the live stores hold each index once.
    let mut seen = std::collections::BTreeSet::new();
    for (seg, idx, node) in c.inventory() {
        if node != dead {
            assert!(seen.insert((seg, idx)), "{seg}.{idx} stored twice");
        }
    }
    // Full redundancy again: two more holders may die and every object is still readable.
    c.net().set_up(&c.nodes[0].id, false);
    c.net().set_up(&c.nodes[7].id, false);
    for (cap, d) in caps.iter().zip(&objects) {
        assert_eq!(&c.get(cap).await.unwrap().0, d);
    }
}

#[tokio::test]
async fn only_the_owner_deletes_and_a_deleted_object_is_gone() {
    let c = Cluster::new(7, small_segments());
    let d = data(11, 200_000);
    let cap = c.put(&d).await;
    let before = c.inventory().len();
    // Someone else holding the capability cannot delete.
    let stranger = Client::new(
        InProcessNetwork::default(),
        NodeKey::from_seed([66; 32]),
        small_segments(),
    );
    for n in &c.nodes {
        stranger
            .network()
            .add_node(n.id, c.net().store(&n.id).unwrap());
    }
    let err = stranger.delete(&c.members(), &cap).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("not signed by the segment's owner"),
        "{err}"
    );
    assert_eq!(c.inventory().len(), before);
    assert_eq!(c.get(&cap).await.unwrap().0, d);
    // The owner can.
    assert_eq!(c.client.delete(&c.members(), &cap).await.unwrap(), before);
    assert!(c.inventory().is_empty());
    let err = c.get(&cap).await.unwrap_err();
    assert!(
        matches!(
            err,
            ClientError::NotEnoughShards {
                have: 0,
                need: 4,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_failed_put_leaves_no_shards_behind() {
    let c = Cluster::new(6, small_segments());
    // The input ends after two and a half segments although three were announced.
    let d = data(3, 160 << 10);
    let err = c
        .client
        .put(&c.members(), &mut &d[..], 192 << 10)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Input(_)), "{err:?}");
    assert!(
        err.to_string().contains("reading the input failed"),
        "{err}"
    );
    assert!(
        c.inventory().is_empty(),
        "segments stored before the failure were deleted"
    );
    // Too few nodes for k + m: refused before anything is stored.
    let few: Vec<NodeInfo> = c.members().into_iter().take(5).collect();
    let err = c
        .client
        .put(&few, &mut &d[..], d.len() as u64)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("have 5, need 6"), "{err}");
    assert!(c.inventory().is_empty());
}
