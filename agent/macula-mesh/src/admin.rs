//! Remote administration: who may run commands on another member (`maculactl --node`,
//! docs/security.md "Remote administration"). The serving node calls [`authorize`] with the
//! certificate the caller presents before it runs anything.

use macula_core::NodeId;

use crate::realm::{CertError, MembershipCert, RealmId};

/// The RPC procedure that carries one D-Bus method call to the member that runs it.
pub const PROCEDURE: &str = "admin.call";

/// How long the caller waits for a remote command's answer (a firewall apply included).
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// Validity of the admin certificate `maculactl` issues itself, with the realm key, for one
/// command from an admin machine without an agent (its key is never stored).
pub const CLIENT_VALID_S: u64 = 600;

/// How long `maculactl`'s own client identity waits to find the member it administers.
pub const CLIENT_FIND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// The certificate body of that client identity `node` at `now`: an edge named
/// `maculactl-<short id>`, valid [`CLIENT_VALID_S`] (back-dated by the usual slack); the realm
/// key signs it with the admin role ([`crate::realm::RealmKey::issue_admin`]).
pub fn client_cert_body(realm: RealmId, node: NodeId, now: u64) -> crate::realm::CertBody {
    crate::realm::CertBody {
        realm,
        node,
        role: crate::realm::Role::Edge,
        name: format!("maculactl-{}", node.short()),
        not_before: now.saturating_sub(crate::realm::NOT_BEFORE_SLACK_S),
        expires: now + CLIENT_VALID_S,
    }
}

/// Why a remote command was refused. Each says what to do next.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    #[error("the caller's certificate does not verify: {0}")]
    Invalid(CertError),
    #[error("the certificate presented is for node {cert}, but the caller is {caller}")]
    NotCaller { cert: NodeId, caller: NodeId },
    #[error("node {0} was revoked from this realm")]
    Revoked(NodeId),
    #[error(
        "node {0} has no admin role in its certificate; remote commands need a certificate \
         issued with `maculactl realm admit --admin`"
    )]
    NotAdmin(NodeId),
}

/// What became of a remote command whose RPC failed, for the caller's error (the agent's
/// `Mesh1.Remote` and `maculactl`'s own client identity say the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The member refused it: no admin role, or not remotely runnable.
    Refused,
    /// The member found the request malformed.
    BadRequest,
    /// The member could not be asked (no answer, no such procedure, unreachable).
    Unavailable,
}

/// The kind of failure and the message for people, `node` naming the member as the user did.
pub fn failure(node: &str, e: &crate::rpc::RpcError) -> (Failure, String) {
    use crate::rpc::ErrorCode;
    match e.code {
        ErrorCode::PermissionDenied => (
            Failure::Refused,
            format!("{node} refused the command: {}", e.message),
        ),
        ErrorCode::BadRequest => (
            Failure::BadRequest,
            format!("{node} refused the command: {}", e.message),
        ),
        ErrorCode::NoSuchProcedure => (
            Failure::Unavailable,
            format!(
                "{node} does not serve remote commands (an older agent, or its mesh is \
                 restarting)"
            ),
        ),
        _ => (
            Failure::Unavailable,
            format!("{node} did not answer the command: {e}; check `maculactl peers`"),
        ),
    }
}

/// Lets `caller` (authenticated by TLS) administer this node when `cert` is a valid certificate
/// of this realm for `caller`, neither it nor its issuing hub is revoked, and the realm key granted
/// it the admin role.
pub fn authorize(
    realm: &RealmId,
    caller: NodeId,
    cert: &MembershipCert,
    revoked: impl Fn(&NodeId) -> bool,
    now: u64,
) -> Result<(), AdminError> {
    cert.verify(realm, now).map_err(AdminError::Invalid)?;
    if cert.body.node != caller {
        return Err(AdminError::NotCaller {
            cert: cert.body.node,
            caller,
        });
    }
    if let Some(r) = std::iter::once(caller)
        .chain(cert.issuing_hub())
        .find(|n| revoked(n))
    {
        return Err(AdminError::Revoked(r));
    }
    if !cert.is_admin() {
        return Err(AdminError::NotAdmin(caller));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::realm::{CertBody, RealmKey};
    use macula_core::NodeKey;
    use macula_core::config::Role;

    fn body(realm: &RealmKey, node: NodeId) -> CertBody {
        CertBody {
            realm: realm.id(),
            node,
            role: Role::Edge,
            name: "admin".into(),
            not_before: 0,
            expires: 1000,
        }
    }

    #[test]
    fn only_a_valid_unrevoked_admin_certificate_of_the_caller_passes() {
        let r = RealmKey::from_seed([1; 32]);
        let me = NodeKey::from_seed([2; 32]).node_id();
        let other = NodeKey::from_seed([3; 32]).node_id();
        let admin = r.issue_admin(body(&r, me));
        authorize(&r.id(), me, &admin, |_| false, 500).unwrap();
        assert_eq!(
            authorize(&r.id(), me, &r.issue(body(&r, me)), |_| false, 500),
            Err(AdminError::NotAdmin(me))
        );
        // Someone else's admin certificate is worth nothing without its key.
        assert_eq!(
            authorize(&r.id(), other, &admin, |_| false, 500),
            Err(AdminError::NotCaller {
                cert: me,
                caller: other
            })
        );
        assert_eq!(
            authorize(&r.id(), me, &admin, |n| *n == me, 500),
            Err(AdminError::Revoked(me))
        );
        assert!(matches!(
            authorize(&r.id(), me, &admin, |_| false, 1000),
            Err(AdminError::Invalid(CertError::Expired { .. }))
        ));
        let foreign = RealmKey::from_seed([9; 32]);
        assert!(matches!(
            authorize(&foreign.id(), me, &admin, |_| false, 500),
            Err(AdminError::Invalid(CertError::WrongRealm { .. }))
        ));
    }
}
