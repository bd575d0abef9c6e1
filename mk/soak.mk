# Soak (issue 10): whoconn under mixed load for SOAK_SECONDS, checked at
# quiescent checkpoints (tests/soak.py says what it asserts).  `make soak`
# runs 600 s; `make check` runs soak-check, 30 s of the same.  Loopback only,
# one activator, bounded in time; every process it starts dies with it.
#
# SOAK_SETTLE is how long a checkpoint waits after pausing the load: 1 s
# covers the old 250 ms registration delay; with registration before the
# first reply, SOAK_SETTLE=0 checks that WHO is exact at once.
SOAK_SECONDS ?= 600
SOAK_SETTLE  ?= 1
SOAK_FLAGS   ?=
DEPS_SOAK = python3 sqlite3 systemd

soak: whoconn
	@scripts/ensure-deps $(DEPS_SOAK)
	timeout --kill-after=10 $$(( $(SOAK_SECONDS) + 180 )) \
		python3 tests/soak.py --whoconn $(CURDIR)/whoconn --seconds $(SOAK_SECONDS) \
		--settle $(SOAK_SETTLE) $(SOAK_FLAGS)

soak-check:
	@$(MAKE) --no-print-directory soak SOAK_SECONDS=30

CHECK_TARGETS += soak-check

.PHONY: soak soak-check
