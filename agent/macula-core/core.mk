# macula-core targets, included from the top-level Makefile.
#   make fuzz-core   each cargo-fuzz target for FUZZ_SECONDS (default 60); installs cargo-fuzz

CORE_FUZZ_TARGETS := node_id key_file config

.PHONY: fuzz-core

fuzz-core:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd agent/macula-core/fuzz && for t in $(CORE_FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t -- -max_total_time=$${FUZZ_SECONDS:-60} || exit 1; \
	done
