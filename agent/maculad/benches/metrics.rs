//! `make bench-agent` (metrics part): `GET /metrics` of a real `maculad` that sees 100 alive
//! peers, with its firewall on: time per scrape and the agent's CPU per scrape.
//!
//! Everything runs in a network namespace of its own (the agent owns its firewall there): the
//! agent, and 100 in-process mesh members of its realm (this process enters the namespace
//! first). Baseline, measured in the same run on the same listener: a request answered 404
//! (connection, head parsing, response; no figures gathered). Also measured: one
//! `nft list table inet macula`, which every scrape forked before the firewall's figures were
//! read from memory (`Firewall1.Status()` no longer lists the table).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use macula_core::NodeKey;
use macula_mesh::membership::MembershipConfig;
use macula_mesh::node::{Bootstrap, MeshNode};
use macula_mesh::realm::Role;
use macula_testkit::check::free_udp_port;
use macula_testkit::config::AgentConfig;
use macula_testkit::netns::Topology;
use macula_testkit::realm::Realm;
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

const PEERS: usize = 100;
const SCRAPES: usize = 400;

/// User + system CPU seconds of `pid` and of its children it waited for (`nft`).
fn cpu_s(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read stat");
    let rest = &stat[stat.rfind(')').expect("comm") + 1..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11) // field 14 is the 12th after the command name
        .take(4)
        .map(|v| v.parse().expect("a number"))
        .collect();
    // SAFETY: sysconf reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    f.iter().sum::<u64>() as f64 / ticks
}

/// One request on a fresh connection; the response's body.
fn get(addr: &str, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to /metrics");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    let (_, body) = out.split_once("\r\n\r\n").expect("a response head");
    body.to_owned()
}

/// Median wall time and the agent's CPU per request (its idle rate taken off) over `n`
/// requests for `path`.
fn measure(addr: &str, path: &str, pid: u32, idle_rate: f64, n: usize) -> (Duration, f64) {
    let mut times = Vec::with_capacity(n);
    let (c0, t0) = (cpu_s(pid), Instant::now());
    for _ in 0..n {
        let t = Instant::now();
        get(addr, path);
        times.push(t.elapsed());
    }
    let cpu = cpu_s(pid) - c0 - idle_rate * t0.elapsed().as_secs_f64();
    times.sort();
    (times[n / 2], cpu.max(0.0) / n as f64)
}

