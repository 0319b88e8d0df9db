//! MPTCP endpoints set over our own genetlink client; an MPTCP connection survives path 1 going down.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use common::Netns;
use common::scenario::TwoPaths;
use macula_net::cmd::Host;
use macula_net::mptcp::{Endpoint, FLAG_SUBFLOW, Mptcp};
use macula_net::uplinks::UplinksConfig;
use macula_net::uplinks::react::Reactor;
use macula_net::uplinks::tracker::Action;

const IPPROTO_MPTCP: i32 = 262;

fn ifindex(ns: &Netns, ifname: &str) -> i32 {
    ns.exec(&["cat", &format!("/sys/class/net/{ifname}/ifindex")])
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn endpoints_via_netlink_and_connection_survives_path_down() {
    let bed = TwoPaths::new();
    let (a, b) = (&bed.a, &bed.b);
    let (a1, a2, b2) = (&bed.a1, &bed.a2, &bed.b2);
    // Path 2 reaches B's path-1 address too (the subflow targets the same remote address).
    a.exec(&[
        "ip",
        "route",
        "add",
        "198.51.100.2/32",
        "dev",
        a2,
        "src",
        "203.0.113.1",
        "table",
        "102",
    ]);
    a.exec(&["ip", "rule", "add", "from", "203.0.113.1", "lookup", "102"]);
    b.exec(&["ip", "route", "add", "203.0.113.1/32", "dev", b2]);
    for ns in [&a, &b] {
        ns.exec(&["sysctl", "-q", "net.mptcp.enabled=1"]);
    }
    let (ha, hb) = (Host::netns(&a.name), Host::netns(&b.name));
    let mut pa = Mptcp::open(&ha).unwrap();
    let mut pb = Mptcp::open(&hb).unwrap();
    pa.set_limits(2, 2).unwrap();
    pb.set_limits(2, 2).unwrap();
    assert_eq!(pa.limits().unwrap(), (2, 2));
    let ep = Endpoint {
        id: 2,
        addr: "203.0.113.1".parse().unwrap(),
        ifindex: ifindex(a, a2),
        flags: FLAG_SUBFLOW,
    };
    pa.sync(&[2], std::slice::from_ref(&ep)).unwrap();
    assert_eq!(pa.list().unwrap(), std::slice::from_ref(&ep));
    let shown = a.exec(&["ip", "mptcp", "endpoint", "show"]);
    assert!(shown.contains("203.0.113.1 id 2 subflow dev"), "{shown}");

    // Server in B, client in A, both MPTCP sockets.
    let listener = hb
        .in_netns(|| mptcp("0.0.0.0:0".parse().unwrap(), true))
        .map(|fd| unsafe { TcpListener::from_raw_fd(fd) })
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = vec![0u8; 65536];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let mut client = ha
        .in_netns(|| mptcp(format!("198.51.100.2:{port}").parse().unwrap(), false))
        .map(|fd| unsafe { TcpStream::from_raw_fd(fd) })
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let echo = |c: &mut TcpStream| -> std::io::Result<()> {
        let chunk = vec![0x5au8; 32 * 1024];
        c.write_all(&chunk)?;
        let mut back = vec![0u8; chunk.len()];
        c.read_exact(&mut back)?;
        assert_eq!(back, chunk);
        Ok(())
    };
    echo(&mut client).unwrap();
    // The kernel PM opens the second subflow from our endpoint.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ss = a.exec(&["ss", "-tnH", "state", "established"]);
        if ss.contains("203.0.113.1") {
            break;
        }
        assert!(Instant::now() < deadline, "no subflow on path 2: {ss}");
        echo(&mut client).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }

    // Path 1 goes down: the connection carries on over path 2.
    a.exec(&["ip", "link", "set", a1, "down"]);
    let t = Instant::now();
    for _ in 0..50 {
        echo(&mut client).expect("MPTCP connection died with path 1");
    }
    eprintln!(
        "50 × 32 KiB echoed over path 2 in {:?} after path 1 went down",
        t.elapsed()
    );
    let rx2 = b.exec(&["cat", &format!("/sys/class/net/{b2}/statistics/rx_bytes")]);
    assert!(rx2.trim().parse::<u64>().unwrap() > 50 * 32 * 1024);

    client.shutdown(std::net::Shutdown::Write).unwrap();
    server.join().unwrap();

    // The agent deletes endpoints of lost uplinks (this also closes subflows using them).
    pa.sync(&[2], &[]).unwrap();
    assert!(pa.list().unwrap().is_empty());

    // The same through the uplink reactor: one subflow endpoint per healthy uplink.
    let cfg: UplinksConfig = toml::from_str(&format!(
        "[[links]]\nname = \"p1\"\ninterface = \"{a1}\"\nsource = \"198.51.100.1\"\nprobe = \"198.51.100.2:51821\"\n\
         [[links]]\nname = \"p2\"\ninterface = \"{a2}\"\nsource = \"203.0.113.1\"\nprobe = \"203.0.113.2:51821\"\n"
    ))
    .unwrap();
    let mut reactor = Reactor::new(ha.clone(), cfg).with_mptcp(
        Mptcp::open(&ha).unwrap(),
        vec![ifindex(a, a1), ifindex(a, a2)],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(reactor.handle(&Action::Healthy(vec![0, 1])))
        .unwrap();
    let ids: Vec<u8> = pa.list().unwrap().iter().map(|e| e.id).collect();
    assert_eq!(ids, [1, 2]);
    rt.block_on(reactor.handle(&Action::Healthy(vec![1])))
        .unwrap();
    assert_eq!(pa.list().unwrap()[0].addr.to_string(), "203.0.113.1");
    assert_eq!(pa.list().unwrap().len(), 1);
}

fn sockaddr(sa: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(v4) = sa else {
        panic!("IPv4 only")
    };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as u16,
        sin_port: v4.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*v4.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// An MPTCP socket, bound and listening (`listen = true`) or connected to `sa`.
fn mptcp(sa: SocketAddr, listen: bool) -> std::io::Result<i32> {
    // SAFETY: socket/bind/listen/connect on a fresh fd with a valid sockaddr_in; the fd is
    // closed on error and otherwise handed to the caller.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            IPPROTO_MPTCP,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let addr = sockaddr(sa);
        let (p, l) = (
            (&addr as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as u32,
        );
        let ok = if listen {
            libc::bind(fd, p, l) == 0 && libc::listen(fd, 8) == 0
        } else {
            libc::connect(fd, p, l) == 0
        };
        if !ok {
            let e = std::io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(fd)
    }
}
