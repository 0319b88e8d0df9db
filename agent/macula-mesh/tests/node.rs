//! The tokio shell on loopback: real QUIC endpoints, SWIM over datagrams, in one process.

use std::sync::Arc;
use std::time::Duration;

use macula_core::NodeKey;
use macula_mesh::membership::{Capacity, FailureDomains, Label, MembershipConfig};
use macula_mesh::node::{Bootstrap, MeshNode, PeerState};
use macula_mesh::realm::Role;
use macula_mesh::transport::unix_now;
use macula_testkit::realm::{Realm, contact, formed, wait_async};

/// Node `seed` of `realm`: a hub for seed 1, else an edge; site `site-<seed % 2>`, power
/// `ups-<seed>`, storage 1 GiB of which `seed` MiB are used.
fn start(realm: &Realm, seed: u8, name: &str, bootstrap: Vec<Bootstrap>) -> MeshNode {
    start_expiring(realm, seed, name, bootstrap, unix_now() + 3600)
}

/// As [`start`], with a certificate that expires at `expires` (unix seconds).
fn start_expiring(
    realm: &Realm,
    seed: u8,
    name: &str,
    bootstrap: Vec<Bootstrap>,
    expires: u64,
) -> MeshNode {
    realm
        .member(seed)
        .role(if seed == 1 { Role::Hub } else { Role::Edge })
        .name(name)
        .expires(expires)
        .bootstrap(bootstrap)
        .membership(MembershipConfig::lan(5))
        .capacity(Capacity {
            storage_total: 1 << 30,
            storage_free: (1 << 30) - (u64::from(seed) << 20),
        })
        .config(|c| {
            c.overlay_key = Some([seed; 32]);
            c.domains = FailureDomains {
                site: Label::new(format!("site-{}", seed % 2)).unwrap(),
                power: Label::new(format!("ups-{seed}")).unwrap(),
            };
        })
        .start()
}

async fn wait_for(what: &str, secs: u64, cond: impl FnMut() -> bool) {
    assert!(
        wait_async(Duration::from_secs(secs), cond).await,
        "timed out waiting for {what}"
    );
}

