//! Deterministic simulations of SWIM membership (virtual time, seeded RNG).

use std::time::Duration;

use foca::State;
use macula_mesh::membership::{Capacity, Event, MembershipConfig};
use macula_mesh::sim::{MembershipSim, Simulation};

const SEC: Duration = Duration::from_secs(1);
const STEP: Duration = Duration::from_millis(100);

fn everyone_sees_everyone_alive(sim: &MembershipSim) -> bool {
    (0..sim.len()).filter(|&i| sim.is_up(i)).all(|i| {
        sim.membership(i).num_active() == sim.live_count() - 1
            && sim
                .membership(i)
                .members()
                .all(|(_, s)| s != State::Suspect)
    })
}

#[test]
fn cluster_forms_through_one_seed_with_metadata_then_detects_a_crash() {
    let n = 24;
    let mut sim = MembershipSim::new(n, MembershipConfig::lan(n as u32), 7, true);
    for i in 1..n {
        sim.join(i, 0);
    }
    let formed = sim
        .run_until_cond(60 * SEC, STEP, everyone_sees_everyone_alive)
        .expect("cluster formed within 60 s");
    // Every node learnt every other node's signed metadata through gossip.
    let all_meta = sim
        .run_until_cond(formed + 30 * SEC, STEP, |s| {
            (0..n).all(|i| {
                (0..n)
                    .filter(|&j| j != i)
                    .all(|j| s.membership(i).meta(&s.node_id(j)).is_some())
            })
        })
        .expect("metadata spread");
    assert_eq!(
        sim.membership(3).meta(&sim.node_id(9)).unwrap().meta.name,
        "sim-9"
    );
    eprintln!("formed at {formed:?}, metadata everywhere at {all_meta:?}");

    let victim = 5;
    sim.kill(victim);
    let killed_at = sim.now();
    let everyone_knows = sim
        .run_until_cond(killed_at + 60 * SEC, STEP, |s| {
            s.count_seeing(victim, &[State::Down]) == s.live_count()
        })
        .expect("crash detected everywhere within 60 s");
    let downs = sim
        .log
        .iter()
        .filter(|(t, _, e)| {
            *t >= killed_at && matches!(e, Event::Down(m) if m.node == sim.node_id(victim))
        })
        .count();
    assert_eq!(downs, n - 1, "each live node reports the crash once");
    eprintln!(
        "crash known everywhere {:?} after the kill",
        everyone_knows - killed_at
    );

    // No false positives: nobody else went down.
    assert!(
        !sim.log
            .iter()
            .any(|(_, _, e)| matches!(e, Event::Down(m) if m.node != sim.node_id(victim)))
    );

    // The node comes back with a new generation and is accepted again.
    sim.restart(victim, 0);
    let back = sim
        .run_until_cond(sim.now() + 60 * SEC, STEP, |s| {
            s.count_seeing(victim, &[State::Alive]) == s.live_count() - 1
        })
        .expect("restarted node rejoined");
    let id = sim.membership(1).state_of(&sim.node_id(victim)).unwrap().0;
    assert_eq!(id.generation, 1);
    eprintln!("rejoined at {back:?}");
}

#[test]
fn metadata_updates_reach_every_member_and_the_newest_wins() {
    let n = 24;
    // Anti-entropy only every 60 s: the update must spread by itself.
    let mut config = MembershipConfig::lan(n as u32);
    config.refresh = 60 * SEC;
    let mut sim = MembershipSim::new(n, config, 13, true);
    sim.net.loss = 0.02;
    sim.seed_full_view();
    sim.run_until_cond(60 * SEC, STEP, |s| {
        (0..n).all(|i| {
            (0..n)
                .filter(|&j| j != i)
                .all(|j| s.membership(i).meta(&s.node_id(j)).is_some())
        })
    })
    .expect("metadata spread");
    // Failure-domain labels travel in the signed metadata.
    let seen = sim.membership(0).meta(&sim.node_id(6)).unwrap().meta;
    assert_eq!(seen.domains.site.as_str(), "site-2");
    assert_eq!(seen.domains.power.as_str(), "default");

    // Node 6 fills up: two updates at the same instant, the second one must win everywhere.
    let who = 6;
    let id = sim.node_id(who);
    let cap = |free| Capacity {
        storage_total: 1 << 30,
        storage_free: free,
    };
    let start = sim.now();
    let v1 = sim
        .update_meta(who, |m| m.capacity = cap(900 << 20))
        .unwrap();
    let v2 = sim
        .update_meta(who, |m| m.capacity = cap(800 << 20))
        .unwrap();
    assert!(v2 > v1, "versions strictly increase ({v1}, {v2})");
    assert_eq!(sim.update_meta(who, |m| m.capacity = cap(800 << 20)), None);
    let everywhere = sim
        .run_until_cond(start + 5 * SEC, STEP, |s| {
            (0..n).filter(|&i| i != who).all(|i| {
                s.membership(i)
                    .meta(&id)
                    .is_some_and(|m| m.meta.capacity == cap(800 << 20) && m.meta.version == v2)
            })
        })
        .expect("the update reached every member within 5 s");
    eprintln!(
        "update known everywhere {:?} after it was made",
        everywhere - start
    );
    // Each member reported the final value exactly once, and never went back to an older one.
    for i in (0..n).filter(|&i| i != who) {
        let versions: Vec<u64> = sim
            .log
            .iter()
            .filter(|(t, j, _)| *t >= start && *j == i)
            .filter_map(|(_, _, e)| match e {
                Event::Meta(sm) if sm.meta.node == id => Some(sm.meta.version),
                _ => None,
            })
            .collect();
        assert_eq!(versions.last(), Some(&v2), "node {i}: {versions:?}");
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "node {i}: {versions:?}"
        );
    }
    // The anti-entropy refresh keeps re-spreading the newest version, never an older one.
    sim.run_until(sim.now() + 70 * SEC);
    assert!(
        (0..n)
            .filter(|&i| i != who)
            .all(|i| { sim.membership(i).meta(&id).unwrap().meta.version == v2 })
    );
}

