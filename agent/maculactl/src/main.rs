//! `maculactl`: control the Macula OS agent over D-Bus. Exit codes: `docs/cli.md`.

mod cmd;
mod exit;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use macula_bus::{BUS_ENV, BusSpec};

/// Control the Macula OS agent (maculad) over D-Bus.
#[derive(Debug, Parser)]
#[command(name = "maculactl", version, about, long_about = None)]
pub struct Cli {
    /// Bus the agent serves on: `system`, `session`, or a D-Bus address.
    #[arg(long, global = true, env = BUS_ENV, default_value = "system",
          value_parser = clap::value_parser!(BusSpec))]
    bus: BusSpec,
    /// Run the command on another member (name or node ID) through this node's agent; needs
    /// a certificate with the admin role (`realm admit --admin`). Given before the command
    /// (`proofs history --node` and `ledger --node` are those commands' own filters).
    /// See docs/security.md.
    #[arg(long = "node", id = "remote_node", value_name = "NODE")]
    node: Option<String>,
    /// With --node, from a machine without an agent: issue a ten-minute admin identity with the
    /// realm key in DIR and reach NODE through --via (docs/security.md).
    #[arg(long = "realm", id = "client_realm", value_name = "DIR", requires_all = ["remote_node", "via"])]
    client_realm: Option<std::path::PathBuf>,
    /// With --realm: a member to reach the realm through, `<node-id>@host:port` (repeatable).
    #[arg(long, value_name = "NODE_ID@HOST:PORT", requires = "client_realm")]
    via: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show the node's status (same as `node status`).
    Status(cmd::node::StatusArgs),
    /// The node itself: status, log level.
    #[command(subcommand)]
    Node(cmd::node::NodeCommand),
    /// A/B system updates: status, install a bundle, mark the running slot good.
    #[command(subcommand)]
    Update(cmd::update::UpdateCommand),
    /// The nftables firewall: show, apply (with automatic rollback), confirm.
    #[command(subcommand)]
    Firewall(cmd::firewall::FirewallCommand),
    /// The WireGuard overlay: own address and key, peers.
    Overlay(cmd::overlay::OverlayArgs),
    /// Uplinks: health, the active one.
    Uplinks(cmd::uplinks::UplinksArgs),
    /// Realm members as this node sees them.
    Peers(cmd::mesh::PeersArgs),
    /// Publish a message on a realm topic.
    Pub(cmd::mesh::PubArgs),
    /// Print messages published on a realm topic.
    Sub(cmd::mesh::SubArgs),
    /// Call a realm member over RPC (`mesh.ping`) and print the round-trip time.
    Ping(cmd::mesh::PingArgs),
    /// Realm membership: create a realm, admit a node, join with a certificate.
    #[command(subcommand)]
    Realm(cmd::realm::RealmCommand),
    /// SD cards, on an admin machine (no agent needed): provision a card's boot partition.
    #[command(subcommand)]
    Card(CardCommand),
    /// Store a file in the realm's erasure-coded storage; prints its capability.
    Put(cmd::storage::PutArgs),
    /// Fetch an object by capability into a file.
    Get(cmd::storage::GetArgs),
    /// Storage: status and repair queue, stat or delete an object.
    #[command(subcommand)]
    Storage(cmd::storage::StorageCommand),
    /// The realm's S3 gateways: access keys.
    #[command(subcommand)]
    S3(cmd::s3::S3Command),
    /// Proofs of capacity and storage: status, history of results in the realm ledger.
    #[command(subcommand)]
    Proofs(cmd::proofs::ProofsCommand),
    /// The realm ledger: rewards (RW1, RW2), proofs passed and failed, standing per node.
    Ledger(cmd::proofs::NodeArgs),
    /// The hub's web dashboard: issue a login token.
    #[command(subcommand)]
    Dashboard(cmd::dashboard::DashboardCommand),
    /// Print shell completions for bash, zsh, fish, elvish or powershell.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
}

#[derive(Debug, Subcommand)]
enum CardCommand {
    /// Write the boot partition's `macula/` folder: a new node key, its certificate issued with
    /// the realm key in --realm DIR, and its agent.toml; the first boot moves them into
    /// /data/macula and the node joins the realm.
    Provision(cmd::card::ProvisionArgs),
}