fn members(page: &str, state: &str) -> usize {
    let prefix = format!("macula_mesh_members{{state=\"{state}\"}} ");
    page.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn alive(page: &str) -> usize {
    members(page, "alive")
}

/// Members the agent knows of, in any state (each is a peer of its table).
fn known(page: &str) -> usize {
    ["alive", "suspect", "down"]
        .iter()
        .map(|s| members(page, s))
        .sum()
}

fn main() {
    let mut topo = Topology::new("bm");
    let ns = topo.add_ns("a");
    // This process joins the namespace before any other thread starts: the runtime's threads
    // and the mesh members live there too.
    let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("the namespace's file");
    // SAFETY: setns on an open namespace file; only this thread runs yet.
    assert_eq!(
        unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) },
        0,
        "setns: {}",
        std::io::Error::last_os_error()
    );

    let port = free_udp_port();
    let metrics = format!("127.0.0.1:{}", free_udp_port());
    let realm = Realm::generate();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cert = dir.path().join("hub.cert");
    let config = AgentConfig::loopback(port)
        .name("hub")
        .cert(&cert)
        .section(&format!(
            "[metrics]\nlisten = \"{metrics}\"\n[firewall]\nenabled = true\n\
             [firewall.zones.lan]\ninterfaces = [\"lo\"]\n"
        ))
        .to_string();
    let bus = DbusDaemon::start();
    let mut hub = Agent::prepare(
        &bus,
        AgentOptions {
            config: Some(config),
            ..Default::default()
        },
    );
    // The agent's key and certificate before its first start: it joins the realm at once.
    let (key, _) = NodeKey::load_or_create(&hub.state_dir()).expect("create the agent's key");
    let id = key.node_id();
    std::fs::write(&cert, realm.cert(id, Role::Edge, "hub").to_text()).expect("write cert");
    hub.start(&bus).expect("start maculad");
    let pid = hub.pid().expect("running");

    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let boot = vec![Bootstrap {
        node: Some(id),
        addr: format!("127.0.0.1:{port}").parse().expect("an address"),
    }];
    // The members probe slowly and are patient with suspicions: 100 of them share this
    // process (and the machine's 2 cores) with the agent, which they must not starve.
    let mut membership = MembershipConfig::lan(PEERS as u32 + 1);
    membership.foca.probe_period = Duration::from_secs(5);
    membership.foca.probe_rtt = Duration::from_secs(2);
    membership.foca.suspect_to_down_after = Duration::from_secs(60);
    let members: Vec<Arc<MeshNode>> = rt.block_on(async {
        (1..=PEERS as u8)
            .map(|seed| {
                Arc::new(
                    realm
                        .member(seed)
                        .membership(membership.clone())
                        .bootstrap(boot.clone())
                        .start(),
                )
            })
            .collect()
    });
    let t = Instant::now();
    while alive(&get(&metrics, "/metrics")) < PEERS {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the agent sees {} of {PEERS} peers alive after 120 s",
            alive(&get(&metrics, "/metrics"))
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Some RPC traffic, so that the RPC families are there.
    rt.block_on(async {
        for m in &members[..10] {
            let _ = m
                .call(
                    id,
                    macula_mesh::node::TIME_PROCEDURE,
                    Vec::new(),
                    Duration::from_secs(5),
                )
                .await;
        }
    });
    let page = get(&metrics, "/metrics");

    // The agent's own rate while 100 peers probe it, to take off each measurement.
    let (c0, t0) = (cpu_s(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let idle = (cpu_s(pid) - c0) / t0.elapsed().as_secs_f64();

    let (base_t, base_cpu) = measure(&metrics, "/nothing", pid, idle, SCRAPES);
    let (scrape_t, scrape_cpu) = measure(&metrics, "/metrics", pid, idle, SCRAPES);
    let after = get(&metrics, "/metrics");

    // What each scrape forked before: `nft list table inet macula` in the agent's namespace.
    let me = std::process::id();
    let (n0, mut nft) = (cpu_s(me), Vec::new());
    for _ in 0..50 {
        let t = Instant::now();
        let out = Command::new("nft")
            .args(["list", "table", "inet", "macula"])
            .output()
            .expect("run nft");
        assert!(out.status.success(), "nft list table inet macula failed");
        nft.push(t.elapsed());
    }
    let nft_cpu = (cpu_s(me) - n0) / 50.0;
    nft.sort();
    let nft_t = nft[25];

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "/metrics of maculad knowing {} members ({} alive before the scrapes, {} after; all {PEERS} \
         were alive), firewall on ({} lines, {:.1} KB), median of {SCRAPES}:",
        known(&after),
        alive(&page),
        alive(&after),
        page.lines().count(),
        page.len() as f64 / 1e3
    );
    println!(
        "  scrape   {:>6.2} ms, agent CPU {:>6.3} ms   baseline 404 {:>6.2} ms, CPU {:>6.3} ms   ratio {:.2}x time, {:.2}x CPU",
        ms(scrape_t),
        scrape_cpu * 1e3,
        ms(base_t),
        base_cpu * 1e3,
        ms(scrape_t) / ms(base_t),
        scrape_cpu / base_cpu.max(1e-6)
    );
    println!(
        "  nft list table (forked by each scrape before), median of 50: {:>6.2} ms, CPU {:>6.3} ms   \
         = {:.2}x a scrape now; a scrape with it: {:>6.2} ms",
        ms(nft_t),
        nft_cpu * 1e3,
        ms(nft_t) / ms(scrape_t),
        ms(scrape_t) + ms(nft_t)
    );
    println!(
        "  agent idle with {PEERS} peers: {:.1} ms CPU per second",
        idle * 1e3
    );
    drop(members);
    drop(rt);
    hub.stop(Duration::from_secs(5));
    drop(bus);
    drop(topo);
}
