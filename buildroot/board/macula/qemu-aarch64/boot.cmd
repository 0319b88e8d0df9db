# Macula OS A/B boot script (U-Boot, QEMU virt). Compile: mkimage -A arm64 -T script -C none -d boot.cmd boot.scr
# State: BOOT_ORDER ("A B"), BOOT_A_LEFT / BOOT_B_LEFT (boot attempts left), stored in uboot.env on
# this partition and shared with RAUC (uboot backend via fw_setenv, /etc/fw_env.config).
# Each boot of a slot uses one attempt; `rauc status mark-good` (the agent, after its health check)
# refills it. A slot that runs out of attempts is skipped: the boot falls back to the next one.
# Runs from distro_bootcmd, which sets devtype/devnum and distro_bootpart (= the ESP).
setenv envaddr ${ramdisk_addr_r}
setenv BOOT_ORDER
setenv BOOT_A_LEFT
setenv BOOT_B_LEFT
if load ${devtype} ${devnum}:${distro_bootpart} ${envaddr} uboot.env; then
  env import -c ${envaddr} 0x4000 BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fi
test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 0

setenv slot
for s in ${BOOT_ORDER}; do
  if test -z "${slot}"; then
    if test "${s}" = A && test ${BOOT_A_LEFT} -gt 0; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
      setenv slot A; setenv part 2; setenv label rootfs-a
    elif test "${s}" = B && test ${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      setenv slot B; setenv part 3; setenv label rootfs-b
    fi
  fi
done
if test -z "${slot}"; then
  echo "macula: no slot has attempts left (ORDER=${BOOT_ORDER}); refilling A and B and resetting"
  setenv BOOT_A_LEFT 3
  setenv BOOT_B_LEFT 3
fi
env export -c -s 0x4000 ${envaddr} BOOT_ORDER BOOT_A_LEFT BOOT_B_LEFT
fatwrite ${devtype} ${devnum}:${distro_bootpart} ${envaddr} uboot.env 0x4000
test -n "${slot}" || reset

echo "macula: booting slot ${slot} (A_LEFT=${BOOT_A_LEFT} B_LEFT=${BOOT_B_LEFT})"
setenv bootargs "console=ttyAMA0 quiet panic=5 ro rootwait root=PARTLABEL=${label} rauc.slot=${slot}"
load ${devtype} ${devnum}:${part} ${kernel_addr_r} /boot/vmlinuz
# the Debian-package image needs its initramfs; Buildroot kernels have virtio and ext4 built in
if load ${devtype} ${devnum}:${part} ${ramdisk_addr_r} /boot/initrd.img; then
  booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
else
  booti ${kernel_addr_r} - ${fdtcontroladdr}
fi
