#!/bin/bash
# Offline Macula OS image builder: Debian bookworm binary packages + overlay/ + the agent
# -> rootfs.ext4 (one A/B slot), kernel + initramfs, and a GPT disk image (esp, rootfs-a,
# rootfs-b, data) made by genimage with the board config shared with Buildroot.
#
#   image/build.sh --arch x86_64|aarch64 --out DIR --keyring CERT.pem [--version V]
#                  [--agent-dir DIR | --no-agent] [--rootfs-only] [--broken-agent] [--base DIR]
#                  [--console-shell] [--board qemu|rpi4|rpi5]
#
# --board rpi4|rpi5 (implies --arch aarch64) makes a Raspberry Pi SD card image (sdcard.img) from
# Debian trixie packages instead of the QEMU disk.img from bookworm: the board's kernel, firmware
# and boot partition(s), the same slots, overlay and agent (see image/rpi.mk, docs/image.md).
#
# Two stages: the base (kernel, packages, modules, initramfs; kept in OUT/base) and the slot
# (overlay, os-release, keyring, agent -> rootfs.ext4, then the disk). --base DIR reuses the base
# of an earlier build's OUT dir, so update-bundle variants take seconds.
# --agent-dir DIR   directory holding maculad and maculactl built for --arch (required unless
#                   --no-agent). --broken-agent installs an agent that exits at once (used by the
#                   rollback test: an update whose agent never becomes healthy).
# Needs root (file ownership in the rootfs) and the host packages from image/deps.sh.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
ARCH= OUT= KEYRING= VERSION=0.0.1 AGENT_DIR= NO_AGENT=0 ROOTFS_ONLY=0 BROKEN_AGENT=0 BASE= CONSOLE_SHELL=0
BOARD=qemu
usage() { sed -n '2,20p' "$0" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) ARCH=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --keyring) KEYRING=$2; shift 2 ;;
    --version) VERSION=$2; shift 2 ;;
    --agent-dir) AGENT_DIR=$2; shift 2 ;;
    --no-agent) NO_AGENT=1; shift ;;
    --rootfs-only) ROOTFS_ONLY=1; shift ;;
    --broken-agent) BROKEN_AGENT=1; shift ;;
    --base) BASE=$2; shift 2 ;;
    --console-shell) CONSOLE_SHELL=1; shift ;;
    --board) BOARD=$2; shift 2 ;;
    *) usage ;;
  esac
done
die() { echo "build.sh: ERROR: $*" >&2; exit 1; }
step() { echo "build.sh: [$(( $(date +%s) - T0 ))s] $*"; }
T0=$(date +%s)
[ -n "$OUT" ] && [ -n "$KEYRING" ] || usage
[ -f "$KEYRING" ] || die "keyring $KEYRING not found (make image creates it under build/keys)"
[ "$(id -u)" = 0 ] || die "run as root: the root filesystem needs root-owned files"
if [ "$NO_AGENT" = 0 ]; then
  [ -n "$AGENT_DIR" ] || die "--agent-dir DIR or --no-agent is required"
  for b in maculad maculactl; do
    [ -x "$AGENT_DIR/$b" ] || die "$AGENT_DIR/$b missing; build the agent for $ARCH first (see image/image.mk)"
  done
fi

# SUITE: the Debian release of every package; KERNEL_ARGS: where debs.py takes the kernel from;
# BOOT_PKGS: boot firmware/loader packages (not in the rootfs); BOARD_MODULES: the board's drivers
# (no udev here: rcS loads them from /etc/macula/modules.board; the initramfs gets the SD host).
SUITE=bookworm KERNEL_ARGS= BOOT_PKGS= BOARD_MODULES= DISK=disk.img
case "$BOARD" in
  qemu) ;;
  rpi4) ARCH=${ARCH:-aarch64} SUITE=trixie BOOT_PKGS="raspi-firmware u-boot-rpi" DISK=sdcard.img ;;
  rpi5) ARCH=${ARCH:-aarch64} SUITE=trixie KERNEL_ARGS=--backports DISK=sdcard.img ;;
  *) die "unknown --board $BOARD (qemu, rpi4 or rpi5)" ;;
