# Macula OS images (included from the top-level Makefile). See docs/image.md.
#   make image      ARCH=x86_64|aarch64   disk image   -> build/image/$(ARCH)/disk.img
#   make bundle     ARCH=...  [BUNDLE_VERSION=0.0.2]   -> build/image/$(ARCH)/update-$(BUNDLE_VERSION).raucb
#   make qemu       ARCH=...  boot the image on this terminal (Ctrl-A X quits)
#   make test-qemu  ARCH=...  QEMU boot + OTA tests (tests/qemu/test_image.py), buildroot/check.sh
#   make test-wireguard ARCH=...  two guests on a QEMU socket link bring up kernel WireGuard
#   make test-mixed-realm  an x86_64 hub and an aarch64 edge guest form a realm through the agent:
#                    membership, put/get across the architectures, kernel WireGuard overlay
#   make bench-boot    boot to agent-ready vs a bare boot, median of BOOT_ROUNDS (5) pairs
#   make test-aarch64-unit  macula-core/-store/-mesh tests built for aarch64, run under
#                    qemu-aarch64-static -cpu cortex-a72 (the Pi 4's core; its AEAD choice: docs/image.md)
# AGENT=yes (default: the image carries maculad/maculactl; an image without the agent is no
# release), AGENT=no (explicit opt-out, e.g. for the hand-made WireGuard test).
# The aarch64 agent is cross-built in a cached Debian sid chroot by image/cross-aarch64.sh.
# CONSOLE_SHELL=1: a TEST image with a passwordless root shell on the serial console (the QEMU
# tests set it; `make image` alone gives the production login prompt, root locked).
# Host packages are installed on demand by image/deps.sh (root; adds bookworm-backports for QEMU).
# Raspberry Pi SD images: make image BOARD=rpi4|rpi5 (image/rpi.mk).

include image/rpi.mk

ARCH ?= x86_64
AGENT ?= yes
BUNDLE_VERSION ?= 0.0.2
CONSOLE_SHELL ?= 0
IMAGE_OUT := build/image/$(or $(BOARD),$(ARCH))
IMAGE_KEYS := build/keys
IMAGE_PY := /usr/bin/python3

ifeq ($(ARCH),x86_64)
AGENT_DIR := target/release
else ifeq ($(ARCH),aarch64)
AGENT_DIR := target/cross-aarch64/aarch64-unknown-linux-gnu/release
else
$(error ARCH must be x86_64 or aarch64, not '$(ARCH)')
endif

ifeq ($(AGENT),no)
IMAGE_AGENT_ARGS := --no-agent
else ifeq ($(AGENT),yes)
IMAGE_AGENT_ARGS := --agent-dir $(AGENT_DIR)
else
$(error AGENT must be yes or no, not '$(AGENT)')
endif

.PHONY: image bundle qemu test-qemu test-wireguard test-mixed-realm test-rollout test-aarch64-unit bench-boot image-deps image-keys \
	image-agent check-buildroot

image-deps:
	@image/deps.sh $(or $(IMAGE_DEPS),$(ARCH))

image-keys:
	@image/keys.sh $(IMAGE_KEYS)

# The agent for the image: host build on x86_64; on aarch64 a static glibc build made by Debian's
# rustc + libstd-rust-dev:arm64 in a Debian sid chroot cached outside the clone (built once per
# machine; image/cross-aarch64.sh, docs/image.md "aarch64 agent").
image-agent:
ifneq ($(IMAGE_AGENT_ARGS),--no-agent)
ifeq ($(ARCH),x86_64)
	cargo build --release -p maculad -p maculactl
else
	image/cross-aarch64.sh agent
endif
endif

image: image-deps image-keys image-agent
	image/build.sh --arch $(ARCH) $(IMAGE_BOARD_ARGS) --out $(IMAGE_OUT) --keyring $(IMAGE_KEYS)/dev.cert.pem $(IMAGE_AGENT_ARGS) \
	  $(if $(filter 1,$(CONSOLE_SHELL)),--console-shell)
	$(IMAGE_POST)

# A signed update of the same image with another version (reuses the image's base stage).
bundle: image
	image/build.sh --arch $(ARCH) $(IMAGE_BOARD_ARGS) --out $(IMAGE_OUT)/bundle-$(BUNDLE_VERSION) --base $(IMAGE_OUT) \
	  --rootfs-only --version $(BUNDLE_VERSION) --keyring $(IMAGE_KEYS)/dev.cert.pem $(IMAGE_AGENT_ARGS)
	image/bundle.sh --arch $(ARCH) $(IMAGE_BOARD_ARGS) --rootfs $(IMAGE_OUT)/bundle-$(BUNDLE_VERSION)/rootfs.ext4 \
	  --version $(BUNDLE_VERSION) --cert $(IMAGE_KEYS)/dev.cert.pem --key $(IMAGE_KEYS)/dev.key.pem \
	  --out $(IMAGE_OUT)/update-$(BUNDLE_VERSION).raucb

qemu:
	@test -f $(IMAGE_OUT)/disk.img || $(MAKE) --no-print-directory image ARCH=$(ARCH)
	image/qemu.sh --arch $(ARCH) --disk $(IMAGE_OUT)/disk.img --reboot

# The br2-external tree cannot be built here; check what can be checked without Buildroot.
check-buildroot:
	buildroot/check.sh

# The QEMU tests drive the guests through a shell on the serial console: test images.
test-qemu test-wireguard test-net-qemu: CONSOLE_SHELL = 1
test-qemu: check-buildroot image
	$(IMAGE_PY) tests/qemu/test_image.py --arch $(ARCH) --image-dir $(IMAGE_OUT) --keys $(IMAGE_KEYS) \
	  $(if $(filter --no-agent,$(IMAGE_AGENT_ARGS)),,--agent-dir $(AGENT_DIR))

test-wireguard: image
	$(IMAGE_PY) tests/qemu/test_wireguard.py --arch $(ARCH) --image-dir $(IMAGE_OUT)

# The test images of both architectures (those test-qemu builds; made here only when missing).
test-mixed-realm:
	@test -f build/image/x86_64/disk.img || $(MAKE) --no-print-directory image ARCH=x86_64 CONSOLE_SHELL=1
	@test -f build/image/aarch64/disk.img || $(MAKE) --no-print-directory image ARCH=aarch64 CONSOLE_SHELL=1
	$(IMAGE_PY) tests/qemu/test_mixed_realm.py

# Boot time as a benchmark (issue: agent ready ≤ +1 s over a bare boot under TCG): BOOT_ROUNDS
# pairs of fresh first boots, bare test image vs production image with the agent; medians.
bench-boot: CONSOLE_SHELL = 1
bench-boot: image
	$(IMAGE_PY) tests/qemu/test_image.py --arch x86_64 --image-dir $(IMAGE_OUT) --keys $(IMAGE_KEYS) \
	  --agent-dir $(AGENT_DIR) --work build/bench-boot --boot-rounds $${BOOT_ROUNDS:-5}

# Three x86_64 guests updated by one `maculactl update publish` in waves, and a halted rollout;
# reuses the image and the bundles of test-qemu ARCH=x86_64 (run before it in `make test`).
test-rollout:
	@test -f build/image/x86_64/disk.img || $(MAKE) --no-print-directory image ARCH=x86_64 CONSOLE_SHELL=1
	@test -f build/test-qemu/x86_64/xfer.img || $(MAKE) --no-print-directory test-qemu ARCH=x86_64
	$(IMAGE_PY) tests/qemu/test_rollout.py

test-aarch64-unit: deps
	image/cross-aarch64.sh test
