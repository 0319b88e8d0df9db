//! Coding chosen for the realm's size: five real `maculad` with `[storage] k` and `m` unset.
//! A put from standard input (`maculactl put -`) is coded 2+2 with five storage nodes and reads
//! back; with two nodes stopped the next put is coded 2+1 for the three left and reads back too,
//! and the first object still reads (each object keeps its own coding).

use std::time::Duration;

use macula_testkit::check::{ok, wait_until};
use macula_testkit::realm::{AgentRealm, RealmNode as Node};

fn coding(n: &Node, cap: &str) -> (u64, u64) {
    let stat: serde_json::Value =
        serde_json::from_str(&ok(&n.agent.ctl(&["storage", "stat", cap, "--json"]))).unwrap();
    (stat["k"].as_u64().unwrap(), stat["m"].as_u64().unwrap())
}

fn get(n: &Node, cap: &str, dir: &std::path::Path) -> Vec<u8> {
    let out = dir.join("out");
    ok(&n
        .agent
        .ctl(&["get", cap, "-o", out.to_str().unwrap(), "-q"]));
    std::fs::read(&out).unwrap()
}

#[test]
fn puts_choose_k_and_m_from_the_storage_nodes_and_read_from_stdin() {
    let mut nodes = AgentRealm::new(5).auto_coding().start();
    let dir = tempfile::tempdir().unwrap();
    let status = ok(&nodes[0].agent.ctl(&["storage", "status"]));
    assert!(
        status.contains("coding:     2+2") && status.contains("chosen at each put"),
        "{status}"
    );

    let first: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
    let put = nodes[1].agent.ctl_stdin(&["put", "-q", "-"], &first);
    assert!(put.status.success(), "{put:?}");
    let cap1 = String::from_utf8(put.stdout).unwrap().trim().to_string();
    assert_eq!(coding(&nodes[0], &cap1), (2, 2));
    assert_eq!(get(&nodes[2], &cap1, dir.path()), first);

    // Two nodes stop: the next put sees three storage nodes.
    for n in &mut nodes[3..] {
        n.agent.stop(Duration::from_secs(10));
    }
    wait_until("node 1 sees two storage nodes besides itself", 30, || {
        let s: serde_json::Value =
            serde_json::from_str(&ok(&nodes[1].agent.ctl(&["storage", "status", "--json"])))
                .unwrap();
        s["stats"]["nodes"] == 3 && s["stats"]["k"] == 2 && s["stats"]["m"] == 1
    });
    let second = b"a small object, put when the realm had three storage nodes\n".repeat(1000);
    let put = nodes[1].agent.ctl_stdin(&["put", "-q", "-"], &second);
    assert!(put.status.success(), "{put:?}");
    let cap2 = String::from_utf8(put.stdout).unwrap().trim().to_string();
    assert_eq!(coding(&nodes[0], &cap2), (2, 1));
    assert_eq!(get(&nodes[0], &cap2, dir.path()), second);
    // The first object (2+2) still reads with two of its holders down.
    assert_eq!(get(&nodes[0], &cap1, dir.path()), first);

    // An empty standard input is an empty object.
    let put = nodes[2].agent.ctl_stdin(&["put", "-q", "-"], b"");
    assert!(put.status.success(), "{put:?}");
    let cap3 = String::from_utf8(put.stdout).unwrap().trim().to_string();
    assert_eq!(get(&nodes[1], &cap3, dir.path()), b"");
}
