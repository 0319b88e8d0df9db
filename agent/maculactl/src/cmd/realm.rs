//! `maculactl realm create|admit|join`: realm membership certificates (docs/realms.md).

use std::path::PathBuf;

use clap::Subcommand;
use macula_bus::mesh::Mesh1Proxy;

use crate::exit::CliError;

#[derive(Debug, Subcommand)]
pub enum RealmCommand {
    /// Create a realm with this node as its first member (the realm key stays on this node).
    Create {
        /// This node's name in its own certificate (default: the short node ID).
        #[arg(long, default_value = "")]
        name: String,
    },
    /// Issue a membership certificate for a node (run on the node holding the realm key).
    Admit {
        /// The node ID to admit (`maculactl status` on that node shows it).
        node_id: String,
        /// Name of the node in the realm.
        #[arg(long)]
        name: String,
        /// `edge` or `hub`.
        #[arg(long, default_value = "edge")]
        role: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Write the certificate to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Revoke a node from the realm (run on the node holding the realm key); every member
    /// learns it and cuts the node off.
    Revoke {
        /// The node ID to revoke.
        node_id: String,
    },
    /// Install this node's membership certificate and start the mesh.
    Join {
        /// Certificate file (`macula-membership-cert v1`).
        cert: PathBuf,
    },
}

pub async fn run(conn: &zbus::Connection, cmd: RealmCommand) -> Result<(), CliError> {
    let proxy = Mesh1Proxy::new(conn).await?;
    match cmd {
        RealmCommand::Create { name } => {
            let realm = proxy.create_realm(&name).await?;
            println!("created realm {realm}; this node is its first member");
        }
        RealmCommand::Admit {
            node_id,
            name,
            role,
            days,
            output,
        } => {
            let cert = proxy.admit(&node_id, &name, &role, days).await?;
            match output {
                Some(path) => {
                    std::fs::write(&path, &cert).map_err(|e| {
                        CliError::Other(format!("cannot write {}: {e}", path.display()))
                    })?;
                    eprintln!(
                        "certificate for {name} written to {}; on that node run \
                         `maculactl realm join {}`",
                        path.display(),
                        path.display()
                    );
                }
                None => print!("{cert}"),
            }
        }
        RealmCommand::Revoke { node_id } => {
            proxy.revoke(&node_id).await?;
            println!("revoked {node_id}; the revocation is spreading through the realm");
        }
        RealmCommand::Join { cert } => {
            let text = std::fs::read_to_string(&cert)
                .map_err(|e| CliError::Other(format!("cannot read {}: {e}", cert.display())))?;
            let realm = proxy.join(&text).await?;
            println!("joined realm {realm}; the mesh is starting");
        }
    }
    Ok(())
}
