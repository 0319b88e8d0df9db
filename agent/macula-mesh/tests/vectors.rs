//! Test vectors published in `docs/protocol.md`. If one of these changes, the wire format
//! changed: bump the ALPN / version byte and update the document.

use macula_core::{NodeKey, wire};
use macula_mesh::beacon::BeaconState;
use macula_mesh::dht::{Record, RecordBody, RecordKind};
use macula_mesh::frame;
use macula_mesh::membership::{
    Capacity, FailureDomains, Label, MemberMeta, Packet, SignedMeta, UplinkAddr,
};
use macula_mesh::proto::{Control, Datagram, Hello};
use macula_mesh::pubsub::{PubSubMsg, Publication};
use macula_mesh::realm::{Admission, CertBody, MembershipCert, RealmKey, Role};
use macula_mesh::rpc::{ErrorCode, RpcReply, RpcRequest};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn realm() -> RealmKey {
    RealmKey::from_seed([1; 32])
}

fn cert() -> MembershipCert {
    let r = realm();
    r.issue(CertBody {
        realm: r.id(),
        node: NodeKey::from_seed([2; 32]).node_id(),
        role: Role::Edge,
        name: "edge-1".into(),
        not_before: 1_700_000_000,
        expires: 1_800_000_000,
    })
}

pub const REALM_ID: &str = "rkeohxlubhyzl7ks3mwtzos5olfgocn7dwkbeg7toseadnapn5oa";
pub const NODE_ID: &str = "qe4xodvipulv6vvdkrtmgtd6ztfy3curwtxdpis56yhvxd6jwoka";
pub const CERT: &str = "018a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940006656467652d3180e2cfaa0680a4a7da06009f1ba3322efb306c848a62aece4a90e35d27e69c79cbf72ae162cc4159a9fb107b7a425e79a9964a3f795e418a3295c3e801fa4fcb5e383041b968875e71710c";
pub const HELLO_FRAME: &str = "000000be01008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940006656467652d3180e2cfaa0680a4a7da06009f1ba3322efb306c848a62aece4a90e35d27e69c79cbf72ae162cc4159a9fb107b7a425e79a9964a3f795e418a3295c3e801fa4fcb5e383041b968875e71710c0100c0000201d12200";
pub const PURGE_ORDER: &str = "018a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b39480c3bbc206c1a86606867f730de7c45bdcd08ac8d0dca58b6d904e853133a11488fe16afdb0a3e91d7852d26ae2baa3b680eb54deb8ceca759e1971d4e2bbe745010d23604";
pub const REVOCATION: &str = "018a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b39480c3bbc206ab385acbaa94c2854a845e3d1ddc1fd2a201f564ae3c76e97e53105d0d146979ff795dc6d41810e40fd3dd360e76188975b786b25298f46cecd36c6fd2a2880b";
pub const SWIM_DATAGRAM: &str = "010002aabb";
pub const RPC_REQUEST: &str = "0000000f01086d6573682e6468748827020102";
pub const RPC_REPLY_ERR: &str = "000000080101050462757379";
pub const RPC_REPLY_CHUNK: &str = "00000006010203010203";
pub const RPC_REPLY_END: &str = "000000020103";
pub const PUBSUB_PUBLISH: &str = "00000068010301748139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940101fff13e763cd6fe548788dcb51f56212cb4bad96d7c1010f299ba0641c2831d5adcd658bdc8c641499f192fddb9582cb99467c1ef5543ebcc40e4b916e70d4f5e0500";
pub const DHT_RECORD: &str = "010142424242424242424242424242424242424242424242424242424242424242428139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940180a4a7da0600284f408920db0fc11353f6f8578fe37104f619c32ab80a3234923c2513089a57792135721a7b7376700bdf6ba8e0a83f52fdd7969c5c03d08c627c30aa211c0a";
pub const BEACON: &str = "01028a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b39400c0000201d1221111111111111111111111111111111180b883a1f7328a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940006656467652d3180e2cfaa0680a4a7da06009f1ba3322efb306c848a62aece4a90e35d27e69c79cbf72ae162cc4159a9fb107b7a425e79a9964a3f795e418a3295c3e801fa4fcb5e383041b968875e71710c636c709dc0a844bc9161bcb0166d1de0582e771f332736ecf77f566de36c9fad725e766c0b3bccd0938b36247eb1965702444a8f78f2d9490f5489b48feb9a04";
pub const WANT_META: &str = "01018139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394";
pub const SIGNED_META: &str = "018139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b39480b883a1f7320006656467652d3101046574683000c0000201d1220080808080048080808002056174746963057570732d3105302e312e30008a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b3940006656467652d3180e2cfaa0680a4a7da06009f1ba3322efb306c848a62aece4a90e35d27e69c79cbf72ae162cc4159a9fb107b7a425e79a9964a3f795e418a3295c3e801fa4fcb5e383041b968875e71710c7a09482543fde5491e279d6c8836a0a001f72e80cf49dc0ca64fed7d2f512194637c1ca63e4cb79fae01924c8fdb8a759709af21fcfce121930ca2275c735a0b";

