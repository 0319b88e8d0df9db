//! Receiving a shard while it streams in, verified piece by piece (sans-IO).
//!
//! On the wire (`store.get`) a shard travels as `header ‖ outboard ‖ data`, not in the disk order
//! `header ‖ data ‖ outboard` of [`Shard::to_bytes`]: with the outboard first, a reader checks
//! every 16 KiB group of data against its chaining value as soon as the group is complete. The
//! sender cuts that byte sequence into chunks with [`wire_chunks`]; the reader feeds whatever
//! pieces arrive to a [`ShardReceiver`], which
//!
//! 1. parses the header as soon as it is complete (fields with fixed checks fail as soon as the
//!    fixed part is there) and checks it against the segment ID and index asked for, the size
//!    limit, and the owner's signature — the one part of the header the segment ID does not bind
//!    (receivers of one segment can share a [`SignatureCheck`] so it is verified once);
//! 2. checks the outboard against the header's root for this index once it is complete;
//! 3. checks each group of data against the outboard once the group is complete,
//!
//! and fails at the first bad piece with an error naming it, so the reader can abort the transfer
//! there and ask another holder. It holds at most the shard itself (the header's sizes are only
//! trusted — and the buffers allocated — after the header matched the segment ID). The result is
//! the same [`Shard`] as [`Shard::from_bytes`] gives for the disk order (checked by the tests and
//! the `shard_receive` fuzz target).

use macula_core::sync::Locked;
use std::sync::{Arc, Mutex};

use crate::header::{HeaderError, SegmentId, ShardHeader, SignedDescriptor};
use crate::segment::Shard;
use crate::tree;

/// Why received bytes are not the shard asked for. Each message names the first bad piece; the
/// remedy is always to fetch the shard from another holder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiveError {
    #[error("bad shard header: {0}")]
    Header(#[from] HeaderError),
    #[error("the holder sent a shard of segment {got}, not of the requested segment {want}")]
    WrongSegment { want: SegmentId, got: SegmentId },
    #[error("the holder sent shard {got} of the segment instead of shard {want}")]
    WrongIndex { want: u16, got: u16 },
    #[error("the shard has {len} bytes, more than the {max}-byte transfer limit")]
    TooLarge { len: usize, max: usize },
    #[error("the shard's outboard tree does not match its root: the shard is corrupt")]
    Outboard,
    #[error(
        "chunk group {group} (data bytes {start}..{end}) does not match its chaining value: the shard is corrupt"
    )]
    Group {
        group: usize,
        start: usize,
        end: usize,
    },
    #[error("{extra} bytes follow the end of the {len}-byte shard")]
    Overlong { len: usize, extra: usize },
    #[error("the transfer ended after {have} bytes; the shard needs at least {want}")]
    Truncated { have: usize, want: usize },
}

/// The owner's signature over a segment's descriptor, verified once for the receivers that share
/// this: every shard of a segment carries the same signed descriptor, so after one receiver
/// verified it, the others compare the (segment ID, signature) pair instead of verifying again
/// (Ed25519 costs about as much as hashing a 256 KiB shard).
#[derive(Debug, Default)]
pub struct SignatureCheck(Mutex<Option<(SegmentId, [u8; 64])>>);

impl SignatureCheck {
    /// Checks the signature of `signed`, verifying it unless this very pair was verified here.
    pub fn check(&self, signed: &SignedDescriptor) -> Result<(), HeaderError> {
        let pair = (signed.segment_id(), signed.signature);
        // Held while verifying: concurrent receivers of the segment wait for one verification.
        let mut known = self.0.locked();
        if known.as_ref() == Some(&pair) {
            return Ok(());
        }
        signed.verify()?;
        *known = Some(pair);
        Ok(())
    }
}

