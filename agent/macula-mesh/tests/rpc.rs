//! RPC between two real mesh nodes on loopback: results, error taxonomy, deadlines, cancellation
//! (and how each side counts them, `MeshNode::stats`);
//! stream replies (order, errors, cancellation, deadlines, size limits, malformed replies from a
//! raw QUIC peer); what a peer announcing large frames can make a node hold (an allocation
//! counter of this test process, and the node's buffer accounting).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use macula_core::NodeKey;
use macula_mesh::frame;
use macula_mesh::node::{Bootstrap, MeshNode, PeerState};
use macula_mesh::realm::Role;
use macula_mesh::rpc::{
    ErrorCode, Handler, MAX_CHUNK, MAX_RPC_FRAME, MAX_STREAM_FRAME, RpcError, RpcReply, RpcRequest,
    StreamHandler,
};
use macula_mesh::transport::{Endpoint, TransportParams};
use macula_testkit::realm::{Realm, contact};

fn start(realm: &Realm, seed: u8, bootstrap: Vec<Bootstrap>) -> MeshNode {
    realm.member(seed).bootstrap(bootstrap).start()
}

/// Bytes allocated and not yet freed by this test process (nextest runs each test alone).
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new, Ordering::Relaxed);
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

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
    let realm = Realm::from_seed(5);
    let server = start(&realm, 1, vec![]);
    let client = start(&realm, 2, vec![contact(&server)]);
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

    // Each side counted its calls by procedure, with errors by code and the time they took.
    let out = client.stats().rpc_out;
    let errors = |f: &macula_mesh::stats::RpcFigures| {
        f.errors
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(out["test.echo"].calls, 3);
    assert_eq!(errors(&out["test.echo"]), [("unavailable".into(), 1)]);
    assert_eq!(errors(&out["test.nope"]), [("no-such-procedure".into(), 1)]);
    assert_eq!(errors(&out["test.busy"]), [("overloaded".into(), 1)]);
    let slow = &out["test.slow"];
    assert_eq!(
        errors(slow),
        [("cancelled".into(), 1), ("deadline-exceeded".into(), 1)]
    );
    assert_eq!(slow.latency.count(), 2);
    assert!(slow.latency.sum() >= 0.5, "{}", slow.latency.sum());
    let served = server.stats().rpc_in;
    assert_eq!(served["test.echo"].calls, 2);
    assert!(served["test.echo"].errors.is_empty());
    assert_eq!(
        errors(&served[macula_mesh::stats::UNSERVED]),
        [("no-such-procedure".into(), 1)]
    );
    assert!(!served.contains_key("test.nope"));
    assert_eq!(errors(&served["test.busy"]), [("overloaded".into(), 1)]);
    // The callee's view of the two slow calls: both ended without an answer.
    assert_eq!(served["test.slow"].calls, 2);
    assert_eq!(served["test.slow"].errors.values().sum::<u64>(), 2);
    client.shutdown().await;
    server.shutdown().await;
}

