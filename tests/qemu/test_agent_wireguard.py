#!/usr/bin/env python3
"""The agent configures kernel WireGuard between two guests from its config (network plane).

Two guests of the same image on a QEMU socket link (as tests/qemu/test_wireguard.py). Each gets
192.168.77.N on eth1; its node ID comes from `maculactl status --json`; then each gets a
/data/macula/agent.toml with an `[overlay]` naming the other node as its peer (endpoint
192.168.77.M:51820; `implementation` left at its default `auto`, module not loaded beforehand) and
maculad is restarted by its supervisor. Passes when
`maculactl overlay --json` reports `"implementation": "kernel"` on both, the guests ping each
other's key-derived overlay addresses, `wg show` (wireguard-tools, independent of the agent) sees
the agent's key, peer /128 and a handshake, and `maculactl overlay --json` reports the handshake.

Run: python3 tests/qemu/test_agent_wireguard.py --arch x86_64 [--image-dir DIR]
(the image must contain the agent built from this tree: `make image ARCH=x86_64`).
"""
import argparse
import os
import sys
import time

from guest import REPO, GuestError, Machine, ctl_json, free_port

# Any valid realm ID works: the overlay /48 is derived from it (docs/identity.md).
REALM = "442ou3blmjl544rvlzdsvic2jreh422ghqbj5uyg34xqdnldnnma"


def agent_toml(peer_id, peer_n):
    return (
        "[overlay]\n"
        "enabled = true\n"
        'interface = "mcl0"\n'
        f'realm = "{REALM}"\n'
        "[[overlay.peers]]\n"
        f'node_id = "{peer_id}"\n'
        f'endpoint = "192.168.77.{peer_n}:51820"\n'
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["x86_64", "aarch64"], default="x86_64")
    ap.add_argument("--image-dir", help="default: build/image/ARCH")
    ap.add_argument("--work", help="default: build/test-qemu/agent-wireguard-ARCH")
    a = ap.parse_args()
    image = os.path.join(a.image_dir or os.path.join(REPO, "build/image", a.arch), "disk.img")
    work = a.work or os.path.join(REPO, "build/test-qemu", f"agent-wireguard-{a.arch}")
    if not os.path.exists(image):
        sys.exit(f"test_agent_wireguard: {image} missing; run `make image ARCH={a.arch}` first")
    t0 = time.monotonic()
    port = free_port()
    guests = []
    try:
        for n, mode in ((1, "listen"), (2, "connect")):
            m = Machine(a.arch, image, os.path.join(work, f"g{n}"),
                        qemu_args=["--socket-net", f"{mode}:127.0.0.1:{port}", "--mac", f"52:54:00:78:00:0{n}"])
            guests.append(m.boot())
            if n == 1:
                time.sleep(1)  # the listener's socket must exist before the other connects
        ids = {}
        for n, g in enumerate(guests, 1):
            g.wait_ready(timeout=300)
            g.wait_agent_ready(timeout=300)
            g.sh("killall udhcpc 2>/dev/null; ip addr add 192.168.77.%d/24 dev eth1 && ip link set eth1 up" % n)
            st, out = ctl_json(g, "status")
            if st is None:
                raise GuestError(f"guest {n}: maculactl status --json failed:\n{out}")
            ids[n] = st["node_id"]
        for n, g in enumerate(guests, 1):
            peer = 3 - n
            text = agent_toml(ids[peer], peer).replace("\n", "\\n")
            g.sh(f"printf '{text}' > /data/macula/agent.toml && killall maculad")
        overlays = {}
        for n, g in enumerate(guests, 1):
            deadline = time.monotonic() + 120
            while True:
                ov, out = ctl_json(g, "overlay")
                if ov is not None:
                    break
                if time.monotonic() > deadline:
                    _, log = g.sh("logread 2>/dev/null | grep -i -e maculad -e overlay | tail -20", check=False)
                    raise GuestError(f"guest {n}: overlay not up after the restart:\n{out}\n{log}")
                time.sleep(2)
            if ov.get("implementation") != "kernel":
                raise GuestError(f"guest {n}: implementation is {ov.get('implementation')!r}, not kernel: {ov}")
            overlays[n] = ov
        for n, g in enumerate(guests, 1):
            target = overlays[3 - n]["address"]
            if overlays[n]["peer_list"][0]["address"] != target:
                raise GuestError(f"guest {n}: peer address {overlays[n]['peer_list'][0]['address']} != {target}")
            rc, out = g.sh(f"ping -6 -c 3 -W 3 {target}", timeout=60, check=False)
            if rc != 0:
                raise GuestError(f"guest {n} cannot reach {target} over the agent's kernel WireGuard:\n{out}")
        for n, g in enumerate(guests, 1):
            _, dump = g.sh("wg show mcl0 dump")
            lines = [l.split("\t") for l in dump.strip().splitlines()]
            if len(lines) != 2:
                raise GuestError(f"guest {n}: wg show mcl0 dump: {dump!r}")
            dev, peer = lines
            if dev[1] != overlays[n]["public_key"] or dev[2] != "51820":
                raise GuestError(f"guest {n}: device key/port {dev[1:3]} != agent's {overlays[n]['public_key']}")
            want_ip = overlays[3 - n]["address"] + "/128"
            if peer[0] != overlays[3 - n]["public_key"] or peer[3] != want_ip or peer[4] == "0":
                raise GuestError(f"guest {n}: peer line {peer} (want key of the other, {want_ip}, a handshake)")
            ov, out = ctl_json(g, "overlay")
            if ov is None or ov["peer_list"][0]["last_handshake_s"] == 0:
                raise GuestError(f"guest {n}: maculactl overlay shows no handshake:\n{out}")
    except GuestError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        for g in guests:
            g.kill()
    print(f"PASS: the agent configured kernel WireGuard between two {a.arch} guests in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
