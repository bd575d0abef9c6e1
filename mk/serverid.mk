# serverid.c: WHERE's server id without libsystemd (issue 12), so that whoconn
# can be linked fully static.  Not linked into whoconn yet: the object and its
# test are built here; tests/serverid.bats compares it with libsystemd.
#
# A program using it links serverid.o and nettle, statically:
#     $(SERVERID_LDLIBS)
# (under -static, plain -lnettle).  nettle-dev ships libnettle.a.

DEPS_BUILD += nettle-dev
SERVERID_LDLIBS = -Wl,-Bstatic -lnettle -Wl,-Bdynamic

serverid.o: serverid.c serverid.h | deps-build
	$(CC) $(CFLAGS) -c -o $@ serverid.c

# The test program links libsystemd (dynamically) to compare against it.
tests/serverid-check: tests/serverid-check.c serverid.o serverid.h whoconn.h | deps-build
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ tests/serverid-check.c serverid.o \
		$(SERVERID_LDLIBS) -lsystemd

check: tests/serverid-check

clean: clean-serverid
clean-serverid:
	rm -f serverid.o tests/serverid-check
.PHONY: clean-serverid
