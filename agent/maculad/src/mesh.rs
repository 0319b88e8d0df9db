//! Wiring of the mesh: starts `macula_mesh::node::MeshNode` when the node holds a membership
//! certificate, implements `io.macula.Mesh1`, forwards peer changes and publications as signals.

use macula_core::sync::Locked;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_lite::StreamExt;
use macula_bus::firewall::BoxFuture;
use macula_bus::mesh::{MemberReport, MeshControl, MeshObject, MeshPeer};
use macula_bus::remote::{self, RemoteCall, RemoteRequest};
use macula_bus::{Caller, Error};
use macula_core::NodeKey;
use macula_core::config::Role;
use macula_mesh::admin;
use macula_mesh::advertise;
use macula_mesh::announce::{Announce, CapacityAnnouncer};
use macula_mesh::beacon;
use macula_mesh::config::MeshSection;
use macula_mesh::join::{self, Invites, JoinCode, JoinError, JoinReply, Refusal};
use macula_mesh::membership::{Capacity, FailureDomains};
use macula_mesh::node::PeerState;
use macula_mesh::node::{Bootstrap, Contacts, MeshNode, NodeConfig, PeerInfo};
use macula_mesh::realm::{Admission, CertBody, MembershipCert, RealmKey, Revocation};
use macula_mesh::renewal::{self, RENEW_DEADLINE, RENEW_PROCEDURE, Renewal};
use macula_mesh::report::{self, NodeReport, NodeView};
use macula_mesh::revocations::RevocationStore;
use macula_mesh::transport::{TransportParams, unix_now};
use macula_net::overlay::{WgKey, peer_public_key};
use zbus::object_server::SignalEmitter;

use crate::worker::{WorkerCtx, Workers};

/// The mesh of this node: running once the node holds a membership certificate.
#[derive(Clone)]
pub struct MeshGlue {
    node: Arc<Mutex<Option<Arc<MeshNode>>>>,
    conn: Arc<std::sync::OnceLock<zbus::Connection>>,
    key: Arc<NodeKey>,
    config: MeshSection,
    state_dir: PathBuf,
    node_role: Role,
    /// Storage capacity announced in member metadata, and when to re-announce it.
    capacity: Arc<Mutex<CapacityAnnouncer>>,
    /// Failure-domain labels announced in member metadata.
    domains: FailureDomains,
    /// Tells waiters (storage) that the mesh started, without polling.
    started: Arc<tokio::sync::watch::Sender<bool>>,
    /// The renewal policy of this node's certificate, once the mesh runs (`Mesh1.Certificate`).
    renewal: Arc<Mutex<Option<Renewal>>>,
    /// Held while the invite store (`<state>/realm/invites`) is read and rewritten.
    invites: Arc<Mutex<()>>,
    /// Makes this node's report for the RPC `node.report` (`realm status`), once wired.
    reporter: Arc<std::sync::OnceLock<Reporter>>,
    workers: Workers,
}

/// Makes this node's [`NodeReport`] (wired in `main`: uptime and the update backend's status).
pub type Reporter = Arc<dyn Fn() -> BoxFuture<'static, NodeReport> + Send + Sync>;

/// Where the realm key lives when this node created the realm (`<state>/realm/node.key`).
fn realm_key_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("realm")
}

/// RPC procedure every member serves: answers with its certificate name (`maculactl ping`).
const PING: &str = "mesh.ping";
/// How long `maculactl ping` waits for the answer.
const PING_DEADLINE: Duration = Duration::from_secs(5);

/// Where known revocations are kept across restarts (`macula_mesh::revocations`).
fn revocation_store(state_dir: &Path) -> RevocationStore {
    RevocationStore::new(state_dir.join("revoked"))
}

fn parse_role(s: &str) -> Result<Role, Error> {
    match s {
        "edge" => Ok(Role::Edge),
        "hub" => Ok(Role::Hub),
        _ => Err(Error::InvalidArgument(format!(
            "unknown role `{s}`: use `edge` or `hub`"
        ))),
    }
}

