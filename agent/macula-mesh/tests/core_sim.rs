//! The combined simulator: whole `MeshCore`s (membership, pub/sub, DHT, peer table, dial plans
//! and relay choice) on a simulated network, deterministic per seed.

use std::time::Duration;

use macula_mesh::core::{CoreConfig, PeerState};
use macula_mesh::dht::{Record, RecordBody, RecordKind};
use macula_mesh::membership::MembershipConfig;
use macula_mesh::sim::{CoreSim, NodeKind, Simulation, Trace};

const STEP: Duration = Duration::from_millis(100);

/// 1 000 cores: crashes are declared down in every peer table, restarted nodes come back alive
/// everywhere, and no live node is ever declared down.
#[test]
fn thousand_cores_churn() {
    let n = 1000;
    let core = CoreConfig {
        // Crashes are events (the table syncs at once); suspicions need not show here.
        peer_sync: Duration::from_secs(5),
        ..CoreConfig::default()
    };
    let kinds = vec![NodeKind::default(); n];
    let mut sim = CoreSim::new(&kinds, MembershipConfig::lan(n as u32), core, 42, false);
    sim.seed_full_view();
    sim.run_until(Duration::from_secs(3));
    let victims = [7, 123, 500, 501, 999];
    for v in victims {
        sim.kill(v);
    }
    let killed = sim.now();
    let down = sim
        .run_until_cond(killed + Duration::from_secs(60), STEP, |s| {
            victims
                .iter()
                .all(|&v| s.count_seeing(v, &[PeerState::Down]) == s.live_count())
        })
        .expect("every live node declares the crashed nodes down");
    for v in [7, 500] {
        sim.restart(v, 1);
    }
    let back = sim
        .run_until_cond(down + Duration::from_secs(60), STEP, |s| {
            [7, 500]
                .iter()
                .all(|&v| s.count_seeing(v, &[PeerState::Alive]) == s.live_count() - 1)
        })
        .expect("restarted nodes are alive in every peer table");
    let false_downs = (0..n)
        .filter(|i| !victims.contains(i))
        .map(|i| sim.count_seeing(i, &[PeerState::Down]))
        .sum::<usize>();
    println!(
        "n={n}: 5 crashes down everywhere {:?} after; 2 restarts alive everywhere {:?} after; \
         {} messages",
        down - killed,
        back - down,
        sim.messages
    );
    assert_eq!(false_downs, 0);
}

fn realm(seed: u64) -> CoreSim {
    // 2 hubs, 4 nodes behind NAT, 14 plain edges.
    let mut kinds = vec![NodeKind::default(); 20];
    kinds[0].hub = true;
    kinds[1].hub = true;
    for k in &mut kinds[16..] {
        k.nat = true;
    }
    let mut sim = CoreSim::new(
        &kinds,
        MembershipConfig::lan(20),
        CoreConfig::default(),
        seed,
        true,
    );
    for i in 1..20 {
        sim.join(i, 0);
    }
    sim
}

fn all_alive(sim: &CoreSim) -> bool {
    (0..sim.len()).all(|v| sim.count_seeing(v, &[PeerState::Alive]) == sim.live_count() - 1)
}

