//! Uplink failover with real sockets, real wireguard-go and a real nft blackhole on path 1.

mod common;

use common::scenario::{TwoPaths, failover};

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
