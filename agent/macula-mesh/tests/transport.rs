//! Loopback tests of the QUIC transport: raw-key TLS identity, realm admission at the handshake,
//! malformed input. Real quinn endpoints on 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use macula_core::NodeKey;
use macula_mesh::proto::{Control, Hello, close};
use macula_mesh::realm::{Admission, CertBody, RealmKey, Role};
use macula_mesh::tls;
use macula_mesh::transport::{Endpoint, Peer, TransportError, TransportParams, unix_now};
use quinn::VarInt;
use tokio::sync::mpsc;

fn cert_body(realm: &RealmKey, key: &NodeKey, name: &str) -> CertBody {
    CertBody {
        realm: realm.id(),
        node: key.node_id(),
        role: Role::Edge,
        name: name.into(),
        not_before: unix_now() - 60,
        expires: unix_now() + 3600,
    }
}

fn admission(realm: &RealmKey, key: &NodeKey) -> Arc<Admission> {
    let cert = realm.issue(cert_body(realm, key, "n"));
    Arc::new(Admission::new(key.node_id(), cert, unix_now()).unwrap())
}

fn params() -> TransportParams {
    TransportParams {
        handshake_timeout: Duration::from_millis(1500),
        ..TransportParams::default()
    }
}

fn endpoint(key: &NodeKey, adm: Arc<Admission>) -> Endpoint {
    Endpoint::bind(key, adm, "127.0.0.1:0".parse().unwrap(), vec![], params()).unwrap()
}

/// Runs the accept loop of `ep`, reporting every handshake result.
fn serve(ep: Arc<Endpoint>) -> mpsc::UnboundedReceiver<Result<Peer, TransportError>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(inc) = ep.accept().await {
            let ep = ep.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let _ = tx.send(ep.handshake(inc).await);
            });
        }
    });
    rx
}

async fn next(
    rx: &mut mpsc::UnboundedReceiver<Result<Peer, TransportError>>,
) -> Result<Peer, TransportError> {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("server reported in time")
        .expect("server loop alive")
}

#[tokio::test]
async fn same_realm_peers_authenticate_each_other() {
    let realm = RealmKey::from_seed([1; 32]);
    let (ka, kb) = (NodeKey::from_seed([10; 32]), NodeKey::from_seed([11; 32]));
    let a = endpoint(&ka, admission(&realm, &ka));
    let b = Arc::new(endpoint(&kb, admission(&realm, &kb)));
    let mut inbound = serve(b.clone());
    let baddr = b.local_addr().unwrap();

    let out = a.dial(baddr, Some(kb.node_id())).await.unwrap();
    assert_eq!(out.id, kb.node_id());
    assert!(out.dialled);
    assert_eq!(out.listen, vec![baddr]);
    assert_eq!(
        out.conn
            .handshake_data()
            .unwrap()
            .downcast::<quinn::crypto::rustls::HandshakeData>()
            .unwrap()
            .protocol
            .unwrap(),
        tls::ALPN
    );
    let inc = next(&mut inbound).await.unwrap();
    assert_eq!(inc.id, ka.node_id());
    assert_eq!(inc.cert.body.node, ka.node_id());
    assert!(!inc.dialled);

    // Dial by address only (bootstrap): the key is learnt, admission still applies.
    let any = a.dial(baddr, None).await.unwrap();
    assert_eq!(any.id, kb.node_id());
    next(&mut inbound).await.unwrap();

    // Streams work both ways on the admitted connection.
    let (mut s, mut r) = out.conn.open_bi().await.unwrap();
    s.write_all(b"ping").await.unwrap();
    s.finish().unwrap();
    let (mut s2, mut r2) = inc.conn.accept_bi().await.unwrap();
    assert_eq!(r2.read_to_end(100).await.unwrap(), b"ping");
    s2.write_all(b"pong").await.unwrap();
    s2.finish().unwrap();
    assert_eq!(r.read_to_end(100).await.unwrap(), b"pong");
}

#[tokio::test]
async fn dialer_refuses_a_different_key_than_dialled() {
    let realm = RealmKey::from_seed([1; 32]);
    let (ka, kb) = (NodeKey::from_seed([10; 32]), NodeKey::from_seed([11; 32]));
    let impostor_id = NodeKey::from_seed([12; 32]).node_id();
    let a = endpoint(&ka, admission(&realm, &ka));
    let b = Arc::new(endpoint(&kb, admission(&realm, &kb)));
    let mut inbound = serve(b.clone());
    let err = a
        .dial(b.local_addr().unwrap(), Some(impostor_id))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Connection(quinn::ConnectionError::TransportError(_))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(next(&mut inbound).await.is_err());
}

