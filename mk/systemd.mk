# Confinement, the real-systemd suite (tests/systemd.bats), the man page
# and the Debian package.  See README.md, "Under systemd".

# The system-call filter is compiled to BPF at build time (lib/gen-seccomp.c,
# libseccomp), so whoconn itself links no libseccomp.
DEPS_BUILD += libseccomp-dev
# tests/systemd.bats: nspawn boots a throw-away systemd; mandoc checks the
# man page; debhelper, dpkg-dev and lintian build and check the .deb.
DEPS_CHECK += systemd-container mandoc debhelper dpkg-dev lintian fakeroot

lib/confine.o lib/confine-noconfine.o: lib/whoconn-seccomp.h

lib/gen-seccomp: lib/gen-seccomp.c | deps-build
	$(CC) -O2 -std=c11 -Wall -Wextra -Werror -o $@ $< -lseccomp

lib/whoconn-seccomp.h: lib/gen-seccomp
	lib/gen-seccomp $@

# whoconn's own confine(), run from a test to try what it forbids.
tests/confine-probe: tests/confine-probe.o lib/confine.o lib/log.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
CHECK_BUILD += tests/confine-probe

clean: clean-systemd
clean-systemd:
	rm -f lib/gen-seccomp lib/whoconn-seccomp.h tests/confine-probe
.PHONY: clean-systemd

# `make deb` builds the Debian package from a copy of this tree, so that
# dpkg-buildpackage writes nothing outside DEB_DIR; `make check-deb` also
# runs lintian on it (tests/systemd.bats installs and runs it).
DEB_DIR ?= $(CURDIR)/build/deb
DEPS_DEB = dpkg-dev debhelper fakeroot lintian
DEB_SRC = $(DEB_DIR)/whoconn-$(VERSION)

deb:
	@scripts/ensure-deps $(DEPS_DEB) $(DEPS_BUILD)
	mkdir -p $(DEB_DIR) && find $(DEB_DIR) -mindepth 1 -delete && mkdir -p $(DEB_SRC)
	tar -C $(CURDIR) -cf - --exclude=./build --exclude=./.git --exclude=./run . | tar -C $(DEB_SRC) -xf -
	$(MAKE) -C $(DEB_SRC) --no-print-directory clean >/dev/null
	cd $(DEB_SRC) && dpkg-buildpackage -us -uc -b >../build.log 2>&1 || { tail -30 ../build.log; exit 1; }
	@ls $(DEB_DIR)/*.deb

check-deb: deb
	lintian --fail-on error,warning --info $(DEB_DIR)/*.changes

.PHONY: deb check-deb
