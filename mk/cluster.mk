# Cluster mode: the whoconn-sync agent, its unit, and the three-server
# fault tests (tests/cluster.bats, run by `bats tests/` in `make check`).
# See DESIGN.md and docs/cluster.md.

SYNC_PKGS = libsystemd sqlite3 uuid libcurl jansson libcrypto nettle
# The agent is one long-running process: unlike whoconn, it may link
# shared libraries freely.  It links the same registry module as whoconn,
# so the schema, the liveness check and the sweep have one definition;
# ETCD_OBJS are its etcd client (lib/etcd.h; libcurl, jansson),
# lib/sync-config.o its settings (on lib/cli.o, as the other programs').
SYNC_CFLAGS = $(shell pkg-config --cflags $(SYNC_PKGS) 2>/dev/null)
SYNC_LDLIBS = $(shell pkg-config --libs $(SYNC_PKGS) 2>/dev/null) -lm
ETCD_OBJS = lib/etcd.o lib/etcd-kv.o lib/etcd-watch.o
SYNC_MODULES = $(ETCD_OBJS) lib/sync-config.o
SYNC_OBJS = whoconn-sync.o $(SYNC_MODULES) lib/cli.o lib/registry.o lib/log.o lib/serverid.o

DEPS_CLUSTER_BUILD = libcurl4-openssl-dev libjansson-dev libssl-dev
# etcd-server also ships a default etcd.service that starts on install
# where systemd runs; the tests never use it (their members live in
# network namespaces of their own).
# openssl makes the TLS run's certificates.
DEPS_CLUSTER_CHECK = etcd-server etcd-client iproute2 python3 systemd openssl

all: whoconn-sync
# tests/cluster.bats and tests/etcd.bats run in make check's
# check-suites-cluster stage: the agent and the etcd test program are built
# and etcd installed before any stage starts.
CHECK_BUILD += whoconn-sync tests/etcd-check
DEPS_CHECK  += $(DEPS_CLUSTER_BUILD) $(DEPS_CLUSTER_CHECK)

# Built by the %.o rule, with the headers of libcurl, jansson and OpenSSL.
whoconn-sync.o $(SYNC_MODULES) tests/etcd-check.o: CFLAGS += $(SYNC_CFLAGS)
whoconn-sync.o $(SYNC_MODULES) tests/etcd-check.o: | deps-cluster-build

whoconn-sync: $(SYNC_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(SYNC_OBJS) $(SYNC_LDLIBS)

# lib/etcd's own tests (tests/etcd.bats) drive it through this program,
# linked with the client's objects exactly as the agent is.
tests/etcd-check: tests/etcd-check.o $(ETCD_OBJS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(SYNC_LDLIBS)

deps-cluster-build: deps-build
	@scripts/ensure-deps $(DEPS_CLUSTER_BUILD)

deps-cluster-check:
	@scripts/ensure-deps $(DEPS_CLUSTER_CHECK)

# One scenario run outside make check (the suite is also in `bats tests/`).
check-cluster: whoconn whoconn-sync deps-cluster-check
	bats --print-output-on-failure tests/cluster.bats

# lib/etcd against a real etcd, its error paths included.
check-etcd: tests/etcd-check deps-cluster-check
	bats --print-output-on-failure tests/etcd.bats

# The unit's Documentation= points at the installed docs/cluster.md.
DOCDIR ?= $(PREFIX)/share/doc/whoconn
SYNC_SUBST = $(SUBST) -e 's|@DOCDIR@|$(DOCDIR)|g'

install: install-cluster
install-cluster: whoconn-sync
	install -D -m 0755 whoconn-sync $(DESTDIR)$(BINDIR)/whoconn-sync
	install -d $(DESTDIR)$(UNITDIR)
	$(SYNC_SUBST) units/whoconn-sync.service.in > $(DESTDIR)$(UNITDIR)/whoconn-sync.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/whoconn-sync.service
	install -D -m 0644 units/cluster.conf.example $(DESTDIR)$(DOCDIR)/cluster.conf.example
	install -D -m 0644 docs/cluster.md $(DESTDIR)$(DOCDIR)/cluster.md
	install -D -m 0644 man/whoconn-sync.8 $(DESTDIR)$(MANDIR)/man8/whoconn-sync.8

uninstall: uninstall-cluster
uninstall-cluster:
	rm -f $(DESTDIR)$(BINDIR)/whoconn-sync $(DESTDIR)$(UNITDIR)/whoconn-sync.service \
	      $(DESTDIR)$(DOCDIR)/cluster.conf.example $(DESTDIR)$(DOCDIR)/cluster.md \
	      $(DESTDIR)$(MANDIR)/man8/whoconn-sync.8

clean: clean-cluster
clean-cluster:
	rm -f whoconn-sync tests/etcd-check

.PHONY: deps-cluster-build deps-cluster-check check-cluster check-etcd \
        install-cluster uninstall-cluster clean-cluster

# The cluster's `make run` (as root): three servers with their etcd members
# and agents in network namespaces and the HAProxy front on
# 127.0.0.1:$(PORT), until Ctrl-C, which leaves nothing behind
# (scripts/run-cluster; docs/cluster.md, "Trying it on one machine").
# tests/run-cluster.bats runs it in make check's cluster stage.
DEPS_RUN_CLUSTER = etcd-server etcd-client iproute2 haproxy socat systemd
SUITES_CLUSTER += tests/run-cluster.bats
run-cluster: whoconn whoconn-sync
	@scripts/ensure-deps $(DEPS_RUN_CLUSTER)
	@scripts/run-cluster --port $(PORT)
.PHONY: run-cluster

# Convergence and failover times over several runs (bench/cluster-RESULTS.md).
bench-cluster: whoconn whoconn-sync deps-cluster-check
	bench/cluster.sh $(CLUSTER_RUNS)
CLUSTER_RUNS ?= 5
.PHONY: bench-cluster
