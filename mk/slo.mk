# The SLO at the front door (issue 18, docs/slo.md): three servers, an
# HAProxy front with the shipped configuration and a client fleet, all in
# network namespaces, under a schedule of faults.  `make slo` is the full
# run (SLO_SECONDS, SLO_FAULTS) and writes bench/slo-RESULTS.md and
# bench/slo-timeline.png; check-slo is a 90-second version in make check
# that fails when availability at the front falls below 99.9 % or a held
# connection is lost on a server no fault touched.
DEPS_SLO = haproxy socat etcd-server etcd-client iproute2 python3 python3-matplotlib systemd
# the gate needs no picture
DEPS_SLO_CHECK = $(filter-out python3-matplotlib,$(DEPS_SLO))
DEPS_CHECK += $(DEPS_SLO_CHECK)
SLO_SECONDS ?= 420
# every fault class, each twice (a fault every 20 s; a rolling restart
# takes longer and delays the next)
SLO_FAULTS ?= kill leader partition drain agent etcd registry rolling-restart rolling-upgrade
SLO_CHECK_SECONDS ?= 90
# A fault every 20 s: four in 90 s, of which one kill.  A kill fails what
# is in flight on that server (its held connections' pipelined WHO, ~4,
# and short sessions): ~0.05 % of the run each; two kills (the order kill,
# drain, agent, cycled) came to 99.911 %, too near the 99.9 % bar.  The
# rolling upgrade fails the run if a connection opened after an upgrade
# runs the old program; it goes first, since the last slot (68 s) is the
# one that recoveries overrunning by 2 s on a slow machine push out.
SLO_CHECK_FAULTS ?= rolling-upgrade drain kill agent
# The gate asserts correctness, not speed: a request fails when it gets a
# wrong answer, a connection error or no answer within the clients' 5 s
# timeout.  The 1 s latency of the SLI is make slo's (a benchmark): on a
# machine busy with other work (load 500) it was missed, and a gate that
# fails with the machine's load lies.
SLO_CHECK_GOOD_WITHIN ?= 5

# where make slo writes slo-RESULTS.md and slo-timeline.png; the second
# full run, every fault on the busiest server (SLO_TARGET=busiest), is kept
# in bench/slo-busiest/
SLO_OUT ?= bench
slo: whoconn whoconn-sync
	@scripts/ensure-deps $(DEPS_SLO)
	bench/slo/run $(SLO_SECONDS) "$(SLO_FAULTS)" $(SLO_OUT)

# Exit status 77 from the harness: it cannot run here (not root, no network
# namespaces), reported as skipped, as the bats suites skip.
check-slo: whoconn whoconn-sync
	@scripts/ensure-deps $(DEPS_SLO_CHECK)
	SLO_PERIOD=20 SLO_WARMUP=8 SLO_GOOD_WITHIN=$(SLO_CHECK_GOOD_WITHIN) bench/slo/run -g $(SLO_CHECK_SECONDS) "$(SLO_CHECK_FAULTS)" build/slo-check; \
	rc=$$?; [ $$rc -ne 77 ] || { echo "check-slo: skipped"; rc=0; }; exit $$rc

CHECK_BUILD  += whoconn-sync
CHECK_STAGES += check-slo
.PHONY: slo check-slo
