/*
 * sqlmem.h - SQLite's memory in a connection process: an arena of its own,
 * handed back to the kernel whole once the registry is closed.
 *
 * Contract: sqlmem_install(), before the first SQLite call, makes SQLite
 * allocate from a private anonymous mapping of WHOCONN_SQLMEM_BYTES
 * (reserved, not committed: only the pages used cost memory) instead of
 * malloc(); a request the arena cannot serve goes to malloc(), so SQLite
 * never fails for want of arena.  sqlmem_release() returns the arena's pages
 * to the kernel and starts it afresh; it does so only while SQLite holds
 * no block of it (every SQLite connection closed), else it does nothing.
 * Single-threaded, as a connection process is.  sqlmem_install() returns 0
 * or -EBUSY (SQLite refused the allocator: it was already initialised).
 *
 * Why: glibc's malloc keeps freed small chunks in a per-thread cache
 * (tcache) that malloc_trim() does not release; after SQLite closed, those
 * chunks, spread over the heap, kept ~44 KiB of every held connection
 * dirty, a third of its memory (bench/NOTES.md item 18).  Turning tcache
 * off (GLIBC_TUNABLES) costs 7 % more instructions in every session.
 */
#ifndef WHOCONN_SQLMEM_H
#define WHOCONN_SQLMEM_H

/* Weak: the checking builds (ASan, memcheck, the metrics cost builds) link
 * whoconn.c without lib/sqlmem.o, so that their allocator sees SQLite's
 * memory; whoconn.c calls these only where they are linked in. */
int sqlmem_install(void) __attribute__((weak));
void sqlmem_release(void) __attribute__((weak));

#endif /* WHOCONN_SQLMEM_H */