#[tokio::test]
async fn wrong_realm_is_refused_at_handshake() {
    let realm = RealmKey::from_seed([1; 32]);
    let other = RealmKey::from_seed([2; 32]);
    let (ka, kc) = (NodeKey::from_seed([10; 32]), NodeKey::from_seed([13; 32]));
    let a = Arc::new(endpoint(&ka, admission(&realm, &ka)));
    let mut inbound = serve(a.clone());
    let c = endpoint(&kc, admission(&other, &kc));
    let err = c.dial(a.local_addr().unwrap(), None).await.unwrap_err();
    match &err {
        TransportError::Refused { peer, reason } => {
            assert_eq!(*peer, ka.node_id());
            assert!(reason.contains("realm"), "{reason}");
        }
        e => panic!("expected a refusal, got {e}"),
    }
    let server_side = next(&mut inbound).await.unwrap_err();
    assert!(
        matches!(server_side, TransportError::NotAdmitted { peer, .. } if peer == kc.node_id()),
        "{server_side}"
    );
}

#[tokio::test]
async fn revoked_node_is_refused_by_tls_and_revocation_spreads_in_hello() {
    let realm = RealmKey::from_seed([1; 32]);
    let (ka, kb, kc) = (
        NodeKey::from_seed([10; 32]),
        NodeKey::from_seed([11; 32]),
        NodeKey::from_seed([13; 32]),
    );
    let adm_a = admission(&realm, &ka);
    adm_a
        .revoke(realm.revoke(kc.node_id(), unix_now()))
        .unwrap();
    let a = Arc::new(endpoint(&ka, adm_a));
    let mut inbound_a = serve(a.clone());
    let adm_b = admission(&realm, &kb);
    let b = Arc::new(endpoint(&kb, adm_b.clone()));
    let mut inbound_b = serve(b.clone());
    let c = endpoint(&kc, admission(&realm, &kc));

    // C is revoked at A: the TLS verifier refuses its key.
    assert!(c.dial(a.local_addr().unwrap(), None).await.is_err());
    assert!(next(&mut inbound_a).await.is_err());

    // B learns the revocation from A's Hello, and then refuses C too.
    let peer = b
        .dial(a.local_addr().unwrap(), Some(ka.node_id()))
        .await
        .unwrap();
    assert_eq!(peer.new_revocations.len(), 1);
    next(&mut inbound_a).await.unwrap();
    assert!(adm_b.is_revoked(&kc.node_id()));
    assert!(c.dial(b.local_addr().unwrap(), None).await.is_err());
    assert!(next(&mut inbound_b).await.is_err());
}

/// A raw QUIC client with a valid node key but hand-made Hello bytes.
async fn raw_client(key: &NodeKey, server: SocketAddr) -> quinn::Connection {
    let tls = tls::client_config(key, Arc::default(), false).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep.connect(server, tls::ANY_PEER).unwrap().await.unwrap()
}

async fn closed_with(conn: &quinn::Connection) -> u64 {
    match tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap()
    {
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        e => panic!("expected an application close, got {e}"),
    }
}