esac
[ -n "$ARCH" ] || usage
case "$ARCH" in
  x86_64) DEBARCH=amd64 BOARDNAME=qemu-x86_64 ELFMACH="Advanced Micro Devices X86-64"
          EXTRA_PKGS="libdevmapper1.02.1 libudev1" ;;
  aarch64) DEBARCH=arm64 BOARDNAME=qemu-aarch64 ELFMACH="AArch64"
           EXTRA_PKGS="libubootenv-tool" ;;
  *) die "unknown --arch $ARCH (x86_64 or aarch64)" ;;
esac
if [ "$BOARD" != qemu ]; then
  [ "$ARCH" = aarch64 ] || die "--board $BOARD is an aarch64 board, not $ARCH"
  BOARDNAME=$BOARD
  BOARD_MODULES=$HERE/rpi/$BOARD.modules
  if [ "$BOARD" = rpi5 ]; then EXTRA_PKGS=; fi   # tryboot: RAUC's custom backend, no U-Boot env
fi
BOARDDIR=$REPO/buildroot/board/macula/$BOARDNAME
PACKAGES="busybox-static libc6 libgcc-s1 dbus-daemon dbus-bin dbus-system-bus-common rauc rauc-service
nftables wireguard-tools wireguard-go iproute2 fdisk e2fsprogs $EXTRA_PKGS"
# package lists and .debs: a cache outside the clone ($MACULA_CACHE, default /var/cache/macula)
DEBS="python3 $HERE/debs.py --arch $DEBARCH --suite $SUITE"

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
W=$OUT/work
rm -rf "$W"
mkdir -p "$W"

if [ -n "$BASE" ]; then
  BASE=$(cd "$BASE" && pwd)
  for f in base/usr/bin/busybox vmlinuz initrd.img kernel-version $([ "$BOARD" = qemu ] || echo bootfiles) \
           $([ "$BOARD" = rpi5 ] && echo boot.vfat); do
    [ -e "$BASE/$f" ] || die "--base $BASE has no $f; build it with build.sh --out $BASE first"
  done
fi
R=$W/rootfs
if [ -z "$BASE" ]; then
# ---- kernel ---------------------------------------------------------------------------------
step "kernel via linux-image-$DEBARCH ($SUITE${KERNEL_ARGS:+ backports})"
KDEBS=$($DEBS kernel $KERNEL_ARGS)
for deb in $KDEBS; do dpkg-deb -x "$deb" "$W/kernel"; done
# merged-/usr packages (trixie) install to usr/lib/modules; depmod -b and modprobe -d want lib/
[ -d "$W/kernel/lib" ] || ln -s usr/lib "$W/kernel/lib"
KVER=$(ls "$W/kernel/lib/modules")
[ "$(echo "$KVER" | wc -w)" = 1 ] || die "expected one kernel in $KDEBS, found: $KVER"
# the kernel image and DTBs: /boot + /usr/lib/linux-image-KVER (<= 6.12), or lib/modules/KVER
KIMG=
for k in "$W/kernel/boot/vmlinuz-$KVER" "$W/kernel/lib/modules/$KVER/vmlinuz"; do
  [ -f "$k" ] && KIMG=$k && break
done
[ -n "$KIMG" ] || die "no vmlinuz for $KVER in $KDEBS"
DTBDIR=
for d in "$W/kernel/usr/lib/linux-image-$KVER" "$W/kernel/lib/modules/$KVER/dtb"; do
  [ -d "$d/broadcom" ] && DTBDIR=$d && break
done
depmod -b "$W/kernel" "$KVER"

