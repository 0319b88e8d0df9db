//! Frames on RPC and pub/sub streams, and DHT request bodies, fed to the state machines that
//! consume them: RPC request/reply, pub/sub messages (into a PubSub), DHT requests (into a Dht).
#![no_main]

use libfuzzer_sys::fuzz_target;
use macula_core::{NodeKey, wire};
use macula_mesh::dht::{Dht, DhtConfig, Request, Response};
use macula_mesh::frame;
use macula_mesh::pubsub::{PubSub, PubSubMsg};
use macula_mesh::rpc::{RpcReply, RpcRequest};

fuzz_target!(|data: &[u8]| {
    let me = NodeKey::from_seed([1; 32]).node_id();
    let peer = NodeKey::from_seed([2; 32]).node_id();
    let _ = frame::decode::<RpcRequest>(data, 1 << 22).map(|r| r.map(|(req, _)| macula_mesh::rpc::admit(&req)));
    let _ = frame::decode::<RpcReply>(data, 1 << 22);
    let mut ps = PubSub::new(me);
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
