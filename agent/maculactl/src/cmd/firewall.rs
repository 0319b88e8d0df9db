//! `maculactl firewall show|apply|confirm`.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Subcommand;
use macula_bus::firewall::Firewall1Proxy;
use zbus::zvariant::OwnedValue;

use crate::exit::CliError;

#[derive(Debug, Subcommand)]
pub enum FirewallCommand {
    /// Show the live ruleset (table inet macula) and any apply waiting for confirmation.
    Show {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Apply the [firewall] section of FILE (e.g. an agent.toml). It is rolled back automatically
    /// unless confirmed with `maculactl firewall confirm` within its confirm timeout.
    Apply {
        file: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Keep the ruleset of the pending apply.
    Confirm,
}

fn get_u64(m: &HashMap<String, OwnedValue>, k: &str) -> u64 {
    m.get(k).and_then(|v| u64::try_from(v).ok()).unwrap_or(0)
}

fn get_str(m: &HashMap<String, OwnedValue>, k: &str) -> String {
    m.get(k)
        .and_then(|v| <&str>::try_from(v).ok().map(str::to_owned))
        .unwrap_or_default()
}

pub async fn run(conn: &zbus::Connection, cmd: FirewallCommand) -> Result<(), CliError> {
    let proxy = Firewall1Proxy::new(conn).await?;
    match cmd {
        FirewallCommand::Show { json } => {
            let status = proxy.status().await?;
            let ruleset = proxy.ruleset().await?;
            if json {
                let mut obj: serde_json::Map<String, serde_json::Value> = status
                    .iter()
                    .map(|(k, v)| (k.clone(), super::to_json(v)))
                    .collect();
                obj.insert("ruleset".into(), serde_json::Value::String(ruleset));
                let text = serde_json::to_string_pretty(&obj)
                    .map_err(|e| CliError::Other(format!("cannot format JSON: {e}")))?;
                println!("{text}");
                return Ok(());
            }
            match get_u64(&status, "pending") {
                0 => println!("Firewall: confirmed"),
                g => println!(
                    "Firewall: apply {g} PENDING, rolled back in {} s unless `maculactl firewall confirm`",
                    get_u64(&status, "rollback_in_s")
                ),
            }
            let last = get_str(&status, "last_rollback");
            if !last.is_empty() {
                println!("  Last rollback  {last}");
            }
            println!("  Quarantined    {}", get_u64(&status, "quarantined"));
            println!();
            print!("{ruleset}");
            Ok(())
        }
        FirewallCommand::Apply { file, json } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Other(format!("cannot read {}: {e}", file.display())))?;
            let (generation, within) = proxy.apply(&text).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"generation": generation, "confirm_within_s": within})
                );
            } else {
                println!(
                    "applied (generation {generation}); confirm within {within} s with `maculactl firewall confirm` or it is rolled back"
                );
            }
            Ok(())
        }
        FirewallCommand::Confirm => {
            let generation = proxy.confirm().await?;
            println!("confirmed (generation {generation})");
            Ok(())
        }
    }
}
