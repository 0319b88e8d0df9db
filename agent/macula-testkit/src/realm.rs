//! One way to build a realm for tests: a [`Realm`] (its key) issues certificates, starts
//! in-process mesh nodes ([`Realm::member`], [`Realm::mesh`]: real QUIC on loopback in the test's
//! process, for `macula-mesh` and `macula-store` tests) and real `maculad` processes
//! ([`Realm::admit_agent`] for an agent started without a certificate, [`AgentRealm`]: a realm of
//! agents with storage on, for `maculad` tests).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use macula_core::{NodeId, NodeKey};
use macula_mesh::membership::{Capacity, MembershipConfig};
use macula_mesh::node::{Bootstrap, MeshNode, NodeConfig, PeerState};
use macula_mesh::realm::{Admission, CertBody, MembershipCert, RealmKey, Role};
use macula_mesh::transport::{TransportParams, unix_now};

use crate::check::{free_udp_port, ok, wait_until, wait_until_ok};
use crate::config::AgentConfig;
use crate::{Agent, AgentOptions, DbusDaemon};

/// A realm: its key, and what tests build with it.
pub struct Realm {
    key: RealmKey,
}

impl Realm {
    /// A realm whose key comes from `seed` (the same realm in every run).
    pub fn from_seed(seed: u8) -> Self {
        Self {
            key: RealmKey::from_seed([seed; 32]),
        }
    }

    /// A realm with a fresh random key.
    pub fn generate() -> Self {
        Self {
            key: RealmKey::generate(),
        }
    }

    pub fn key(&self) -> &RealmKey {
        &self.key
    }

    /// A certificate for `node`, valid from a minute ago until `expires` (unix seconds).
    pub fn cert_until(&self, node: NodeId, role: Role, name: &str, expires: u64) -> MembershipCert {
        self.key.issue(CertBody {
            realm: self.key.id(),
            node,
            role,
            name: name.into(),
            not_before: unix_now() - 60,
            expires,
        })
    }

    /// A certificate for `node`, valid from a minute ago for an hour.
    pub fn cert(&self, node: NodeId, role: Role, name: &str) -> MembershipCert {
        self.cert_until(node, role, name, unix_now() + 3600)
    }

    /// The admission of `key` with [`Realm::cert`].
    pub fn admission(&self, key: &NodeKey, role: Role, name: &str) -> Arc<Admission> {
        let cert = self.cert(key.node_id(), role, name);
        Arc::new(Admission::new(key.node_id(), cert, unix_now()).expect("a fresh certificate"))
    }

    /// An in-process member with key seed `seed`: an edge named `n<seed>`, listening on
    /// 127.0.0.1 (any port), no bootstrap, `MembershipConfig::lan(2)`, no storage; change what a
    /// test needs before [`Member::start`].
    pub fn member(&self, seed: u8) -> Member<'_> {
        Member {
            realm: self,
            key: NodeKey::from_seed([seed; 32]),
            role: Role::Edge,
            name: format!("n{seed}"),
            expires: unix_now() + 3600,
            config: NodeConfig {
                listen: "127.0.0.1:0".parse().expect("an address"),
                advertise: vec![],
                bootstrap: vec![],
                transport: TransportParams::default(),
                membership: MembershipConfig::lan(2),
                overlay_key: None,
                capacity: Capacity::default(),
                domains: Default::default(),
                state_dir: None,
                set_clock: false,
                ntp: Vec::new(),
            },
        }
    }

    /// Starts `count` in-process members (key seeds 1..=count, bootstrapped from the first, each
    /// offering `quota` bytes, `MembershipConfig::lan(count)`) and waits (60 s at most) until
    /// every node sees every other alive.
    pub async fn mesh(&self, count: usize, quota: u64) -> Vec<Arc<MeshNode>> {
        let member = |seed: u8| {
            self.member(seed)
                .membership(MembershipConfig::lan(count as u32))
                .capacity(Capacity {
                    storage_total: quota,
                    storage_free: quota,
                })
        };
        let first = member(1).start();
        let boot = vec![contact(&first)];
        let mut nodes = vec![Arc::new(first)];
        for seed in 2..=count as u8 {
            nodes.push(Arc::new(member(seed).bootstrap(boot.clone()).start()));
        }
        let formed = wait_async(Duration::from_secs(60), || {
            nodes.iter().all(|n| alive_peers(n) == count - 1)
        })
        .await;
        assert!(formed, "the mesh did not form");
        nodes
    }

    /// Writes a certificate (edge, [`Realm::cert`]) for the node ID `agent` created on its first
    /// start to `path` (the agent's `[mesh] cert`); the agent joins at its next start.
    pub fn admit_agent(&self, agent: &Agent, name: &str, path: &Path) {
        let key = std::fs::read_to_string(agent.state_dir().join("node.key"))
            .expect("the agent wrote its key");
        let id = key
            .lines()
            .find_map(|l| l.strip_prefix("id "))
            .expect("an `id` line in node.key")
            .parse()
            .expect("a node ID");
        let cert = self.cert(id, Role::Edge, name);
        std::fs::write(path, cert.to_text()).expect("write the certificate");
    }
}

