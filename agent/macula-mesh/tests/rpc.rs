//! RPC between two real mesh nodes on loopback: results, error taxonomy, deadlines, cancellation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use macula_core::NodeKey;
use macula_mesh::membership::{Capacity, FailureDomains, MembershipConfig};
use macula_mesh::node::{Bootstrap, MeshNode, NodeConfig, PeerState};
use macula_mesh::realm::{Admission, CertBody, RealmKey, Role};
use macula_mesh::rpc::{ErrorCode, Handler, RpcError};
use macula_mesh::transport::{TransportParams, unix_now};

fn start(realm: &RealmKey, seed: u8, bootstrap: Vec<Bootstrap>) -> MeshNode {
    let key = NodeKey::from_seed([seed; 32]);
    let cert = realm.issue(CertBody {
        realm: realm.id(),
        node: key.node_id(),
        role: Role::Edge,
        name: format!("n{seed}"),
        not_before: unix_now() - 60,
        expires: unix_now() + 3600,
    });
    let adm = Arc::new(Admission::new(key.node_id(), cert, unix_now()).unwrap());
    MeshNode::start(
        &key,
        adm,
        NodeConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            advertise: vec![],
            bootstrap,
            transport: TransportParams::default(),
            membership: MembershipConfig::lan(2),
            overlay_key: None,
            capacity: Capacity::default(),
            domains: FailureDomains::default(),
        },
    )
    .unwrap()
}

/// Counts handler futures that were dropped before finishing (cancelled).
struct DropCounter(Arc<AtomicUsize>, bool);
impl Drop for DropCounter {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_errors_deadlines_and_cancellation() {
    let realm = RealmKey::from_seed([5; 32]);
    let server = start(&realm, 1, vec![]);
    let client = start(
        &realm,
        2,
        vec![Bootstrap {
            node: Some(server.id()),
            addr: server.local_addr(),
        }],
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while !client
        .peers()
        .iter()
        .any(|p| p.id == server.id() && p.state == PeerState::Alive)
    {
        assert!(Instant::now() < deadline, "client joined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let echo: Handler = Arc::new(|caller, body| {
        Box::pin(async move {
            let mut out = caller.as_bytes().to_vec();
            out.extend_from_slice(&body);
            Ok(out)
        })
    });
    server.serve("test.echo", echo);
    let busy: Handler =
        Arc::new(|_, _| Box::pin(async { Err(RpcError::new(ErrorCode::Overloaded, "try later")) }));
    server.serve("test.busy", busy);
    let cancelled = Arc::new(AtomicUsize::new(0));
    let c2 = cancelled.clone();
    let slow: Handler = Arc::new(move |_, _| {
        let guard = DropCounter(c2.clone(), false);
        Box::pin(async move {
            let mut guard = guard;
            tokio::time::sleep(Duration::from_secs(10)).await;
            guard.1 = true;
            Ok(vec![])
        })
    });
    server.serve("test.slow", slow);

    // The callee sees the authenticated caller.
    let out = client
        .call(
            server.id(),
            "test.echo",
            b"hi".to_vec(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(&out[..32], client.id().as_bytes());
    assert_eq!(&out[32..], b"hi");

    let e = client
        .call(server.id(), "test.nope", vec![], Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NoSuchProcedure);
    assert!(!e.code.retryable());

    let e = client
        .call(server.id(), "test.busy", vec![], Duration::from_secs(5))
        .await
        .unwrap_err();
    assert_eq!(e, RpcError::new(ErrorCode::Overloaded, "try later"));
    assert!(e.code.retryable());

    // Deadline: the caller gets DeadlineExceeded on time, the callee drops the handler.
    let t = Instant::now();
    let e = client
        .call(server.id(), "test.slow", vec![], Duration::from_millis(300))
        .await
        .unwrap_err();
    let took = t.elapsed();
    assert_eq!(e.code, ErrorCode::DeadlineExceeded);
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    let wait = Instant::now() + Duration::from_secs(3);
    while cancelled.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < wait, "callee did not cancel the handler");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Cancellation by dropping the call future (long deadline).
    let call = client.call(server.id(), "test.slow", vec![], Duration::from_secs(60));
    assert!(
        tokio::time::timeout(Duration::from_millis(200), call)
            .await
            .is_err()
    );
    let wait = Instant::now() + Duration::from_secs(3);
    while cancelled.load(Ordering::SeqCst) < 2 {
        assert!(
            Instant::now() < wait,
            "dropping the call did not cancel the handler"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // After the cancellations the connection keeps serving calls.
    let out = client
        .call(server.id(), "test.echo", vec![7], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(out[32..], [7]);

    // Unknown peer: unavailable, worth trying elsewhere.
    let stranger = NodeKey::from_seed([99; 32]).node_id();
    let e = client
        .call(stranger, "test.echo", vec![], Duration::from_secs(2))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.code.try_elsewhere());
    client.shutdown().await;
    server.shutdown().await;
}
