//! Stream framing: every frame on a QUIC stream is a 4-byte big-endian length followed by that
//! many bytes of `macula_core::wire` encoding (version byte + postcard). The length is checked
//! against the limit before anything is allocated; a frame over the limit, a truncated frame or a
//! body that does not decode closes the connection with [`crate::proto::close::PROTOCOL`].
//! Datagrams carry one wire-encoded value each, without a length prefix.
//!
//! A frame's buffer grows as its bytes arrive, never to the length the peer merely announces, and
//! frames read from a peer's streams are charged to that connection's [`ConnBudget`]: a peer that
//! announces large frames and sends nothing (or trickles) makes this node hold only what it sent,
//! and never more than the budget across all its streams at once. A budget may also pace the
//! reading ([`Pace`]: the peer's bytes per second, [`crate::limits`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use macula_core::wire::{self, WireError};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Bytes of the length prefix.
pub const LEN_BYTES: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("stream ended inside a frame")]
    Truncated,
    #[error(
        "the peer's partly received frames would take {want} bytes, over this connection's \
         buffer budget of {limit} bytes (stream reset; retry once its other calls finish)"
    )]
    OverBudget { want: usize, limit: usize },
    #[error("undecodable frame: {0}")]
    Decode(#[from] WireError),
    #[error("stream failed: {0}")]
    Read(#[from] quinn::ReadExactError),
    #[error("stream failed: {0}")]
    Write(#[from] quinn::WriteError),
}

/// Encodes one frame (length prefix + wire bytes).
pub fn encode<T: Serialize>(msg: &T, max: usize) -> Result<Vec<u8>, FrameError> {
    let body = wire::encode(msg);
    if body.len() > max {
        return Err(FrameError::TooLarge {
            len: body.len(),
            max,
        });
    }
    let mut out = Vec::with_capacity(LEN_BYTES + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Reads a length prefix and checks it against `max`.
pub fn body_len(prefix: [u8; LEN_BYTES], max: usize) -> Result<usize, FrameError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(FrameError::TooLarge { len, max });
    }
    Ok(len)
}

/// Splits the first complete frame off `buf`: `Ok(None)` when more bytes are needed, otherwise the
/// decoded value and the number of bytes consumed.
pub fn decode<T: DeserializeOwned>(
    buf: &[u8],
    max: usize,
) -> Result<Option<(T, usize)>, FrameError> {
    let Some(prefix) = buf.first_chunk::<LEN_BYTES>() else {
        return Ok(None);
    };
    let len = body_len(*prefix, max)?;
    let Some(body) = buf[LEN_BYTES..].get(..len) else {
        return Ok(None);
    };
    Ok(Some((wire::decode_with_limit(body, max)?, LEN_BYTES + len)))
}

/// Bytes of partly received frames that one connection's streams may make this node hold at
/// once; the node-wide sum is kept alongside (exposed as `MeshNode::stream_buffer_bytes`).
#[derive(Debug)]
pub struct ConnBudget {
    held: AtomicUsize,
    limit: usize,
    node: Arc<AtomicUsize>,
    pace: Option<Arc<dyn Pace>>,
}

/// Paces reading a peer's frames: after each piece read, how long to wait before reading on.
pub trait Pace: Send + Sync + std::fmt::Debug {
    /// `n` more bytes were read from the peer.
    fn read(&self, n: usize) -> Duration;
}

impl ConnBudget {
    /// A budget of `limit` bytes whose use is also added to `node`.
    pub fn new(limit: usize, node: Arc<AtomicUsize>) -> Arc<Self> {
        Self::paced(limit, node, None)
    }

    /// As [`ConnBudget::new`], reading at the pace `pace` sets (when given).
    pub fn paced(limit: usize, node: Arc<AtomicUsize>, pace: Option<Arc<dyn Pace>>) -> Arc<Self> {
        Arc::new(Self {
            held: AtomicUsize::new(0),
            limit,
            node,
            pace,
        })
    }

    /// Bytes held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    fn take(&self, n: usize) -> Result<(), FrameError> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |h| {
                h.checked_add(n).filter(|&t| t <= self.limit)
            })
            .map_err(|h| FrameError::OverBudget {
                want: h.saturating_add(n),
                limit: self.limit,
            })?;
        self.node.fetch_add(n, Ordering::AcqRel);
        Ok(())
    }

    fn give(&self, n: usize) {
        self.held.fetch_sub(n, Ordering::AcqRel);
        self.node.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Bytes charged to a [`ConnBudget`], given back when dropped.
#[derive(Debug)]
pub struct Held {
    budget: Option<Arc<ConnBudget>>,
    bytes: usize,
}

impl Held {
    /// Bytes this charge holds.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn grow(&mut self, n: usize) -> Result<(), FrameError> {
        if let Some(b) = &self.budget {
            b.take(n)?;
        }
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(b) = &self.budget {
            b.give(self.bytes);
        }
    }
}

