//! `maculactl s3 status|key create|key list|key revoke`.

use clap::Subcommand;
use macula_bus::s3::S3Proxy;

use crate::exit::CliError;

#[derive(Debug, Subcommand)]
pub enum S3Command {
    /// This node's gateway: listener, requests, errors, bytes, uploads, index size.
    Status {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Access keys of the realm's S3 gateways.
    #[command(subcommand)]
    Key(KeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an access key valid on every gateway of the realm (needs root or the `macula`
    /// group); prints the key id and the secret, which is shown only this once.
    Create {
        /// A name for the key (who or what uses it).
        #[arg(long)]
        name: String,
        /// Only this bucket (it lists only this one); default: every bucket.
        #[arg(long)]
        bucket: Option<String>,
        /// Only reads: list, head, get.
        #[arg(long)]
        read_only: bool,
    },
    /// Revoke an access key on every gateway of the realm (root or `macula` group).
    Revoke {
        /// The key id (`MK…`).
        id: String,
    },
    /// List the realm's access keys (id, name, created; never secrets; root or `macula` group).
    List {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(conn: &zbus::Connection, cmd: S3Command) -> Result<(), CliError> {
    let proxy = S3Proxy::new(conn).await?;
    match cmd {
        S3Command::Status { json } => {
            let map = proxy.status().await?;
            if json {
                return super::print_json(&super::map_to_json(&map));
            }
            let b = |k: &str| {
                map.get(k)
                    .and_then(|v| bool::try_from(v).ok())
                    .unwrap_or(false)
            };
            let n = |k: &str| super::get_u64(&map, k);
            let listen = super::get_str(&map, "listen");
            let state = match (b("enabled"), b("serving")) {
                (false, _) => {
                    "off ([s3] enabled = false, or unset on an edge or a hub without storage)"
                        .to_string()
                }
                (true, false) => format!("starting on {listen} (catching up the index)"),
                (true, true) => format!("serving on {listen}"),
            };
            println!(
                "Gateway    {state}, region {}",
                super::get_str(&map, "region")
            );
            println!("Requests   {} ({} errors)", n("requests"), n("errors"));
            println!("Bytes      {} in, {} out", n("bytes_in"), n("bytes_out"));
            println!("Uploads    {} multipart in progress", n("uploads"));
            println!(
                "Index      {} buckets, {} objects, {} keys",
                n("buckets"),
                n("objects"),
                n("keys")
            );
            Ok(())
        }
        S3Command::Key(KeyCommand::Revoke { id }) => {
            proxy.revoke_key(&id).await?;
            println!("revoked {id}");
            Ok(())
        }
        S3Command::Key(KeyCommand::List { json }) => {
            let keys = proxy.list_keys().await?;
            if json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|(id, name, ms, bucket, read_only)| {
                        serde_json::json!({"id": id, "name": name, "created_ms": ms,
                            "bucket": (!bucket.is_empty()).then_some(bucket),
                            "read_only": read_only})
                    })
                    .collect();
                return super::print_json(&v);
            }
            println!("{:<22} {:<24} {:<10} NAME", "KEY ID", "BUCKET", "ACCESS");
            for (id, name, _, bucket, read_only) in keys {
                let bucket = if bucket.is_empty() {
                    "(every)"
                } else {
                    &bucket
                };
                let access = if read_only { "read" } else { "read-write" };
                println!("{id:<22} {bucket:<24} {access:<10} {name}");
            }
            Ok(())
        }
        S3Command::Key(KeyCommand::Create {
            name,
            bucket,
            read_only,
        }) => {
            let (id, secret) = proxy
                .create_key(&name, bucket.as_deref().unwrap_or(""), read_only)
                .await?;
            println!("AWS_ACCESS_KEY_ID={id}");
            println!("AWS_SECRET_ACCESS_KEY={secret}");
            Ok(())
        }
    }
}
