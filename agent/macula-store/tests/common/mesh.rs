//! A realm of real `MeshNode`s on loopback (QUIC, in this process) announcing storage, for the
//! mesh transfer test and the mesh storage bench.

use std::sync::Arc;
use std::time::{Duration, Instant};

use macula_core::NodeKey;
use macula_mesh::membership::{Capacity, FailureDomains, MembershipConfig};
use macula_mesh::node::{Bootstrap, MeshNode, NodeConfig, PeerState};
use macula_mesh::realm::{Admission, CertBody, RealmKey, Role};
use macula_mesh::transport::{TransportParams, unix_now};

fn node(
    realm: &RealmKey,
    seed: u8,
    count: usize,
    quota: u64,
    bootstrap: Vec<Bootstrap>,
) -> MeshNode {
    let key = NodeKey::from_seed([seed; 32]);
    let cert = realm.issue(CertBody {
        realm: realm.id(),
        node: key.node_id(),
        role: Role::Edge,
        name: format!("n{seed}"),
        not_before: unix_now() - 60,
        expires: unix_now() + 3600,
    });
    let adm = Arc::new(Admission::new(key.node_id(), cert, unix_now()).unwrap());
    MeshNode::start(
        &key,
        adm,
        NodeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: vec![],
            bootstrap,
            transport: TransportParams::default(),
            membership: MembershipConfig::lan(count as u32),
            overlay_key: None,
            capacity: Capacity {
                storage_total: quota,
                storage_free: quota,
            },
            domains: FailureDomains::default(),
            state_dir: None,
            set_clock: false,
            ntp: Vec::new(),
        },
    )
    .unwrap()
}

/// Starts `count` nodes (keys from seeds 1..=count) of the realm with key seed `realm_seed`, each
/// offering `quota` bytes, and waits (60 s at most) until every node sees every other alive.
pub async fn realm(realm_seed: u8, count: usize, quota: u64) -> Vec<Arc<MeshNode>> {
    let realm = RealmKey::from_seed([realm_seed; 32]);
    let first = node(&realm, 1, count, quota, vec![]);
    let boot = vec![Bootstrap {
        node: Some(first.id()),
        addr: first.local_addr(),
    }];
    let mut nodes = vec![Arc::new(first)];
    for seed in 2..=count as u8 {
        nodes.push(Arc::new(node(&realm, seed, count, quota, boot.clone())));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !nodes.iter().all(|n| {
        n.peers()
            .iter()
            .filter(|p| p.state == PeerState::Alive)
            .count()
            == count - 1
    }) {
        assert!(Instant::now() < deadline, "the mesh did not form");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    nodes
}
