//! Shard transfer over real mesh nodes (QUIC on loopback, six `MeshNode`s with a `LocalStore`
//! each, in this process): a get verifies every chunk as it arrives and drops a holder whose
//! bytes go bad on the way, without waiting for the rest of its shard.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use macula_core::NodeKey;
use macula_mesh::rpc::{ErrorCode, RpcError, STREAM_QUEUE, StreamHandler};
use macula_store::header::{SegmentId, shard_len_for};
use macula_store::mesh::{GET_CHUNK, GET_PROCEDURE, MeshNetwork, members_only, serve};
use macula_store::network::{Client, PutConfig};
use macula_store::placement::NodeInfo;
use macula_store::receive::wire_chunks;
use macula_store::store::{DeleteRequest, LocalStore};
use macula_testkit::realm::Realm;

const NODES: usize = 6;
const QUOTA: u64 = 1 << 30;

/// What the malicious holder did with the shard it damages.
#[derive(Default)]
struct Evil {
    /// Chunks of the damaged shard handed to the mesh before the transfer ended.
    sent: AtomicUsize,
    /// Chunks the damaged shard has.
    total: AtomicUsize,
    /// The handler ran to its end (it was not cancelled).
    finished: AtomicBool,
}

/// A `store.get` that verifies its copy like the real one, then flips a byte of the third data
/// chunk of shard `target` on the way out.
fn evil_get(store: Arc<LocalStore>, target: (SegmentId, u16), evil: Arc<Evil>) -> StreamHandler {
    Arc::new(move |_from, body, mut reply| {
        let (store, evil) = (store.clone(), evil.clone());
        Box::pin(async move {
            let seg = SegmentId(body[..32].try_into().unwrap());
            let index = u16::from_le_bytes([body[32], body[33]]);
            let mut shard = store
                .get_shard(&seg, index)
                .map_err(|e| RpcError::new(ErrorCode::NotFound, e.to_string()))?;
            if (seg, index) != target {
                for chunk in wire_chunks(&shard, GET_CHUNK) {
                    reply.send(chunk).await?;
                }
                return Ok(());
            }
            shard.data[2 * GET_CHUNK + 100] ^= 0x01;
            let chunks: Vec<Vec<u8>> = wire_chunks(&shard, GET_CHUNK).collect();
            evil.total.store(chunks.len(), Ordering::SeqCst);
            for chunk in chunks {
                reply.send(chunk).await?;
                evil.sent.fetch_add(1, Ordering::SeqCst);
            }
            evil.finished.store(true, Ordering::SeqCst);
            Ok(())
        })
    })
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunk_damaged_in_transit_aborts_that_transfer_and_the_get_uses_other_holders() {
    let nodes = Realm::from_seed(44).mesh(NODES, QUOTA).await;
    let dirs: Vec<tempfile::TempDir> = (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect();
    let stores: Vec<Arc<LocalStore>> = dirs
        .iter()
        .map(|d| Arc::new(LocalStore::open(d.path(), QUOTA).unwrap()))
        .collect();
    let found_corrupt: Arc<Mutex<Vec<(SegmentId, u16)>>> = Arc::default();
    for (n, s) in nodes.iter().zip(&stores) {
        let found = found_corrupt.clone();
        serve(
            n,
            s.clone(),
            Arc::new(move |seg, i| found.lock().unwrap().push((seg, i))),
            // This test stores under a key that is no member's.
            Arc::new(|_, _| true),
        );
    }
    let members: Vec<NodeInfo> = nodes
        .iter()
        .map(|n| NodeInfo {
            id: n.id(),
            capacity_bytes: QUOTA,
            free_bytes: QUOTA,
            site: "default".into(),
            power: "default".into(),
        })
        .collect();

    // One data segment of 15 MiB, 4 + 2: shards of 3.75 MiB (61 chunks), larger than the QUIC
    // stream window (2 MiB), so a holder cannot push a whole shard before the reader reacts.
    let owner = NodeKey::from_seed([1; 32]);
    let cfg = PutConfig {
        segment_len: 15 << 20,
        ..PutConfig::default()
    };
    let client = Client::new(
        MeshNetwork::new(nodes[0].clone(), stores[0].clone()),
        NodeKey::from_seed([1; 32]),
        cfg,
    );
    let data = pseudo_random(15 << 20);
    let cap = client
        .put(&members, &mut data.as_slice(), data.len() as u64)
        .await
        .unwrap();
    let segment = client.stat(&members, &cap).await.unwrap().segments[0];
    let held = |i: usize| stores[i].indices_of(&segment).unwrap();
    for i in 0..NODES {
        assert_eq!(held(i).len(), 1, "node {i} holds one shard of the segment");
    }

    // Node 5 damages its shard on the way out. Nodes 3 and 4 lose theirs (node 3's is kept as a
    // second copy on node 1): the first round of the get — all six placed holders, keep the
    // fastest four — has only three good shards, so it must wait for node 5's transfer and see
    // it fail; the second round finds node 3's index on node 1.
    let bad = held(5)[0];
    let evil = Arc::new(Evil::default());
    nodes[5].serve_stream(
        GET_PROCEDURE,
        evil_get(stores[5].clone(), (segment, bad), evil.clone()),
    );
    let i3 = held(3)[0];
    stores[1]
        .put(&stores[3].get(&segment, i3).unwrap())
        .unwrap();
    for i in [3, 4] {
        assert_eq!(
            stores[i]
                .delete(&DeleteRequest::sign(segment, &owner))
                .unwrap(),
            1
        );
    }

    let mut out = Vec::new();
    let report = client.get(&members, &cap, &mut out).await.unwrap();
    assert!(out == data, "the get returned other bytes");
    assert_eq!(report.corrupt, vec![(segment, bad, nodes[5].id())]);
    // Give the cancel time to reach the holder, then look at what it managed to send.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (sent, total) = (
        evil.sent.load(Ordering::SeqCst),
        evil.total.load(Ordering::SeqCst),
    );
    let data_chunks = shard_len_for(15 << 20, 4).div_ceil(GET_CHUNK as u64) as usize;
    assert_eq!(total, 1 + data_chunks, "header + outboard, then the data");
    assert_eq!(total, 62);
    assert!(
        !evil.finished.load(Ordering::SeqCst),
        "the damaged transfer ran to its end instead of being cancelled"
    );
    // The damage is in chunk 4 of 62; the reader stopped the transfer there. Before the stop
    // arrived the holder could hand over at most: the 4 chunks read, the stream window beyond them
    // (2 MiB = 32 chunks), the chunk being written and its queue (4 chunks) — 41 (measured: 34–36).
    // A transfer verified only at its end would have taken all 62.
    let bound = 4 + (2 << 20) / GET_CHUNK + 1 + STREAM_QUEUE;
    assert!(
        sent >= 4 && sent <= bound,
        "the malicious holder sent {sent} of {total} chunks (bound {bound})"
    );
    println!("the malicious holder sent {sent} of {total} chunks before the cancel");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(evil.sent.load(Ordering::SeqCst), sent, "it kept sending");
    // The holder's own copy is fine: nothing was reported corrupt at a holder.
    assert!(found_corrupt.lock().unwrap().is_empty());
    assert_eq!(held(5), vec![bad]);

    drop(client);
    for n in nodes {
        Arc::try_unwrap(n).ok().unwrap().shutdown().await;
    }
}

/// Holders serving with the daemon's rule refuse a shard signed by a throwaway key (no member's),
/// so a member cannot dodge its per-owner quota by minting keys; the sender's own key is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holders_refuse_shards_under_a_throwaway_key() {
    let nodes = Realm::from_seed(45).mesh(3, QUOTA).await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let stores: Vec<Arc<LocalStore>> = dirs
        .iter()
        .map(|d| Arc::new(LocalStore::open(d.path(), QUOTA).unwrap()))
        .collect();
    for (n, s) in nodes.iter().zip(&stores) {
        serve(n, s.clone(), Arc::new(|_, _| {}), members_only(n));
    }
    // Node 0 places shards on nodes 1 and 2 only (not itself, whose store takes them directly).
    let members: Vec<NodeInfo> = nodes[1..]
        .iter()
        .map(|n| NodeInfo {
            id: n.id(),
            capacity_bytes: QUOTA,
            free_bytes: QUOTA,
            site: "default".into(),
            power: "default".into(),
        })
        .collect();
    let cfg = PutConfig {
        k: 1,
        m: 1,
        ..PutConfig::default()
    };
    let throwaway = Client::new(
        MeshNetwork::new(nodes[0].clone(), stores[0].clone()),
        NodeKey::from_seed([99; 32]),
        cfg.clone(),
    );
    let data = pseudo_random(100_000);
    let err = throwaway
        .put(&members, &mut data.as_slice(), data.len() as u64)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a member"), "{err}");
    assert!(stores[1].list().unwrap().is_empty() && stores[2].list().unwrap().is_empty());
    // Node 0's own key (seed 1) is its sender's: taken.
    let own = Client::new(
        MeshNetwork::new(nodes[0].clone(), stores[0].clone()),
        NodeKey::from_seed([1; 32]),
        cfg,
    );
    own.put(&members, &mut data.as_slice(), data.len() as u64)
        .await
        .unwrap();
    assert!(!stores[1].list().unwrap().is_empty() && !stores[2].list().unwrap().is_empty());
}
