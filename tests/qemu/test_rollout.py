#!/usr/bin/env python3
"""A realm rollout in waves on three x86_64 guests running the real agent (docs/image.md
"Realm rollouts").

The guests boot the test image (`make image ARCH=x86_64 CONSOLE_SHELL=1`, version 0.0.1, slot A)
at once and share a LAN (QEMU multicast socket, eth1 192.168.77.1-3); guest 1 creates the realm
and is its hub, guests 2 and 3 are admitted as edges. The bundles are the ones `make test-qemu
ARCH=x86_64` built (its xfer disk, attached read-only to the hub):

  1. `maculactl update publish good-0.0.2.raucb --waves 1,100%` on the hub: the first wave (one
     guest) fetches the bundle from the realm's storage, installs it, reboots into slot B and
     reports good once its health check marked the slot good; only then the second wave (the
     other two) does the same. Every guest ends on slot B, version 0.0.2, marked good, and every
     guest's `update status --realm` says `done`.
  2. `update publish unhealthy-0.0.3.raucb` (its agent exits at once, so the new slot is never
     marked good): the first wave's guest installs it into slot A and reboots; it never reports
     good, the wave deadline passes and the rollout halts on every guest; the other two were not
     touched (slot B, 0.0.2, no report). The failing guest is reset (as a watchdog would: without
     an agent nothing reboots it), the boot loader returns to slot B, and its agent reports the
     rollback, signed, seen by the others.

QEMU reboots end the guest's QEMU process (-no-reboot); the test boots the same disk again, like a
power cycle, and gives eth1 its address again (the LAN has no DHCP server).

Run: make test-rollout  (or python3 tests/qemu/test_rollout.py --help)
"""
import argparse
import base64
import json
import os
import random
import sys
import time

from guest import REPO, T0, GuestError, Machine, check, ctl_json, free_port, log

RESULTS = {}
N = 3
# wave deadline of the unhealthy rollout: fetch + install + reboot fit well within it
BAD_DEADLINE_S = 120


