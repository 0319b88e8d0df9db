//! The uplink probe: a 16-byte UDP datagram `"MCLP" ‖ link (u32 BE) ‖ seq (u64 BE)` that the
//! peer's responder echoes unchanged (same size: no amplification). [`decode`] has a fuzz target.

use std::net::SocketAddr;

use tokio::net::UdpSocket;

pub const MAGIC: [u8; 4] = *b"MCLP";
pub const LEN: usize = 16;
/// Default UDP port of the probe responder.
pub const DEFAULT_PORT: u16 = 51821;

pub fn encode(link: u32, seq: u64) -> [u8; LEN] {
    let mut b = [0u8; LEN];
    b[..4].copy_from_slice(&MAGIC);
    b[4..8].copy_from_slice(&link.to_be_bytes());
    b[8..].copy_from_slice(&seq.to_be_bytes());
    b
}

/// `(link, seq)` of a well-formed probe; anything else is `None`.
pub fn decode(b: &[u8]) -> Option<(u32, u64)> {
    if b.len() != LEN || b[..4] != MAGIC {
        return None;
    }
    let link = u32::from_be_bytes(b[4..8].try_into().ok()?);
    let seq = u64::from_be_bytes(b[8..].try_into().ok()?);
    Some((link, seq))
}

/// Echoes well-formed probes back to their sender until the socket fails.
pub async fn serve(sock: UdpSocket) -> std::io::Result<()> {
    let mut buf = [0u8; 64];
    loop {
        let (n, from): (usize, SocketAddr) = sock.recv_from(&mut buf).await?;
        if decode(&buf[..n]).is_some() {
            // A full send buffer only loses this reply: the prober counts it as a lost probe.
            let _ = sock.send_to(&buf[..n], from).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_rejects() {
        assert_eq!(decode(&encode(7, u64::MAX)), Some((7, u64::MAX)));
        assert_eq!(decode(b"MCLP"), None);
        let mut b = encode(1, 2);
        b[0] = b'X';
        assert_eq!(decode(&b), None);
        assert_eq!(decode(&[encode(1, 2).as_slice(), &[0]].concat()), None);
    }
}