/// Prepares the mesh and starts it when the certificate file exists; otherwise the mesh is off
/// until `Join`/`CreateRealm` (and says how to fix that).
pub fn start(
    config: &MeshSection,
    state_dir: &Path,
    key: &NodeKey,
    node_role: Role,
    capacity: Capacity,
    domains: FailureDomains,
    workers: Workers,
) -> Result<MeshGlue> {
    let glue = MeshGlue {
        node: Arc::default(),
        conn: Arc::default(),
        key: Arc::new(NodeKey::from_seed(*key.signing_key().as_bytes())),
        config: config.clone(),
        state_dir: state_dir.to_owned(),
        node_role,
        capacity: Arc::new(Mutex::new(CapacityAnnouncer::new(capacity))),
        domains,
        started: Arc::new(tokio::sync::watch::Sender::new(false)),
        renewal: Arc::default(),
        invites: Arc::default(),
        reporter: Arc::default(),
        workers,
    };
    let path = glue.cert_path();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && glue.join_code_path().exists() => {
            glue.join_with_code_file();
            return Ok(glue);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(target: "macula::mesh", cert = %path.display(), node_id = %key.node_id(),
                "no membership certificate; the mesh is off. Have this node ID admitted to a realm \
                 and install the certificate with `maculactl realm join` (docs/realms.md)");
            return Ok(glue);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let cert = MembershipCert::from_text(&text)
        .with_context(|| format!("{}: not a usable membership certificate", path.display()))?;
    if let Err(e @ macula_mesh::realm::CertError::Expired { .. }) =
        cert.verify(&cert.body.realm, unix_now())
    {
        // Lapsed while the node was off: it rejoins with a join code (or a new certificate).
        tracing::warn!(target: "macula::mesh", cert = %path.display(), error = %e,
            "the membership certificate lapsed; the mesh is off. Rejoin with a fresh join code \
             (`maculactl realm join --code`, or macula/join.code on the boot partition) or a new \
             certificate (`maculactl realm join FILE`)");
        if glue.join_code_path().exists() {
            glue.join_with_code_file();
        }
        return Ok(glue);
    }
    glue.start_node(cert)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    Ok(glue)
}

fn mesh_peer(p: &PeerInfo) -> MeshPeer {
    let meta = p.meta.as_ref();
    let text =
        |f: fn(&macula_mesh::membership::MemberMeta) -> String| meta.map(f).unwrap_or_default();
    let capacity = meta.map(|m| m.capacity).unwrap_or_default();
    MeshPeer {
        node_id: p.id.to_string(),
        name: text(|m| m.name.clone()),
        role: text(|m| m.role.to_string()),
        state: p.state.as_str().to_owned(),
        generation: p.generation,
        addrs: meta.map_or_else(Vec::new, |m| {
            m.addrs.iter().map(|a| a.addr.to_string()).collect()
        }),
        uplinks: meta.map_or_else(Vec::new, |m| {
            m.addrs.iter().map(|a| a.uplink.clone()).collect()
        }),
        overlay_key: meta
            .and_then(|m| m.overlay_key)
            .map(|k| WgKey(k).to_string())
            .unwrap_or_default(),
        version: text(|m| m.software.clone()),
        meta_version: meta.map_or(0, |m| m.version),
        site: text(|m| m.domains.site.to_string()),
        power: text(|m| m.domains.power.to_string()),
        storage_total: capacity.storage_total,
        storage_free: capacity.storage_free,
    }
}

impl MeshGlue {
    pub fn object(&self) -> MeshObject {
        MeshObject::new(Box::new(self.clone()))
    }

    fn cert_path(&self) -> PathBuf {
        self.config
            .cert
            .clone()
            .unwrap_or_else(|| self.state_dir.join("realm.cert"))
    }

    /// Starts the mesh node with `cert` (checked against this node's key).
    fn start_node(&self, cert: MembershipCert) -> Result<(), Error> {
        let mut slot = self.node.locked();
        if slot.is_some() {
            return Err(Error::Busy(
                "the mesh already runs with a certificate; restart maculad to switch realms".into(),
            ));
        }
        let admission = Admission::new(self.key.node_id(), cert, unix_now())
            .map_err(|e| Error::InvalidArgument(format!("certificate refused: {e}")))?;
        let admission = Arc::new(admission);
        let persisted = self.load_revocations(&admission);
        let Contacts {
            contacts: bootstrap,
            skipped,
        } = Bootstrap::resolve_all(&self.config.bootstrap)
            .map_err(|e| Error::InvalidArgument(format!("[mesh] bootstrap: {e}")))?;
        for e in skipped {
            tracing::warn!(target: "macula::mesh", "[mesh] bootstrap: {e}; skipped");
        }
        let (advertise, uplinks) = advertised_addrs(&self.config);
        let node = MeshNode::start_with_uplinks(
            &self.key,
            admission.clone(),
            NodeConfig {
                listen: self.config.listen,
                advertise,
                bootstrap,
                transport: TransportParams {
                    limits: self.config.limits,
                    ..TransportParams::default()
                },
                membership: self.config.membership(),
                // The overlay key is derived from the node key (docs/identity.md), so peers could
                // compute it; it is announced anyway so `maculactl peers` shows what WireGuard uses.
                overlay_key: Some(peer_public_key(&self.key.node_id()).0),
                capacity: {
                    let mut c = self.capacity.locked();
                    c.due(Instant::now());
                    c.announced()
                },
                domains: self.domains.clone(),
                state_dir: Some(self.state_dir.clone()),
                set_clock: self.config.set_clock,
                ntp: self.config.ntp.clone(),
            },
            &uplinks,
        )
        .map_err(|e| {
            Error::Failed(format!(
                "cannot start the mesh on {}: {e}",
                self.config.listen
            ))
        })?;
        tracing::info!(target: "macula::mesh", listen = %node.local_addr(), "mesh started");
        for rev in persisted {
            // Spread again: members that were offline when it was issued learn it now.
            if let Err(e) = node.revoke(rev) {
                tracing::warn!(target: "macula::mesh", error = %e, "stored revocation not spread");
            }
        }
        let name = admission.own_cert().body.name.into_bytes();
        node.serve(
            PING,
            Arc::new(move |_, _| {
                let name = name.clone();
                Box::pin(async move { Ok(name) })
            }),
        );
        let node = Arc::new(node);
        self.serve_renewals(&node, admission.clone());
        self.serve_admin(&node, admission.clone());
        self.serve_report(&node);
        serve_view(&node);
        self.serve_joins(&node);
        *self.renewal.locked() = Some(Renewal::new(admission.own_cert().body));
        self.renew_certificate(&node, admission.clone());
        self.keep_revocations(admission.clone());
        self.start_beacon(&node, admission.clone());
        *slot = Some(node.clone());
        drop(slot);
        self.started.send_replace(true);
        if let Some(conn) = self.conn.get() {
            forward_peer_changes(&self.workers, conn, &node);
            signal_enabled(conn);
        }
        Ok(())
    }

    /// Sends and hears the LAN discovery beacon on the `[mesh] lan_beacon` interfaces and dials
    /// every member it announces. An interface that cannot be used is reported and skipped.
    fn start_beacon(&self, node: &Arc<MeshNode>, admission: Arc<Admission>) {
        let group = self.config.beacon_group;
        let sockets: Vec<_> = self
            .config
            .lan_beacon
            .iter()
            .filter_map(|iface| match beacon::bind(iface, group) {
                Ok(s) => Some((iface.clone(), s)),
                Err(e) => {
                    tracing::error!(target: "macula::mesh", interface = %iface, error = %e,
                        "no LAN beacon on this interface; check the name in [mesh] lan_beacon");
                    None
                }
            })
            .collect();
        if sockets.is_empty() {
            return;
        }
        tracing::info!(target: "macula::mesh", interfaces = ?self.config.lan_beacon, %group,
            "LAN beacon on");
        let state = beacon::BeaconState::new(
            NodeKey::from_seed(*self.key.signing_key().as_bytes()),
            admission,
            node.local_addr().port(),
        );
        let watcher = node.clone();
        let connected = move |n: &macula_core::NodeId| watcher.is_connected(n);
        let dialer = node.clone();
        let found = move |f: beacon::Found| {
            let node = dialer.clone();
            tokio::spawn(async move {
                let contact = Bootstrap {
                    node: Some(f.node),
                    addr: f.addr,
                };
                match node.add_contact(contact).await {
                    Ok(()) => tracing::debug!(target: "macula::mesh", node = %f.node,
                        addr = %f.addr, "LAN beacon contact"),
                    Err(e) => tracing::info!(target: "macula::mesh", node = %f.node,
                        addr = %f.addr, "LAN beacon contact unreachable: {e}"),
                }
            });
        };
        let interval = std::time::Duration::from_secs(self.config.beacon_interval_s.max(1));
        self.workers.spawn("mesh.beacon", |ctx| async move {
            ctx.wait(beacon::run(
                state, sockets, group, interval, connected, found,
            ))
            .await;
            Ok(())
        });
    }

    /// On a node holding the realm key: serves [`RENEW_PROCEDURE`], renewing the certificate of
    /// a member in good standing (`macula_mesh::renewal::issue_renewal`), each caller limited by
    /// `renewal::RenewLimiter`.
    fn serve_renewals(&self, node: &Arc<MeshNode>, admission: Arc<Admission>) {
        let Ok(realm) = self.realm_key() else {
            return;
        };
        let realm = Arc::new(realm);
        let limiter = Arc::new(Mutex::new(renewal::RenewLimiter::default()));
        node.serve(
            RENEW_PROCEDURE,
            Arc::new(move |from, body| {
                let (realm, admission) = (realm.clone(), admission.clone());
                let allowed = limiter.locked().allow(from, unix_now());
                Box::pin(async move {
                    use macula_mesh::rpc::{ErrorCode, RpcError};
                    allowed.map_err(|e| {
                        tracing::warn!(target: "macula::mesh", node = %from, error = %e,
                            "certificate renewal refused");
                        RpcError::new(ErrorCode::Overloaded, e.to_string())
                    })?;
                    let text = String::from_utf8(body)
                        .map_err(|_| RpcError::new(ErrorCode::BadRequest, "not a certificate"))?;
                    let current = MembershipCert::from_text(&text)
                        .map_err(|e| RpcError::new(ErrorCode::BadRequest, e.to_string()))?;
                    let cert = renewal::issue_renewal(
                        &realm,
                        from,
                        &current,
                        |n| admission.is_revoked(n),
                        unix_now(),
                    )
                    .map_err(|e| {
                        tracing::warn!(target: "macula::mesh", node = %from, error = %e,
                            "certificate renewal refused");
                        RpcError::new(ErrorCode::PermissionDenied, e.to_string())
                    })?;
                    tracing::info!(target: "macula::mesh", node = %from, name = %cert.body.name,
                        expires = cert.body.expires, "renewed a member's certificate");
                    Ok(cert.to_text().into_bytes())
                })
            }),
        );
    }

    /// Serves [`report::PROCEDURE`] to every member: this node's [`NodeReport`] (`realm status`).
    fn serve_report(&self, node: &Arc<MeshNode>) {
        let reporter = self.reporter.clone();
        node.serve(
            report::PROCEDURE,
            Arc::new(move |_, _| {
                let make = reporter.get().cloned();
                Box::pin(async move {
                    let report = match make {
                        Some(make) => make().await,
                        None => NodeReport::default(),
                    };
                    Ok(report.encode())
                })
            }),
        );
    }

    /// Every member's membership view, this node's first, then each alive member that answered
    /// the RPC `node.view` within its deadline (the dashboard's map of who sees whom).
    pub async fn views(&self) -> Vec<(macula_core::NodeId, NodeView)> {
        let Some(mesh) = self.running_node() else {
            return Vec::new();
        };
        let mut calls = tokio::task::JoinSet::new();
        for p in mesh.peers() {
            if p.state != PeerState::Alive {
                continue;
            }
            let mesh = mesh.clone();
            calls.spawn(async move {
                let reply = mesh
                    .call(p.id, report::VIEW_PROCEDURE, vec![], report::DEADLINE)
                    .await
                    .ok()?;
                Some((p.id, NodeView::decode(&reply).ok()?))
            });
        }
        let mut views = vec![(self.key.node_id(), view_of(&mesh))];
        while let Some(done) = calls.join_next().await {
            if let Ok(Some(v)) = done {
                views.push(v);
            }
        }
        views
    }

    /// Sets what makes this node's report for `realm status` (`Mesh1.Reports`, RPC
    /// `node.report`).
    pub fn set_reporter(&self, reporter: Reporter) {
        let _ = self.reporter.set(reporter);
    }

    /// Serves [`admin::PROCEDURE`] (remote administration, `maculactl --node`): a member whose
    /// certificate grants the admin role (`macula_mesh::admin::authorize`) may run the methods
    /// `macula_bus::remote::runnable` lists; each is replayed on this agent's own bus, so it goes
    /// through the same interface objects and backends as a local call. Nothing runs before both
    /// checks passed.
    fn serve_admin(&self, node: &Arc<MeshNode>, admission: Arc<Admission>) {
        let conn = self.conn.clone();
        node.serve(
            admin::PROCEDURE,
            Arc::new(move |from, body| {
                let (conn, admission) = (conn.clone(), admission.clone());
                Box::pin(async move {
                    use macula_mesh::rpc::{ErrorCode, RpcError};
                    let refused = |code, message: String| {
                        tracing::warn!(target: "macula::mesh", node = %from, %message,
                            "remote command refused");
                        RpcError::new(code, message)
                    };
                    let req = RemoteRequest::decode(&body)
                        .map_err(|e| refused(ErrorCode::BadRequest, bus_message(e)))?;
                    let cert = MembershipCert::from_text(&req.cert)
                        .map_err(|e| refused(ErrorCode::BadRequest, e.to_string()))?;
                    admin::authorize(
                        &admission.realm(),
                        from,
                        &cert,
                        |n| admission.is_revoked(n),
                        unix_now(),
                    )
                    .map_err(|e| refused(ErrorCode::PermissionDenied, e.to_string()))?;
                    let (interface, member) = (&req.call.interface, &req.call.member);
                    remote::runnable(interface, member)
                        .map_err(|e| refused(ErrorCode::PermissionDenied, bus_message(e)))?;
                    let conn = conn.get().ok_or_else(|| {
                        RpcError::new(ErrorCode::Unavailable, "the agent's bus is not up yet")
                    })?;
                    tracing::info!(target: "macula::mesh", node = %from, name = %cert.body.name,
                        method = %format!("{interface}.{member}"), "running a remote command");
                    Ok(remote::run_locally(conn, &req.call).await.encode())
                })
            }),
        );
    }

    /// The worker `mesh.renewal`: renews this node's certificate when the policy says
    /// (`macula_mesh::renewal::Renewal`), installs it in the running mesh and stores it.
    fn renew_certificate(&self, node: &Arc<MeshNode>, admission: Arc<Admission>) {
        let (glue, node) = (self.clone(), node.clone());
        self.workers.spawn("mesh.renewal", |ctx| async move {
            loop {
                let wake = glue
                    .renewal
                    .locked()
                    .as_ref()
                    .and_then(Renewal::next_wakeup);
                let Some(wake) = wake else {
                    return Ok(());
                };
                let delay =
                    Duration::from_secs(wake.saturating_sub(unix_now()).min(renewal::RECHECK_S));
                if ctx.wait(tokio::time::sleep(delay)).await.is_none() {
                    return Ok(());
                }
                let due = glue
                    .renewal
                    .locked()
                    .as_mut()
                    .and_then(|r| r.poll(unix_now()));
                if due.is_none() {
                    continue;
                }
                let current = admission.own_cert();
                let result = match ctx
                    .wait(glue.renewed_cert(&node, &admission, &current))
                    .await
                {
                    Some(r) => r,
                    None => return Ok(()),
                };
                let now = unix_now();
                let installed = result.and_then(|cert| {
                    renewal::check_renewed(&current, &cert, now).map_err(|e| e.to_string())?;
                    glue.write_cert(&cert).map_err(|e| e.to_string())?;
                    node.renew_cert(cert.clone()).map_err(|e| e.to_string())?;
                    Ok(cert)
                });
                let mut policy = glue.renewal.locked();
                let Some(policy) = policy.as_mut() else {
                    return Ok(());
                };
                match installed {
                    Ok(cert) => {
                        tracing::info!(target: "macula::mesh", expires = cert.body.expires,
                            "membership certificate renewed");
                        policy.renewed(cert.body, now);
                    }
                    Err(e) => {
                        tracing::warn!(target: "macula::mesh", error = %e, expires =
                            current.body.expires, "membership certificate not renewed; trying \
                            again later. A node that holds the realm key must be reachable");
                        ctx.error(format!("certificate not renewed: {e}"));
                        policy.failed(e, now);
                    }
                }
            }
        });
    }

    /// A renewal of `current`: issued here when this node holds the realm key, else asked of
    /// the members that are alive, hubs first, until one holding the key answers.
    async fn renewed_cert(
        &self,
        node: &MeshNode,
        admission: &Admission,
        current: &MembershipCert,
    ) -> Result<MembershipCert, String> {
        if let Ok(realm) = self.realm_key() {
            return renewal::issue_renewal(
                &realm,
                self.key.node_id(),
                current,
                |n| admission.is_revoked(n),
                unix_now(),
            )
            .map_err(|e| e.to_string());
        }
        let mut peers: Vec<PeerInfo> = node
            .peers()
            .into_iter()
            .filter(|p| p.state == PeerState::Alive)
            .collect();
        peers.sort_by_key(|p| p.meta.as_ref().is_none_or(|m| m.role != Role::Hub));
        let mut errors = Vec::new();
        for p in peers {
            let request = current.to_text().into_bytes();
            match node
                .call(p.id, RENEW_PROCEDURE, request, RENEW_DEADLINE)
                .await
            {
                Ok(reply) => {
                    return String::from_utf8(reply)
                        .map_err(|_| "not text".to_string())
                        .and_then(|t| MembershipCert::from_text(&t).map_err(|e| e.to_string()))
                        .map_err(|e| {
                            format!("{} answered with no certificate: {e}", p.id.short())
                        });
                }
                Err(e) => errors.push(format!("{}: {e}", p.id.short())),
            }
        }
        if errors.is_empty() {
            return Err("no member is alive to ask".into());
        }
        Err(format!(
            "no member holding the realm key renewed it ({})",
            errors.join("; ")
        ))
    }

    /// Loads the stored revocations into `admission` (before the endpoint accepts anyone).
    /// A file that does not decode or verify is reported and left in place.
    fn load_revocations(&self, admission: &Admission) -> Vec<Revocation> {
        let store = revocation_store(&self.state_dir);
        let loaded = match store.load(admission) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(target: "macula::mesh", dir = %store.dir().display(), error = %e,
                    "cannot read the stored revocations; revoked nodes are refused again once \
                     members re-spread them. Check the directory's permissions");
                return vec![];
            }
        };
        for (path, e) in &loaded.ignored {
            tracing::warn!(target: "macula::mesh", file = %path.display(),
                error = %e, "ignoring a stored revocation (not for this realm or damaged); \
                delete the file if it is not needed");
        }
        if !loaded.revocations.is_empty() {
            tracing::info!(target: "macula::mesh", count = loaded.revocations.len(),
                "stored revocations loaded");
        }
        loaded.revocations
    }

    /// Writes every revocation `admission` learns (issued here or heard from members) to the
    /// state directory when it is recorded, and once more when stopped (the worker
    /// `mesh.revocations`).
    fn keep_revocations(&self, admission: Arc<Admission>) {
        let store = revocation_store(&self.state_dir);
        let mut changes = admission.revocations_changed();
        changes.mark_changed();
        self.workers.spawn("mesh.revocations", |ctx| async move {
            loop {
                let next = ctx.wait(changes.changed()).await;
                store_revocations(&ctx, &store, &admission);
                if !matches!(next, Some(Ok(()))) {
                    return Ok(());
                }
            }
        });
    }

    /// Forwards peer changes as `PeerChanged` signals (now, or when the mesh starts).
    pub fn emit_changes(&self, conn: &zbus::Connection) {
        let _ = self.conn.set(conn.clone());
        if let Some(node) = self.running_node() {
            forward_peer_changes(&self.workers, conn, &node);
        }
    }

    /// Re-announces this node's storage capacity in its member metadata when it moved enough to
    /// matter to placement (see [`CapacityAnnouncer`]: the quota changed, or free space by at least
    /// 1 % of the quota or `shard_bytes`), at most once per `announce::ANNOUNCE_INTERVAL`. A change held
    /// back by the interval returns when to call [`MeshGlue::announce_held_capacity`]. Cheap: call
    /// it whenever free space may have changed. While the mesh is off the value is kept for its
    /// start.
    pub fn announce_capacity(&self, capacity: Capacity, shard_bytes: u64) -> Option<Duration> {
        let decision = self
            .capacity
            .locked()
            .offer(capacity, shard_bytes, Instant::now());
        match decision {
            Announce::Now(c) => self.set_capacity(c),
            Announce::Later(after) => return Some(after),
            Announce::Nothing => {}
        }
        None
    }

    /// Announces the change [`MeshGlue::announce_capacity`] held back, if it still stands.
    pub fn announce_held_capacity(&self) {
        let due = self.capacity.locked().due(Instant::now());
        if let Some(c) = due {
            self.set_capacity(c);
        }
    }

    /// The mesh node once it runs (at start-up or after `Join`/`CreateRealm`).
    pub async fn wait_running(&self) -> Arc<MeshNode> {
        let mut started = self.started.subscribe();
        loop {
            if let Some(node) = self.running_node() {
                return node;
            }
            if started.changed().await.is_err() {
                // The sender lives in `self`: never closed while we wait.
                std::future::pending::<()>().await;
            }
        }
    }

    fn set_capacity(&self, c: Capacity) {
        if let Some(node) = self.running_node() {
            tracing::debug!(target: "macula::mesh", free = c.storage_free, quota = c.storage_total,
                "announcing storage capacity");
            node.set_capacity(c);
        }
    }

    /// Leaves the realm gracefully (at agent shutdown).
    pub async fn leave(&self) {
        if let Some(node) = self.running_node() {
            node.leave().await;
        }
    }

    pub(crate) fn running_node(&self) -> Option<Arc<MeshNode>> {
        self.node.locked().clone()
    }

    /// The role in this node's membership certificate, once the mesh runs.
    pub(crate) fn cert_role(&self) -> Option<Role> {
        self.renewal.locked().as_ref().map(|p| p.cert().role)
    }

    fn running(&self) -> Result<Arc<MeshNode>, Error> {
        self.running_node().ok_or_else(|| {
            Error::Unavailable(
                "the mesh is off: this node has no membership certificate; install one with \
                 `maculactl realm join <file>` (docs/realms.md)"
                    .into(),
            )
        })
    }

    /// The realm key, when this node created the realm.
    pub(crate) fn realm_key(&self) -> Result<RealmKey, Error> {
        let path = realm_key_dir(&self.state_dir).join(macula_core::identity::KEY_FILE);
        let key = NodeKey::load(&path).map_err(|e| match e {
            macula_core::identity::IdentityError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Error::NotFound(
                    "this node holds no realm key; run this on the node that created the realm"
                        .into(),
                )
            }
            e => Error::Failed(e.to_string()),
        })?;
        Ok(RealmKey::from_node_key(key))
    }

    fn write_cert(&self, cert: &MembershipCert) -> Result<(), Error> {
        let path = self.cert_path();
        macula_core::fsutil::write_atomic(&path, cert.to_text().as_bytes(), 0o644)
            .map_err(|e| Error::Failed(format!("cannot write {}: {e}", path.display())))
    }
}