# copy_modules DEST_MODROOT LISTFILE: the modules in LISTFILE and their dependencies, decompressed.
copy_modules() {
  local dest=$1 list=$2 m line path rel
  mkdir -p "$dest/lib/modules/$KVER"
  while read -r m _; do
    case "$m" in ''|'#'*) continue ;; esac
    modprobe -d "$W/kernel" -S "$KVER" --show-depends "$m" >"$W/deps.txt" 2>/dev/null \
      || die "kernel $KVER has no module '$m' (listed in $list)"
    while read -r line; do
      case "$line" in insmod\ *) ;; *) continue ;; esac
      path=$(echo "$line" | cut -d' ' -f2)
      rel=${path#"$W/kernel/lib/modules/$KVER/"}
      mkdir -p "$dest/lib/modules/$KVER/$(dirname "$rel")"
      case "$rel" in
        *.ko.xz) xz -dc "$path" >"$dest/lib/modules/$KVER/${rel%.xz}" ;;
        *.ko.zst) zstd -qdc "$path" >"$dest/lib/modules/$KVER/${rel%.zst}" ;;
        *) cp "$path" "$dest/lib/modules/$KVER/$rel" ;;
      esac
    done <"$W/deps.txt"
  done <"$list"
  cp "$W/kernel/lib/modules/$KVER/modules.builtin" "$W/kernel/lib/modules/$KVER/modules.order" \
     "$dest/lib/modules/$KVER/" 2>/dev/null || true
  cp "$W/kernel/lib/modules/$KVER/modules.builtin.modinfo" "$dest/lib/modules/$KVER/" 2>/dev/null || true
  depmod -b "$dest" "$KVER"
}

# ---- packages -> rootfs ---------------------------------------------------------------------
step "package closure ($DEBARCH)"
mkdir -p "$W/raw"
for deb in $($DEBS closure $PACKAGES); do
  dpkg-deb -x "$deb" "$W/raw"
done
if [ "$ARCH" = x86_64 ]; then
  # RAUC's grub backend calls grub-editenv; take only that binary from grub-common.
  dpkg-deb -x "$($DEBS get grub-common)" "$W/grub-common"
  install -D -m755 "$W/grub-common/usr/bin/grub-editenv" "$W/raw/usr/bin/grub-editenv"
fi
# grow-data tells the kernel the data partition's new length with resizepart (BLKPG; its disk is
# in use, so the table cannot be re-read); take only that binary (libc only) from util-linux
# (bookworm) or util-linux-extra (trixie).
case "$SUITE" in bookworm) ULPKG=util-linux ;; *) ULPKG=util-linux-extra ;; esac
dpkg-deb -x "$($DEBS get $ULPKG)" "$W/util-linux"
install -D -m755 "$W/util-linux/usr/bin/resizepart" "$W/raw/usr/bin/resizepart"
# merged /usr, as on current Debian and Buildroot (BR2_ROOTFS_MERGED_USR)
for d in bin sbin lib lib64; do
  if [ -d "$W/raw/$d" ] && [ ! -L "$W/raw/$d" ]; then
    mkdir -p "$W/raw/usr/$d"
    cp -a "$W/raw/$d/." "$W/raw/usr/$d/"
    rm -rf "${W:?}/raw/$d"
  fi
