//! Hub relay frames (protocol.md §12): any UDP datagram reaching a mesh port may be one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use macula_mesh::relay::{HEADER_LEN, MAX_RELAY_DATAGRAM, RelayFrame, is_relay};

fuzz_target!(|data: &[u8]| {
    if let Ok(f) = RelayFrame::parse(data) {
        assert!(is_relay(data));
        assert!(data.len() > HEADER_LEN && data.len() <= MAX_RELAY_DATAGRAM);
        // Parsing is exact: the frame re-encodes to the same bytes.
        assert_eq!(f.encode(), data);
    }
});
