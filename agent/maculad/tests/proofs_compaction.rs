//! Ledger compaction (docs/proofs.md §5.4) on three real `maculad` (loopback, private buses),
//! 2-second epochs and a 3-epoch retention window: the members vote for the epoch summaries over
//! `macula/ledger-summary` and drop the summarized records, so the number of records held and the
//! copy on disk stop growing while the epochs go on; every node keeps the same head and balances.
//! A node stopped for longer than the window catches up with the certified summary from a pull.

use std::time::Duration;

use macula_testkit::check::{ok, wait_until, wait_until_ok};
use macula_testkit::realm::{AgentRealm, RealmNode as Node};

const PROOFS: &str = "[proofs]\nenabled = true\ncapacity_steps = 65536\ncapacity_segments = 16\n\
    capacity_deadline_ms = 5000\nledger_retention_epochs = 3\n\
    [proofs.rewards]\nepoch_s = 2\n\
    [proofs.spread]\nmin_interval_ms = 500\n";

fn status(n: &Node) -> serde_json::Value {
    serde_json::from_str(&ok(&n.agent.ctl(&["proofs", "status", "--json"]))).unwrap()
}

/// `maculactl ledger`: balances and standing per node.
fn balances(n: &Node) -> serde_json::Value {
    serde_json::from_str(&ok(&n.agent.ctl(&["ledger", "--json"]))).unwrap()
}

const COMPACTED: &str = "ledger compacted into a certified epoch summary";

#[test]
fn the_ledger_stops_growing_and_a_node_back_after_the_window_catches_up() {
    let mut nodes = AgentRealm::new(3)
        .storage_extra(|_| PROOFS.to_string())
        .start();
    let took = wait_until("every node compacted its ledger", 60, || {
        nodes.iter().all(|n| n.agent.log().contains(COMPACTED))
    });
    eprintln!("compacted after {took:?}");
    let file = |n: &Node| n.agent.state_dir().join("ledger");
    // Eight more epochs: records held and the copy on disk stay within the window's worth.
    let first_epoch = status(&nodes[0])["epoch"].as_u64().unwrap();
    let (mut most_records, mut most_bytes) = (0, 0);
    while status(&nodes[0])["epoch"].as_u64().unwrap() < first_epoch + 8 {
        for n in &nodes {
            most_records = most_records.max(status(n)["records"].as_u64().unwrap());
            most_bytes = most_bytes.max(std::fs::metadata(file(n)).map_or(0, |m| m.len()));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    // Two records (capacity, storage) per node and epoch at most; the window and the epochs
    // being voted on and written.
    assert!(
        most_records <= 2 * 3 * (3 + 3),
        "{most_records} records held"
    );
    eprintln!("at most {most_records} records, {most_bytes} B on disk over 8 epochs");
    wait_until_ok("every node has the same head and balances", 20, || {
        let heads: Vec<_> = nodes.iter().map(|n| status(n)["head"].clone()).collect();
        let bals: Vec<_> = nodes.iter().map(balances).collect();
        if heads.iter().all(|h| *h == heads[0]) && bals.iter().all(|b| *b == bals[0]) {
            Ok(())
        } else {
            Err(format!("heads {heads:?}"))
        }
    });

    // n2 away for longer than the window: the others compact past what it holds.
    let (exit, _) = nodes[2].agent.stop(Duration::from_secs(10));
    assert!(exit.success(), "{exit}\n{}", nodes[2].agent.log());
    std::thread::sleep(Duration::from_secs(14));
    let n2 = &mut nodes[2];
    n2.agent.start(&n2.bus).unwrap();
    wait_until("n2 adopted the certified summary", 30, || {
        nodes[2]
            .agent
            .log()
            .lines()
            .any(|l| l.contains("certified ledger summary received") && l.contains("adopted=true"))
    });
    wait_until_ok("n2 caught up", 30, || {
        let (h0, h2) = (
            status(&nodes[0])["head"].clone(),
            status(&nodes[2])["head"].clone(),
        );
        let (b0, b2) = (balances(&nodes[0]), balances(&nodes[2]));
        if h0 == h2 && b0 == b2 {
            Ok(())
        } else {
            Err(format!("n0 {h0} n2 {h2}"))
        }
    });
    for n in &nodes {
        let log = n.agent.log();
        assert!(!log.contains("refused a certified ledger summary"), "{log}");
        assert!(!log.contains("another ledger summary"), "{log}");
    }
}
