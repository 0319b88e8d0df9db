//! `io.macula.Node1`: who this node is and how it is doing.

use std::collections::HashMap;
use std::sync::Arc;

use macula_core::config::LogLevel;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedValue, Value};

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
}

/// This node's clock as learnt from the realm (median of peers' clocks, hubs preferred).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// The realm's clock minus ours, milliseconds (positive: ours is behind).
    pub offset_ms: i64,
    /// Whether that is beyond the threshold (the clock looks wrong).
    pub wrong: bool,
    /// How many peers' clocks the offset is the median of; whether they are hubs.
    pub peers: u32,
    pub hubs: bool,
    /// By how much the agent stepped the system clock to the realm's (0 = never).
    pub stepped_ms: i64,
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

    /// A summary of the node: node_id, node_id_short, name, role, version, started_at,
    /// uptime_s, log_level, pid; once the realm told the time: clock_offset_ms, clock_wrong,
    /// clock_peers, clock_hubs, clock_stepped_ms.
    fn status(&self) -> HashMap<String, OwnedValue> {
        let mut m = HashMap::new();
        let mut put = |k: &str, v: Value<'_>| {
            m.insert(
                k.to_owned(),
                v.try_to_owned()
                    .expect("plain values have no file descriptors"),
            );
        };
        put("node_id", Value::from(self.info.node_id.to_string()));
        put("node_id_short", Value::from(self.info.node_id.short()));
        put("name", Value::from(self.info.name.clone()));
        put("role", Value::from(self.info.role.to_string()));
        put("version", Value::from(self.info.version.clone()));
        put("started_at", Value::from(self.info.started_at));
        put("uptime_s", Value::from(self.started.elapsed().as_secs()));
        put(
            "log_level",
            Value::from(self.control.log_level().as_str().to_owned()),
        );
        put("pid", Value::from(std::process::id()));
        if let Some(c) = self.control.clock() {
            put("clock_offset_ms", Value::from(c.offset_ms));
            put("clock_wrong", Value::from(c.wrong));
            put("clock_peers", Value::from(c.peers));
            put("clock_hubs", Value::from(c.hubs));
            put("clock_stepped_ms", Value::from(c.stepped_ms));
        }
        m
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
    fn status(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
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
}
