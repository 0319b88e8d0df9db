//! Storage over a real 6-node loopback mesh (QUIC, one `MeshNode` per node, in this process):
//! put/get throughput of `Client<MeshNetwork>` against the raw mesh stream throughput measured
//! in the same run (the same fan-out: 1 MiB bodies to the 5 other nodes in parallel), and the
//! time to restore full redundancy after a node loss.
//!
//! Env: `MACULA_BENCH_OBJECT_MIB` (default 256) object size; the repair time is also shown scaled
//! to 1 GiB. Run: `cargo bench -p macula-store --bench mesh`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use macula_core::NodeKey;
use macula_mesh::node::MeshNode;
use macula_mesh::rpc::Handler;
use macula_store::mesh::{MeshNetwork, members_only, serve};
use macula_store::network::{Client, PutConfig};
use macula_store::placement::NodeInfo;
use macula_store::store::LocalStore;
use macula_testkit::realm::Realm;

const NODES: usize = 6;
const QUOTA: u64 = 64 << 30;

fn info(node: &MeshNode) -> NodeInfo {
    NodeInfo {
        id: node.id(),
        capacity_bytes: QUOTA,
        free_bytes: QUOTA,
        site: "default".into(),
        power: "default".into(),
    }
}

fn mibs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

fn pseudo_random(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let object_mib: usize = std::env::var("MACULA_BENCH_OBJECT_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let dirs: Vec<tempfile::TempDir> = (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Realm::from_seed(91).mesh(NODES, QUOTA).await;
    let stores: Vec<Arc<LocalStore>> = dirs
        .iter()
        .map(|d| Arc::new(LocalStore::open(d.path(), QUOTA).unwrap()))
        .collect();
    for (n, s) in nodes.iter().zip(&stores) {
        serve(n, s.clone(), Arc::new(|_, _| {}), members_only(n));
        // Baseline procedure: receive a body, answer nothing (no disk, no verification).
        let sink: Handler = Arc::new(|_, _| Box::pin(async { Ok(Vec::new()) }));
        n.serve("bench.sink", sink);
    }
    let members: Vec<NodeInfo> = nodes.iter().map(|n| info(n)).collect();

    // Raw mesh streams: object_mib MiB as 1 MiB calls, 5 in flight (one per other node).
    let body = pseudo_random(1 << 20);
    let t = Instant::now();
    let mut sent = 0u64;
    while sent < (object_mib as u64) << 20 {
        let mut set = tokio::task::JoinSet::new();
        for peer in nodes[1..].iter().map(|n| n.id()) {
            let (n, b) = (nodes[0].clone(), body.clone());
            set.spawn(async move {
                n.call(peer, "bench.sink", b, Duration::from_secs(30))
                    .await
                    .unwrap()
            });
        }
        while set.join_next().await.is_some() {}
        sent += 5 << 20;
    }
    let raw = mibs(sent, t.elapsed());
    println!("raw mesh streams, 1 MiB calls to 5 nodes in parallel: {raw:8.1} MiB/s");

    // Put / get through the storage client (4 + 2, 1 MiB segments; shards verified and fsync'd).
    let client = Client::new(
        MeshNetwork::new(nodes[0].clone(), stores[0].clone()),
        NodeKey::from_seed([1; 32]),
        PutConfig::default(),
    );
    let data = pseudo_random(object_mib << 20);
    let t = Instant::now();
    let cap = client
        .put(&members, &mut data.as_slice(), data.len() as u64)
        .await
        .unwrap();
    let put = mibs(data.len() as u64, t.elapsed());
    // Stored bytes on the wire are (k+m)/k = 1.5× the object.
    println!(
        "put {object_mib} MiB (4+2):                          {put:8.1} MiB/s = {:.2}× raw ({:.2}× raw counting 1.5× wire bytes)",
        put / raw,
        put * 1.5 / raw
    );
    let mut out = Vec::with_capacity(data.len());
    let t = Instant::now();
    client.get(&members, &cap, &mut out).await.unwrap();
    let get = mibs(data.len() as u64, t.elapsed());
    assert!(out == data, "get returned different bytes");
    println!(
        "get {object_mib} MiB (4+2):                          {get:8.1} MiB/s = {:.2}× raw",
        get / raw
    );

    // Node loss: with 4 + 2 on 6 nodes every node holds a shard of every segment, so there is no
    // spare node to rebuild on; the repair figure uses a 3 + 2 object (one spare per segment).
    // The node is stopped, then every segment is repaired from the survivors (rebuild time only:
    // detection and the grace time come on top in maculad).
    let client32 = Client::new(
        MeshNetwork::new(nodes[0].clone(), stores[0].clone()),
        NodeKey::from_seed([1; 32]),
        PutConfig {
            k: 3,
            m: 2,
            ..PutConfig::default()
        },
    );
    let cap = client32
        .put(&members, &mut data.as_slice(), data.len() as u64)
        .await
        .unwrap();
    let manifest = client32.stat(&members, &cap).await.unwrap();
    let dead = nodes.pop().unwrap();
    let dead_id = dead.id();
    Arc::try_unwrap(dead).ok().unwrap().abort().await;
    let alive: Vec<NodeInfo> = members
        .iter()
        .filter(|m| m.id != dead_id)
        .cloned()
        .collect();
    let lost_bytes = stores[NODES - 1].used();
    let t = Instant::now();
    let mut rebuilt = 0;
    for seg in manifest
        .segments
        .iter()
        .chain(std::iter::once(&cap.object_id))
    {
        rebuilt += client32
            .repair_segment(&alive, *seg, 3, 2)
            .await
            .unwrap()
            .len();
    }
    let took = t.elapsed();
    let scaled = took.as_secs_f64() * 1024.0 / object_mib as f64;
    println!(
        "repair after losing 1 of 6 nodes (3+2, {object_mib} MiB object): {rebuilt} shards, {:.1} MiB rebuilt in {:.2} s = {:.1} MiB/s; scaled to 1 GiB: {scaled:.1} s (goal ≤ 60 s)",
        lost_bytes as f64 / (1 << 20) as f64,
        took.as_secs_f64(),
        mibs(lost_bytes, took)
    );
    for seg in manifest
        .segments
        .iter()
        .chain(std::iter::once(&cap.object_id))
    {
        assert!(
            client32
                .repair_segment(&alive, *seg, 3, 2)
                .await
                .unwrap()
                .is_empty(),
            "a segment is still short of shards"
        );
    }
}
