//! The resource monitor: a thin reader of `/proc` and `statvfs` ([`read_sample`]), pure parsers of
//! the `/proc` texts, an [`Aggregator`] turning successive raw samples into the figures a node
//! reports ([`Resources`]: rates and busy shares need two samples), and a [`Spreader`] deciding
//! when a report has changed enough to be spread to the realm (bounded rate, heartbeat). The
//! figures are defined in `docs/proofs.md` §2; the signed report is [`SignedResources`].

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use macula_core::domains::Domain;
use macula_core::fsutil::fs_space;
use macula_core::{NodeId, NodeKey, wire};
use macula_mesh::sig::Sig;
use serde::{Deserialize, Serialize};

/// Why a sample could not be taken or a report not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("cannot parse {what}: {reason}; is this a Linux /proc?")]
    Parse { what: &'static str, reason: String },
    #[error("undecodable resource report: {0}")]
    Decode(String),
    #[error("resource report signature does not verify for {0}")]
    BadSignature(String),
}

fn parse_err(what: &'static str, reason: impl Into<String>) -> ResourceError {
    ResourceError::Parse {
        what,
        reason: reason.into(),
    }
}

/// Cumulative CPU time of all processors, in clock ticks (`/proc/stat` first line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CpuTimes {
    /// Ticks not idle and not waiting for I/O.
    pub busy: u64,
    /// All ticks.
    pub total: u64,
}

/// Byte counters of one network interface (`/proc/net/dev`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IfCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
}

/// One raw reading of the machine, as read; counters are cumulative.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sample {
    /// When it was taken (monotonic milliseconds, from the caller's clock).
    pub at_ms: u64,
    pub uptime_ms: u64,
    /// Logical processors (`processor` entries of `/proc/cpuinfo`).
    pub processors: u32,
    /// Cores per physical processor package.
    pub cores_per_processor: u32,
    /// Load averages over 1, 5, 15 minutes, in thousandths.
    pub load_milli: [u32; 3],
    pub cpu: CpuTimes,
    pub mem_total: u64,
    pub mem_available: u64,
    pub swap_total: u64,
    pub swap_used: u64,
    /// sR: bytes reported for Macula (the store quota, capped by what the file system can hold).
    pub disk_reported: u64,
    /// sT: bytes taken by stored shards.
    pub disk_taken: u64,
    pub interfaces: Vec<IfCounters>,
}

/// Traffic of one interface: totals and the rate over the last sampling interval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_bytes_per_s: u64,
    pub tx_bytes_per_s: u64,
}

/// The figures a node reports about itself (docs/proofs.md §2). Byte figures are bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Resources {
    pub uptime_s: u64,
    /// P: logical processors.
    pub processors: u32,
    /// Q: cores per physical processor package.
    pub cores_per_processor: u32,
    pub load_milli: [u32; 3],
    /// Share of CPU time busy since the previous sample, in thousandths (0 for the first).
    pub cpu_busy_permille: u32,
    pub mem_total: u64,
    pub mem_available: u64,
    pub swap_total: u64,
    pub swap_used: u64,
    /// sR.
    pub disk_reported: u64,
    /// sT.
    pub disk_taken: u64,
    pub interfaces: Vec<Interface>,
}

/// P and Q from `/proc/cpuinfo`: P counts `processor` entries; Q is the x86 `cpu cores` field
/// when present, else P divided by the number of distinct `physical id`s (one package when the
/// field is absent, as on ARM boards).
pub fn parse_cpuinfo(text: &str) -> Result<(u32, u32), ResourceError> {
    let mut processors = 0u32;
    let mut cores: Option<u32> = None;
    let mut packages = std::collections::BTreeSet::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => processors += 1,
            "cpu cores" => {
                cores = Some(
                    value
                        .parse()
                        .map_err(|_| parse_err("cpuinfo", format!("cpu cores {value:?}")))?,
                )
            }
            "physical id" => {
                packages.insert(value.to_string());
            }
            _ => {}
        }
    }
    if processors == 0 {
        return Err(parse_err("cpuinfo", "no processor entries"));
    }
    let packages = packages.len().max(1) as u32;
    let q = cores
        .filter(|&c| c > 0)
        .unwrap_or(processors / packages)
        .max(1);
    Ok((processors, q))
}