/// Metadata of the node (seed 2) as protocol.md §7 lists it.
fn meta() -> MemberMeta {
    MemberMeta {
        node: NodeKey::from_seed([2; 32]).node_id(),
        version: 1_750_000_000_000,
        role: Role::Edge,
        name: "edge-1".into(),
        addrs: vec![UplinkAddr {
            uplink: "eth0".into(),
            addr: "192.0.2.1:4433".parse().unwrap(),
        }],
        overlay_key: None,
        capacity: Capacity {
            storage_total: 1 << 30,
            storage_free: 1 << 29,
        },
        domains: FailureDomains {
            site: Label::new("attic").unwrap(),
            power: Label::new("ups-1").unwrap(),
        },
        software: "0.1.0".into(),
        relays: vec![],
    }
}

#[test]
fn vectors() {
    let r = realm();
    let node = NodeKey::from_seed([2; 32]).node_id();
    let cert = cert();
    let hello = Control::Hello(Hello {
        realm: r.id(),
        cert: cert.clone(),
        listen: vec!["192.0.2.1:4433".parse().unwrap()],
        revocations: vec![],
    });
    let got = [
        ("REALM_ID", r.id().to_string()),
        ("NODE_ID", node.to_string()),
        ("CERT", hex(&wire::encode(&cert))),
        ("HELLO_FRAME", hex(&frame::encode(&hello, 1 << 16).unwrap())),
        (
            "REVOCATION",
            hex(&wire::encode(&r.revoke(node, 1_750_000_000))),
        ),
        (
            "SWIM_DATAGRAM",
            hex(&wire::encode(&Datagram::Swim(vec![0xaa, 0xbb]))),
        ),
        (
            "PURGE_ORDER",
            hex(&wire::encode(&r.purge(node, 1_750_000_000))),
        ),
        ("WANT_META", hex(&wire::encode(&Packet::WantMeta(node)))),
        (
            "SIGNED_META",
            hex(&wire::encode(&SignedMeta::sign(
                &NodeKey::from_seed([2; 32]),
                cert.clone(),
                meta(),
            ))),
        ),
        (
            "RPC_REQUEST",
            hex(&frame::encode(
                &RpcRequest {
                    procedure: "mesh.dht".into(),
                    deadline_ms: 5000,
                    body: vec![1, 2],
                },
                1 << 20,
            )
            .unwrap()),
        ),
        (
            "RPC_REPLY_ERR",
            hex(&frame::encode(
                &RpcReply::Err {
                    code: ErrorCode::Overloaded,
                    message: "busy".into(),
                },
                1 << 20,
            )
            .unwrap()),
        ),
        (
            "RPC_REPLY_CHUNK",
            hex(&frame::encode(&RpcReply::Chunk(vec![1, 2, 3]), 1 << 20).unwrap()),
        ),
        (
            "RPC_REPLY_END",
            hex(&frame::encode(&RpcReply::End, 1 << 20).unwrap()),
        ),
        (
            "PUBSUB_PUBLISH",
            hex(&frame::encode(
                &PubSubMsg::Publish {
                    msg: Publication::sign(&NodeKey::from_seed([2; 32]), "t".into(), 1, vec![0xff]),
                    hops: 0,
                },
                1 << 20,
            )
            .unwrap()),
        ),
        (
            "BEACON",
            hex(&BeaconState::new(
                NodeKey::from_seed([2; 32]),
                std::sync::Arc::new(
                    Admission::new(node, cert.clone(), 1_750_000_000)
                        .expect("the vector certificate"),
                ),
                4433,
            )
            .make("192.0.2.1".parse().unwrap(), 1_750_000_000_000, [0x11; 16])),
        ),
        (
            "DHT_RECORD",
            hex(&wire::encode(&Record::sign(
                &NodeKey::from_seed([2; 32]),
                RecordBody {
                    kind: RecordKind::Provider,
                    key: [0x42; 32],
                    author: node,
                    seq: 1,
                    expires: 1_800_000_000,
                    value: vec![],
                },
            ))),
        ),
    ];
    let expected = [
        REALM_ID,
        NODE_ID,
        CERT,
        HELLO_FRAME,
        REVOCATION,
        SWIM_DATAGRAM,
        PURGE_ORDER,
        WANT_META,
        SIGNED_META,
        RPC_REQUEST,
        RPC_REPLY_ERR,
        RPC_REPLY_CHUNK,
        RPC_REPLY_END,
        PUBSUB_PUBLISH,
        BEACON,
        DHT_RECORD,
    ];
    assert_eq!(got.len(), expected.len(), "one expected value per vector");
    let mut ok = true;
    for ((name, g), e) in got.iter().zip(expected) {
        if g != e {
            println!("{name} = {g}");
            ok = false;
        }
    }
    assert!(ok, "test vectors changed (see output)");
    // The signed message of a certificate: context, NUL, wire(Statement::Cert(body)) where the
    // statement tag of a certificate is 0.
    let mut body = wire::encode(&cert.body);
    body.insert(1, 0); // tag 0 after the version byte
    let mut msg = b"macula/v1/realm-cert\0".to_vec();
    msg.extend_from_slice(&body);
    r.id()
        .0
        .verifying_key()
        .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&cert.sig.0))
        .expect("certificate signature is over context ‖ 0 ‖ wire(Statement::Cert(body))");
    // Member metadata: the same context, statement tag 3, signed by the member itself.
    let signed = SignedMeta::sign(&NodeKey::from_seed([2; 32]), cert.clone(), meta());
    signed.verify(&r.id(), 1_750_000_000).unwrap();
    let mut body = wire::encode(&signed.meta);
    body.insert(1, 3);
    let mut msg = b"macula/v1/realm-cert\0".to_vec();
    msg.extend_from_slice(&body);
    NodeKey::from_seed([2; 32])
        .node_id()
        .verifying_key()
        .verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&signed.sig.0))
        .expect("metadata signature is over context ‖ 0 ‖ wire(Statement::Meta(meta))");
}

/// protocol.md §12: A (seed 1) sends packet `40010203` for B (seed 2) to the hub; the hub
/// delivers it to B marked as coming from A.
pub const RELAY_FORWARD: &str =
    "008139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b39440010203";
pub const RELAY_DELIVER: &str =
    "028a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c40010203";

#[test]
fn relay_vectors() {
    use macula_mesh::relay::{RelayFrame, TAG_DELIVER, TAG_FORWARD};
    let a = NodeKey::from_seed([1; 32]).node_id();
    let b = NodeKey::from_seed([2; 32]).node_id();
    let packet = [0x40, 1, 2, 3];
    let fwd = RelayFrame {
        tag: TAG_FORWARD,
        node: b,
        packet: &packet,
    };
    assert_eq!(hex(&fwd.encode()), RELAY_FORWARD);
    let del = RelayFrame {
        tag: TAG_DELIVER,
        node: a,
        packet: &packet,
    };
    assert_eq!(hex(&del.encode()), RELAY_DELIVER);
    assert_eq!(RelayFrame::parse(&fwd.encode()), Ok(fwd));
    assert_eq!(RelayFrame::parse(&del.encode()), Ok(del));
}