def agent_toml(n):
    role = "hub" if n == 1 else "edge"
    boot = "" if n == 1 else 'bootstrap = ["192.168.77.1:4433"]\n'
    return (
        f'[node]\nname = "{role}-{n}"\nrole = "{role}"\n'
        f'[mesh]\nlisten = "192.168.77.{n}:4433"\n{boot}'
        "[storage]\nenabled = true\nquota_bytes = 134217728\nk = 2\nm = 1\n"
        "[update]\nsettle_s = 3\nfetch_bytes_per_s = 8388608\n"
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


def wait_for(what, timeout, f, interval=2):
    deadline = time.monotonic() + timeout
    while True:
        v = f()
        if v:
            return v
        if time.monotonic() > deadline:
            raise GuestError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Node:
    """One guest: its machine (disk survives reboots) and the running boot."""

    def __init__(self, n, image, work, port, xfer):
        self.n = n
        self.m = Machine("x86_64", image, os.path.join(work, f"g{n}"),
                         extra_disks=[xfer] if n == 1 else [], grow_mib=256,
                         qemu_args=["--socket-net", f"mcast:230.0.0.1:{port}",
                                    "--mac", f"52:54:00:7a:00:0{n}"])
        self.g = None
        self.boots = []

    def start(self):
        self.g = self.m.boot()
        self.t_boot = time.monotonic()

    def up(self, timeout=400):
        """After start(): readiness, eth1's address, the agent answering."""
        slot = self.g.wait_ready(timeout=timeout)
        self.g.sh(f"killall udhcpc 2>/dev/null; ip addr add 192.168.77.{self.n}/24 dev eth1; "
                  "ip link set eth1 up", check=False)
        wait_for(f"guest {self.n}: agent answering", timeout,
                 lambda: self.g.sh("maculactl status >/dev/null 2>&1", check=False)[0] == 0)
        self.boots.append(round(time.monotonic() - self.t_boot, 1))
        return slot

    def alive(self):
        return self.g.p.isalive()

    def restart_agent(self):
        self.g.sh("killall maculad")
        wait_for(f"guest {self.n}: agent back after the restart", 120,
                 lambda: self.g.sh("maculactl status >/dev/null 2>&1", check=False)[0] == 0)

    def version(self):
        _, out = self.g.sh(". /etc/os-release; echo $VERSION_ID")
        return out.strip()

    def rollout(self):
        """The guest's `update status --realm` (None while it cannot answer: rebooting, or too busy
        installing to answer within the minute; the timed-out command is interrupted)."""
        try:
            v, _ = ctl_json(self.g, "update status --realm")
        except GuestError as e:
            if not str(e).startswith(("QEMU exited", "timed out")):
                raise
            log(f"guest {self.n} does not answer: {str(e).splitlines()[0]}")
            return None
        return v


def node_line(view, node_id):
    for line in view.get("nodes", []):
        f = line.split(" ", 4)
        if f[0] == node_id:
            return f
    return None


def follow(nodes, ids, want, timeout):
    """Boots every guest whose QEMU ended (a reboot) again and waits until `want(view)` holds
    for the rollout view of every running guest. Returns the seconds it took."""
    t = time.monotonic()
    deadline = t + timeout
    while True:
        for node in nodes:
            if not node.alive():
                log(f"guest {node.n} rebooted: booting it again")
                node.g.close()
                node.start()
                slot = node.up()
                log(f"guest {node.n} up again on slot {slot} in {node.boots[-1]} s")
        views = [node.rollout() for node in nodes]
        if all(node.alive() for node in nodes) and all(v is not None and want(v) for v in views):
            return round(time.monotonic() - t, 1)
        if time.monotonic() > deadline:
            raise GuestError(f"timed out after {timeout} s; rollout views:\n"
                             + "\n".join(json.dumps(v) for v in views))
        time.sleep(3)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default=os.path.join(REPO, "build/image/x86_64/disk.img"))
    ap.add_argument("--xfer", default=os.path.join(REPO, "build/test-qemu/x86_64/xfer.img"),
                    help="the bundles disk `make test-qemu ARCH=x86_64` built")
    ap.add_argument("--work", default=os.path.join(REPO, "build/test-qemu/rollout"))
    a = ap.parse_args()
    for f, how in ((a.image, "make image ARCH=x86_64 CONSOLE_SHELL=1"),
                   (a.xfer, "make test-qemu ARCH=x86_64")):
        if not os.path.exists(f):
            sys.exit(f"test_rollout: {f} missing; run `{how}` first")
    port = random.randint(20000, 60000)
    nodes = []
    try:
        for n in range(1, N + 1):
            nodes.append(Node(n, a.image, a.work, port, a.xfer))
            nodes[-1].start()
        ids = {}
        for node in nodes:
            slot = node.up()
            check(slot == "A", f"guest {node.n} booted slot {slot}, not A")
            check(node.version() == "0.0.1", f"guest {node.n} does not run 0.0.1")
            st, out = ctl_json(node.g, "status")
            check(st is not None, f"guest {node.n}: maculactl status --json failed:\n{out}")
            ids[node.n] = st["node_id"]
        RESULTS["boot_s"] = [node.boots[0] for node in nodes]
        log(f"three agents ready on slot A (boot {RESULTS['boot_s']} s)")
        hub = nodes[0]

        # the configuration first: the founder's certificate takes the hub role from it
        for node in nodes:
            write_file(node.g, "/data/macula/agent.toml", agent_toml(node.n).encode())
            node.restart_agent()
        rc, out = hub.g.sh("maculactl realm create --name hub-1 2>&1", check=False)
        check(rc == 0 and "created realm " in out, f"realm create failed:\n{out}")
        for node in nodes[1:]:
            rc, out = hub.g.sh(f"maculactl realm admit {ids[node.n]} --name edge-{node.n} "
                               f"-o /tmp/edge.cert 2>&1", check=False)
            check(rc == 0, f"realm admit failed:\n{out}")
            write_file(node.g, "/tmp/edge.cert", read_file(hub.g, "/tmp/edge.cert"))
            rc, out = node.g.sh("maculactl realm join /tmp/edge.cert 2>&1", check=False)
            check(rc == 0, f"realm join on guest {node.n} failed:\n{out}")

        def formed():
            for node in nodes:
                ps, _ = ctl_json(node.g, "peers")
                if ps is None or sum(p.get("state") == "alive" for p in ps) < N - 1:
                    return False
            return True
        wait_for("every guest to see the two others alive", 180, formed)
        wait_for("storage running with the three nodes", 120, lambda: all(
            (ctl_json(n.g, "storage status")[0] or {}).get("stats", {}).get("nodes") == N
            for n in nodes))
        log("realm of 1 hub + 2 edges formed, storage on everywhere")
        mount_xfer = ("mkdir -p /tmp/xfer && { mountpoint -q /tmp/xfer || "
                      "mount -o ro $(findfs LABEL=xfer) /tmp/xfer; }")
        hub.g.sh(mount_xfer)

        # 1. the good bundle, in two waves
        t = time.monotonic()
        rc, out = hub.g.sh("maculactl update publish /tmp/xfer/good-0.0.2.raucb --waves 1,100% "
                           "--deadline 900 2>&1", timeout=300, check=False)
        check(rc == 0 and "published rollout" in out, f"publish failed:\n{out}")
        RESULTS["publish_good_s"] = round(time.monotonic() - t, 1)
        view = hub.rollout()
        check(view["version"] == "0.0.2", f"the rollout's version (read by RAUC): {view}")
        order = [line.split(" ")[0] for line in view["nodes"]]
        first = next(node for node in nodes if ids[node.n] == order[0])
        log(f"published 0.0.2 in {RESULTS['publish_good_s']} s; first wave: guest {first.n}")

        def first_good(v):
            line = node_line(v, order[0])
            return line is not None and line[2] == "good"
        RESULTS["wave1_good_s"] = follow(nodes, ids, first_good, 600)
        # the others had not started before the first wave was good
        for node in nodes:
            if node is not first:
                check(node.alive() and len(node.boots) == 1,
                      f"guest {node.n} rebooted before the first wave was good")
        log(f"wave 1 good after {RESULTS['wave1_good_s']} s")
        RESULTS["wave2_done_s"] = follow(nodes, ids, lambda v: v.get("phase") == "done", 600)
        RESULTS["rollout_good_s"] = round(time.monotonic() - t, 1)
        for node in nodes:
            st, out = ctl_json(node.g, "update status")
            check(st is not None and st["booted"] == "B", f"guest {node.n} not on slot B: {out}")
            check(node.version() == "0.0.2", f"guest {node.n} does not run 0.0.2")
            # `name bootname state boot-status version` per slot
            check(any(line.split()[:2] == ["rootfs.1", "B"] and line.split()[3] == "good"
                      for line in st["slots"]), f"guest {node.n}: slot B not marked good: {st}")
            line = node_line(hub.rollout(), ids[node.n])
            check(line is not None and line[2] == "good" and line[4] == "B 0.0.2",
                  f"guest {node.n}'s report: {line}")
        log(f"rollout of 0.0.2 done in {RESULTS['rollout_good_s']} s: every guest on B, good")

        # 2. the unhealthy bundle halts at the first wave
        hub.g.sh(mount_xfer)  # the hub rebooted meanwhile
        t = time.monotonic()
        rc, out = hub.g.sh("maculactl update publish /tmp/xfer/unhealthy-0.0.3.raucb --waves 1,100% "
                           f"--deadline {BAD_DEADLINE_S} 2>&1", timeout=300, check=False)
        check(rc == 0 and "published rollout" in out, f"publish failed:\n{out}")
        view = hub.rollout()
        order = [line.split(" ")[0] for line in view["nodes"]]
        bad = next(node for node in nodes if ids[node.n] == order[0])
        others = [node for node in nodes if node is not bad]
        boots_before = {node.n: len(node.boots) for node in others}
        log(f"published 0.0.3; first wave: guest {bad.n}")
        # it installs and reboots into its broken agent: no agent, nothing answers; the others
        # halt at the deadline
        bad_booted = wait_for(f"guest {bad.n} to reboot into the new slot", 400,
                              lambda: not bad.alive())
        check(bad_booted, "no reboot")
        bad.g.close()
        bad.start()
        slot = bad.g.wait_ready(timeout=400)
        check(slot == "A", f"guest {bad.n} booted {slot} after installing 0.0.3, not A")
        log(f"guest {bad.n} runs slot A (0.0.3, its agent broken)")

        def halted(v):
            return v.get("phase") == "halted" and v.get("halted_by") == ids[bad.n]
        for node in others:
            wait_for(f"guest {node.n} to see the rollout halted", BAD_DEADLINE_S + 120,
                     lambda node=node: halted(node.rollout() or {}), interval=5)
        RESULTS["halted_after_s"] = round(time.monotonic() - t, 1)
        for node in others:
            check(node.alive() and len(node.boots) == boots_before[node.n],
                  f"guest {node.n} rebooted during the halted rollout")
            st, _ = ctl_json(node.g, "update status")
            check(st["booted"] == "B" and node.version() == "0.0.2", f"guest {node.n} was touched: {st}")
            line = node_line(node.rollout(), ids[node.n])
            check(line is not None and line[2] == "-", f"guest {node.n} took part: {line}")
        log(f"halted after {RESULTS['halted_after_s']} s; the other guests untouched on B, 0.0.2")

        # reset the failing guest: the boot loader returns to B; its agent reports the rollback
        bad.g.kill()
        bad.start()
        slot = bad.up()
        check(slot == "B", f"guest {bad.n} booted {slot} after the reset, not its old slot B")
        check(bad.version() == "0.0.2", f"guest {bad.n} does not run 0.0.2 after the fallback")

        def rolled_back(v):
            line = node_line(v, ids[bad.n])
            return halted(v) and line is not None and line[2] == "failed" and "rolled back" in line[4]
        wait_for("every guest to hear the rollback report", 180,
                 lambda: all(rolled_back(node.rollout() or {}) for node in nodes), interval=5)
        RESULTS["rollout_bad_s"] = round(time.monotonic() - t, 1)
        _, table = hub.g.sh("maculactl update status --realm")
        log(f"guest {bad.n} back on B, reported the rollback:\n{table}")
    except GuestError as e:
        print(f"FAIL: {e}", file=sys.stderr)
        for node in nodes:
            if node.g is not None and node.alive():
                try:
                    _, out = node.g.sh("logread 2>/dev/null | grep -a 'macula::update' | tail -20",
                                       check=False)
                    print(f"--- guest {node.n}: the agent's update log ---\n{out}", file=sys.stderr)
                except GuestError:
                    pass
        print(f"console logs: {a.work}/g*/console.log", file=sys.stderr)
        print(json.dumps(RESULTS, indent=1))
        # again last: a CI log keeps its head and tail
        print(f"FAIL: {str(e)[:2000]}", file=sys.stderr)
        return 1
    finally:
        for node in nodes:
            if node.g is not None:
                node.g.kill()
    RESULTS["total_s"] = round(time.monotonic() - T0, 1)
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(RESULTS, f, indent=2)
    print(json.dumps(RESULTS, indent=1))
    print(f"PASS: 0.0.2 rolled out in two waves to three guests; 0.0.3 halted at its first wave "
          f"and rolled back, in {RESULTS['total_s']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