/// The aggregate CPU line of `/proc/stat`: busy = all − idle − iowait; guest time is already
/// counted in user time and is not added twice.
pub fn parse_stat(text: &str) -> Result<CpuTimes, ResourceError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| parse_err("stat", "no aggregate cpu line"))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|e| parse_err("stat", e.to_string()))?;
    if v.len() < 4 {
        return Err(parse_err("stat", format!("{} cpu fields", v.len())));
    }
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let total: u64 = v.iter().take(8).fold(0u64, |a, &x| a.saturating_add(x));
    let idle = v[3].saturating_add(v.get(4).copied().unwrap_or(0));
    Ok(CpuTimes {
        busy: total.saturating_sub(idle),
        total,
    })
}

/// `(mem_total, mem_available, swap_total, swap_used)` in bytes from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Result<(u64, u64, u64, u64), ResourceError> {
    let field = |name: &str| -> Result<u64, ResourceError> {
        let line = text
            .lines()
            .find(|l| l.split(':').next() == Some(name))
            .ok_or_else(|| parse_err("meminfo", format!("no {name}")))?;
        let kib: u64 = line
            .split(':')
            .nth(1)
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| parse_err("meminfo", format!("bad {name} line {line:?}")))?;
        Ok(kib.saturating_mul(1024))
    };
    let total = field("MemTotal")?;
    let available = field("MemAvailable")?;
    let swap_total = field("SwapTotal")?;
    let swap_free = field("SwapFree")?;
    Ok((
        total,
        available,
        swap_total,
        swap_total.saturating_sub(swap_free),
    ))
}

/// The three load averages of `/proc/loadavg`, in thousandths.
pub fn parse_loadavg(text: &str) -> Result<[u32; 3], ResourceError> {
    let mut out = [0u32; 3];
    let mut fields = text.split_whitespace();
    for slot in &mut out {
        let f = fields
            .next()
            .ok_or_else(|| parse_err("loadavg", "fewer than 3 fields"))?;
        let v: f64 = f
            .parse()
            .map_err(|_| parse_err("loadavg", format!("field {f:?}")))?;
        if !(0.0..4.0e6).contains(&v) {
            return Err(parse_err("loadavg", format!("load {v} out of range")));
        }
        *slot = (v * 1000.0).round() as u32;
    }
    Ok(out)
}

/// System uptime in milliseconds from `/proc/uptime`.
pub fn parse_uptime(text: &str) -> Result<u64, ResourceError> {
    let f = text
        .split_whitespace()
        .next()
        .ok_or_else(|| parse_err("uptime", "empty"))?;
    let v: f64 = f
        .parse()
        .map_err(|_| parse_err("uptime", format!("field {f:?}")))?;
    if !(0.0..1.0e12).contains(&v) {
        return Err(parse_err("uptime", format!("{v} out of range")));
    }
    Ok((v * 1000.0) as u64)
}

