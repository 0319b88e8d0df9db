//! The RPC client: one bidirectional stream per call, the request, then one reply or a stream of
//! chunks ([`ReplyStream`]); the deadline covers connecting, sending and the reply.

use std::sync::Arc;
use std::time::Duration;

use macula_core::NodeId;
use quinn::VarInt;
use tokio::time::Instant;

use super::conns::connection;
use super::{CallRecord, Shared};
use crate::frame::FrameError;
use crate::proto::close;
use crate::rpc::{
    CANCEL_CODE, ErrorCode, MAX_RPC_FRAME, MAX_STREAM_FRAME, RpcError, RpcReply, RpcRequest,
    StreamItem,
};

/// Opens a call stream to `peer` and sends the request; connecting, opening and sending count
/// against `deadline`.
pub(super) async fn open_call(
    shared: &Arc<Shared>,
    peer: NodeId,
    procedure: &str,
    body: Vec<u8>,
    deadline: Duration,
) -> Result<(quinn::SendStream, quinn::RecvStream), RpcError> {
    let req = RpcRequest {
        procedure: procedure.to_string(),
        deadline_ms: u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX),
        body,
    };
    let at = Instant::now() + deadline;
    let late = || {
        RpcError::new(
            ErrorCode::DeadlineExceeded,
            format!("no answer from {} within {deadline:?}", peer.short()),
        )
    };
    let conn = tokio::time::timeout_at(at, connection(shared, peer))
        .await
        .map_err(|_| RpcError::new(ErrorCode::DeadlineExceeded, "connecting took too long"))??;
    let (mut send, mut recv) = tokio::time::timeout_at(at, conn.open_bi())
        .await
        .map_err(|_| late())?
        .map_err(|e| unavailable(&e))?;
    let sent = tokio::time::timeout_at(at, async {
        crate::frame::write(&mut send, &req, MAX_RPC_FRAME)
            .await
            .map_err(|e| match e {
                FrameError::TooLarge { .. } => {
                    RpcError::new(ErrorCode::BadRequest, format!("request not sent: {e}"))
                }
                FrameError::Write(quinn::WriteError::Stopped(code))
                    if code.into_inner() == u64::from(close::OVERLOADED) =>
                {
                    overloaded()
                }
                e => unavailable(&e),
            })?;
        send.finish().map_err(|e| unavailable(&e))
    })
    .await;
    match sent {
        Ok(Ok(())) => Ok((send, recv)),
        Ok(Err(e)) => Err(e),
        Err(_) => {
            cancel(&mut send, &mut recv, CANCEL_CODE);
            Err(late())
        }
    }
}

pub(super) fn unavailable(e: &dyn std::fmt::Display) -> RpcError {
    RpcError::new(ErrorCode::Unavailable, e.to_string())
}

/// The callee reset the call because our connection's buffer budget there was spent.
fn overloaded() -> RpcError {
    RpcError::new(
        ErrorCode::Overloaded,
        "the callee holds too many of our partly received requests; retry once others finish",
    )
}

/// Abandons a call stream in both directions.
fn cancel(send: &mut quinn::SendStream, recv: &mut quinn::RecvStream, code: u32) {
    let _ = send.reset(VarInt::from_u32(code));
    let _ = recv.stop(VarInt::from_u32(code));
}

/// The reply frame read from a call stream, or what went wrong reading it.
fn reply_frame(read: Result<Option<RpcReply>, FrameError>) -> Result<RpcReply, RpcError> {
    match read {
        Ok(Some(reply)) => Ok(reply),
        Ok(None) => Err(RpcError::new(
            ErrorCode::Unavailable,
            "the callee closed the call before the end of its answer",
        )),
        Err(FrameError::Read(quinn::ReadExactError::ReadError(quinn::ReadError::Reset(code))))
            if code.into_inner() == u64::from(close::OVERLOADED) =>
        {
            Err(overloaded())
        }
        Err(FrameError::Read(e)) => Err(unavailable(&e)),
        Err(e) => Err(RpcError::new(ErrorCode::Protocol, e.to_string())),
    }
}

/// Calls `procedure` on `peer` (see [`MeshNode::call`]).
pub(super) async fn call(
    shared: &Arc<Shared>,
    peer: NodeId,
    procedure: &str,
    body: Vec<u8>,
    deadline: Duration,
) -> Result<Vec<u8>, RpcError> {
    let mut record = CallRecord::start(shared, false, procedure);
    let reply = plain_call(shared, peer, procedure, body, deadline).await;
    record.end(reply.as_ref().map(|_| ()).map_err(|e| e.code));
    reply
}

