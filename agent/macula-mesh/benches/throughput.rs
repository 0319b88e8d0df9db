//! One bidirectional stream, 256 × 1 MiB writes, 64 KiB reads, on 127.0.0.1: a mesh stream
//! (Endpoint with admission and the mesh transport parameters) against raw quinn (default
//! transport config, same raw-key TLS, no mesh layer), measured alternately in the same run.
//! Goal: mesh ≥ 0.9 × raw. Then the frame reader on the same kind of stream: 64 RPC requests of
//! 4 MiB read with `frame::read_within` (buffers grown as bytes arrive, charged to a connection
//! budget) against a reader that allocates the announced length up front (the reader before
//! issue 18), alternately in the same run. Goal: grown ≥ 0.9 × up-front.
//! Run: `cargo bench -p macula-mesh --bench throughput`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use macula_core::NodeKey;
use macula_mesh::frame::{self, ConnBudget};
use macula_mesh::realm::{Admission, Role};
use macula_mesh::rpc::{MAX_RPC_FRAME, RpcRequest};
use macula_mesh::tls;
use macula_mesh::transport::{Endpoint, TransportParams};
use macula_testkit::realm::Realm;

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 256;
const ROUNDS: usize = 5;

async fn pump(send_conn: quinn::Connection, recv_conn: quinn::Connection) -> Duration {
    let start = Instant::now();
    let (mut s, _r) = send_conn.open_bi().await.unwrap();
    let writer = tokio::spawn(async move {
        let buf = vec![0x5a; CHUNK];
        for _ in 0..CHUNKS {
            s.write_all(&buf).await.unwrap();
        }
        s.finish().unwrap();
        s.stopped().await.ok();
    });
    let (_s2, mut r2) = recv_conn.accept_bi().await.unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0usize;
    while let Some(n) = r2.read(&mut buf).await.unwrap() {
        total += n;
    }
    writer.await.unwrap();
    assert_eq!(total, CHUNK * CHUNKS);
    start.elapsed()
}

fn admission(realm: &Realm, key: &NodeKey) -> Arc<Admission> {
    realm.admission(key, Role::Edge, "bench")
}

async fn mesh_round(realm: &Realm, ka: &NodeKey, kb: &NodeKey) -> Duration {
    let local = "127.0.0.1:0".parse().unwrap();
    let p = TransportParams::default();
    let a = Endpoint::bind(ka, admission(realm, ka), local, vec![], p.clone()).unwrap();
    let b = Arc::new(Endpoint::bind(kb, admission(realm, kb), local, vec![], p).unwrap());
    let b2 = b.clone();
    let acc = tokio::spawn(async move {
        let inc = b2.accept().await.unwrap();
        b2.handshake(inc).await.unwrap()
    });
    let out = a
        .dial(b.local_addr().unwrap(), Some(kb.node_id()))
        .await
        .unwrap();
    let inc = acc.await.unwrap();
    pump(out.conn.clone(), inc.conn.clone()).await
}

async fn raw_round(ka: &NodeKey, kb: &NodeKey) -> Duration {
    let chacha = !macula_core::cpu::has_aes();
    let server = quinn::crypto::rustls::QuicServerConfig::try_from(
        tls::server_config(kb, Arc::default(), chacha).unwrap(),
    )
    .unwrap();
    let client = quinn::crypto::rustls::QuicClientConfig::try_from(
        tls::client_config(ka, Arc::default(), chacha).unwrap(),
    )
    .unwrap();
    let b = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(server)),
        "127.0.0.1:0".parse().unwrap(),
    )
    .unwrap();
    let mut a = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    a.set_default_client_config(quinn::ClientConfig::new(Arc::new(client)));
    let baddr = b.local_addr().unwrap();
    let acc = tokio::spawn(async move { b.accept().await.unwrap().await.unwrap() });
    let out = a
        .connect(baddr, &kb.node_id().to_string())
        .unwrap()
        .await
        .unwrap();
    let inc = acc.await.unwrap();
    pump(out, inc).await
}

const FRAMES: usize = 64;

