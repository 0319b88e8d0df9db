//! `maculactl update status|install|mark-good`.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Subcommand;
use futures_lite::StreamExt;
use macula_bus::update::Update1Proxy;
use zbus::zvariant::OwnedValue;

use crate::exit::CliError;

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Show the slots, the boot order and the health check.
    Status {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Install a RAUC bundle into the other slot and wait for the result (needs root or the
    /// `macula` group). Reboot afterwards to start it; the agent marks it good after its health
    /// check, otherwise the next reset returns to the current slot.
    Install {
        /// The bundle file (.raucb).
        file: PathBuf,
    },
    /// Mark the running slot good now, without waiting for the health check.
    MarkGood,
}

pub async fn run(conn: &zbus::Connection, cmd: UpdateCommand) -> Result<(), CliError> {
    let proxy = Update1Proxy::new(conn).await?;
    match cmd {
        UpdateCommand::Status { json } => status(&proxy, json).await,
        UpdateCommand::Install { file } => install(&proxy, file).await,
        UpdateCommand::MarkGood => {
            let slot = proxy.mark_good().await?;
            println!("marked {slot} good");
            Ok(())
        }
    }
}

async fn status(proxy: &Update1Proxy<'_>, json: bool) -> Result<(), CliError> {
    let map: HashMap<String, OwnedValue> = proxy.status().await?;
    if json {
        return super::print_json(&super::map_to_json(&map));
    }
    let s = |k: &str| super::get_str(&map, k);
    println!("Booted slot  {}", s("booted"));
    println!("Next boot    {}", s("primary"));
    println!("Health       {}", s("health"));
    println!("Operation    {}", s("operation"));
    let last = s("last_error");
    if !last.is_empty() {
        println!("Last error   {last}");
    }
    println!("Compatible   {}", s("compatible"));
    println!("Slots (name, boot name, state, boot status, bundle version):");
    if let Some(slots) = map
        .get("slots")
        .and_then(|v| <Vec<String>>::try_from(v.try_clone().ok()?).ok())
    {
        for line in slots {
            println!("  {line}");
        }
    }
    Ok(())
}

async fn install(proxy: &Update1Proxy<'_>, file: PathBuf) -> Result<(), CliError> {
    // the agent (and RAUC) resolve paths themselves: send an absolute one
    let path = std::path::absolute(&file)
        .map_err(|e| CliError::Other(format!("{}: {e}", file.display())))?;
    let path = path
        .to_str()
        .ok_or_else(|| CliError::Other(format!("{}: not valid UTF-8", path.display())))?
        .to_owned();
    // subscribe before starting so no signal is missed
    let mut progress = proxy.receive_progress().await?;
    let mut completed = proxy.receive_completed().await?;
    proxy.install(&path).await?;
    println!("installing {path}");
    loop {
        tokio::select! {
            done = completed.next() => {
                let Some(done) = done else {
                    return Err(CliError::Other("the agent left the bus during the installation; check `maculactl update status`".into()));
                };
                let args = done.args()?;
                if args.result == 0 {
                    println!("installed; reboot to start the new system");
                    return Ok(());
                }
                return Err(CliError::Other(format!("{}; the running system is unchanged", args.error)));
            }
            Some(step) = progress.next() => {
                if let Ok(a) = step.args() {
                    println!("{:>3}% {}", a.percent, a.message);
                }
            }
        }
    }
}
