//! Deterministic simulation of pub/sub: acknowledged subscriptions, Plumtree broadcast,
//! exactly-once delivery under packet loss.

use std::collections::HashMap;
use std::time::Duration;

use macula_mesh::sim::{PubSubSim, Simulation};

#[test]
fn every_subscriber_gets_every_publication_exactly_once_despite_loss() {
    let n = 100;
    let mut sim = PubSubSim::new(n, 9);
    let subscribers: Vec<usize> = (0..n).filter(|i| i % 3 == 0).collect();
    for &s in &subscribers {
        sim.subscribe(s, "realm/alerts");
    }
    sim.subscribe(1, "realm/other");
    sim.run_until(Duration::from_secs(2));
    // Acknowledged subscribe: every peer acknowledged every subscription.
    for &s in &subscribers {
        assert_eq!(sim.acks[s], n - 1, "node {s} got all acks");
    }
    sim.net.loss = 0.05;
    // Two subscribed publishers and one that is not subscribed.
    let publishers = [0usize, 3, 50];
    let mut expected = Vec::new();
    for round in 0..20u8 {
        for &p in &publishers {
            let seq = sim.publish(p, "realm/alerts", vec![round; 100]);
            expected.push((sim.id(p), seq));
        }
        let t = sim.now() + Duration::from_millis(200);
        sim.run_until(t);
    }
    sim.run_until(sim.now() + Duration::from_secs(10));
    for i in 0..n {
        let mut got: HashMap<_, usize> = HashMap::new();
        for (p, s, _) in &sim.delivered[i] {
            *got.entry((*p, *s)).or_default() += 1;
        }
        if subscribers.contains(&i) {
            for id in &expected {
                assert_eq!(got.get(id), Some(&1), "node {i}, message {id:?}");
            }
            assert_eq!(got.len(), expected.len());
        } else {
            assert!(
                got.is_empty(),
                "node {i} is not subscribed but got messages"
            );
        }
    }
    let hops: Vec<u32> = subscribers
        .iter()
        .flat_map(|&i| sim.delivered[i].iter().map(|d| d.2))
        .collect();
    let max_hops = hops.iter().max().unwrap();
    let per_msg = sim.sent[0] as f64 / expected.len() as f64;
    println!(
        "{} subscribers, {} publications, 5 % loss: eager pushes {} ({per_msg:.1} per publication), \
         ihave {}, graft {}, prune {}; max hops {max_hops}",
        subscribers.len(),
        expected.len(),
        sim.sent[0],
        sim.sent[1],
        sim.sent[2],
        sim.sent[3]
    );
    // The eager tree is cheap: far below one push per subscriber pair.
    assert!(per_msg < 3.0 * subscribers.len() as f64);
}
