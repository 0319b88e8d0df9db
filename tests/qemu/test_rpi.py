#!/usr/bin/env python3
"""Raspberry Pi SD card images (make image BOARD=rpi4|rpi5): what is on the card, and a boot.

  1. partition table: type, offsets, sizes, names (GPT) / types and disk signature (MBR)
  2. boot partition(s): GPU firmware, U-Boot + boot.scr + uboot.env (Pi 4) or tryboot
     autoboot.txt + per-slot kernel, initramfs, DTBs, config.txt, cmdline.txt (Pi 5); DTBs are
     byte-identical to the kernel package's (the card's DTBs are never modified)
  3. the slot layout RAUC expects: every slot in the image's system.conf names a partition that
     exists on the card with the right file system; rootfs-a == rootfs-b; U-Boot environment file
     where fw_env.config says; keyring; the agent (aarch64) when the image carries it
  4. the artefacts: sdcard.img.zst + .bmap restore the image byte for byte (bmaptool copy); the
     update bundle verifies with the image's keyring and has the board's compatible
  5. Pi 4 only: the card's own kernel, DTB and slot A booted in QEMU raspi4b (emulator-only DTB
     edits, see emulator_dtb) to MACULA-READY slot=A and, with the agent, MACULA-AGENT-READY;
     then rauc status, partition links, WireGuard module, maculactl status on the console

Run: make test-rpi (both boards) or python3 tests/qemu/test_rpi.py --board rpi4 --image-dir DIR --keys DIR
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib

from guest import REPO, T0, GuestError, Machine, check, log

RESULTS = {}
MIB = 2**20


def out(cmd, **kw):
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, **kw).stdout


def sha(path, offset=0, size=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(offset)
        left = size if size is not None else os.path.getsize(path) - offset
        while left > 0:
            b = f.read(min(left, 8 * MIB))
            if not b:
                break
            h.update(b)
            left -= len(b)
    return h.hexdigest()


class Card:
    """The partitions of sdcard.img, read without mounting (mtools for vfat, debugfs for ext4)."""

    def __init__(self, img, work):
        self.img, self.work = img, work
        self.table = json.loads(out(["sfdisk", "-J", img]))["partitiontable"]
        self.parts = self.table["partitions"]

    def part(self, n):
        return self.parts[n - 1]

    def offset(self, n):
        return self.part(n)["start"] * 512

    def vfat_ls(self, n, path="::"):
        txt = out(["mdir", "-b", "-i", f"{self.img}@@{self.offset(n)}", path], text=True)
        return sorted(line.rstrip("/").split("/")[-1] for line in txt.splitlines() if line.strip())

    def vfat_get(self, n, name):
        dest = os.path.join(self.work, "vfat-" + name.replace("/", "_"))
        subprocess.run(["mcopy", "-o", "-n", "-i", f"{self.img}@@{self.offset(n)}", f"::{name}", dest], check=True)
        with open(dest, "rb") as f:
            data = f.read()
        os.unlink(dest)
        return data

    def ext4_extract(self, n):
        """Slot n as a sparse file (debugfs cannot read at an offset)."""
        dest = os.path.join(self.work, f"part{n}.ext4")
        p = self.part(n)
        subprocess.run(["dd", f"if={self.img}", f"of={dest}", "bs=512", f"skip={p['start']}",
                        f"count={p['size']}", "conv=sparse", "status=none"], check=True)
        return dest

    def fs_magic(self, n):
        with open(self.img, "rb") as f:
            f.seek(self.offset(n))
            head = f.read(2048)
        if head[1080:1082] == b"\x53\xef":
            return "ext4"
        if head[82:90] == b"FAT32   " or head[54:62] in (b"FAT16   ", b"FAT12   "):
            return "vfat"
        return "unknown"


def debugfs_cat(ext4, path):
    p = subprocess.run(["debugfs", "-R", f"cat {path}", ext4], capture_output=True, check=True)
    return p.stdout


def debugfs_dump(ext4, path, dest):
    subprocess.run(["debugfs", "-R", f"dump {path} {dest}", ext4], capture_output=True, check=True)
    check(os.path.getsize(dest) > 0, f"{path} missing from the slot")


def parse_system_conf(text):
    sections, cur = {}, None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            cur = line.strip("[]")
            sections[cur] = {}
        elif "=" in line and cur:
            k, v = line.split("=", 1)
            sections[cur][k.strip()] = v.strip()
    return sections


def check_table(a, card):
    t = card.table
    mib = lambda n: card.part(n)["size"] * 512 // MIB  # noqa: E731
    if a.board == "rpi4":
        check(t["label"] == "dos", f"Pi 4 card must be MBR, is {t['label']}")
        check(t.get("id") == "0x6d61636c", f"MBR disk signature {t.get('id')}, expected 0x6d61636c (root=PARTUUID)")
        check(len(card.parts) == 4, f"{len(card.parts)} partitions, expected 4")
        types = [p["type"] for p in card.parts]
        check(types == ["c", "83", "83", "83"], f"partition types {types}")
        check(card.part(1).get("bootable") is True, "boot partition not marked bootable")
        check(card.offset(1) == 4 * MIB, f"boot partition at {card.offset(1)}, expected 4 MiB")
        sizes = [mib(n) for n in range(1, 5)]
        check(sizes == [64, 512, 512, 256], f"partition sizes {sizes} MiB")
    else:
        check(t["label"] == "gpt", f"Pi 5 card must be GPT, is {t['label']}")
        names = [p.get("name") for p in card.parts]
        check(names == ["esp", "boot-a", "boot-b", "rootfs-a", "rootfs-b", "data"], f"GPT names {names}")
        fat = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
        linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
        types = [p["type"] for p in card.parts]
        check(types == [fat] * 3 + [linux] * 3, f"GPT types {types}")
        check(card.offset(1) == 4 * MIB, f"esp at {card.offset(1)}")
        check(mib(4) == mib(5) == 512 and mib(2) == mib(3), "slot partition sizes differ")
    RESULTS["partitions"] = [{k: p.get(k) for k in ("start", "size", "type", "name")} for p in card.parts]
    log(f"partition table ok: {t['label']}, {len(card.parts)} partitions")


def check_uboot_env(data):
    """uboot.env: CRC32 (LE) of the rest, then NUL-separated var=value, 16 KiB."""
    check(len(data) == 0x4000, f"uboot.env is {len(data)} bytes, expected 16 KiB (fw_env.config)")
    crc = struct.unpack("<I", data[:4])[0]
    check(crc == zlib.crc32(data[4:]) & 0xFFFFFFFF, "uboot.env CRC is wrong: fw_printenv and U-Boot would reject it")
    env = dict(kv.split("=", 1) for kv in data[4:].split(b"\0\0")[0].decode().split("\0") if "=" in kv)
    check(env == {"BOOT_ORDER": "A B", "BOOT_A_LEFT": "3", "BOOT_B_LEFT": "0"}, f"uboot.env: {env}")


def check_boot(a, card, bootfiles):
    want_dtb = {f: open(os.path.join(bootfiles, f), "rb").read() for f in os.listdir(bootfiles) if f.endswith(".dtb")}
    if a.board == "rpi4":
        files = card.vfat_ls(1)
        for f in ("start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb", "u-boot.bin", "config.txt", "boot.scr", "uboot.env"):
            check(f in files, f"{f} missing from the boot partition ({files})")
        fw = os.path.join(bootfiles, "rpi-firmware")
        for f in ("start4.elf", "fixup4.dat"):
            check(card.vfat_get(1, f) == open(os.path.join(fw, f), "rb").read(), f"{f} differs from raspi-firmware's")
        check(card.vfat_get(1, "u-boot.bin") == open(os.path.join(bootfiles, "u-boot.bin"), "rb").read(),
              "u-boot.bin differs from u-boot-rpi's rpi_arm64 build")
        check(card.vfat_get(1, "bcm2711-rpi-4-b.dtb") == want_dtb["bcm2711-rpi-4-b.dtb"],
              "the card's DTB differs from the kernel package's")
        cfg = card.vfat_get(1, "config.txt").decode()
        for line in ("arm_64bit=1", "kernel=u-boot.bin", "enable_uart=1"):
            check(line in cfg.splitlines(), f"config.txt lacks {line}:\n{cfg}")
        scr = card.vfat_get(1, "boot.scr")
        check(struct.unpack(">I", scr[:4])[0] == 0x27051956, "boot.scr has no U-Boot image header (mkimage)")
        check(scr[30] == 6, f"boot.scr image type {scr[30]}, expected 6 (script)")
        body = scr[64 + 8:].decode(errors="replace")
        for s in ("BOOT_ORDER", "BOOT_A_LEFT", "fatwrite", "root=PARTUUID=${rootuuid}", "/boot/Image",
                  "/boot/initrd.img", "booti", "console=ttyS0,115200"):
            check(s in body, f"boot.scr lacks {s!r}")
        check_uboot_env(card.vfat_get(1, "uboot.env"))
    else:
        esp = card.vfat_ls(1)
        check("autoboot.txt" in esp, f"autoboot.txt missing from the esp ({esp})")
        ab = card.vfat_get(1, "autoboot.txt").decode()
        check(ab == "[all]\ntryboot_a_b=1\nboot_partition=2\n[tryboot]\nboot_partition=3\n", f"autoboot.txt:\n{ab}")
        for n, s in ((2, "a"), (3, "b")):
            files = card.vfat_ls(n)
            for f in ("Image", "initrd.img", "bcm2712-rpi-5-b.dtb", "bcm2712-d-rpi-5-b.dtb", "config.txt", "cmdline.txt"):
                check(f in files, f"{f} missing from boot-{s} ({files})")
            for f in ("bcm2712-rpi-5-b.dtb", "bcm2712-d-rpi-5-b.dtb"):
                check(card.vfat_get(n, f) == want_dtb[f], f"boot-{s}/{f} differs from the kernel package's")
            cfg = card.vfat_get(n, "config.txt").decode().splitlines()
            for line in ("arm_64bit=1", "kernel=Image", "enable_uart=1", "initramfs initrd.img followkernel"):
                check(line in cfg, f"boot-{s}/config.txt lacks {line}")
            cmd = card.vfat_get(n, "cmdline.txt").decode()
            check(f"root=PARTLABEL=rootfs-{s}" in cmd and f"rauc.slot={s.upper()}" in cmd
                  and "console=ttyAMA10,115200" in cmd, f"boot-{s}/cmdline.txt: {cmd}")
    log("boot partition ok")


def check_slots(a, card):
    ra = card.ext4_extract(2 if a.board == "rpi4" else 4)
    conf = parse_system_conf(debugfs_cat(ra, "/etc/rauc/system.conf").decode())
    want = {"rpi4": "macula-rpi4-64", "rpi5": "macula-rpi5"}[a.board]
    check(conf["system"].get("compatible") == want, f"compatible {conf['system'].get('compatible')}, expected {want}")
    check(debugfs_cat(ra, "/etc/rauc/keyring.pem") == open(os.path.join(a.keys, "dev.cert.pem"), "rb").read(),
          "the image's keyring is not the signing certificate")
    # partition names as the booted system sees them: GPT names, or partmap on MBR
    if card.table["label"] == "gpt":
        names = {p["name"]: i + 1 for i, p in enumerate(card.parts)}
    else:
        pm = debugfs_cat(ra, "/etc/macula/partmap").decode()
        names = {ln.split()[1]: int(ln.split()[0]) for ln in pm.splitlines() if ln.strip() and not ln.startswith("#")}
    check({"esp", "rootfs-a", "rootfs-b", "data"} <= set(names), f"partition names {names}")
    slots = {k: v for k, v in conf.items() if k.startswith("slot.")}
    check({"slot.rootfs.0", "slot.rootfs.1"} <= set(slots), f"slots {list(slots)}")
    for name, s in slots.items():
        dev = s["device"]
        check(dev.startswith("/dev/disk/by-partlabel/"), f"{name}: device {dev}")
        label = dev.rsplit("/", 1)[1]
        check(label in names, f"{name}: {label} is not a partition on the card")
        fs = card.fs_magic(names[label])
        check(fs == s["type"], f"{name}: {label} holds {fs}, system.conf says {s['type']}")
    check(slots["slot.rootfs.0"].get("bootname") == "A" and slots["slot.rootfs.1"].get("bootname") == "B",
          "bootnames are not A/B")
    pa, pb = names["rootfs-a"], names["rootfs-b"]
    check(sha(a.img, card.offset(pa), card.part(pa)["size"] * 512) == sha(a.img, card.offset(pb), card.part(pb)["size"] * 512),
          "rootfs-b is not a copy of rootfs-a")
    if a.board == "rpi4":
        check(conf["system"].get("bootloader") == "uboot", "Pi 4 uses RAUC's uboot backend")
        fw = debugfs_cat(ra, "/etc/fw_env.config").decode()
        check(re.search(r"^/esp/uboot\.env\s+0x0+\s+0x4000", fw, re.M), f"fw_env.config: {fw}")
        check(b"fw_setenv" in out(["debugfs", "-R", "ls -l /usr/bin", ra]), "fw_setenv (libubootenv-tool) missing")
    else:
        check(conf["system"].get("bootloader") == "custom", "Pi 5 uses the custom tryboot backend")
        backend = conf.get("handlers", {}).get("bootloader-custom-backend")
        check(backend and debugfs_cat(ra, backend).startswith(b"#!/bin/sh"), f"custom backend {backend} missing")
        for i, s in ((0, "a"), (1, "b")):
            check(slots[f"slot.boot.{i}"].get("parent") == f"rootfs.{i}", f"slot.boot.{i} parent")
    mods = debugfs_cat(ra, "/etc/macula/modules.board").decode()
    check("mmc_block" in mods, "modules.board missing")
    kver = out(["debugfs", "-R", "ls /usr/lib/modules", ra], text=True, stderr=subprocess.DEVNULL).split()
    kver = [k for k in kver if re.match(r"^\d+\.\d+", k)]
    check(len(kver) == 1, f"kernel modules dirs {kver}")
    wg = out(["debugfs", "-R", f"ls /usr/lib/modules/{kver[0]}/kernel/drivers/net/wireguard", ra], text=True)
    check("wireguard.ko" in wg, "wireguard.ko missing from the slot")
    RESULTS["kernel"] = kver[0]
    maculad = os.path.join(a.work, "maculad")
    subprocess.run(["debugfs", "-R", f"dump /usr/bin/maculad {maculad}", ra], capture_output=True)
    RESULTS["agent"] = os.path.exists(maculad) and os.path.getsize(maculad) > 0
    if RESULTS["agent"]:
        check("AArch64" in out(["readelf", "-h", maculad], text=True), "maculad is not an aarch64 binary")
        RESULTS["maculad_bytes"] = os.path.getsize(maculad)
        os.unlink(maculad)
    os.unlink(ra)
    log(f"RAUC slot layout ok (compatible {want}, kernel {kver[0]}, agent {'yes' if RESULTS['agent'] else 'NO'})")


def check_artefacts(a, card):
    img = a.img
    restored = os.path.join(a.work, "restored.img")
    t = time.monotonic()
    subprocess.run(["bmaptool", "-q", "copy", "--bmap", img + ".bmap", img + ".zst", restored], check=True)
    RESULTS["bmaptool_copy_s"] = round(time.monotonic() - t, 1)
    check(os.path.getsize(restored) == os.path.getsize(img), "restored image size differs")
    check(sha(restored) == sha(img), "bmaptool copy of sdcard.img.zst differs from sdcard.img")
    os.unlink(restored)
    bundles = [f for f in os.listdir(a.image_dir) if f.startswith(f"macula-{a.board}-") and f.endswith(".raucb")]
    check(len(bundles) == 1, f"update bundles {bundles}")
    info = out(["rauc", "info", "--output-format=json", "--keyring", os.path.join(a.keys, "dev.cert.pem"),
                os.path.join(a.image_dir, bundles[0])], text=True, stderr=subprocess.DEVNULL)
    info = json.loads(info)
    want = {"rpi4": "macula-rpi4-64", "rpi5": "macula-rpi5"}[a.board]
    check(info["compatible"] == want, f"bundle compatible {info['compatible']}")
    classes = sorted(k for i in info["images"] for k in i)
    check(classes == (["rootfs"] if a.board == "rpi4" else ["boot", "rootfs"]), f"bundle images {classes}")
    RESULTS.update(sdcard_apparent_bytes=os.path.getsize(img), sdcard_allocated_bytes=os.stat(img).st_blocks * 512,
                   zst_bytes=os.path.getsize(img + ".zst"),
                   bundle_bytes=os.path.getsize(os.path.join(a.image_dir, bundles[0])))
    log(f"artefacts ok: .zst {RESULTS['zst_bytes'] // MIB} MiB restores byte-identical with the .bmap; "
        f"{bundles[0]} verifies ({want})")


# Nodes QEMU's raspi4b does not model; their drivers fault at probe. The card's DTB stays as is.
RASPI4B_DISABLE = ("brcm,l2-intc", "brcmstb-i2c", "bcm2711-hdmi", "bcm2711-hvs", "bcm2711-pixelvalve",
                   "bcm2711-vc5", "bcm2835-vec", "bcm2711-rpivid")


def emulator_dtb(src, dest):
    """A copy of the card's DTB that QEMU raspi4b can boot (see the note in docs/image.md):
    - disable the nodes in RASPI4B_DISABLE;
    - emmc2's regulators hang off the firmware GPIO expander, which QEMU does not answer: drop
      vmmc/vqmmc-supply so sdhci-iproc probes;
    - QEMU wires the SD card to the Arasan SDHCI at 0x7e300000 (the Pi 4's Wi-Fi SDIO bus), whose
      mmc-pwrseq also waits for the expander: drop it;
    - QEMU's -serial is the PL011, which the DTB gives to Bluetooth (a serdev child node that
      takes the port's input away from the console): remove that child. The card's console is
      the mini UART (ttyS0, stdout-path serial1)."""
    shutil.copy(src, dest)
    dts = out(["dtc", "-q", "-I", "dtb", "-O", "dts", src], text=True)
    path, disable, emmc2 = [], [], None
    for line in dts.splitlines():
        s = line.strip()
        m = re.match(r"^(?:[\w-]+:\s*)?([^\s{]+)\s*\{$", s)
        if m:
            path.append(m.group(1))
            continue
        if s == "};":
            path.pop()
            continue
        node = "/" + "/".join(path[1:])
        if s.startswith("compatible =") and any(c in s for c in RASPI4B_DISABLE):
            disable.append(node)
        if s.startswith("compatible =") and "brcm,bcm2711-emmc2" in s:
            emmc2 = node
    for node in disable:
        subprocess.run(["fdtput", "-t", "s", dest, node, "status", "disabled"], check=True)
    check(emmc2, "no emmc2 node in the DTB")
    for prop in ("vmmc-supply", "vqmmc-supply"):
        subprocess.run(["fdtput", "-d", dest, emmc2, prop], check=False)
    subprocess.run(["fdtput", "-d", dest, "/soc/mmc@7e300000", "mmc-pwrseq"], check=True)
    subprocess.run(["fdtput", "-r", dest, "/soc/serial@7e201000/bluetooth"], check=True)
    return disable


class Raspi4b(Machine):
    """The card (padded to a power of two: QEMU's SD model requires it) in QEMU raspi4b, started
    from the card's own kernel and initramfs (slot A) and the card's DTB (emulator copy)."""

    def __init__(self, image, workdir, kernel, initrd, dtb, cmdline):
        super().__init__("aarch64", image, workdir)
        size = os.path.getsize(self.disk)
        p2 = 1 << (size - 1).bit_length()
        os.truncate(self.disk, p2)
        self.kernel, self.initrd, self.dtb, self.cmdline = kernel, initrd, dtb, cmdline

    def argv(self):
        return ["qemu-system-aarch64", "-M", "raspi4b", "-m", "2G", "-accel", "tcg", "-nographic",
                "-no-reboot", "-serial", "mon:stdio", "-kernel", self.kernel, "-initrd", self.initrd,
                "-dtb", self.dtb, "-append", self.cmdline,
                "-drive", f"file={self.disk},if=sd,format=raw"]


def boot_raspi4b(a, card):
    w = os.path.join(a.work, "raspi4b")
    os.makedirs(w, exist_ok=True)
    ra = card.ext4_extract(2)
    kernel, initrd = os.path.join(w, "Image"), os.path.join(w, "initrd.img")
    debugfs_dump(ra, "/boot/Image", kernel)
    debugfs_dump(ra, "/boot/initrd.img", initrd)
    os.unlink(ra)
    card_dtb = os.path.join(w, "card.dtb")
    with open(card_dtb, "wb") as f:
        f.write(card.vfat_get(1, "bcm2711-rpi-4-b.dtb"))
    dtb = os.path.join(w, "raspi4b.dtb")
    disabled = emulator_dtb(card_dtb, dtb)
    # what boot.scr passes for slot A (U-Boot computes the PARTUUID from the MBR signature), with
    # the PL011 as console (QEMU's -serial; the card uses the mini UART) and the emulator's needs
    sig = card.table["id"][2:].lower()
    cmdline = (f"earlycon=pl011,0xfe201000 console=ttyAMA0,115200 clk_ignore_unused quiet panic=-1 ro rootwait "
               f"root=PARTUUID={sig}-02 rauc.slot=A")
    m = Raspi4b(a.img, w, kernel, initrd, dtb, cmdline)
    log(f"QEMU raspi4b: card kernel + DTB ({len(disabled)} nodes disabled in the emulator copy), slot A")
    g = m.boot()
    try:
        check(g.wait_ready(timeout=300) == "A", f"raspi4b booted slot {g.slot}")
        RESULTS["raspi4b_ready_wall_s"] = round(g.ready_wall, 1)
        RESULTS["raspi4b_ready_uptime_s"] = g.ready_uptime
        log(f"MACULA-READY slot=A after {g.ready_wall:.1f} s (guest uptime {g.ready_uptime} s)")
        if RESULTS["agent"]:
            wall, up = g.wait_agent_ready(timeout=300)
            RESULTS["raspi4b_agent_ready_wall_s"] = round(wall, 1)
            RESULTS["raspi4b_agent_ready_uptime_s"] = up
            log(f"MACULA-AGENT-READY after {wall:.1f} s (guest uptime {up} s)")
            rc, o = g.sh("maculactl status", timeout=120, check=False)
            check(rc == 0, f"maculactl status failed ({rc}):\n{o}")
        else:
            log("NOTE: image without the agent: MACULA-AGENT-READY not checked")
        _, o = g.sh("ls /dev/disk/by-partlabel")
        check(o.split() == ["data", "esp", "rootfs-a", "rootfs-b"], f"by-partlabel links: {o.split()}")
        g.wait_rauc()
        _, o = g.sh("rauc status", timeout=180)
        check(re.search(r"Booted from: rootfs\.0 \(A\)", o), f"rauc status:\n{o}")
        _, o = g.sh("fw_printenv BOOT_ORDER")
        check("BOOT_ORDER=A B" in o, f"fw_printenv: {o}")
        g.sh("modprobe wireguard && grep -q '^wireguard ' /proc/modules")
        _, o = g.sh("uname -r")
        check(o.strip() == RESULTS["kernel"], f"running kernel {o.strip()}")
    finally:
        g.kill()
    RESULTS["raspi4b_console_log"] = m.log_path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--board", required=True, choices=["rpi4", "rpi5"])
    ap.add_argument("--image-dir", required=True)
    ap.add_argument("--keys", required=True)
    ap.add_argument("--work", help="scratch directory (default build/test-rpi/BOARD)")
    a = ap.parse_args()
    a.img = os.path.join(a.image_dir, "sdcard.img")
    a.work = os.path.abspath(a.work or os.path.join(REPO, "build/test-rpi", a.board))
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    if not os.path.exists(a.img):
        sys.exit(f"test_rpi.py: {a.img} missing; run make image BOARD={a.board}")
    card = Card(a.img, a.work)
    failed = None
    try:
        check_table(a, card)
        check_boot(a, card, os.path.join(a.image_dir, "bootfiles"))
        check_slots(a, card)
        check_artefacts(a, card)
        if a.board == "rpi4":
            boot_raspi4b(a, card)
    except GuestError as e:
        failed = str(e)
    RESULTS["total_s"] = round(time.monotonic() - T0, 1)
    with open(os.path.join(a.work, "results.json"), "w") as f:
        json.dump(RESULTS, f, indent=1)
    # keep the console log, drop the scratch copies of the card
    for root, _, files in os.walk(a.work):
        for fn in files:
            if not fn.endswith((".log", ".json")):
                os.unlink(os.path.join(root, fn))
    if failed:
        print(f"FAIL ({a.board}): {failed}", file=sys.stderr)
        sys.exit(1)
    log(f"PASS ({a.board}): {json.dumps({k: v for k, v in RESULTS.items() if k != 'partitions'})}")


if __name__ == "__main__":
    main()