/// Smallest buffer a frame body starts with.
const FIRST_ALLOC: usize = 4096;

/// Reads one frame; `Ok(None)` when the peer finished the stream at a frame boundary.
pub async fn read<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<T>, FrameError> {
    Ok(read_within(recv, max, None).await?.map(|(v, _)| v))
}

/// Reads one frame whose buffer is charged to `budget` as it grows (when given); the charge
/// travels with the value, so a caller can keep it while it works on the value.
pub async fn read_within<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
    budget: Option<&Arc<ConnBudget>>,
) -> Result<Option<(T, Held)>, FrameError> {
    let mut prefix = [0u8; LEN_BYTES];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(FrameError::Truncated),
        Err(e) => return Err(e.into()),
    }
    let len = body_len(prefix, max)?;
    let mut held = Held {
        budget: budget.cloned(),
        bytes: 0,
    };
    // Grown as bytes arrive (doubling, capped at the announced length), never ahead of them.
    let mut body = Vec::new();
    while body.len() < len {
        let chunk = recv
            .read_chunk(len - body.len(), true)
            .await
            .map_err(quinn::ReadExactError::ReadError)?
            .ok_or(FrameError::Truncated)?;
        let need = body.len() + chunk.bytes.len();
        if need > body.capacity() {
            let cap = need.max(body.capacity() * 2).max(FIRST_ALLOC).min(len);
            held.grow(cap - body.capacity())?;
            body.reserve_exact(cap - body.len());
        }
        body.extend_from_slice(&chunk.bytes);
        if let Some(pace) = budget.and_then(|b| b.pace.as_ref()) {
            let wait = pace.read(chunk.bytes.len());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
    Ok(Some((wire::decode_with_limit(&body, max)?, held)))
}

/// Writes one frame.
pub async fn write<T: Serialize>(
    send: &mut quinn::SendStream,
    msg: &T,
    max: usize,
) -> Result<(), FrameError> {
    send.write_all(&encode(msg, max)?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vector_split_and_limits() {
        let f = encode(&(7u8, "ab"), 100).unwrap();
        // len 5 | version 1 | 07 | len 2 "ab"
        assert_eq!(f, [0, 0, 0, 5, 1, 7, 2, b'a', b'b']);
        let mut two = f.clone();
        two.extend_from_slice(&f);
        let (v, used) = decode::<(u8, String)>(&two, 100).unwrap().unwrap();
        assert_eq!((v, used), ((7, "ab".to_string()), 9));
        assert!(decode::<(u8, String)>(&f[..8], 100).unwrap().is_none());
        assert!(decode::<(u8, String)>(&f[..3], 100).unwrap().is_none());
        assert!(matches!(
            decode::<(u8, String)>(&f, 3),
            Err(FrameError::TooLarge { len: 5, max: 3 })
        ));
        assert!(matches!(
            decode::<(u8, String)>(&[0xff, 0xff, 0xff, 0xff], 1 << 20),
            Err(FrameError::TooLarge { .. })
        ));
        assert!(matches!(
            encode(&vec![0u8; 200], 100),
            Err(FrameError::TooLarge { .. })
        ));
    }
}