/// Whom `node` holds alive, suspect and down.
fn view_of(node: &MeshNode) -> NodeView {
    let mut view = NodeView::default();
    for p in node.peers() {
        let list = match p.state {
            PeerState::Alive => &mut view.alive,
            PeerState::Suspect => &mut view.suspect,
            PeerState::Down => &mut view.down,
        };
        list.push(*p.id.as_bytes());
    }
    view
}

/// Serves [`report::VIEW_PROCEDURE`] to every member: whom this node sees.
fn serve_view(node: &Arc<MeshNode>) {
    let weak = Arc::downgrade(node);
    node.serve(
        report::VIEW_PROCEDURE,
        Arc::new(move |_, _| {
            let view = weak.upgrade().map(|n| view_of(&n)).unwrap_or_default();
            Box::pin(async move { Ok(view.encode()) })
        }),
    );
}

/// Where a node holding the realm key keeps the join codes it issued (`macula_mesh::join`).
fn invites_path(state_dir: &Path) -> PathBuf {
    realm_key_dir(state_dir).join("invites")
}

/// A join code for this node, placed by the boot partition's `macula/join.code`.
const JOIN_CODE_FILE: &str = "join.code";

fn load_invites(path: &Path) -> Result<Invites, String> {
    match std::fs::read(path) {
        Ok(bytes) => Invites::from_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Invites::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn store_invites(path: &Path, invites: &Invites) -> Result<(), String> {
    macula_core::fsutil::write_atomic(path, &invites.to_bytes(), 0o600)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl MeshGlue {
    fn join_code_path(&self) -> PathBuf {
        self.state_dir.join(JOIN_CODE_FILE)
    }

    /// Answers join-code requests from the invite store, with the realm key read at each
    /// request (a key copied in after the start works at once; without one the asker is told
    /// so); an invite is recorded as used on disk before the certificate is sent.
    fn serve_joins(&self, node: &Arc<MeshNode>) {
        let me = self.clone();
        let (path, lock, issuer) = (
            invites_path(&self.state_dir),
            self.invites.clone(),
            self.key.node_id(),
        );
        node.serve_joins(Arc::new(move |from, req| {
            let realm = match me.realm_key() {
                Ok(realm) => realm,
                Err(e) => {
                    return JoinReply::Refused(Refusal::Unavailable(format!(
                        "this node issues no join codes now: {e}"
                    )));
                }
            };
            let _held = lock.locked();
            let mut invites = match load_invites(&path) {
                Ok(i) => i,
                Err(e) => return JoinReply::Refused(Refusal::Unavailable(e)),
            };
            match invites.redeem(&realm.id(), &issuer, from, &req, unix_now()) {
                Ok(body) => {
                    if let Err(e) = store_invites(&path, &invites) {
                        tracing::error!(target: "macula::mesh", node = %from, error = %e,
                            "join code not redeemed: cannot record it as used");
                        return JoinReply::Refused(Refusal::Unavailable(e));
                    }
                    tracing::info!(target: "macula::mesh", node = %from, name = %body.name,
                        role = %body.role, "admitted a node with a join code");
                    JoinReply::Admitted(realm.issue(body).to_text())
                }
                Err(r) => {
                    tracing::warn!(target: "macula::mesh", node = %from, reason = %r,
                        "join code refused");
                    JoinReply::Refused(r)
                }
            }
        }));
    }

    /// The certificate `code` gets from its issuer: asked at the `[mesh] bootstrap` addresses
    /// first, then wherever the issuer's LAN beacon is heard on `[mesh] lan_beacon` interfaces
    /// within [`join::JOIN_SEARCH`]. The first answer of the issuer (admitted or refused) decides.
    async fn redeem_code(&self, code: &JoinCode) -> Result<MembershipCert, Error> {
        let decided = |r: Result<MembershipCert, JoinError>| match r {
            Ok(cert) => Some(Ok(cert)),
            Err(e @ JoinError::Refused(_)) => Some(Err(Error::PermissionDenied(e.to_string()))),
            Err(e @ JoinError::BadCert(_)) => Some(Err(Error::Failed(e.to_string()))),
            Err(JoinError::Unreachable { .. }) => None,
        };
        let mut tried = Vec::new();
        let mut errors = Vec::new();
        let contacts = Bootstrap::resolve_all(&self.config.bootstrap)
            .map_err(|e| Error::InvalidArgument(format!("[mesh] bootstrap: {e}")))?;
        for c in contacts.contacts {
            if c.node.is_some_and(|n| n != code.issuer) || tried.contains(&c.addr) {
                continue;
            }
            tried.push(c.addr);
            let r = join::request(&self.key, code, c.addr, unix_now).await;
            if let Err(e) = &r {
                errors.push(e.to_string());
            }
            if let Some(done) = decided(r) {
                return done;
            }
        }
        let group = self.config.beacon_group;
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let mut listeners = Vec::new();
        for iface in &self.config.lan_beacon {
            match beacon::bind(iface, group) {
                Ok(sock) => {
                    let tx = tx.clone();
                    listeners.push(tokio::spawn(async move {
                        let mut buf = vec![0; beacon::MAX_BEACON + 1];
                        while let Ok((n, src)) = sock.recv_from(&mut buf).await {
                            if tx.send((buf[..n].to_vec(), src.ip())).await.is_err() {
                                break;
                            }
                        }
                    }));
                }
                Err(e) => errors.push(format!("no LAN beacon on {iface}: {e}")),
            }
        }
        drop(tx);
        let deadline = tokio::time::Instant::now() + join::JOIN_SEARCH;
        let mut outcome = None;
        if !listeners.is_empty() {
            while let Ok(Some((bytes, src))) = tokio::time::timeout_at(deadline, rx.recv()).await {
                let Some(addr) = join::issuer_in_beacon(&bytes, src, code) else {
                    continue;
                };
                if tried.contains(&addr) {
                    continue;
                }
                tried.push(addr);
                let r = join::request(&self.key, code, addr, unix_now).await;
                if let Err(e) = &r {
                    errors.push(e.to_string());
                }
                if let Some(done) = decided(r) {
                    outcome = Some(done);
                    break;
                }
            }
        }
        for l in listeners {
            l.abort();
        }
        outcome.unwrap_or_else(|| {
            Err(Error::Unavailable(format!(
                "the node that issued this code ({}) was not reached{}; it must run with its mesh \
                 on, and be listed in [mesh] bootstrap or heard by its LAN beacon on a [mesh] \
                 lan_beacon interface",
                code.issuer.short(),
                if errors.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", errors.join("; "))
                }
            )))
        })
    }

    /// Joins with a code: redeems it, installs the certificate and starts the mesh.
    async fn join_with(&self, code: &str) -> Result<String, Error> {
        let code = JoinCode::from_text(code).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        if self.running_node().is_some() {
            return Err(Error::Busy(
                "this node is a member already (the mesh runs with a certificate); a join code is \
                 for a node without one"
                    .into(),
            ));
        }
        let cert = self.redeem_code(&code).await?;
        self.join(cert.to_text())
    }

    /// The worker `mesh.join`: joins with `<state>/join.code` (placed from the boot partition),
    /// retrying while the issuer is not reachable; the file is removed once the node is a member
    /// or the code was refused (the refusal is logged and shown as the worker's error).
    fn join_with_code_file(&self) {
        let glue = self.clone();
        self.workers.spawn("mesh.join", |ctx| async move {
            let path = glue.join_code_path();
            let mut backoff = join::join_retry_after(None);
            loop {
                let code = std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                let Some(result) = ctx.wait(glue.join_with(&code)).await else {
                    return Ok(());
                };
                match result {
                    Ok(realm) => {
                        let _ = std::fs::remove_file(&path);
                        tracing::info!(target: "macula::mesh", %realm,
                            "joined the realm with the boot partition's join code");
                        return Ok(());
                    }
                    Err(Error::Unavailable(e)) => {
                        tracing::warn!(target: "macula::mesh", error = %e,
                            "join code not redeemed yet; trying again");
                        ctx.error(e);
                    }
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        return Err(format!(
                            "the join code in {} was refused: {e}; put a new code there or run \
                             `maculactl realm join --code`",
                            path.display()
                        ));
                    }
                }
                if ctx.wait(tokio::time::sleep(backoff)).await.is_none() {
                    return Ok(());
                }
                backoff = join::join_retry_after(Some(backoff));
            }
        });
    }
}

/// Writes the revocations `admission` knows that are not stored yet.
fn store_revocations(ctx: &WorkerCtx, store: &RevocationStore, admission: &Admission) {
    for (node, path, res) in store.store_new(admission) {
        match res {
            Ok(()) => tracing::info!(target: "macula::mesh", %node,
                file = %path.display(), "revocation stored"),
            Err(e) => {
                tracing::error!(target: "macula::mesh", file = %path.display(),
                error = %e, "cannot store a revocation; it is lost at restart unless \
                members re-spread it. Free space on the state partition");
                ctx.error(format!("cannot store {}: {e}", path.display()));
            }
        }
    }
}

fn forward_peer_changes(workers: &Workers, conn: &zbus::Connection, node: &Arc<MeshNode>) {
    let mut changes = node.watch_peers();
    let conn = conn.clone();
    workers.spawn("mesh.peer-signals", |ctx| async move {
        loop {
            let c = match ctx.wait(changes.recv()).await {
                None | Some(Err(tokio::sync::broadcast::error::RecvError::Closed)) => return Ok(()),
                Some(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                    ctx.error(format!("{n} peer changes missed (signals lag behind)"));
                    continue;
                }
                Some(Ok(c)) => c,
            };
            let Ok(iface) = conn
                .object_server()
                .interface::<_, MeshObject>(macula_bus::OBJECT_PATH)
                .await
            else {
                return Ok(());
            };
            let name = c
                .peer
                .meta
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default();
            if let Err(e) = MeshObject::peer_changed(
                iface.signal_emitter(),
                &c.peer.id.to_string(),
                c.peer.state.as_str(),
                &name,
            )
            .await
            {
                tracing::warn!(target: "macula::mesh", error = %e, "cannot signal a peer change");
            }
            if let Err(e) = iface
                .get()
                .await
                .peers_changed(iface.signal_emitter())
                .await
            {
                tracing::warn!(target: "macula::mesh", error = %e, "cannot signal the Peers change");
                ctx.error(format!("cannot signal the Peers change: {e}"));
            }
        }
    });
}

/// `PropertiesChanged` for `Enabled` once the mesh starts after `Join`/`CreateRealm`.
fn signal_enabled(conn: &zbus::Connection) {
    let conn = conn.clone();
    tokio::spawn(async move {
        let Ok(iface) = conn
            .object_server()
            .interface::<_, MeshObject>(macula_bus::OBJECT_PATH)
            .await
        else {
            return;
        };
        if let Err(e) = iface
            .get()
            .await
            .enabled_changed(iface.signal_emitter())
            .await
        {
            tracing::warn!(target: "macula::mesh", error = %e, "cannot signal the Enabled change");
        }
    });
}

impl MeshControl for MeshGlue {
    fn enabled(&self) -> bool {
        self.running_node().is_some()
    }

    fn peers(&self) -> Vec<MeshPeer> {
        self.running_node()
            .map(|n| n.peers().iter().map(mesh_peer).collect())
            .unwrap_or_default()
    }

    fn create_realm(&self, name: String) -> Result<String, Error> {
        let dir = realm_key_dir(&self.state_dir);
        if dir.join(macula_core::identity::KEY_FILE).exists() || self.cert_path().exists() {
            return Err(Error::Busy(
                "this node already holds a realm key or a membership certificate".into(),
            ));
        }
        let (key, _) = NodeKey::load_or_create(&dir)
            .map_err(|e| Error::Failed(format!("cannot create the realm key: {e}")))?;
        let realm = RealmKey::from_node_key(key);
        let cert = realm.issue(CertBody::founder(
            realm.id(),
            self.key.node_id(),
            self.node_role,
            &name,
            unix_now(),
        ));
        self.write_cert(&cert)?;
        self.start_node(cert)?;
        tracing::info!(target: "macula::mesh", realm = %realm.id(), "created a realm");
        Ok(realm.id().to_string())
    }

    fn admit(
        &self,
        node_id: String,
        name: String,
        role: String,
        valid_days: u32,
        admin: bool,
    ) -> Result<String, Error> {
        let node: macula_core::NodeId = node_id
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("node ID `{node_id}`: {e}")))?;
        let role = parse_role(&role)?;
        // Said before a missing realm key.
        let invalid = |e: macula_mesh::realm::CertError| Error::InvalidArgument(e.to_string());
        macula_mesh::realm::check_name(&name).map_err(invalid)?;
        let realm = self.realm_key()?;
        let body = CertBody::admitted(realm.id(), node, role, name, valid_days, unix_now())
            .map_err(invalid)?;
        Ok(realm.issue_as(body, admin).to_text())
    }

    fn invite(
        &self,
        name: String,
        role: String,
        valid_days: u32,
        expires_s: u64,
    ) -> Result<String, Error> {
        let role = parse_role(&role)?;
        let realm = self.realm_key()?;
        self.running()?;
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret)
            .map_err(|e| Error::Failed(format!("no random numbers from the OS: {e}")))?;
        let _held = self.invites.locked();
        let path = invites_path(&self.state_dir);
        let mut invites = load_invites(&path).map_err(Error::Failed)?;
        let code = invites
            .issue(
                realm.id(),
                self.key.node_id(),
                &name,
                role,
                valid_days,
                expires_s,
                secret,
                unix_now(),
            )
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        store_invites(&path, &invites).map_err(Error::Failed)?;
        tracing::info!(target: "macula::mesh", %name, %role, expires_s, "join code issued");
        Ok(code.to_text())
    }

    fn join_code(&self, code: String) -> BoxFuture<'_, Result<String, Error>> {
        Box::pin(async move { self.join_with(&code).await })
    }

    fn revoke(&self, node_id: String) -> Result<(), Error> {
        let node: macula_core::NodeId = node_id
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("node ID `{node_id}`: {e}")))?;
        if node == self.key.node_id() {
            return Err(Error::InvalidArgument("a node cannot revoke itself".into()));
        }
        let realm = self.realm_key()?;
        let rev = realm.revoke(node, unix_now());
        self.running()?
            .revoke(rev)
            .map_err(|e| Error::Failed(e.to_string()))?;
        tracing::info!(target: "macula::mesh", %node, "revoked a node from the realm");
        Ok(())
    }

    fn certificate(&self) -> Result<(String, u64, u64, u64, String), Error> {
        self.running()?;
        let policy = self.renewal.locked();
        let policy = policy
            .as_ref()
            .ok_or_else(|| Error::Unavailable("the mesh is starting".into()))?;
        let cert = policy.cert();
        Ok((
            cert.realm.to_string(),
            cert.expires,
            renewal::renew_at(cert),
            policy.renewed_at().unwrap_or(0),
            policy.last_error().unwrap_or_default().to_owned(),
        ))
    }

    fn remote(&self, node_id: String, call: Vec<u8>) -> BoxFuture<'_, Result<Vec<u8>, Error>> {
        Box::pin(async move {
            let node: macula_core::NodeId = node_id
                .parse()
                .map_err(|e| Error::InvalidArgument(format!("node ID `{node_id}`: {e}")))?;
            let call: RemoteCall = macula_core::wire::decode_with_limit(
                &call,
                macula_bus::remote::MAX_BODY + 16 * 1024,
            )
            .map_err(|e| Error::InvalidArgument(format!("remote call: {e}")))?;
            let mesh = self.running()?;
            let request = RemoteRequest {
                cert: mesh.own_cert().to_text(),
                call,
            };
            mesh.call(node, admin::PROCEDURE, request.encode(), admin::DEADLINE)
                .await
                .map_err(|e| match admin::failure(&node_id, &e) {
                    (admin::Failure::Refused, m) => Error::RemoteRefused(m),
                    (admin::Failure::BadRequest, m) => Error::InvalidArgument(m),
                    (admin::Failure::Unavailable, m) => Error::Unavailable(m),
                })
        })
    }

    fn reports(&self) -> BoxFuture<'_, Result<Vec<MemberReport>, Error>> {
        Box::pin(async move {
            let mesh = self.running()?;
            let row = |id: String, r: NodeReport| {
                let known = r.last_update.is_some();
                (
                    id,
                    r.uptime_s,
                    r.slot.unwrap_or_default(),
                    r.last_update.unwrap_or_default(),
                    known,
                )
            };
            let mut calls = tokio::task::JoinSet::new();
            for p in mesh.peers() {
                if p.state != PeerState::Alive {
                    continue;
                }
                let mesh = mesh.clone();
                calls.spawn(async move {
                    let reply = mesh
                        .call(p.id, report::PROCEDURE, vec![], report::DEADLINE)
                        .await
                        .ok()?;
                    Some((p.id, NodeReport::decode(&reply).ok()?))
                });
            }
            let own = match self.reporter.get() {
                Some(make) => make().await,
                None => NodeReport::default(),
            };
            let mut rows = vec![row(self.key.node_id().to_string(), own)];
            while let Some(done) = calls.join_next().await {
                if let Ok(Some((id, r))) = done {
                    rows.push(row(id.to_string(), r));
                }
            }
            Ok(rows)
        })
    }

    fn ping(&self, node_id: String) -> BoxFuture<'_, Result<(String, u64), Error>> {
        Box::pin(async move {
            let node: macula_core::NodeId = node_id
                .parse()
                .map_err(|e| Error::InvalidArgument(format!("node ID `{node_id}`: {e}")))?;
            let mesh = self.running()?;
            let start = std::time::Instant::now();
            let reply = mesh
                .call(node, PING, vec![], PING_DEADLINE)
                .await
                .map_err(|e| {
                    Error::Unavailable(format!(
                        "{node_id} did not answer {PING}: {e}; check `maculactl peers`"
                    ))
                })?;
            let rtt = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            Ok((String::from_utf8_lossy(&reply).into_owned(), rtt))
        })
    }

    fn join(&self, cert: String) -> Result<String, Error> {
        let cert =
            MembershipCert::from_text(&cert).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let realm = cert.body.realm;
        Admission::new(self.key.node_id(), cert.clone(), unix_now())
            .map_err(|e| Error::InvalidArgument(format!("certificate refused: {e}")))?;
        if self.running_node().is_some() {
            return Err(Error::Busy(
                "the mesh already runs with a certificate; restart maculad to switch realms".into(),
            ));
        }
        self.write_cert(&cert)?;
        self.start_node(cert)?;
        Ok(realm.to_string())
    }

    fn publish(&self, topic: String, payload: Vec<u8>) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            self.running()?
                .publish(&topic, payload)
                .await
                .map_err(|e| Error::InvalidArgument(e.to_string()))
        })
    }

    fn subscribe(&self, topic: String, caller: Caller) -> BoxFuture<'_, Result<u32, Error>> {
        Box::pin(async move {
            let node = self.running()?;
            let (Some(conn), Some(caller)) = (self.conn.get().cloned(), caller) else {
                return Err(Error::InvalidArgument(
                    "publications are signalled to the subscriber alone; call Subscribe over a \
                     message bus"
                        .into(),
                ));
            };
            // Watch the subscriber before subscribing, so a caller that leaves meanwhile is seen.
            let bus = zbus::fdo::DBusProxy::new(&conn)
                .await
                .map_err(Error::ZBus)?;
            let mut left = bus
                .receive_name_owner_changed_with_args(&[(0, caller.as_str())])
                .await
                .map_err(Error::ZBus)?;
            let present = bus
                .name_has_owner(caller.as_ref().into())
                .await
                .map_err(|e| Error::ZBus(e.into()))?;
            if !present {
                return Err(Error::Failed("the subscriber left the bus".into()));
            }
            let mut sub = node
                .subscribe(&topic)
                .await
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            let acked = u32::try_from(sub.acked).unwrap_or(u32::MAX);
            let emitter = SignalEmitter::new(&conn, macula_bus::OBJECT_PATH)
                .map_err(Error::ZBus)?
                .set_destination(caller.into_inner().into())
                .into_owned();
            tokio::spawn(async move {
                loop {
                    let p = tokio::select! {
                        p = sub.recv() => match p {
                            Some(p) => p,
                            None => return,
                        },
                        _ = left.next() => {
                            tracing::debug!(target: "macula::mesh", %topic, "subscriber left the bus");
                            return;
                        }
                    };
                    if let Err(e) = MeshObject::publication(
                        &emitter,
                        &p.topic,
                        &p.publisher.to_string(),
                        p.seq,
                        &p.payload,
                    )
                    .await
                    {
                        tracing::warn!(target: "macula::mesh", error = %e, "cannot signal a publication");
                    }
                }
            });
            Ok(acked)
        })
    }
}