#[test]
fn partition_drives_members_down_and_healing_reconverges() {
    let n = 16;
    let mut sim = MembershipSim::new(n, MembershipConfig::lan(n as u32), 11, false);
    sim.seed_full_view();
    sim.run_until(5 * SEC);
    assert!(everyone_sees_everyone_alive(&sim));
    let left: Vec<usize> = (0..n / 2).collect();
    let right: Vec<usize> = (n / 2..n).collect();
    sim.partition(&left, &right);
    // Lifeguard: probes across the cut fail, so local health degrades somewhere (looked at
    // while the sides time each other out: once they are down, acks restore it).
    let mut degraded = false;
    sim.run_until_cond(sim.now() + 120 * SEC, STEP, |s| {
        degraded |= (0..n).any(|i| s.membership(i).local_health() > 0);
        left.iter().all(|&i| {
            right.iter().all(|&j| {
                s.membership(i)
                    .state_of(&s.node_id(j))
                    .is_some_and(|(_, st)| st == State::Down)
            })
        })
    })
    .expect("each side declared the other down");
    assert!(degraded);
    sim.heal();
    // Down members rejoin via periodic announces to down members and identity renewal.
    let healed = sim
        .run_until_cond(sim.now() + 300 * SEC, STEP, everyone_sees_everyone_alive)
        .expect("partition healed");
    eprintln!("healed at {healed:?}");
}

#[test]
fn revocation_spreads_and_the_node_is_shut_out() {
    let n = 30;
    let mut sim = MembershipSim::new(n, MembershipConfig::lan(n as u32), 3, false);
    sim.seed_full_view();
    sim.run_until(3 * SEC);
    let victim = 7;
    sim.revoke(0, victim);
    let victim_id = sim.node_id(victim);
    sim.run_until_cond(sim.now() + 30 * SEC, STEP, |s| {
        (0..n)
            .filter(|&i| i != victim)
            .all(|i| s.membership(i).is_revoked(&victim_id))
    })
    .expect("revocation reached everyone");
    // Everyone declares it down, and it stays down although it keeps running and probing.
    sim.run_until(sim.now() + 60 * SEC);
    assert_eq!(sim.count_seeing(victim, &[State::Down]), n - 1);
    let revoked_events = sim
        .log
        .iter()
        .filter(|(_, i, e)| {
            *i != victim && matches!(e, Event::Revoked(r) if r.body.node == victim_id)
        })
        .count();
    assert_eq!(
        revoked_events,
        n - 1,
        "every node but the victim reports it once (the issuer too)"
    );
}

#[test]
fn lossy_network_causes_no_false_deaths() {
    let n = 40;
    let mut sim = MembershipSim::new(n, MembershipConfig::lan(n as u32), 5, false);
    sim.net.loss = 0.05;
    sim.seed_full_view();
    sim.run_until(120 * SEC);
    let false_downs = sim
        .log
        .iter()
        .filter(|(_, _, e)| matches!(e, Event::Down(_)))
        .count();
    assert_eq!(
        false_downs, 0,
        "5 % loss must not get live members declared dead"
    );
    assert!(
        everyone_sees_everyone_alive(&sim)
            || sim
                .run_until_cond(sim.now() + 20 * SEC, STEP, everyone_sees_everyone_alive)
                .is_some()
    );
}

