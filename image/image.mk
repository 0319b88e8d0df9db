# Macula OS images (included from the top-level Makefile). See docs/image.md.
#   make image      ARCH=x86_64|aarch64   disk image   -> build/image/$(ARCH)/disk.img
#   make bundle     ARCH=...  [BUNDLE_VERSION=0.0.2]   -> build/image/$(ARCH)/update-$(BUNDLE_VERSION).raucb
#   make qemu       ARCH=...  boot the image on this terminal (Ctrl-A X quits)
#   make test-qemu  ARCH=...  QEMU boot + OTA tests (tests/qemu/test_image.py), buildroot/check.sh
#   make test-wireguard ARCH=...  two guests on a QEMU socket link bring up kernel WireGuard
#   make test-images   all of it for CI: x86_64 OTA (agent), aarch64 OTA, WireGuard (~8 min)
# AGENT=auto (default: include maculad/maculactl when the crates exist), yes (required), no.
# CONSOLE_SHELL=1: a TEST image with a passwordless root shell on the serial console (the QEMU
# tests set it; `make image` alone gives the production login prompt, root locked).
# Host packages are installed on demand by image/deps.sh (root; adds bookworm-backports for QEMU).
# Raspberry Pi SD images: make image BOARD=rpi4|rpi5 (image/rpi.mk).

include image/rpi.mk

ARCH ?= x86_64
AGENT ?= auto
BUNDLE_VERSION ?= 0.0.2
CONSOLE_SHELL ?= 0
IMAGE_OUT := build/image/$(or $(BOARD),$(ARCH))
IMAGE_KEYS := build/keys
IMAGE_PY := /usr/bin/python3
AARCH64_RUST_TARGET := aarch64-unknown-linux-musl

ifeq ($(ARCH),x86_64)
AGENT_DIR := target/release
else ifeq ($(ARCH),aarch64)
AGENT_DIR := target/$(AARCH64_RUST_TARGET)/release
else
$(error ARCH must be x86_64 or aarch64, not '$(ARCH)')
endif

ifeq ($(AGENT),no)
IMAGE_AGENT_ARGS := --no-agent
else ifeq ($(AGENT),yes)
IMAGE_AGENT_ARGS := --agent-dir $(AGENT_DIR)
else ifneq ($(wildcard agent/maculad/Cargo.toml),)
IMAGE_AGENT_ARGS := --agent-dir $(AGENT_DIR)
else
IMAGE_AGENT_ARGS := --no-agent
endif

.PHONY: image bundle qemu test-qemu test-wireguard test-images image-deps image-keys image-agent check-buildroot

image-deps:
	@image/deps.sh $(or $(IMAGE_DEPS),$(ARCH))

image-keys:
	@image/keys.sh $(IMAGE_KEYS)

# The agent for the image: host build on x86_64, static musl on aarch64 (linked by rust-lld, so no
# cross gcc is needed for pure-Rust crates; the target's std library must be installed).
image-agent:
ifneq ($(IMAGE_AGENT_ARGS),--no-agent)
ifeq ($(ARCH),x86_64)
	cargo build --release -p maculad -p maculactl
else
	@rustup target list --installed 2>/dev/null | grep -qx $(AARCH64_RUST_TARGET) || { \
	  echo "image.mk: ERROR: the Rust std library for $(AARCH64_RUST_TARGET) is not installed;"; \
	  echo "  run 'rustup target add $(AARCH64_RUST_TARGET)' (needs network), or build the image"; \
	  echo "  without the agent: make image ARCH=aarch64 AGENT=no"; exit 1; }
	RUSTFLAGS="-C linker=rust-lld -C target-feature=+crt-static" \
	  cargo build --release --target $(AARCH64_RUST_TARGET) -p maculad -p maculactl
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

# CI: the aarch64 image carries the agent only when the musl std library is installed (rustup
# cannot download it offline); without it the aarch64 tests run on an agent-less image and say so.
test-images:
	$(MAKE) --no-print-directory test-qemu ARCH=x86_64
	@if rustup target list --installed 2>/dev/null | grep -qx $(AARCH64_RUST_TARGET); then \
	  $(MAKE) --no-print-directory test-qemu ARCH=aarch64; \
	else \
	  echo "image.mk: NOTE: $(AARCH64_RUST_TARGET) std missing: aarch64 image tested without the agent"; \
	  $(MAKE) --no-print-directory test-qemu ARCH=aarch64 AGENT=no; \
	fi
	$(MAKE) --no-print-directory test-wireguard ARCH=aarch64 AGENT=no
