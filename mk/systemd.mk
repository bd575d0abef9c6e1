# Confinement, the real-systemd suite (tests/systemd.bats), the man page
# and the Debian package.  See README.md, "Under systemd".

# The system-call filter is compiled to BPF at build time (tools/gen-seccomp.c,
# libseccomp), so whoconn itself links no libseccomp.
DEPS_BUILD += libseccomp-dev
# tests/systemd.bats: nspawn boots a throw-away systemd; mandoc checks the
# man page; debhelper, dpkg-dev and lintian build and check the .deb.
DEPS_CHECK += systemd-container mandoc debhelper dpkg-dev lintian fakeroot

whoconn: whoconn-seccomp.h

tools/gen-seccomp: tools/gen-seccomp.c | deps-build
	$(CC) -O2 -std=c11 -Wall -Wextra -Werror -o $@ $< -lseccomp

whoconn-seccomp.h: tools/gen-seccomp
	tools/gen-seccomp $@

# whoconn.c's own confine(), run from a test to try what it forbids.
tests/confine-probe: tests/confine-probe.c whoconn.c whoconn.h whoconn-seccomp.h | deps-build
	$(CC) $(CFLAGS) -Wno-unused-function $(LDFLAGS) -o $@ $< $(LDLIBS)
check: tests/confine-probe

clean: clean-systemd
clean-systemd:
	rm -f tools/gen-seccomp whoconn-seccomp.h tests/confine-probe
.PHONY: clean-systemd