/// The hub (seed 1) and edges `2..=last` bootstrapped from it, once every node sees every other
/// alive with its metadata (20 s at most).
async fn hub_and_edges(realm: &Realm, last: u8) -> (MeshNode, Vec<MeshNode>) {
    let hub = start(realm, 1, "hub", vec![]);
    let contact = contact(&hub);
    let edges: Vec<MeshNode> = (2..=last)
        .map(|i| start(realm, i, &format!("edge-{i}"), vec![contact.clone()]))
        .collect();
    let others = usize::from(last) - 1;
    wait_for("the realm to form", 20, || {
        formed(&hub, others) && edges.iter().all(|n| formed(n, others))
    })
    .await;
    (hub, edges)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_a_realm_and_detect_a_crash_and_a_leave() {
    let realm = Realm::from_seed(9);
    let hub = start(&realm, 1, "hub", vec![]);
    let contact = contact(&hub);
    let edges: Vec<MeshNode> = (2..=5)
        .map(|i| start(&realm, i, &format!("edge-{i}"), vec![contact.clone()]))
        .collect();
    let mut changes = hub.watch_peers();

    let all_alive = |n: &MeshNode| {
        let p = n.peers();
        p.len() == 4
            && p.iter()
                .all(|p| p.state == PeerState::Alive && p.meta.is_some())
    };
    wait_for("the realm to form", 20, || {
        all_alive(&hub) && edges.iter().all(all_alive)
    })
    .await;
    let seen_from_edge = edges[0].peers();
    let hub_info = seen_from_edge.iter().find(|p| p.id == hub.id()).unwrap();
    let meta = hub_info.meta.as_ref().unwrap();
    assert_eq!(meta.name, "hub");
    assert_eq!(meta.role, Role::Hub);
    assert_eq!(meta.overlay_key, Some([1; 32]));
    assert_eq!(meta.addrs[0].addr, hub.local_addr());
    assert!(changes.try_recv().is_ok(), "peer changes were signalled");

    // Crash: no goodbye. Peers suspect it, then declare it down.
    let mut edges = edges.into_iter();
    let crashed = edges.next().unwrap();
    let crashed_id = crashed.id();
    crashed.abort().await;
    let rest: Vec<MeshNode> = edges.collect();
    let state_of = |n: &MeshNode, id| n.peers().into_iter().find(|p| p.id == id).map(|p| p.state);
    wait_for("the crash to be detected", 30, || {
        state_of(&hub, crashed_id) == Some(PeerState::Down)
            && rest
                .iter()
                .all(|n| state_of(n, crashed_id) == Some(PeerState::Down))
    })
    .await;

    // Graceful leave: known down quickly.
    let mut rest = rest.into_iter();
    let leaver = rest.next().unwrap();
    let leaver_id = leaver.id();
    leaver.shutdown().await;
    let rest: Vec<MeshNode> = rest.collect();
    wait_for("the leave to be known", 5, || {
        state_of(&hub, leaver_id) == Some(PeerState::Down)
            && rest
                .iter()
                .all(|n| state_of(n, leaver_id) == Some(PeerState::Down))
    })
    .await;
    for n in rest {
        n.shutdown().await;
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_cuts_a_member_off() {
    let realm = Realm::from_seed(9);
    let hub = start(&realm, 1, "hub", vec![]);
    let contact = Bootstrap {
        node: None,
        addr: hub.local_addr(),
    };
    let a = start(&realm, 2, "a", vec![contact.clone()]);
    let b = start(&realm, 3, "b", vec![contact]);
    let alive = |n: &MeshNode, k: usize| {
        n.peers()
            .iter()
            .filter(|p| p.state == PeerState::Alive)
            .count()
            == k
    };
    wait_for("formation", 20, || {
        alive(&hub, 2) && alive(&a, 2) && alive(&b, 2)
    })
    .await;
    let mut changes = a.watch_peers();
    hub.revoke(realm.key().revoke(b.id(), unix_now())).unwrap();
    let b_id = b.id();
    // Down in membership and its live connection closed, at every member.
    let down = |n: &MeshNode| {
        n.peers()
            .iter()
            .any(|p| p.id == b_id && p.state == PeerState::Down)
            && !n.is_connected(&b_id)
    };
    wait_for("revocation to spread", 20, || down(&hub) && down(&a)).await;
    // Watchers (the storage repair planner) hear that it left for good, not only that it is down.
    let mut left = false;
    while let Ok(c) = changes.try_recv() {
        left |= c.peer.id == b_id && c.left && c.peer.state == PeerState::Down;
    }
    assert!(left, "no change reported the revoked member as left");
    // B stays out: it keeps running but cannot rejoin.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(down(&hub) && down(&a));
    b.abort().await;
    a.shutdown().await;
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubsub_delivers_every_publication_exactly_once_to_every_subscriber() {
    let realm = Realm::from_seed(9);
    let hub = start(&realm, 1, "hub", vec![]);
    let contact = contact(&hub);
    let edges: Vec<MeshNode> = (2..=5)
        .map(|i| start(&realm, i, &format!("edge-{i}"), vec![contact.clone()]))
        .collect();
    let all_alive = |n: &MeshNode| {
        n.peers()
            .iter()
            .filter(|p| p.state == PeerState::Alive)
            .count()
            == 4
    };
    wait_for("the realm to form", 20, || {
        all_alive(&hub) && edges.iter().all(all_alive)
    })
    .await;

    let mut subs = Vec::new();
    for n in [&hub, &edges[0], &edges[1]] {
        let s = n.subscribe("realm/test").await.unwrap();
        assert_eq!(s.acked, 4, "every peer acknowledged the subscription");
        subs.push(s);
    }
    // A non-subscriber and a subscriber publish.
    let mut expected = std::collections::BTreeSet::new();
    for i in 0..20u8 {
        let seq = edges[3].publish("realm/test", vec![i]).await.unwrap();
        expected.insert((edges[3].id(), seq));
        let seq = edges[0].publish("realm/test", vec![100 + i]).await.unwrap();
        expected.insert((edges[0].id(), seq));
    }
    for s in &mut subs {
        let mut got = std::collections::BTreeSet::new();
        while got.len() < expected.len() {
            let p = tokio::time::timeout(Duration::from_secs(10), s.recv())
                .await
                .expect("publication arrived")
                .unwrap();
            assert!(
                got.insert((p.publisher, p.seq)),
                "duplicate delivery of {:?}",
                (p.publisher, p.seq)
            );
        }
        assert_eq!(got, expected);
        // Nothing more arrives (no duplicates later either).
        assert!(
            tokio::time::timeout(Duration::from_millis(500), s.recv())
                .await
                .is_err()
        );
    }
    // Counted where it happened (`MeshNode::stats`): 20 published by each publisher, 40
    // delivered to each subscribing node, none to the others, nothing dropped.
    for (n, published, delivered) in [
        (&hub, 0, 40),
        (&edges[0], 20, 40),
        (&edges[1], 0, 40),
        (&edges[2], 0, 0),
        (&edges[3], 20, 0),
    ] {
        let st = n.stats();
        assert_eq!(
            (st.published, st.delivered, st.dropped),
            (published, delivered, 0)
        );
    }
    for n in edges {
        n.shutdown().await;
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dht_records_put_on_one_node_are_found_from_another() {
    use macula_mesh::dht::{Record, RecordBody, RecordKind};
    let realm = Realm::from_seed(9);
    let (hub, edges) = hub_and_edges(&realm, 5).await;

    let author = NodeKey::from_seed([2; 32]);
    let key = [0x42; 32];
    let rec = Record::sign(
        &author,
        RecordBody {
            kind: RecordKind::Provider,
            key,
            author: author.node_id(),
            seq: 1,
            expires: unix_now() + 600,
            value: b"shard 7".to_vec(),
        },
    );
    let put = edges[0].dht_put(rec.clone()).await.unwrap();
    assert_eq!(put.stored, 4, "stored at every other node (k > realm size)");
    let got = edges[3].dht_get(key).await.unwrap();
    assert_eq!(got.records, vec![rec.clone()]);
    // A forged copy is refused by every node.
    let mut forged = rec;
    forged.body.seq = 2;
    forged.body.value = b"evil".to_vec();
    let put = edges[1].dht_put(forged).await.unwrap();
    assert_eq!(put.stored, 0);
    assert_eq!(edges[2].dht_get(key).await.unwrap().records[0].body.seq, 1);
    for n in edges {
        n.shutdown().await;
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn procedures_are_advertised_in_the_dht_and_called_by_providers() {
    use macula_mesh::rpc::Handler;
    let realm = Realm::from_seed(9);
    let (hub, edges) = hub_and_edges(&realm, 4).await;
    let h: Handler =
        Arc::new(|_, body| Box::pin(async move { Ok(body.into_iter().rev().collect()) }));
    edges[1].serve("demo.reverse", h);
    assert!(edges[1].advertise("demo.reverse").await >= 2);
    let providers = edges[2].providers("demo.reverse").await;
    assert_eq!(providers, vec![edges[1].id()]);
    assert!(edges[2].providers("demo.nothing").await.is_empty());
    let out = edges[2]
        .call(
            providers[0],
            "demo.reverse",
            vec![1, 2, 3],
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(out, vec![3, 2, 1]);
    for n in edges {
        n.shutdown().await;
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_and_capacity_updates_reach_every_peer() {
    let realm = Realm::from_seed(9);
    let (hub, edges) = hub_and_edges(&realm, 4).await;
    let meta_of = |n: &MeshNode, id| {
        n.peers()
            .into_iter()
            .find(|p| p.id == id)
            .and_then(|p| p.meta)
            .expect("metadata known")
    };
    // Labels and the capacity announced at start.
    let seen = meta_of(&edges[2], edges[0].id());
    assert_eq!(seen.domains.site.as_str(), "site-0");
    assert_eq!(seen.domains.power.as_str(), "ups-2");
    assert_eq!(seen.capacity.storage_free, (1 << 30) - (2 << 20));
    assert_eq!(meta_of(&hub, edges[1].id()).domains.site.as_str(), "site-1");

    // Edge 2 stores data: two updates in quick succession (well within one second).
    let who = edges[0].id();
    let before = seen.version;
    let mut changes: Vec<_> = std::iter::once(&hub)
        .chain(&edges[1..])
        .map(|n| n.watch_peers())
        .collect();
    let cap = |free| Capacity {
        storage_total: 1 << 30,
        storage_free: free,
    };
    edges[0].set_capacity(cap(700 << 20));
    edges[0].set_capacity(cap(600 << 20));
    let others = || std::iter::once(&hub).chain(&edges[1..]);
    wait_for("the new capacity everywhere", 5, || {
        others().all(|n| meta_of(n, who).capacity == cap(600 << 20))
    })
    .await;
    for n in others() {
        let m = meta_of(n, who);
        assert!(m.version > before, "{} after {before}", m.version);
        assert_eq!(m.domains.site.as_str(), "site-0", "labels kept");
    }
    // Each watcher was told, and its last report for that peer holds the newest value.
    for rx in &mut changes {
        let mut last = None;
        while let Ok(c) = rx.try_recv() {
            if c.peer.id == who {
                last = c.peer.meta;
            }
        }
        assert_eq!(last.expect("a change event").capacity, cap(600 << 20));
    }
    // Setting the same capacity again changes nothing anywhere.
    let version = meta_of(&hub, who).version;
    edges[0].set_capacity(cap(600 << 20));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(meta_of(&hub, who).version, version);
    for n in edges {
        n.shutdown().await;
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_is_cut_off_when_its_certificate_expires() {
    let realm = Realm::from_seed(9);
    let hub = start(&realm, 1, "hub", vec![]);
    let contact = contact(&hub);
    let a = start(&realm, 2, "a", vec![contact.clone()]);
    // Expires 6 s from now: long enough to join, then it must be cut off at once, not at the
    // next membership refresh (every 10 s) nor when the QUIC idle timeout (15 s) runs out.
    let expires = unix_now() + 6;
    let short = start_expiring(&realm, 3, "short", vec![contact], expires);
    let short_id = short.id();
    let state = |n: &MeshNode| n.peers().iter().find(|p| p.id == short_id).map(|p| p.state);
    wait_for("the short-lived member to join", 5, || {
        state(&hub) == Some(PeerState::Alive) && state(&a) == Some(PeerState::Alive)
    })
    .await;
    while unix_now() < expires {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its connections are closed at expiry and the hub declares it down at once; it stays
    // out (its Hello is refused from now on).
    wait_for("the hub to expel the expired member", 2, || {
        state(&hub) == Some(PeerState::Down)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(state(&hub), Some(PeerState::Down));
    assert_ne!(state(&a), Some(PeerState::Alive));
    short.abort().await;
    a.shutdown().await;
    hub.shutdown().await;
}

/// A member flooding a topic cannot make a subscriber's node hold more than the subscription's
/// queue bound, nor push out an honest member's publication waiting in it: only its own oldest
/// publications are dropped. (Run against the one 1024-entry queue all subscriptions shared
/// before, the 3 000-publication flood pushed the honest publication out: failed twice of two.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_publisher_cannot_push_out_others_nor_grow_the_local_queue() {
    use macula_mesh::inbox::INBOX_PUBLISHER_BYTES;
    let realm = Realm::from_seed(11);
    let hub = start(&realm, 1, "hub", vec![]);
    let contact = contact(&hub);
    let honest = start(&realm, 2, "honest", vec![contact.clone()]);
    let rogue = start(&realm, 3, "rogue", vec![contact]);
    wait_for("the realm to form", 20, || {
        [&hub, &honest, &rogue].iter().all(|n| {
            n.peers()
                .iter()
                .filter(|p| p.state == PeerState::Alive)
                .count()
                == 2
        })
    })
    .await;
    let topic = "realm/flood";
    // One subscription is read as publications come (to know when the flood is over), the other
    // not at all.
    let mut watcher = hub.subscribe(topic).await.unwrap();
    let mut lagging = hub.subscribe(topic).await.unwrap();
    assert_eq!(watcher.acked, 2);
    let honest_seq = honest.publish(topic, b"honest".to_vec()).await.unwrap();
    let p = tokio::time::timeout(Duration::from_secs(10), watcher.recv())
        .await
        .expect("the honest publication arrives")
        .unwrap();
    assert_eq!((p.publisher, p.seq), (honest.id(), honest_seq));
    let flood = 3000u64;
    let (rogue_id, last) = (rogue.id(), {
        let mut last = 0;
        for _ in 0..flood {
            last = rogue.publish(topic, vec![0xee; 1 << 10]).await.unwrap();
        }
        last
    });
    // Each publication travels on its own stream, so the last may overtake earlier ones: the
    // flood is over when the watcher has had every one of them, received or dropped from its
    // own queue (it held nothing else by then).
    let mut seen = 0u64;
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(p) = watcher.recv().await {
            assert_eq!(p.publisher, rogue_id);
            assert!(p.seq <= last);
            seen += 1;
            if seen + watcher.dropped() >= flood {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the whole flood reaches the hub: {seen} received, {} dropped of {flood}",
            watcher.dropped()
        )
    });
    let held = lagging.queued_bytes();
    assert!(
        held <= INBOX_PUBLISHER_BYTES + 1024,
        "{held} bytes queued for a subscriber that reads nothing"
    );
    let first = lagging.recv().await.unwrap();
    assert_eq!(
        (first.publisher, first.seq),
        (honest.id(), honest_seq),
        "the honest publication is still there"
    );
    let next = lagging.recv().await.unwrap();
    assert_eq!(next.publisher, rogue_id);
    assert!(
        lagging.dropped() > 0 && next.seq > 1,
        "the flood's oldest are dropped: {} dropped, the first kept is #{}",
        lagging.dropped(),
        next.seq
    );
    // The node counted both subscriptions' deliveries and drops (`MeshNode::stats`). A
    // publication is counted just after it is queued, so the count may trail the last one
    // received by a moment.
    let mut st = hub.stats();
    for _ in 0..100 {
        if st.delivered == 2 * (flood + 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        st = hub.stats();
    }
    assert_eq!(st.delivered, 2 * (flood + 1));
    assert_eq!(st.dropped, watcher.dropped() + lagging.dropped());
    assert_eq!(rogue.stats().published, flood);
    for n in [honest, rogue, hub] {
        n.shutdown().await;
    }
}
