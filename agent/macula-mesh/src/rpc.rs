//! RPC: named procedures, one QUIC bidirectional stream per call.
//!
//! The caller opens a stream, sends one [`RpcRequest`] frame and finishes its side. A *plain*
//! procedure answers with one [`RpcReply::Ok`] or [`RpcReply::Err`] frame; a *stream* procedure
//! answers with any number of [`RpcReply::Chunk`] frames (each at most [`MAX_CHUNK`] bytes) and
//! then [`RpcReply::End`] or [`RpcReply::Err`]. Both kinds share the reply enum so that a caller
//! expecting one kind recognises the other and says so ([`stream_item`], [`plain_reply`]) instead
//! of misreading it. The deadline travels with the request and both sides enforce it (for a
//! stream it bounds the whole reply). Cancellation is QUIC-native: a caller that gives up
//! (deadline, or dropping the call or the reply stream) stops the stream, and the callee drops
//! the handler's future at once.
//!
//! Errors carry a code from a small taxonomy that says whether a retry can help
//! ([`ErrorCode::retryable`]) and whether it should go to another node
//! ([`ErrorCode::try_elsewhere`]).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use macula_core::NodeId;
use serde::{Deserialize, Serialize};

/// Longest procedure name.
pub const MAX_PROCEDURE: usize = 128;
/// Largest request or reply frame.
pub const MAX_RPC_FRAME: usize = 4 << 20;
/// Longest deadline a callee honours.
pub const MAX_DEADLINE: Duration = Duration::from_secs(300);
/// QUIC stream error code used to cancel a call.
pub const CANCEL_CODE: u32 = 0x20;
/// Largest chunk of a stream reply.
pub const MAX_CHUNK: usize = 256 << 10;
/// Longest error message in a stream reply (longer ones are cut at a character boundary).
pub const MAX_STREAM_MESSAGE: usize = 2048;
/// Largest frame of a stream reply after the first one: a chunk or an error with its envelope.
/// (The first frame may be as large as [`MAX_RPC_FRAME`], so that a plain reply to a stream call
/// is recognised and reported as such.)
pub const MAX_STREAM_FRAME: usize = MAX_CHUNK + 16;
/// Chunks a stream handler may queue ahead of the QUIC stream.
pub const STREAM_QUEUE: usize = 4;

/// The first (and only) frame a caller sends on a call stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcRequest {
    pub procedure: String,
    /// Milliseconds the caller will wait, counted from when it sent the request.
    pub deadline_ms: u32,
    #[serde(with = "macula_core::wire::bytes")]
    pub body: Vec<u8>,
}

/// The callee's answer: one `Ok` or `Err` frame for a plain procedure; `Chunk` frames then `End`
/// or `Err` for a stream procedure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcReply {
    Ok(#[serde(with = "macula_core::wire::bytes")] Vec<u8>),
    Err {
        code: ErrorCode,
        message: String,
    },
    /// The next piece of a stream reply (at most [`MAX_CHUNK`] bytes).
    Chunk(#[serde(with = "macula_core::wire::bytes")] Vec<u8>),
    /// A stream reply is complete.
    End,
}

/// What went wrong with a call, and what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The callee serves no procedure of that name.
    NoSuchProcedure,
    /// The request was malformed or invalid for the procedure.
    BadRequest,
    /// The caller is not allowed to call this.
    PermissionDenied,
    /// The deadline passed before an answer.
    DeadlineExceeded,
    /// The caller cancelled.
    Cancelled,
    /// The callee is too busy right now.
    Overloaded,
    /// The callee could not be reached, or the connection broke.
    Unavailable,
    /// The thing asked for does not exist at the callee.
    NotFound,
    /// The callee failed for a reason of its own.
    Internal,
    /// The other side broke the protocol (malformed frame).
    Protocol,
}

impl ErrorCode {
    /// Can the same call succeed if repeated (possibly elsewhere or later)?
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::DeadlineExceeded
                | ErrorCode::Overloaded
                | ErrorCode::Unavailable
                | ErrorCode::NotFound
        )
    }

    /// Should a retry go to another node offering the procedure rather than this one?
    pub fn try_elsewhere(self) -> bool {
        matches!(
            self,
            ErrorCode::Unavailable
                | ErrorCode::Overloaded
                | ErrorCode::NotFound
                | ErrorCode::NoSuchProcedure
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NoSuchProcedure => "no-such-procedure",
            ErrorCode::BadRequest => "bad-request",
            ErrorCode::PermissionDenied => "permission-denied",
            ErrorCode::DeadlineExceeded => "deadline-exceeded",
            ErrorCode::Cancelled => "cancelled",
            ErrorCode::Overloaded => "overloaded",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NotFound => "not-found",
            ErrorCode::Internal => "internal",
            ErrorCode::Protocol => "protocol",
        }
    }
}

