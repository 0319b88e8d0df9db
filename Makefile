# Macula OS — top-level entry points. See README.md.
#   make test   install what is missing, then fmt check, clippy -D warnings, all tests,
#               then the image/QEMU tests and the Raspberry Pi images (test-rpi); see below
#   make demo   the main job: a live 5-node realm (see tests/mesh-demo.sh)
#   make bench  benchmarks (figures printed as ratios against same-run baselines)
#   make fuzz   every cargo-fuzz target to FUZZ_RUNS executions (default 1000000) from its
#               committed corpus (docs/fuzzing.md); `make test` replays the corpora (unit tests)

SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never
# Debug info light and incremental off: faster cold builds on 2 cores (CI).
export CARGO_INCREMENTAL ?= 0

.PHONY: all build deps fuzz test test-all test-qemu-x86_64 test-net-qemu-x86_64 test-qemu-aarch64 lint unit demo demo-node bench bench-agent bench-s3 pi-estimate chaos completions

# Per-part targets (images, benchmarks, fuzzing) live next to their code.
include agent/macula-core/core.mk
include image/image.mk
include agent/macula-net/net.mk
include agent/macula-store/store.mk
include agent/macula-mesh/mesh.mk
include agent/macula-proof/proof.mk

all: build

deps:
	@tests/install-deps.sh

build:
	$(CARGO) build --workspace --bins

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Integration tests spawn the real binaries from the target dir, so build them first.
unit: build
	@if $(CARGO) nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --no-fail-fast; \
	else \
	  $(CARGO) test --workspace --no-fail-fast; \
	fi

# Whole-system tests: image build, QEMU boots, RAUC A/B OTA, kernel WireGuard between guests
# configured by the agent, the aarch64 code paths under qemu-user, the Raspberry Pi cards.
test: deps lint unit test-qemu-x86_64 test-net-qemu-x86_64 test-qemu-aarch64 test-aarch64-unit \
  test-mixed-realm test-rollout test-rpi

# What `make test` (CI) runs of the images: the x86_64 and aarch64 images with the agent (aarch64:
# cross-built in the cached chroot), OTA A/B, rollback, flipped-byte and untrusted bundles, data
# partition growth and the macula-store disk, production console; two x86_64 guests whose agents
# configure kernel WireGuard (test-net-qemu); the pure crates' tests for aarch64 under qemu-user
# (test-aarch64-unit); the two test images forming a mixed-arch realm (test-mixed-realm); three
# x86_64 guests updated by one realm rollout in waves, and a halted one (test-rollout); the Pi 4
# and Pi 5 cards, the Pi 4's booted in QEMU raspi4b (test-rpi).
test-qemu-x86_64:
	$(MAKE) --no-print-directory test-qemu ARCH=x86_64

test-net-qemu-x86_64:
	$(MAKE) --no-print-directory test-net-qemu ARCH=x86_64

test-qemu-aarch64:
	$(MAKE) --no-print-directory test-qemu ARCH=aarch64

# Also WireGuard set up by hand between two aarch64 guests without the agent (it rebuilds
# build/image/aarch64 without the agent, so it runs last).
test-all: test
	$(MAKE) --no-print-directory test-wireguard ARCH=aarch64 AGENT=no

# The main job: a realm of 1 hub + 4 edges (tests/mesh-demo.sh).
demo: demo-mesh

# One agent on a private bus: status, introspection, clean stop.
demo-node: deps build
	@tests/demo.sh

bench: bench-agent bench-s3 bench-mesh bench-net bench-store

# Every fuzz target of every crate (tests/fuzz.sh; FUZZ_ONLY="crate[:target] …" for some,
# FUZZ_MAX_SECONDS=N to also stop each after N s). Installs cargo-fuzz when missing. The smoke in
# `make test` is each crate's tests/fuzz_corpus.rs, run by `unit` (docs/fuzzing.md).
fuzz:
	FUZZ_RUNS=$(FUZZ_RUNS) CARGO=$(CARGO) tests/fuzz.sh

bench-agent: deps
	$(CARGO) bench -p maculad --bench agent
	$(CARGO) bench -p maculad --bench metrics

# The chaos run (docs/reliability.md): 10 minutes of kills, cuts and loss on six agents; the
# 2-minute run is part of `make test`. CHAOS_SEED=<n> repeats a run's choices.
chaos: deps build
	CHAOS_SECS=$${CHAOS_SECS:-600} $(CARGO) nextest run -p maculad --test chaos --retries 0 --no-capture

# The S3 gateway against maculactl put/get on one realm (docs/s3.md "Benchmarks").
bench-s3: deps
	$(CARGO) build --release -p maculactl
	$(CARGO) bench -p maculad --bench s3

# The Pi 4 on paper (docs/storage.md): the storage kernels' instructions, counted for the aarch64
# build under qemu-user (never its time), and what they give per Cortex-A72 core.
pi-estimate:
	command -v qemu-aarch64-static >/dev/null || tests/install-deps.sh
	tests/insn_count.py $$(image/cross-aarch64.sh example pi_kernels)

# Shell completions and man page generated from the CLI definition.
completions: build
	@mkdir -p build/share
	target/debug/maculactl completions bash > build/share/maculactl.bash
	target/debug/maculactl completions zsh > build/share/_maculactl
	target/debug/maculactl completions fish > build/share/maculactl.fish
	target/debug/maculactl man > build/share/maculactl.1
	@echo "written to build/share/"