/// `node_id` from `maculactl status --json` of `agent`.
pub fn agent_node_id(agent: &Agent) -> String {
    let status: serde_json::Value =
        serde_json::from_str(&ok(&agent.ctl(&["status", "--json"]))).expect("JSON");
    status["node_id"]
        .as_str()
        .expect("a node_id in the status")
        .to_string()
}

/// Admits `node` to the realm of `admin` (which holds the realm key: `maculactl realm create`
/// ran there) the way an operator does: `maculactl realm admit <id> --name <name>` on `admin`,
/// then `maculactl realm join` with that certificate on `node`.
pub fn admit_with_ctl(admin: &Agent, node: &Agent, name: &str) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cert = dir.path().join(format!("{name}.cert"));
    let cert = cert.to_str().expect("a UTF-8 path");
    let id = agent_node_id(node);
    ok(&admin.ctl(&["realm", "admit", &id, "--name", name, "-o", cert]));
    ok(&node.ctl(&["realm", "join", cert]));
}

/// An in-process member about to start (see [`Realm::member`]).
pub struct Member<'r> {
    realm: &'r Realm,
    key: NodeKey,
    role: Role,
    name: String,
    expires: u64,
    config: NodeConfig,
}

impl Member<'_> {
    pub fn role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    /// When its certificate expires (unix seconds).
    pub fn expires(mut self, at: u64) -> Self {
        self.expires = at;
        self
    }

    pub fn bootstrap(mut self, contacts: Vec<Bootstrap>) -> Self {
        self.config.bootstrap = contacts;
        self
    }

    pub fn membership(mut self, config: MembershipConfig) -> Self {
        self.config.membership = config;
        self
    }

    pub fn capacity(mut self, capacity: Capacity) -> Self {
        self.config.capacity = capacity;
        self
    }

    /// Any other setting of the node's configuration.
    pub fn config(mut self, f: impl FnOnce(&mut NodeConfig)) -> Self {
        f(&mut self.config);
        self
    }

    /// Starts the node (inside a tokio runtime).
    pub fn start(self) -> MeshNode {
        let cert = self
            .realm
            .cert_until(self.key.node_id(), self.role, &self.name, self.expires);
        let adm = Arc::new(
            Admission::new(self.key.node_id(), cert, unix_now()).expect("a valid certificate"),
        );
        MeshNode::start(&self.key, adm, self.config).expect("start a mesh node on loopback")
    }
}

/// How others reach `node`: its ID at its bound address.
pub fn contact(node: &MeshNode) -> Bootstrap {
    Bootstrap {
        node: Some(node.id()),
        addr: node.local_addr(),
    }
}

/// Members `node` sees alive.
pub fn alive_peers(node: &MeshNode) -> usize {
    node.peers()
        .iter()
        .filter(|p| p.state == PeerState::Alive)
        .count()
}

