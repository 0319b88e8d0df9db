//! Stream framing: every frame on a QUIC stream is a 4-byte big-endian length followed by that
//! many bytes of `macula_core::wire` encoding (version byte + postcard). The length is checked
//! against the limit before anything is allocated; a frame over the limit, a truncated frame or a
//! body that does not decode closes the connection with [`crate::proto::close::PROTOCOL`].
//! Datagrams carry one wire-encoded value each, without a length prefix.

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

/// Reads one frame; `Ok(None)` when the peer finished the stream at a frame boundary.
pub async fn read<T: DeserializeOwned>(
    recv: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<T>, FrameError> {
    let mut prefix = [0u8; LEN_BYTES];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(FrameError::Truncated),
        Err(e) => return Err(e.into()),
    }
    let len = body_len(prefix, max)?;
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        e => e.into(),
    })?;
    Ok(Some(wire::decode_with_limit(&body, max)?))
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
