//! `maculactl s3 key create`.

use clap::Subcommand;
use macula_bus::s3::S3Proxy;

use crate::exit::CliError;

#[derive(Debug, Subcommand)]
pub enum S3Command {
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
    },
}

pub async fn run(conn: &zbus::Connection, cmd: S3Command) -> Result<(), CliError> {
    let proxy = S3Proxy::new(conn).await?;
    match cmd {
        S3Command::Key(KeyCommand::Create { name }) => {
            let (id, secret) = proxy.create_key(&name).await?;
            println!("AWS_ACCESS_KEY_ID={id}");
            println!("AWS_SECRET_ACCESS_KEY={secret}");
            Ok(())
        }
    }
}
