//! Resident memory of one mesh node with 20 peers, idle (goal ≤ 16 MiB). The peers are child
//! processes of this binary (env `MACULA_RSS_PEER`), so only the measured node's memory counts.
//! Run: `cargo bench -p macula-mesh --bench idle_rss`.

use std::process::{Child, Command};
use std::time::Duration;

use macula_mesh::membership::MembershipConfig;
use macula_mesh::node::{Bootstrap, MeshNode, PeerState};
use macula_testkit::realm::Realm;

const PEERS: usize = 20;

fn node(seed: u8, bootstrap: Vec<Bootstrap>) -> MeshNode {
    Realm::from_seed(77)
        .member(seed)
        .bootstrap(bootstrap)
        .membership(MembershipConfig::lan(PEERS as u32 + 1))
        .start()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Ok(spec) = std::env::var("MACULA_RSS_PEER") {
        let (seed, contact) = spec.split_once(' ').unwrap();
        let seed: u8 = seed.parse().unwrap();
        let contact: Bootstrap = contact.parse().unwrap();
        rt.block_on(async {
            let _n = node(seed, vec![contact]);
            tokio::time::sleep(Duration::from_secs(120)).await;
        });
        return;
    }
    rt.block_on(async {
        let before = rss_kib();
        let hub = node(1, vec![]);
        let contact = format!("{}@{}", hub.id(), hub.local_addr());
        let exe = std::env::current_exe().unwrap();
        let _children = Children(
            (0..PEERS)
                .map(|i| {
                    Command::new(&exe)
                        .env("MACULA_RSS_PEER", format!("{} {contact}", i + 2))
                        .spawn()
                        .unwrap()
                })
                .collect(),
        );
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while hub.peers().iter().filter(|p| p.state == PeerState::Alive).count() < PEERS {
            assert!(tokio::time::Instant::now() < deadline, "peers did not join");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        tokio::time::sleep(Duration::from_secs(15)).await;
        let alive = hub.peers().iter().filter(|p| p.state == PeerState::Alive).count();
        let rss = rss_kib();
        println!(
            "idle RSS with {alive} peers: {:.1} MiB (process before the node: {:.1} MiB; goal ≤ 16 MiB)",
            rss as f64 / 1024.0,
            before as f64 / 1024.0
        );
        hub.shutdown().await;
    });
}