/// A failed call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RpcError {
    pub code: ErrorCode,
    pub message: String,
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)?;
        if self.code.retryable() {
            f.write_str(" (retryable)")?;
        }
        Ok(())
    }
}

impl RpcError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<Result<Vec<u8>, RpcError>> for RpcReply {
    fn from(r: Result<Vec<u8>, RpcError>) -> Self {
        match r {
            Ok(b) => RpcReply::Ok(b),
            Err(e) => RpcReply::Err {
                code: e.code,
                message: e.message,
            },
        }
    }
}

/// What the caller of a plain procedure makes of the reply frame.
pub fn plain_reply(reply: RpcReply) -> Result<Vec<u8>, RpcError> {
    match reply {
        RpcReply::Ok(b) => Ok(b),
        RpcReply::Err { code, message } => Err(RpcError { code, message }),
        RpcReply::Chunk(_) | RpcReply::End => Err(RpcError::new(
            ErrorCode::BadRequest,
            "this is a stream procedure: call it with MeshNode::call_stream",
        )),
    }
}

/// One step of a stream reply, as the caller sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItem {
    Chunk(Vec<u8>),
    End,
}

/// What the caller of a stream procedure makes of one reply frame: the next chunk, the end, or
/// the error that ends the call (an `Err` frame, a plain reply, an oversized chunk).
pub fn stream_item(reply: RpcReply) -> Result<StreamItem, RpcError> {
    match reply {
        RpcReply::Chunk(c) if c.len() > MAX_CHUNK => Err(RpcError::new(
            ErrorCode::Protocol,
            format!(
                "reply chunk of {} bytes exceeds the limit of {MAX_CHUNK}",
                c.len()
            ),
        )),
        RpcReply::Chunk(c) => Ok(StreamItem::Chunk(c)),
        RpcReply::End => Ok(StreamItem::End),
        RpcReply::Err { code, message } => Err(RpcError { code, message }),
        RpcReply::Ok(_) => Err(RpcError::new(
            ErrorCode::BadRequest,
            "this is a plain procedure, not a stream: call it with MeshNode::call",
        )),
    }
}

/// The frame that ends a stream reply with `e` (the message cut to [`MAX_STREAM_MESSAGE`]).
pub fn stream_error(mut e: RpcError) -> RpcReply {
    if e.message.len() > MAX_STREAM_MESSAGE {
        let mut cut = MAX_STREAM_MESSAGE;
        while !e.message.is_char_boundary(cut) {
            cut -= 1;
        }
        e.message.truncate(cut);
    }
    RpcReply::Err {
        code: e.code,
        message: e.message,
    }
}

/// The future a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, RpcError>> + Send>>;
/// A procedure implementation: called with the authenticated caller and the request body.
pub type Handler = Arc<dyn Fn(NodeId, Vec<u8>) -> HandlerFuture + Send + Sync>;

/// The future a stream handler returns: `Ok` ends the reply with `End`, `Err` with that error
/// (after the chunks already sent).
pub type StreamFuture = Pin<Box<dyn Future<Output = Result<(), RpcError>> + Send>>;
/// A stream procedure: called with the authenticated caller, the request body and the sender of
/// the reply's chunks.
pub type StreamHandler = Arc<dyn Fn(NodeId, Vec<u8>, ChunkSender) -> StreamFuture + Send + Sync>;

/// A registered procedure of either kind.
#[derive(Clone)]
pub enum Procedure {
    Plain(Handler),
    Stream(StreamHandler),
}

