//! Invariants of the mesh crate's layout (docs/ARCHITECTURE.md): the state machines and the core
//! read no clock and own no socket or task — time and I/O come from the shell or the simulator.

/// The sans-IO modules and their source.
const SANS_IO: &[(&str, &str)] = &[
    ("core.rs", include_str!("../src/core.rs")),
    ("announce.rs", include_str!("../src/announce.rs")),
    ("advertise.rs", include_str!("../src/advertise.rs")),
    ("membership.rs", include_str!("../src/membership.rs")),
    ("dht.rs", include_str!("../src/dht.rs")),
    ("pubsub.rs", include_str!("../src/pubsub.rs")),
    ("clock.rs", include_str!("../src/clock.rs")),
    ("ntp.rs", include_str!("../src/ntp.rs")),
    ("sim.rs", include_str!("../src/sim.rs")),
    ("sim/combined.rs", include_str!("../src/sim/combined.rs")),
];

/// What reads a clock, sleeps, or does I/O.
const FORBIDDEN: &[&str] = &[
    "SystemTime",
    "Instant::now",
    "tokio",
    "quinn::",
    "UdpSocket",
    "thread::sleep",
    "std::fs",
    "getrandom",
];

#[test]
fn no_clock_or_socket_in_a_state_machine() {
    let mut found = Vec::new();
    for (file, src) in SANS_IO {
        for (n, line) in src.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for f in FORBIDDEN {
                if code.contains(f) {
                    found.push(format!("src/{file}:{}: {f}: {}", n + 1, code));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "clock or I/O in sans-IO code:\n{}",
        found.join("\n")
    );
}
