//! `/metrics` of real `maculad` (docs/metrics.md): a realm of three on loopback, each serving
//! metrics on a port of its own; two nodes are scraped over HTTP before and after a put and a
//! get, and the figures must move as the D-Bus status says; `promtool check metrics` (Debian
//! `prometheus`, tests/deps/metrics.list) accepts the page, and a real Prometheus server scrapes
//! both nodes and answers queries with their figures. RPC calls (counts, errors by code,
//! latency histograms), pub/sub and storage latency figures move with the put, the get and a
//! refused remote command.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpStream;

use macula_testkit::check::{file_of, free_tcp_port, http_get, ok, try_http_get, wait_until};
use macula_testkit::realm::AgentRealm;

/// The samples of a scrape: `name{labels}` → value; checks every sample has HELP and TYPE.
fn scrape(port: u16) -> (String, BTreeMap<String, f64>) {
    let (status, ctype, body) = http_get(port, "GET", "/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(ctype, "text/plain; version=0.0.4; charset=utf-8");
    let mut samples = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut typed = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_string());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            typed.insert(name.to_string(), kind.to_string());
        } else {
            let (key, value) = line.rsplit_once(' ').expect("a sample line");
            let mut name = key.split('{').next().unwrap();
            assert!(name.starts_with("macula_"), "{line}");
            // A histogram's samples: its name with `_bucket`, `_sum` or `_count`.
            if let Some(base) = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|b| typed.get(*b).is_some_and(|k| k == "histogram"))
            {
                name = base;
            }
            assert!(
                helped.contains(name) && typed.contains_key(name),
                "{name} without HELP/TYPE"
            );
            samples.insert(key.to_string(), value.parse().expect("a number"));
        }
    }
    (body, samples)
}