/// Where a stream handler puts its reply chunks: a queue of [`STREAM_QUEUE`] chunks that the
/// node writes to the QUIC stream in order, so a handler waits while the caller falls behind.
pub struct ChunkSender {
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl ChunkSender {
    /// A sender and the queue the node drains.
    pub fn channel() -> (Self, tokio::sync::mpsc::Receiver<Vec<u8>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
        (Self { tx }, rx)
    }

    /// Queues the next chunk (at most [`MAX_CHUNK`] bytes). Fails when the chunk is too large
    /// (a handler bug: split it) or when the call is over; return the error from the handler.
    pub async fn send(&mut self, chunk: Vec<u8>) -> Result<(), RpcError> {
        if chunk.len() > MAX_CHUNK {
            return Err(RpcError::new(
                ErrorCode::Internal,
                format!(
                    "the handler produced a chunk of {} bytes, more than the {MAX_CHUNK}-byte limit",
                    chunk.len()
                ),
            ));
        }
        self.tx
            .send(chunk)
            .await
            .map_err(|_| RpcError::new(ErrorCode::Cancelled, "the call is over"))
    }
}

/// Checks a request before dispatch; the deadline the callee applies.
pub fn admit(req: &RpcRequest) -> Result<Duration, RpcError> {
    if req.procedure.is_empty() || req.procedure.len() > MAX_PROCEDURE {
        return Err(RpcError::new(
            ErrorCode::BadRequest,
            format!("procedure names have 1 to {MAX_PROCEDURE} bytes"),
        ));
    }
    Ok(Duration::from_millis(u64::from(req.deadline_ms)).min(MAX_DEADLINE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taxonomy() {
        assert!(ErrorCode::Unavailable.retryable() && ErrorCode::Unavailable.try_elsewhere());
        assert!(ErrorCode::DeadlineExceeded.retryable());
        assert!(!ErrorCode::BadRequest.retryable() && !ErrorCode::PermissionDenied.retryable());
        assert!(
            !ErrorCode::NoSuchProcedure.retryable() && ErrorCode::NoSuchProcedure.try_elsewhere()
        );
        let e = RpcError::new(ErrorCode::Overloaded, "busy");
        assert_eq!(e.to_string(), "overloaded: busy (retryable)");
        let reply: RpcReply = Err(e.clone()).into();
        let back = plain_reply(
            macula_core::wire::decode::<RpcReply>(&macula_core::wire::encode(&reply)).unwrap(),
        );
        assert_eq!(back, Err(e));
    }

    #[test]
    fn the_two_kinds_of_reply_recognise_each_other() {
        assert_eq!(plain_reply(RpcReply::Ok(vec![1])), Ok(vec![1]));
        for stream_frame in [RpcReply::Chunk(vec![1]), RpcReply::End] {
            let e = plain_reply(stream_frame).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(e.message.contains("call_stream"), "{e}");
        }
        assert_eq!(
            stream_item(RpcReply::Chunk(vec![2; MAX_CHUNK])),
            Ok(StreamItem::Chunk(vec![2; MAX_CHUNK]))
        );
        assert_eq!(stream_item(RpcReply::End), Ok(StreamItem::End));
        let e = stream_item(RpcReply::Ok(vec![])).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("MeshNode::call"), "{e}");
        let e = stream_item(RpcReply::Chunk(vec![0; MAX_CHUNK + 1])).unwrap_err();
        assert_eq!(e.code, ErrorCode::Protocol);
        assert_eq!(
            stream_item(RpcReply::Err {
                code: ErrorCode::NotFound,
                message: "gone".into()
            }),
            Err(RpcError::new(ErrorCode::NotFound, "gone"))
        );
    }

    #[test]
    fn stream_frames_fit_their_limit() {
        let chunk = RpcReply::Chunk(vec![0xab; MAX_CHUNK]);
        assert!(crate::frame::encode(&chunk, MAX_STREAM_FRAME).is_ok());
        let over = RpcReply::Chunk(vec![0xab; MAX_CHUNK + 16]);
        assert!(crate::frame::encode(&over, MAX_STREAM_FRAME).is_err());
        // Error messages are cut to fit, at a character boundary.
        let long = RpcError::new(ErrorCode::Internal, "é".repeat(MAX_STREAM_MESSAGE));
        let RpcReply::Err { message, .. } = stream_error(long.clone()) else {
            panic!("an error frame");
        };
        assert!(message.len() <= MAX_STREAM_MESSAGE && long.message.starts_with(&message));
        assert!(crate::frame::encode(&stream_error(long), MAX_STREAM_FRAME).is_ok());
    }

    #[test]
    fn admission_of_requests() {
        let mut r = RpcRequest {
            procedure: "store.get".into(),
            deadline_ms: 10_000_000,
            body: vec![],
        };
        assert_eq!(admit(&r).unwrap(), MAX_DEADLINE);
        r.procedure = "x".repeat(MAX_PROCEDURE + 1);
        assert_eq!(admit(&r).unwrap_err().code, ErrorCode::BadRequest);
    }
}