/// Two joined nodes: (server, client).
async fn pair(realm_seed: u8) -> (MeshNode, MeshNode) {
    let realm = Realm::from_seed(realm_seed);
    let server = start(&realm, 1, vec![]);
    let client = start(&realm, 2, vec![contact(&server)]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !client
        .peers()
        .iter()
        .any(|p| p.id == server.id() && p.state == PeerState::Alive)
    {
        assert!(Instant::now() < deadline, "client joined");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, client)
}

/// Waits until `counter` reaches `n`.
async fn wait_count(counter: &AtomicUsize, n: usize, what: &str) {
    let wait = Instant::now() + Duration::from_secs(3);
    while counter.load(Ordering::SeqCst) < n {
        assert!(Instant::now() < wait, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Chunk `i` of the numbered stream: `i` as u32 LE, repeated to a length that varies with `i`
/// (up to the chunk limit).
fn numbered(i: u32) -> Vec<u8> {
    let len = match i % 4 {
        0 => MAX_CHUNK,
        1 => 4,
        2 => 4 * 1000,
        _ => 4 * (i as usize * 37 % 4096 + 1),
    };
    i.to_le_bytes().iter().copied().cycle().take(len).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_replies_order_errors_cancellation_and_deadlines() {
    let (server, client) = pair(6).await;
    let peer = server.id();
    let secs = Duration::from_secs;

    // A numbered stream of N chunks (the request body says how many).
    let numbers: StreamHandler = Arc::new(|_, body, mut tx| {
        Box::pin(async move {
            let n = u32::from_le_bytes(body.try_into().unwrap());
            for i in 0..n {
                tx.send(numbered(i)).await?;
            }
            Ok(())
        })
    });
    server.serve_stream("test.numbers", numbers);
    // Three chunks, then an error.
    let failing: StreamHandler = Arc::new(|_, _, mut tx| {
        Box::pin(async move {
            for i in 0..3u8 {
                tx.send(vec![i; 1000]).await?;
            }
            Err(RpcError::new(ErrorCode::NotFound, "the rest is gone"))
        })
    });
    server.serve_stream("test.failing", failing);
    // Chunks without end (counted), until cancelled.
    let cancelled = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let (c2, s2) = (cancelled.clone(), sent.clone());
    let endless: StreamHandler = Arc::new(move |_, _, mut tx| {
        let guard = DropCounter(c2.clone(), false);
        let sent = s2.clone();
        Box::pin(async move {
            let _guard = guard;
            loop {
                tx.send(vec![7; 1024]).await?;
                sent.fetch_add(1, Ordering::SeqCst);
            }
        })
    });
    server.serve_stream("test.endless", endless);
    // One chunk, then silence.
    let c3 = cancelled.clone();
    let stalls: StreamHandler = Arc::new(move |_, _, mut tx| {
        let guard = DropCounter(c3.clone(), false);
        Box::pin(async move {
            let mut guard = guard;
            tx.send(b"first".to_vec()).await?;
            tokio::time::sleep(Duration::from_secs(10)).await;
            guard.1 = true;
            Ok(())
        })
    });
    server.serve_stream("test.stalls", stalls);
    // A handler that tries one chunk over the limit.
    let oversized: StreamHandler = Arc::new(|_, _, mut tx| {
        Box::pin(async move {
            tx.send(vec![1; 16]).await?;
            tx.send(vec![0; MAX_CHUNK + 1]).await?;
            Ok(())
        })
    });
    server.serve_stream("test.oversized", oversized);
    let echo: Handler = Arc::new(|_, body| Box::pin(async move { Ok(body) }));
    server.serve("test.echo", echo);

    // Many chunks arrive complete and in order, then the end (which stays the end).
    let n = 300u32;
    let mut s = client
        .call_stream(peer, "test.numbers", n.to_le_bytes().to_vec(), secs(30))
        .await
        .unwrap();
    let mut i = 0;
    while let Some(chunk) = s.next().await.unwrap() {
        assert_eq!(chunk, numbered(i), "chunk {i}");
        i += 1;
    }
    assert_eq!(i, n);
    assert_eq!(s.next().await, Ok(None));
    // An empty stream is just the end.
    let mut s = client
        .call_stream(peer, "test.numbers", 0u32.to_le_bytes().to_vec(), secs(5))
        .await
        .unwrap();
    assert_eq!(s.next().await, Ok(None));

    // An error after some chunks reaches the caller as the callee sent it, after those chunks.
    let mut s = client
        .call_stream(peer, "test.failing", vec![], secs(5))
        .await
        .unwrap();
    for i in 0..3u8 {
        assert_eq!(s.next().await, Ok(Some(vec![i; 1000])));
    }
    let e = RpcError::new(ErrorCode::NotFound, "the rest is gone");
    assert_eq!(s.next().await, Err(e.clone()));
    assert_eq!(s.next().await, Err(e));

    // Dropping the reply stream cancels the handler, which had been held back by the queue and
    // the stream's flow control (it did not run ahead without bound).
    let mut s = client
        .call_stream(peer, "test.endless", vec![], secs(60))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(s.next().await, Ok(Some(vec![7; 1024])));
    }
    drop(s);
    wait_count(
        &cancelled,
        1,
        "dropping the reply stream did not cancel the handler",
    )
    .await;
    let at_cancel = sent.load(Ordering::SeqCst);
    assert!(
        at_cancel < 10_000,
        "{at_cancel} chunks were sent before the cancel"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sent.load(Ordering::SeqCst),
        at_cancel,
        "the handler kept sending"
    );

    // The deadline bounds the whole stream: a chunk arrives, then DeadlineExceeded on time, and
    // the callee drops the handler.
    let t = Instant::now();
    let mut s = client
        .call_stream(peer, "test.stalls", vec![], Duration::from_millis(400))
        .await
        .unwrap();
    assert_eq!(s.next().await, Ok(Some(b"first".to_vec())));
    let e = s.next().await.unwrap_err();
    let took = t.elapsed();
    // (Whichever side's timer fires first: the callee's error or the caller's own.)
    assert_eq!(e.code, ErrorCode::DeadlineExceeded, "{e}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(2),
        "{took:?}"
    );
    wait_count(
        &cancelled,
        2,
        "the callee did not cancel the handler at the deadline",
    )
    .await;

    // A chunk over the limit is refused at the sender and the call ends with that error.
    let mut s = client
        .call_stream(peer, "test.oversized", vec![], secs(5))
        .await
        .unwrap();
    assert_eq!(s.next().await, Ok(Some(vec![1; 16])));
    let e = s.next().await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal, "{e}");
    assert!(e.message.contains("limit"), "{e}");

    // The wrong kind of call says which one to use; an unknown procedure is reported as such.
    let e = client
        .call(peer, "test.numbers", 2u32.to_le_bytes().to_vec(), secs(5))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.message.contains("test.numbers") && e.message.contains("call_stream"),
        "{e}"
    );
    let mut s = client
        .call_stream(peer, "test.echo", vec![1], secs(5))
        .await
        .unwrap();
    let e = s.next().await.unwrap_err();
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(
        e.message.contains("test.echo") && e.message.contains("MeshNode::call"),
        "{e}"
    );
    let mut s = client
        .call_stream(peer, "test.nope", vec![], secs(5))
        .await
        .unwrap();
    assert_eq!(s.next().await.unwrap_err().code, ErrorCode::NoSuchProcedure);

    // After all that the connection serves both kinds of call.
    assert_eq!(
        client.call(peer, "test.echo", vec![9], secs(5)).await,
        Ok(vec![9])
    );
    let mut s = client
        .call_stream(peer, "test.numbers", 2u32.to_le_bytes().to_vec(), secs(5))
        .await
        .unwrap();
    assert_eq!(s.next().await, Ok(Some(numbered(0))));
    assert_eq!(s.next().await, Ok(Some(numbered(1))));
    assert_eq!(s.next().await, Ok(None));
    client.shutdown().await;
    server.shutdown().await;
}

/// What the raw peer answers, chosen by the first byte of the request body.
async fn misbehave(mut send: quinn::SendStream, how: u8) {
    let frame_of = |r: &RpcReply| frame::encode(r, MAX_RPC_FRAME).unwrap();
    let mut out = Vec::new();
    match how {
        // A chunk, then a frame whose length prefix exceeds the stream frame limit.
        0 => {
            out.extend(frame_of(&RpcReply::Chunk(vec![1; 8])));
            out.extend(((MAX_STREAM_FRAME + 1) as u32).to_be_bytes());
            out.extend(vec![0; 64]);
        }
        // A first chunk over the chunk limit (within the plain frame limit).
        1 => out.extend(frame_of(&RpcReply::Chunk(vec![2; MAX_CHUNK + 1]))),
        // A frame that does not decode.
        2 => out.extend([0, 0, 0, 3, 1, 0xff, 0xff]),
        // A frame after the end.
        3 => {
            out.extend(frame_of(&RpcReply::End));
            out.extend(frame_of(&RpcReply::Chunk(vec![3])));
        }
        // The stream finished in the middle of the reply.
        _ => out.extend(frame_of(&RpcReply::Chunk(vec![4; 8]))),
    }
    if send.write_all(&out).await.is_ok() {
        let _ = send.finish();
        let _ = send.stopped().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_stream_replies_are_protocol_errors() {
    let realm = Realm::from_seed(7);
    let raw_key = NodeKey::from_seed([30; 32]);
    let raw = Arc::new(
        Endpoint::bind(
            &raw_key,
            realm.admission(&raw_key, Role::Edge, "n30"),
            "127.0.0.1:0".parse().unwrap(),
            vec![],
            TransportParams::default(),
        )
        .unwrap(),
    );
    let raw_addr = raw.local_addr().unwrap();
    let ep = raw.clone();
    tokio::spawn(async move {
        while let Some(inc) = ep.accept().await {
            let Ok(peer) = ep.handshake(inc).await else {
                continue;
            };
            tokio::spawn(async move {
                let _control = peer.control;
                while let Ok((send, mut recv)) = peer.conn.accept_bi().await {
                    let req = frame::read::<RpcRequest>(&mut recv, MAX_RPC_FRAME)
                        .await
                        .unwrap()
                        .unwrap();
                    tokio::spawn(misbehave(send, req.body[0]));
                }
            });
        }
    });
    let client = start(&realm, 31, vec![]);
    client
        .add_contact(Bootstrap {
            node: Some(raw_key.node_id()),
            addr: raw_addr,
        })
        .await
        .unwrap();
    for (how, expect, chunks) in [
        (0u8, ErrorCode::Protocol, 1),
        (1, ErrorCode::Protocol, 0),
        (2, ErrorCode::Protocol, 0),
        (3, ErrorCode::Protocol, 0),
        (4, ErrorCode::Unavailable, 1),
    ] {
        let mut s = client
            .call_stream(
                raw_key.node_id(),
                "test.raw",
                vec![how],
                Duration::from_secs(5),
            )
            .await
            .unwrap();
        for _ in 0..chunks {
            assert!(s.next().await.unwrap().is_some(), "case {how}");
        }
        let e = s.next().await.unwrap_err();
        assert_eq!(e.code, expect, "case {how}: {e}");
        assert!(e.message.contains("test.raw"), "case {how}: {e}");
    }
    client.shutdown().await;
    raw.close();
}

/// Issue 18: a member could open every request stream a connection allows, announce a large
/// request and stall, holding the server's stream buffers and tasks for ever. Each stalled
/// stream is now reset at `request_deadline`, and honest calls keep working meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_request_streams_are_reset_at_the_deadline() {
    let realm = Realm::from_seed(7);
    let key = NodeKey::from_seed([40; 32]);
    let deadline = Duration::from_secs(2);
    let server = victim(&realm, 40, deadline);
    let echo: Handler = Arc::new(|_, body| Box::pin(async move { Ok(body) }));
    server.serve("test.echo", echo);
    let rogue_key = NodeKey::from_seed([41; 32]);
    let rogue = Endpoint::bind(
        &rogue_key,
        realm.admission(&rogue_key, Role::Edge, "n41"),
        "127.0.0.1:0".parse().unwrap(),
        vec![],
        TransportParams::default(),
    )
    .unwrap();
    let peer = rogue
        .dial(server.local_addr(), Some(key.node_id()))
        .await
        .unwrap();
    // The first bytes of a 1 MiB request, then nothing, on as many streams as allowed.
    let big = frame::encode(
        &RpcRequest {
            procedure: "test.echo".into(),
            deadline_ms: 60_000,
            body: vec![0; 1 << 20],
        },
        MAX_RPC_FRAME,
    )
    .unwrap();
    // (The Hello's control stream takes one.)
    let streams = TransportParams::default().max_bidi_streams - 1;
    let mut stalled = Vec::new();
    for _ in 0..streams {
        let (mut send, recv) = peer.conn.open_bi().await.unwrap();
        send.write_all(&big[..1000]).await.unwrap();
        stalled.push((send, recv));
    }
    let started = Instant::now();
    // Honest traffic flows meanwhile.
    let client = start(&realm, 42, vec![]);
    client
        .add_contact(Bootstrap {
            node: Some(key.node_id()),
            addr: server.local_addr(),
        })
        .await
        .unwrap();
    let r = client
        .call(
            key.node_id(),
            "test.echo",
            b"hi".to_vec(),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(r, b"hi");
    for (send, _recv) in &mut stalled {
        let stopped = tokio::time::timeout(deadline * 4, send.stopped())
            .await
            .expect("a stalled request stream is reset at the deadline");
        assert!(matches!(stopped, Ok(Some(_))), "{stopped:?}");
    }
    let took = started.elapsed();
    assert!(
        took >= deadline / 2,
        "reset after {took:?}, before the deadline"
    );
    // Once the peer lets go of its halves, the credits let it open streams again.
    drop(stalled);
    let (mut send, _recv) = tokio::time::timeout(deadline, peer.conn.open_bi())
        .await
        .expect("stream credit is back")
        .unwrap();
    send.write_all(&big[..10]).await.unwrap();
    client.shutdown().await;
    server.shutdown().await;
    rogue.close();
}

fn victim(realm: &Realm, seed: u8, deadline: Duration) -> MeshNode {
    realm
        .member(seed)
        .config(|c| c.transport.request_deadline = deadline)
        .start()
}

/// A member that announces the largest request on every stream it may open and then sends
/// nothing more does not make the victim allocate what it announced: the victim's allocations
/// grow by less than one announced frame (they grew by 63 × 4 MiB when buffers were sized from
/// the length prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_frames_are_not_allocated() {
    let realm = Realm::from_seed(8);
    let key = NodeKey::from_seed([50; 32]);
    let server = victim(&realm, 50, Duration::from_secs(30));
    let echo: Handler = Arc::new(|_, body| Box::pin(async move { Ok(body) }));
    server.serve("test.echo", echo);
    let rogue_key = NodeKey::from_seed([51; 32]);
    let rogue = Endpoint::bind(
        &rogue_key,
        realm.admission(&rogue_key, Role::Edge, "n51"),
        "127.0.0.1:0".parse().unwrap(),
        vec![],
        TransportParams::default(),
    )
    .unwrap();
    let peer = rogue
        .dial(server.local_addr(), Some(key.node_id()))
        .await
        .unwrap();
    // Let the connection settle, then count from here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = LIVE.load(Ordering::Relaxed);
    let announce = (MAX_RPC_FRAME as u32).to_be_bytes();
    let streams = TransportParams::default().max_bidi_streams - 1;
    let mut stalled = Vec::new();
    for _ in 0..streams {
        let (mut send, recv) = peer.conn.open_bi().await.unwrap();
        send.write_all(&announce).await.unwrap();
        send.write_all(&[1, 0]).await.unwrap();
        stalled.push((send, recv));
    }
    // Wait until the victim has read every prefix and the bytes after it.
    let until = Instant::now() + Duration::from_secs(10);
    while server.stream_buffer_bytes() < 2 * streams as usize {
        assert!(Instant::now() < until, "the victim never read the prefixes");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let grown = LIVE.load(Ordering::Relaxed).saturating_sub(before);
    assert!(
        grown < MAX_RPC_FRAME,
        "{streams} streams announcing {MAX_RPC_FRAME} bytes made the process allocate {grown} \
         more bytes"
    );
    assert!(
        server.stream_buffer_bytes() <= streams as usize * 4096,
        "{} bytes buffered for {streams} two-byte bodies",
        server.stream_buffer_bytes()
    );
    drop(stalled);
    server.shutdown().await;
    rogue.close();
}

/// A member that really sends large partial requests on many streams is held to the
/// connection's buffer budget: streams past it are reset as overloaded, the victim's buffered
/// bytes never exceed the budget, honest members' calls go on, and the stalled rest is freed at
/// the request deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_partial_frames_are_held_to_its_budget() {
    let realm = Realm::from_seed(9);
    let key = NodeKey::from_seed([60; 32]);
    let deadline = Duration::from_secs(10);
    let server = victim(&realm, 60, deadline);
    let budget = TransportParams::default().conn_buffer_budget;
    let echo: Handler = Arc::new(|_, body| Box::pin(async move { Ok(body) }));
    server.serve("test.echo", echo);
    let rogue_key = NodeKey::from_seed([61; 32]);
    let rogue = Endpoint::bind(
        &rogue_key,
        realm.admission(&rogue_key, Role::Edge, "n61"),
        "127.0.0.1:0".parse().unwrap(),
        vec![],
        TransportParams::default(),
    )
    .unwrap();
    let peer = rogue
        .dial(server.local_addr(), Some(key.node_id()))
        .await
        .unwrap();
    let big = frame::encode(
        &RpcRequest {
            procedure: "test.echo".into(),
            deadline_ms: 60_000,
            body: vec![7; MAX_RPC_FRAME - 64],
        },
        MAX_RPC_FRAME,
    )
    .unwrap();
    // 1 MiB of each 4 MiB request: 40 MiB offered in all, 2.5 times the budget.
    let peak = AtomicUsize::new(0);
    let mut stalled = Vec::new();
    let mut reset = 0;
    for _ in 0..40 {
        let (mut send, recv) = peer.conn.open_bi().await.unwrap();
        match tokio::time::timeout(Duration::from_secs(10), send.write_all(&big[..1 << 20])).await {
            Ok(Ok(())) => {}
            Ok(Err(quinn::WriteError::Stopped(code))) => {
                assert_eq!(code.into_inner(), 0x15, "reset as overloaded");
                reset += 1;
            }
            other => panic!("unexpected write outcome {other:?}"),
        }
        peak.fetch_max(server.stream_buffer_bytes(), Ordering::Relaxed);
        stalled.push((send, recv));
    }
    // Streams the victim stopped after the write completed report it too.
    for (send, _) in &mut stalled {
        if let Ok(Ok(Some(code))) =
            tokio::time::timeout(Duration::from_millis(50), send.stopped()).await
        {
            assert_eq!(code.into_inner(), 0x15);
        }
        peak.fetch_max(server.stream_buffer_bytes(), Ordering::Relaxed);
    }
    let held = server.stream_buffer_bytes();
    assert!(
        peak.load(Ordering::Relaxed) <= budget && held <= budget,
        "buffered {held} bytes (peak {}), budget {budget}",
        peak.load(Ordering::Relaxed)
    );
    assert!(
        held >= budget / 2,
        "the first streams are kept, not reset: {held}"
    );
    let stopped = {
        let mut n = 0;
        for (send, _) in &mut stalled {
            if matches!(
                tokio::time::timeout(Duration::from_millis(20), send.stopped()).await,
                Ok(Ok(Some(_)))
            ) {
                n += 1;
            }
        }
        n
    };
    assert!(
        stopped >= 40 - budget / (1 << 20) && reset <= stopped,
        "{stopped} of 40 streams reset, budget {budget}"
    );
    // An honest member's call is served meanwhile.
    let client = start(&realm, 62, vec![]);
    client
        .add_contact(Bootstrap {
            node: Some(key.node_id()),
            addr: server.local_addr(),
        })
        .await
        .unwrap();
    let r = client
        .call(
            key.node_id(),
            "test.echo",
            vec![3; 1 << 20],
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(r.len(), 1 << 20);
    // At the request deadline the stalled streams are reset and their buffers freed.
    let until = Instant::now() + deadline * 3;
    while server.stream_buffer_bytes() > 0 {
        assert!(
            Instant::now() < until,
            "{} bytes still buffered after the deadline",
            server.stream_buffer_bytes()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stalled);
    client.shutdown().await;
    server.shutdown().await;
    rogue.close();
}
