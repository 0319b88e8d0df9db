#![no_main]

use libfuzzer_sys::fuzz_target;
use macula_net::uplinks::probe;

fuzz_target!(|data: &[u8]| {
    if let Some((link, seq)) = probe::decode(data) {
        assert_eq!(probe::encode(link, seq).as_slice(), data);
    }
});
