//! Remote administration (`maculactl --node NAME …`, docs/security.md): one D-Bus method call
//! carried over the mesh to another member, which runs it on its own bus, through the same
//! interface objects and backends as a local call, and sends the reply back.
//!
//! The pieces, in the order a call takes them:
//! 1. `maculactl` serves its own commands' proxies on a private peer-to-peer connection
//!    ([`forwarder`]) and hands each method call, as a [`RemoteCall`], to the local agent's
//!    `Mesh1.Remote(node, call)`.
//! 2. The local agent sends it with its own certificate to the target over the mesh RPC
//!    `admin.call` ([`RemoteRequest`]).
//! 3. The target checks the caller's admin role (`macula_mesh::admin::authorize`), then
//!    [`runnable`], and only then replays it to itself ([`run_locally`]).
//! 4. The [`RemoteReply`] travels back and becomes the reply to the original call.

use macula_core::wire;
use serde::{Deserialize, Serialize};
use zbus::message::{Message, Type as MessageType};
use zbus::zvariant::serialized::{Context, Data};
use zbus::zvariant::{Endian, OwnedStructure, Signature, Structure};

use crate::{BUS_NAME, Error};

/// Largest D-Bus body carried either way (a firewall document, a ruleset, a ledger page).
pub const MAX_BODY: usize = 512 * 1024;

/// One D-Bus method call as it crosses the mesh. The body is in the D-Bus encoding (little
/// endian), checked against `signature` before anything is done with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteCall {
    pub path: String,
    pub interface: String,
    pub member: String,
    pub signature: String,
    #[serde(with = "macula_core::wire::bytes")]
    pub body: Vec<u8>,
}

/// The request of the RPC `admin.call`: the caller's membership certificate (text form; the
/// target checks it grants the admin role to the TLS-authenticated caller) and the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteRequest {
    pub cert: String,
    pub call: RemoteCall,
}

/// What the target's own bus answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemoteReply {
    Return {
        signature: String,
        #[serde(with = "macula_core::wire::bytes")]
        body: Vec<u8>,
    },
    Error {
        name: String,
        message: String,
    },
}

impl RemoteCall {
    /// The call in `msg`, refused when it is not a method call or carries file descriptors.
    pub fn from_message(msg: &Message) -> Result<Self, Error> {
        let header = msg.header();
        if header.message_type() != MessageType::MethodCall {
            return Err(Error::InvalidArgument("not a method call".into()));
        }
        let field = |v: Option<String>, what: &str| {
            v.ok_or_else(|| Error::InvalidArgument(format!("method call without {what}")))
        };
        let path = field(header.path().map(|p| p.to_string()), "a path")?;
        let interface = field(header.interface().map(|i| i.to_string()), "an interface")?;
        let member = field(header.member().map(|m| m.to_string()), "a member")?;
        if header.unix_fds().unwrap_or(0) > 0 {
            return Err(Error::InvalidArgument(format!(
                "{interface}.{member} passes file descriptors, which do not cross the mesh; \
                 run it on that node"
            )));
        }
        let (signature, body) = body_of(msg)?;
        Ok(Self {
            path,
            interface,
            member,
            signature,
            body,
        })
    }

    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }
}

impl RemoteRequest {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        wire::decode_with_limit(bytes, MAX_BODY + 16 * 1024)
            .map_err(|e| Error::InvalidArgument(format!("remote call: {e}")))
    }
}

impl RemoteReply {
    pub fn encode(&self) -> Vec<u8> {
        wire::encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        wire::decode_with_limit(bytes, MAX_BODY + 16 * 1024)
            .map_err(|e| Error::Failed(format!("remote reply: {e}")))
    }

    /// The reply carrying bus error `e`.
    pub fn from_error(e: Error) -> Self {
        use zbus::DBusError;
        RemoteReply::Error {
            name: e.name().to_string(),
            message: e.description().unwrap_or_default().to_owned(),
        }
    }

