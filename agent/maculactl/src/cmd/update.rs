//! `maculactl update status|install|mark-good|publish`.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::Subcommand;
use futures_lite::StreamExt;
use macula_bus::update::Update1Proxy;
use zbus::zvariant::OwnedValue;

use crate::exit::CliError;

#[derive(Debug, Subcommand)]
pub enum UpdateCommand {
    /// Show the slots, the boot order and the health check; with --realm, the realm's rollout.
    Status {
        /// Show the realm's current rollout: its waves and every node's step.
        #[arg(long)]
        realm: bool,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Roll a RAUC bundle out to the whole realm in waves (needs root or the `macula` group, on
    /// a hub): the bundle is stored once in the realm's storage, every node fetches it from its
    /// peers, installs it, reboots and reports; a wave starts when the previous one is good, and
    /// a failure halts the rollout. Follow it with `maculactl update status --realm`.
    Publish {
        /// The bundle file (.raucb), signed for the fleet's keyring.
        file: PathBuf,
        /// Cumulative wave sizes: node counts or shares of the realm.
        #[arg(long, default_value = "1,100%")]
        waves: String,
        /// The bundle's version (default: read from the bundle by RAUC on this node).
        #[arg(long)]
        version: Option<String>,
        /// The bundle's compatible string (default: read from the bundle by RAUC).
        #[arg(long)]
        compatible: Option<String>,
        /// Seconds each wave has to report good before the rollout halts (default: 1800).
        #[arg(long, value_name = "SECONDS")]
        deadline: Option<u64>,
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
        UpdateCommand::Status { realm: false, json } => status(&proxy, json).await,
        UpdateCommand::Status { realm: true, json } => realm_status(&proxy, json).await,
        UpdateCommand::Publish {
            file,
            waves,
            version,
            compatible,
            deadline,
        } => {
            let path = std::path::absolute(&file)
                .map_err(|e| CliError::Other(format!("{}: {e}", file.display())))?;
            let bundle = std::fs::File::open(&path)
                .map_err(|e| CliError::Other(format!("cannot open {}: {e}", path.display())))?;
            let id = proxy
                .publish(
                    (&bundle).into(),
                    &waves,
                    version.as_deref().unwrap_or(""),
                    compatible.as_deref().unwrap_or(""),
                    deadline.unwrap_or(0),
                )
                .await?;
            println!("published rollout {id}; follow it with `maculactl update status --realm`");
            Ok(())
        }
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

async fn realm_status(proxy: &Update1Proxy<'_>, json: bool) -> Result<(), CliError> {
    let map: HashMap<String, OwnedValue> = proxy.rollout().await?;
    if json {
        return super::print_json(&super::map_to_json(&map));
    }
    let s = |k: &str| super::get_str(&map, k);
    let n = |k: &str| {
        map.get(k)
            .and_then(|v| {
                u64::try_from(v)
                    .ok()
                    .or_else(|| u32::try_from(v).ok().map(u64::from))
            })
            .unwrap_or(0)
    };
    if s("id").is_empty() {
        println!("no rollout published in this realm (as far as this node knows)");
        return Ok(());
    }
    println!(
        "Rollout      {} of version {} ({}, {} bytes)",
        s("id"),
        s("version"),
        s("compatible"),
        n("bundle_bytes")
    );
    println!(
        "Published    by {} at {}",
        s("publisher"),
        n("published_at")
    );
    println!("Waves        {}", s("waves"));
    match s("phase").as_str() {
        "wave" => println!(
            "Phase        wave {} open, deadline {} (in {} s)",
            n("wave"),
            n("deadline"),
            n("deadline").saturating_sub(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            )
        ),
        "halted" => println!("Phase        HALTED by {}: {}", s("halted_by"), s("reason")),
        other => println!("Phase        {other}"),
    }
    println!(
        "{:<52}  {:>4}  {:<10}  {:>10}  DETAIL",
        "NODE", "WAVE", "STEP", "AT"
    );
    if let Some(nodes) = map
        .get("nodes")
        .and_then(|v| <Vec<String>>::try_from(v.try_clone().ok()?).ok())
    {
        for line in nodes {
            let mut f = line.splitn(5, ' ');
            let mut next = || f.next().unwrap_or("-");
            let (node, wave, step, at, detail) = (next(), next(), next(), next(), next());
            println!("{node:<52}  {wave:>4}  {step:<10}  {at:>10}  {detail}");
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