/// The addresses announced to members, with the interface (uplink) each one is on
/// (`macula_mesh::advertise::select`: the rule), from the host's interfaces read at start. When
/// they cannot be listed the bound address is announced.
fn advertised_addrs(config: &MeshSection) -> (Vec<std::net::SocketAddr>, Vec<String>) {
    let listed = advertise::select(config.listen, &config.advertise, host_interfaces);
    listed.unwrap_or_else(|e| {
        tracing::warn!(target: "macula::mesh", error = %e,
            "cannot list interface addresses; announcing the bound address. Set [mesh] \
             advertise to announce reachable ones");
        (vec![], vec![])
    })
}

/// The host's interfaces and their addresses (rtnetlink).
fn host_interfaces() -> Result<(Vec<advertise::Interface>, Vec<advertise::InterfaceAddr>), String> {
    let host = macula_net::cmd::Host::local();
    let links = macula_net::links::links(&host).map_err(|e| e.to_string())?;
    let addrs = macula_net::links::addresses(&host).map_err(|e| e.to_string())?;
    let links = links
        .into_iter()
        .map(|l| advertise::Interface {
            index: l.index,
            name: l.name,
            up: l.up,
            loopback: l.loopback,
        })
        .collect();
    let addrs = addrs
        .into_iter()
        .map(|a| advertise::InterfaceAddr {
            index: a.index,
            addr: a.addr,
        })
        .collect();
    Ok((links, addrs))
}

/// The message of a bus error, for an RPC error's text.
fn bus_message(e: Error) -> String {
    match e {
        Error::InvalidArgument(m)
        | Error::NotFound(m)
        | Error::PermissionDenied(m)
        | Error::RemoteRefused(m)
        | Error::Unavailable(m)
        | Error::Busy(m)
        | Error::Failed(m) => m,
        Error::ZBus(e) => e.to_string(),
    }
}