    /// The reply to `call` (the message `maculactl`'s proxy sent) that this stands for.
    pub fn to_message(&self, call: &Message) -> zbus::Result<Message> {
        let header = call.header();
        match self {
            RemoteReply::Return { signature, body } => {
                let builder = Message::method_return(&header)?;
                match decode_body(signature, body) {
                    Ok(None) => builder.build(&()),
                    Ok(Some(s)) => builder.build(&s),
                    Err(e) => Message::error(&header, "io.macula.Error.Failed")?
                        .build(&(format!("remote reply: {e}"),)),
                }
            }
            RemoteReply::Error { name, message } => {
                Message::error(&header, name.as_str())?.build(&(message,))
            }
        }
    }
}

/// The signature and little-endian bytes of `msg`'s body (re-encoded when the sender used big
/// endian), at most [`MAX_BODY`].
fn body_of(msg: &Message) -> Result<(String, Vec<u8>), Error> {
    let body = msg.body();
    let signature = body.signature().to_string_no_parens();
    if body.len() > MAX_BODY {
        return Err(Error::InvalidArgument(format!(
            "the call's arguments are {} bytes, more than the {MAX_BODY} a remote call carries",
            body.len()
        )));
    }
    if signature.is_empty() {
        return Ok((signature, Vec::new()));
    }
    let value: Structure<'_> = body
        .deserialize()
        .map_err(|e| Error::InvalidArgument(format!("malformed arguments: {e}")))?;
    let bytes = zbus::zvariant::to_bytes(Context::new_dbus(Endian::Little, 0), &value)
        .map_err(|e| Error::InvalidArgument(format!("malformed arguments: {e}")))?;
    Ok((signature, bytes.to_vec()))
}

/// The arguments in `body` (little endian) as `signature` says, `None` for an empty body.
/// Refuses bytes that do not match the signature.
fn decode_body(signature: &str, body: &[u8]) -> Result<Option<OwnedStructure>, String> {
    if body.len() > MAX_BODY {
        return Err(format!("{} bytes of arguments, over the limit", body.len()));
    }
    if signature.is_empty() {
        return if body.is_empty() {
            Ok(None)
        } else {
            Err("arguments without a signature".into())
        };
    }
    let sig = Signature::try_from(format!("({signature})").as_str())
        .map_err(|e| format!("signature `{signature}`: {e}"))?;
    let data = Data::new(body, Context::new_dbus(Endian::Little, 0));
    let (value, used): (OwnedStructure, usize) = data
        .deserialize_for_dynamic_signature(&sig)
        .map_err(|e| format!("arguments do not match `{signature}`: {e}"))?;
    if used != body.len() {
        return Err(format!("{} bytes after the arguments", body.len() - used));
    }
    Ok(Some(value))
}

/// The methods another member may run here, given the admin role: every read-only method
/// (the same list the bus policy opens to everyone) and the administrator's changes. Others are
/// refused with the reason.
const RUNNABLE: &[(&str, &[&str])] = &[
    ("org.freedesktop.DBus.Properties", &["Get", "GetAll"]),
    (
        "io.macula.Node1",
        &["Status", "Workers", "PeerResources", "SetLogLevel"],
    ),
    ("io.macula.Proofs1", &["Status", "History", "Ledger"]),
    ("io.macula.Firewall1", &["Status", "Apply", "Confirm"]),
    ("io.macula.Overlay1", &["Status", "Peers"]),
    ("io.macula.Uplinks1", &["Links"]),
    (
        "io.macula.Storage1",
        &["Stat", "Delete", "PurgeOwner", "PurgeRealm"],
    ),
    ("io.macula.Update1", &["Status", "Rollout", "MarkGood"]),
    ("io.macula.S3", &["Status"]),
    (
        "io.macula.Mesh1",
        &[
            "Certificate",
            "Reports",
            "Ping",
            "Admit",
            "Invite",
            "Revoke",
        ],
    ),
];

