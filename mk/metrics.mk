# whoconn-metrics: the Prometheus endpoint (docs/metrics.md).
# `make` builds it beside whoconn, `make install` installs it and its units,
# `make check` runs tests/metrics.bats (through `bats tests/`) and then
# check-metrics: the alert rules and the label names shared with whoconn.c.
# `make metrics-cost` measures what the counters add to a connection.

METRICS_UNITS = whoconn-metrics.socket whoconn-metrics@.service
# promtool and the Prometheus server for the tests; valgrind for metrics-cost.
DEPS_CHECK += prometheus
DEPS_METRICS_COST = valgrind strace

all: whoconn-metrics
CHECK_BUILD += whoconn-metrics $(FUZZ_METRICS_DIR)/fuzz-http
DEPS_CHECK  += prometheus clang-tidy cppcheck clang libclang-rt-14-dev
install: install-metrics
uninstall: uninstall-metrics
clean: clean-metrics

METRICS_OBJS = whoconn-metrics.o lib/http.o lib/drain.o lib/cli.o lib/registry.o lib/counters.o lib/log.o
whoconn-metrics: $(METRICS_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(METRICS_OBJS) $(LDLIBS)

install-metrics: whoconn-metrics
	install -D -m 0755 whoconn-metrics $(DESTDIR)$(BINDIR)/whoconn-metrics
	install -D -m 0644 man/whoconn-metrics.8 $(DESTDIR)$(MANDIR)/man8/whoconn-metrics.8
	install -d $(DESTDIR)$(UNITDIR)
	for u in $(METRICS_UNITS); do \
		$(SUBST) units/$$u.in > $(DESTDIR)$(UNITDIR)/$$u && \
		chmod 0644 $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done

uninstall-metrics:
	rm -f $(DESTDIR)$(BINDIR)/whoconn-metrics $(DESTDIR)$(MANDIR)/man8/whoconn-metrics.8
	for u in $(METRICS_UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$$u; done

clean-metrics:
	rm -f whoconn-metrics scripts/metrics-syscost
	rm -rf $(METRICS_COST_DIR) $(FUZZ_METRICS_DIR)

CHECK_STAGES += check-metrics

# The alert rules load and their unit tests pass; whoconn-metrics.c is
# clean under the project's clang-tidy and cppcheck settings (mk/robust.mk).
# (The disconnect reasons have one definition, lib/counters.c, used by the
# log line and the metric alike.)
check-metrics:
	@scripts/ensure-deps prometheus clang-tidy cppcheck
	promtool check rules contrib/prometheus/whoconn.rules.yml contrib/prometheus/whoconn-slo.rules.yml
	cd contrib/prometheus && promtool test rules whoconn.rules.test.yml whoconn-slo.rules.test.yml
	clang-tidy --quiet --warnings-as-errors='*' whoconn-metrics.c lib/http.c -- -std=c11 \
		-DWHOCONN_VERSION='"$(VERSION)"' $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
	cppcheck --quiet --error-exitcode=1 --enable=warning,style,performance,portability \
		--std=c11 --inline-suppr --suppressions-list=.cppcheck-suppressions \
		-D__GNUC__ --include=robust/cppcheck-defs.h -I. -Ilib --library=posix whoconn-metrics.c lib/http.c

# libFuzzer over the HTTP request parser (fuzz/fuzz_metrics_http.c), with
# ASan and UBSan: briefly in check-metrics, longer with `make fuzz-metrics`.
# One process: the machine is shared.  Finds land in build/metrics-fuzz/.
FUZZ_METRICS_SECONDS       ?= 300
FUZZ_METRICS_CHECK_SECONDS ?= 20
FUZZ_METRICS_DIR = build/metrics-fuzz
FUZZ_METRICS_CFLAGS = -std=c11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror -Wshadow \
	-Wno-unused-function -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-DWHOCONN_VERSION='"$(VERSION)"' $(shell pkg-config --cflags $(PKGS) 2>/dev/null)

$(FUZZ_METRICS_DIR)/fuzz-http: fuzz/fuzz_metrics_http.c lib/http.c lib/http.h whoconn.h | deps-build
	@scripts/ensure-deps clang libclang-rt-14-dev
	@mkdir -p $(@D)
	clang $(FUZZ_METRICS_CFLAGS) -o $@ fuzz/fuzz_metrics_http.c lib/http.c

define run_fuzz_metrics
	@mkdir -p $(FUZZ_METRICS_DIR)/corpus $(FUZZ_METRICS_DIR)/crashes
	$(FUZZ_METRICS_DIR)/fuzz-http -max_total_time=$(1) -max_len=9000 -timeout=10 \
		-rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix=$(FUZZ_METRICS_DIR)/crashes/ \
		$(FUZZ_METRICS_DIR)/corpus fuzz/corpus-metrics
endef

fuzz-metrics: $(FUZZ_METRICS_DIR)/fuzz-http
	$(call run_fuzz_metrics,$(FUZZ_METRICS_SECONDS))

check-fuzz-metrics: $(FUZZ_METRICS_DIR)/fuzz-http
	$(call run_fuzz_metrics,$(FUZZ_METRICS_CHECK_SECONDS))

CHECK_STAGES += check-fuzz-metrics

# Instructions one `WHY` session executes (callgrind, user space) with the
# counters and with the metrics_map() call removed, the system calls of each,
# and wall time.  Both builds are -DWHOCONN_NO_CONFINE, like robust's
# valgrind build: valgrind 3.19 does not know the seccomp and Landlock system
# calls.  Single-threaded and short; results in docs/metrics.md.
METRICS_COST_DIR = build/metrics-cost
METRICS_CALL = struct whoconn_metrics \*m = counters_map(cfg.db);
metrics-cost: $(METRICS_COST_DIR)/whoconn-on $(METRICS_COST_DIR)/whoconn-off scripts/metrics-syscost
	@scripts/ensure-deps $(DEPS_METRICS_COST)
	@scripts/metrics-cost $(METRICS_COST_DIR)/whoconn-on $(METRICS_COST_DIR)/whoconn-off
	@scripts/metrics-syscost /dev/shm/whoconn-metrics-syscost.$$$$

$(METRICS_COST_DIR)/whoconn-on.c: whoconn.c
	@mkdir -p $(@D)
	cp whoconn.c $@

$(METRICS_COST_DIR)/whoconn-off.c: whoconn.c
	@mkdir -p $(@D)
	@grep -q '$(METRICS_CALL)' whoconn.c || { echo "whoconn.c no longer has: $(METRICS_CALL)" >&2; exit 1; }
	sed -e 's/$(METRICS_CALL)/struct whoconn_metrics *m = NULL;/' whoconn.c > $@

$(METRICS_COST_DIR)/whoconn-%: $(METRICS_COST_DIR)/whoconn-%.c $(LIB_SESSION) lib/confine-noconfine.o lib/drain.o lib/cli.o
	$(CC) $(CFLAGS) -I. $(LDFLAGS) -o $@ $< $(LIB_SESSION) lib/confine-noconfine.o lib/drain.o lib/cli.o $(LDLIBS)

scripts/metrics-syscost: scripts/metrics-syscost.c whoconn.h | deps-build
	$(CC) $(CFLAGS) -I. $(LDFLAGS) -o $@ scripts/metrics-syscost.c

whoconn-nometrics: whoconn.c $(LIB_SESSION) lib/confine.o lib/drain.o lib/cli.o
	@grep -q '$(METRICS_CALL)' whoconn.c || { echo "whoconn.c no longer has: $(METRICS_CALL)" >&2; exit 1; }
	sed -e 's/$(METRICS_CALL)/struct whoconn_metrics *m = NULL;/' whoconn.c > $@.c
	$(CC) $(CFLAGS) -I. $(LDFLAGS) -o $@ $@.c $(LIB_SESSION) lib/confine.o lib/drain.o lib/cli.o $(LDLIBS)

.PHONY: install-metrics uninstall-metrics clean-metrics check-metrics metrics-cost fuzz-metrics check-fuzz-metrics
