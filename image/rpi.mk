# Raspberry Pi SD card images from Debian trixie packages (included by image/image.mk before its
# own variables). See docs/image.md "Raspberry Pi images" and docs/flashing.md.
#   make image  BOARD=rpi4|rpi5   -> build/image/<board>/sdcard.img, sdcard.img.bmap, sdcard.img.zst,
#                                   macula-<board>-<version>.raucb (update bundle of the same rootfs)
#   make bundle BOARD=...  [BUNDLE_VERSION=0.0.2]   -> build/image/<board>/update-<version>.raucb
#   make test-rpi     both boards: test images (CONSOLE_SHELL=1: a root shell on the console for
#                     the harness; otherwise identical) + tests/qemu/test_rpi.py (layout, boot
#                     files, RAUC slots; the Pi 4 image's kernel, DTB and rootfs in QEMU raspi4b)
# BOARD selects ARCH=aarch64 and the aarch64 agent build of image.mk (image-agent).
BOARD ?=
RPI_BOARDS := rpi4 rpi5
ifneq ($(BOARD),)
ifeq ($(filter $(BOARD),$(RPI_BOARDS)),)
$(error BOARD must be one of $(RPI_BOARDS), not '$(BOARD)')
endif
override ARCH := aarch64
IMAGE_BOARD_ARGS := --board $(BOARD)
IMAGE_DEPS := rpi
IMAGE_POST = image/rpi/release.sh --board $(BOARD) --dir $(IMAGE_OUT) \
  --cert $(IMAGE_KEYS)/dev.cert.pem --key $(IMAGE_KEYS)/dev.key.pem
endif

.PHONY: test-rpi
test-rpi: $(addprefix test-rpi-,$(RPI_BOARDS))
test-rpi-%: check-buildroot
	$(MAKE) --no-print-directory image BOARD=$* CONSOLE_SHELL=1
	$(IMAGE_PY) tests/qemu/test_rpi.py --board $* --image-dir build/image/$* --keys $(IMAGE_KEYS)