/// The reader before issue 18: the body buffer sized from the length prefix.
async fn read_up_front(recv: &mut quinn::RecvStream) -> Option<RpcRequest> {
    let mut prefix = [0u8; frame::LEN_BYTES];
    recv.read_exact(&mut prefix).await.ok()?;
    let len = frame::body_len(prefix, MAX_RPC_FRAME).unwrap();
    let mut body = vec![0u8; len];
    recv.read_exact(&mut body).await.unwrap();
    Some(macula_core::wire::decode_with_limit(&body, MAX_RPC_FRAME).unwrap())
}

async fn frame_round(realm: &Realm, ka: &NodeKey, kb: &NodeKey, grown: bool) -> Duration {
    let local = "127.0.0.1:0".parse().unwrap();
    let p = TransportParams::default();
    let budget = ConnBudget::new(p.conn_buffer_budget, Arc::default());
    let a = Endpoint::bind(ka, admission(realm, ka), local, vec![], p.clone()).unwrap();
    let b = Arc::new(Endpoint::bind(kb, admission(realm, kb), local, vec![], p).unwrap());
    let b2 = b.clone();
    let acc = tokio::spawn(async move {
        let inc = b2.accept().await.unwrap();
        b2.handshake(inc).await.unwrap()
    });
    let out = a
        .dial(b.local_addr().unwrap(), Some(kb.node_id()))
        .await
        .unwrap();
    let inc = acc.await.unwrap();
    let req = RpcRequest {
        procedure: "bench".into(),
        deadline_ms: 60_000,
        body: vec![0x5a; MAX_RPC_FRAME - 64],
    };
    let bytes = frame::encode(&req, MAX_RPC_FRAME).unwrap();
    let start = Instant::now();
    let (mut s, _r) = out.conn.open_bi().await.unwrap();
    let writer = tokio::spawn(async move {
        for _ in 0..FRAMES {
            s.write_all(&bytes).await.unwrap();
        }
        s.finish().unwrap();
        s.stopped().await.ok();
    });
    let (_s2, mut r2) = inc.conn.accept_bi().await.unwrap();
    let mut n = 0;
    loop {
        let got = if grown {
            frame::read_within::<RpcRequest>(&mut r2, MAX_RPC_FRAME, Some(&budget))
                .await
                .unwrap()
                .map(|(r, _held)| r)
        } else {
            read_up_front(&mut r2).await
        };
        let Some(r) = got else { break };
        assert_eq!(r.body.len(), MAX_RPC_FRAME - 64);
        n += 1;
    }
    writer.await.unwrap();
    assert_eq!(n, FRAMES);
    start.elapsed()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let realm = Realm::from_seed(1);
    let (ka, kb) = (NodeKey::from_seed([2; 32]), NodeKey::from_seed([3; 32]));
    let (mut mesh, mut raw) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..ROUNDS {
            raw.push(raw_round(&ka, &kb).await);
            mesh.push(mesh_round(&realm, &ka, &kb).await);
        }
    });
    let mib = (CHUNK * CHUNKS) as f64 / (1 << 20) as f64;
    let (m, r) = (median(mesh), median(raw));
    let (mr, rr) = (mib / m.as_secs_f64(), mib / r.as_secs_f64());
    println!(
        "stream throughput (median of {ROUNDS}, 256 MiB): mesh {mr:.0} MiB/s, raw quinn {rr:.0} MiB/s, \
         ratio {:.2} (goal ≥ 0.90); cipher {}",
        mr / rr,
        if macula_core::cpu::has_aes() {
            "AES-128-GCM"
        } else {
            "ChaCha20-Poly1305"
        }
    );
    let (mut grown, mut up_front) = (Vec::new(), Vec::new());
    rt.block_on(async {
        for _ in 0..ROUNDS {
            up_front.push(frame_round(&realm, &ka, &kb, false).await);
            grown.push(frame_round(&realm, &ka, &kb, true).await);
        }
    });
    let mib = (FRAMES * MAX_RPC_FRAME) as f64 / (1 << 20) as f64;
    let (g, u) = (median(grown), median(up_front));
    let (gr, ur) = (mib / g.as_secs_f64(), mib / u.as_secs_f64());
    println!(
        "frame reader (median of {ROUNDS}, {FRAMES} × 4 MiB requests): grown as bytes arrive \
         {gr:.0} MiB/s, allocated up front {ur:.0} MiB/s, ratio {:.2} (goal ≥ 0.90)",
        gr / ur
    );
}
