#!/usr/bin/env python3
"""Two guests of the same image on a QEMU socket link bring up kernel WireGuard between them.

Guest 1 listens, guest 2 connects (`image/qemu.sh --socket-net`); each gets 192.168.77.N on eth1,
a fresh key pair (`wg genkey`), the other's public key as its peer, and 10.77.0.N on wg0. Passes
when both ping each other through the tunnel and `wg` reports a handshake. Checks the image's
kernel module, wireguard-tools and iproute2 — the agent is not involved.

Run: make test-wireguard ARCH=aarch64|x86_64  (or python3 tests/qemu/test_wireguard.py --arch …)
"""
import argparse
import os
import sys
import time

from guest import REPO, GuestError, Machine, free_port


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=["x86_64", "aarch64"], default="aarch64")
    ap.add_argument("--image-dir", help="default: build/image/ARCH")
    ap.add_argument("--work", help="default: build/test-qemu/wireguard-ARCH")
    a = ap.parse_args()
    image = os.path.join(a.image_dir or os.path.join(REPO, "build/image", a.arch), "disk.img")
    work = a.work or os.path.join(REPO, "build/test-qemu", f"wireguard-{a.arch}")
    if not os.path.exists(image):
        sys.exit(f"test_wireguard: {image} missing; run `make image ARCH={a.arch}` first")
    t0 = time.monotonic()
    port = free_port()
    guests = []
    try:
        for n, mode in ((1, "listen"), (2, "connect")):
            m = Machine(a.arch, image, os.path.join(work, f"g{n}"),
                        qemu_args=["--socket-net", f"{mode}:127.0.0.1:{port}", "--mac", f"52:54:00:77:00:0{n}"])
            guests.append(m.boot())
            if n == 1:
                time.sleep(1)  # the listener's socket must exist before the other connects
        pubs = {}
        for n, g in enumerate(guests, 1):
            g.wait_ready(timeout=180)
            g.sh("killall udhcpc 2>/dev/null; ip addr add 192.168.77.%d/24 dev eth1 && ip link set eth1 up" % n)
            g.sh("modprobe wireguard && umask 077 && wg genkey > /tmp/wg.key")
            pubs[n] = g.sh("wg pubkey < /tmp/wg.key")[1].strip()
        for n, g in enumerate(guests, 1):
            peer = 3 - n
            g.sh("ip link add wg0 type wireguard && "
                 f"wg set wg0 listen-port 51820 private-key /tmp/wg.key peer {pubs[peer]} "
                 f"allowed-ips 10.77.0.{peer}/32 endpoint 192.168.77.{peer}:51820 && "
                 f"ip addr add 10.77.0.{n}/24 dev wg0 && ip link set wg0 up")
        rc, out = guests[0].sh("ping -c 2 -W 3 192.168.77.2", timeout=60, check=False)
        if rc != 0:
            raise GuestError(f"the socket link itself does not carry traffic (eth1):\n{out}")
        for n, g in enumerate(guests, 1):
            rc, out = g.sh(f"ping -c 3 -W 3 10.77.0.{3 - n}", timeout=60, check=False)
            if rc != 0:
                raise GuestError(f"guest {n} cannot reach 10.77.0.{3 - n} through WireGuard:\n{out}")
            _, hs = g.sh("wg show wg0 latest-handshakes")
            if not hs.split() or hs.split()[-1] == "0":
                raise GuestError(f"guest {n}: no WireGuard handshake: {hs!r}")
    except GuestError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    finally:
        for g in guests:
            g.kill()
    print(f"PASS: WireGuard between two {a.arch} guests in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
