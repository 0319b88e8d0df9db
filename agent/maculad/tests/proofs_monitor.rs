//! The resource monitor on three real `maculad` (loopback, private buses), driven through
//! `maculactl` and D-Bus: every member learns every other's signed figures within seconds; a
//! change beyond the threshold (shards stored) reaches the others; reports are spread at a
//! bounded rate; `Node1.Resources` signals its changes; a forged report is refused.

use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use macula_bus::node::Node1Proxy;
use macula_testkit::check::{ok, wait_until};
use macula_testkit::realm::{AgentRealm, RealmNode as Node};

/// Spread at most every 500 ms, on a 1 % change, heartbeat 5 s.
const PROOFS: &str = "\n[proofs]\nenabled = true\n[proofs.spread]\nthreshold_permille = 10\n\
                      min_interval_ms = 500\nmax_interval_ms = 5000\n";

fn all_resources(n: &Node) -> Vec<serde_json::Value> {
    let v: serde_json::Value =
        serde_json::from_str(&ok(&n.agent.ctl(&["peers", "--resources", "--json"]))).unwrap();
    v.as_array().unwrap().clone()
}

fn report_of(n: &Node, id: &str) -> Option<serde_json::Value> {
    all_resources(n).into_iter().find(|r| r["node_id"] == id)
}

fn mem_total_here() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kib * 1024
}

#[test]
fn every_member_learns_every_others_resources() {
    let nodes = AgentRealm::new(3)
        .coded(2, 1)
        .storage_extra(|_| PROOFS.to_string())
        .start();
    let ids: Vec<String> = nodes.iter().map(Node::node_id).collect();

    // Every node holds a report of every node (itself included) within seconds.
    let took = wait_until("every node knows every node's resources", 15, || {
        nodes.iter().all(|n| {
            let rs = all_resources(n);
            ids.iter().all(|id| rs.iter().any(|r| &r["node_id"] == id))
        })
    });
    eprintln!("all reports known {took:?} after the realm formed");
    let mem = mem_total_here();
    for n in &nodes {
        for r in all_resources(n) {
            // All three run on this machine: the figures are this machine's.
            assert_eq!(r["mem_total"], mem, "{r}");
            assert!(r["processors"].as_u64().unwrap() >= 1, "{r}");
            assert!(r["seq"].as_u64().unwrap() > 0, "{r}");
            let sr = r["disk_reported"].as_u64().unwrap();
            assert!(sr > 0 && sr <= 268_435_456, "sR {sr} within the quota: {r}");
        }
    }
    // `node resources` is this node's own report.
    let own: serde_json::Value =
        serde_json::from_str(&ok(&nodes[1].agent.ctl(&["node", "resources", "--json"]))).unwrap();
    assert_eq!(own["node_id"], ids[1]);
    let table = ok(&nodes[0].agent.ctl(&["peers", "--resources"]));
    for n in &nodes {
        assert!(table.contains(&n.name), "{table}");
    }

    // Bounded rate: over 4 s, a node makes at most one report per 500 ms interval (+1).
    let seq = |n: &Node, id: &str| report_of(n, id).unwrap()["seq"].as_u64().unwrap();
    let (s0, t0) = (seq(&nodes[0], &ids[0]), Instant::now());
    std::thread::sleep(Duration::from_secs(4));
    let (s1, dt) = (seq(&nodes[0], &ids[0]), t0.elapsed());
    let bound = dt.as_millis() as u64 / 500 + 1;
    assert!(
        s1 - s0 <= bound,
        "{} reports in {dt:?}, at most {bound}",
        s1 - s0
    );

    // Node1.Resources signals a new report: shards stored on node 2 move its sT by more than
    // 1 % of sR, and the others see it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (before, changed) = rt.block_on(async {
        let conn = zbus::connection::Builder::address(nodes[2].bus.address())
            .unwrap()
            .build()
            .await
            .unwrap();
        let proxy = Node1Proxy::new(&conn).await.unwrap();
        let before = proxy.resources().await.unwrap();
        let mut changes = proxy.receive_resources_changed().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("blob");
        let data: Vec<u8> = (0..12u32 << 20)
            .map(|i| i.wrapping_mul(2_654_435_761).to_le_bytes()[3])
            .collect();
        std::fs::write(&file, &data).unwrap();
        ok(&nodes[0].agent.ctl(&["put", "-q", file.to_str().unwrap()]));
        let changed = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                let c = changes.next().await.expect("signal stream");
                let r = c.get().await.unwrap();
                if r.disk_taken > before.disk_taken {
                    return r;
                }
            }
        })
        .await
        .expect("a Resources change signal with the new sT");
        (before, changed)
    });
    assert!(changed.seq > before.seq);
    wait_until("the others see node 2's new sT", 10, || {
        [&nodes[0], &nodes[1]].iter().all(|n| {
            report_of(n, &ids[2])
                .is_some_and(|r| r["disk_taken"].as_u64() >= Some(changed.disk_taken))
        })
    });

    // A report that is not a signed report is refused and changes nothing.
    let held = report_of(&nodes[1], &ids[0]).unwrap()["seq"]
        .as_u64()
        .unwrap();
    ok(&nodes[0]
        .agent
        .ctl(&["pub", "macula/resources", "forged figures"]));
    wait_until("node 1 logs the refusal", 10, || {
        nodes[1].agent.log().contains("refused a resource report")
    });
    assert!(
        report_of(&nodes[1], &ids[0]).unwrap()["seq"]
            .as_u64()
            .unwrap()
            >= held
    );
}
