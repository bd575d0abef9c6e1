/*
 * sqlmem.c - SQLite's own arena in a connection process (contract in
 * sqlmem.h).  Blocks are powers of two from 16 bytes to 64 KiB, carved in
 * order from the arena and kept on one free list per size once freed; each
 * starts with an 8-byte header holding its usable size, so the payload is
 * 8-byte aligned as SQLite requires.  Larger requests, and any once the
 * arena is used up, go to malloc() with the same header.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <sqlite3.h>

#include "../whoconn.h"
#include "sqlmem.h"

#define SQLMEM_MIN_SHIFT 4 /* 16-byte blocks */
#define SQLMEM_CLASSES 13  /* 16 B to 64 KiB */
#define SQLMEM_HDR 8

static char *arena, *bump, *arena_end;
static void *free_list[SQLMEM_CLASSES];
static long live; /* arena blocks SQLite holds */

static int size_class(size_t need) {
    if (need <= (1u << SQLMEM_MIN_SHIFT))
        return 0;
    return (int)(sizeof(unsigned long) * 8) - __builtin_clzl(need - 1) - SQLMEM_MIN_SHIFT;
}

static int in_arena(const void *p) {
    return arena && (const char *)p >= arena && (const char *)p < arena_end;
}

static void *mem_malloc(int n) {
    if (n <= 0)
        return NULL; /* SQLite never asks for that */
    size_t need = (size_t)n + SQLMEM_HDR;
    int k = size_class(need);
    uint64_t *h = NULL;

    if (k < SQLMEM_CLASSES) {
        if (!arena) {
            int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
            /* fd -1: what MAP_ANONYMOUS asks for */
            // cppcheck-suppress invalidFunctionArg
            void *a = mmap(NULL, WHOCONN_SQLMEM_BYTES, PROT_READ | PROT_WRITE, flags, -1, 0);
            if (a != MAP_FAILED) {
                arena = bump = a;
                arena_end = arena + WHOCONN_SQLMEM_BYTES;
            }
        }
        size_t bsize = (size_t)1 << (k + SQLMEM_MIN_SHIFT);
        if (free_list[k]) {
            h = free_list[k];
            free_list[k] = *(void **)(h + 1);
        } else if (arena && (size_t)(arena_end - bump) >= bsize) {
            h = (uint64_t *)bump;
            bump += bsize;
        }
        if (h) {
            *h = bsize - SQLMEM_HDR;
            live++;
            return h + 1;
        }
    }
    h = malloc(need);
    if (!h)
        return NULL;
    *h = (uint64_t)n;
    return h + 1;
}

static void mem_free(void *p) {
    if (!p)
        return;
    uint64_t *h = (uint64_t *)p - 1;
    if (!in_arena(h)) {
        free(h);
        return;
    }
    int k = size_class((size_t)*h + SQLMEM_HDR);
    *(void **)p = free_list[k];
    free_list[k] = h;
    live--;
}

static int mem_size(void *p) {
    return p ? (int)((uint64_t *)p)[-1] : 0;
}

static void *mem_realloc(void *p, int n) {
    if ((size_t)n <= (size_t)mem_size(p) && in_arena((uint64_t *)p - 1))
        return p;
    void *q = mem_malloc(n);
    if (q) {
        int old = mem_size(p);
        memcpy(q, p, (size_t)(old < n ? old : n));
        mem_free(p);
    }
    return q;
}

static int mem_roundup(int n) {
    size_t need = (size_t)n + SQLMEM_HDR;
    int k = size_class(need);
    if (k < SQLMEM_CLASSES)
        return (int)(((size_t)1 << (k + SQLMEM_MIN_SHIFT)) - SQLMEM_HDR);
    return (n + 7) & ~7;
}

static int mem_init(void *arg) {
    (void)arg;
    return SQLITE_OK;
}

static void mem_shutdown(void *arg) {
    (void)arg;
}

int sqlmem_install(void) {
    static const sqlite3_mem_methods methods = {
        mem_malloc, mem_free, mem_realloc, mem_size, mem_roundup, mem_init, mem_shutdown, NULL,
    };
    return sqlite3_config(SQLITE_CONFIG_MALLOC, &methods) == SQLITE_OK ? 0 : -EBUSY;
}

void sqlmem_release(void) {
    if (!arena || live != 0 || bump == arena)
        return;
    madvise(arena, (size_t)(bump - arena), MADV_DONTNEED);
    bump = arena;
    memset(free_list, 0, sizeof free_list);
}