/// Whether `node` sees `others` members alive with their metadata (addresses) known: formed.
pub fn formed(node: &MeshNode, others: usize) -> bool {
    node.peers()
        .iter()
        .filter(|p| p.state == PeerState::Alive && p.meta.is_some())
        .count()
        == others
}

/// Polls `cond` every 100 ms (without blocking the runtime) until it holds or `timeout` passed;
/// whether it held.
pub async fn wait_async(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while !cond() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    true
}

/// Storage settings every node of an [`AgentRealm`] gets (the test's own lines follow).
const AGENT_STORAGE: &str = "enabled = true\nrepair_grace_secs = 3\n";
/// Each node's storage quota unless `quota` says otherwise.
const AGENT_QUOTA: u64 = 256 << 20;

/// A realm of real `maculad` processes with storage on, each on loopback with its own private
/// bus, admitted with `maculactl realm join`; node 0 is a hub, the others edges, all bootstrapped
/// from node 0.
pub struct AgentRealm<'a> {
    count: usize,
    /// `None`: k and m unset, chosen at each put (`auto_coding`).
    coding: Option<(u8, u8)>,
    quota: u64,
    extra: Box<dyn Fn(usize) -> String + 'a>,
    env: Box<dyn Fn(usize) -> Vec<(String, String)> + 'a>,
    realm: Option<Realm>,
    netns: Option<String>,
}

/// One node of an [`AgentRealm`].
pub struct RealmNode {
    pub name: String,
    pub agent: Agent,
    pub bus: DbusDaemon,
    pub alive: bool,
}

impl<'a> AgentRealm<'a> {
    /// `count` nodes storing objects as 3 + 2 shards, audits every 2 s.
    pub fn new(count: usize) -> Self {
        Self {
            count,
            coding: Some((3, 2)),
            quota: AGENT_QUOTA,
            extra: Box::new(|_| String::new()),
            env: Box::new(|_| Vec::new()),
            realm: None,
            netns: None,
        }
    }

    /// Admits the nodes to `realm` (default: a fresh random realm).
    pub fn realm(mut self, realm: Realm) -> Self {
        self.realm = Some(realm);
        self
    }

    /// Runs every node inside network namespace `ns` (with `lo` up; they talk over its
    /// loopback), e.g. so that one of them may own the namespace's firewall.
    pub fn netns(mut self, ns: String) -> Self {
        self.netns = Some(ns);
        self
    }

    /// Objects stored as `k + m` shards.
    pub fn coded(mut self, k: u8, m: u8) -> Self {
        self.coding = Some((k, m));
        self
    }

    /// `[storage] k` and `m` left unset: each put chooses them from the storage nodes.
    pub fn auto_coding(mut self) -> Self {
        self.coding = None;
        self
    }

    /// Each node's storage quota in bytes (default 256 MiB).
    pub fn quota(mut self, bytes: u64) -> Self {
        self.quota = bytes;
        self
    }

    /// `extra(i)` is appended to node `i`'s `[storage]` section (it may set
    /// `audit_interval_secs`, then the default of 2 is not written, and start further sections).
    pub fn storage_extra(mut self, extra: impl Fn(usize) -> String + 'a) -> Self {
        self.extra = Box::new(extra);
        self
    }

    /// `env(i)` is added to node `i`'s environment (e.g. a [`crate::rauc::FakeRauc`]'s).
    pub fn env(mut self, env: impl Fn(usize) -> Vec<(String, String)> + 'a) -> Self {
        self.env = Box::new(env);
        self
    }

