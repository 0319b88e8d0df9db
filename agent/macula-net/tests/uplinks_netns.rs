//! Uplink failover with real sockets, real wireguard-go and a real nft blackhole on path 1.

mod common;

use std::time::{Duration, Instant};

use common::scenario::{TwoPaths, failover};
use macula_net::cmd::Host;
use macula_net::links;
use macula_net::uplinks::monitor::{Monitor, open_responder};
use macula_net::uplinks::react::Reactor;
use macula_net::uplinks::tracker::Action;
use macula_net::uplinks::{UplinksConfig, probe, routing};
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_path_fails_over_to_path_2_within_2_s() {
    let bed = TwoPaths::new();
    let run = failover(&bed).await;
    eprintln!(
        "failover decision {:.3} s, traffic on path 2 after {:.3} s",
        run.decision, run.recovered
    );
    assert!(run.recovered < 2.0, "{run:?}");
    assert!(run.path2_rx > 20, "path 2 carried the traffic: {run:?}");
    assert!(run.default_route.contains(&bed.a2), "{run:?}");
    assert_eq!(run.snapshot.active, Some(1));
    assert!(!run.snapshot.links[0].healthy);
    assert!(run.snapshot.links[1].healthy);
}

/// rtnetlink: discovery finds the uplink behind the default route; carrier loss (link down) fails
/// over at once instead of after `dead_after`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_and_carrier_loss() {
    let bed = TwoPaths::new();
    let host_a = Host::netns(&bed.a.name);
    bed.a.exec(&[
        "ip",
        "route",
        "add",
        "default",
        "via",
        "198.51.100.2",
        "dev",
        &bed.a1,
    ]);
    let found = links::discover(&host_a).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].interface, bed.a1);
    assert_eq!(found[0].source.to_string(), "198.51.100.1");
    assert_eq!(found[0].gateway.unwrap().to_string(), "198.51.100.2");
    assert!(found[0].carrier);

    let responder = open_responder(&Host::netns(&bed.b.name), probe::DEFAULT_PORT).unwrap();
    let responder = tokio::spawn(probe::serve(responder));
    let cfg: UplinksConfig = toml::from_str(&format!(
        "[[links]]\nname = \"p1\"\ninterface = \"{}\"\npriority = 10\nsource = \"198.51.100.1\"\nprobe = \"198.51.100.2:51821\"\n\
         [[links]]\nname = \"p2\"\ninterface = \"{}\"\npriority = 5\nsource = \"203.0.113.1\"\ngateway = \"203.0.113.2\"\nprobe = \"203.0.113.2:51821\"\n",
        bed.a1, bed.a2
    ))
    .unwrap();
    routing::apply_tables(&host_a, &cfg).await.unwrap();
    let (tx, mut raw) = mpsc::unbounded_channel();
    let monitor = Monitor::spawn(&host_a, &cfg, tx).unwrap();
    // The reactor runs every action (routes, tables); the test sees them afterwards.
    let (seen_tx, mut rx) = mpsc::unbounded_channel();
    let mut reactor = Reactor::new(host_a.clone(), cfg.clone());
    let glue = tokio::spawn(async move {
        while let Some(a) = raw.recv().await {
            reactor.handle(&a).await.unwrap();
            let _ = seen_tx.send(a);
        }
    });
    let table = |bed: &TwoPaths| {
        String::from_utf8(
            bed.a
                .try_exec(&["ip", "route", "show", "table", "101"])
                .stdout,
        )
        .unwrap()
    };
    assert!(
        table(&bed).contains("default via 203.0.113.2"),
        "{}",
        table(&bed)
    );
    assert_eq!(
        rx.recv().await.unwrap(),
        Action::Activate {
            from: None,
            to: Some(1)
        },
        "lower priority value wins"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    bed.a.exec(&["ip", "link", "set", &bed.a2, "down"]);
    let switched = loop {
        match tokio::time::timeout(Duration::from_secs(3), rx.recv()).await {
            Ok(Some(Action::Activate { to, .. })) => break to,
            Ok(Some(_)) => continue,
            other => panic!("no failover: {other:?}"),
        }
    };
    let took = t.elapsed();
    assert_eq!(switched, Some(0));
    assert!(
        took < Duration::from_millis(500),
        "carrier loss took {took:?}"
    );
    assert!(!monitor.status.borrow().links[1].carrier);
    eprintln!("carrier-loss failover after {took:?}");

    // Carrier back: the uplink returns after `up_after` probe replies.
    bed.a.exec(&["ip", "link", "set", &bed.a2, "up"]);
    let back = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(Action::Activate { to, .. }) = rx.recv().await {
                return to;
            }
        }
    })
    .await
    .expect("uplink 2 did not come back");
    assert_eq!(back, Some(1));
    assert!(
        table(&bed).contains("default via 203.0.113.2"),
        "per-uplink table restored after the flap: {}",
        table(&bed)
    );

    // Its source address goes away (DHCP lease lost): failover at once; back when it returns.
    let t = Instant::now();
    bed.a
        .exec(&["ip", "addr", "del", "203.0.113.1/24", "dev", &bed.a2]);
    assert_eq!(next_switch(&mut rx).await, Some(0));
    let took = t.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "address loss took {took:?}"
    );
    eprintln!("address-loss failover after {took:?}");
    bed.a
        .exec(&["ip", "addr", "add", "203.0.113.1/24", "dev", &bed.a2]);
    assert_eq!(next_switch(&mut rx).await, Some(1));
    assert!(
        table(&bed).contains("default via 203.0.113.2"),
        "per-uplink table restored after the address came back: {}",
        table(&bed)
    );
    drop(monitor);
    glue.abort();
    responder.abort();
}

