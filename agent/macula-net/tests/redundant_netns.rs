//! Redundant mode with real wireguard-go, the agent's duplicator on both sides, two veth paths and
//! a real nft blackhole on path 1: no packet is lost, none is delivered twice. The same scenario
//! without redundant mode loses packets until failover.

mod common;

use common::scenario::{TwoPaths, failover_loss, redundant_loss};

const PINGS: u32 = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redundant_peer_loses_nothing_while_path_1_goes_silent() {
    let bed = TwoPaths::new();
    let run = redundant_loss(&bed, PINGS).await;
    eprintln!("redundant: {run:?}");
    assert_eq!(run.transmitted, PINGS, "{run:?}");
    assert_eq!(run.lost(), 0, "redundant mode lost packets: {run:?}");
    assert_eq!(
        run.duplicates, 0,
        "WireGuard's replay window drops the copies: {run:?}"
    );
    // Both paths carried copies (path 1 until it went silent), A sent on both uplinks.
    assert!(
        run.path_rx[0] > 50 && run.path_rx[1] > 2 * u64::from(PINGS) / 2,
        "{run:?}"
    );
    assert!(
        run.dup_tx[0] > 50 && run.dup_tx[1] >= u64::from(PINGS),
        "{run:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redundant_mode_the_same_scenario_loses_packets_until_failover() {
    let bed = TwoPaths::new();
    let run = failover_loss(&bed, PINGS).await;
    eprintln!("failover only: {run:?}");
    assert_eq!(run.transmitted, PINGS, "{run:?}");
    // ~1 s of 10 ms pings is lost before the endpoint moves; traffic continues afterwards.
    assert!(run.lost() >= 20, "{run:?}");
    assert!(run.received >= 20, "{run:?}");
    assert!(run.path_rx[1] > 20, "{run:?}");
}
