# macula-net make targets; the top-level Makefile includes this file.
#   make bench-net   network-plane benchmark (root: namespaces, nft, wireguard-go, iperf3)
#   make fuzz-net    every macula-net fuzz target for FUZZ_SECONDS (default 30) each
#   make test-net-qemu ARCH=x86_64   two guests: the agent configures kernel WireGuard from its
#                    config (tests/qemu/test_agent_wireguard.py; the image must carry the agent)

.PHONY: bench-net fuzz-net test-net-qemu

bench-net: deps
	$(CARGO) bench -p macula-net --bench net

fuzz-net:
	cd agent/macula-net/fuzz && for t in uapi_get probe_decode netlink_reply wg_netlink; do \
	  RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=$(CURDIR)/target/fuzz $(CARGO) fuzz run $$t -- \
	    -max_total_time=$${FUZZ_SECONDS:-30} || exit 1; \
	done

test-net-qemu: image
	$(IMAGE_PY) tests/qemu/test_agent_wireguard.py --arch $(ARCH) --image-dir $(IMAGE_OUT)
