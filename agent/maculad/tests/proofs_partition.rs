//! The realm ledger across a partition, on four real `maculad` (one network namespace, each on
//! its own loopback port, private buses, 2 s epochs): an nft rule in the namespace cuts nodes
//! 0, 1 off from nodes 2, 3; both sides keep recording proofs their own way (their ledger heads
//! differ, each side holds records the other lacks); once the rule is removed every node's
//! ledger copy reaches the same head hash, holding every record either side wrote.
//! Needs root, iproute2 and nftables.

use std::collections::BTreeSet;

use macula_testkit::check::{ok, wait_until, wait_until_ok};
use macula_testkit::netns::Topology;
use macula_testkit::realm::{AgentRealm, RealmNode as Node};

/// Quarantine is out of reach (`max_failures`): challenges sent across the cut before the
/// other side is declared down are recorded as failures, which is not what this test is about.
const PROOFS: &str = "[proofs]\nenabled = true\ncapacity_steps = 65536\ncapacity_segments = 16\n\
    capacity_deadline_ms = 3000\nstorage_deadline_ms = 3000\nstorage_retries = 0\n\
    [proofs.rewards]\nepoch_s = 2\n\
    [proofs.quarantine]\nmax_failures = 1000\nwindow_epochs = 10\n";

fn head(n: &Node) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&n.agent.ctl(&["proofs", "status", "--json"]))).unwrap();
    v["head"].as_str().unwrap().to_string()
}

/// The records of `n`'s copy, each as its JSON text (comparable across nodes).
fn records(n: &Node) -> BTreeSet<String> {
    n.ledger_records().iter().map(|r| r.to_string()).collect()
}

#[test]
fn after_a_partition_heals_every_ledger_has_the_same_head() {
    let mut topo = Topology::new("prp");
    let ns = topo.add_ns("r");
    let nodes = AgentRealm::new(4)
        .coded(2, 1)
        .netns(ns)
        .storage_extra(|_| PROOFS.to_string())
        .start();
    let ports: Vec<u16> = nodes.iter().map(Node::mesh_port).collect();
    wait_until("every node holds a record", 20, || {
        nodes.iter().all(|n| !n.ledger_records().is_empty())
    });

    // Cut {0, 1} from {2, 3}: every datagram between the two sides' ports is dropped.
    let (a, b) = (
        format!("{}, {}", ports[0], ports[1]),
        format!("{}, {}", ports[2], ports[3]),
    );
    topo.nft(
        "r",
        &format!(
            "table inet cut {{ chain out {{ type filter hook output priority 0;\n\
             udp sport {{ {a} }} udp dport {{ {b} }} drop\n\
             udp sport {{ {b} }} udp dport {{ {a} }} drop\n}}\n}}\n"
        ),
    );
    let cut = std::time::Instant::now();
    let at_cut: Vec<BTreeSet<String>> = nodes.iter().map(records).collect();
    // Both sides keep recording, each side's new records unknown to the other.
    let apart = wait_until_ok("both sides record what the other does not see", 40, || {
        let now: Vec<BTreeSet<String>> = nodes.iter().map(records).collect();
        for (side, other) in [((0, 1), (2, 3)), ((2, 3), (0, 1))] {
            let new: BTreeSet<&String> = now[side.0]
                .difference(&at_cut[side.0])
                .filter(|r| now[side.1].contains(*r))
                .collect();
            let unseen = new
                .iter()
                .filter(|r| !now[other.0].contains(**r) && !now[other.1].contains(**r))
                .count();
            if unseen < 4 {
                return Err(format!(
                    "side {side:?}: {unseen} new records the other side lacks"
                ));
            }
        }
        if head(&nodes[0]) == head(&nodes[2]) {
            return Err("the two sides show the same head".into());
        }
        Ok(())
    });
    println!("both sides recorded apart {apart:?} after the cut");
    let apart_records: Vec<BTreeSet<String>> = nodes.iter().map(records).collect();
    let alive: Vec<usize> = nodes.iter().map(Node::alive_peers).collect();
    println!("members each node sees alive at the heal: {alive:?}");

    // Heal: every copy converges on the same head (between two epochs' records), holding
    // every record written on either side.
    topo.exec("r", &["nft", "delete", "table", "inet", "cut"]);
    let rejoined = wait_until("every node sees every other alive again", 60, || {
        nodes.iter().all(|n| n.alive_peers() == 3)
    });
    println!("membership whole again {rejoined:?} after the heal");
    let healed = wait_until_ok("every ledger has the same head", 60, || {
        let heads: Vec<String> = nodes.iter().map(head).collect();
        if heads.iter().any(|h| *h != heads[0]) {
            return Err(format!("heads {heads:?}"));
        }
        Ok(())
    });
    println!(
        "same head everywhere {healed:?} after that (partitioned for {:?})",
        cut.elapsed() - healed - rejoined
    );
    let all: Vec<BTreeSet<String>> = nodes.iter().map(records).collect();
    for (n, held) in nodes.iter().zip(&all) {
        for before in &apart_records {
            let lacks = before.difference(held).count();
            assert_eq!(lacks, 0, "{} lacks {lacks} records written apart", n.name);
        }
    }
}