done
mkdir -p "$R"
cp -a "$W/raw/." "$R/"
for d in bin sbin lib; do ln -sfn "usr/$d" "$R/$d"; done
[ -d "$R/usr/lib64" ] && ln -sfn usr/lib64 "$R/lib64"
rm -rf "$R"/usr/share/{doc,man,info,locale,lintian,bash-completion,zsh,bug,gdb,menu,pkgconfig} \
       "$R"/usr/include "$R"/etc/{init.d,default,logrotate.d,cron.*,systemd,apparmor.d,X11,kernel} \
       "$R"/usr/lib/systemd "$R"/usr/lib/tmpfiles.d "$R"/usr/lib/sysusers.d "$R"/usr/lib/*-linux-gnu/tc "$R"/usr/lib/*-linux-gnu/gconv \
       "$R"/usr/share/dbus-1/system-services/de.pengutronix.rauc.service
# busybox applets for everything the packages do not provide
BB=$R/usr/bin/busybox
[ -x "$BB" ] || die "busybox-static did not install /usr/bin/busybox"
for a in $(/bin/busybox --list-full); do
  t=$R/$a
  case "$a" in bin/*) t=$R/usr/$a ;; sbin/*) t=$R/usr/$a ;; esac
  [ -e "$t" ] || [ -L "$t" ] || { mkdir -p "$(dirname "$t")"; ln -s /usr/bin/busybox "$t"; }
done

step "kernel modules for the rootfs"
copy_modules "$R/usr" "$REPO/overlay/etc/macula/modules"
cat "$HERE/initramfs/modules" >"$W/initramfs-modules"
if [ -n "$BOARD_MODULES" ]; then
  # "name initramfs" lines are also needed before the root filesystem is mounted (the SD host)
  awk '$2 == "initramfs" { print $1 }' "$BOARD_MODULES" >>"$W/initramfs-modules"
  copy_modules "$R/usr" "$BOARD_MODULES"
  install -D -m644 "$BOARD_MODULES" "$R/etc/macula/modules.board"
fi
copy_modules "$R/usr" "$W/initramfs-modules"

# ---- initramfs ------------------------------------------------------------------------------
step "initramfs"
I=$W/initramfs
mkdir -p "$I"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,newroot}
cp "$R/usr/bin/busybox" "$I/bin/busybox"
cp "$HERE/initramfs/init" "$I/init"
cp "$W/initramfs-modules" "$I/etc/modules"
copy_modules "$I" "$W/initramfs-modules"
# the kernel's request_module() runs /sbin/modprobe (ext4 needs crc32c before /init runs it)
ln -s ../bin/busybox "$I/sbin/modprobe"
(cd "$I" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -9n) >"$OUT/initrd.img"
install -m644 "$KIMG" "$OUT/vmlinuz"
echo "$KVER" >"$OUT/kernel-version"
if [ "$BOARD" != qemu ]; then
  # what the board's boot partition needs besides the kernel: DTBs, firmware, boot loader
  [ -n "$DTBDIR" ] || die "kernel $KVER ships no broadcom DTBs"
  rm -rf "$OUT/bootfiles"
  mkdir -p "$OUT/bootfiles"
  cp "$DTBDIR"/broadcom/bcm271[12]*rpi*.dtb "$OUT/bootfiles/"
  for p in $BOOT_PKGS; do dpkg-deb -x "$($DEBS get "$p")" "$W/boot-pkgs"; done
  if [ "$BOARD" = rpi4 ]; then
    mkdir -p "$OUT/bootfiles/rpi-firmware/overlays"
    cp "$W/boot-pkgs/usr/lib/raspi-firmware/"{start4.elf,fixup4.dat} "$OUT/bootfiles/rpi-firmware/"
    cp "$W/boot-pkgs/usr/lib/u-boot/rpi_arm64/u-boot.bin" "$OUT/bootfiles/"
  fi
fi
rm -rf "$OUT/base"
mv "$R" "$OUT/base"
BASE=$OUT
fi   # base stage

# ---- slot: base + overlay + agent ---------------------------------------------------------------
step "slot tree from $BASE/base"
KVER=$(cat "$BASE/kernel-version")
cp -a "$BASE/base" "$R"
[ "$BASE" = "$OUT" ] || cp -r "$BASE/vmlinuz" "$BASE/initrd.img" "$BASE/kernel-version" \
  $([ "$BOARD" = qemu ] || echo "$BASE/bootfiles") "$OUT/"
# the slot's kernel: /boot/vmlinuz (QEMU boot.scr), /boot/Image on the Pi (Buildroot's name)
KNAME=vmlinuz
[ "$BOARD" = qemu ] || KNAME=Image
install -D -m644 "$OUT/vmlinuz" "$R/boot/$KNAME"
# a Pi 5 update also carries the boot slot (kernel, initramfs, DTBs) of the base it was built on
if [ "$BOARD" = rpi5 ] && [ "$BASE" != "$OUT" ]; then cp "$BASE/boot.vfat" "$OUT/boot.vfat"; fi
install -m644 "$OUT/initrd.img" "$R/boot/initrd.img"
step "overlay, board overlay, agent"
mkdir -p "$R"/{proc,sys,dev,run,tmp,data,esp,boot,root,mnt}
chmod 1777 "$R/tmp"
cp -a "$REPO/overlay/." "$R/"
[ -d "$BOARDDIR/rootfs-overlay" ] && cp -a "$BOARDDIR/rootfs-overlay/." "$R/"
install -D -m644 "$KEYRING" "$R/etc/rauc/keyring.pem"
cat >"$R/etc/os-release" <<OS
NAME="Macula OS"
ID=macula
PRETTY_NAME="Macula OS $VERSION ($BOARDNAME, Debian $SUITE packages)"
VERSION_ID=$VERSION
BUILD_ID=$(date -u +%Y%m%dT%H%M%SZ)
VARIANT_ID=$BOARDNAME
OS
# The serial console: a login prompt (production), or a root shell for test images.
grep -qx 'console::respawn:/sbin/getty -L console 0 vt100' "$R/etc/inittab" \
  || die "overlay/etc/inittab has no login prompt on the console"
grep -q '^root:[*!]' "$R/etc/shadow" || die "overlay/etc/shadow: root's password must be locked"
if [ "$CONSOLE_SHELL" = 1 ]; then
  sed -i 's|^console::respawn:.*|console::respawn:-/bin/sh|' "$R/etc/inittab"
  echo 'VARIANT="test image: root shell on the serial console"' >>"$R/etc/os-release"
  step "TEST IMAGE: passwordless root shell on the serial console (--console-shell)"
fi
if [ "$NO_AGENT" = 0 ]; then
  for b in maculad maculactl; do
    readelf -h "$AGENT_DIR/$b" | grep -q "Machine:.*$ELFMACH" \
      || die "$AGENT_DIR/$b is not an $ARCH binary (readelf: $(readelf -h "$AGENT_DIR/$b" | grep Machine:))"
    install -m755 "$AGENT_DIR/$b" "$R/usr/bin/$b"
  done
  if [ "$BROKEN_AGENT" = 1 ]; then
    printf '#!/bin/sh\necho "maculad: deliberately broken build (rollback test)" >&2\nexit 1\n' >"$R/usr/bin/maculad"
  fi
fi
# ownership and modes the services expect
chown -R 0:0 "$R"
chmod 0600 "$R/etc/shadow"
chmod 0700 "$R/root"
DBUS_HELPER=$R/usr/lib/dbus-1.0/dbus-daemon-launch-helper
[ -e "$DBUS_HELPER" ] && chown 0:101 "$DBUS_HELPER" && chmod 4750 "$DBUS_HELPER"

# every ELF's shared libraries must be in the rootfs (catches an over-eager closure exclusion)
step "shared library check"
missing=$(
  find "$R" -xdev -type f \( -perm -u+x -o -name '*.so*' \) -print0 |
  while IFS= read -r -d '' f; do
    head -c4 "$f" 2>/dev/null | grep -q 'ELF' || continue
    readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | while read -r lib; do
      found=0
      for d in usr/lib usr/lib/*-linux-gnu usr/lib64 usr/lib/*-linux-gnu/*; do
        for hit in "$R"/$d/"$lib"; do [ -e "$hit" ] && found=1 && break 2; done
      done
      [ $found = 1 ] || echo "${f#"$R"} needs $lib"
    done
  done | sort -u)
[ -z "$missing" ] || die "shared libraries missing from the rootfs (add the package to PACKAGES):
$missing"


# ---- rootfs image ---------------------------------------------------------------------------
step "rootfs.ext4"
ROOTFS_MB=160
used=$(du -sm "$R" | cut -f1)
[ "$used" -lt $((ROOTFS_MB - 16)) ] || die "rootfs content ${used} MiB does not fit a ${ROOTFS_MB} MiB slot image"
rm -f "$OUT/rootfs.ext4"
mkfs.ext4 -q -F -L rootfs -d "$R" -O ^has_journal -U clear -E lazy_itable_init=0,lazy_journal_init=0 \
  -T default "$OUT/rootfs.ext4" ${ROOTFS_MB}M
echo "$VERSION" >"$OUT/version"
[ "$ROOTFS_ONLY" = 1 ] && { step "done (rootfs only): $OUT/rootfs.ext4, content ${used} MiB"; rm -rf "$W"; exit 0; }

# ---- boot partition + disk ------------------------------------------------------------------
step "boot partition"
G=$W/genimage-in
mkdir -p "$G"
cp "$OUT/rootfs.ext4" "$G/"
case "$ARCH" in
  x86_64)
    grub-mkimage -O x86_64-efi -p /EFI/BOOT -o "$G/BOOTX64.EFI" part_gpt fat ext2 linux normal boot \
      configfile loadenv test echo regexp search search_label search_fs_uuid cat ls halt reboot sleep \
      gzio all_video efi_gop serial terminal
    cp "$BOARDDIR/grub.cfg" "$G/grub.cfg"
    grub-editenv "$G/grubenv" create
    grub-editenv "$G/grubenv" set ORDER="A B" A_OK=1 B_OK=0 A_TRY=0 B_TRY=0
    ;;
  aarch64)
    # The Pi boards share Buildroot's post-image scripts (what they read is staged under the
    # names Buildroot gives it: rpi-firmware/, Image, the DTBs, u-boot.bin, initrd.img).
    case "$BOARD" in
      qemu)
        mkimage -A arm64 -T script -C none -n "Macula A/B" -d "$BOARDDIR/boot.cmd" "$G/boot.scr" >/dev/null
        printf 'BOOT_ORDER=A B\nBOOT_A_LEFT=3\nBOOT_B_LEFT=0\n' >"$W/uboot-env.txt"
        mkenvimage -s 0x4000 -o "$G/uboot.env" "$W/uboot-env.txt"
        ;;
      rpi4)
        cp -r "$OUT/bootfiles/." "$G/"
        HOST_DIR=/usr "$BOARDDIR/post-image.sh" "$G"
        ;;
      rpi5)
        cp -r "$OUT/bootfiles/." "$G/"
        cp "$OUT/vmlinuz" "$G/Image"
        cp "$OUT/initrd.img" "$G/initrd.img"
        "$BOARDDIR/post-image.sh" "$G"
        ;;
    esac
    ;;
esac
step "genimage"
mkdir -p "$W/genimage-root" "$W/genimage-tmp"
rm -f "$OUT/$DISK"
genimage --config "$BOARDDIR/genimage.cfg" --rootpath "$W/genimage-root" --tmppath "$W/genimage-tmp" \
  --inputpath "$G" --outputpath "$W/genimage-out" >"$W/genimage.log" 2>&1 \
  || { cat "$W/genimage.log" >&2; die "genimage failed"; }
mv "$W/genimage-out/$DISK" "$OUT/$DISK"
# the Pi 5's boot slot image goes into its update bundles (one image for both slots, see rauc-tryboot)
[ "$BOARD" = rpi5 ] && mv "$G/boot-a.vfat" "$OUT/boot.vfat"
rm -rf "$W"
step "done: $OUT/$DISK ($(du -h --apparent-size "$OUT/$DISK" | cut -f1) apparent, $(du -h "$OUT/$DISK" | cut -f1) allocated), rootfs content ${used} MiB, kernel $KVER"
