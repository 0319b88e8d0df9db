//! Chaos run (docs/reliability.md): six real `maculad` in one network namespace (each on its
//! own loopback port, private buses), 4 + 2 coding. Client threads put objects of random sizes
//! through `maculactl` on several nodes and get acknowledged ones back, while a driver kills
//! (SIGKILL) and restarts nodes, cuts a node off from the others and heals it — never more than
//! m = 2 nodes out of service at once, a cut node counting as out — and 5 % of the datagrams
//! between two pairs of nodes are dropped throughout (nft `numgen`; this host has no netem).
//! At the end every fault is healed, full redundancy returns, and every object ever
//! acknowledged is read back and compared.
//!
//! `CHAOS_SECS` sets the faulty period (default 120, the run inside `make test`; `make chaos`
//! runs 600), `CHAOS_SEED` the random choices (printed). Needs root and nftables.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use macula_testkit::agent::maculactl;
use macula_testkit::check::wait_until;
use macula_testkit::netns::Topology;
use macula_testkit::realm::{AgentRealm, RealmNode};

const NODES: usize = 6;
const M: usize = 2;
const MAX_SIZE: usize = 2 << 20;

/// xorshift64*: the test's only source of choices, from one printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The bytes of object `id` (regenerated to check a read; nothing kept in memory).
fn content(id: u64, size: usize) -> Vec<u8> {
    let mut r = Rng(id.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut b = Vec::with_capacity(size + 8);
    while b.len() < size {
        b.extend_from_slice(&r.next().to_le_bytes());
    }
    b.truncate(size);
    b
}

/// A size from 1 KiB to 2 MiB, most of them small.
fn size(r: &mut Rng) -> usize {
    match r.below(10) {
        0..=5 => 1024 + r.below(31 * 1024) as usize,
        6..=8 => 32 * 1024 + r.below(480 * 1024) as usize,
        _ => 512 * 1024 + r.below((MAX_SIZE - 512 * 1024) as u64) as usize,
    }
}

#[derive(Default)]
struct Tally {
    /// Acknowledged objects: (capability, content id, size).
    acked: Mutex<Vec<(String, u64, usize)>>,
    puts: AtomicU64,
    gets: AtomicU64,
    /// Client errors by their message (the first line maculactl printed, numbers removed).
    errors: Mutex<BTreeMap<String, u64>>,
    /// Reads that returned other bytes than were put: must stay empty.
    corrupt: Mutex<Vec<String>>,
}

impl Tally {
    fn error(&self, what: &str, out: &std::process::Output) {
        let text = String::from_utf8_lossy(&out.stderr);
        let first = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no message)");
        // IDs and numbers vary from one error to the next: the message's shape is the key.
        let line: Vec<String> = first
            .split(' ')
            .map(|w| {
                let core = w.trim_matches(|c: char| !c.is_ascii_alphanumeric());
                if core.len() >= 16 && core.chars().all(|c| c.is_ascii_alphanumeric()) {
                    w.replace(core, "<id>")
                } else {
                    w.chars()
                        .map(|c| if c.is_ascii_digit() { '#' } else { c })
                        .collect()
                }
            })
            .collect();
        let line: String = line.join(" ").chars().take(110).collect();
        *self
            .errors
            .lock()
            .unwrap()
            .entry(format!("{what}: {line}"))
            .or_default() += 1;
    }
}

/// Puts and gets through the nodes in service until `stop`.
fn client(
    seed: u64,
    buses: Arc<Vec<String>>,
    in_service: Arc<Vec<AtomicBool>>,
    tally: Arc<Tally>,
    stop: Arc<AtomicBool>,
    dir: std::path::PathBuf,
) {
    let mut r = Rng(seed);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let node = r.below(NODES as u64) as usize;
        if !in_service[node].load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        let file = dir.join(format!("{seed}-{n}"));
        n += 1;
        let acked = tally.acked.lock().unwrap().len();
        if acked == 0 || r.below(10) < 6 {
            let id = r.next();
            let len = size(&mut r);
            std::fs::write(&file, content(id, len)).expect("write the object");
            let out = maculactl(&buses[node], &["put", "-q", file.to_str().unwrap()]);
            tally.puts.fetch_add(1, Ordering::Relaxed);
            if out.status.success() {
                let cap = String::from_utf8_lossy(&out.stdout).trim().to_string();
                tally.acked.lock().unwrap().push((cap, id, len));
            } else {
                tally.error("put", &out);
            }
        } else {
            let (cap, id, len) =
                tally.acked.lock().unwrap()[r.below(acked as u64) as usize].clone();
            let out = maculactl(
                &buses[node],
                &["get", "-q", &cap, "-o", file.to_str().unwrap()],
            );
            tally.gets.fetch_add(1, Ordering::Relaxed);
            if !out.status.success() {
                tally.error("get", &out);
            } else if std::fs::read(&file).ok() != Some(content(id, len)) {
                tally.corrupt.lock().unwrap().push(cap);
            }
        }
        let _ = std::fs::remove_file(&file);
    }
}

