#![no_main]

use libfuzzer_sys::fuzz_target;
use macula_net::links::{parse_addr, parse_link, parse_route};
use macula_net::mptcp::parse_endpoint;
use macula_net::netlink::{parse_attrs, parse_messages};

fuzz_target!(|data: &[u8]| {
    if let Ok(msgs) = parse_messages(data) {
        for m in msgs {
            let _ = parse_link(m.kind, m.payload);
            let _ = parse_addr(m.kind, m.payload);
            let _ = parse_route(m.kind, m.payload);
            if let Ok(attrs) = parse_attrs(m.payload.get(4..).unwrap_or_default()) {
                for a in attrs {
                    let _ = parse_endpoint(a.data);
                }
            }
        }
    }
});