fn promtool(body: &str) {
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian `prometheus`: run tests/install-deps.sh)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server of this test, stopped on drop.
struct Prometheus {
    child: std::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Scrapes `targets` (127.0.0.1 ports) every second.
    fn start(targets: &[u16]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let list: Vec<String> = targets
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: macula\n    \
                 static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let port = free_tcp_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("prometheus (Debian `prometheus`: run tests/install-deps.sh)");
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    /// `query` over the HTTP API: instance port → value (absent: the query failed).
    fn query(&self, query: &str) -> Option<BTreeMap<u16, f64>> {
        let q: String = query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (_, _, body) =
            try_http_get(self.port, "GET", &format!("/api/v1/query?query={q}")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let mut res = BTreeMap::new();
        for r in v["data"]["result"].as_array()? {
            let instance = r["metric"]["instance"].as_str()?;
            let port = instance.rsplit_once(':')?.1.parse().ok()?;
            res.insert(port, r["value"][1].as_str()?.parse().ok()?);
        }
        Some(res)
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_nodes_are_scraped_and_their_figures_move() {
    let ports: Vec<u16> = (0..3).map(|_| free_tcp_port()).collect();
    let nodes = AgentRealm::new(3)
        .coded(2, 1)
        .storage_extra(|i| format!("\n[metrics]\nlisten = \"127.0.0.1:{}\"\n", ports[i]))
        .start();
    let (a, b) = (ports[0], ports[1]);
    wait_until("metrics served", 10, || {
        TcpStream::connect(("127.0.0.1", a)).is_ok()
    });
    let (body, before_a) = scrape(a);
    promtool(&body);
    let (_, before_b) = scrape(b);
    for m in [&before_a, &before_b] {
        assert_eq!(m["macula_mesh_members{state=\"alive\"}"], 2.0, "{m:?}");
        assert_eq!(m["macula_mesh_members{state=\"down\"}"], 0.0);
        assert_eq!(m["macula_storage_enabled"], 1.0);
        assert_eq!(m["macula_storage_shards"], 0.0);
        assert!(m["macula_process_resident_memory_bytes"] > 1e6, "{m:?}");
        assert!(m.contains_key("macula_process_cpu_seconds_total"));
        // The firewall is off in this realm; S3 and proofs are off: their figures are absent.
        assert_eq!(m["macula_firewall_up"], 0.0);
        assert_eq!(m["macula_s3_serving"], 0.0);
        assert!(!m.contains_key("macula_s3_requests_total"));
        assert!(!m.contains_key("macula_proofs_ledger_records"));
    }

    let dir = tempfile::tempdir().unwrap();
    let (input, _) = file_of(dir.path(), "in.bin", 300_000, 3);
    let cap = ok(&nodes[0].agent.ctl(&["put", "-q", input.to_str().unwrap()]))
        .trim()
        .to_string();
    let back = dir.path().join("back.bin");
    ok(&nodes[1]
        .agent
        .ctl(&["get", &cap, "-o", back.to_str().unwrap()]));

    let (body, after_a) = scrape(a);
    promtool(&body);
    let (_, after_b) = scrape(b);
    assert_eq!(after_a["macula_storage_put_bytes_total"], 300_000.0);
    assert_eq!(after_b["macula_storage_get_bytes_total"], 300_000.0);
    assert_eq!(after_b["macula_storage_put_bytes_total"], 0.0);
    // 2 + 1 shards over 3 nodes: every node holds one of each segment (data and manifest).
    for (before, after, node) in [
        (&before_a, &after_a, &nodes[0]),
        (&before_b, &after_b, &nodes[1]),
    ] {
        assert!(after["macula_storage_shards"] >= 2.0, "{after:?}");
        assert!(after["macula_storage_used_bytes"] > before["macula_storage_used_bytes"]);
        // The same figure as `maculactl storage status` (one source of truth).
        let status = node.storage_status();
        assert_eq!(
            after["macula_storage_shards"],
            status["stats"]["shards"].as_f64().unwrap()
        );
    }

    // The RPC calls behind the put and the get: shards went out from node 0 (`store.put`) and
    // came to node 1 (`store.get`), each side counted, with a latency histogram per procedure.
    let put_calls = "macula_mesh_rpc_calls_total{side=\"caller\",procedure=\"store.put\"}";
    let get_calls = "macula_mesh_rpc_calls_total{side=\"caller\",procedure=\"store.get\"}";
    assert!(after_a[put_calls] >= 2.0, "{after_a:?}");
    assert!(after_b[get_calls] >= 1.0, "{after_b:?}");
    assert!(
        after_a["macula_mesh_rpc_calls_total{side=\"callee\",procedure=\"store.get\"}"] >= 1.0,
        "{after_a:?}"
    );
    for (m, procedure) in [(&after_a, "store.put"), (&after_b, "store.get")] {
        let l = format!("side=\"caller\",procedure=\"{procedure}\"");
        let count = m[&format!("macula_mesh_rpc_duration_seconds_count{{{l}}}")];
        assert_eq!(count, m[&format!("macula_mesh_rpc_calls_total{{{l}}}")]);
        assert_eq!(
            m[&format!("macula_mesh_rpc_duration_seconds_bucket{{{l},le=\"+Inf\"}}")],
            count
        );
        // Loopback calls: each well under 10 s, none of them free.
        let sum = m[&format!("macula_mesh_rpc_duration_seconds_sum{{{l}}}")];
        assert!(
            sum > 0.0 && sum < 10.0 * count,
            "{procedure}: {sum} s for {count} calls"
        );
        assert!(m[&format!("macula_mesh_rpc_duration_seconds_bucket{{{l},le=\"10\"}}")] == count);
    }
    // One put through node 0 and one get through node 1, timed.
    assert_eq!(after_a["macula_storage_put_duration_seconds_count"], 1.0);
    assert_eq!(after_b["macula_storage_get_duration_seconds_count"], 1.0);
    assert_eq!(after_b["macula_storage_put_duration_seconds_count"], 0.0);
    let put_s = after_a["macula_storage_put_duration_seconds_sum"];
    assert!(put_s > 0.0 && put_s < 30.0, "{put_s}");
    // Storage inventories are published and delivered over pub/sub; nothing was dropped.
    for m in [&after_a, &after_b] {
        assert!(m["macula_mesh_pubsub_published_total"] >= 1.0, "{m:?}");
        assert!(m["macula_mesh_pubsub_delivered_total"] >= 1.0, "{m:?}");
        assert_eq!(m["macula_mesh_pubsub_dropped_total"], 0.0);
    }
    // A refused call: node 1 holds no admin role, so node 0 refuses its remote command; both
    // sides count the error by its code.
    let refused = nodes[1].agent.ctl(&["--node", "n0", "status"]);
    assert!(!refused.status.success());
    let code = "procedure=\"admin.call\",code=\"permission-denied\"";
    let asked = scrape(b).1[&format!("macula_mesh_rpc_errors_total{{side=\"caller\",{code}}}")];
    assert!(asked >= 1.0);
    let (body, now_a) = scrape(a);
    assert_eq!(
        now_a[&format!("macula_mesh_rpc_errors_total{{side=\"callee\",{code}}}")],
        asked
    );
    promtool(&body);

    // A real Prometheus scrapes both nodes (`up` = 1) and holds the same figures.
    let prometheus = Prometheus::start(&[a, b]);
    let both = |m: &BTreeMap<u16, f64>, v: f64| m.get(&a) == Some(&v) && m.get(&b) == Some(&v);
    wait_until("Prometheus scraped both nodes", 30, || {
        prometheus.query("up").is_some_and(|m| both(&m, 1.0))
            && prometheus
                .query("macula_mesh_members{state=\"alive\"}")
                .is_some_and(|m| both(&m, 2.0))
    });
    let put = prometheus.query("macula_storage_put_bytes_total").unwrap();
    assert_eq!((put[&a], put[&b]), (300_000.0, 0.0), "{put:?}");
    // Histograms as Prometheus reads them: the median latency of node 0's shard puts.
    let median = prometheus
        .query("histogram_quantile(0.5, macula_mesh_rpc_duration_seconds_bucket{side=\"caller\",procedure=\"store.put\"})")
        .unwrap();
    assert!(median[&a] > 0.0 && median[&a] <= 10.0, "{median:?}");
    drop(prometheus);

    // A member stopped: the scrape of a live node sees it leave the alive count.
    let mut nodes = nodes;
    nodes[2].agent.kill();
    wait_until("node 2 not alive in node 0's metrics", 30, || {
        scrape(a).1["macula_mesh_members{state=\"alive\"}"] == 1.0
    });

    // Only GET /metrics.
    assert_eq!(http_get(a, "GET", "/").0, 404);
    assert_eq!(http_get(a, "GET", "/metrics/x").0, 404);
    assert_eq!(http_get(a, "POST", "/metrics").0, 405);
}