/// A realm with hubs and nodes behind NAT: everyone converges, the NAT'd nodes are reached
/// through a hub (named in their metadata), and pub/sub and the DHT work across the relays.
#[test]
fn relays_pubsub_and_dht_over_cores() {
    let mut sim = realm(5);
    sim.run_until_cond(Duration::from_secs(60), STEP, all_alive)
        .expect("the realm converges");
    // NAT'd nodes dial out directly; every connection to one goes through a hub.
    let relayed = (16..20)
        .flat_map(|nat| (2..16).map(move |i| (i, nat)))
        .filter(|&(i, nat)| sim.relayed(i, nat) == Some(true))
        .count();
    assert!(relayed > 0, "no connection went through a hub");
    assert!(
        !sim.trace
            .iter()
            .any(|(_, _, t)| matches!(t, Trace::Dialled { to, relay: None } if *to >= 16)),
        "a NAT'd node was dialled directly"
    );

    let subscribers = [3, 9, 17, 19];
    let tokens: Vec<u64> = subscribers
        .iter()
        .map(|&i| sim.subscribe(i, "news"))
        .collect();
    let t = sim.now() + Duration::from_secs(5);
    sim.run_until(t);
    for (&i, &token) in subscribers.iter().zip(&tokens) {
        assert!(
            sim.subscribed(i, token).is_some_and(|acked| acked >= 15),
            "subscription of {i} acked by {:?}",
            sim.subscribed(i, token)
        );
    }
    let seq = sim.publish(18, "news", b"hello".to_vec());
    let t = sim.now() + Duration::from_secs(5);
    sim.run_until(t);
    let publisher = sim.node_id(18);
    for i in subscribers {
        assert_eq!(sim.delivered(i), &[(publisher, seq)], "node {i}");
    }
    assert!(sim.delivered(4).is_empty());

    let rec = Record::sign(
        sim.key(17),
        RecordBody {
            kind: RecordKind::Value,
            key: [9; 32],
            author: sim.node_id(17),
            seq: 1,
            expires: sim.unix_now() + 3600,
            value: b"v".to_vec(),
        },
    );
    let put = sim.dht_put(17, rec.clone());
    let t = sim.now() + Duration::from_secs(20);
    sim.run_until(t);
    let stored = sim.lookup(17, put).expect("the put finished").stored;
    assert!(stored >= 10, "stored at {stored} nodes");
    let get = sim.dht_get(5, [9; 32]);
    let t = sim.now() + Duration::from_secs(20);
    sim.run_until(t);
    assert_eq!(
        sim.lookup(5, get).expect("the get finished").records,
        vec![rec]
    );
}

/// A partition is detected on both sides and heals; crashes during it are still declared.
#[test]
fn partition_heals_over_cores() {
    let mut sim = CoreSim::edges(40, 11, false);
    sim.seed_full_view();
    sim.run_until(Duration::from_secs(3));
    let a: Vec<usize> = (0..10).collect();
    let b: Vec<usize> = (10..40).collect();
    sim.partition(&a, &b);
    let cut = sim.now();
    sim.run_until_cond(cut + Duration::from_secs(120), STEP, |s| {
        a.iter()
            .all(|&i| s.count_seeing(i, &[PeerState::Down]) >= b.len())
    })
    .expect("the majority declares the minority down");
    sim.kill(20);
    sim.heal();
    let healed = sim.now();
    sim.run_until_cond(healed + Duration::from_secs(180), STEP, |s| {
        (0..40)
            .filter(|&v| v != 20)
            .all(|v| s.count_seeing(v, &[PeerState::Alive]) == s.live_count() - 1)
            && s.count_seeing(20, &[PeerState::Down]) == s.live_count()
    })
    .expect("the partition heals; the crash is known everywhere");
}

fn scenario(seed: u64) -> Vec<(Duration, usize, Trace)> {
    let mut sim = realm(seed);
    sim.run_until(Duration::from_secs(10));
    sim.subscribe(3, "t");
    sim.run_until(Duration::from_secs(12));
    sim.publish(17, "t", vec![1]);
    sim.kill(9);
    sim.run_until(Duration::from_secs(40));
    sim.restart(9, 1);
    sim.run_until(Duration::from_secs(60));
    sim.trace
}

/// The same seed replays the same run, event for event; another seed does not.
#[test]
fn same_seed_same_trace() {
    let a = scenario(3);
    let b = scenario(3);
    assert!(a.len() > 1000, "a trace of {} events", a.len());
    assert!(
        a.iter()
            .any(|(_, _, t)| matches!(t, Trace::Peer(9, PeerState::Down))),
        "the crash shows in the trace"
    );
    if let Some(i) = (0..a.len().min(b.len())).find(|&i| a[i] != b[i]) {
        panic!("runs diverge at event {i}: {:?} vs {:?}", a[i], b[i]);
    }
    assert_eq!(a.len(), b.len());
    assert_ne!(a, scenario(4));
}

