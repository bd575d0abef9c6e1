# The PROXY protocol v2 (issue 17, item 3; docs/front-door.md): whoconn
# --proxy-protocol v2 behind whoconn-proxy.socket.  tests/proxy.bats runs in
# check-suites (crafted headers, and Debian's HAProxy with send-proxy-v2,
# whose packages mk/front.mk lists) and, sanitized, in check-asan.  Here:
# libFuzzer over the header parser (fuzz/fuzz_proxy.c), with ASan and UBSan,
# briefly in check-fuzz-proxy, longer with `make fuzz-proxy`; finds land in
# build/proxy-fuzz/.  One process: the machine is shared.  `make proxy-cost`
# counts what the header costs a session (callgrind).

FUZZ_PROXY_SECONDS       ?= 300
FUZZ_PROXY_CHECK_SECONDS ?= 15
FUZZ_PROXY_DIR = build/proxy-fuzz
FUZZ_PROXY_CFLAGS = -std=c11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror -Wshadow \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all

CHECK_BUILD  += $(FUZZ_PROXY_DIR)/fuzz-proxy
CHECK_STAGES += check-fuzz-proxy
DEPS_CHECK   += clang libclang-rt-14-dev

$(FUZZ_PROXY_DIR)/fuzz-proxy: fuzz/fuzz_proxy.c lib/proxy.c lib/proxy.h | deps-build
	@scripts/ensure-deps clang libclang-rt-14-dev
	@mkdir -p $(@D)
	clang $(FUZZ_PROXY_CFLAGS) -o $@ fuzz/fuzz_proxy.c lib/proxy.c

# The working corpus grows in build/; the seeds (fuzz/corpus-proxy) are
# headers HAProxy sends and the malformed ones tests/proxy.bats crafts.
define run_fuzz_proxy
	@mkdir -p $(FUZZ_PROXY_DIR)/corpus $(FUZZ_PROXY_DIR)/crashes
	$(FUZZ_PROXY_DIR)/fuzz-proxy -max_total_time=$(1) -max_len=1200 -timeout=10 \
		-rss_limit_mb=1024 -print_final_stats=1 -dict=fuzz/proxy.dict \
		-artifact_prefix=$(FUZZ_PROXY_DIR)/crashes/ $(FUZZ_PROXY_DIR)/corpus fuzz/corpus-proxy
endef

fuzz-proxy: $(FUZZ_PROXY_DIR)/fuzz-proxy
	$(call run_fuzz_proxy,$(FUZZ_PROXY_SECONDS))

check-fuzz-proxy: $(FUZZ_PROXY_DIR)/fuzz-proxy
	$(call run_fuzz_proxy,$(FUZZ_PROXY_CHECK_SECONDS))

clean: clean-proxy
clean-proxy:
	rm -rf $(FUZZ_PROXY_DIR)

.PHONY: fuzz-proxy check-fuzz-proxy clean-proxy

# What the header costs a session: instructions (callgrind) and system
# calls (strace), plain against proxied, the same binary.  Results in
# docs/front-door.md.
proxy-cost: whoconn-noconfine
	@scripts/ensure-deps valgrind strace
	@scripts/proxy-cost ./whoconn-noconfine

.PHONY: proxy-cost
