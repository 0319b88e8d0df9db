//! Which overlay addresses the realm's quarantine puts in the firewall's `quarantine` set
//! (sans-IO): a quarantined node's overlay address is computed from its node ID alone
//! (`overlay::peer_public_key`, `overlay::overlay_address`), so every member limits the same
//! address without asking the node. Only overlay addresses: they are self-certifying (WireGuard
//! accepts an inner source address only from the key it belongs to), whereas a node's advertised
//! underlay addresses can be shared (NAT) or reused by an honest node later.
//!
//! The set has two holders, the realm's verdicts and the admin (`Firewall1.Quarantine`):
//! [`Holds`] tracks who put each address there, so an address leaves the set only when the last
//! holder lets go of it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv6Addr;
use std::time::Duration;

use macula_core::NodeId;

use crate::overlay::{overlay_address, peer_public_key};

/// How soon a failed update of the `quarantine` set for the realm's verdicts is tried again
/// (unless the verdicts change first).
pub const QUARANTINE_RETRY: Duration = Duration::from_secs(2);

/// Who put an address in the `quarantine` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Holder {
    /// An admin, by hand (`io.macula.Firewall1.Quarantine`).
    Admin,
    /// The realm's quarantine verdicts (`NodeQuarantine`).
    Realm,
}

/// The `quarantine` set's elements and who holds each: the set is the union of the holders'
/// addresses.
#[derive(Debug, Clone, Default)]
pub struct Holds {
    by: BTreeMap<Ipv6Addr, BTreeSet<Holder>>,
}

impl Holds {
    /// The elements to add to (`on`) or delete from (`!on`) the set when `holder` takes or lets
    /// go of `addrs`: on, those no one holds yet; off, those `holder` alone holds. Sorted,
    /// without duplicates. Nothing changes until [`Holds::commit`].
    pub fn change(&self, holder: Holder, on: bool, addrs: &[Ipv6Addr]) -> Vec<Ipv6Addr> {
        let addrs: BTreeSet<Ipv6Addr> = addrs.iter().copied().collect();
        addrs
            .into_iter()
            .filter(|a| match self.by.get(a) {
                None => on,
                Some(h) => !on && h.len() == 1 && h.contains(&holder),
            })
            .collect()
    }

    /// `holder` now holds (`on`) or no longer holds `addrs` (the set was changed).
    pub fn commit(&mut self, holder: Holder, on: bool, addrs: &[Ipv6Addr]) {
        for a in addrs {
            if on {
                self.by.entry(*a).or_default().insert(holder);
            } else if let Some(h) = self.by.get_mut(a) {
                h.remove(&holder);
                if h.is_empty() {
                    self.by.remove(a);
                }
            }
        }
    }

    /// The set's elements.
    pub fn addresses(&self) -> BTreeSet<Ipv6Addr> {
        self.by.keys().copied().collect()
    }

    /// Who holds `addr` (empty: not in the set).
    pub fn holders(&self, addr: &Ipv6Addr) -> BTreeSet<Holder> {
        self.by.get(addr).cloned().unwrap_or_default()
    }

    /// Number of addresses in the set.
    pub fn len(&self) -> usize {
        self.by.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by.is_empty()
    }
}

/// The set's elements owed to the realm's quarantine verdicts.
#[derive(Debug, Clone)]
pub struct NodeQuarantine {
    realm: NodeId,
    held: BTreeMap<NodeId, Ipv6Addr>,
}

/// Elements to add to and delete from the `quarantine` set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetChange {
    pub add: Vec<Ipv6Addr>,
    pub remove: Vec<Ipv6Addr>,
}

impl SetChange {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }
}

/// A node's overlay address in `realm` (what the firewall limits when it is quarantined).
pub fn node_address(realm: &NodeId, node: &NodeId) -> Ipv6Addr {
    overlay_address(realm, &peer_public_key(node))
}

impl NodeQuarantine {
    /// Nothing held yet, in `realm` (the realm ID: the realm key's public half).
    pub fn new(realm: NodeId) -> Self {
        Self {
            realm,
            held: BTreeMap::new(),
        }
    }

    /// What turns the set's current elements into those of `quarantined` (the realm's whole
    /// current list). Nothing changes until [`NodeQuarantine::applied`].
    pub fn change(&self, quarantined: &[NodeId]) -> SetChange {
        let want: BTreeMap<NodeId, Ipv6Addr> = quarantined
            .iter()
            .map(|n| (*n, node_address(&self.realm, n)))
            .collect();
        SetChange {
            add: want
                .iter()
                .filter(|(n, _)| !self.held.contains_key(n))
                .map(|(_, a)| *a)
                .collect(),
            remove: self
                .held
                .iter()
                .filter(|(n, _)| !want.contains_key(n))
                .map(|(_, a)| *a)
                .collect(),
        }
    }

