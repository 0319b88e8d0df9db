//! `maculactl dashboard token`.

use clap::Subcommand;
use macula_bus::dashboard::Dashboard1Proxy;

use crate::exit::CliError;

#[derive(Debug, Subcommand)]
pub enum DashboardCommand {
    /// Issue a new login token for this node's web dashboard (root or the `macula` group).
    /// The token is printed once; the agent keeps only its hash. The previous token stops
    /// working and its sessions end.
    Token,
}

pub async fn run(conn: &zbus::Connection, cmd: DashboardCommand) -> Result<(), CliError> {
    let proxy = Dashboard1Proxy::new(conn).await?;
    match cmd {
        DashboardCommand::Token => {
            println!("{}", proxy.issue_token().await?);
            Ok(())
        }
    }
}