#[tokio::test]
async fn stolen_or_missing_cert_and_malformed_frames_close_the_connection() {
    let realm = RealmKey::from_seed([1; 32]);
    let (ka, kb, kx) = (
        NodeKey::from_seed([10; 32]),
        NodeKey::from_seed([11; 32]),
        NodeKey::from_seed([14; 32]),
    );
    let a = Arc::new(endpoint(&ka, admission(&realm, &ka)));
    let addr = a.local_addr().unwrap();
    let mut inbound = serve(a.clone());

    // X presents B's (valid) certificate: bound to another key, refused.
    let conn = raw_client(&kx, addr).await;
    let (mut s, _r) = conn.open_bi().await.unwrap();
    let hello = Control::Hello(Hello {
        realm: realm.id(),
        cert: realm.issue(cert_body(&realm, &kb, "b")),
        listen: vec![],
        revocations: vec![],
    });
    s.write_all(&macula_mesh::frame::encode(&hello, 1 << 16).unwrap())
        .await
        .unwrap();
    assert_eq!(closed_with(&conn).await, u64::from(close::NOT_ADMITTED));
    assert!(matches!(
        next(&mut inbound).await,
        Err(TransportError::NotAdmitted { .. })
    ));

    // Garbage instead of a Hello.
    let conn = raw_client(&kx, addr).await;
    let (mut s, _r) = conn.open_bi().await.unwrap();
    s.write_all(&[0, 0, 0, 5, 9, 9, 9, 9, 9]).await.unwrap();
    assert_eq!(closed_with(&conn).await, u64::from(close::PROTOCOL));
    assert!(matches!(
        next(&mut inbound).await,
        Err(TransportError::Protocol { .. })
    ));

    // An oversized length prefix is refused before allocating.
    let conn = raw_client(&kx, addr).await;
    let (mut s, _r) = conn.open_bi().await.unwrap();
    s.write_all(&[0x7f, 0xff, 0xff, 0xff]).await.unwrap();
    assert_eq!(closed_with(&conn).await, u64::from(close::PROTOCOL));
    next(&mut inbound).await.unwrap_err();

    // No Hello at all (no certificate): closed when the handshake budget runs out.
    let conn = raw_client(&kx, addr).await;
    assert_eq!(closed_with(&conn).await, u64::from(close::HELLO_TIMEOUT));
    assert!(matches!(
        next(&mut inbound).await,
        Err(TransportError::Timeout(_))
    ));

    // The endpoint survived all of it.
    let b = endpoint(&kb, admission(&realm, &kb));
    b.dial(addr, Some(ka.node_id())).await.unwrap();
    next(&mut inbound).await.unwrap();
    conn.close(VarInt::from_u32(0), b"");
}

#[tokio::test]
async fn wrong_alpn_is_refused() {
    let realm = RealmKey::from_seed([1; 32]);
    let (ka, kx) = (NodeKey::from_seed([10; 32]), NodeKey::from_seed([14; 32]));
    let a = Arc::new(endpoint(&ka, admission(&realm, &ka)));
    let mut inbound = serve(a.clone());
    let mut tls = tls::client_config(&kx, Arc::default(), false).unwrap();
    tls.alpn_protocols = vec![b"macula/0".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let res = ep
        .connect(a.local_addr().unwrap(), tls::ANY_PEER)
        .unwrap()
        .await;
    assert!(res.is_err());
    assert!(next(&mut inbound).await.is_err());
}

#[tokio::test]
async fn a_refused_dialer_learns_nothing_about_the_acceptor() {
    let realm = RealmKey::from_seed([1; 32]);
    let other = RealmKey::from_seed([2; 32]);
    let (ka, kb, kx) = (
        NodeKey::from_seed([10; 32]),
        NodeKey::from_seed([11; 32]),
        NodeKey::from_seed([14; 32]),
    );
    let a = Arc::new(endpoint(&ka, admission(&realm, &ka)));
    let addr = a.local_addr().unwrap();
    let mut inbound = serve(a.clone());
    for i in 0..6 {
        // Another realm's certificate, or a stolen one of ours (its check takes a signature
        // verification): refused, and never sent the acceptor's Hello (its certificate,
        // addresses and revocations).
        let (hello_realm, cert) = if i % 2 == 0 {
            (other.id(), other.issue(cert_body(&other, &kx, "x")))
        } else {
            (realm.id(), realm.issue(cert_body(&realm, &kb, "b")))
        };
        let conn = raw_client(&kx, addr).await;
        let (mut s, mut r) = conn.open_bi().await.unwrap();
        let hello = Control::Hello(Hello {
            realm: hello_realm,
            cert,
            listen: vec![],
            revocations: vec![],
        });
        s.write_all(&macula_mesh::frame::encode(&hello, 1 << 16).unwrap())
            .await
            .unwrap();
        let mut got = 0;
        while let Ok(Some(c)) = r.read_chunk(1 << 16, true).await {
            got += c.bytes.len();
        }
        assert_eq!(got, 0, "a refused dialer received {got} bytes of Hello");
        assert_eq!(closed_with(&conn).await, u64::from(close::NOT_ADMITTED));
        next(&mut inbound).await.unwrap_err();
    }
}
