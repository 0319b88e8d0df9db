//! `maculactl firewall show|apply|confirm`.

use std::path::PathBuf;

use clap::Subcommand;
use macula_bus::firewall::Firewall1Proxy;

use crate::exit::{CliError, INVALID_ARGUMENT};

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

pub async fn run(conn: &zbus::Connection, cmd: FirewallCommand) -> Result<(), CliError> {
    let proxy = Firewall1Proxy::new(conn).await?;
    match cmd {
        FirewallCommand::Show { json } => {
            let status = proxy.status().await?;
            let ruleset = proxy.ruleset().await?;
            if json {
                let mut obj = super::map_to_json(&status);
                obj.insert("ruleset".into(), serde_json::Value::String(ruleset));
                return super::print_json(&obj);
            }
            match super::get_u64(&status, "pending") {
                0 => println!("Firewall: confirmed"),
                g => println!(
                    "Firewall: apply {g} PENDING, rolled back in {} s unless `maculactl firewall confirm`",
                    super::get_u64(&status, "rollback_in_s")
                ),
            }
            let last = super::get_str(&status, "last_rollback");
            if !last.is_empty() {
                println!("  Last rollback  {last}");
            }
            println!(
                "  Quarantined    {}",
                super::get_u64(&status, "quarantined")
            );
            println!(
                "  Applies        {} ({} rolled back) since the agent started",
                super::get_u64(&status, "applies"),
                super::get_u64(&status, "rollbacks")
            );
            println!();
            print!("{ruleset}");
            Ok(())
        }
        FirewallCommand::Apply { file, json } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Other(format!("cannot read {}: {e}", file.display())))?;
            // Checked here first, so a mistake is reported with this file's name and line; the
            // agent checks again.
            macula_net::firewall::FirewallConfig::from_document(&text, &file)
                .map_err(|e| CliError::Local(INVALID_ARGUMENT, e))?;
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
