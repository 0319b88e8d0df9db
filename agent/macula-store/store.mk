# Storage (agent/macula-store) targets, included from the top-level Makefile.
#   make bench-store   codec table, pipeline per core, in-process cluster put/get/repair, and
#                      put/get/repair over a real 6-node loopback mesh against raw mesh streams
#                      (MACULA_BENCH_QUICK=1 shortens rounds; MACULA_BENCH_OBJECT_MIB=1024 object size)
#   make fuzz-store    run each cargo-fuzz target for FUZZ_SECONDS (default 60); needs cargo-fuzz
#   make test-store    the crate's tests only

FUZZ_SECONDS ?= 60
STORE_FUZZ_TARGETS := shard_header shard manifest_capability group_proof inventory shard_receive purge_order

.PHONY: bench-store fuzz-store test-store

bench-store:
	$(CARGO) bench -p macula-store --bench store
	$(CARGO) bench -p macula-store --bench mesh

test-store:
	$(CARGO) test -p macula-store

fuzz-store:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd agent/macula-store/fuzz && for t in $(STORE_FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
