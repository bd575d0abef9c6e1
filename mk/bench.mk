# Benchmarks (issue 4, bench/README.md).  `make bench` is the full run and
# rewrites bench/RESULTS.md and bench/plot.png; `make bench-smoke` runs every
# part for a second or two into a scratch directory and checks the output is
# sane (never timing): it is part of `make check`.

DEPS_BENCH = gcc valgrind gnuplot-nox xinetd ucspi-tcp systemd systemd-container \
             netcat-openbsd python3 procps util-linux iproute2
BENCH_CFLAGS = -O2 -g -std=c11 -Wall -Wextra -Werror -Wshadow -fPIE
BENCH_LDFLAGS = -pie -Wl,-z,relro,-z,now

bench/wcload: bench/wcload.c | deps-build
	$(CC) $(BENCH_CFLAGS) $(BENCH_LDFLAGS) -o $@ $< -lpthread

# Built with the same hardening flags as whoconn and, like whoconn, against
# the shared libc: the baseline differs from whoconn in nothing but its work.
bench/trivial: bench/trivial.c | deps-build
	$(CC) $(BENCH_CFLAGS) $(BENCH_LDFLAGS) -o $@ $<

# The obvious implementation of the design card (issue 12), the peer whoconn
# must beat: the shared libsqlite3, the same hardening flags.  Not installed.
bench/naive: bench/naive.c | deps-build
	$(CC) $(BENCH_CFLAGS) $(BENCH_LDFLAGS) -o $@ $< -lsqlite3

bench-deps:
	@scripts/ensure-deps $(DEPS_BENCH)

bench: whoconn whoconn-noconfine bench/wcload bench/trivial bench/naive bench-deps
	BENCH_CMD="make bench" bench/run.sh

bench-smoke: whoconn whoconn-noconfine bench/wcload bench/trivial bench/naive bench-deps
	@rm -rf bench/smoke.out
	bench/run.sh --smoke --out bench/smoke.out
	bench/check-smoke bench/smoke.out

bench-clean:
	rm -rf bench/wcload bench/trivial bench/naive bench/smoke.out bench/raw bench/results.tsv

CHECK_STAGES += bench-smoke
CHECK_BUILD  += whoconn-noconfine bench/wcload bench/trivial bench/naive
DEPS_CHECK   += $(DEPS_BENCH)

.PHONY: bench bench-smoke bench-deps bench-clean
