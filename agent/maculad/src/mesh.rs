//! Wiring of the mesh: starts `macula_mesh::node::MeshNode` when the node holds a membership
//! certificate, implements `io.macula.Mesh1`, forwards peer changes and publications as signals.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use macula_bus::Error;
use macula_bus::firewall::BoxFuture;
use macula_bus::mesh::{MeshControl, MeshObject};
use macula_core::NodeKey;
use macula_mesh::config::MeshSection;
use macula_mesh::membership::{Capacity, MembershipConfig};
use macula_mesh::node::{Bootstrap, MeshNode, NodeConfig, PeerInfo};
use macula_mesh::realm::{Admission, MembershipCert};
use macula_mesh::transport::{TransportParams, unix_now};
use zbus::zvariant::{OwnedValue, Value};

/// The running mesh, if the node is in a realm.
#[derive(Clone)]
pub struct MeshGlue {
    node: Option<Arc<MeshNode>>,
    conn: Arc<std::sync::OnceLock<zbus::Connection>>,
}

/// Starts the mesh when `<cert>` exists; otherwise the mesh is off (and says how to fix that).
pub fn start(config: &MeshSection, state_dir: &Path, key: &NodeKey) -> Result<MeshGlue> {
    let path = config
        .cert
        .clone()
        .unwrap_or_else(|| state_dir.join("realm.cert"));
    let off = MeshGlue {
        node: None,
        conn: Arc::default(),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(target: "macula::mesh", cert = %path.display(), node_id = %key.node_id(),
                "no membership certificate; the mesh is off. Have this node ID admitted to a realm \
                 and put the certificate there (docs/realms.md)");
            return Ok(off);
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let cert = MembershipCert::from_text(&text)
        .with_context(|| format!("{}: not a usable membership certificate", path.display()))?;
    let admission = Admission::new(key.node_id(), cert, unix_now())
        .with_context(|| format!("{}: certificate refused", path.display()))?;
    let bootstrap = config
        .bootstrap
        .iter()
        .map(|b| b.parse::<Bootstrap>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("[mesh] bootstrap: {e}"))?;
    let node = MeshNode::start(
        key,
        Arc::new(admission),
        NodeConfig {
            listen: config.listen,
            advertise: config.advertise.clone(),
            bootstrap,
            transport: TransportParams::default(),
            membership: MembershipConfig::lan(64),
            overlay_key: None,
            capacity: Capacity::default(),
        },
    )
    .with_context(|| format!("cannot start the mesh on {}", config.listen))?;
    tracing::info!(target: "macula::mesh", listen = %node.local_addr(), "mesh started");
    Ok(MeshGlue {
        node: Some(Arc::new(node)),
        conn: Arc::default(),
    })
}

fn val(v: Value<'_>) -> OwnedValue {
    v.try_to_owned()
        .expect("plain values have no file descriptors")
}

fn peer_map(p: &PeerInfo) -> HashMap<String, OwnedValue> {
    let mut m = HashMap::new();
    m.insert("node_id".into(), val(Value::from(p.id.to_string())));
    m.insert("state".into(), val(Value::from(p.state.as_str())));
    m.insert("generation".into(), val(Value::from(p.generation)));
    let meta = p.meta.as_ref();
    m.insert(
        "name".into(),
        val(Value::from(
            meta.map(|m| m.name.clone()).unwrap_or_default(),
        )),
    );
    m.insert(
        "role".into(),
        val(Value::from(
            meta.map(|m| m.role.to_string()).unwrap_or_default(),
        )),
    );
    m.insert(
        "version".into(),
        val(Value::from(
            meta.map(|m| m.software.clone()).unwrap_or_default(),
        )),
    );
    let addrs: Vec<String> = meta
        .map(|m| m.addrs.iter().map(|a| a.addr.to_string()).collect())
        .unwrap_or_default();
    m.insert("addrs".into(), val(Value::from(addrs)));
    m
}

impl MeshGlue {
    pub fn object(&self) -> MeshObject {
        MeshObject::new(Box::new(self.clone()))
    }

    /// Forwards peer changes as `PeerChanged` signals.
    pub fn emit_changes(&self, conn: &zbus::Connection) {
        let _ = self.conn.set(conn.clone());
        let Some(node) = &self.node else { return };
        let mut changes = node.watch_peers();
        let conn = conn.clone();
        tokio::spawn(async move {
            while let Ok(c) = changes.recv().await {
                let Ok(iface) = conn
                    .object_server()
                    .interface::<_, MeshObject>(macula_bus::OBJECT_PATH)
                    .await
                else {
                    return;
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
            }
        });
    }

    fn running(&self) -> Result<&Arc<MeshNode>, Error> {
        self.node.as_ref().ok_or_else(|| {
            Error::Unavailable(
                "the mesh is off: this node has no membership certificate (docs/realms.md)".into(),
            )
        })
    }
}

impl MeshControl for MeshGlue {
    fn enabled(&self) -> bool {
        self.node.is_some()
    }

    fn peers(&self) -> Vec<HashMap<String, OwnedValue>> {
        self.node
            .as_ref()
            .map(|n| n.peers().iter().map(peer_map).collect())
            .unwrap_or_default()
    }

    fn publish(&self, topic: String, payload: Vec<u8>) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            self.running()?
                .publish(&topic, payload)
                .await
                .map_err(|e| Error::InvalidArgument(e.to_string()))
        })
    }

    fn subscribe(&self, topic: String) -> BoxFuture<'_, Result<u32, Error>> {
        Box::pin(async move {
            let node = self.running()?;
            let mut sub = node
                .subscribe(&topic)
                .await
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            let acked = u32::try_from(sub.acked).unwrap_or(u32::MAX);
            let conn = self.conn.get().cloned();
            tokio::spawn(async move {
                let Some(conn) = conn else { return };
                while let Some(p) = sub.recv().await {
                    let Ok(iface) = conn
                        .object_server()
                        .interface::<_, MeshObject>(macula_bus::OBJECT_PATH)
                        .await
                    else {
                        return;
                    };
                    if let Err(e) = MeshObject::publication(
                        iface.signal_emitter(),
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