/// Why a method is not run for another member, when it is not in [`RUNNABLE`].
fn refusal(interface: &str, member: &str) -> String {
    let why = match (interface, member) {
        ("io.macula.Storage1", "PutFd" | "GetFd") => {
            "file descriptors do not cross the mesh; `put`/`get` on any member reach the same \
             realm storage"
        }
        ("io.macula.Update1", "Install") => {
            "the bundle path is the target's and progress comes by signals; publish realm \
             updates with `maculactl update publish`, or install on that node"
        }
        ("io.macula.Mesh1", "Subscribe" | "Publish") => {
            "pub/sub is realm-wide: publish or subscribe on any member"
        }
        ("io.macula.Mesh1", "CreateRealm" | "Join" | "JoinCode") => {
            "a node's own membership is set up on that node"
        }
        ("io.macula.Mesh1", "Remote") => "remote calls are not chained",
        ("org.freedesktop.DBus.Properties", "Set") => {
            "properties are not set remotely; use the command's method (e.g. `node log-level`)"
        }
        _ => "it is not on the list of remotely runnable methods (docs/security.md)",
    };
    format!("{interface}.{member} cannot be run on another node: {why}")
}

/// Whether a member with the admin role may run `interface.member` here.
pub fn runnable(interface: &str, member: &str) -> Result<(), Error> {
    let listed = RUNNABLE
        .iter()
        .any(|(i, ms)| *i == interface && ms.contains(&member));
    if listed {
        Ok(())
    } else {
        Err(Error::PermissionDenied(refusal(interface, member)))
    }
}

/// Runs `call` (already authorized and [`runnable`]) on this agent: sent on `conn` to
/// [`BUS_NAME`], so it goes through the same interface objects as a local call.
pub async fn run_locally(conn: &zbus::Connection, call: &RemoteCall) -> RemoteReply {
    match run(conn, call).await {
        Ok(reply) => reply,
        Err(e) => RemoteReply::from_error(e),
    }
}

async fn run(conn: &zbus::Connection, call: &RemoteCall) -> Result<RemoteReply, Error> {
    runnable(&call.interface, &call.member)?;
    let args = decode_body(&call.signature, &call.body).map_err(Error::InvalidArgument)?;
    let path = zbus::zvariant::ObjectPath::try_from(call.path.as_str())
        .map_err(|e| Error::InvalidArgument(format!("path `{}`: {e}", call.path)))?;
    let (iface, member) = (call.interface.as_str(), call.member.as_str());
    let reply = match args {
        None => {
            conn.call_method(Some(BUS_NAME), path, Some(iface), member, &())
                .await
        }
        Some(s) => {
            conn.call_method(Some(BUS_NAME), path, Some(iface), member, &s)
                .await
        }
    };
    match reply {
        Ok(msg) => {
            let (signature, body) = body_of(&msg)?;
            Ok(RemoteReply::Return { signature, body })
        }
        Err(zbus::Error::MethodError(name, message, _)) => Ok(RemoteReply::Error {
            name: name.to_string(),
            message: message.unwrap_or_default(),
        }),
        Err(zbus::Error::FDO(e)) => {
            use zbus::DBusError;
            Ok(RemoteReply::Error {
                name: e.name().to_string(),
                message: e.description().unwrap_or_default().to_owned(),
            })
        }
        Err(e) => Err(Error::Failed(format!("{iface}.{member}: {e}"))),
    }
}

