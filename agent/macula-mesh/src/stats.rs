//! What a node counts of its RPC calls and pub/sub traffic since it started ([`MeshStats`],
//! read by [`crate::node::MeshNode::stats`]; `/metrics` shows them, `docs/metrics.md`).
//! Counted where the calls and publications happen, in [`crate::node`].

use std::collections::BTreeMap;
use std::time::Duration;

use macula_core::metrics::Histogram;

use crate::rpc::ErrorCode;

/// Procedure label of served calls naming no procedure this node serves: one label for them all,
/// so that peers cannot grow the table with made-up names.
pub const UNSERVED: &str = "(unserved)";

/// Calls of one procedure, on one side.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RpcFigures {
    /// Calls that ended (answered, failed or cancelled).
    pub calls: u64,
    /// Calls that ended with an error, by [`ErrorCode::as_str`].
    pub errors: BTreeMap<&'static str, u64>,
    /// Time each call took: on the calling side from opening the call to the end of the reply;
    /// on the serving side from the request read to the handler's answer (for a stream
    /// procedure, to its last chunk written).
    pub latency: Histogram,
}

/// A node's figures since it started.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MeshStats {
    /// Calls this node made, by procedure.
    pub rpc_out: BTreeMap<String, RpcFigures>,
    /// Calls this node served, by procedure ([`UNSERVED`] for names it does not serve).
    pub rpc_in: BTreeMap<String, RpcFigures>,
    /// Publications this node published.
    pub published: u64,
    /// Publications handed to this node's subscriptions (one per subscription).
    pub delivered: u64,
    /// Publications dropped from this node's subscriptions' queues (a subscriber falling behind
    /// or a publisher over its share, [`crate::inbox`]).
    pub dropped: u64,
    /// Times a peer was held to one of its [`crate::limits::PeerLimits`], by limit (the key's
    /// name in `[mesh.limits]`): a call or message waiting for the rate or a free slot, a read
    /// pausing for the byte rate, a connection closed for being one too many.
    pub limited: BTreeMap<&'static str, u64>,
}

impl MeshStats {
    /// One call that ended after `took`: `Ok` or its error code.
    pub fn call(
        &mut self,
        served: bool,
        procedure: &str,
        took: Duration,
        end: Result<(), ErrorCode>,
    ) {
        let table = if served {
            &mut self.rpc_in
        } else {
            &mut self.rpc_out
        };
        let f = match table.get_mut(procedure) {
            Some(f) => f,
            None => table.entry(procedure.to_owned()).or_default(),
        };
        f.calls += 1;
        f.latency.observe(took);
        if let Err(code) = end {
            *f.errors.entry(code.as_str()).or_default() += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_counted_by_side_and_procedure() {
        let mut s = MeshStats::default();
        s.call(false, "a", Duration::from_millis(2), Ok(()));
        s.call(
            false,
            "a",
            Duration::from_millis(20),
            Err(ErrorCode::Unavailable),
        );
        s.call(true, "a", Duration::from_millis(1), Ok(()));
        let a = &s.rpc_out["a"];
        assert_eq!((a.calls, a.latency.count()), (2, 2));
        assert_eq!(a.errors.get("unavailable"), Some(&1));
        assert_eq!(s.rpc_in["a"].calls, 1);
        assert!(s.rpc_in["a"].errors.is_empty());
    }
}