/// A board without a real-time clock restarts with its clock hours behind, then at 1970: each
/// time, the metadata it comes back with (new address, new capacity) replaces the old one at
/// every peer at once, and its new generation wins over its former self.
#[test]
fn a_restart_with_the_clock_behind_still_publishes_newer_metadata() {
    const HOUR_MS: i64 = 3_600_000;
    // The realm's clocks read about 2027; the sim's virtual time starts at 0.
    const REALM_CLOCK: i64 = 1_800_000_000_000;
    let n = 8;
    let mut sim = MembershipSim::new(n, MembershipConfig::lan(n as u32), 24, true);
    for i in 0..n {
        sim.set_clock_offset(i, REALM_CLOCK);
    }
    sim.seed_full_view();
    sim.run_until(5 * SEC);
    let who = 3;
    let id = sim.node_id(who);
    let addr = |port: u16| macula_mesh::membership::UplinkAddr {
        uplink: "eth0".into(),
        addr: std::net::SocketAddr::from(([10, 0, 0, 3], port)),
    };
    let cap = |free| Capacity {
        storage_total: 1 << 30,
        storage_free: free,
    };
    let everyone_has = |s: &MembershipSim, port: u16, free: u64| {
        (0..s.len()).filter(|&i| i != who).all(|i| {
            s.membership(i)
                .meta(&id)
                .is_some_and(|m| m.meta.addrs == [addr(port)] && m.meta.capacity == cap(free))
        })
    };
    // First life under the daemon's clock handling, with the right time; a run-time update.
    sim.restart_with_clock(who, 0, REALM_CLOCK, |m| m.addrs = vec![addr(1000)]);
    let disk = sim
        .persisted_clock(who)
        .expect("state persisted before use");
    sim.update_meta(who, |m| m.capacity = cap(500)).unwrap();
    let t = sim.now();
    sim.run_until_cond(t + 5 * SEC, STEP, |s| everyone_has(s, 1000, 500))
        .expect("first life's metadata everywhere");
    let mut last_version = sim.membership(who).own_meta().unwrap().meta.version;
    let mut last_generation = sim.membership(who).id().generation;
    assert!(disk.ceiling >= last_version);

    for (life, (offset, port, free)) in [
        // Three hours behind (the last saved time of a board that was off).
        (REALM_CLOCK - 3 * HOUR_MS, 2000, 400),
        // 1970: nothing saved at all.
        (i64::MIN / 2, 3000, 300),
    ]
    .into_iter()
    .enumerate()
    {
        sim.kill(who);
        sim.run_until(sim.now() + 2 * SEC);
        sim.restart_with_clock(who, 0, offset, |m| {
            m.addrs = vec![addr(port)];
            m.capacity = cap(free);
        });
        assert!(sim.wall_ms(who) < u64::try_from(REALM_CLOCK).unwrap() - 2 * 3_600_000);
        let own = sim.membership(who).own_meta().unwrap().meta.clone();
        let generation = sim.membership(who).id().generation;
        assert!(
            own.version > last_version && generation > last_generation,
            "life {life}: version {} after {last_version}, generation {generation} after \
             {last_generation}",
            own.version
        );
        let restarted = sim.now();
        let seen = sim
            .run_until_cond(restarted + 5 * SEC, STEP, |s| everyone_has(s, port, free))
            .unwrap_or_else(|| panic!("life {life}: peers kept the old metadata"));
        eprintln!(
            "life {life}: clock {} ms, new metadata everywhere {:?} after the restart",
            sim.wall_ms(who),
            seen - restarted
        );
        // Peers see the new generation alive.
        let gen_alive = sim
            .run_until_cond(sim.now() + 10 * SEC, STEP, |s| {
                (0..s.len()).filter(|&i| i != who).all(|i| {
                    s.membership(i).state_of(&id) == Some((s.membership(who).id(), State::Alive))
                })
            })
            .is_some();
        assert!(
            gen_alive,
            "life {life}: the new generation is alive everywhere"
        );
        // A run-time update under the wrong clock wins too.
        let v = sim
            .update_meta(who, |m| m.capacity = cap(free - 1))
            .unwrap();
        assert!(v > own.version);
        let t = sim.now();
        sim.run_until_cond(t + 5 * SEC, STEP, |s| everyone_has(s, port, free - 1))
            .unwrap_or_else(|| panic!("life {life}: run-time update not accepted"));
        last_version = v;
        last_generation = generation;
    }
}

/// Lifeguard's dynamic suspicion timeout in a 6-node realm with the daemon's configuration
/// (`lan(64)`): under 5 % packet loss no live member is ever declared down, and a killed member
/// is declared down by every live member within 5 s, for several seeds.
#[test]
fn six_node_realm_declares_a_crash_down_everywhere_within_5s_under_5pct_loss() {
    for seed in 1..=8 {
        let mut sim = MembershipSim::new(6, MembershipConfig::lan(64), seed, false);
        sim.net.loss = 0.05;
        sim.seed_full_view();
        sim.run_until(60 * SEC);
        let victim = (seed as usize) % 6;
        sim.kill(victim);
        let killed = sim.now();
        let down = sim
            .run_until_cond(killed + 30 * SEC, Duration::from_millis(50), |s| {
                s.count_seeing(victim, &[State::Down]) == s.live_count()
            })
            .expect("declared down");
        let false_downs = sim
            .log
            .iter()
            .filter(|(_, _, e)| matches!(e, Event::Down(m) if m.node != sim.node_id(victim)))
            .count();
        eprintln!(
            "seed {seed}: down everywhere {:?} after the crash",
            down - killed
        );
        assert_eq!(
            false_downs, 0,
            "seed {seed}: a live member was declared down"
        );
        assert!(
            down - killed <= 5 * SEC,
            "seed {seed}: down everywhere only {:?} after the crash",
            down - killed
        );
    }
}