    /// The set now holds the addresses of `quarantined` (the change was applied).
    pub fn applied(&mut self, quarantined: &[NodeId]) {
        self.held = quarantined
            .iter()
            .map(|n| (*n, node_address(&self.realm, n)))
            .collect();
    }

    /// The addresses held, by node.
    pub fn held(&self) -> &BTreeMap<NodeId, Ipv6Addr> {
        &self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::overlay::OverlayKeys;
    use macula_core::NodeKey;

    fn id(seed: u8) -> NodeId {
        NodeKey::from_seed([seed; 32]).node_id()
    }

    #[test]
    fn the_address_is_the_one_the_node_gives_itself() {
        let realm = id(0xaa);
        for seed in [1u8, 2, 3] {
            let key = NodeKey::from_seed([seed; 32]);
            let own = overlay_address(
                &realm,
                &OverlayKeys::from_signing_key(key.signing_key()).public(),
            );
            assert_eq!(node_address(&realm, &key.node_id()), own);
        }
        assert_ne!(
            node_address(&realm, &id(1)),
            node_address(&id(0xbb), &id(1))
        );
    }

    #[test]
    fn an_address_leaves_the_set_only_when_its_last_holder_lets_go() {
        let (x, y) = (
            "fd00::1".parse::<Ipv6Addr>().unwrap(),
            "fd00::2".parse::<Ipv6Addr>().unwrap(),
        );
        let mut h = Holds::default();
        // The admin takes x (listed twice: one element).
        assert_eq!(h.change(Holder::Admin, true, &[x, x]), vec![x]);
        // Not committed (nft failed): the same change is asked again.
        assert_eq!(h.change(Holder::Admin, true, &[x]), vec![x]);
        h.commit(Holder::Admin, true, &[x, x]);
        // The realm takes x and y: only y is new to the set.
        assert_eq!(h.change(Holder::Realm, true, &[y, x]), vec![y]);
        h.commit(Holder::Realm, true, &[y, x]);
        assert_eq!(
            h.holders(&x),
            BTreeSet::from([Holder::Admin, Holder::Realm])
        );
        // The realm releases both: x stays, the admin still holds it.
        assert_eq!(h.change(Holder::Realm, false, &[x, y]), vec![y]);
        h.commit(Holder::Realm, false, &[x, y]);
        assert_eq!(h.addresses(), BTreeSet::from([x]));
        assert_eq!(h.holders(&x), BTreeSet::from([Holder::Admin]));
        // Releasing what one does not hold, or what no one holds, changes nothing.
        assert!(h.change(Holder::Realm, false, &[x, y]).is_empty());
        h.commit(Holder::Realm, false, &[x, y]);
        assert_eq!(h.len(), 1);
        // The realm takes x again and the admin lets go: x stays, now the realm's.
        h.commit(Holder::Realm, true, &[x]);
        assert!(h.change(Holder::Admin, false, &[x]).is_empty());
        h.commit(Holder::Admin, false, &[x]);
        assert_eq!(h.holders(&x), BTreeSet::from([Holder::Realm]));
        assert_eq!(h.change(Holder::Realm, false, &[x]), vec![x]);
        h.commit(Holder::Realm, false, &[x]);
        assert!(h.is_empty());
    }

    #[test]
    fn changes_follow_the_verdicts() {
        let realm = id(0xaa);
        let mut q = NodeQuarantine::new(realm);
        let (a, b) = (id(1), id(2));
        let (aa, ab) = (node_address(&realm, &a), node_address(&realm, &b));
        assert!(q.change(&[]).is_empty());
        let c = q.change(&[a]);
        assert_eq!(
            c,
            SetChange {
                add: vec![aa],
                remove: vec![]
            }
        );
        // Not applied (nft failed): the same change is asked again.
        assert_eq!(q.change(&[a]), c);
        q.applied(&[a]);
        assert!(q.change(&[a]).is_empty());
        let mut add_b = q.change(&[a, b]);
        add_b.add.sort();
        assert_eq!(
            add_b,
            SetChange {
                add: vec![ab],
                remove: vec![]
            }
        );
        q.applied(&[b, a]);
        assert_eq!(
            q.change(&[b]),
            SetChange {
                add: vec![],
                remove: vec![aa]
            }
        );
        q.applied(&[b]);
        assert_eq!(
            q.change(&[]),
            SetChange {
                add: vec![],
                remove: vec![ab]
            }
        );
        q.applied(&[]);
        assert!(q.held().is_empty());
    }
}
