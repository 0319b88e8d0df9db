//! A member flooding the others cannot starve them (docs/security.md, "A member flooding a
//! node"; docs/reliability.md). Three real `maculad` with storage and `[mesh.limits]` set low,
//! and a fourth member in this process, holding a valid certificate of the realm, that floods
//! all three at once: `mesh.ping` calls on many streams, shard reads it gives up after the first
//! chunk (the holder reads and verifies the whole shard), shard puts of 1 MiB of junk, DHT
//! stores, pub/sub messages, and connections beyond its limit that flood calls of their own. Between the
//! honest nodes `maculactl ping` and small `maculactl get`s are timed with the flood off and on,
//! in alternating rounds: the p99 with the flood stays within 2× of the p99 without. Each
//! victim's `/metrics` shows which limits held the flooder, and the calls the flooder got
//! answered stay within the call rate and burst.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use macula_core::NodeId;
use macula_mesh::dht::{Record, RecordBody, RecordKind};
use macula_mesh::membership::MembershipConfig;
use macula_mesh::node::{Bootstrap, MeshNode};
use macula_mesh::realm::Role;
use macula_mesh::rpc::{MAX_RPC_FRAME, RpcReply, RpcRequest};
use macula_mesh::transport::{Endpoint, TransportParams, unix_now};
use macula_store::header::SegmentId;
use macula_testkit::check::{free_tcp_port, http_get, ok, wait_until};
use macula_testkit::realm::{AgentRealm, Realm, RealmNode, alive_peers, wait_async};

/// The victims' `[mesh.limits]`: low enough that the flood is held well below what it would
/// cost unlimited, high enough for the honest nodes' own traffic.
const CALLS_PER_SEC: u64 = 50;
const CALL_BURST: u64 = 50;
const LIMITS: &str = "calls_per_sec = 50\ncall_burst = 50\ncalls_in_flight = 8\n\
    messages_per_sec = 20\nmessage_burst = 20\nbytes_per_sec = 1048576\nbyte_burst = 1048576\n\
    connections = 8\n";
const REALM_SEED: u8 = 151;
/// The flooder's node key seed.
const ROGUE_SEED: u8 = 152;
/// Rounds of (quiet, flooded) measurements, and samples of each kind per phase and round.
const ROUNDS: usize = 4;
const PINGS: usize = 50;
const GETS: usize = 25;

/// What the flooder's tasks share: whether to flood now, whether to stop, how many operations
/// are in flight, and the calls each victim answered.
struct Flood {
    on: AtomicBool,
    stop: AtomicBool,
    in_flight: AtomicUsize,
    answered: BTreeMap<NodeId, AtomicU64>,
}

