//! RPC: named procedures, one QUIC bidirectional stream per call.
//!
//! The caller opens a stream, sends one [`RpcRequest`] frame and finishes its side; the callee
//! answers with one [`RpcReply`] frame. The deadline travels with the request and both sides
//! enforce it. Cancellation is QUIC-native: a caller that gives up (deadline, or dropping the call)
//! stops the stream, and the callee drops the handler's future at once.
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

/// The first (and only) frame a caller sends on a call stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcRequest {
    pub procedure: String,
    /// Milliseconds the caller will wait, counted from when it sent the request.
    pub deadline_ms: u32,
    pub body: Vec<u8>,
}

/// The callee's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcReply {
    Ok(Vec<u8>),
    Err { code: ErrorCode, message: String },
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

impl From<RpcReply> for Result<Vec<u8>, RpcError> {
    fn from(r: RpcReply) -> Self {
        match r {
            RpcReply::Ok(b) => Ok(b),
            RpcReply::Err { code, message } => Err(RpcError { code, message }),
        }
    }
}

/// The future a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, RpcError>> + Send>>;
/// A procedure implementation: called with the authenticated caller and the request body.
pub type Handler = Arc<dyn Fn(NodeId, Vec<u8>) -> HandlerFuture + Send + Sync>;

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
        let back: Result<Vec<u8>, RpcError> =
            macula_core::wire::decode::<RpcReply>(&macula_core::wire::encode(&reply))
                .unwrap()
                .into();
        assert_eq!(back, Err(e));
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
