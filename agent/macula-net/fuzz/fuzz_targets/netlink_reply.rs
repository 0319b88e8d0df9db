#![no_main]

use libfuzzer_sys::fuzz_target;
use macula_net::mptcp::{parse_attrs, parse_endpoint, parse_messages};

fuzz_target!(|data: &[u8]| {
    if let Ok(msgs) = parse_messages(data) {
        for m in msgs {
            if let Ok(attrs) = parse_attrs(m.payload.get(4..).unwrap_or_default()) {
                for a in attrs {
                    let _ = parse_endpoint(a.data);
                }
            }
        }
    }
});