/// What the driver did, for the report.
#[derive(Default, Debug)]
struct Faults {
    kills: u32,
    cuts: u32,
}

#[test]
fn chaos_keeps_every_acknowledged_object() {
    let secs: u64 = std::env::var("CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            let mut b = [0u8; 8];
            getrandom::fill(&mut b).expect("random");
            u64::from_le_bytes(b) | 1
        });
    eprintln!("chaos: {secs} s of faults, CHAOS_SEED={seed}");
    let mut topo = Topology::new("chaos");
    let ns = topo.add_ns("c");
    let mut nodes = AgentRealm::new(NODES)
        .coded(4, 2)
        .quota(1 << 30)
        .netns(ns)
        .start();
    let ports: Vec<u16> = nodes.iter().map(RealmNode::mesh_port).collect();
    let buses: Arc<Vec<String>> =
        Arc::new(nodes.iter().map(|n| n.bus.address().to_string()).collect());
    // 5 % loss both ways between nodes 1 and 2, and between 3 and 5, for the whole run.
    let lossy = |a: usize, b: usize| {
        format!(
            "udp sport {} udp dport {} numgen random mod 100 < 5 drop\n\
             udp sport {} udp dport {} numgen random mod 100 < 5 drop\n",
            ports[a], ports[b], ports[b], ports[a]
        )
    };
    topo.nft(
        "c",
        &format!(
            "table inet loss {{ chain out {{ type filter hook output priority 0;\n{}{}}}\n}}\n",
            lossy(1, 2),
            lossy(3, 5)
        ),
    );
    let in_service: Arc<Vec<AtomicBool>> =
        Arc::new((0..NODES).map(|_| AtomicBool::new(true)).collect());
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let work = tempfile::tempdir().expect("a temporary directory");
    let clients: Vec<_> = (0..3u64)
        .map(|i| {
            let (buses, in_service, tally, stop, dir) = (
                buses.clone(),
                in_service.clone(),
                tally.clone(),
                stop.clone(),
                work.path().to_path_buf(),
            );
            let seed = seed.wrapping_add(i + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            std::thread::spawn(move || client(seed, buses, in_service, tally, stop, dir))
        })
        .collect();

    // The driver: one decision a second.
    let mut r = Rng(seed);
    let mut faults = Faults::default();
    let mut down: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut cut: Option<(usize, Instant)> = None;
    let start = Instant::now();
    let cut_table = "table inet cut";
    while start.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        let now = Instant::now();
        for i in down
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(i, _)| *i)
            .collect::<Vec<_>>()
        {
            let n = &mut nodes[i];
            n.agent.start(&n.bus).expect("a killed node restarts");
            down.remove(&i);
            in_service[i].store(true, Ordering::Relaxed);
        }
        if let Some((i, until)) = cut {
            if until <= now {
                topo.exec("c", &["nft", "delete", "table", "inet", "cut"]);
                in_service[i].store(true, Ordering::Relaxed);
                cut = None;
            }
        }
        let out = down.len() + usize::from(cut.is_some());
        if out >= M || r.below(10) >= 4 {
            continue;
        }
        let candidates: Vec<usize> = (0..NODES)
            .filter(|i| in_service[*i].load(Ordering::Relaxed))
            .collect();
        let i = candidates[r.below(candidates.len() as u64) as usize];
        in_service[i].store(false, Ordering::Relaxed);
        if cut.is_some() || r.below(10) < 6 {
            nodes[i].agent.kill();
            down.insert(i, now + Duration::from_secs(3 + r.below(8)));
            faults.kills += 1;
        } else {
            topo.nft(
                "c",
                &format!(
                    "{cut_table} {{ chain out {{ type filter hook output priority 0;\n\
                     udp sport {p} drop\nudp dport {p} drop\n}}\n}}\n",
                    p = ports[i]
                ),
            );
            cut = Some((i, now + Duration::from_secs(5 + r.below(11))));
            faults.cuts += 1;
        }
    }

    // Heal everything, then stop the clients once the realm is whole.
    for i in down.keys().copied().collect::<Vec<_>>() {
        let n = &mut nodes[i];
        n.agent.start(&n.bus).expect("a killed node restarts");
    }
    if cut.is_some() {
        topo.exec("c", &["nft", "delete", "table", "inet", "cut"]);
    }
    topo.exec("c", &["nft", "delete", "table", "inet", "loss"]);
    let healed = Instant::now();
    for s in in_service.iter() {
        s.store(true, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("a client thread");
    }
    wait_until("every node sees every other alive", 90, || {
        nodes.iter().all(|n| n.alive_peers() == NODES - 1)
    });
    let status = |n: &RealmNode| n.storage_status()["repair"].clone();
    // Every segment whole, but those with fewer than k shards left anywhere: the remains of
    // puts that failed while nodes died or were cut off (the put's own cleanup cannot reach a
    // node that is down). Whether any of them held an acknowledged object, the read-back below
    // tells.
    let whole = |n: &RealmNode| {
        let s = status(n);
        let apart = s["unrecoverable"].as_array().map_or(0, |u| u.len());
        s["inflight"] == 0 && s["degraded"].as_u64().is_some_and(|d| d as usize <= apart)
    };
    while !nodes.iter().all(whole) {
        if healed.elapsed() > Duration::from_secs(300) {
            let report: Vec<String> = nodes
                .iter()
                .map(|n| {
                    let log = n.repair_log();
                    let tail = log[log.len().saturating_sub(15)..].join("\n");
                    format!("{}: {}\n{tail}", n.name, status(n))
                })
                .collect();
            panic!(
                "no full redundancy 300 s after the faults healed:\n{}",
                report.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let whole_after = healed.elapsed();
    let unrecoverable: std::collections::BTreeSet<String> = nodes
        .iter()
        .flat_map(|n| {
            status(n)["unrecoverable"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let repaired: u64 = nodes
        .iter()
        .map(|n| status(n)["repaired"].as_u64().unwrap_or(0))
        .sum();

    // Every acknowledged object, read back through the nodes in turn (three tries each).
    let acked = tally.acked.lock().unwrap().clone();
    let mut lost = Vec::new();
    let mut read_retries = 0;
    let back = work.path().join("verify");
    for (k, (cap, id, len)) in acked.iter().enumerate() {
        let want = content(*id, *len);
        let ok = (0..3).any(|t| {
            read_retries += u32::from(t > 0);
            let out = maculactl(
                &buses[(k + t) % NODES],
                &["get", "-q", cap, "-o", back.to_str().unwrap()],
            );
            out.status.success() && std::fs::read(&back).ok().as_deref() == Some(&want[..])
        });
        if !ok {
            lost.push(cap.clone());
        }
    }
    let errors = tally.errors.lock().unwrap().clone();
    let corrupt = tally.corrupt.lock().unwrap().clone();
    let bytes: usize = acked.iter().map(|(_, _, l)| l).sum();
    eprintln!(
        "chaos report (seed {seed}, {secs} s): {} kills, {} cuts, 5 % loss on 2 links; \
         {} puts and {} gets by clients, {} objects acknowledged ({:.1} MiB), verified {}, \
         lost {}, corrupt reads {}; {read_retries} verification reads retried; {repaired} shards \
         rebuilt; full redundancy {:.1} s after the last fault healed, {} segments left with \
         fewer than k shards (remains of failed puts); client errors: {errors:#?}",
        faults.kills,
        faults.cuts,
        tally.puts.load(Ordering::Relaxed),
        tally.gets.load(Ordering::Relaxed),
        acked.len(),
        bytes as f64 / f64::from(1 << 20),
        acked.len() - lost.len(),
        lost.len(),
        corrupt.len(),
        whole_after.as_secs_f64(),
        unrecoverable.len(),
    );
    assert!(
        corrupt.is_empty(),
        "reads returned wrong bytes: {corrupt:?}"
    );
    assert!(lost.is_empty(), "acknowledged objects lost: {lost:?}");
    // 4 + 2 on six nodes: a put needs all six, and the faults keep a node out most of the time
    // (a 120 s run acknowledges 7-15 objects on a loaded 2-core machine; > 20 failed in CI
    // runs of unchanged code). Fewer than 5 leaves too little to verify.
    assert!(
        acked.len() >= 5,
        "too few objects acknowledged to mean anything: {}",
        acked.len()
    );
}