/// Byte counters per interface from `/proc/net/dev`, loopback left out.
pub fn parse_net_dev(text: &str) -> Result<Vec<IfCounters>, ResourceError> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let v: Vec<u64> = rest
            .split_whitespace()
            .map(|f| f.parse())
            .collect::<Result<_, _>>()
            .map_err(|_| parse_err("net/dev", format!("line {line:?}")))?;
        if v.len() < 16 {
            return Err(parse_err(
                "net/dev",
                format!("{} fields for {name}", v.len()),
            ));
        }
        out.push(IfCounters {
            name: name.to_string(),
            rx_bytes: v[0],
            tx_bytes: v[8],
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Where the reader looks and what the store says about itself.
#[derive(Debug, Clone)]
pub struct ReadSpec<'a> {
    /// `/proc` (a copy of its files in tests).
    pub proc_dir: &'a Path,
    /// A directory on the file system holding the shard store.
    pub data_dir: &'a Path,
    /// The store quota (bytes offered to Macula).
    pub quota: u64,
    /// Bytes the store currently uses (sT).
    pub taken: u64,
    /// Interfaces to report (all but loopback when empty).
    pub interfaces: &'a [String],
}

/// Reads one [`Sample`]: the `/proc` files and `statvfs` of the data directory. sR is the quota
/// capped by what the file system can still hold: `min(quota, taken + available)`.
pub fn read_sample(spec: &ReadSpec<'_>, at_ms: u64) -> Result<Sample, ResourceError> {
    let read = |name: &str| {
        let p = spec.proc_dir.join(name);
        std::fs::read_to_string(&p).map_err(|e| ResourceError::Read {
            path: p.display().to_string(),
            reason: e.to_string(),
        })
    };
    let (processors, cores_per_processor) = parse_cpuinfo(&read("cpuinfo")?)?;
    let (mem_total, mem_available, swap_total, swap_used) = parse_meminfo(&read("meminfo")?)?;
    let available = fs_space(spec.data_dir)
        .map_err(|e| ResourceError::Read {
            path: spec.data_dir.display().to_string(),
            reason: e.to_string(),
        })?
        .available;
    let mut interfaces = parse_net_dev(&read("net/dev")?)?;
    if !spec.interfaces.is_empty() {
        interfaces.retain(|i| spec.interfaces.contains(&i.name));
    }
    Ok(Sample {
        at_ms,
        uptime_ms: parse_uptime(&read("uptime")?)?,
        processors,
        cores_per_processor,
        load_milli: parse_loadavg(&read("loadavg")?)?,
        cpu: parse_stat(&read("stat")?)?,
        mem_total,
        mem_available,
        swap_total,
        swap_used,
        disk_reported: spec.quota.min(spec.taken.saturating_add(available)),
        disk_taken: spec.taken,
        interfaces,
    })
}

/// Turns successive samples into reported figures (CPU busy share and byte rates over the
/// interval since the previous sample).
#[derive(Debug, Default)]
pub struct Aggregator {
    prev: Option<Sample>,
}

impl Aggregator {
    pub fn update(&mut self, s: Sample) -> Resources {
        let prev = self.prev.as_ref().filter(|p| p.at_ms < s.at_ms);
        let cpu_busy_permille = match prev {
            Some(p) if s.cpu.total > p.cpu.total && s.cpu.busy >= p.cpu.busy => {
                let busy = s.cpu.busy - p.cpu.busy;
                let total = s.cpu.total - p.cpu.total;
                (busy.min(total) * 1000 / total) as u32
            }
            _ => 0,
        };
        let rate = |now: u64, before: Option<u64>| -> u64 {
            match (prev, before) {
                (Some(p), Some(b)) if now >= b => {
                    let ms = s.at_ms - p.at_ms;
                    ((now - b) as u128 * 1000 / u128::from(ms)) as u64
                }
                _ => 0,
            }
        };
        let interfaces = s
            .interfaces
            .iter()
            .map(|i| {
                let before = prev.and_then(|p| p.interfaces.iter().find(|x| x.name == i.name));
                Interface {
                    name: i.name.clone(),
                    rx_bytes: i.rx_bytes,
                    tx_bytes: i.tx_bytes,
                    rx_bytes_per_s: rate(i.rx_bytes, before.map(|b| b.rx_bytes)),
                    tx_bytes_per_s: rate(i.tx_bytes, before.map(|b| b.tx_bytes)),
                }
            })
            .collect();
        let r = Resources {
            uptime_s: s.uptime_ms / 1000,
            processors: s.processors,
            cores_per_processor: s.cores_per_processor,
            load_milli: s.load_milli,
            cpu_busy_permille,
            mem_total: s.mem_total,
            mem_available: s.mem_available,
            swap_total: s.swap_total,
            swap_used: s.swap_used,
            disk_reported: s.disk_reported,
            disk_taken: s.disk_taken,
            interfaces,
        };
        self.prev = Some(s);
        r
    }
}

/// When a report is spread: at most every `min_interval_ms`; at least every `max_interval_ms`
/// (heartbeat); in between when a figure moved by more than `threshold_permille` of its scale
/// (memory and swap figures against their totals, disk against sR, CPU busy and load in
/// thousandths, byte rates against the larger of the two rates) or the machine's shape changed
/// (P, Q, totals, interface set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpreadPolicy {
    pub threshold_permille: u32,
    pub min_interval_ms: u64,
    pub max_interval_ms: u64,
}

