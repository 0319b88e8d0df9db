//! `maculactl --realm DIR --via ID@HOST:PORT --node NAME <command>`: remote administration from
//! an admin machine that runs no agent (docs/security.md, "Remote administration"). maculactl
//! makes a throwaway node key, issues it an admin certificate valid ten minutes with the realm
//! key in DIR (`macula_mesh::admin::client_cert_body`), joins the realm through `--via` for the
//! length of the command, and sends each of the command's D-Bus calls to the member over the RPC
//! `admin.call`, as an agent's `Mesh1.Remote` does. The key is never written anywhere; the node
//! leaves the realm when the command ends.

use std::path::Path;
use std::sync::Arc;

use macula_bus::Error;
use macula_bus::remote::{RemoteCall, RemoteReply, RemoteRequest};
use macula_core::{NodeId, NodeKey};
use macula_mesh::admin;
use macula_mesh::config::MeshSection;
use macula_mesh::node::{Bootstrap, MeshNode, NodeConfig, PeerState};
use macula_mesh::realm::Admission;
use macula_mesh::transport::{TransportParams, unix_now};

use super::realm::load_realm_key;
use crate::exit::{CliError, INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE};

/// Joins the realm as a throwaway admin and returns a connection on which the command's
/// proxies reach member `target` (a name or node ID), and the node to leave with afterwards.
pub async fn connect(
    realm_dir: &Path,
    via: &[String],
    target: &str,
) -> Result<(zbus::Connection, Arc<MeshNode>), CliError> {
    if via.is_empty() {
        return Err(CliError::Local(
            INVALID_ARGUMENT,
            "--realm needs --via ID@HOST:PORT: a member to reach the realm through (a hub, as \
             in [mesh] bootstrap)"
                .into(),
        ));
    }
    let bootstrap = via
        .iter()
        .map(|v| {
            v.parse::<Bootstrap>()
                .map_err(|e| CliError::Local(INVALID_ARGUMENT, format!("--via `{v}`: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let realm = load_realm_key(realm_dir)?;
    let key = NodeKey::generate();
    let now = unix_now();
    let cert = realm.issue_admin(admin::client_cert_body(realm.id(), key.node_id(), now));
    let admission = Admission::new(key.node_id(), cert.clone(), now)
        .map_err(|e| CliError::Other(format!("cannot use the client certificate: {e}")))?;
    let node = MeshNode::start(
        &key,
        Arc::new(admission),
        NodeConfig {
            listen: "0.0.0.0:0".parse().expect("an address"),
            advertise: vec![],
            bootstrap,
            transport: TransportParams::default(),
            membership: MeshSection::default().membership(),
            overlay_key: None,
            capacity: Default::default(),
            domains: Default::default(),
            state_dir: None,
            set_clock: false,
            ntp: vec![],
        },
    )
    .map_err(|e| CliError::Other(format!("cannot start a mesh endpoint here: {e}")))?;
    let node = Arc::new(node);
    let id = match find(&node, target).await {
        Ok(id) => id,
        Err(e) => {
            node.leave().await;
            return Err(e);
        }
    };
    let (mesh, cert, label) = (node.clone(), cert.to_text(), target.to_owned());
    let conn = macula_bus::remote::forwarder(move |call| {
        let (mesh, cert, label) = (mesh.clone(), cert.clone(), label.clone());
        async move {
            let reply = match macula_core::wire::decode::<RemoteCall>(&call) {
                Err(e) => RemoteReply::from_error(Error::InvalidArgument(e.to_string())),
                Ok(call) => {
                    let request = RemoteRequest { cert, call }.encode();
                    match mesh
                        .call(id, admin::PROCEDURE, request, admin::DEADLINE)
                        .await
                    {
                        Ok(reply) => return Ok(reply),
                        Err(e) => RemoteReply::from_error(match admin::failure(&label, &e) {
                            (admin::Failure::Refused, m) => Error::RemoteRefused(m),
                            (admin::Failure::BadRequest, m) => Error::InvalidArgument(m),
                            (admin::Failure::Unavailable, m) => Error::Unavailable(m),
                        }),
                    }
                }
            };
            Ok(reply.encode())
        }
    })
    .await
    .map_err(|e| CliError::Other(format!("cannot set up the remote connection: {e}")))?;
    Ok((conn, node))
}

/// Waits (up to `admin::CLIENT_FIND_TIMEOUT`) until member `target` (a name or node ID) is alive
/// in this node's view of the realm.
async fn find(node: &MeshNode, target: &str) -> Result<NodeId, CliError> {
    let wanted: Option<NodeId> = target.parse().ok();
    let start = std::time::Instant::now();
    let mut changes = node.watch_peers();
    loop {
        let found: Vec<NodeId> = node
            .peers()
            .into_iter()
            .filter(|p| p.state == PeerState::Alive)
            .filter(|p| Some(p.id) == wanted || p.meta.as_ref().is_some_and(|m| m.name == target))
            .map(|p| p.id)
            .collect();
        match found.as_slice() {
            [one] => return Ok(*one),
            [] => {}
            _ => {
                return Err(CliError::Other(format!(
                    "several members are named `{target}`; give the node ID"
                )));
            }
        }
        let left = admin::CLIENT_FIND_TIMEOUT.saturating_sub(start.elapsed());
        if left.is_zero() {
            let alive = node
                .peers()
                .iter()
                .filter(|p| p.state == PeerState::Alive)
                .count();
            return Err(if alive == 0 {
                CliError::Local(
                    UNAVAILABLE,
                    "reached no member through --via; check its node ID, address and port".into(),
                )
            } else {
                CliError::Local(
                    NOT_FOUND,
                    format!("no member `{target}` alive in the realm ({alive} members reached)"),
                )
            });
        }
        let _ = tokio::time::timeout(left, changes.recv()).await;
    }
}
