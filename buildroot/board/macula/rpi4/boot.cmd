# Macula OS A/B boot script, Raspberry Pi 4 (U-Boot rpi_arm64, MBR SD card). Same state and
# rules as board/macula/qemu-aarch64/boot.cmd: BOOT_ORDER, BOOT_A_LEFT/BOOT_B_LEFT in uboot.env
# on the boot partition (fw_env.config), 3 attempts a slot, refilled by `rauc status mark-good`.
# Untested on hardware here. The firmware passes its device tree in ${fdt_addr}.
# Load addresses above U-Boot's defaults: a Debian kernel Image (~38 MB) loaded at 0x80000 would
# overwrite this script at ${scriptaddr} (0x2400000) while it runs.
setenv kernel_addr_r 0x10000000
setenv ramdisk_addr_r 0x14000000
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
      setenv slot A; setenv part 2
    elif test "${s}" = B && test ${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
      setenv slot B; setenv part 3
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

part uuid ${devtype} ${devnum}:${part} rootuuid
echo "macula: booting slot ${slot} (A_LEFT=${BOOT_A_LEFT} B_LEFT=${BOOT_B_LEFT})"
# serial console: the mini UART (ttyS0) on GPIO 14/15 (config.txt enable_uart=1); the PL011 serves
# Bluetooth
setenv bootargs "console=tty1 console=ttyS0,115200 quiet panic=5 ro rootwait root=PARTUUID=${rootuuid} rauc.slot=${slot}"
load ${devtype} ${devnum}:${part} ${kernel_addr_r} /boot/Image
# the Debian-package image needs its initramfs (SD host and ext4 are modules there)
if load ${devtype} ${devnum}:${part} ${ramdisk_addr_r} /boot/initrd.img; then
  booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr}
else
  booti ${kernel_addr_r} - ${fdt_addr}
fi
