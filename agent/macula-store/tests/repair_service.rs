//! The repair services (tokio shells around the planners, one per node) restore redundancy over
//! in-process stores after a node goes down, with real time and concurrent repairs, each lost
//! shard rebuilt once by the segment's repair leader.

use std::sync::Arc;
use std::time::Duration;

use macula_core::{NodeId, NodeKey};
use macula_store::network::{Client, InProcessNetwork, PutConfig};
use macula_store::placement::NodeInfo;
use macula_store::repair::{Event, RepairConfig, RepairStatus};
use macula_store::segment::{Shard, Trust};
use macula_store::service::{RepairService, local_inventory};
use macula_store::store::LocalStore;

#[tokio::test]
async fn service_restores_redundancy_after_a_node_goes_down() {
    let (_dir, nodes, client) = cluster(8, 200, 4, 2);
    let mut objects = Vec::new();
    for i in 0..4u32 {
        let data: Vec<u8> = (0..50_000 + i * 999).map(|j| (j * 7 + i) as u8).collect();
        let cap = client
            .put(&nodes, &mut &data[..], data.len() as u64)
            .await
            .unwrap();
        objects.push((cap, data));
    }

    // One service per node, as every maculad runs one. Events reach the services
    // asynchronously: a repair planned before a service learns of the dead node fails and is
    // retried after `retry_ms`.
    let cfg = RepairConfig {
        grace_ms: 200,
        max_inflight: 3,
        retry_ms: 300,
        ..RepairConfig::default()
    };
    let services = start_services(&client, &nodes, cfg);
    let dead = nodes[2].id;
    let lost = client.network().store(&dead).unwrap().list().unwrap().len() as u64;
    assert!(lost > 0);
    client.network().set_up(&dead, false);
    services.send_all(Event::NodeDown(dead));
    // The outcome: every segment has all 6 shards on live nodes again (checked on the stores),
    // and the published status agrees.
    let live: Vec<_> = nodes
        .iter()
        .map(|n| n.id)
        .filter(|id| *id != dead)
        .collect();
    let restored = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let mut per_segment =
                std::collections::BTreeMap::<_, std::collections::BTreeSet<u16>>::new();
            for id in &live {
                for (seg, idx) in client.network().store(id).unwrap().list().unwrap() {
                    per_segment.entry(seg).or_default().insert(idx);
                }
            }
            let status = services.status(&live);
            if per_segment.values().all(|s| s.len() == 6)
                && status.degraded == 0
                && status.inflight == 0
            {
                return (per_segment.len(), status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("redundancy restored within 30 s");
    assert_eq!(restored.0, 12);
    assert!(restored.1.unrecoverable.is_empty());
    // Every segment lost one shard and was repaired by exactly one node.
    assert_eq!(restored.1.repaired, lost);
    services.stop().await;

    // Full redundancy: two more nodes may go down and everything is still readable.
    client.network().set_up(&nodes[5].id, false);
    client.network().set_up(&nodes[6].id, false);
    for (cap, data) in &objects {
        let mut out = Vec::new();
        client.get(&nodes, cap, &mut out).await.unwrap();
        assert_eq!(&out, data);
    }
}

#[tokio::test]
async fn periodic_audit_finds_a_flipped_byte_and_the_shard_is_rebuilt() {
    let (_dir, nodes, client) = cluster(7, 150, 3, 3);
    let data: Vec<u8> = (0..70_000u32).map(|j| (j * 13) as u8).collect();
    let cap = client
        .put(&nodes, &mut &data[..], data.len() as u64)
        .await
        .unwrap();

    let services = start_services(
        &client,
        &nodes,
        RepairConfig {
            grace_ms: 100,
            ..RepairConfig::default()
        },
    );
    let audits: Vec<_> = services
        .services
        .iter()
        .map(|(id, s)| {
            s.audit_local(
                *id,
                client.network().store(id).unwrap(),
                Duration::from_millis(100),
            )
        })
        .collect();

    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
    // Flip one byte in a stored shard file; nobody reads the object.
    let victim = nodes[4].id;
    let store = client.network().store(&victim).unwrap();
    let (seg, idx) = store.list().unwrap()[0];
    let path = store
        .root()
        .join("shards")
        .join(&seg.to_hex()[..2])
        .join(format!("{}.{idx}", seg.to_hex()));
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last - 40] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    // The audit drops the corrupt copy and the service rebuilds the index from the others. The
    // test looks at the files without the store's read path (which would drop the copy itself).
    let copies = |verified: bool| {
        nodes
            .iter()
            .filter(|n| {
                let root = client.network().store(&n.id).unwrap().root().to_path_buf();
                let p = root
                    .join("shards")
                    .join(&seg.to_hex()[..2])
                    .join(format!("{}.{idx}", seg.to_hex()));
                std::fs::read(&p)
                    .is_ok_and(|b| Shard::from_bytes(&b, Trust::SegmentId(seg)).is_ok() == verified)
            })
            .count()
    };
    assert_eq!((copies(true), copies(false)), (0, 1));
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let status = services.status(&ids);
            if copies(true) == 1
                && copies(false) == 0
                && status.degraded == 0
                && status.inflight == 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("corrupt shard rebuilt within 30 s");
    for a in audits {
        a.abort();
    }
    // Rebuilt once, by one node.
    assert_eq!(services.status(&ids).repaired, 1);
    services.stop().await;
    let mut out = Vec::new();
    let report = client.get(&nodes, &cap, &mut out).await.unwrap();
    assert_eq!(out, data);
    assert!(
        report.corrupt.is_empty(),
        "no corrupt shard left to find: {report:?}"
    );
}

/// `count` in-process stores (node keys from seeds `seed..`, sites `s0..s{sites-1}`) and a client
/// with 32 KiB segments owned by the key of seed `owner`.
fn cluster(
    count: u8,
    seed: u8,
    sites: u8,
    owner: u8,
) -> (
    tempfile::TempDir,
    Vec<NodeInfo>,
    Arc<Client<InProcessNetwork>>,
) {
    let dir = tempfile::tempdir().unwrap();
    let net = InProcessNetwork::default();
    let mut nodes = Vec::new();
    for i in 0..count {
        let id = NodeKey::from_seed([i + seed; 32]).node_id();
        net.add_node(
            id,
            Arc::new(LocalStore::open(&dir.path().join(format!("n{i}")), 1 << 30).unwrap()),
        );
        nodes.push(NodeInfo {
            id,
            capacity_bytes: 1 << 30,
            free_bytes: 1 << 30,
            site: format!("s{}", i % sites),
            power: "p".into(),
        });
    }
    let client = Arc::new(Client::new(
        net,
        NodeKey::from_seed([owner; 32]),
        PutConfig {
            segment_len: 32 << 10,
            ..PutConfig::default()
        },
    ));
    (dir, nodes, client)
}

/// One repair service per node over the shared in-process network, plus a task that hands
/// every live store's inventory to every service every 100 ms (maculad's pub/sub in miniature).
struct Services {
    services: Vec<(NodeId, RepairService)>,
    feeder: tokio::task::JoinHandle<()>,
}

fn start_services(
    client: &Arc<Client<InProcessNetwork>>,
    nodes: &[NodeInfo],
    cfg: RepairConfig,
) -> Services {
    let services: Vec<(NodeId, RepairService)> = nodes
        .iter()
        .map(|n| {
            (
                n.id,
                RepairService::start(n.id, client.clone(), cfg.clone()),
            )
        })
        .collect();
    for (_, s) in &services {
        for n in nodes {
            s.send(Event::NodeUp(n.clone()));
        }
    }
    let senders: Vec<_> = services.iter().map(|(_, s)| s.sender()).collect();
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
    let client = client.clone();
    let feeder = tokio::spawn(async move {
        loop {
            for id in &ids {
                if !client.network().is_up(id) {
                    continue;
                }
                let store = client.network().store(id).unwrap();
                let shards = local_inventory(&store).unwrap();
                for tx in &senders {
                    let _ = tx.send(Event::Inventory {
                        node: *id,
                        shards: shards.clone(),
                    });
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Services { services, feeder }
}

impl Services {
    fn send_all(&self, ev: Event) {
        for (_, s) in &self.services {
            s.send(ev.clone());
        }
    }

    /// The sum of the live nodes' statuses.
    fn status(&self, live: &[NodeId]) -> RepairStatus {
        let mut total = RepairStatus::default();
        for (id, s) in &self.services {
            if live.contains(id) {
                let st = s.status().borrow().clone();
                total.segments += st.segments;
                total.degraded += st.degraded;
                total.inflight += st.inflight;
                total.leading += st.leading;
                total.repaired += st.repaired;
                total.failed += st.failed;
                total.unrecoverable.extend(st.unrecoverable);
            }
        }
        total
    }

    async fn stop(self) {
        self.feeder.abort();
        for (_, s) in self.services {
            s.stop().await;
        }
    }
}