/// A client connection whose method calls go to `node` through `send` (the local agent's
/// `Mesh1.Remote`): `maculactl --node` runs every command's proxies on it unchanged. The
/// forwarding task ends when the returned connection is dropped.
pub async fn forwarder<F, Fut>(send: F) -> zbus::Result<zbus::Connection>
where
    F: Fn(Vec<u8>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Vec<u8>, zbus::Error>> + Send,
{
    use futures_lite::StreamExt;
    let (ours, theirs) = tokio::net::UnixStream::pair()?;
    let guid = zbus::Guid::generate();
    let server = zbus::connection::Builder::unix_stream(ours)
        .server(guid)?
        .p2p()
        .build();
    let client = zbus::connection::Builder::unix_stream(theirs).p2p().build();
    let (server, client) = futures_lite::future::try_zip(server, client).await?;
    let mut calls = zbus::MessageStream::from(&server);
    tokio::spawn(async move {
        while let Some(Ok(msg)) = calls.next().await {
            if msg.header().message_type() != MessageType::MethodCall {
                continue;
            }
            let reply = match RemoteCall::from_message(&msg) {
                Ok(call) => match send(call.encode()).await {
                    Ok(bytes) => {
                        RemoteReply::decode(&bytes).unwrap_or_else(RemoteReply::from_error)
                    }
                    Err(zbus::Error::MethodError(name, message, _)) => RemoteReply::Error {
                        name: name.to_string(),
                        message: message.unwrap_or_default(),
                    },
                    Err(e) => RemoteReply::from_error(Error::Failed(e.to_string())),
                },
                Err(e) => RemoteReply::from_error(e),
            };
            let Ok(answer) = reply.to_message(&msg) else {
                break;
            };
            if server.send(&answer).await.is_err() {
                break;
            }
        }
    });
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runnable_list_refuses_with_a_reason() {
        runnable("io.macula.Node1", "Status").unwrap();
        runnable("io.macula.Firewall1", "Apply").unwrap();
        runnable("org.freedesktop.DBus.Properties", "GetAll").unwrap();
        for (i, m, why) in [
            ("io.macula.Update1", "Install", "update publish"),
            ("io.macula.Storage1", "PutFd", "file descriptors"),
            ("io.macula.Mesh1", "Remote", "not chained"),
            ("org.freedesktop.DBus.Properties", "Set", "not set remotely"),
            ("io.macula.Node1", "Nope", "not on the list"),
        ] {
            let Err(Error::PermissionDenied(msg)) = runnable(i, m) else {
                panic!("{i}.{m} runnable");
            };
            assert!(msg.contains(why) && msg.contains(m), "{msg}");
        }
    }

    /// Every method the bus policy opens to everyone is remotely runnable: a read-only method
    /// added to the policy without being added here fails this test.
    #[test]
    fn every_read_only_method_of_the_policy_is_remotely_runnable() {
        let policy = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../overlay/etc/dbus-1/system.d/io.macula.Agent.conf"
        ))
        .unwrap();
        let attr = |line: &str, name: &str| {
            let start = line.find(&format!("{name}=\""))? + name.len() + 2;
            Some(line[start..start + line[start..].find('"')?].to_owned())
        };
        let mut checked = 0;
        for line in policy
            .lines()
            .filter(|l| l.contains("<allow send_destination"))
        {
            if let (Some(i), Some(m)) = (attr(line, "send_interface"), attr(line, "send_member")) {
                runnable(&i, &m).unwrap_or_else(|e| panic!("{i}.{m}: {e:?}"));
                checked += 1;
            }
        }
        assert!(
            checked >= 15,
            "only {checked} read-only methods found in the policy"
        );
    }

    #[test]
    fn arguments_survive_the_trip_and_mismatches_are_refused() {
        let msg = Message::method_call("/io/macula/Agent", "Admit")
            .unwrap()
            .interface("io.macula.Mesh1")
            .unwrap()
            .build(&("abc", "n", "edge", 7u32, true))
            .unwrap();
        let call = RemoteCall::from_message(&msg).unwrap();
        assert_eq!(call.signature, "sssub");
        let back: RemoteRequest = RemoteRequest::decode(
            &RemoteRequest {
                cert: "c".into(),
                call: call.clone(),
            }
            .encode(),
        )
        .unwrap();
        assert_eq!(back.call, call);
        let s = decode_body(&call.signature, &call.body).unwrap().unwrap();
        assert_eq!(s.0.fields().len(), 5);
        assert!(decode_body("sssbb", &call.body).is_err());
        assert!(decode_body("", &call.body).is_err());
        let mut longer = call.body.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(decode_body(&call.signature, &longer).is_err());
        // The reply message carries the returned values or the error name.
        let reply = RemoteReply::Return {
            signature: "s".into(),
            body: zbus::zvariant::to_bytes(Context::new_dbus(Endian::Little, 0), &("cert",))
                .unwrap()
                .to_vec(),
        };
        let answer = reply.to_message(&msg).unwrap();
        assert_eq!(answer.body().deserialize::<String>().unwrap(), "cert");
        let refused = RemoteReply::Error {
            name: "io.macula.Error.PermissionDenied".into(),
            message: "no".into(),
        }
        .to_message(&msg)
        .unwrap();
        assert_eq!(
            refused.header().error_name().unwrap().as_str(),
            "io.macula.Error.PermissionDenied"
        );
    }
}
