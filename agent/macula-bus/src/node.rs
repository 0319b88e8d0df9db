//! `io.macula.Node1`: who this node is and how it is doing.

use std::sync::Arc;

use macula_core::config::LogLevel;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{DeserializeDict, OwnedValue, SerializeDict, Type, Value};

use crate::Error;

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.Node1";

/// What the node interface needs from the daemon.
pub trait NodeControl: Send + Sync + 'static {
    /// Current log verbosity.
    fn log_level(&self) -> LogLevel;
    /// Changes log verbosity at run time.
    fn set_log_level(&self, level: LogLevel) -> Result<(), String>;
    /// What the realm's clocks say about this node's clock; `None` while the mesh is off or no
    /// peer answered yet.
    fn clock(&self) -> Option<ClockInfo>;
    /// The agent's background workers, in start order.
    fn workers(&self) -> Vec<WorkerStatus>;
    /// This node's last spread resource report (`seq` 0: monitor off or no sample yet).
    fn resources(&self) -> Resources;
    /// The latest report of every member heard from, this node's own included.
    fn peer_resources(&self) -> Vec<Resources>;
}

/// A node's resource report (`docs/proofs.md` §2) as `Node1.Resources` and the entries of
/// `Node1.PeerResources()` show it. Byte figures are bytes; `_milli` and `_permille` are
/// thousandths.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, SerializeDict, DeserializeDict, Type, Value, OwnedValue,
)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct Resources {
    pub node_id: String,
    /// Report number, growing with every report the node spreads; 0 = none yet.
    pub seq: u64,
    /// Milliseconds since this node made (own) or received (others') the report.
    pub age_ms: u64,
    pub uptime_s: u64,
    pub processors: u32,
    pub cores_per_processor: u32,
    pub load_1_milli: u32,
    pub load_5_milli: u32,
    pub load_15_milli: u32,
    pub cpu_busy_permille: u32,
    pub mem_total: u64,
    pub mem_available: u64,
    pub swap_total: u64,
    pub swap_used: u64,
    /// sR: bytes offered to Macula.
    pub disk_reported: u64,
    /// sT: bytes taken by shards.
    pub disk_taken: u64,
    /// Sums over `interfaces`.
    pub rx_bytes_per_s: u64,
    pub tx_bytes_per_s: u64,
    pub interfaces: Vec<InterfaceTraffic>,
}

/// Traffic of one reported interface.
#[derive(
    Debug, Clone, PartialEq, Eq, Default, SerializeDict, DeserializeDict, Type, Value, OwnedValue,
)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct InterfaceTraffic {
    pub name: String,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub rx_bytes_per_s: u64,
    pub tx_bytes_per_s: u64,
}

/// This node's clock as learnt from the realm (median of peers' clocks, hubs preferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// The realm's clock minus ours, milliseconds (positive: ours is behind).
    pub offset_ms: i64,
    /// Whether that is beyond the threshold (the clock looks wrong).
    pub wrong: bool,
    /// How many peers' clocks (or NTP servers) the offset is the median of; whether they are
    /// hubs; whether they are NTP servers.
    pub peers: u32,
    pub hubs: bool,
    pub ntp: bool,
    /// By how much the agent stepped the system clock to the realm's (0 = never).
    pub stepped_ms: i64,
}

/// What a background worker of the agent is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Type)]
#[zvariant(signature = "s", crate = "zbus::zvariant")]
#[serde(rename_all = "lowercase")]
pub enum WorkerState {
    /// Handling an event.
    Running,
    /// Waiting for its next event or timer.
    Idle,
    /// Returned: asked to stop, or nothing left to do.
    Stopped,
    /// Returned an error, panicked, or had to be aborted at shutdown (see `last_error`).
    Failed,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerState::Running => "running",
            WorkerState::Idle => "idle",
            WorkerState::Stopped => "stopped",
            WorkerState::Failed => "failed",
        }
    }
}

/// One entry of `Node1.Workers()`.
#[derive(Debug, Clone, PartialEq, Eq, SerializeDict, DeserializeDict, Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct WorkerStatus {
    pub name: String,
    pub state: WorkerState,
    /// The last error it reported or failed with; empty = none.
    pub last_error: String,
    /// Errors it reported so far.
    pub errors: u64,
}

/// `Node1.Status()`. The `clock_*` keys are present once a peer told the time.
#[derive(Debug, Clone, PartialEq, SerializeDict, DeserializeDict, Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct NodeStatus {
    pub node_id: String,
    pub node_id_short: String,
    pub name: String,
    pub role: String,
    pub version: String,
    pub started_at: u64,
    pub uptime_s: u64,
    pub log_level: String,
    pub pid: u32,
    pub clock_offset_ms: Option<i64>,
    pub clock_wrong: Option<bool>,
    pub clock_peers: Option<u32>,
    pub clock_hubs: Option<bool>,
    pub clock_ntp: Option<bool>,
    pub clock_stepped_ms: Option<i64>,
}

