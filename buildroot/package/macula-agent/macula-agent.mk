################################################################################
#
# macula-agent
#
################################################################################

MACULA_AGENT_VERSION = $(call qstrip,$(BR2_PACKAGE_MACULA_AGENT_VERSION))
MACULA_AGENT_LICENSE = Apache-2.0
MACULA_AGENT_DEPENDENCIES = dbus
MACULA_AGENT_PREBUILT_DIR = $(call qstrip,$(BR2_PACKAGE_MACULA_AGENT_PREBUILT_DIR))

# The workspace's rust-version (Cargo.toml); buildroot/check.sh keeps the two equal.
MACULA_AGENT_RUST_MIN = 1.85

ifneq ($(MACULA_AGENT_PREBUILT_DIR),)
# Offline: install maculad/maculactl cross-built by this repository (image/cross-aarch64.sh,
# `make agent-aarch64`) instead of compiling them; no Rust toolchain, no crate downloads.
MACULA_AGENT_SITE = $(MACULA_AGENT_PREBUILT_DIR)
MACULA_AGENT_SITE_METHOD = local

define MACULA_AGENT_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/maculad $(TARGET_DIR)/usr/bin/maculad
	$(INSTALL) -D -m 0755 $(@D)/maculactl $(TARGET_DIR)/usr/bin/maculactl
endef

$(eval $(generic-package))

else
MACULA_AGENT_SOURCE = macula-agent-$(MACULA_AGENT_VERSION).tar.gz
# A tarball, not SITE_METHOD = local: only downloaded sources go through the cargo
# post-process that vendors the crates (support/download/cargo-post-process), which the
# offline `cargo build --locked` below needs.
MACULA_AGENT_SITE = file://$(call qstrip,$(BR2_PACKAGE_MACULA_AGENT_DIST_DIR))

# Buildroot's Rust must be at least the workspace's rust-version: 2025.02.x ships 1.82, which
# fails deep inside the build on crates that need 1.85. Say so before anything is compiled.
ifeq ($(BR2_PACKAGE_MACULA_AGENT),y)
MACULA_AGENT_BR_RUST = $(if $(BR2_PACKAGE_HOST_RUST),$(RUST_VERSION),$(RUST_BIN_VERSION))
ifneq ($(MACULA_AGENT_BR_RUST),)
ifneq ($(shell printf '%s\n' $(MACULA_AGENT_RUST_MIN) $(MACULA_AGENT_BR_RUST) | sort -V | head -n1),$(MACULA_AGENT_RUST_MIN))
$(error macula-agent needs Rust >= $(MACULA_AGENT_RUST_MIN); this Buildroot ships $(MACULA_AGENT_BR_RUST). Use a newer Buildroot release (docs/image.md) or BR2_PACKAGE_MACULA_AGENT_PREBUILT_DIR)
endif
endif
endif

# The tarball is a virtual Cargo workspace (agent/*): build the two binaries by package
# name instead of cargo-package's default `cargo install --path .`.
define MACULA_AGENT_BUILD_CMDS
	cd $(@D) && $(TARGET_MAKE_ENV) $(TARGET_CONFIGURE_OPTS) $(PKG_CARGO_ENV) \
		cargo build --offline --locked --release \
		--target $(RUSTC_TARGET_NAME) -p maculad -p maculactl
endef

define MACULA_AGENT_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 $(@D)/target/$(RUSTC_TARGET_NAME)/release/maculad \
		$(TARGET_DIR)/usr/bin/maculad
	$(INSTALL) -D -m 0755 $(@D)/target/$(RUSTC_TARGET_NAME)/release/maculactl \
		$(TARGET_DIR)/usr/bin/maculactl
endef

$(eval $(cargo-package))
endif