/// The next change of the active uplink (5 s at most).
async fn next_switch(rx: &mut mpsc::UnboundedReceiver<Action>) -> Option<usize> {
    let wait = async {
        loop {
            if let Some(Action::Activate { to, .. }) = rx.recv().await {
                return to;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), wait)
        .await
        .expect("no uplink change within 5 s")
}

/// No links listed: discovery turns the default routes into uplinks (metric = priority); route
/// events: a per-uplink table flushed by someone else is reinstalled at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_uplinks_and_flushed_table_route() {
    let bed = TwoPaths::new();
    let host_a = Host::netns(&bed.a.name);
    for (gw, dev, metric) in [
        ("198.51.100.2", &bed.a1, "20"),
        ("203.0.113.2", &bed.a2, "10"),
    ] {
        bed.a.exec(&[
            "ip", "route", "add", "default", "via", gw, "dev", dev, "metric", metric,
        ]);
    }
    let responder = open_responder(&Host::netns(&bed.b.name), probe::DEFAULT_PORT).unwrap();
    let responder = tokio::spawn(probe::serve(responder));
    // One responder address for every uplink: path 2 reaches it through its gateway.
    let section: UplinksConfig =
        toml::from_str("enabled = true\nprobe = \"198.51.100.2:51821\"\n").unwrap();
    section.validate().unwrap();
    let cfg = section.with_discovered(&links::discover(&host_a).unwrap());
    cfg.validate().unwrap();
    let names: Vec<(&str, u32)> = cfg
        .links
        .iter()
        .map(|l| (l.name.as_str(), l.priority))
        .collect();
    assert_eq!(names, [(bed.a2.as_str(), 10), (bed.a1.as_str(), 20)]);
    assert_eq!(cfg.links[0].gateway.unwrap().to_string(), "203.0.113.2");
    routing::apply_tables(&host_a, &cfg).await.unwrap();
    let (tx, mut raw) = mpsc::unbounded_channel();
    let monitor = Monitor::spawn(&host_a, &cfg, tx).unwrap();
    let (seen_tx, mut rx) = mpsc::unbounded_channel();
    let mut reactor = Reactor::new(host_a.clone(), cfg.clone());
    let glue = tokio::spawn(async move {
        while let Some(a) = raw.recv().await {
            reactor.handle(&a).await.unwrap();
            let _ = seen_tx.send(a);
        }
    });
    // Both discovered uplinks are probed and healthy (path 2 through its gateway).
    let t = Instant::now();
    loop {
        let s = monitor.status.borrow().clone();
        if s.links.iter().all(|l| l.received >= 3) {
            assert!(s.links.iter().all(|l| l.healthy), "{s:?}");
            assert_eq!(s.active, Some(0));
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(3),
            "probes unanswered: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let table = |bed: &TwoPaths| {
        String::from_utf8(
            bed.a
                .try_exec(&["ip", "route", "show", "table", "101"])
                .stdout,
        )
        .unwrap()
    };
    assert!(
        table(&bed).contains("default via 198.51.100.2"),
        "{}",
        table(&bed)
    );
    let t = Instant::now();
    bed.a.exec(&["ip", "route", "flush", "table", "101"]);
    let reinstalled = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(Action::Reinstall { link }) = rx.recv().await {
                return link;
            }
        }
    })
    .await
    .expect("no reinstall after the flush");
    assert_eq!(reinstalled, 1);
    let back = loop {
        if table(&bed).contains("default via 198.51.100.2") {
            break t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "table 101 not reinstalled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    eprintln!("flushed per-uplink table reinstalled after {back:?}");
    assert!(monitor.status.borrow().links[1].healthy, "health untouched");
    drop(monitor);
    glue.abort();
    responder.abort();
}
