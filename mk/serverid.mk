# tests/serverid.bats: lib/serverid.c derives WHERE's server id without
# libsystemd (so that whoconn links fully static); this test program links
# libsystemd, dynamically, to compare the two for the real and synthetic
# machine ids.

tests/serverid-check: tests/serverid-check.o lib/serverid.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lsystemd

CHECK_BUILD += tests/serverid-check

clean: clean-serverid
clean-serverid:
	rm -f tests/serverid-check
.PHONY: clean-serverid
