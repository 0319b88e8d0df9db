# Proofs (agent/macula-proof) targets, included from the top-level Makefile.
#   make fuzz-proof    run each cargo-fuzz target for FUZZ_SECONDS (default 60); needs cargo-fuzz
#   make test-proof    the crate's tests only (unit tests, captured /proc texts, realm simulation)

FUZZ_SECONDS ?= 60
PROOF_FUZZ_TARGETS := resources_report proof_answer ledger_record ledger_snapshot ledger_summary proof_request

.PHONY: fuzz-proof test-proof

test-proof:
	$(CARGO) test -p macula-proof

fuzz-proof:
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	cd agent/macula-proof/fuzz && for t in $(PROOF_FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done
