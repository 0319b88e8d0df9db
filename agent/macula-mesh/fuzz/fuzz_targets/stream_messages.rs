//! Frames on RPC and pub/sub streams, and DHT request bodies, fed to the state machines that
//! consume them: RPC request/reply, a stream reply split into frames as a stream caller reads it
//! (first frame at the plain limit, the rest at the stream limit, each through `stream_item`),
//! pub/sub messages (into a PubSub), DHT requests (into a Dht).
#![no_main]

use libfuzzer_sys::fuzz_target;
use macula_core::{NodeKey, wire};
use macula_mesh::dht::{Dht, DhtConfig, Request, Response};
use macula_mesh::frame;
use macula_mesh::pubsub::{PubSub, PubSubMsg};
use macula_mesh::rpc::{
    MAX_CHUNK, MAX_RPC_FRAME, MAX_STREAM_FRAME, RpcReply, RpcRequest, StreamItem, plain_reply,
    stream_item,
};

fuzz_target!(|data: &[u8]| {
    let me = NodeKey::from_seed([1; 32]).node_id();
    let peer = NodeKey::from_seed([2; 32]).node_id();
    let _ = frame::decode::<RpcRequest>(data, 1 << 22).map(|r| r.map(|(req, _)| macula_mesh::rpc::admit(&req)));
    if let Ok(Some((reply, _))) = frame::decode::<RpcReply>(data, MAX_RPC_FRAME) {
        let _ = plain_reply(reply);
    }
    let mut rest = data;
    let mut limit = MAX_RPC_FRAME;
    while let Ok(Some((reply, used))) = frame::decode::<RpcReply>(rest, limit) {
        match stream_item(reply) {
            Ok(StreamItem::Chunk(c)) => assert!(c.len() <= MAX_CHUNK),
            Ok(StreamItem::End) | Err(_) => break,
        }
        rest = &rest[used..];
        limit = MAX_STREAM_FRAME;
    }
    let mut ps = PubSub::new(NodeKey::from_seed([1; 32]));
    ps.peer_up(peer);
    let mut rest = data;
    while let Ok(Some((msg, used))) = frame::decode::<PubSubMsg>(rest, 1 << 17) {
        ps.handle(peer, msg);
        rest = &rest[used..];
    }
    let _ = ps.drain().count();
    let mut dht = Dht::new(me, DhtConfig::default());
    if let Ok(req) = wire::decode::<Request>(data) {
        let _ = dht.handle_request(peer, req, 1_800_000_000);
    }
    let _ = wire::decode::<Response>(data);
});