impl Default for SpreadPolicy {
    fn default() -> Self {
        Self {
            threshold_permille: 50,
            min_interval_ms: 2_000,
            max_interval_ms: 60_000,
        }
    }
}

/// Tracks the last spread report and decides about the next one.
#[derive(Debug, Default)]
pub struct Spreader {
    policy: SpreadPolicy,
    last: Option<(u64, Resources)>,
}

impl Spreader {
    pub fn new(policy: SpreadPolicy) -> Self {
        Self { policy, last: None }
    }

    /// Whether `r` (taken at `now_ms`) should be spread; if so it becomes the new reference.
    pub fn offer(&mut self, now_ms: u64, r: &Resources) -> bool {
        let spread = match &self.last {
            None => true,
            Some((at, last)) => {
                let since = now_ms.saturating_sub(*at);
                since >= self.policy.min_interval_ms
                    && (since >= self.policy.max_interval_ms
                        || changed(last, r, self.policy.threshold_permille))
            }
        };
        if spread {
            self.last = Some((now_ms, r.clone()));
        }
        spread
    }
}

/// Whether `b` differs from `a` by more than `threshold` thousandths on some figure.
pub fn changed(a: &Resources, b: &Resources, threshold: u32) -> bool {
    let th = u128::from(threshold);
    let moved = |x: u64, y: u64, scale: u64| -> bool {
        let d = u128::from(x.abs_diff(y)) * 1000;
        d > th * u128::from(scale.max(1))
    };
    let shape = a.processors != b.processors
        || a.cores_per_processor != b.cores_per_processor
        || a.mem_total != b.mem_total
        || a.swap_total != b.swap_total
        || a.interfaces.len() != b.interfaces.len()
        || a.interfaces
            .iter()
            .zip(&b.interfaces)
            .any(|(x, y)| x.name != y.name);
    shape
        || moved(a.mem_available, b.mem_available, b.mem_total)
        || moved(a.swap_used, b.swap_used, b.swap_total)
        || moved(
            a.disk_reported,
            b.disk_reported,
            a.disk_reported.max(b.disk_reported),
        )
        || moved(
            a.disk_taken,
            b.disk_taken,
            a.disk_reported.max(b.disk_reported),
        )
        || u64::from(a.cpu_busy_permille.abs_diff(b.cpu_busy_permille)) > u64::from(threshold)
        || moved(
            u64::from(a.load_milli[0]),
            u64::from(b.load_milli[0]),
            1000 * u64::from(b.processors.max(1)),
        )
        || a.interfaces.iter().zip(&b.interfaces).any(|(x, y)| {
            moved(
                x.rx_bytes_per_s,
                y.rx_bytes_per_s,
                x.rx_bytes_per_s.max(y.rx_bytes_per_s),
            ) || moved(
                x.tx_bytes_per_s,
                y.tx_bytes_per_s,
                x.tx_bytes_per_s.max(y.tx_bytes_per_s),
            )
        })
}

/// Largest encoded report accepted.
pub const MAX_REPORT: usize = 16 * 1024;
/// Interfaces per report.
pub const MAX_INTERFACES: usize = 32;

/// A node's report as spread: `wire((node, seq, resources))` signed by the node in the domain
/// `macula/v1/resources`; `seq` increases with every report so stale copies are dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedResources {
    #[serde(with = "macula_core::wire::bytes")]
    pub body: Vec<u8>,
    pub sig: Sig,
}

/// The signed part of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportBody {
    pub node: NodeId,
    pub seq: u64,
    pub resources: Resources,
}

