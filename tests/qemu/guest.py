"""QEMU/TCG guest driver for the Macula OS image tests (pexpect on the serial console).

Each boot is one QEMU process started with -no-reboot: a guest `reboot` ends the process and the
test starts the next boot on the same disk (and, for UEFI, the same NVRAM), like a power cycle.
Every wait is bounded; on failure the tail of the console log is part of the error.
"""
import json
import os
import re
import socket
import subprocess
import time

import pexpect

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
READY = re.compile(r"MACULA-READY slot=(\w+) uptime=([\d.]+)")
AGENT_READY = re.compile(r"MACULA-AGENT-READY uptime=([\d.]+)")


T0 = time.monotonic()


class GuestError(Exception):
    pass


def log(msg):
    """A progress line, timed from the start of the test."""
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def check(cond, msg):
    if not cond:
        raise GuestError(msg)


def free_port():
    """A free TCP port on loopback (for a QEMU socket link between guests)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ctl_json(g, args, timeout=60):
    """`maculactl ARGS --json` in guest `g`: (parsed JSON or None on failure, raw output)."""
    rc, out = g.sh(f"maculactl {args} --json 2>&1", timeout=timeout, check=False)
    if rc != 0:
        return None, out
    start = min([i for i in (out.find("{"), out.find("[")) if i >= 0], default=0)
    try:
        return json.loads(out[start:]), out
    except ValueError:
        return None, out


class Machine:
    """A disk (+ NVRAM) that survives reboots; `boot()` starts one QEMU process on it."""

    def __init__(self, arch, image, workdir, extra_disks=(), qemu_args=(), rw_disks=(), grow_mib=0):
        self.arch = arch
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.disk = os.path.join(workdir, "disk.img")
        subprocess.run(["cp", "--sparse=always", image, self.disk], check=True)
        if grow_mib:
            # a card larger than the image: the first boot grows the data partition into the rest
            subprocess.run(["truncate", "-s", f"+{grow_mib}M", self.disk], check=True)
        self.vars = os.path.join(workdir, "OVMF_VARS.fd")
        if os.path.exists(self.vars):
            os.unlink(self.vars)  # image/qemu.sh starts from a fresh OVMF template
        self.extra_disks = list(extra_disks)
        self.rw_disks = list(rw_disks)
        self.qemu_args = list(qemu_args)
        self.log_path = os.path.join(workdir, "console.log")
        open(self.log_path, "w").close()
        self.boots = 0

    def argv(self):
        argv = [os.path.join(REPO, "image/qemu.sh"), "--arch", self.arch, "--disk", self.disk]
        if self.arch == "x86_64":
            argv += ["--vars", self.vars]
        for d in self.extra_disks:
            argv += ["--extra-disk", d]
        for d in self.rw_disks:
            argv += ["--rw-disk", d]
        return argv + self.qemu_args

    def boot(self):
        self.boots += 1
        return Guest(self)


class Guest:
    def __init__(self, machine):
        self.m = machine
        self.log = open(machine.log_path, "a", encoding="utf-8", errors="replace")
        self.log.write(f"\n===== boot {machine.boots}: {' '.join(machine.argv())}\n")
        self.log.flush()
        self.t0 = time.monotonic()
        self.p = pexpect.spawn(machine.argv()[0], machine.argv()[1:], encoding="utf-8",
                               codec_errors="replace", timeout=30, dimensions=(50, 500))
        self.p.logfile_read = self.log
        self.slot = None
        self.ready_wall = self.ready_uptime = None
        self.shell_ready = False
        self.commands = 0

    def tail(self, n=3000):
        self.log.flush()
        with open(self.m.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()[-n:]

    def expect(self, pattern, timeout, what):
        try:
            self.p.expect(pattern, timeout=timeout)
        except pexpect.TIMEOUT:
            raise GuestError(f"timed out after {timeout} s waiting for {what}\n--- console tail ---\n{self.tail()}")
        except pexpect.EOF:
            raise GuestError(f"QEMU exited while waiting for {what}\n--- console tail ---\n{self.tail()}")
        return self.p.match

    def wait_ready(self, timeout=120):
        """Wait for rcS's readiness line; returns the slot the boot loader chose."""
        m = self.expect(READY, timeout, "MACULA-READY")
        self.slot = m.group(1)
        self.ready_wall = time.monotonic() - self.t0
        self.ready_uptime = float(m.group(2))
        return self.slot

    def wait_agent_ready(self, timeout=120):
        m = self.expect(AGENT_READY, timeout, "MACULA-AGENT-READY (maculad owns io.macula.Agent)")
        return time.monotonic() - self.t0, float(m.group(1))

    def sh(self, cmd, timeout=60, check=True):
        """Run a shell command on the console; returns (exit code, output)."""
        if not self.shell_ready:
            self.p.sendline("")
            self.p.sendline("stty -echo; PS1='$ '")
            self.shell_ready = True
        # the markers as printed differ from the typed text, so an echoed command line never matches;
        # they are numbered, so the late output of a command that timed out never answers a later one
        self.commands += 1
        k = self.commands
        self.p.sendline(f"printf '_%s_\\n' B{k}; {cmd}; echo _E{k}_$?_")
        try:
            m = self.expect(re.compile(rf"_B{k}_\r*\n(.*?)_E{k}_(\d+)_", re.S), timeout,
                            f"command `{cmd}`")
        except GuestError:
            if self.p.isalive():
                self.p.sendcontrol("c")  # the shell is free for the next command
            raise
        out = m.group(1).replace("\r", "")
        rc = int(m.group(2))
        if check and rc != 0:
            raise GuestError(f"`{cmd}` failed with exit {rc}:\n{out}")
        return rc, out

    def wait_rauc(self, timeout=180):
        """RAUC's service is supervised and starts once the agent is ready (or 30 s after boot
        without it): wait until it owns its bus name."""
        if getattr(self, "rauc_up", False):
            return
        self.sh(f"i=0; while [ $i -lt {timeout * 5} ] && ! dbus-send --system --print-reply "
                "--dest=org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus.NameHasOwner "
                "string:de.pengutronix.rauc 2>/dev/null | grep -q 'boolean true'; do sleep 0.2; "
                "i=$((i+1)); done; [ $i -lt " + str(timeout * 5) + " ]", timeout=timeout + 30)
        self.rauc_up = True

    def reboot_and_wait_exit(self, timeout=60):
        """`reboot` in the guest; QEMU exits (-no-reboot)."""
        self.p.sendline("reboot")
        self.expect(pexpect.EOF, timeout, "QEMU to exit after reboot")
        self.close()

    def kill(self):
        if self.p.isalive():
            self.p.terminate(force=True)
        self.close()

    def close(self):
        self.p.close()
        self.log.close()


def esp_grubenv(disk):
    """The GRUB environment on the ESP of a stopped x86_64 disk image, as a dict."""
    tmp = disk + ".grubenv"
    subprocess.run(["mcopy", "-o", "-n", "-i", f"{disk}@@1M", "::EFI/BOOT/grubenv", tmp], check=True)
    out = subprocess.run(["grub-editenv", tmp, "list"], check=True, capture_output=True, text=True).stdout
    os.unlink(tmp)
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def set_esp_grubenv(disk, **values):
    tmp = disk + ".grubenv"
    subprocess.run(["mcopy", "-o", "-n", "-i", f"{disk}@@1M", "::EFI/BOOT/grubenv", tmp], check=True)
    subprocess.run(["grub-editenv", tmp, "set"] + [f"{k}={v}" for k, v in values.items()], check=True)
    subprocess.run(["mcopy", "-o", "-n", "-i", f"{disk}@@1M", tmp, "::EFI/BOOT/grubenv"], check=True)
    os.unlink(tmp)