/// Static facts about the running node.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: macula_core::NodeId,
    pub name: String,
    pub role: macula_core::config::Role,
    pub version: String,
    /// Unix time (seconds) at which the daemon started.
    pub started_at: u64,
}

impl NodeInfo {
    /// `Node1.Status()`, for D-Bus and the dashboard alike.
    pub fn status(&self, control: &dyn NodeControl, uptime_s: u64) -> NodeStatus {
        let clock = control.clock();
        NodeStatus {
            node_id: self.node_id.to_string(),
            node_id_short: self.node_id.short(),
            name: self.name.clone(),
            role: self.role.to_string(),
            version: self.version.clone(),
            started_at: self.started_at,
            uptime_s,
            log_level: control.log_level().as_str().to_owned(),
            pid: std::process::id(),
            clock_offset_ms: clock.map(|c| c.offset_ms),
            clock_wrong: clock.map(|c| c.wrong),
            clock_peers: clock.map(|c| c.peers),
            clock_hubs: clock.map(|c| c.hubs),
            clock_ntp: clock.map(|c| c.ntp),
            clock_stepped_ms: clock.map(|c| c.stepped_ms),
        }
    }
}

/// The `io.macula.Node1` server object.
pub struct NodeObject {
    info: NodeInfo,
    control: Arc<dyn NodeControl>,
    /// Uptime is measured on the monotonic clock: the wall clock may be stepped.
    started: std::time::Instant,
}

impl NodeObject {
    pub fn new(info: NodeInfo, control: Arc<dyn NodeControl>) -> Self {
        Self {
            info,
            control,
            started: std::time::Instant::now(),
        }
    }
}

fn parse_level(s: &str) -> Option<LogLevel> {
    Some(match s {
        "error" => LogLevel::Error,
        "warn" => LogLevel::Warn,
        "info" => LogLevel::Info,
        "debug" => LogLevel::Debug,
        "trace" => LogLevel::Trace,
        _ => return None,
    })
}

#[zbus::interface(name = "io.macula.Node1")]
impl NodeObject {
    /// Node ID (base32 Ed25519 public key).
    #[zbus(property(emits_changed_signal = "const"))]
    fn node_id(&self) -> String {
        self.info.node_id.to_string()
    }

    /// Human-readable node name.
    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.info.name.clone()
    }

    /// `edge` or `hub`.
    #[zbus(property(emits_changed_signal = "const"))]
    fn role(&self) -> String {
        self.info.role.to_string()
    }

    /// Agent version.
    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        self.info.version.clone()
    }

    /// Unix time (seconds) at which the agent started.
    #[zbus(property(emits_changed_signal = "const"))]
    fn started_at(&self) -> u64 {
        self.info.started_at
    }

    /// Current log level.
    #[zbus(property)]
    fn log_level(&self) -> String {
        self.control.log_level().as_str().to_owned()
    }

    /// A summary of the node ([`NodeStatus`]).
    fn status(&self) -> NodeStatus {
        self.info
            .status(&*self.control, self.started.elapsed().as_secs())
    }

    /// The agent's background workers: name, state, last error, error count.
    fn workers(&self) -> Vec<WorkerStatus> {
        self.control.workers()
    }

    /// This node's last spread resource report ([`Resources`]); changes are signalled when a
    /// new report is spread (bounded by `[proofs] spread`).
    #[zbus(property)]
    fn resources(&self) -> Resources {
        self.control.resources()
    }

    /// The latest resource report of every member heard from, this node's own included.
    fn peer_resources(&self) -> Vec<Resources> {
        self.control.peer_resources()
    }

    /// Sets the log level (`error`, `warn`, `info`, `debug`, `trace`) until the next restart.
    async fn set_log_level(
        &self,
        level: &str,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), Error> {
        let parsed = parse_level(level).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "`{level}` is not a log level; use error, warn, info, debug or trace"
            ))
        })?;
        self.control.set_log_level(parsed).map_err(Error::Failed)?;
        tracing::info!(target: "macula::node", level, "log level changed over D-Bus");
        self.log_level_changed(&emitter).await?;
        Ok(())
    }
}