    /// Starts the nodes, admits them, and waits until every node sees every other alive (60 s)
    /// and storage runs everywhere with every node (30 s).
    pub fn start(self) -> Vec<RealmNode> {
        let realm = self.realm.unwrap_or_else(Realm::generate);
        let coding = self
            .coding
            .map_or_else(String::new, |(k, m)| format!("k = {k}\nm = {m}\n"));
        let mut first_port = None;
        let mut nodes = Vec::new();
        let certs = tempfile::tempdir().expect("a temporary directory");
        for i in 0..self.count {
            let port = free_udp_port();
            let boot = first_port;
            first_port.get_or_insert(port);
            let name = format!("n{i}");
            let extra = (self.extra)(i);
            // A test may set its own audit interval (e.g. to keep corrupted shards on disk).
            let audit = if extra.contains("audit_interval_secs") {
                ""
            } else {
                "audit_interval_secs = 2\n"
            };
            let config = AgentConfig::loopback(port)
                .name(&name)
                .bootstrap_opt(boot)
                .storage(&format!(
                    "{AGENT_STORAGE}quota_bytes = {}\n{coding}{audit}{extra}",
                    self.quota
                ));
            let node =
                RealmNode::spawn_with(&name, config.to_string(), self.netns.clone(), (self.env)(i));
            let id = node.node_id().parse().expect("a node ID");
            let role = if i == 0 { Role::Hub } else { Role::Edge };
            let path = certs.path().join(format!("{name}.cert"));
            std::fs::write(&path, realm.cert(id, role, &name).to_text())
                .expect("write the certificate");
            ok(&node
                .agent
                .ctl(&["realm", "join", path.to_str().expect("a UTF-8 path")]));
            nodes.push(node);
        }
        let count = self.count;
        wait_until("every node sees every other alive", 60, || {
            nodes.iter().all(|n| n.alive_peers() == count - 1)
        });
        wait_until("storage runs everywhere", 30, || {
            nodes.iter().all(|n| {
                let s = n.storage_status();
                s["stats"]["running"] == true && s["stats"]["nodes"] == count
            })
        });
        nodes
    }
}

/// curl signing as an S3 client with access key `kid` (`--aws-sigv4`, region `macula`, the
/// payload `UNSIGNED-PAYLOAD`); the caller adds its options and URL.
pub fn s3_curl(kid: &str, secret: &str) -> std::process::Command {
    let mut c = std::process::Command::new("curl");
    c.args(["-sS", "--aws-sigv4", "aws:amz:macula:s3", "--user"])
        .arg(format!("{kid}:{secret}"))
        .args(["-H", "x-amz-content-sha256: UNSIGNED-PAYLOAD"]);
    c
}

impl RealmNode {
    /// `maculactl s3 key create <args>` on this node: the new key's (access key ID, secret).
    pub fn s3_key(&self, args: &[&str]) -> (String, String) {
        let created = ok(&self.agent.ctl(&[&["s3", "key", "create"], args].concat()));
        let field = |name: &str| {
            created
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {created}"))
                .to_string()
        };
        (field("AWS_ACCESS_KEY_ID="), field("AWS_SECRET_ACCESS_KEY="))
    }

