//! Membership certificate files (`/boot/macula/realm.cert`, `maculactl realm join`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use macula_mesh::realm::MembershipCert;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(cert) = MembershipCert::from_text(text) {
            let _ = cert.verify(&cert.body.realm, 1_000_000);
            assert_eq!(MembershipCert::from_text(&cert.to_text()).as_ref(), Ok(&cert));
        }
    }
});