/// Client proxy for `io.macula.Node1`.
#[zbus::proxy(
    interface = "io.macula.Node1",
    default_service = "io.macula.Agent",
    default_path = "/io/macula/Agent"
)]
pub trait Node1 {
    fn status(&self)
    -> zbus::Result<std::collections::HashMap<String, zbus::zvariant::OwnedValue>>;
    fn set_log_level(&self, level: &str) -> zbus::Result<()>;
    #[zbus(property)]
    fn node_id(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn role(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn started_at(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn log_level(&self) -> zbus::Result<String>;
    fn workers(&self) -> zbus::Result<Vec<WorkerStatus>>;
    fn peer_resources(&self) -> zbus::Result<Vec<Resources>>;
    #[zbus(property)]
    fn resources(&self) -> zbus::Result<Resources>;
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use zbus::zvariant::serialized::Context;
    use zbus::zvariant::{LE, OwnedValue, to_bytes};

    use super::*;

    /// The keys a typed status puts on the bus (every optional key filled in).
    fn keys<T: serde::Serialize + Type>(v: &T) -> BTreeSet<String> {
        let bytes = to_bytes(Context::new_dbus(LE, 0), v).unwrap();
        let (map, _): (HashMap<String, OwnedValue>, _) = bytes.deserialize().unwrap();
        map.into_keys().collect()
    }

    /// The keys `docs/dbus.md` documents for `member` of `interface`: the backticked names in the
    /// row's notes, outside parentheses (which hold types, values and remarks).
    fn documented(interface: &str, member: &str) -> BTreeSet<String> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/dbus.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let section = doc
            .split("\n## ")
            .find(|s| s.starts_with(interface))
            .unwrap_or_else(|| panic!("no section {interface} in docs/dbus.md"));
        let row = section
            .lines()
            .find(|l| l.starts_with(&format!("| `{member}`")))
            .unwrap_or_else(|| panic!("no row {member} in {interface}"));
        let notes = row.trim_end_matches('|').rsplit('|').next().unwrap();
        let mut depth = 0usize;
        let flat: String = notes
            .chars()
            .filter(|&c| {
                match c {
                    '(' => depth += 1,
                    ')' => depth = depth.saturating_sub(1),
                    _ => return depth == 0,
                }
                false
            })
            .collect();
        flat.split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn node_status_keys_are_the_documented_ones() {
        let status = NodeStatus {
            node_id: String::new(),
            node_id_short: String::new(),
            name: String::new(),
            role: String::new(),
            version: String::new(),
            started_at: 0,
            uptime_s: 0,
            log_level: String::new(),
            pid: 0,
            clock_offset_ms: Some(0),
            clock_wrong: Some(false),
            clock_peers: Some(0),
            clock_hubs: Some(false),
            clock_ntp: Some(false),
            clock_stepped_ms: Some(0),
        };
        assert_eq!(keys(&status), documented("io.macula.Node1", "Status()"));
        let worker = WorkerStatus {
            name: "mesh.beacon".into(),
            state: WorkerState::Idle,
            last_error: String::new(),
            errors: 0,
        };
        assert_eq!(keys(&worker), documented("io.macula.Node1", "Workers()"));
        // Without a clock the `clock_*` keys are absent, not zero.
        let quiet = NodeStatus {
            clock_offset_ms: None,
            clock_wrong: None,
            clock_peers: None,
            clock_hubs: None,
            clock_ntp: None,
            clock_stepped_ms: None,
            ..status
        };
        assert!(keys(&quiet).iter().all(|k| !k.starts_with("clock_")));
        assert_eq!(keys(&quiet).len(), 9);
    }

    #[test]
    fn rollout_status_keys_are_the_documented_ones() {
        assert_eq!(
            keys(&crate::update::RolloutStatus::default()),
            documented("io.macula.Update1", "Rollout()")
        );
    }

    #[test]
    fn s3_status_keys_are_the_documented_ones() {
        let s = crate::s3::S3Status {
            enabled: true,
            serving: true,
            listen: String::new(),
            region: String::new(),
            requests: 0,
            errors: 0,
            bytes_in: 0,
            bytes_out: 0,
            uploads: 0,
            buckets: 0,
            objects: 0,
            keys: 0,
        };
        assert_eq!(keys(&s), documented("io.macula.S3", "Status()"));
    }

    #[test]
    fn resources_keys_are_the_documented_ones() {
        let iface = InterfaceTraffic {
            name: "eth0".into(),
            ..Default::default()
        };
        let r = Resources {
            interfaces: vec![iface.clone()],
            ..Default::default()
        };
        assert_eq!(keys(&r), documented("io.macula.Node1", "Resources"));
        assert_eq!(keys(&r), documented("io.macula.Node1", "PeerResources()"));
        assert_eq!(keys(&iface), documented("io.macula.Node1", "interfaces"));
    }

    #[test]
    fn proofs_keys_are_the_documented_ones() {
        use crate::proofs::{Balance, ProofEntry, ProofsStatus};
        assert_eq!(
            keys(&ProofsStatus::default()),
            documented("io.macula.Proofs1", "Status()")
        );
        assert_eq!(
            keys(&ProofEntry::default()),
            documented("io.macula.Proofs1", "History(s node)")
        );
        assert_eq!(
            keys(&Balance::default()),
            documented("io.macula.Proofs1", "Ledger()")
        );
    }

    #[test]
    fn firewall_status_keys_are_the_documented_ones() {
        let status = crate::firewall::FirewallStatus {
            pending: 0,
            rollback_in_s: 0,
            last_rollback: String::new(),
            quarantined: 0,
            applies: 0,
            rollbacks: 0,
        };
        assert_eq!(keys(&status), documented("io.macula.Firewall1", "Status()"));
    }

    #[test]
    fn uplink_keys_are_the_documented_ones() {
        let link = crate::uplinks::UplinkStatus {
            name: String::new(),
            interface: String::new(),
            priority: 0,
            active: false,
            healthy: false,
            carrier: false,
            rtt_us: 0,
            sent: 0,
            received: 0,
            redundant_tx_packets: 0,
            redundant_rx_packets: 0,
        };
        assert_eq!(keys(&link), documented("io.macula.Uplinks1", "Links()"));
    }

    #[test]
    fn object_stat_keys_are_the_documented_ones() {
        let stat = crate::storage::ObjectStat {
            object_id: String::new(),
            size: 0,
            segments: 0,
            segment_bytes: 0,
            k: 0,
            m: 0,
            codec: String::new(),
        };
        assert_eq!(keys(&stat), documented("io.macula.Storage1", "Stat(cap)"));
    }

    #[test]
    fn overlay_status_keys_are_the_documented_ones() {
        let status = crate::overlay::OverlayStatus {
            interface: String::new(),
            address: String::new(),
            public_key: String::new(),
            listen_port: 0,
            peers: 0,
            implementation: String::new(),
            kernel_wireguard: false,
            redundant_peers: 0,
        };
        assert_eq!(keys(&status), documented("io.macula.Overlay1", "Status()"));
        let peer = crate::overlay::OverlayPeer {
            public_key: String::new(),
            address: String::new(),
            endpoint: String::new(),
            last_handshake_s: 0,
            rx_bytes: 0,
            tx_bytes: 0,
            keepalive_s: 0,
            allowed_ips: vec![],
            redundant: false,
            redundant_tx_packets: 0,
            redundant_rx_packets: 0,
        };
        assert_eq!(keys(&peer), documented("io.macula.Overlay1", "Peers()"));
    }

    #[test]
    fn storage_stats_and_repair_queue_keys_are_the_documented_ones() {
        let some = Some(0);
        let mut stats = crate::storage::StorageStats {
            enabled: true,
            running: true,
            dir: String::new(),
            k: 0,
            m: 0,
            coding_auto: false,
            codec: String::new(),
            segment_bytes: 0,
            quota_bytes: some,
            owner_quota_bytes: some,
            owners: Some(0),
            used_bytes: some,
            free_bytes: some,
            shards: some,
            nodes: Some(0),
            inventory_rounds: 0,
            put_bytes: 0,
            get_bytes: 0,
        };
        assert_eq!(keys(&stats), documented("io.macula.Storage1", "Stats"));
        // Storage off: no store figures, not zeros.
        (stats.quota_bytes, stats.owner_quota_bytes, stats.used_bytes) = (None, None, None);
        (stats.free_bytes, stats.shards, stats.owners, stats.nodes) = (None, None, None, None);
        let off = zbus::zvariant::Value::from(stats);
        let off: HashMap<String, OwnedValue> = off.try_into().unwrap();
        assert!(!off.contains_key("used_bytes") && !off.contains_key("nodes"));
        assert!(off.contains_key("enabled"));
        let queue = crate::storage::RepairQueue {
            segments: 0,
            degraded: 0,
            leading: 0,
            inflight: 0,
            unrecoverable: vec![],
            repaired: 0,
            failed: 0,
        };
        assert_eq!(
            keys(&queue),
            documented("io.macula.Storage1", "RepairQueue")
        );
    }

    #[test]
    fn mesh_peer_keys_are_the_documented_ones() {
        let peer = crate::mesh::MeshPeer {
            node_id: String::new(),
            name: String::new(),
            role: String::new(),
            state: String::new(),
            generation: 0,
            addrs: vec![],
            uplinks: vec![],
            overlay_key: String::new(),
            version: String::new(),
            meta_version: 0,
            site: String::new(),
            power: String::new(),
            storage_total: 0,
            storage_free: 0,
        };
        assert_eq!(keys(&peer), documented("io.macula.Mesh1", "Peers"));
    }

    #[test]
    fn update_status_keys_are_the_documented_ones() {
        let status = crate::update::UpdateStatus {
            booted: String::new(),
            primary: String::new(),
            operation: String::new(),
            last_error: String::new(),
            compatible: String::new(),
            health: String::new(),
            slots: vec![],
        };
        assert_eq!(keys(&status), documented("io.macula.Update1", "Status()"));
    }
}
