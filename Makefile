# whoconn - see README.md.  `make` builds, `make run` serves on
# 127.0.0.1:4242 from this tree, `make check` runs every test.

VERSION  = 0.1.0
PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
MANDIR  ?= $(PREFIX)/share/man
UNITDIR ?= $(PREFIX)/lib/systemd/system
DESTDIR ?=

CC      ?= cc
PKGS     = libsystemd sqlite3 uuid
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -Wall -Wextra -Werror -Wshadow -Wformat=2 \
           -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE \
           -DWHOCONN_VERSION='"$(VERSION)"' $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS ?=
LDFLAGS += -pie -Wl,-z,relro,-z,now -Wl,--as-needed
# SQLite, libuuid and nettle are linked statically into every program:
# each shared object costs a per-connection process the dynamic loader's
# work (README, "Decisions").  whoconn itself is linked fully static, as a
# static PIE (ASLR kept): no dynamic loader at all, -22 % instructions a
# session (bench/NOTES.md, item 12).  It loads nothing at run time: WHERE's
# id is derived without libsystemd (lib/serverid.c).
LDLIBS   = -Wl,-Bstatic -lsqlite3 -luuid -lnettle -Wl,-Bdynamic -lm
STATIC_LDFLAGS = -static-pie -Wl,-z,relro,-z,now
STATIC_LDLIBS  = -lsqlite3 -luuid -lnettle -lm

# What each target needs from Debian; scripts/ensure-deps installs what is
# missing when run as root, or prints the apt-get line and stops.
DEPS_BUILD = gcc make pkg-config libsqlite3-dev libsystemd-dev uuid-dev nettle-dev
DEPS_RUN   = systemd
DEPS_CHECK = bats python3 sqlite3 systemd netcat-openbsd procps

# Tests and tools run Debian's programs (ensure-deps installs them), not
# whatever a user's PATH puts first: a pyenv shim in front of python3 took
# 0.6 to 10 s a call on a loaded machine, against 0.03 to 0.6 s.
export PATH := /usr/sbin:/usr/bin:/sbin:/bin:$(PATH)

PORT ?= 4242
RUNDIR = $(CURDIR)/run

all: whoconn

# Each module is compiled once, into an object beside its source, and each
# program links the objects it needs (README, "Layout").  -MMD writes each
# object's header dependencies next to it.
CFLAGS += -MMD -MP
LIB_SESSION = lib/session.o lib/proxy.o lib/peer.o lib/registry.o lib/counters.o lib/log.o lib/serverid.o
# lib/sqlite-noext.o: the SQLite modules whoconn never uses stay out of the
# link and out of every connection's open (lib/sqlite-noext.h); lib/sqlmem.o:
# SQLite's own arena, handed back whole when a held connection idles
# (lib/sqlmem.h; the checking builds leave both out).
WHOCONN_OBJS = whoconn.o $(LIB_SESSION) lib/confine.o lib/drain.o lib/cli.o lib/sqlite-noext.o lib/sqlmem.o

%.o: %.c | deps-build
	$(CC) $(CFLAGS) -c -o $@ $<

whoconn: $(WHOCONN_OBJS)
	$(CC) $(CFLAGS) $(STATIC_LDFLAGS) -o $@ $(WHOCONN_OBJS) $(STATIC_LDLIBS)

# The same program without Landlock and seccomp, for valgrind and callgrind
# only: valgrind makes its own system calls, which the filter would deny.
lib/confine-noconfine.o: lib/confine.c | deps-build
	$(CC) $(CFLAGS) -DWHOCONN_NO_CONFINE -c -o $@ $<
whoconn-noconfine: whoconn.o $(LIB_SESSION) lib/confine-noconfine.o lib/drain.o lib/cli.o lib/sqlite-noext.o lib/sqlmem.o
	$(CC) $(CFLAGS) $(STATIC_LDFLAGS) -o $@ $^ $(STATIC_LDLIBS)

