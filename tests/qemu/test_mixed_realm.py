#!/usr/bin/env python3
"""A mixed-arch realm: an x86_64 guest (hub) and an aarch64 guest (edge) run the real agent.

Both images are the test images of `make image ARCH=x86_64|aarch64 CONSOLE_SHELL=1`; the guests
share a QEMU socket link (eth1: 192.168.77.1 hub, .2 edge). Each gets a /data/macula/agent.toml
(mesh on eth1, storage with 1 + 1 coding, a kernel WireGuard overlay naming the other) and its
supervisor restarts maculad. Then, as a person would with maculactl on the consoles:

  1. hub: `maculactl realm create`; `realm admit <edge ID>`; the certificate goes to the edge
     (base64 over the console) and the edge runs `realm join`
  2. membership: each guest's `maculactl peers --json` shows the other alive
  3. `maculactl put` of 3 MiB of random bytes on the edge (aarch64: NEON erasure coding, its
     AEAD); `maculactl get` on the hub (x86_64) returns them byte-identical, and the reverse
  4. overlay: `maculactl overlay --json` says kernel WireGuard on both, and each pings the
     other's overlay address

Run: make test-mixed-realm  (or python3 tests/qemu/test_mixed_realm.py --help)
"""
import argparse
import base64
import json
import os
import sys
import time

from guest import REPO, T0, GuestError, Machine, check, ctl_json, free_port, log

RESULTS = {}


def wait_for(what, timeout, f, interval=2):
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > deadline:
            raise GuestError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def agent_toml(me, role, peer_n, peer_id, realm):
    boot = "" if role == "hub" else 'bootstrap = ["192.168.77.1:4433"]\n'
    return (
        f'[node]\nname = "{role}-{me}"\nrole = "{role}"\n'
        f'[mesh]\nlisten = "192.168.77.{me}:4433"\n{boot}'
        "[storage]\nenabled = true\nquota_bytes = 67108864\nk = 1\nm = 1\n"
        f'[overlay]\nenabled = true\ninterface = "mcl0"\nrealm = "{realm}"\n'
        f'[[overlay.peers]]\nnode_id = "{peer_id}"\nendpoint = "192.168.77.{peer_n}:51820"\n'
    )


def write_file(g, path, data):
    """Writes bytes to a guest file through the console (base64 in short lines)."""
    b64 = base64.b64encode(data).decode()
    g.sh(f": > {path}.b64")
    for i in range(0, len(b64), 300):
        g.sh(f"printf '%s' '{b64[i:i + 300]}' >> {path}.b64")
    g.sh(f"base64 -d {path}.b64 > {path} && rm {path}.b64")


def read_file(g, path):
    _, out = g.sh(f"base64 {path}")
    return base64.b64decode("".join(out.split()))


def restart_agent(g, name):
    g.sh("killall maculad")
    wait_for(f"{name}: maculad back after the restart", 120,
             lambda: g.sh("maculactl status >/dev/null 2>&1", check=False)[0] == 0)


