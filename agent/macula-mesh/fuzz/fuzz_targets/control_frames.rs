//! Stream framing + control frames (Hello with certificate, revocations): split frames off an
//! arbitrary byte stream and decode each, as the connection reader does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use macula_mesh::frame;
use macula_mesh::proto::Control;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = frame::decode::<Control>(rest, 64 * 1024) {
        let Control::Hello(h) = frame;
        let _ = h.cert.verify(&h.realm, 1_000_000);
        for r in &h.revocations {
            let _ = r.verify(&h.realm);
        }
        rest = &rest[used..];
    }
});