-include $(wildcard *.d lib/*.d tests/*.d scripts/*.d)

deps-build:
	@scripts/ensure-deps $(DEPS_BUILD)

run: whoconn
	@scripts/ensure-deps $(DEPS_RUN)
	@mkdir -p $(RUNDIR)
	@echo "whoconn: serving on 127.0.0.1:$(PORT), registry $(RUNDIR)/registry.db; try: nc 127.0.0.1 $(PORT)"
	systemd-socket-activate -l 127.0.0.1:$(PORT) --inetd -a \
		-E WHOCONN_DB=$(RUNDIR)/registry.db $(CURDIR)/whoconn

# `make check` installs what every stage needs (one apt-get, before anything
# runs in parallel), builds every program and harness (check-build, in
# parallel), then runs the stages CHECK_JOBS at a time with
# scripts/check-stages, which prints each stage's result and duration at
# the end.  Stages are independent make targets; the feature areas add
# theirs in mk/*.mk.  CHECK_STAGES starts with the longest, so that the
# short ones fill the gaps.  `make check-full` adds what only a release
# needs (docs/robustness.md, "What runs where").
CHECK_JOBS ?= 2
CHECK_STAGES = check-suites-systemd check-asan check-suites-cluster check-suites
CHECK_BUILD  = whoconn

check:
	@scripts/ensure-deps $(DEPS_BUILD) $(DEPS_CHECK)
	@scripts/check-stages -j $(CHECK_JOBS) -f check-build $(CHECK_STAGES)

check-full:
	@scripts/ensure-deps $(DEPS_BUILD) $(DEPS_CHECK)
	@scripts/check-stages -j $(CHECK_JOBS) -f check-build $(CHECK_STAGES) $(CHECK_FULL_STAGES)

check-build:
	@$(MAKE) --no-print-directory -j$(CHECK_JOBS) $(CHECK_BUILD)

# The bats suites in three stages: the two that boot a systemd container,
# the cluster and the etcd client (network namespaces, etcd members), and
# all the others.
SUITES_SYSTEMD = tests/systemd.bats tests/metrics-systemd.bats
SUITES_CLUSTER = tests/cluster.bats tests/etcd.bats
SUITES = $(filter-out $(SUITES_SYSTEMD) $(SUITES_CLUSTER),$(wildcard tests/*.bats))

check-suites:
	bats --timing --print-output-on-failure $(SUITES)
check-suites-systemd:
	bats --timing --print-output-on-failure $(SUITES_SYSTEMD)
check-suites-cluster:
	bats --timing --print-output-on-failure $(SUITES_CLUSTER)

# Units are substituted at install time, so PREFIX/BINDIR given to
# `make install` always win over an earlier build.
SUBST = sed -e 's|@BINDIR@|$(BINDIR)|g'

install: whoconn
	install -D -m 0755 whoconn $(DESTDIR)$(BINDIR)/whoconn
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(PREFIX)/lib/sysusers.d $(DESTDIR)$(PREFIX)/lib/tmpfiles.d
	$(SUBST) units/whoconn.socket.in > $(DESTDIR)$(UNITDIR)/whoconn.socket
	$(SUBST) units/whoconn@.service.in > $(DESTDIR)$(UNITDIR)/whoconn@.service
	$(SUBST) units/whoconn-proxy.socket.in > $(DESTDIR)$(UNITDIR)/whoconn-proxy.socket
	$(SUBST) units/whoconn-proxy@.service.in > $(DESTDIR)$(UNITDIR)/whoconn-proxy@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/whoconn.socket $(DESTDIR)$(UNITDIR)/whoconn@.service \
	      $(DESTDIR)$(UNITDIR)/whoconn-proxy.socket $(DESTDIR)$(UNITDIR)/whoconn-proxy@.service
	install -m 0644 units/whoconn.sysusers $(DESTDIR)$(PREFIX)/lib/sysusers.d/whoconn.conf
	install -m 0644 units/whoconn.tmpfiles $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/whoconn.conf
	install -D -m 0644 man/whoconn.8 $(DESTDIR)$(MANDIR)/man8/whoconn.8

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/whoconn $(DESTDIR)$(UNITDIR)/whoconn.socket \
	      $(DESTDIR)$(UNITDIR)/whoconn@.service $(DESTDIR)$(UNITDIR)/whoconn-proxy.socket \
	      $(DESTDIR)$(UNITDIR)/whoconn-proxy@.service $(DESTDIR)$(PREFIX)/lib/sysusers.d/whoconn.conf \
	      $(DESTDIR)$(PREFIX)/lib/tmpfiles.d/whoconn.conf \
	      $(DESTDIR)$(MANDIR)/man8/whoconn.8

clean:
	rm -f whoconn whoconn-noconfine *.o *.d lib/*.o lib/*.d tests/*.o tests/*.d
	rm -rf $(RUNDIR)

.PHONY: all deps-build run check check-full check-build check-suites check-suites-systemd \
        check-suites-cluster install uninstall clean

# Feature areas (benchmarks, fuzzing, packaging, cluster agent, metrics) keep
# their targets in mk/*.mk and hook into `make check` through CHECK_BUILD
# (what the stages need built), CHECK_STAGES and CHECK_FULL_STAGES.
CHECK_FULL_STAGES =
-include mk/*.mk

# After the includes: CHECK_BUILD is complete only now.
check-suites check-suites-systemd check-suites-cluster: $(CHECK_BUILD)