impl SignedResources {
    pub fn sign(key: &NodeKey, seq: u64, resources: &Resources) -> Self {
        let body = wire::encode(&ReportBody {
            node: key.node_id(),
            seq,
            resources: resources.clone(),
        });
        let sig = Sig(key.sign(Domain::Resources, &body).to_bytes());
        Self { body, sig }
    }

    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    /// Decodes and verifies a received report (size, encoding, interface count, signature).
    pub fn decode_verified(bytes: &[u8]) -> Result<ReportBody, ResourceError> {
        let sr: SignedResources = wire::decode_with_limit(bytes, MAX_REPORT)
            .map_err(|e| ResourceError::Decode(e.to_string()))?;
        let body: ReportBody = wire::decode_with_limit(&sr.body, MAX_REPORT)
            .map_err(|e| ResourceError::Decode(e.to_string()))?;
        if body.resources.interfaces.len() > MAX_INTERFACES {
            return Err(ResourceError::Decode(format!(
                "{} interfaces, at most {MAX_INTERFACES}",
                body.resources.interfaces.len()
            )));
        }
        body.node
            .verify(
                Domain::Resources,
                &sr.body,
                &ed25519_dalek::Signature::from_bytes(&sr.sig.0),
            )
            .map_err(|_| ResourceError::BadSignature(body.node.to_string()))?;
        Ok(body)
    }
}

/// Realm topic of signed resource reports (`docs/protocol.md` pub/sub).
pub const TOPIC: &str = "macula/resources";

/// Shortest sampling interval, whatever `spread.min_interval_ms` says.
pub const MIN_SAMPLE: Duration = Duration::from_millis(200);

impl SpreadPolicy {
    /// How often the monitor samples: every `min_interval_ms`, at least [`MIN_SAMPLE`] apart.
    pub fn sample_interval(&self) -> Duration {
        Duration::from_millis(self.min_interval_ms).max(MIN_SAMPLE)
    }

    /// How long a received report is shown: three heartbeats (`max_interval_ms`).
    pub fn stale_after(&self) -> Duration {
        Duration::from_millis(self.max_interval_ms.saturating_mul(3))
    }
}

/// Why a received report was not kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportRefused {
    #[error(transparent)]
    Invalid(#[from] ResourceError),
    #[error("a report of {node} relayed as {publisher}'s")]
    Relayed { publisher: NodeId, node: NodeId },
}

/// A received report and when it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerReport {
    pub seq: u64,
    pub resources: Resources,
    pub at: Instant,
}

/// The others' latest reports as a node keeps them (sans-IO: the caller passes the time): a
/// report is kept when it verifies, its publisher is the node it describes, and it is newer
/// than what is held of that node; this node's own reports are not kept here.
#[derive(Debug)]
pub struct ReportBook {
    me: NodeId,
    stale: Duration,
    reports: HashMap<NodeId, PeerReport>,
}

impl ReportBook {
    pub fn new(me: NodeId, policy: &SpreadPolicy) -> Self {
        Self {
            me,
            stale: policy.stale_after(),
            reports: HashMap::new(),
        }
    }

    /// A publication on [`TOPIC`] from `publisher`, arrived at `now`: whether it was kept.
    pub fn receive(
        &mut self,
        publisher: NodeId,
        payload: &[u8],
        now: Instant,
    ) -> Result<bool, ReportRefused> {
        let body = SignedResources::decode_verified(payload)?;
        if body.node != publisher {
            return Err(ReportRefused::Relayed {
                publisher,
                node: body.node,
            });
        }
        if body.node == self.me
            || self
                .reports
                .get(&body.node)
                .is_some_and(|r| r.seq >= body.seq)
        {
            return Ok(false);
        }
        self.reports.insert(
            body.node,
            PeerReport {
                seq: body.seq,
                resources: body.resources,
                at: now,
            },
        );
        Ok(true)
    }

    /// The latest report of `node`, fresh or not.
    pub fn get(&self, node: &NodeId) -> Option<&PeerReport> {
        self.reports.get(node)
    }

