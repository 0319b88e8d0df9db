#![no_main]
//! The shard header parser must never panic, and whatever it accepts must re-encode to the same
//! bytes (one spelling per header).

use libfuzzer_sys::fuzz_target;
use macula_store::header::ShardHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok((header, len)) = ShardHeader::parse(data) {
        assert_eq!(header.encode(), &data[..len]);
        let _ = header.signed.verify();
    }
});