/// Commands that run without the agent: `card provision`, `realm keygen`, `realm admit --realm`.
fn run_offline(command: Command) -> Result<(), exit::CliError> {
    match command {
        Command::Card(CardCommand::Provision(args)) => {
            let done = cmd::card::provision(&args)?;
            print!("{}", cmd::card::report(&args, &done));
            Ok(())
        }
        Command::Realm(c) => cmd::realm::run_offline(c),
        other => unreachable!("{other:?} needs the agent"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let offline = match &cli.command {
        Command::Card(_) => true,
        Command::Realm(c) => c.is_offline(),
        _ => false,
    };
    let local = offline || matches!(cli.command, Command::Completions { .. } | Command::Man);
    if local && cli.node.is_some() {
        eprintln!(
            "maculactl: --node runs agent commands on another member; this command runs here, without an agent"
        );
        return ExitCode::from(2);
    }
    if offline {
        return match run_offline(cli.command) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                let (code, message) = exit::classify(&e, &cli.bus);
                eprintln!("maculactl: {message}");
                ExitCode::from(code)
            }
        };
    }
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "maculactl",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        Command::Man => {
            return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("maculactl: cannot write the man page: {e}");
                    ExitCode::from(exit::FAILED)
                }
            };
        }
        _ => {}
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("maculactl: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let bus = cli.bus.clone();
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let (code, message) = exit::classify(&e, &bus);
            eprintln!("maculactl: {message}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), exit::CliError> {
    if let (Some(node), Some(realm)) = (&cli.node, &cli.client_realm) {
        let (conn, mesh) = cmd::client::connect(realm, &cli.via, node).await?;
        let result = run_on(conn, cli.command).await;
        mesh.leave().await;
        return result;
    }
    let mut conn = cli.bus.connect().await.map_err(exit::CliError::Connect)?;
    if let Some(node) = &cli.node {
        conn = cmd::mesh::remote(&conn, node).await?;
    }
    run_on(conn, cli.command).await
}

async fn run_on(conn: zbus::Connection, command: Command) -> Result<(), exit::CliError> {
    match command {
        Command::Status(args) => cmd::node::status(&conn, &args).await,
        Command::Node(c) => cmd::node::run(&conn, c).await,
        Command::Update(c) => cmd::update::run(&conn, c).await,
        Command::Firewall(c) => cmd::firewall::run(&conn, c).await,
        Command::Overlay(args) => cmd::overlay::run(&conn, &args).await,
        Command::Uplinks(args) => cmd::uplinks::run(&conn, &args).await,
        Command::Peers(args) => cmd::mesh::peers(&conn, &args).await,
        Command::Pub(args) => cmd::mesh::publish(&conn, &args).await,
        Command::Sub(args) => cmd::mesh::subscribe(&conn, &args).await,
        Command::Ping(args) => cmd::mesh::ping(&conn, &args).await,
        Command::Realm(c) => cmd::realm::run(&conn, c).await,
        Command::Put(args) => cmd::storage::put(&conn, &args).await,
        Command::Get(args) => cmd::storage::get(&conn, &args).await,
        Command::Storage(c) => cmd::storage::run(&conn, c).await,
        Command::S3(c) => cmd::s3::run(&conn, c).await,
        Command::Proofs(c) => cmd::proofs::run(&conn, c).await,
        Command::Ledger(args) => cmd::proofs::ledger(&conn, &args).await,
        Command::Dashboard(c) => cmd::dashboard::run(&conn, c).await,
        Command::Completions { .. } | Command::Man | Command::Card(_) => {
            unreachable!("handled before connecting")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_remote_node_is_given_before_the_command_and_clashes_with_no_argument() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["maculactl", "ping", "bravo"]).unwrap();
        assert_eq!(cli.node, None);
        let cli = Cli::try_parse_from([
            "maculactl",
            "--node",
            "alpha",
            "proofs",
            "history",
            "--node",
            "bravo",
        ])
        .unwrap();
        assert_eq!(cli.node.as_deref(), Some("alpha"));
        assert!(format!("{:?}", cli.command).contains("\"bravo\""));
    }
}
