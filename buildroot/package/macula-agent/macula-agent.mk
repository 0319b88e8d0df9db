################################################################################
#
# macula-agent
#
################################################################################

MACULA_AGENT_VERSION = $(call qstrip,$(BR2_PACKAGE_MACULA_AGENT_VERSION))
MACULA_AGENT_SOURCE = macula-agent-$(MACULA_AGENT_VERSION).tar.gz
# A tarball, not SITE_METHOD = local: only downloaded sources go through the cargo
# post-process that vendors the crates (support/download/cargo-post-process), which the
# offline `cargo build --locked` below needs.
MACULA_AGENT_SITE = file://$(call qstrip,$(BR2_PACKAGE_MACULA_AGENT_DIST_DIR))
MACULA_AGENT_LICENSE = Apache-2.0
MACULA_AGENT_DEPENDENCIES = dbus

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
