//! Simulation benchmarks (virtual time, seeded): DHT lookup hops and success rate at 1k and 10k
//! nodes with 10 % of the nodes crashed, SWIM failure dissemination at 1000 nodes, and the same
//! crash through 1000 whole `MeshCore`s (peer tables, connections dialled by the cores' plans).
//! Run: `cargo bench -p macula-mesh --bench sim`.

use std::time::{Duration, Instant};

use foca::State;
use macula_mesh::core::{CoreConfig, PeerState};
use macula_mesh::dht::{Record, RecordBody, RecordKind};
use macula_mesh::membership::MembershipConfig;
use macula_mesh::sim::{CoreSim, DhtSim, MembershipSim, NodeKind, Simulation};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

fn run_lookup(sim: &mut DhtSim, i: usize, id: u64) -> macula_mesh::dht::LookupResult {
    let deadline = sim.now() + Duration::from_secs(60);
    while sim.result(i, id).is_none() && sim.now() < deadline {
        let t = sim.now() + Duration::from_millis(100);
        sim.run_until(t);
    }
    sim.result(i, id).expect("lookup finished").clone()
}

fn live(sim: &DhtSim, rng: &mut StdRng) -> usize {
    loop {
        let r = rng.random_range(0..sim.len());
        if sim.is_up(r) {
            return r;
        }
    }
}

fn dht(n: usize, records: usize, gets: usize) {
    let wall = Instant::now();
    let mut sim = DhtSim::new(n, 7);
    sim.oracle_tables();
    let mut rng = StdRng::seed_from_u64(8);
    let mut keys = Vec::new();
    for r in 0..records {
        let author = rng.random_range(0..n);
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&(r as u64).to_le_bytes());
        key[8] = 0xa5;
        let rec = Record::sign(
            sim.key(author),
            RecordBody {
                kind: RecordKind::Value,
                key,
                author: sim.key(author).node_id(),
                seq: 1,
                expires: sim.unix_now() + 20 * 3600,
                value: vec![1; 64],
            },
        );
        let id = sim.put(author, rec);
        run_lookup(&mut sim, author, id);
        keys.push(key);
    }
    let mut killed = 0;
    while killed < n / 10 {
        let v = rng.random_range(0..n);
        if sim.is_up(v) {
            sim.kill(v);
            killed += 1;
        }
    }
    let (mut ok, mut hops, mut node_hops, mut node_ok) = (0, Vec::new(), Vec::new(), 0);
    for _ in 0..gets {
        let reader = live(&sim, &mut rng);
        let key = keys[rng.random_range(0..keys.len())];
        let id = sim.get(reader, key);
        let res = run_lookup(&mut sim, reader, id);
        if !res.records.is_empty() {
            ok += 1;
            hops.push(res.hops.expect("hops of a successful get"));
        }
        let (a, b) = (live(&sim, &mut rng), live(&sim, &mut rng));
        let target = sim.key(b).node_id();
        let id = sim.find_node(a, target);
        let res = run_lookup(&mut sim, a, id);
        if a != b && res.closest.first() == Some(&target) {
            node_ok += 1;
            node_hops.push(res.hops.expect("hops"));
        }
    }
    hops.sort_unstable();
    node_hops.sort_unstable();
    let pct = |v: &[u32], p: usize| v.get(v.len() * p / 100).copied().unwrap_or(0);
    println!(
        "dht n={n} crashed=10%: get success {ok}/{gets} ({:.1} %), hops median {} p90 {} max {}; \
         find_node success {node_ok}/{gets}, hops median {} p90 {}; {} requests; wall {:.1?}",
        100.0 * ok as f64 / gets as f64,
        pct(&hops, 50),
        pct(&hops, 90),
        hops.last().copied().unwrap_or(0),
        pct(&node_hops, 50),
        pct(&node_hops, 90),
        sim.requests,
        wall.elapsed()
    );
}

fn membership(n: usize) {
    let wall = Instant::now();
    let mut sim = MembershipSim::new(n, MembershipConfig::lan(n as u32), 42, false);
    sim.seed_full_view();
    sim.run_until(Duration::from_secs(5));
    let victim = 123;
    sim.kill(victim);
    let killed = sim.now();
    let step = Duration::from_millis(50);
    let first = sim
        .run_until_cond(killed + Duration::from_secs(30), step, |s| {
            s.count_seeing(victim, &[State::Suspect, State::Down]) > 0
        })
        .expect("detected");
    let all_know = sim
        .run_until_cond(first + Duration::from_secs(30), step, |s| {
            s.count_seeing(victim, &[State::Suspect, State::Down]) == s.live_count()
        })
        .expect("disseminated");
    let all_down = sim
        .run_until_cond(all_know + Duration::from_secs(60), step, |s| {
            s.count_seeing(victim, &[State::Down]) == s.live_count()
        })
        .expect("declared down");
    println!(
        "swim n={n}: crash first suspected after {:?}; known by all {} live nodes {:?} later \
         (goal ≤ 5 s); declared down by all {:?} after the crash (suspicion timeout {:?} \
         unconfirmed, {:?} after 3 confirmations); wall {:.1?}",
        first - killed,
        sim.live_count(),
        all_know - first,
        all_down - killed,
        MembershipConfig::lan(n as u32).foca.suspect_to_down_after,
        MembershipConfig::lan(n as u32).suspicion.min,
        wall.elapsed()
    );
}

fn combined(n: usize) {
    let wall = Instant::now();
    let core = CoreConfig {
        peer_sync: Duration::from_secs(5),
        ..CoreConfig::default()
    };
    let kinds = vec![NodeKind::default(); n];
    let mut sim = CoreSim::new(&kinds, MembershipConfig::lan(n as u32), core, 42, false);
    sim.seed_full_view();
    sim.run_until(Duration::from_secs(5));
    let victim = 123;
    sim.kill(victim);
    let killed = sim.now();
    let all_down = sim
        .run_until_cond(
            killed + Duration::from_secs(60),
            Duration::from_millis(50),
            |s| s.count_seeing(victim, &[PeerState::Down]) == s.live_count(),
        )
        .expect("declared down");
    println!(
        "core n={n}: the crash is down in every live node's peer table {:?} after it (whole \
         MeshCores); {} messages; wall {:.1?}",
        all_down - killed,
        sim.messages,
        wall.elapsed()
    );
}

fn main() {
    membership(1000);
    combined(1000);
    dht(1000, 100, 500);
    dht(10_000, 100, 500);
}