/// Verifies one shard arriving in wire order (`header ‖ outboard ‖ data`), piece by piece.
#[derive(Debug, Clone)]
pub struct ShardReceiver {
    segment: SegmentId,
    index: u16,
    max_len: usize,
    signature: Arc<SignatureCheck>,
    /// Header bytes, until the header is complete.
    head: Vec<u8>,
    /// Length `head` must reach before the next parse (the parser says how much it needs).
    need: usize,
    /// The header once it is complete and checked, with the shard's sizes.
    header: Option<Parsed>,
    outboard: Vec<u8>,
    data: Vec<u8>,
    /// Data groups verified so far.
    verified: usize,
    /// The first error; every later call repeats it.
    failed: Option<ReceiveError>,
}

#[derive(Debug, Clone)]
struct Parsed {
    header: ShardHeader,
    root: [u8; 32],
    shard_len: usize,
    outboard_len: usize,
}

impl ShardReceiver {
    /// A receiver for shard `index` of `segment`, refusing shards whose serialised length
    /// ([`Shard::total_len`]) exceeds `max_len`.
    pub fn new(segment: SegmentId, index: u16, max_len: usize) -> Self {
        Self::sharing(segment, index, max_len, Arc::default())
    }

    /// As [`ShardReceiver::new`], sharing the signature check with other receivers (of shards of
    /// the same segment, for it to save anything).
    pub fn sharing(
        segment: SegmentId,
        index: u16,
        max_len: usize,
        signature: Arc<SignatureCheck>,
    ) -> Self {
        Self {
            segment,
            index,
            max_len,
            signature,
            head: Vec::new(),
            need: crate::header::FIXED_LEN,
            header: None,
            outboard: Vec::new(),
            data: Vec::new(),
            verified: 0,
            failed: None,
        }
    }

    /// Bytes accepted so far.
    pub fn received(&self) -> usize {
        match &self.header {
            None => self.head.len(),
            Some(p) => p.header.encoded_len() + self.outboard.len() + self.data.len(),
        }
    }

    /// The serialised length of the shard, once the header is in.
    pub fn total_len(&self) -> Option<usize> {
        self.header.as_ref().map(|p| Shard::total_len(&p.header))
    }

