//! Malformed input against a real `maculad`: garbage or oversized frames instead of a Hello and
//! a peer without a certificate are closed with the right QUIC code; the daemon keeps serving.

use std::sync::Arc;
use std::time::Duration;

use macula_core::NodeKey;
use macula_mesh::proto::close;
use macula_mesh::tls;
use macula_testkit::config::AgentConfig;
use macula_testkit::{Agent, AgentOptions, DbusDaemon};

async fn raw_connect(port: u16) -> quinn::Connection {
    let key = NodeKey::generate();
    let cfg = tls::client_config(&key, Arc::default(), false).unwrap();
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    ep.connect(format!("127.0.0.1:{port}").parse().unwrap(), tls::ANY_PEER)
        .unwrap()
        .await
        .unwrap()
}

async fn close_code(conn: &quinn::Connection) -> u64 {
    match tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .unwrap()
    {
        quinn::ConnectionError::ApplicationClosed(c) => c.error_code.into_inner(),
        e => panic!("expected an application close, got {e}"),
    }
}

#[test]
fn malformed_frames_close_the_connection_not_the_daemon() {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bus = DbusDaemon::start();
    let mut agent = Agent::spawn(
        &bus,
        AgentOptions {
            config: Some(AgentConfig::loopback(port).to_string()),
            ..Default::default()
        },
    );
    assert!(
        agent
            .ctl(&["realm", "create", "--name", "solo"])
            .status
            .success()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = raw_connect(port).await;
        let (mut s, _r) = c.open_bi().await.unwrap();
        s.write_all(&[0, 0, 0, 6, 1, 0xff, 0xff, 0xff, 0xff, 0xff])
            .await
            .unwrap();
        assert_eq!(close_code(&c).await, u64::from(close::PROTOCOL));

        let c = raw_connect(port).await;
        let (mut s, _r) = c.open_bi().await.unwrap();
        s.write_all(&[0xff, 0xff, 0xff, 0xff]).await.unwrap();
        assert_eq!(close_code(&c).await, u64::from(close::PROTOCOL));

        // TLS is fine but there is no certificate: closed when the Hello budget runs out.
        let c = raw_connect(port).await;
        c.send_datagram(vec![0xde, 0xad].into()).unwrap();
        assert_eq!(close_code(&c).await, u64::from(close::HELLO_TIMEOUT));
    });
    assert!(
        agent.try_wait().is_none(),
        "maculad died; log:\n{}",
        agent.log()
    );
    let peers = agent.ctl(&["peers", "--json"]);
    assert!(peers.status.success());
    assert_eq!(String::from_utf8_lossy(&peers.stdout).trim(), "[]");
}