/// DHT records are re-replicated when their holders leave: after a third of the nodes that
/// stored a record crash, the record is held by as many live nodes as before (the live holder
/// closest to its key stores it again at the K closest live nodes).
#[test]
fn dht_records_are_re_replicated_when_their_holders_leave() {
    let n = 40;
    let mut sim = CoreSim::edges(n, 9, true);
    for i in 1..n {
        sim.join(i, 0);
    }
    sim.run_until_cond(Duration::from_secs(60), STEP, all_alive)
        .expect("the realm converges");
    let key = [0x5a; 32];
    let rec = Record::sign(
        sim.key(3),
        RecordBody {
            kind: RecordKind::Value,
            key,
            author: sim.node_id(3),
            seq: 1,
            expires: sim.unix_now() + 3600,
            value: b"v".to_vec(),
        },
    );
    let put = sim.dht_put(3, rec);
    let t = sim.now() + Duration::from_secs(20);
    sim.run_until(t);
    assert!(sim.lookup(3, put).expect("the put finished").stored >= 15);
    let holders = |s: &CoreSim| -> Vec<usize> {
        (0..s.len())
            .filter(|&i| s.is_up(i) && !s.core(i).dht().store.get(&key, s.unix_now()).is_empty())
            .collect()
    };
    let before = holders(&sim);
    let victims: Vec<usize> = before
        .iter()
        .copied()
        .filter(|&i| i != 3)
        .take(before.len() / 3)
        .collect();
    for &v in &victims {
        sim.kill(v);
    }
    let restored = sim.run_until_cond(sim.now() + Duration::from_secs(60), STEP, |s| {
        victims
            .iter()
            .all(|&v| s.count_seeing(v, &[PeerState::Down]) == s.live_count())
            && holders(s).len() >= before.len()
    });
    assert!(
        restored.is_some(),
        "{} holders before, {} killed, {} live holders after",
        before.len(),
        victims.len(),
        holders(&sim).len()
    );
}

/// A peer reached through a hub relay is upgraded to a direct path once one becomes possible:
/// when a NAT'd node's NAT opens, every peer connected to it through a hub dials it directly
/// within the retry period, and the direct connection replaces the relayed one.
#[test]
fn a_relayed_peer_is_upgraded_to_a_direct_path_when_one_becomes_possible() {
    let mut sim = realm(6);
    sim.run_until_cond(Duration::from_secs(60), STEP, all_alive)
        .expect("the realm converges");
    let nat = 17;
    let via_hub: Vec<usize> = (2..16)
        .filter(|&i| sim.relayed(i, nat) == Some(true))
        .collect();
    assert!(
        !via_hub.is_empty(),
        "nobody reaches the NAT'd node through a hub"
    );
    sim.set_nat(nat, false);
    let retry = CoreConfig::default().direct_retry;
    let upgraded = sim.run_until_cond(sim.now() + retry + Duration::from_secs(5), STEP, |s| {
        via_hub.iter().all(|&i| s.relayed(i, nat) == Some(false))
    });
    assert!(
        upgraded.is_some(),
        "still relayed: {:?}",
        via_hub
            .iter()
            .filter(|&&i| sim.relayed(i, nat) != Some(false))
            .collect::<Vec<_>>()
    );
    // Both ends use the direct connection, and the realm stays whole.
    for &i in &via_hub {
        assert_eq!(sim.relayed(nat, i), Some(false));
        assert_eq!(
            sim.core(i).connection(&sim.node_id(nat)),
            sim.core(nat).connection(&sim.node_id(i))
        );
    }
    assert!(all_alive(&sim));
}

/// A short partition, healed around the moment the two sides declare each other down (each side
/// may declare the other down after the heal, from suspicions raised during the cut): the realm
/// is whole again soon after, whatever the cut's length.
#[test]
fn a_short_partition_heals_whatever_its_length() {
    for cut_ms in (2000..=9000).step_by(500) {
        let mut sim = CoreSim::edges(4, 7, false);
        sim.seed_full_view();
        sim.run_until(Duration::from_secs(5));
        sim.partition(&[0, 1], &[2, 3]);
        let cut = sim.now();
        sim.run_until(cut + Duration::from_millis(cut_ms));
        sim.heal();
        let healed = sim.now();
        let whole = sim.run_until_cond(healed + Duration::from_secs(60), STEP, |s| {
            (0..4).all(|v| s.count_seeing(v, &[PeerState::Alive]) == 3)
        });
        let took = whole.map(|t| t - healed);

        eprintln!("cut {cut_ms} ms: whole again after {took:?}");
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(20)),
            "cut {cut_ms} ms: {took:?}"
        );
    }
}