    /// The reports not older than three heartbeats at `now`, by node ID (text order).
    pub fn fresh(&self, now: Instant) -> Vec<(NodeId, &PeerReport)> {
        let mut v: Vec<(NodeId, &PeerReport)> = self
            .reports
            .iter()
            .filter(|(_, r)| now.saturating_duration_since(r.at) <= self.stale)
            .map(|(id, r)| (*id, r))
            .collect();
        v.sort_by_key(|(id, _)| id.to_string());
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X86_CPUINFO: &str = include_str!("../tests/data/x86/cpuinfo");
    const X86_STAT: &str = include_str!("../tests/data/x86/stat");
    const X86_MEMINFO: &str = include_str!("../tests/data/x86/meminfo");
    const X86_NET: &str = include_str!("../tests/data/x86/net/dev");
    const PI4_CPUINFO: &str = include_str!("../tests/data/pi4/cpuinfo");
    const PI4_MEMINFO: &str = include_str!("../tests/data/pi4/meminfo");

    #[test]
    fn parses_captured_proc_text() {
        // The build machine: 2 logical processors, "cpu cores: 2" in one package.
        assert_eq!(parse_cpuinfo(X86_CPUINFO).unwrap(), (2, 2));
        // A Raspberry Pi 4: four processor entries, no package fields.
        assert_eq!(parse_cpuinfo(PI4_CPUINFO).unwrap(), (4, 4));
        // user+nice+system+idle+iowait+irq+softirq+steal; busy = total − idle − iowait.
        assert_eq!(
            parse_stat(X86_STAT).unwrap(),
            CpuTimes {
                busy: 8326 + 1487 + 1666 + 41 + 13,
                total: 31_657
            }
        );
        assert_eq!(
            parse_meminfo(X86_MEMINFO).unwrap(),
            (24_731_400 * 1024, 23_268_516 * 1024, 0, 0)
        );
        assert_eq!(
            parse_meminfo(PI4_MEMINFO).unwrap(),
            (
                3_884_292 * 1024,
                3_451_236 * 1024,
                102_396 * 1024,
                (102_396 - 90_108) * 1024
            )
        );
        assert_eq!(
            parse_loadavg("2.51 0.65 0.22 8/168 7022\n").unwrap(),
            [2510, 650, 220]
        );
        assert_eq!(parse_uptime("158.64 199.73\n").unwrap(), 158_640);
        let net = parse_net_dev(X86_NET).unwrap();
        let names: Vec<&str> = net.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "ifb0", "ifb1"], "loopback left out, sorted");
        assert!(net[0].rx_bytes > 0 && net[0].tx_bytes > 0);
    }

    #[test]
    fn bad_proc_text_is_an_error_not_a_panic() {
        assert!(parse_cpuinfo("").is_err());
        assert!(parse_cpuinfo("processor : 0\ncpu cores : x\n").is_err());
        assert!(parse_stat("cpu0 1 2 3 4\n").is_err());
        assert!(parse_stat("cpu  1 2\n").is_err());
        assert!(parse_stat("cpu  1 2 x 4\n").is_err());
        assert!(parse_meminfo("MemTotal: 1 kB\n").is_err());
        assert!(parse_loadavg("1.0 2.0").is_err());
        assert!(parse_loadavg("nan 1 1").is_err());
        assert!(parse_loadavg("-1 1 1").is_err());
        assert!(parse_uptime("").is_err());
        assert!(parse_uptime("inf 1").is_err());
        assert!(parse_net_dev("h\nh\n eth0: 1 2 3\n").is_err());
        // Huge counters saturate instead of overflowing.
        let huge = format!("cpu  {m} {m} {m} {m} {m} 0 0 0\n", m = u64::MAX);
        assert_eq!(parse_stat(&huge).unwrap().total, u64::MAX);
    }

    fn sample(at_ms: u64, busy: u64, total: u64, rx: u64, tx: u64) -> Sample {
        Sample {
            at_ms,
            uptime_ms: at_ms + 5000,
            processors: 4,
            cores_per_processor: 4,
            load_milli: [500, 400, 300],
            cpu: CpuTimes { busy, total },
            mem_total: 4 << 30,
            mem_available: 3 << 30,
            swap_total: 100 << 20,
            swap_used: 10 << 20,
            disk_reported: 100 << 30,
            disk_taken: 20 << 30,
            interfaces: vec![IfCounters {
                name: "eth0".into(),
                rx_bytes: rx,
                tx_bytes: tx,
            }],
        }
    }

    #[test]
    fn aggregator_computes_busy_share_and_rates() {
        let mut a = Aggregator::default();
        let first = a.update(sample(1000, 100, 1000, 1_000_000, 500));
        assert_eq!(first.cpu_busy_permille, 0);
        assert_eq!(first.interfaces[0].rx_bytes_per_s, 0);
        assert_eq!(first.uptime_s, 6);
        // 2 s later: 250 of 400 ticks busy; 3 MB in, 1000 B out.
        let r = a.update(sample(3000, 350, 1400, 4_000_000, 1500));
        assert_eq!(r.cpu_busy_permille, 625);
        assert_eq!(r.interfaces[0].rx_bytes_per_s, 1_500_000);
        assert_eq!(r.interfaces[0].tx_bytes_per_s, 500);
        assert_eq!((r.processors, r.cores_per_processor), (4, 4));
        // A counter that went backwards (interface reset) reports no rate, not a wrap.
        let r = a.update(sample(4000, 360, 1500, 10, 10));
        assert_eq!(r.interfaces[0].rx_bytes_per_s, 0);
        assert_eq!(r.cpu_busy_permille, 100);
        // A sample not after the previous one yields no rates.
        let r = a.update(sample(4000, 400, 1600, 20, 20));
        assert_eq!(r.cpu_busy_permille, 0);
    }

    #[test]
    fn spreader_sends_changes_beyond_the_threshold_at_a_bounded_rate() {
        let mut s = Spreader::new(SpreadPolicy {
            threshold_permille: 50,
            min_interval_ms: 2000,
            max_interval_ms: 60_000,
        });
        let mut agg = Aggregator::default();
        let base = agg.update(sample(0, 0, 1000, 0, 0));
        assert!(s.offer(0, &base), "the first report is always spread");
        // Same figures, uptime moved: nothing until the heartbeat.
        let mut same = base.clone();
        same.uptime_s += 30;
        assert!(!s.offer(30_000, &same));
        assert!(s.offer(60_000, &same), "heartbeat");
        // Memory down by 4 % of total: below the 5 % threshold.
        let mut small = same.clone();
        small.mem_available -= (4 << 30) / 25;
        assert!(!s.offer(63_000, &small));
        // Down by 6 %: spread, but not within the minimum interval.
        let mut big = same.clone();
        big.mem_available -= (4 << 30) * 6 / 100;
        assert!(!s.offer(61_000, &big), "rate bound");
        assert!(s.offer(63_000, &big));
        // Disk taken up by 10 % of sR; CPU busy by 6 points; a new interface.
        let mut disk = big.clone();
        disk.disk_taken += 10 << 30;
        assert!(s.offer(66_000, &disk));
        let mut cpu = disk.clone();
        cpu.cpu_busy_permille += 60;
        assert!(s.offer(69_000, &cpu));
        let mut nic = cpu.clone();
        nic.interfaces.push(Interface {
            name: "wlan0".into(),
            rx_bytes: 0,
            tx_bytes: 0,
            rx_bytes_per_s: 0,
            tx_bytes_per_s: 0,
        });
        assert!(s.offer(72_000, &nic));
        assert!(!changed(&nic, &nic, 0));
    }

    #[test]
    fn reads_a_proc_tree_and_statvfs() {
        let dir = std::env::temp_dir();
        let proc_copy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/x86");
        let spec = ReadSpec {
            proc_dir: Path::new("/proc"),
            data_dir: &dir,
            quota: u64::MAX,
            taken: 1000,
            interfaces: &[],
        };
        let s = read_sample(&spec, 5).unwrap();
        let avail = fs_space(&dir).unwrap().available;
        assert!(s.processors >= 1 && s.mem_total > 0);
        assert_eq!(s.disk_taken, 1000);
        // sR = min(quota, taken + available): the file system bounds an oversized quota.
        assert!(s.disk_reported <= 1000 + avail + (64 << 20));
        let small = ReadSpec {
            quota: 4096,
            ..spec.clone()
        };
        assert_eq!(read_sample(&small, 6).unwrap().disk_reported, 4096);
        let only = ["eth0".to_string()];
        let copy = ReadSpec {
            proc_dir: &proc_copy,
            interfaces: &only,
            ..spec
        };
        let s = read_sample(&copy, 7).unwrap();
        assert_eq!((s.processors, s.cores_per_processor), (2, 2));
        assert_eq!(s.interfaces.len(), 1);
        assert_eq!(s.load_milli, [2510, 650, 220]);
        let missing = ReadSpec {
            proc_dir: Path::new("/nonexistent"),
            ..copy
        };
        assert!(matches!(
            read_sample(&missing, 8),
            Err(ResourceError::Read { .. })
        ));
        let no_dir = ReadSpec {
            proc_dir: Path::new("/proc"),
            data_dir: Path::new("/nonexistent/x"),
            quota: 1,
            taken: 0,
            interfaces: &[],
        };
        assert!(matches!(
            read_sample(&no_dir, 9),
            Err(ResourceError::Read { .. })
        ));
    }

    #[test]
    fn signed_reports_verify_and_tampering_is_refused() {
        let key = NodeKey::from_seed([9; 32]);
        let r = Aggregator::default().update(sample(1, 1, 2, 3, 4));
        let bytes = SignedResources::sign(&key, 7, &r).encode();
        let body = SignedResources::decode_verified(&bytes).unwrap();
        assert_eq!(
            (body.node, body.seq, &body.resources),
            (key.node_id(), 7, &r)
        );
        let mut bad = bytes.clone();
        let n = bad.len();
        bad[n - 70] ^= 1;
        assert!(SignedResources::decode_verified(&bad).is_err());
        assert!(SignedResources::decode_verified(&bytes[..n - 1]).is_err());
        let mut many = r.clone();
        many.interfaces = vec![r.interfaces[0].clone(); MAX_INTERFACES + 1];
        let bytes = SignedResources::sign(&key, 8, &many).encode();
        assert!(matches!(
            SignedResources::decode_verified(&bytes),
            Err(ResourceError::Decode(_))
        ));
    }

    #[test]
    fn the_book_keeps_newer_verified_reports_of_their_publishers_while_fresh() {
        let policy = SpreadPolicy {
            threshold_permille: 50,
            min_interval_ms: 100,
            max_interval_ms: 1_000,
        };
        assert_eq!(policy.sample_interval(), MIN_SAMPLE);
        assert_eq!(policy.stale_after(), Duration::from_secs(3));
        let me = NodeKey::from_seed([1; 32]);
        let a = NodeKey::from_seed([2; 32]);
        let b = NodeKey::from_seed([3; 32]);
        let mut book = ReportBook::new(me.node_id(), &policy);
        let t0 = Instant::now();
        let r = |uptime_s| Resources {
            uptime_s,
            ..Resources::default()
        };
        let report = |k: &NodeKey, seq, uptime| SignedResources::sign(k, seq, &r(uptime)).encode();
        assert_eq!(book.receive(a.node_id(), &report(&a, 5, 10), t0), Ok(true));
        // Older or the same number: dropped.
        assert_eq!(book.receive(a.node_id(), &report(&a, 5, 11), t0), Ok(false));
        assert_eq!(book.receive(a.node_id(), &report(&a, 4, 12), t0), Ok(false));
        assert_eq!(book.get(&a.node_id()).unwrap().resources, r(10));
        // Own reports are not kept; relayed ones and damaged ones are refused.
        assert_eq!(
            book.receive(me.node_id(), &report(&me, 9, 1), t0),
            Ok(false)
        );
        assert_eq!(
            book.receive(b.node_id(), &report(&a, 6, 13), t0),
            Err(ReportRefused::Relayed {
                publisher: b.node_id(),
                node: a.node_id()
            })
        );
        assert!(matches!(
            book.receive(a.node_id(), b"\x01\x02", t0),
            Err(ReportRefused::Invalid(_))
        ));
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            book.receive(b.node_id(), &report(&b, 1, 20), later),
            Ok(true)
        );
        let fresh: Vec<NodeId> = book.fresh(later).iter().map(|(id, _)| *id).collect();
        let mut both = vec![a.node_id(), b.node_id()];
        both.sort_by_key(|id| id.to_string());
        assert_eq!(fresh, both);
        // Three heartbeats after it arrived, a's report is no longer shown (still held).
        let fresh = book.fresh(t0 + Duration::from_millis(3_001));
        assert_eq!(fresh.len(), 1);
        assert_eq!(fresh[0].0, b.node_id());
        assert!(book.get(&a.node_id()).is_some());
    }
}