    /// The UDP port its mesh listens on (the first `listen = "<ip>:<port>"` of its
    /// `agent.toml`, `[mesh]` being the only section with one in a realm's configs).
    pub fn mesh_port(&self) -> u16 {
        let config = self.agent.options().config.as_deref().unwrap_or_default();
        config
            .lines()
            .find_map(|l| l.trim().strip_prefix("listen = \""))
            .and_then(|v| v.trim_end_matches('"').rsplit(':').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{}: no [mesh] listen in its config:\n{config}", self.name))
    }

    /// How many shard files this node's store holds (`<state>/shards/shards/<xx>/…`).
    pub fn shard_count(&self) -> usize {
        let dir = self.agent.state_dir().join("shards").join("shards");
        std::fs::read_dir(dir).map_or(0, |d| {
            d.flatten()
                .map(|s| std::fs::read_dir(s.path()).map_or(0, |f| f.count()))
                .sum()
        })
    }

    /// A `maculad` named `name` with `config` as its `agent.toml`, on a private bus of its own.
    pub fn spawn(name: &str, config: String) -> Self {
        Self::spawn_in(name, config, None)
    }

    /// [`RealmNode::spawn`] inside network namespace `netns` when given.
    pub fn spawn_in(name: &str, config: String, netns: Option<String>) -> Self {
        Self::spawn_with(name, config, netns, Vec::new())
    }

    /// [`RealmNode::spawn_in`] with `env` added to the agent's environment.
    pub fn spawn_with(
        name: &str,
        config: String,
        netns: Option<String>,
        env: Vec<(String, String)>,
    ) -> Self {
        let bus = DbusDaemon::start();
        let agent = Agent::spawn(
            &bus,
            AgentOptions {
                config: Some(config),
                netns,
                env,
                ..Default::default()
            },
        );
        Self {
            name: name.to_string(),
            agent,
            bus,
            alive: true,
        }
    }

    /// `maculactl status --json`'s `node_id`.
    pub fn node_id(&self) -> String {
        agent_node_id(&self.agent)
    }

    /// `maculactl peers --json`.
    pub fn peers(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&self.agent.ctl(&["peers", "--json"]))).expect("JSON");
        v.as_array().expect("a list of peers").clone()
    }

    /// Peers this node sees alive.
    pub fn alive_peers(&self) -> usize {
        self.peers()
            .iter()
            .filter(|p| p["state"] == "alive")
            .count()
    }

    /// `maculactl storage status --json`.
    pub fn storage_status(&self) -> serde_json::Value {
        serde_json::from_str(&ok(&self.agent.ctl(&["storage", "status", "--json"]))).expect("JSON")
    }

    /// This node's log lines about storage repairs, each after the node's name (for failure
    /// messages).
    pub fn repair_log(&self) -> Vec<String> {
        self.agent
            .log()
            .lines()
            .filter(|l| l.contains("storage: repair"))
            .map(|l| format!("{}: {l}", self.name))
            .collect()
    }

    /// `maculactl proofs history --json`: the records of this node's ledger copy.
    pub fn ledger_records(&self) -> Vec<serde_json::Value> {
        let v: serde_json::Value =
            serde_json::from_str(&ok(&self.agent.ctl(&["proofs", "history", "--json"])))
                .expect("JSON");
        v.as_array().expect("a list of records").clone()
    }
}

/// The records of `old` missing from `new` (none when `new` holds them all).
pub fn missing(old: &[serde_json::Value], new: &[serde_json::Value]) -> Vec<serde_json::Value> {
    old.iter().filter(|e| !new.contains(e)).cloned().collect()
}

/// Waits (`secs` at most) until every node's ledger copy holds the same records up to epoch
/// `upto` (the head moves every epoch, so only past epochs compare), and node 0's holds some;
/// the panic names the records each copy lacks. Returns how long it took.
pub fn wait_ledgers_agree(nodes: &[RealmNode], upto: u64, secs: u64) -> Duration {
    let past = |n: &RealmNode| -> Vec<serde_json::Value> {
        n.ledger_records()
            .into_iter()
            .filter(|e| e["epoch"].as_u64().expect("an epoch") <= upto)
            .collect()
    };
    wait_until_ok(
        "every ledger copy holds the same records up to a past epoch",
        secs,
        || {
            let first = past(&nodes[0]);
            if first.is_empty() {
                return Err(format!(
                    "{} holds no record up to that epoch",
                    nodes[0].name
                ));
            }
            let apart: Vec<String> = nodes[1..]
                .iter()
                .map(|n| (n, past(n)))
                .filter(|(_, p)| *p != first)
                .map(|(n, p)| {
                    format!(
                        "{} lacks {:?}; {} lacks {:?}",
                        n.name,
                        missing(&first, &p),
                        nodes[0].name,
                        missing(&p, &first)
                    )
                })
                .collect();
            if apart.is_empty() {
                return Ok(());
            }
            // What the nodes said of records they refused or pulls that failed.
            let said: Vec<String> = nodes
                .iter()
                .flat_map(|n| {
                    let log = n.agent.log();
                    let lines: Vec<String> = log
                        .lines()
                        .filter(|l| {
                            l.contains("refused a ledger record")
                                || l.contains("ledger reply")
                                || l.contains("equivocation")
                        })
                        .map(|l| format!("{}: {l}", n.name))
                        .collect();
                    lines.into_iter().rev().take(5).collect::<Vec<_>>()
                })
                .collect();
            Err(format!(
                "up to epoch {upto}: {}\n{}",
                apart.join("\n"),
                said.join("\n")
            ))
        },
    )
}
