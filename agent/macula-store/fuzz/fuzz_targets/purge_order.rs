#![no_main]
//! `store.purge` bodies: applying any input to a store never panics, and only an order the realm
//! key signed for this realm purges anything.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use macula_core::wire;
use macula_mesh::realm::{PurgeOrder, RealmKey};
use macula_store::purge;
use macula_store::store::LocalStore;

fuzz_target!(|data: &[u8]| {
    static STORE: OnceLock<LocalStore> = OnceLock::new();
    let store = STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("macula-fuzz-purge-{}", std::process::id()));
        LocalStore::open(&dir, 1 << 20).unwrap()
    });
    let realm = RealmKey::from_seed([1; 32]);
    if purge::apply(store, &realm.id(), data).is_ok() {
        let order: PurgeOrder = wire::decode_with_limit(data, 256).unwrap();
        order.verify(&realm.id()).unwrap();
        assert!(store.is_purged(&order.body.owner));
    }
});
