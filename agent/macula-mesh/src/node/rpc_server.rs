//! The RPC server: reads one request per incoming bidirectional stream, runs the procedure's
//! handler within the request's deadline, writes its reply or its chunks; a stopped stream drops
//! the handler.

use macula_core::sync::ReadLocked;
use std::sync::Arc;
use std::time::Duration;

use macula_core::NodeId;
use quinn::VarInt;
use tokio::sync::mpsc;

use super::{CallRecord, Shared};
use crate::frame::{ConnBudget, FrameError};
use crate::proto::close;
use crate::rpc::{
    ChunkSender, ErrorCode, MAX_RPC_FRAME, MAX_STREAM_FRAME, Procedure, RpcError, RpcReply,
    RpcRequest,
};

/// Answers one call stream.
pub(super) async fn serve_call(
    shared: Arc<Shared>,
    peer: NodeId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    budget: Arc<ConnBudget>,
) {
    let deadline = shared.endpoint.params().request_deadline;
    let read = crate::frame::read_within::<RpcRequest>(&mut recv, MAX_RPC_FRAME, Some(&budget));
    // The request's charge stays until the call is answered: the handler holds its body.
    let (req, _held) = match tokio::time::timeout(deadline, read).await {
        Ok(Ok(Some(r))) => r,
        Ok(Err(e @ FrameError::OverBudget { .. })) => {
            tracing::debug!(%peer, "call stream reset: {e}");
            let _ = recv.stop(VarInt::from_u32(close::OVERLOADED));
            let _ = send.reset(VarInt::from_u32(close::OVERLOADED));
            return;
        }
        Ok(Ok(None) | Err(_)) | Err(_) => {
            let _ = recv.stop(VarInt::from_u32(close::PROTOCOL));
            let _ = send.reset(VarInt::from_u32(close::PROTOCOL));
            return;
        }
    };
    let found = crate::rpc::admit(&req).and_then(|deadline| {
        let procedure = shared.procedures.read_locked().get(&req.procedure).cloned();
        procedure.map(|p| (deadline, p)).ok_or_else(|| {
            RpcError::new(
                ErrorCode::NoSuchProcedure,
                format!(
                    "{} serves no procedure `{}`",
                    shared.me.short(),
                    req.procedure
                ),
            )
        })
    });
    let served = if found.is_ok() {
        req.procedure.as_str()
    } else {
        crate::stats::UNSERVED
    };
    let mut record = CallRecord::start(&shared, true, served);
    let reply: Result<Vec<u8>, RpcError> = match found {
        Err(e) => Err(e),
        Ok((deadline, Procedure::Plain(h))) => {
            tokio::select! {
                r = tokio::time::timeout(deadline, h(peer, req.body)) => r.unwrap_or_else(|_| {
                    Err(RpcError::new(ErrorCode::DeadlineExceeded, "the handler ran past the deadline"))
                }),
                // The caller stopped the stream: cancel by dropping the handler.
                _ = send.stopped() => return,
            }
        }
        Ok((deadline, Procedure::Stream(h))) => {
            let (sender, chunks) = ChunkSender::channel();
            serve_stream(send, deadline, h(peer, req.body, sender), chunks, record).await;
            return;
        }
    };
    record.end(reply.as_ref().map(|_| ()).map_err(|e| e.code));
    if crate::frame::write(&mut send, &RpcReply::from(reply), MAX_RPC_FRAME)
        .await
        .is_ok()
    {
        let _ = send.finish();
        let _ = send.stopped().await;
    }
}

/// Runs a stream handler: writes its chunks in order, then `End` or its error. The handler is
/// dropped when the caller stops the stream or the deadline passes (the caller then gets
/// `DeadlineExceeded`).
async fn serve_stream(
    mut send: quinn::SendStream,
    deadline: Duration,
    handler: crate::rpc::StreamFuture,
    chunks: mpsc::Receiver<Vec<u8>>,
    mut record: CallRecord,
) {
    let stopped = send.stopped();
    tokio::pin!(stopped);
    let result = tokio::select! {
        r = tokio::time::timeout(deadline, forward_chunks(&mut send, handler, chunks)) => match r {
            Ok(Some(r)) => r,
            // The stream broke while writing (the caller stopped it, or the connection is gone).
            Ok(None) => return,
            Err(_) => Err(RpcError::new(ErrorCode::DeadlineExceeded, "the handler ran past the deadline")),
        },
        // The caller stopped the stream: cancel by dropping the handler.
        _ = &mut stopped => return,
    };
    record.end(result.as_ref().map_err(|e| e.code).copied());
    let last = match result {
        Ok(()) => RpcReply::End,
        Err(e) => crate::rpc::stream_error(e),
    };
    if crate::frame::write(&mut send, &last, MAX_STREAM_FRAME)
        .await
        .is_ok()
    {
        let _ = send.finish();
        let _ = stopped.await;
    }
}

/// Writes the handler's chunks as they come until it returns; `None` when a write failed.
async fn forward_chunks(
    send: &mut quinn::SendStream,
    mut handler: crate::rpc::StreamFuture,
    mut chunks: mpsc::Receiver<Vec<u8>>,
) -> Option<Result<(), RpcError>> {
    let result = loop {
        tokio::select! {
            chunk = chunks.recv() => match chunk {
                Some(c) => crate::frame::write(send, &RpcReply::Chunk(c), MAX_STREAM_FRAME).await.ok()?,
                // The handler let go of its sender but runs on.
                None => break (&mut handler).await,
            },
            r = &mut handler => break r,
        }
    };
    // Chunks queued before the handler returned go out before the end; later sends fail.
    chunks.close();
    while let Some(c) = chunks.recv().await {
        crate::frame::write(send, &RpcReply::Chunk(c), MAX_STREAM_FRAME)
            .await
            .ok()?;
    }
    Some(result)
}
