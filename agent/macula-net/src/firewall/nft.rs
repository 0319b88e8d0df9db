//! The `nft` tool: check, atomic apply, listing, set elements — always scoped to `table inet macula`.

use std::net::Ipv6Addr;

use super::render::{TABLE, element_command, replace_script};
use crate::cmd::{CmdError, Host};

/// The `nft` binary behind a [`Host`].
#[derive(Debug, Clone, Default)]
pub struct Nft {
    host: Host,
}

/// What went wrong talking to nft.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error(
        "nft rejected the ruleset (nothing was changed): {0}; fix the [firewall] config and apply again"
    )]
    Rejected(String),
    #[error(transparent)]
    Cmd(#[from] CmdError),
}

impl Nft {
    pub fn new(host: Host) -> Self {
        Self { host }
    }

    async fn nft(&self, args: &[&str], stdin: &str) -> Result<String, CmdError> {
        self.host.run("nft", args, stdin.as_bytes()).await
    }

    /// Runs `script` through `nft -c -f -`: parsed and validated by the kernel, nothing applied.
    pub async fn check(&self, script: &str) -> Result<(), NftError> {
        self.nft(&["-c", "-f", "-"], script)
            .await
            .map(|_| ())
            .map_err(rejected)
    }

    /// Runs `script` through `nft -f -` as one transaction.
    pub async fn apply(&self, script: &str) -> Result<(), NftError> {
        self.nft(&["-f", "-"], script)
            .await
            .map(|_| ())
            .map_err(rejected)
    }

    /// The live `table inet macula`, or `None` when it does not exist (one `nft` run: the
    /// "No such file or directory" answer means absent).
    pub async fn list_table(&self) -> Result<Option<String>, NftError> {
        let (family, name) = TABLE.split_once(' ').expect("TABLE is `family name`");
        match self.nft(&["list", "table", family, name], "").await {
            Ok(text) => Ok(Some(text)),
            Err(CmdError::Failed { stderr, .. })
                if stderr.starts_with("Error: No such file or directory") =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Restores a table saved with [`Nft::list_table`] (`None`: the table did not exist) in one
    /// transaction.
    pub async fn restore(&self, saved: Option<&str>) -> Result<(), NftError> {
        let script = match saved {
            Some(table) => replace_script(table),
            None => format!("table {TABLE} {{}}\ndelete table {TABLE}\n"),
        };
        self.apply(&script).await
    }

    /// Adds (`add = true`) or deletes overlay addresses in one set of our table.
    pub async fn set_elements(
        &self,
        add: bool,
        set: &str,
        addrs: &[Ipv6Addr],
    ) -> Result<(), NftError> {
        if addrs.is_empty() {
            return Ok(());
        }
        self.apply(&element_command(add, set, addrs)).await
    }

    /// The whole live ruleset (all tables), for diagnostics and tests.
    pub async fn list_ruleset(&self) -> Result<String, NftError> {
        Ok(self.nft(&["list", "ruleset"], "").await?)
    }
}

fn rejected(e: CmdError) -> NftError {
    match e {
        CmdError::Failed { stderr, .. } => NftError::Rejected(stderr),
        other => NftError::Cmd(other),
    }
}
