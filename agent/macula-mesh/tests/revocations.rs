//! `revocations::RevocationStore`: revocations survive a restart, damaged files are left alone.

use macula_core::NodeKey;
use macula_mesh::realm::{Admission, CertBody, RealmKey, Role};
use macula_mesh::revocations::{RevocationStore, StoredRevocationError};

fn admission(realm: &RealmKey, seed: u8) -> Admission {
    let key = NodeKey::from_seed([seed; 32]);
    let cert = realm.issue(CertBody::founder(
        realm.id(),
        key.node_id(),
        Role::Edge,
        "",
        1000,
    ));
    Admission::new(key.node_id(), cert, 1000).unwrap()
}

#[test]
fn stored_revocations_are_loaded_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = RevocationStore::new(dir.path().join("revoked"));
    let realm = RealmKey::from_seed([1; 32]);
    let before = admission(&realm, 2);
    // Nothing stored yet: a missing directory holds none.
    let loaded = store.load(&before).unwrap();
    assert!(loaded.revocations.is_empty() && loaded.ignored.is_empty());
    let gone = NodeKey::from_seed([3; 32]).node_id();
    before.revoke(realm.revoke(gone, 1000)).unwrap();
    let written = store.store_new(&before);
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].0, gone);
    assert!(written[0].2.is_ok());
    // Already stored: not written again.
    assert!(store.store_new(&before).is_empty());

    let after = admission(&realm, 2);
    let loaded = store.load(&after).unwrap();
    assert_eq!(loaded.revocations.len(), 1);
    assert!(after.is_revoked(&gone));
}

#[test]
fn damaged_or_foreign_files_are_reported_and_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let store = RevocationStore::new(dir.path());
    let realm = RealmKey::from_seed([1; 32]);
    let other = RealmKey::from_seed([9; 32]);
    let gone = NodeKey::from_seed([3; 32]).node_id();
    // A revocation signed by another realm, and a damaged file.
    let foreign = admission(&other, 2);
    foreign.revoke(other.revoke(gone, 1000)).unwrap();
    RevocationStore::new(dir.path()).store_new(&foreign);
    std::fs::write(dir.path().join("junk.rev"), b"\xff\x00").unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"not a revocation").unwrap();

    let ours = admission(&realm, 2);
    let loaded = store.load(&ours).unwrap();
    assert!(loaded.revocations.is_empty());
    assert_eq!(loaded.ignored.len(), 2);
    assert!(
        loaded
            .ignored
            .iter()
            .any(|(_, e)| matches!(e, StoredRevocationError::Refused(_)))
    );
    assert!(
        loaded
            .ignored
            .iter()
            .any(|(_, e)| matches!(e, StoredRevocationError::Decode(_)))
    );
    assert!(!ours.is_revoked(&gone));
    assert!(dir.path().join("junk.rev").exists());
}
