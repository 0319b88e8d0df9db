//! `io.macula.Proofs1`: proofs of capacity and storage, the realm ledger and quarantine
//! (read-only; `docs/proofs.md`).

use zbus::zvariant::{DeserializeDict, SerializeDict, Type};

use crate::Error;

/// D-Bus interface name.
pub const INTERFACE: &str = "io.macula.Proofs1";

/// What the proofs interface needs from the daemon.
pub trait ProofsControl: Send + Sync + 'static {
    /// `None` while `[proofs] enabled = false`.
    fn status(&self) -> Option<ProofsStatus>;
    /// Proof results in the ledger, oldest first; only those about `node` when not empty.
    fn history(&self, node: &str) -> Vec<ProofEntry>;
    /// Every node's balance and standing.
    fn balances(&self) -> Vec<Balance>;
    /// Node IDs quarantined now.
    fn quarantined(&self) -> Vec<String>;
}

/// `Proofs1.Status()`.
#[derive(Debug, Clone, PartialEq, Eq, Default, SerializeDict, DeserializeDict, Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct ProofsStatus {
    pub epoch: u64,
    pub epoch_s: u64,
    /// Records in this node's copy of the ledger.
    pub records: u64,
    /// The ledger's head hash (hex): equal on nodes holding the same records.
    pub head: String,
    /// Proofs this node verified since the agent started.
    pub verified: u64,
    pub quarantined: u32,
}

/// One entry of `Proofs1.History()`.
#[derive(Debug, Clone, PartialEq, Eq, Default, SerializeDict, DeserializeDict, Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct ProofEntry {
    /// The verifier that wrote the record.
    pub verifier: String,
    pub prover: String,
    pub kind: String,
    pub epoch: u64,
    pub passed: bool,
    pub failure: String,
    pub t_ms: u64,
    pub capacity_milli: u64,
    pub groups: u32,
    pub reward_micro: u64,
}

/// One entry of `Proofs1.Ledger()`.
#[derive(Debug, Clone, PartialEq, Eq, Default, SerializeDict, DeserializeDict, Type)]
#[zvariant(signature = "a{sv}", crate = "zbus::zvariant")]
pub struct Balance {
    pub node_id: String,
    pub rw1_micro: u64,
    pub rw2_micro: u64,
    pub passed: u64,
    pub failed: u64,
    pub standing: String,
}

/// The `io.macula.Proofs1` server object.
pub struct ProofsObject {
    control: Box<dyn ProofsControl>,
}

impl ProofsObject {
    pub fn new(control: Box<dyn ProofsControl>) -> Self {
        Self { control }
    }
}

fn off() -> Error {
    Error::Unavailable(
        "proofs are off: set `[proofs] enabled = true` in agent.toml (docs/configuration.md)"
            .into(),
    )
}

#[zbus::interface(name = "io.macula.Proofs1")]
impl ProofsObject {
    /// Epoch, ledger size and head, proofs verified here, quarantined count.
    fn status(&self) -> Result<ProofsStatus, Error> {
        self.control.status().ok_or_else(off)
    }

    /// Proof results in the ledger, oldest first (all nodes when `node` is empty).
    fn history(&self, node: &str) -> Result<Vec<ProofEntry>, Error> {
        self.control.status().ok_or_else(off)?;
        Ok(self.control.history(node))
    }

    /// Balances (RW1, RW2) and standing of every node in the ledger.
    fn ledger(&self) -> Result<Vec<Balance>, Error> {
        self.control.status().ok_or_else(off)?;
        Ok(self.control.balances())
    }

    /// Node IDs quarantined now; changes are signalled.
    #[zbus(property)]
    fn quarantined(&self) -> Vec<String> {
        self.control.quarantined()
    }
}

/// Client proxy for `io.macula.Proofs1`.
#[zbus::proxy(
    interface = "io.macula.Proofs1",
    default_service = "io.macula.Agent",
    default_path = "/io/macula/Agent"
)]
pub trait Proofs1 {
    fn status(&self) -> zbus::Result<ProofsStatus>;
    fn history(&self, node: &str) -> zbus::Result<Vec<ProofEntry>>;
    fn ledger(&self) -> zbus::Result<Vec<Balance>>;
    #[zbus(property)]
    fn quarantined(&self) -> zbus::Result<Vec<String>>;
}