    /// Takes the next bytes of the shard. Fails at the first piece that does not verify (or at
    /// bytes beyond the shard's end); after an error the receiver repeats it.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), ReceiveError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.take(bytes);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
            // Nothing received is of use any more.
            self.head = Vec::new();
            self.outboard = Vec::new();
            self.data = Vec::new();
        }
        r
    }

    /// The verified shard, once every byte arrived.
    pub fn finish(self) -> Result<Shard, ReceiveError> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let have = self.received();
        match self.header {
            Some(p) if self.verified == tree::group_count(p.shard_len) => Ok(Shard {
                header: p.header,
                data: self.data,
                outboard: self.outboard,
            }),
            Some(p) => Err(ReceiveError::Truncated {
                have,
                want: Shard::total_len(&p.header),
            }),
            None => Err(ReceiveError::Truncated {
                have,
                want: self.need,
            }),
        }
    }

    fn take(&mut self, mut bytes: &[u8]) -> Result<(), ReceiveError> {
        while !bytes.is_empty() {
            let Some(p) = &self.header else {
                let n = (self.need - self.head.len()).min(bytes.len());
                self.head.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if self.head.len() == self.need {
                    self.parse_header()?;
                }
                continue;
            };
            if self.outboard.len() < p.outboard_len {
                let n = (p.outboard_len - self.outboard.len()).min(bytes.len());
                self.outboard.extend_from_slice(&bytes[..n]);
                bytes = &bytes[n..];
                if self.outboard.len() == p.outboard_len
                    && !tree::verify_outboard(&p.root, p.shard_len, &self.outboard)
                {
                    return Err(ReceiveError::Outboard);
                }
                continue;
            }
            let len = Shard::total_len(&p.header);
            let n = (p.shard_len - self.data.len()).min(bytes.len());
            self.data.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            self.verify_groups()?;
            if !bytes.is_empty() {
                return Err(ReceiveError::Overlong {
                    len,
                    extra: bytes.len(),
                });
            }
        }
        Ok(())
    }

    /// Parses the header once `need` bytes are in: either it needs more, or it is complete.
    fn parse_header(&mut self) -> Result<(), ReceiveError> {
        let header = match ShardHeader::parse(&self.head) {
            Ok((header, len)) => {
                debug_assert_eq!(len, self.head.len());
                header
            }
            Err(HeaderError::Truncated { need, .. }) => {
                debug_assert!(need > self.head.len() && need <= crate::header::MAX_HEADER_LEN);
                self.need = need;
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let got = header.segment_id();
        if got != self.segment {
            return Err(ReceiveError::WrongSegment {
                want: self.segment,
                got,
            });
        }
        if header.index != self.index {
            return Err(ReceiveError::WrongIndex {
                want: self.index,
                got: header.index,
            });
        }
        let len = Shard::total_len(&header);
        if len > self.max_len {
            return Err(ReceiveError::TooLarge {
                len,
                max: self.max_len,
            });
        }
        // The segment ID binds the descriptor; the signature is the only part it does not.
        self.signature.check(&header.signed)?;
        let shard_len = header.desc().shard_len as usize;
        let outboard_len = tree::outboard_len(shard_len);
        self.outboard = Vec::with_capacity(outboard_len);
        self.data = Vec::with_capacity(shard_len);
        self.head = Vec::new();
        self.header = Some(Parsed {
            root: header.root(),
            header,
            shard_len,
            outboard_len,
        });
        // An empty outboard (one-group shard) is checked with the data.
        Ok(())
    }

    /// Checks every group of data that is complete and not yet checked.
    fn verify_groups(&mut self) -> Result<(), ReceiveError> {
        let p = self.header.as_ref().expect("data follows the header");
        while self.verified < tree::group_count(p.shard_len) {
            let group = self.verified;
            let start = group * tree::GROUP_LEN;
            let end = (start + tree::GROUP_LEN).min(p.shard_len);
            if self.data.len() < end {
                break;
            }
            let data = &self.data[start..end];
            if !tree::verify_group(&p.root, p.shard_len, &self.outboard, group, data) {
                return Err(ReceiveError::Group { group, start, end });
            }
            self.verified += 1;
        }
        Ok(())
    }
}

/// The wire form of `shard` (`header ‖ outboard ‖ data`) cut into chunks of at most `max` bytes:
/// the header and outboard first, then the data. With `max` a multiple of the 16 KiB group size,
/// every data chunk ends on a group boundary, so a receiver checks each chunk as it arrives.
pub fn wire_chunks(shard: &Shard, max: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    assert!(max > 0, "chunks need room for at least one byte");
    let mut head = shard.header.encode();
    head.extend_from_slice(&shard.outboard);
    let head: Vec<Vec<u8>> = head.chunks(max).map(<[u8]>::to_vec).collect();
    head.into_iter()
        .chain(shard.data.chunks(max).map(<[u8]>::to_vec))
}

#[cfg(test)]
mod tests {
    use macula_core::NodeKey;

    use super::*;
    use crate::codec::CodecId;
    use crate::crypto::{AeadId, ObjectKey};
    use crate::header::SegmentKind;
    use crate::segment::{SegmentParams, Trust, encode_segment};

    /// Shards of a segment with `plain_len` bytes (4 + 2).
    fn shards(plain_len: usize) -> (SegmentId, Vec<Shard>) {
        let plain: Vec<u8> = (0..plain_len).map(|i| (i * 7 % 251) as u8).collect();
        let p = SegmentParams {
            kind: SegmentKind::Data,
            codec: CodecId::RsGf16Leopard,
            aead: AeadId::preferred(),
            k: 4,
            m: 2,
            segment_index: 0,
            segment_count: 1,
        };
        let seg = encode_segment(
            &plain,
            &p,
            &ObjectKey([3; 32]),
            &NodeKey::from_seed([4; 32]),
        )
        .unwrap();
        (seg.segment_id(), (0..6).map(|i| seg.shard(i)).collect())
    }

    fn wire(s: &Shard) -> Vec<u8> {
        wire_chunks(s, 1 << 16).flatten().collect()
    }

    fn receiver(seg: SegmentId, s: &Shard) -> ShardReceiver {
        ShardReceiver::new(seg, s.header.index, usize::MAX)
    }

    /// Where each part of a shard ends in wire order: header, outboard, each data group.
    fn ends(s: &Shard) -> (usize, usize, Vec<usize>) {
        let h = s.header.encoded_len();
        let o = h + s.outboard.len();
        let sl = s.data.len();
        let groups = (0..tree::group_count(sl))
            .map(|g| o + ((g + 1) * tree::GROUP_LEN).min(sl))
            .collect();
        (h, o, groups)
    }

    /// Simple deterministic generator for split points.
    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    // 1 group; 4 groups + a partial one; exactly 5 groups of data.
    const SIZES: [usize; 3] = [1000, 4 * (4 * 16384 + 640) - 16, 4 * 5 * 16384 - 16];

    #[test]
    fn any_chunking_gives_the_shard_from_bytes_gives() {
        for len in SIZES {
            let (seg, all) = shards(len);
            for s in [&all[0], &all[5]] {
                let w = wire(s);
                assert_eq!(w.len(), Shard::total_len(&s.header));
                let expect = Shard::from_bytes(&s.to_bytes(), Trust::SegmentId(seg)).unwrap();
                // In one piece, a byte at a time, in the sender's chunks, in random pieces.
                let mut r = receiver(seg, s);
                r.feed(&w).unwrap();
                assert_eq!(r.finish().unwrap(), expect);
                let mut r = receiver(seg, s);
                for b in &w {
                    r.feed(std::slice::from_ref(b)).unwrap();
                }
                assert_eq!(r.total_len(), Some(w.len()));
                assert_eq!(r.received(), w.len());
                assert_eq!(r.finish().unwrap(), expect);
                for max in [1, 100, 16384, 65536] {
                    let mut r = receiver(seg, s);
                    for c in wire_chunks(s, max) {
                        assert!(!c.is_empty() && c.len() <= max);
                        r.feed(&c).unwrap();
                    }
                    assert_eq!(r.finish().unwrap(), expect);
                }
                let mut x = len as u64 | 1;
                for _ in 0..20 {
                    let mut r = receiver(seg, s);
                    let mut rest = &w[..];
                    while !rest.is_empty() {
                        let n = (next(&mut x) as usize % 40_000).min(rest.len());
                        r.feed(&rest[..n]).unwrap();
                        rest = &rest[n..];
                    }
                    assert_eq!(r.finish().unwrap(), expect);
                }
            }
        }
    }

    #[test]
    fn every_flipped_byte_is_caught_by_the_end_of_its_piece() {
        for len in SIZES {
            let (seg, all) = shards(len);
            let s = &all[1];
            let w = wire(s);
            let (h, o, groups) = ends(s);
            // Header and outboard: fresh receivers.
            for pos in 0..o {
                let mut bad = w.clone();
                bad[pos] ^= 0x10;
                let mut r = receiver(seg, s);
                let piece_end = if pos < h { h } else { o };
                r.feed(&bad[..pos]).unwrap();
                let caught = r.feed(&bad[pos..piece_end]).is_err();
                // A flip in k or m can make the header longer than it is: the receiver learns
                // that only where the header as parsed ends, or when the transfer ends.
                if (8..12).contains(&pos) && !caught {
                    let late = r.feed(&bad[piece_end..]).is_err() || r.finish().is_err();
                    assert!(late, "flip at header byte {pos} (len {len}) not caught");
                } else {
                    assert!(
                        caught,
                        "flip at byte {pos} of {o} (len {len}) not caught in time"
                    );
                }
            }
            // Data: from a checkpoint at the start of each group, every byte of that group.
            let mut checkpoint = receiver(seg, s);
            checkpoint.feed(&w[..o]).unwrap();
            let mut start = o;
            for (g, &end) in groups.iter().enumerate() {
                for pos in start..end {
                    let mut r = checkpoint.clone();
                    let mut group = w[start..end].to_vec();
                    group[pos - start] ^= 0x01;
                    r.feed(&group[..pos - start]).unwrap();
                    let e = r.feed(&group[pos - start..]).unwrap_err();
                    assert!(
                        matches!(e, ReceiveError::Group { group, .. } if group == g),
                        "flip at {pos}: {e}"
                    );
                    // The error sticks.
                    assert_eq!(r.feed(&w[end..]), Err(e.clone()));
                    assert_eq!(r.finish().unwrap_err(), e);
                }
                checkpoint.feed(&w[start..end]).unwrap();
                start = end;
            }
        }
    }

    #[test]
    fn truncation_extra_bytes_and_wrong_requests_are_refused() {
        let (seg, all) = shards(SIZES[1]);
        let s = &all[2];
        let w = wire(s);
        let (h, o, _) = ends(s);
        for cut in (0..w.len()).step_by(997).chain([h - 1, h, o, w.len() - 1]) {
            let mut r = receiver(seg, s);
            r.feed(&w[..cut]).unwrap();
            assert_eq!(r.received(), cut);
            assert!(
                matches!(r.finish(), Err(ReceiveError::Truncated { have, .. }) if have == cut),
                "cut at {cut}"
            );
        }
        // One byte too many, in the same piece or after the end.
        let mut long = w.clone();
        long.push(0);
        let mut r = receiver(seg, s);
        assert_eq!(
            r.feed(&long),
            Err(ReceiveError::Overlong {
                len: w.len(),
                extra: 1
            })
        );
        let mut r = receiver(seg, s);
        r.feed(&w).unwrap();
        assert!(matches!(r.feed(&[0]), Err(ReceiveError::Overlong { .. })));
        // Another index, another segment, a limit below the shard: refused at the header.
        let mut r = ShardReceiver::new(seg, 3, usize::MAX);
        assert_eq!(
            r.feed(&w[..h]),
            Err(ReceiveError::WrongIndex { want: 3, got: 2 })
        );
        let other = SegmentId([9; 32]);
        let mut r = ShardReceiver::new(other, 2, usize::MAX);
        assert_eq!(
            r.feed(&w[..h]),
            Err(ReceiveError::WrongSegment {
                want: other,
                got: seg
            })
        );
        let mut r = ShardReceiver::new(seg, 2, w.len() - 1);
        assert_eq!(
            r.feed(&w[..h]),
            Err(ReceiveError::TooLarge {
                len: w.len(),
                max: w.len() - 1
            })
        );
        // A shared signature check verifies once per segment and still catches a bad signature:
        // the pair (segment ID, signature) must match what was verified.
        let check = Arc::new(SignatureCheck::default());
        for s in &all {
            let mut r = ShardReceiver::sharing(seg, s.header.index, usize::MAX, check.clone());
            r.feed(&wire(s)).unwrap();
            r.finish().unwrap();
        }
        let mut forged = wire(&all[3]);
        forged[h - 3] ^= 0x40; // last signature byte
        let mut r = ShardReceiver::sharing(seg, 3, usize::MAX, check.clone());
        assert_eq!(
            r.feed(&forged),
            Err(ReceiveError::Header(HeaderError::BadSignature))
        );
        // Another segment signed by the same owner is verified on its own.
        let (seg2, other) = shards(SIZES[0]);
        let mut r = ShardReceiver::sharing(seg2, 0, usize::MAX, check);
        r.feed(&wire(&other[0])).unwrap();
        r.finish().unwrap();
        // A shard in disk order is refused where the outboard should end (data stands there).
        let mut r = receiver(seg, s);
        assert_eq!(r.feed(&s.to_bytes()), Err(ReceiveError::Outboard));
    }
}
