//! Ed25519 signature domains: every signature Macula makes is over
//! `context ‖ 0x00 ‖ message`, with one context per purpose, so a signature made for one purpose
//! can never be replayed as another. All contexts are listed here and in `docs/protocol.md`.

/// A signature purpose. Add a variant (and its context string) for every new kind of signed object;
/// never reuse or change an existing context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// A realm membership certificate, signed by the realm key or a delegated hub.
    RealmCert,
    /// A record stored in the DHT, signed by its author.
    DhtRecord,
    /// A storage shard header, signed by the object's owner.
    ShardHeader,
    /// A LAN discovery beacon.
    Beacon,
    /// An owner's request to delete every shard of a storage segment.
    ShardDelete,
    /// A pub/sub publication, signed by its publisher.
    Publication,
    /// A node's resource report (macula-proof monitor), spread over pub/sub.
    Resources,
    /// A prover's answer to a capacity or storage challenge (signed over the answer's digest).
    ProofAnswer,
    /// A record of the realm ledger, signed by its author.
    LedgerRecord,
    /// A member's vote for a ledger epoch summary (signed over its version, range and hash).
    LedgerSummary,
    /// A realm-wide update rollout (bundle, waves, members), signed by its publisher.
    Rollout,
    /// A node's report of its step in a rollout, signed by the node.
    RolloutReport,
}

impl Domain {
    pub const fn context(self) -> &'static str {
        match self {
            Domain::RealmCert => "macula/v1/realm-cert",
            Domain::DhtRecord => "macula/v1/dht-record",
            Domain::ShardHeader => "macula/v1/shard-header",
            Domain::Beacon => "macula/v2/beacon",
            Domain::ShardDelete => "macula/v1/shard-delete",
            Domain::Publication => "macula/v1/publication",
            Domain::Resources => "macula/v1/resources",
            Domain::ProofAnswer => "macula/v1/proof-answer",
            Domain::LedgerRecord => "macula/v1/ledger-record",
            Domain::LedgerSummary => "macula/v1/ledger-summary",
            Domain::Rollout => "macula/v1/rollout",
            Domain::RolloutReport => "macula/v1/rollout-report",
        }
    }

    /// The bytes actually signed for `msg` in this domain.
    pub fn signed_message(self, msg: &[u8]) -> Vec<u8> {
        let ctx = self.context().as_bytes();
        let mut m = Vec::with_capacity(ctx.len() + 1 + msg.len());
        m.extend_from_slice(ctx);
        m.push(0);
        m.extend_from_slice(msg);
        m
    }
}
