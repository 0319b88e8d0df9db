# macula-mesh make targets; the top-level Makefile includes this file.
#   make demo-mesh   1 hub + 4 edges on loopback: realm forms, peers, pub/sub, crash detected
#   make bench-mesh  stream throughput vs raw quinn, idle RSS with 20 peers, DHT/SWIM simulations
#   make fuzz-mesh   every macula-mesh fuzz target for FUZZ_SECONDS (default 30) each

.PHONY: demo-mesh bench-mesh fuzz-mesh

demo-mesh: deps build
	@tests/mesh-demo.sh

bench-mesh: deps
	$(CARGO) bench -p macula-mesh --bench throughput
	$(CARGO) bench -p macula-mesh --bench idle_rss
	$(CARGO) bench -p macula-mesh --bench sim

fuzz-mesh:
	cd agent/macula-mesh/fuzz && for t in control_frames membership_packet cert_text stream_messages beacon relay_frame ntp_reply; do \
	  RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(CURDIR)/target/fuzz $(CARGO) fuzz run $$t -- \
	    -max_total_time=$${FUZZ_SECONDS:-30} || exit 1; \
	done
