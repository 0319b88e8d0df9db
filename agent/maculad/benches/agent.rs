//! `make bench` (agent part): time-to-ready and idle RSS of a real `maculad` on a private bus.
//!
//! Baseline, measured in the same run: a minimal D-Bus client process (`busctl call … GetId`),
//! i.e. process start + bus connection + one round trip. Goal: idle RSS ≤ 16 MiB.

use std::time::{Duration, Instant};

use macula_testkit::{Agent, AgentOptions, DbusDaemon};

const RUNS: usize = 5;
const RSS_GOAL_KIB: u64 = 16 * 1024;

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let bus = DbusDaemon::start();

    let mut baseline = Vec::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let out = bus.busctl(&[
            "call",
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetId",
        ]);
        assert!(out.status.success());
        baseline.push(t0.elapsed());
    }

    let mut ready = Vec::new();
    let mut rss = Vec::new();
    for _ in 0..RUNS {
        let t0 = Instant::now();
        let mut agent = Agent::spawn(&bus, AgentOptions::default());
        ready.push(t0.elapsed());
        std::thread::sleep(Duration::from_secs(2));
        rss.push(rss_kib(agent.pid().expect("running")));
        agent.stop(Duration::from_secs(2));
    }
    rss.sort();
    let ready_med = median(ready);
    let base_med = median(baseline);
    let rss_med = rss[rss.len() / 2];
    println!("maculad time-to-ready (spawn → owns io.macula.Agent), median of {RUNS}:");
    println!(
        "  maculad {:>8.1} ms   baseline busctl round trip {:>6.1} ms   ratio {:.2}x",
        ready_med.as_secs_f64() * 1e3,
        base_med.as_secs_f64() * 1e3,
        ready_med.as_secs_f64() / base_med.as_secs_f64()
    );
    println!("maculad idle RSS after 2 s, median of {RUNS}:");
    println!(
        "  {:>6} KiB ({:.1} MiB)   goal {} KiB   ratio to goal {:.2}  {}",
        rss_med,
        rss_med as f64 / 1024.0,
        RSS_GOAL_KIB,
        rss_med as f64 / RSS_GOAL_KIB as f64,
        if rss_med <= RSS_GOAL_KIB {
            "OK"
        } else {
            "OVER GOAL"
        }
    );
}
