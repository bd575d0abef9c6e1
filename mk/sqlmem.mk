# tests/sqlmem.bats: white-box checks of lib/sqlmem.c, SQLite's arena in a
# connection process, against its contract (lib/sqlmem.h).  The check links
# lib/sqlmem.o and SQLite statically, as whoconn does; a second build
# compiles both the check and lib/sqlmem.c with ASan and UBSan (clang, as
# mk/robust.mk's sanitized builds).  The suite also runs the first under
# valgrind memcheck.

tests/sqlmem-check: tests/sqlmem-check.o lib/sqlmem.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

tests/sqlmem-check-asan: tests/sqlmem-check.c lib/sqlmem.c $(SAN_HEADERS) | deps-robust
	$(SAN_CC) $(SAN_CFLAGS) -o $@ tests/sqlmem-check.c lib/sqlmem.c $(LDLIBS)

CHECK_BUILD += tests/sqlmem-check tests/sqlmem-check-asan

clean: clean-sqlmem
clean-sqlmem:
	rm -f tests/sqlmem-check tests/sqlmem-check-asan
.PHONY: clean-sqlmem