def peers_alive(g):
    ps, _ = ctl_json(g, "peers")
    return ps is not None and any(p.get("state") == "alive" for p in ps)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--x86-image", default=os.path.join(REPO, "build/image/x86_64/disk.img"))
    ap.add_argument("--aarch64-image", default=os.path.join(REPO, "build/image/aarch64/disk.img"))
    ap.add_argument("--work", default=os.path.join(REPO, "build/test-qemu/mixed-realm"))
    a = ap.parse_args()
    for img in (a.x86_image, a.aarch64_image):
        if not os.path.exists(img):
            sys.exit(f"test_mixed_realm: {img} missing; run `make image ARCH=... CONSOLE_SHELL=1` first")
    port = free_port()
    guests = {}
    try:
        for n, arch, mode in ((1, "x86_64", "listen"), (2, "aarch64", "connect")):
            image = a.x86_image if arch == "x86_64" else a.aarch64_image
            m = Machine(arch, image, os.path.join(a.work, arch),
                        qemu_args=["--socket-net", f"{mode}:127.0.0.1:{port}", "--mac", f"52:54:00:79:00:0{n}"])
            guests[n] = m.boot()
            if n == 1:
                time.sleep(1)  # the listener's socket must exist before the other connects
        names = {1: "hub (x86_64)", 2: "edge (aarch64)"}
        ids = {}
        for n, g in guests.items():
            g.wait_ready(timeout=300)
            g.wait_agent_ready(timeout=300)
            RESULTS[f"{g.m.arch}_agent_ready_s"] = round(time.monotonic() - g.t0, 1)
            g.sh(f"killall udhcpc 2>/dev/null; ip addr add 192.168.77.{n}/24 dev eth1 && ip link set eth1 up")
            st, out = ctl_json(g, "status")
            check(st is not None, f"{names[n]}: maculactl status --json failed:\n{out}")
            ids[n] = st["node_id"]
        log(f"both agents ready: hub {ids[1]}, edge {ids[2]}")
        hub, edge = guests[1], guests[2]

        # the realm first (its ID names the overlay /48), then each node's config
        rc, out = hub.sh("maculactl realm create --name hub-1 2>&1", check=False)
        check(rc == 0 and "created realm " in out, f"realm create failed:\n{out}")
        realm = out.split("created realm ", 1)[1].split(";")[0].strip()
        for n, g in guests.items():
            role = "hub" if n == 1 else "edge"
            write_file(g, "/data/macula/agent.toml", agent_toml(n, role, 3 - n, ids[3 - n], realm).encode())
            restart_agent(g, names[n])
        log(f"realm {realm}; agents restarted with mesh, storage and overlay")

        rc, out = hub.sh(f"maculactl realm admit {ids[2]} --name edge-2 -o /tmp/edge.cert 2>&1", check=False)
        check(rc == 0, f"realm admit failed:\n{out}")
        write_file(edge, "/tmp/edge.cert", read_file(hub, "/tmp/edge.cert"))
        rc, out = edge.sh("maculactl realm join /tmp/edge.cert 2>&1", check=False)
        check(rc == 0, f"realm join on the aarch64 edge failed:\n{out}")
        t = time.monotonic()
        for n, g in guests.items():
            wait_for(f"{names[n]} to see the other alive", 180, lambda g=g: peers_alive(g))
        RESULTS["membership_s"] = round(time.monotonic() - t, 1)
        log(f"membership: each sees the other alive after {RESULTS['membership_s']} s")

        for src, dst in ((edge, hub), (hub, edge)):
            g_name, d_name = src.m.arch, dst.m.arch
            src.sh("dd if=/dev/urandom of=/tmp/obj bs=1M count=3 2>/dev/null")
            _, want = src.sh("md5sum < /tmp/obj")
            t = time.monotonic()
            rc, out = src.sh("maculactl put /tmp/obj 2>&1", timeout=300, check=False)
            check(rc == 0, f"put on {g_name} failed:\n{out}")
            cap = next((w for w in out.split() if w.startswith("macula-cap")), None)
            check(cap is not None, f"put on {g_name} printed no capability:\n{out}")
            RESULTS[f"put_3MiB_{g_name}_s"] = round(time.monotonic() - t, 1)
            t = time.monotonic()
            rc, out = dst.sh(f"rm -f /tmp/back; maculactl get {cap} -o /tmp/back 2>&1", timeout=300, check=False)
            check(rc == 0, f"get on {d_name} of the object put on {g_name} failed:\n{out}")
            RESULTS[f"get_3MiB_{d_name}_s"] = round(time.monotonic() - t, 1)
            _, got = dst.sh("md5sum < /tmp/back")
            check(got.split()[0] == want.split()[0],
                  f"object put on {g_name} reads back different on {d_name}: {got} != {want}")
            log(f"put on {g_name}, get on {d_name}: byte-identical")

        overlays = {}
        for n, g in guests.items():
            ov = wait_for(f"{names[n]}: overlay up", 120, lambda g=g: ctl_json(g, "overlay")[0])
            check(ov.get("implementation") == "kernel",
                  f"{names[n]}: overlay implementation is {ov.get('implementation')!r}, not kernel: {ov}")
            overlays[n] = ov
        for n, g in guests.items():
            target = overlays[3 - n]["address"]
            rc, out = g.sh(f"ping -6 -c 3 -W 3 {target}", timeout=60, check=False)
            check(rc == 0, f"{names[n]} cannot reach {target} over kernel WireGuard:\n{out}")
        log("kernel WireGuard overlay: each pings the other")
    except GuestError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        print(json.dumps(RESULTS, indent=1))
        return 1
    finally:
        for g in guests.values():
            g.kill()
    RESULTS["total_s"] = round(time.monotonic() - T0, 1)
    print(json.dumps(RESULTS, indent=1))
    print(f"PASS: x86_64 hub and aarch64 edge form a realm (membership, put/get both ways, "
          f"kernel WireGuard) in {RESULTS['total_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