async fn plain_call(
    shared: &Arc<Shared>,
    peer: NodeId,
    procedure: &str,
    body: Vec<u8>,
    deadline: Duration,
) -> Result<Vec<u8>, RpcError> {
    let at = Instant::now() + deadline;
    let (mut send, mut recv) = open_call(shared, peer, procedure, body, deadline).await?;
    let read = crate::frame::read::<RpcReply>(&mut recv, MAX_RPC_FRAME);
    let Ok(read) = tokio::time::timeout_at(at, read).await else {
        cancel(&mut send, &mut recv, CANCEL_CODE);
        return Err(RpcError::new(
            ErrorCode::DeadlineExceeded,
            format!("no answer from {} within {deadline:?}", peer.short()),
        ));
    };
    let reply = reply_frame(read).and_then(|r| {
        let streamed = matches!(r, RpcReply::Chunk(_) | RpcReply::End);
        crate::rpc::plain_reply(r).map_err(|e| {
            if streamed {
                let at = format!("`{procedure}` on {}", peer.short());
                RpcError::new(e.code, format!("{at}: {}", e.message))
            } else {
                e
            }
        })
    });
    if reply.is_err() {
        // Stops a stream reply (or whatever else the callee is still sending).
        cancel(&mut send, &mut recv, CANCEL_CODE);
    }
    reply
}

/// The reply of a stream call ([`MeshNode::call_stream`]): its chunks in order, then the end.
///
/// Dropping it before the end cancels the call at the callee (the QUIC stream is stopped with
/// [`CANCEL_CODE`] and the callee drops the handler). [`ReplyStream::next`] is not cancel-safe:
/// to give up on a reply, drop the whole `ReplyStream`.
pub struct ReplyStream {
    /// Counts the call once it ends (or as cancelled when dropped before).
    pub(super) record: CallRecord,
    pub(super) send: quinn::SendStream,
    pub(super) recv: quinn::RecvStream,
    /// "`procedure` on peer", for error messages.
    pub(super) what: String,
    pub(super) deadline: Instant,
    pub(super) budget: Duration,
    /// No frame read yet (the first may be a plain reply, read with the plain limit).
    pub(super) first: bool,
    /// How the call ended, once it did.
    pub(super) end: Option<Result<(), RpcError>>,
}

impl ReplyStream {
    /// The next chunk of the reply; `Ok(None)` once the callee ended it. An error ends the call:
    /// the callee's own error as it sent it, otherwise the deadline (`DeadlineExceeded`), a
    /// broken stream or connection (`Unavailable`), a malformed or oversized frame (`Protocol`),
    /// or a plain reply from a plain procedure (`BadRequest`). After the end or an error, `next`
    /// returns the same again.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, RpcError> {
        if let Some(end) = &self.end {
            return end.clone().map(|()| None);
        }
        let limit = if self.first {
            MAX_RPC_FRAME
        } else {
            MAX_STREAM_FRAME
        };
        self.first = false;
        let read = crate::frame::read::<RpcReply>(&mut self.recv, limit);
        let item = match tokio::time::timeout_at(self.deadline, read).await {
            Err(_) => Err(self.late()),
            Ok(read) => match reply_frame(read) {
                // The callee's own error, passed on unchanged.
                Ok(RpcReply::Err { code, message }) => {
                    self.record.end(Err(code));
                    self.end = Some(Err(RpcError { code, message }));
                    return self.end.clone().expect("just set").map(|()| None);
                }
                Ok(reply) => crate::rpc::stream_item(reply).map_err(|e| self.local(e)),
                Err(e) => Err(self.local(e)),
            },
        };
        let err = match item {
            Ok(StreamItem::Chunk(c)) => return Ok(Some(c)),
            Ok(StreamItem::End) => {
                // The callee finishes the stream right after the end; nothing may follow it.
                let rest = crate::frame::read::<RpcReply>(&mut self.recv, MAX_STREAM_FRAME);
                match tokio::time::timeout_at(self.deadline, rest).await {
                    Ok(Ok(None)) => {
                        self.record.end(Ok(()));
                        self.end = Some(Ok(()));
                        return Ok(None);
                    }
                    Ok(Ok(Some(_))) => self.local(RpcError::new(
                        ErrorCode::Protocol,
                        "a frame followed the end of the reply",
                    )),
                    Ok(Err(FrameError::Read(e))) => self.local(unavailable(&e)),
                    Ok(Err(e)) => self.local(RpcError::new(ErrorCode::Protocol, e.to_string())),
                    Err(_) => self.late(),
                }
            }
            Err(e) => e,
        };
        let code = if err.code == ErrorCode::Protocol {
            close::PROTOCOL
        } else {
            CANCEL_CODE
        };
        cancel(&mut self.send, &mut self.recv, code);
        self.record.end(Err(err.code));
        self.end = Some(Err(err.clone()));
        Err(err)
    }

    fn local(&self, e: RpcError) -> RpcError {
        RpcError::new(e.code, format!("{}: {}", self.what, e.message))
    }

    fn late(&self) -> RpcError {
        RpcError::new(
            ErrorCode::DeadlineExceeded,
            format!(
                "{}: the reply did not end within {:?}",
                self.what, self.budget
            ),
        )
    }
}

impl Drop for ReplyStream {
    fn drop(&mut self) {
        if self.end.is_none() {
            cancel(&mut self.send, &mut self.recv, CANCEL_CODE);
        }
    }
}