impl Flood {
    /// Waits while the flood is paused; false once it should stop.
    async fn go(&self) -> bool {
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            if self.on.load(Ordering::Relaxed) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Runs one flooding operation, counted in flight; `true` when the victim answered it. A
    /// failed one waits 10 ms before the next: the flooder shares this machine's two cores with
    /// its victims, so it must not spin where one on its own machine would.
    async fn op(&self, victim: NodeId, f: impl std::future::Future<Output = bool>) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let answered = f.await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if answered {
            self.answered[&victim].fetch_add(1, Ordering::Relaxed);
        } else {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One RPC call on a raw connection: request frame, one reply frame.
async fn raw_ping(conn: &quinn::Connection) -> bool {
    let Ok((mut send, mut recv)) = conn.open_bi().await else {
        return false;
    };
    let req = RpcRequest {
        procedure: "mesh.ping".into(),
        deadline_ms: 5000,
        body: Vec::new(),
    };
    if macula_mesh::frame::write(&mut send, &req, MAX_RPC_FRAME)
        .await
        .is_err()
    {
        return false;
    }
    let _ = send.finish();
    matches!(
        tokio::time::timeout(
            Duration::from_secs(10),
            macula_mesh::frame::read::<RpcReply>(&mut recv, MAX_RPC_FRAME)
        )
        .await,
        Ok(Ok(Some(RpcReply::Ok(_))))
    )
}

/// `tasks` tasks calling `procedure` on `v` with `body` for as long as the flood goes.
fn flood_calls(
    rogue: &Arc<MeshNode>,
    flood: &Arc<Flood>,
    v: NodeId,
    tasks: usize,
    procedure: &'static str,
    body: Vec<u8>,
) {
    for _ in 0..tasks {
        let (rogue, flood, body) = (rogue.clone(), flood.clone(), body.clone());
        tokio::spawn(async move {
            while flood.go().await {
                let call = rogue.call(v, procedure, body.clone(), Duration::from_secs(30));
                flood.op(v, async { call.await.is_ok() }).await;
            }
        });
    }
}

/// Starts every flooding task against `victims`; returns the extra connections tried and those
/// the victims kept open two seconds later.
async fn start_flood(
    rogue: &Arc<MeshNode>,
    raw: &Endpoint,
    victims: &[(NodeId, SocketAddr, Vec<Vec<u8>>)],
    flood: &Arc<Flood>,
) -> (usize, usize) {
    let (mut tried, mut dialled) = (0, Vec::new());
    for (v, addr, shards) in victims {
        let (v, addr) = (*v, *addr);
        // Shard reads given up after the first chunk: the holder reads and verifies the whole
        // shard, the flooder only asks.
        let shards = Arc::new(shards.clone());
        for t in 0..32 {
            let (rogue, flood, shards) = (rogue.clone(), flood.clone(), shards.clone());
            tokio::spawn(async move {
                let mut i = t;
                while flood.go().await {
                    i = (i + 1) % shards.len();
                    let body = shards[i].clone();
                    flood
                        .op(v, async {
                            match rogue
                                .call_stream(v, "store.get", body, Duration::from_secs(10))
                                .await
                            {
                                Ok(mut reply) => matches!(reply.next().await, Ok(Some(_))),
                                Err(_) => false,
                            }
                        })
                        .await;
                }
            });
        }
        flood_calls(rogue, flood, v, 48, "mesh.ping", Vec::new());
        // Junk a holder must read whole before refusing it.
        flood_calls(rogue, flood, v, 2, "store.put", vec![0xa5; 1 << 20]);
        // Connections beyond the limit: the victim closes those over `connections`; the ones it
        // keeps flood calls of their own (held to the same per-member limits).
        for _ in 0..12 {
            tried += 1;
            let Ok(peer) = raw.dial(addr, Some(v)).await else {
                continue;
            };
            let conn = peer.conn;
            dialled.push(conn.clone());
            for _ in 0..16 {
                let (conn, flood) = (conn.clone(), flood.clone());
                tokio::spawn(async move {
                    while flood.go().await {
                        if conn.close_reason().is_some() {
                            return;
                        }
                        flood.op(v, raw_ping(&conn)).await;
                    }
                });
            }
        }
    }
    for t in 0..4u64 {
        let (rogue, flood) = (rogue.clone(), flood.clone());
        let key = macula_core::NodeKey::from_seed([ROGUE_SEED; 32]);
        tokio::spawn(async move {
            let mut seq = 0;
            while flood.go().await {
                seq += 1;
                let mut k = [0u8; 32];
                k[..8].copy_from_slice(&(t << 32 | seq).to_le_bytes());
                let rec = Record::sign(
                    &key,
                    RecordBody {
                        kind: RecordKind::Value,
                        key: k,
                        author: key.node_id(),
                        seq,
                        expires: unix_now() + 3600,
                        value: vec![7; 512],
                    },
                );
                flood.in_flight.fetch_add(1, Ordering::SeqCst);
                let stored = rogue.dht_put(rec).await;
                flood.in_flight.fetch_sub(1, Ordering::SeqCst);
                if stored.is_none() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
    }
    for _ in 0..2 {
        let (rogue, flood) = (rogue.clone(), flood.clone());
        tokio::spawn(async move {
            while flood.go().await {
                flood.in_flight.fetch_add(1, Ordering::SeqCst);
                let published = rogue
                    .publish("macula.storage.inventory", vec![0x5a; 1024])
                    .await;
                flood.in_flight.fetch_sub(1, Ordering::SeqCst);
                // Publishing only queues the message: one a millisecond is 50 times the limit.
                if published.is_err() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                } else {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = dialled
        .iter()
        .filter(|c| c.close_reason().is_none())
        .count();
    (tried, kept)
}

/// The shards a node holds, as `store.get` request bodies (segment ID ‖ index, u16 LE), from its
/// shard directory (`shards/<2 hex>/<segment hex>.<index>`).
fn shard_requests(node: &RealmNode) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let root = node.agent.state_dir().join("shards").join("shards");
    for dir in std::fs::read_dir(&root).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = f.file_name().to_string_lossy().into_owned();
            let Some((hex, index)) = name.split_once('.') else {
                continue;
            };
            if let (Some(seg), Ok(index)) = (SegmentId::from_hex(hex), index.parse::<u16>()) {
                let mut body = seg.0.to_vec();
                body.extend_from_slice(&index.to_le_bytes());
                out.push(body);
            }
        }
    }
    out
}

/// `q`-quantile of `samples` (nearest rank).
fn quantile(samples: &[Duration], q: f64) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The value of `sample` (name with labels) on a `/metrics` page, 0 when absent.
fn sample(page: &str, sample: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Times `maculactl ping n2` and `maculactl get` of a small object on n1.
fn measure(
    nodes: &[RealmNode],
    cap: &str,
    out: &std::path::Path,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut pings = Vec::new();
    let mut gets = Vec::new();
    for _ in 0..PINGS {
        let t = Instant::now();
        ok(&nodes[1].agent.ctl(&["ping", "n2"]));
        pings.push(t.elapsed());
    }
    for _ in 0..GETS {
        let t = Instant::now();
        ok(&nodes[1]
            .agent
            .ctl(&["get", cap, "-o", out.to_str().unwrap()]));
        gets.push(t.elapsed());
    }
    (pings, gets)
}

#[test]
fn a_flooding_member_cannot_starve_the_others() {
    let ports: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect();
    let nodes = AgentRealm::new(3)
        .realm(Realm::from_seed(REALM_SEED))
        .coded(2, 1)
        .storage_extra(|i| {
            format!(
                "\n[mesh.limits]\n{LIMITS}\n[metrics]\nlisten = \"127.0.0.1:{}\"\n",
                ports[i]
            )
        })
        .start();
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::write(&small, vec![0x42u8; 4096]).unwrap();
    let cap = ok(&nodes[1].agent.ctl(&["put", "-q", small.to_str().unwrap()]))
        .trim()
        .to_string();
    let out = dir.path().join("out");
    // Shards for the flooder to ask for: a 6 MiB object (2 + 1, segments of 1 MiB).
    let big = dir.path().join("big");
    std::fs::write(&big, vec![0x17u8; 6 << 20]).unwrap();
    ok(&nodes[1].agent.ctl(&["put", "-q", big.to_str().unwrap()]));

    // The flooder's threads run at the lowest priority: on its own machine its work would not
    // take the victims' CPU, here it shares their two cores.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .on_thread_start(|| {
            // SAFETY: setpriority on this thread's own ID; no memory is passed.
            unsafe {
                libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 19);
            }
        })
        .enable_all()
        .build()
        .unwrap();
    let realm = Realm::from_seed(REALM_SEED);
    let victims: Vec<(NodeId, SocketAddr, Vec<Vec<u8>>)> = nodes
        .iter()
        .map(|n| {
            let shards = shard_requests(n);
            assert!(
                shards.len() >= 6,
                "{} holds {} shards",
                n.name,
                shards.len()
            );
            (
                n.node_id().parse().unwrap(),
                SocketAddr::from(([127, 0, 0, 1], n.mesh_port())),
                shards,
            )
        })
        .collect();
    let flood = Arc::new(Flood {
        on: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        in_flight: AtomicUsize::new(0),
        answered: victims.iter().map(|v| (v.0, AtomicU64::new(0))).collect(),
    });
    let (rogue, endpoint) = rt.block_on(async {
        let rogue = Arc::new(
            realm
                .member(ROGUE_SEED)
                .name("flooder")
                .membership(MembershipConfig::lan(4))
                .bootstrap(vec![Bootstrap {
                    node: Some(victims[0].0),
                    addr: victims[0].1,
                }])
                .start(),
        );
        assert!(
            wait_async(Duration::from_secs(30), || alive_peers(&rogue) == 3).await,
            "the flooder joined the realm"
        );
        let key = macula_core::NodeKey::from_seed([ROGUE_SEED; 32]);
        let raw = Endpoint::bind(
            &key,
            realm.admission(&key, Role::Edge, "flooder"),
            "127.0.0.1:0".parse().unwrap(),
            Vec::new(),
            TransportParams::default(),
        )
        .unwrap();
        (rogue, raw)
    });
    wait_until("the honest nodes see the flooder", 30, || {
        nodes.iter().all(|n| n.alive_peers() == 3)
    });

    let started = Instant::now();
    let (mut quiet_pings, mut quiet_gets, mut flood_pings, mut flood_gets) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut raw = (0, 0);
    for round in 0..ROUNDS {
        // Quiet: nothing of the flood is still in flight.
        flood.on.store(false, Ordering::SeqCst);
        wait_until("the paused flood drains", 60, || {
            flood.in_flight.load(Ordering::SeqCst) == 0
        });
        let (p, g) = measure(&nodes, &cap, &out);
        quiet_pings.extend(p);
        quiet_gets.extend(g);
        flood.on.store(true, Ordering::SeqCst);
        if round == 0 {
            raw = rt.block_on(start_flood(&rogue, &endpoint, &victims, &flood));
        } else {
            std::thread::sleep(Duration::from_secs(1));
        }
        let (p, g) = measure(&nodes, &cap, &out);
        flood_pings.extend(p);
        flood_gets.extend(g);
    }
    flood.stop.store(true, Ordering::SeqCst);
    let flooded_for = started.elapsed();
    assert_eq!(std::fs::read(&out).unwrap(), vec![0x42u8; 4096]);

    let (qp, fp) = (quantile(&quiet_pings, 0.99), quantile(&flood_pings, 0.99));
    let (qg, fg) = (quantile(&quiet_gets, 0.99), quantile(&flood_gets, 0.99));
    println!(
        "maculactl ping p50/p99: quiet {:.1}/{:.1} ms, flooded {:.1}/{:.1} ms ({:.2}× at p99)",
        ms(quantile(&quiet_pings, 0.5)),
        ms(qp),
        ms(quantile(&flood_pings, 0.5)),
        ms(fp),
        fp.as_secs_f64() / qp.as_secs_f64()
    );
    println!(
        "maculactl get (4 KiB) p50/p99: quiet {:.1}/{:.1} ms, flooded {:.1}/{:.1} ms ({:.2}× at p99)",
        ms(quantile(&quiet_gets, 0.5)),
        ms(qg),
        ms(quantile(&flood_gets, 0.5)),
        ms(fg),
        fg.as_secs_f64() / qg.as_secs_f64()
    );
    let mut sorted = flood_pings.clone();
    sorted.sort();
    println!("flooded pings, slowest: {:?}", &sorted[sorted.len() - 5..]);
    for n in &nodes {
        for l in n
            .agent
            .log()
            .lines()
            .filter(|l| l.contains("too many"))
            .take(5)
        {
            println!("{}: {l}", n.name);
        }
    }
    let pages: Vec<String> = ports
        .iter()
        .map(|&p| http_get(p, "GET", "/metrics").2)
        .collect();
    for (n, page) in nodes.iter().zip(&pages) {
        let limited: Vec<(&str, f64)> = [
            "calls_per_sec",
            "calls_in_flight",
            "bytes_per_sec",
            "messages_per_sec",
            "connections",
        ]
        .iter()
        .map(|l| {
            (
                *l,
                sample(
                    page,
                    &format!("macula_mesh_peer_limited_total{{limit=\"{l}\"}}"),
                ),
            )
        })
        .collect();
        println!("{}: limited {limited:?}", n.name);
    }
    for (v, answered) in &flood.answered {
        let answered = answered.load(Ordering::Relaxed);
        let bound = CALL_BURST + CALLS_PER_SEC * flooded_for.as_secs().saturating_add(1);
        println!(
            "calls of the flooder answered by {}: {answered} in {:.0} s (limit {bound})",
            v.short(),
            flooded_for.as_secs_f64()
        );
        assert!(
            answered <= bound,
            "{answered} calls answered, more than the burst and rate allow ({bound})"
        );
    }
    println!(
        "extra connections: {} tried, {} kept by the victims",
        raw.0, raw.1
    );
    assert!(
        raw.1 < raw.0,
        "the victims closed the connections over their limit"
    );
    for page in &pages {
        for limit in ["calls_in_flight", "bytes_per_sec", "connections"] {
            assert!(
                sample(
                    page,
                    &format!("macula_mesh_peer_limited_total{{limit=\"{limit}\"}}")
                ) > 0.0,
                "every victim held the flooder to {limit}"
            );
        }
        assert!(
            sample(
                page,
                "macula_mesh_peer_limited_total{limit=\"calls_per_sec\"}"
            ) > 0.0,
            "every victim held the flooder to its call rate"
        );
    }
    assert!(
        fp <= qp * 2,
        "maculactl ping p99 went from {qp:?} to {fp:?} under the flood"
    );
    assert!(
        fg <= qg * 2,
        "maculactl get p99 went from {qg:?} to {fg:?} under the flood"
    );
    rt.block_on(async {
        let rogue = Arc::try_unwrap(rogue).ok();
        if let Some(r) = rogue {
            r.abort().await;
        }
    });
}
