//! Deterministic simulations of the Kademlia DHT (virtual time, seeded RNG).

use std::time::Duration;

use macula_mesh::dht::{K, Record, RecordBody, RecordKind, distance};
use macula_mesh::sim::{DhtSim, Simulation};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const MINUTE: Duration = Duration::from_secs(60);

fn record(sim: &DhtSim, author: usize, key: [u8; 32], kind: RecordKind, seq: u64) -> Record {
    Record::sign(
        sim.key(author),
        RecordBody {
            kind,
            key,
            author: sim.key(author).node_id(),
            seq,
            expires: sim.unix_now() + 3600,
            value: format!("v{seq} by {author}").into_bytes(),
        },
    )
}

/// Runs the simulation until lookup `id` of node `i` has finished (at most a minute).
fn finish(sim: &mut DhtSim, i: usize, id: u64) -> macula_mesh::dht::LookupResult {
    let deadline = sim.now() + MINUTE;
    while sim.result(i, id).is_none() && sim.now() < deadline {
        let t = sim.now() + Duration::from_millis(100);
        sim.run_until(t);
    }
    sim.result(i, id)
        .expect("lookup finished within a minute")
        .clone()
}

fn median(v: &mut [u32]) -> u32 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[test]
fn nodes_join_one_by_one_and_find_each_other() {
    let n = 300;
    let mut sim = DhtSim::new(n, 1);
    let mut rng = StdRng::seed_from_u64(2);
    for i in 1..n {
        let via = rng.random_range(0..i);
        sim.join(i, via);
        let t = sim.now() + Duration::from_millis(200);
        sim.run_until(t);
    }
    sim.run_until(sim.now() + MINUTE);
    let mut hops = Vec::new();
    for _ in 0..100 {
        let (a, b) = (rng.random_range(0..n), rng.random_range(0..n));
        let target = sim.key(b).node_id();
        let id = sim.find_node(a, target);
        let r = finish(&mut sim, a, id);
        if a != b {
            assert_eq!(
                r.closest.first(),
                Some(&target),
                "lookup from {a} found {b}"
            );
            hops.push(r.hops.unwrap());
        }
    }
    let m = median(&mut hops);
    println!(
        "300 joined nodes: median {m} hops, max {}",
        hops.last().unwrap()
    );
    assert!(m <= 4);
}

#[test]
fn records_survive_10_percent_churn_among_1000_nodes() {
    let n = 1000;
    let mut sim = DhtSim::new(n, 3);
    sim.oracle_tables();
    let mut rng = StdRng::seed_from_u64(4);
    let mut keys = Vec::new();
    for r in 0..60u8 {
        let author = rng.random_range(0..n);
        let key = [r; 32];
        let rec = record(&sim, author, key, RecordKind::Value, 1);
        let id = sim.put(author, rec);
        let res = finish(&mut sim, author, id);
        assert!(
            res.stored as usize >= K - 2,
            "stored at {} nodes",
            res.stored
        );
        keys.push((key, author));
    }
    // 10 % of the nodes crash (authors included, by chance).
    let mut killed = 0;
    while killed < n / 10 {
        let v = rng.random_range(0..n);
        if sim.is_up(v) {
            sim.kill(v);
            killed += 1;
        }
    }
    let (mut ok, mut hops, mut total) = (0, Vec::new(), 0);
    for _ in 0..300 {
        let reader = loop {
            let r = rng.random_range(0..n);
            if sim.is_up(r) {
                break r;
            }
        };
        let (key, author) = keys[rng.random_range(0..keys.len())];
        let id = sim.get(reader, key);
        let res = finish(&mut sim, reader, id);
        total += 1;
        if let Some(r) = res.records.first() {
            assert_eq!(r.body.author, sim.key(author).node_id());
            ok += 1;
            hops.push(res.hops.unwrap());
        }
    }
    let m = median(&mut hops);
    println!("1000 nodes, 10 % crashed: {ok}/{total} gets succeeded, median {m} hops");
    assert!(ok * 100 >= total * 99, "success {ok}/{total}");
    assert!(m <= 4);
}

#[test]
fn forged_stale_and_provider_records_over_the_network() {
    let n = 200;
    let mut sim = DhtSim::new(n, 5);
    sim.oracle_tables();
    let key = [42; 32];
    // Version 2, then a stale version 1: readers see version 2.
    let id = sim.put(3, record(&sim, 3, key, RecordKind::Value, 2));
    assert!(finish(&mut sim, 3, id).stored > 0);
    let id = sim.put(3, record(&sim, 3, key, RecordKind::Value, 1));
    sim.run_until(sim.now() + MINUTE);
    assert_eq!(
        sim.result(3, id).unwrap().stored,
        0,
        "stale version refused everywhere"
    );
    // A forged record (value changed after signing) is refused by every node.
    let mut forged = record(&sim, 4, [43; 32], RecordKind::Value, 1);
    forged.body.value = b"evil".to_vec();
    let id = sim.put(4, forged);
    assert_eq!(finish(&mut sim, 4, id).stored, 0);
    let id = sim.get(100, [43; 32]);
    assert!(finish(&mut sim, 100, id).records.is_empty());
    let id = sim.get(150, key);
    let got = finish(&mut sim, 150, id).records;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body.seq, 2);
    // Two providers of the same content: both are found.
    let content = [44; 32];
    for p in [10, 20] {
        let id = sim.put(p, record(&sim, p, content, RecordKind::Provider, 1));
        assert!(finish(&mut sim, p, id).stored > 0);
    }
    // Both were stored at the same K closest nodes, so the first holder answers with both.
    let id = sim.get(77, content);
    sim.run_until(sim.now() + MINUTE);
    let providers: Vec<_> = sim
        .result(77, id)
        .unwrap()
        .records
        .iter()
        .map(|r| r.body.author)
        .collect();
    assert!(
        providers.contains(&sim.key(10).node_id()) && providers.contains(&sim.key(20).node_id())
    );
    // Replicas sit at the nodes closest to the key.
    let mut by_dist: Vec<usize> = (0..n).collect();
    by_dist.sort_by_key(|&i| distance(sim.key(i).node_id().as_bytes(), &content));
    let holders = by_dist[..K]
        .iter()
        .filter(|&&i| !sim.node(i).store.get(&content, sim.unix_now()).is_empty())
        .count();
    assert!(
        holders >= K - 2,
        "{holders} of the {K} closest nodes hold the provider records"
    );
    assert!(
        by_dist[..K]
            .iter()
            .any(|&i| sim.node(i).store.get(&content, sim.unix_now()).len() == 2)
    );
}
