//! `maculactl proofs status|history`, `maculactl ledger`: proofs of capacity and storage, the
//! realm ledger's balances and quarantine (`io.macula.Proofs1`).

use clap::{Args, Subcommand};
use macula_bus::proofs::Proofs1Proxy;

use crate::exit::CliError;

#[derive(Debug, Args)]
pub struct JsonArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Only this node (its node ID).
    #[arg(long, value_name = "NODE-ID")]
    node: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ProofsCommand {
    /// Epoch, ledger size and head hash, proofs judged here, quarantined nodes.
    Status(JsonArgs),
    /// Proof results in the realm ledger, oldest first.
    History(NodeArgs),
}

pub async fn run(conn: &zbus::Connection, cmd: ProofsCommand) -> Result<(), CliError> {
    let proxy = Proofs1Proxy::new(conn).await?;
    match cmd {
        ProofsCommand::Status(args) => {
            let s = proxy.status().await?;
            let q = proxy.quarantined().await?;
            if args.json {
                return super::print_json(&serde_json::json!({
                    "epoch": s.epoch,
                    "epoch_s": s.epoch_s,
                    "records": s.records,
                    "head": s.head,
                    "verified": s.verified,
                    "quarantined": q,
                }));
            }
            println!("Epoch       {} ({} s each)", s.epoch, s.epoch_s);
            println!(
                "Ledger      {} records, head {}",
                s.records,
                &s.head[..s.head.len().min(16)]
            );
            println!("Judged here {}", s.verified);
            if q.is_empty() {
                println!("Quarantine  none");
            } else {
                println!("Quarantine  {}", q.join(" "));
            }
            Ok(())
        }
        ProofsCommand::History(args) => {
            let list = proxy.history(args.node.as_deref().unwrap_or("")).await?;
            if args.json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|e| {
                        serde_json::json!({
                            "verifier": e.verifier,
                            "prover": e.prover,
                            "kind": e.kind,
                            "epoch": e.epoch,
                            "passed": e.passed,
                            "failure": e.failure,
                            "t_ms": e.t_ms,
                            "capacity_milli": e.capacity_milli,
                            "groups": e.groups,
                            "reward_micro": e.reward_micro,
                        })
                    })
                    .collect();
                return super::print_json(&rows);
            }
            println!(
                "{:>12} {:<9} {:<8} {:<8} {:<10} {:>12} {:>12}",
                "EPOCH", "PROVER", "VERIFIER", "KIND", "RESULT", "DETAIL", "REWARD µ"
            );
            for e in &list {
                let result = if e.passed {
                    "passed"
                } else {
                    e.failure.as_str()
                };
                let detail = match (e.passed, e.kind.as_str()) {
                    (true, "capacity") => {
                        format!("C={:.3} {}ms", e.capacity_milli as f64 / 1000.0, e.t_ms)
                    }
                    (true, _) => format!("{} groups", e.groups),
                    _ => "-".into(),
                };
                println!(
                    "{:>12} {:<9} {:<8} {:<8} {:<10} {:>12} {:>12}",
                    e.epoch,
                    &e.prover[..e.prover.len().min(8)],
                    &e.verifier[..e.verifier.len().min(8)],
                    e.kind,
                    result,
                    detail,
                    e.reward_micro
                );
            }
            Ok(())
        }
    }
}

/// `maculactl ledger`: balances and standing per node.
pub async fn ledger(conn: &zbus::Connection, args: &NodeArgs) -> Result<(), CliError> {
    let list = Proofs1Proxy::new(conn).await?.ledger().await?;
    let list: Vec<_> = list
        .into_iter()
        .filter(|b| args.node.as_ref().is_none_or(|n| &b.node_id == n))
        .collect();
    if args.json {
        let rows: Vec<serde_json::Value> = list
            .iter()
            .map(|b| {
                serde_json::json!({
                    "node_id": b.node_id,
                    "rw1_micro": b.rw1_micro,
                    "rw2_micro": b.rw2_micro,
                    "passed": b.passed,
                    "failed": b.failed,
                    "standing": b.standing,
                })
            })
            .collect();
        return super::print_json(&rows);
    }
    println!(
        "{:<9} {:>14} {:>14} {:>7} {:>7} STANDING",
        "NODE", "RW1", "RW2", "PASSED", "FAILED"
    );
    for b in &list {
        println!(
            "{:<9} {:>14.6} {:>14.6} {:>7} {:>7} {}",
            &b.node_id[..b.node_id.len().min(8)],
            b.rw1_micro as f64 / 1e6,
            b.rw2_micro as f64 / 1e6,
            b.passed,
            b.failed,
            b.standing
        );
    }
    Ok(())
}
