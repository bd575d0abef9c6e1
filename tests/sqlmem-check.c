/*
 * sqlmem-check - white-box checks of lib/sqlmem.c against its contract
 * (lib/sqlmem.h), run by tests/sqlmem.bats.
 *
 *   sqlmem-check CHECK    runs one check in this process
 *   sqlmem-check all      runs every check, each in a child process of its
 *                         own (sqlmem_install() must precede SQLite's
 *                         initialisation, which no process can undo)
 *   sqlmem-check list     prints the checks' names
 *
 * Each check prints "ok NAME" or "FAIL NAME: what" lines and the program
 * exits 0 when every one passed, 1 when one failed, 2 on a usage error; a
 * check that hangs is ended by SIGALRM after CHECK_TIMEOUT_S.
 * The checks call the allocator's methods directly, as SQLite does: they
 * are read back with SQLITE_CONFIG_GETMALLOC after sqlmem_install().  The
 * arena's start is learned from the first block of a fresh process (blocks
 * are carved in order, each after an 8-byte header), and the arena's pages
 * are seen with mincore(), which is how sqlmem_release()'s "returns the
 * pages to the kernel" is observable.  Scratch databases go to $TMPDIR.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../lib/sqlmem.h"
#include "../whoconn.h"

/* The arena's geometry as lib/sqlmem.c states it: power-of-two blocks from
 * 16 B to 64 KiB, each behind an 8-byte header holding its usable size. */
#define CHECK_MIN_BLOCK 16
#define CHECK_MAX_BLOCK (64 * 1024)
#define CHECK_HDR 8
/* SQLite's alignment requirement for what xMalloc returns. */
#define CHECK_ALIGN 8
/* Blocks of each request size held at once in the class check: enough that
 * neighbours exist to be overwritten.  A class's blocks are also held to
 * half the arena, so that all of them are the arena's (64 KiB: 2 a size). */
#define CHECK_BLOCKS_PER_SIZE 8
/* Requests above the largest class: malloc()'s, never the arena's. */
static const int check_large_sizes[] = {CHECK_MAX_BLOCK - CHECK_HDR + 1, CHECK_MAX_BLOCK, 100000,
                                        1 << 20, 4 << 20};
#define CHECK_LARGE_COUNT (sizeof check_large_sizes / sizeof check_large_sizes[0])
/* The release check's live block: any size the arena serves (a 4 KiB class). */
#define CHECK_RELEASE_SIZE 3000
/* The exhaustion check's block size and how far past the arena it goes. */
#define CHECK_EXHAUST_SIZE 1000
#define CHECK_EXHAUST_BLOCKS ((int)(WHOCONN_SQLMEM_BYTES / 1024) + 64)
/* The workload: rows inserted, and how long each row's text is. */
#define CHECK_WORKLOAD_ROWS 500
#define CHECK_WORKLOAD_TEXT 200
/* The scratch directory's path, and room for a file name after it. */
#define CHECK_DIR_MAX 1024
#define CHECK_PATH_MAX (CHECK_DIR_MAX + 32)
/* A failure's description (longer ones are cut), and how many a check
 * prints before it only counts them. */
#define CHECK_LINE_MAX 512
#define CHECK_FAIL_LINES 10
/* A check normally takes well under a second, under valgrind a few: one
 * that does not finish in this long has hung (a broken allocator can leave
 * SQLite waiting on a mutex that another block overwrote) and is killed.
 * -DCHECK_TIMEOUT_S=N shortens it when trying the check on broken copies. */
#ifndef CHECK_TIMEOUT_S
#define CHECK_TIMEOUT_S 60
#endif

static sqlite3_mem_methods m;
static int failures;

static void fail(const char *check, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(const char *check, const char *fmt, ...) {
    char what[CHECK_LINE_MAX];
    va_list ap;

    va_start(ap, fmt);
    /* started just above: the analyzer loses track of it when clang-tidy
     * is given several files, as lib/log.c notes too */
    vsnprintf(what, sizeof what, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)
    va_end(ap);
    if (failures++ < CHECK_FAIL_LINES)
        printf("FAIL %s: %s\n", check, what);
}

/* Installs the arena and reads its methods back; 0 or -1 (reported). */
static int install(const char *check) {
    int r = sqlmem_install();

    if (r != 0) {
        fail(check, "sqlmem_install() before SQLite's initialisation returned %d, not 0", r);
        return -1;
    }
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &m) != SQLITE_OK) {
        fail(check, "SQLITE_CONFIG_GETMALLOC refused");
        return -1;
    }
    return 0;
}

/* The arena's start, from the first block of a fresh process (freed
 * again); NULL, reported, when that block is not where the arena starts. */
static char *arena_start(const char *check) {
    char *p = m.xMalloc(CHECK_MIN_BLOCK - CHECK_HDR);
    char *a = p ? p - CHECK_HDR : NULL;

    if (!a || (uintptr_t)a % (uintptr_t)sysconf(_SC_PAGESIZE) != 0) {
        fail(check, "the first block (%p) is not 8 bytes into a page-aligned arena", (void *)p);
        a = NULL;
    }
    m.xFree(p);
    return a;
}

static int in_arena(const char *arena, const void *p) {
    return (const char *)p >= arena && (const char *)p < arena + WHOCONN_SQLMEM_BYTES;
}

/* The arena's pages resident in memory, or -1 (reported). */
static long resident_pages(const char *check, char *arena) {
    long page = sysconf(_SC_PAGESIZE);
    size_t n = WHOCONN_SQLMEM_BYTES / (size_t)page;
    unsigned char *vec = malloc(n);
    long count = 0;

    if (!vec || mincore(arena, WHOCONN_SQLMEM_BYTES, vec) < 0) {
        fail(check, "mincore: %s", strerror(errno));
        free(vec);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        count += vec[i] & 1;
    free(vec);
    return count;
}

static unsigned char pattern(unsigned block, size_t i) {
    return (unsigned char)((size_t)block * 131u + i * 7u + 1u);
}

static void fill(void *p, size_t n, unsigned block) {
    for (size_t i = 0; i < n; i++)
        ((unsigned char *)p)[i] = pattern(block, i);
}

/* The offset of the first byte of P[0..N) that is not block's pattern, or
 * -1 when all are. */
static long mismatch(const void *p, size_t n, unsigned block) {
    for (size_t i = 0; i < n; i++)
        if (((const unsigned char *)p)[i] != pattern(block, i))
            return (long)i;
    return -1;
}

/* The bytes of block P, allocated for N, that are filled and verified: all
 * that xSize says it has (SQLite may use them), and never fewer than N. */
static size_t span(void *p, int n) {
    int size = m.xSize(p);
    return (size_t)(size > n ? size : n);
}

/* Allocates a block of N bytes and checks what every block must be:
 * non-NULL, 8-byte aligned, of a size (xSize) at least N and equal to what
 * xRoundup promised.  NULL, reported, when it is not. */
static void *alloc_checked(const char *check, int n) {
    void *p = m.xMalloc(m.xRoundup(n));

    if (!p) {
        fail(check, "xMalloc(%d) returned NULL", n);
        return NULL;
    }
    if ((uintptr_t)p % CHECK_ALIGN != 0)
        fail(check, "xMalloc(%d) returned %p, not %d-byte aligned", n, p, CHECK_ALIGN);
    if (m.xSize(p) < n || m.xSize(p) != m.xRoundup(n))
        fail(check, "xMalloc(%d): xSize %d, xRoundup %d", n, m.xSize(p), m.xRoundup(n));
    return p;
}

/* --- the checks ---------------------------------------------------------- */

static void check_install(const char *check) {
    int r;

    if (install(check) < 0)
        return;
    if (sqlite3_initialize() != SQLITE_OK) {
        fail(check, "sqlite3_initialize() failed under the arena");
        return;
    }
    r = sqlmem_install();
    if (r != -EBUSY)
        fail(check, "sqlmem_install() after SQLite's initialisation returned %d, not -EBUSY", r);
}

static void check_install_after_init(const char *check) {
    int r;

    if (sqlite3_initialize() != SQLITE_OK) {
        fail(check, "sqlite3_initialize() failed");
        return;
    }
    r = sqlmem_install();
    if (r != -EBUSY)
        fail(check, "sqlmem_install() after SQLite's initialisation returned %d, not -EBUSY", r);
}

/* Every class, at its smallest and largest request and a few between: each
 * block from the arena, writable over its whole size, overlapping none. */
static void check_classes(const char *check) {
    void *blocks[CHECK_BLOCKS_PER_SIZE * 4];
    int asked[CHECK_BLOCKS_PER_SIZE * 4];
    char *arena;

    if (install(check) < 0 || !(arena = arena_start(check)))
        return;
    for (int size = CHECK_MIN_BLOCK; size <= CHECK_MAX_BLOCK; size *= 2) {
        /* the largest request that fits, the smallest, and two between */
        int lo = size == CHECK_MIN_BLOCK ? 1 : size / 2 - CHECK_HDR + 1;
        int hi = size - CHECK_HDR;
        int sizes[4] = {lo, hi, lo + (hi - lo) / 3, lo + 2 * (hi - lo) / 3};
        /* at most half the arena, so that the class is served from it */
        int per = (int)(WHOCONN_SQLMEM_BYTES / 2 / (size_t)(4 * size));
        unsigned nb = 0;

        if (per > CHECK_BLOCKS_PER_SIZE)
            per = CHECK_BLOCKS_PER_SIZE;
        for (int s = 0; s < 4; s++)
            for (int i = 0; i < per; i++) {
                void *p = alloc_checked(check, sizes[s]);
                if (!p)
                    continue;
                if (!in_arena(arena, p))
                    fail(check, "a %d-byte request (class %d) was not served from the arena", sizes[s],
                         size);
                if (m.xSize(p) != size - CHECK_HDR)
                    fail(check, "a %d-byte request has size %d, not its class's %d", sizes[s],
                         m.xSize(p), size - CHECK_HDR);
                fill(p, span(p, sizes[s]), nb);
                asked[nb] = sizes[s];
                blocks[nb++] = p;
            }
        for (unsigned b = 0; b < nb; b++) {
            long at = mismatch(blocks[b], span(blocks[b], asked[b]), b);
            if (at >= 0)
                fail(check, "class %d: block %u (%p) overwritten at byte %ld", size, b, blocks[b], at);
            m.xFree(blocks[b]);
        }
        sqlmem_release(); /* every class starts from an empty arena */
    }
}

/* Requests above the largest class go to malloc(), aligned, whole. */
static void check_large(const char *check) {
    void *blocks[CHECK_LARGE_COUNT];
    char *arena;

    if (install(check) < 0 || !(arena = arena_start(check)))
        return;
    for (unsigned i = 0; i < CHECK_LARGE_COUNT; i++) {
        blocks[i] = alloc_checked(check, check_large_sizes[i]);
        if (!blocks[i])
            continue;
        if (in_arena(arena, blocks[i]))
            fail(check, "a %d-byte request was served from the arena", check_large_sizes[i]);
        fill(blocks[i], span(blocks[i], check_large_sizes[i]), i);
    }
    for (unsigned i = 0; i < CHECK_LARGE_COUNT; i++) {
        if (!blocks[i])
            continue;
        long at = mismatch(blocks[i], span(blocks[i], check_large_sizes[i]), i);
        if (at >= 0)
            fail(check, "the %d-byte block was overwritten at byte %ld", check_large_sizes[i], at);
        m.xFree(blocks[i]);
    }
}

/* One step of the realloc check: P (holding block 0's pattern over its
 * first HELD bytes) resized to N; the common prefix must survive. */
static void *resize(const char *check, const char *arena, void *p, int held, int n, int want_arena) {
    void *q = m.xRealloc(p, m.xRoundup(n));
    int keep = held < n ? held : n;

    if (!q) {
        fail(check, "xRealloc(%d -> %d) returned NULL", held, n);
        return NULL;
    }
    if ((uintptr_t)q % CHECK_ALIGN != 0 || m.xSize(q) < n)
        fail(check, "xRealloc(%d -> %d): %p of size %d", held, n, q, m.xSize(q));
    if (in_arena(arena, q) != want_arena)
        fail(check, "xRealloc(%d -> %d) went %s the arena", held, n, want_arena ? "outside" : "into");
    long at = mismatch(q, (size_t)keep, 0);
    if (at >= 0)
        fail(check, "xRealloc(%d -> %d) lost byte %ld", held, n, at);
    fill(q, span(q, n), 0);
    return q;
}

static void check_realloc(const char *check) {
    /* sizes in turn, and whether each is the arena's: grow within and
     * across classes, shrink in place, out to malloc and back */
    static const struct {
        int n, arena;
    } steps[] = {
        {8, 1}, {8, 1}, {24, 1}, {100, 1}, {4000, 1}, {60, 1}, {CHECK_MAX_BLOCK - CHECK_HDR, 1},
        {CHECK_MAX_BLOCK, 0}, {300000, 0}, {200000, 0}, {1000, 1}, {10, 1},
    };
    char *arena;
    void *p;
    int held;

    if (install(check) < 0 || !(arena = arena_start(check)))
        return;
    p = alloc_checked(check, steps[0].n);
    if (!p)
        return;
    held = (int)span(p, steps[0].n);
    fill(p, (size_t)held, 0);
    for (unsigned i = 1; i < sizeof steps / sizeof steps[0]; i++) {
        p = resize(check, arena, p, held, steps[i].n, steps[i].arena);
        if (!p)
            return;
        held = (int)span(p, steps[i].n);
    }
    m.xFree(p);
}

/* A freed block is the next one of its class handed out. */
static void check_reuse(const char *check) {
    char *arena;

    if (install(check) < 0 || !(arena = arena_start(check)))
        return;
    for (int size = CHECK_MIN_BLOCK; size <= CHECK_MAX_BLOCK; size *= 2) {
        void *a = alloc_checked(check, size - CHECK_HDR);
        void *b = alloc_checked(check, size - CHECK_HDR);
        if (!in_arena(arena, a))
            fail(check, "class %d: a block came from outside the arena", size);
        m.xFree(a);
        void *c = alloc_checked(check, size / 2 - CHECK_HDR + 1 > 0 ? size / 2 - CHECK_HDR + 1 : 1);
        if (c != a)
            fail(check, "class %d: the freed block %p was not reused (got %p)", size, a, c);
        m.xFree(b);
        m.xFree(c);
    }
}

/* Past the arena's end requests go to malloc(), never NULL; the arena's
 * blocks and malloc()'s stay apart. */
static void check_exhaustion(const char *check) {
    void **blocks = calloc(CHECK_EXHAUST_BLOCKS, sizeof *blocks);
    int outside = 0;
    char *arena;

    if (!blocks) {
        fail(check, "calloc");
        return;
    }
    if (install(check) < 0 || !(arena = arena_start(check))) {
        free(blocks);
        return;
    }
    for (int i = 0; i < CHECK_EXHAUST_BLOCKS; i++) {
        blocks[i] = alloc_checked(check, CHECK_EXHAUST_SIZE);
        if (!blocks[i])
            continue;
        outside += !in_arena(arena, blocks[i]);
        fill(blocks[i], span(blocks[i], CHECK_EXHAUST_SIZE), (unsigned)i);
    }
    if (outside == 0)
        fail(check, "%d blocks of %d bytes all fitted in a %zu-byte arena", CHECK_EXHAUST_BLOCKS,
             CHECK_EXHAUST_SIZE, WHOCONN_SQLMEM_BYTES);
    for (int i = 0; i < CHECK_EXHAUST_BLOCKS; i++) {
        if (!blocks[i])
            continue;
        long at = mismatch(blocks[i], span(blocks[i], CHECK_EXHAUST_SIZE), (unsigned)i);
        if (at >= 0)
            fail(check, "block %d (%p) overwritten at byte %ld", i, blocks[i], at);
        m.xFree(blocks[i]);
    }
    free(blocks);
    /* once every block is back, the arena serves again, from its start */
    sqlmem_release();
    void *p = alloc_checked(check, CHECK_EXHAUST_SIZE);
    if (p && (char *)p != arena + CHECK_HDR)
        fail(check, "after the arena was exhausted, freed and released, a block came from %p, not its start %p",
             p, (void *)(arena + CHECK_HDR));
    m.xFree(p);
}

/* sqlmem_release() leaves the arena alone while a block is live, and hands
 * its pages back and starts afresh once none is. */
static void check_release(const char *check) {
    char *arena;
    void *live, *other, *next;
    long pages;
    int n = CHECK_RELEASE_SIZE;

    if (install(check) < 0 || !(arena = arena_start(check)))
        return;
    live = alloc_checked(check, n);
    other = alloc_checked(check, n);
    if (!live || !other)
        return;
    fill(live, span(live, n), 1);
    m.xFree(other);
    sqlmem_release();
    if (mismatch(live, span(live, n), 1) >= 0)
        fail(check, "a live block's content changed across sqlmem_release()");
    pages = resident_pages(check, arena);
    if (pages == 0)
        fail(check, "no arena page resident after sqlmem_release() with a block live");
    next = alloc_checked(check, n);
    if (next == arena + CHECK_HDR || next == live)
        fail(check, "sqlmem_release() with a block live started the arena afresh (next block %p, live %p)",
             next, live);
    if (next) {
        fill(next, span(next, n), 2);
        if (mismatch(live, span(live, n), 1) >= 0)
            fail(check, "the block allocated after sqlmem_release() overlaps the live one");
    }
    m.xFree(next);
    m.xFree(live);

    sqlmem_release();
    pages = resident_pages(check, arena);
    if (pages != 0)
        fail(check, "%ld arena pages resident after sqlmem_release() with no block live", pages);
    next = alloc_checked(check, n);
    if (next != arena + CHECK_HDR)
        fail(check, "after sqlmem_release() the next block is %p, not the arena's start %p", next,
             (void *)(arena + CHECK_HDR));
    m.xFree(next);
}

/* One workload on a scratch database in WAL mode: create, insert, count,
 * close; 0 or -1 (reported). */
static int workload(const char *check, const char *path) {
    static const char *const setup[] = {
        "PRAGMA journal_mode=WAL",
        "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)",
        "DELETE FROM t",
        "BEGIN",
    };
    char text[CHECK_WORKLOAD_TEXT + 1];
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    const char *what = "open";
    int r = -1;

    memset(text, 'x', CHECK_WORKLOAD_TEXT);
    text[CHECK_WORKLOAD_TEXT] = '\0';
    if (sqlite3_open(path, &db) != SQLITE_OK)
        goto out;
    for (unsigned i = 0; i < sizeof setup / sizeof setup[0]; i++) {
        what = setup[i];
        if (sqlite3_exec(db, setup[i], NULL, NULL, NULL) != SQLITE_OK)
            goto out;
    }
    what = "INSERT";
    if (sqlite3_prepare_v2(db, "INSERT INTO t(v) VALUES (?1 || ?2)", -1, &st, NULL) != SQLITE_OK)
        goto out;
    for (int i = 0; i < CHECK_WORKLOAD_ROWS; i++) {
        sqlite3_bind_text(st, 1, text, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 2, i);
        if (sqlite3_step(st) != SQLITE_DONE)
            goto out;
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    st = NULL;
    what = "COMMIT";
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK)
        goto out;
    what = "SELECT";
    if (sqlite3_prepare_v2(db, "SELECT count(*), sum(length(v)) FROM t", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW)
        goto out;
    r = 0;
    if (sqlite3_column_int(st, 0) != CHECK_WORKLOAD_ROWS) {
        fail(check, "%d rows read back, not %d", sqlite3_column_int(st, 0), CHECK_WORKLOAD_ROWS);
        what = NULL; /* reported */
        r = -1;
    }
out:
    if (r < 0 && what)
        fail(check, "SQLite, %s: %s", what, db ? sqlite3_errmsg(db) : "no memory");
    sqlite3_finalize(st);
    if (sqlite3_close(db) != SQLITE_OK && r == 0) {
        fail(check, "sqlite3_close failed");
        r = -1;
    }
    return r;
}

/* A real SQLite workload under the arena: once it closed, SQLite holds no
 * block of it (else sqlmem_release() could never work in whoconn), the
 * release hands the pages back, and a second workload runs on the fresh
 * arena. */
static void check_workload(const char *check) {
    const char *tmp = getenv("TMPDIR");
    static const char *const suffixes[] = {"", "-wal", "-shm", "-journal"};
    char dir[CHECK_DIR_MAX], path[CHECK_PATH_MAX];
    char *arena;
    long pages;

    if (install(check) < 0 || !(arena = arena_start(check)))
        return;
    int n = snprintf(dir, sizeof dir, "%s/sqlmem-check.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (n < 0 || (size_t)n >= sizeof dir || !mkdtemp(dir)) {
        fail(check, "mkdtemp %s: %s", dir, strerror(errno));
        return;
    }
    snprintf(path, sizeof path, "%s/check.db", dir);
    for (int round = 1; round <= 2; round++) {
        if (workload(check, path) < 0)
            break;
        pages = resident_pages(check, arena);
        if (pages <= 0) {
            fail(check, "round %d: no arena page was used by SQLite", round);
            break;
        }
        sqlmem_release();
        pages = resident_pages(check, arena);
        if (pages != 0) {
            fail(check, "round %d: %ld arena pages resident after SQLite closed and sqlmem_release()",
                 round, pages);
            break;
        }
    }
    for (unsigned i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        snprintf(path, sizeof path, "%s/check.db%s", dir, suffixes[i]);
        unlink(path);
    }
    rmdir(dir);
    sqlite3_shutdown();
}

static const struct {
    const char *name;
    void (*run)(const char *check);
} checks[] = {
    {"install", check_install},
    {"install-after-init", check_install_after_init},
    {"classes", check_classes},
    {"large", check_large},
    {"realloc", check_realloc},
    {"reuse", check_reuse},
    {"exhaustion", check_exhaustion},
    {"release", check_release},
    {"workload", check_workload},
};
#define CHECK_COUNT (sizeof checks / sizeof checks[0])

static int run_one(unsigned i) {
    alarm(CHECK_TIMEOUT_S); /* SIGALRM's default action ends the process */
    checks[i].run(checks[i].name);
    if (failures == 0)
        printf("ok %s\n", checks[i].name);
    else if (failures > CHECK_FAIL_LINES)
        printf("FAIL %s: %d more failures not shown\n", checks[i].name, failures - CHECK_FAIL_LINES);
    fflush(stdout);
    return failures ? 1 : 0;
}

int main(int argc, char **argv) {
    int status = 0;

    setvbuf(stdout, NULL, _IOLBF, 0); /* a check that hangs has said what it found */
    if (argc != 2) {
        fprintf(stderr, "usage: sqlmem-check CHECK | all | list\n");
        return 2;
    }
    if (strcmp(argv[1], "list") == 0) {
        for (unsigned i = 0; i < CHECK_COUNT; i++)
            printf("%s\n", checks[i].name);
        return 0;
    }
    if (strcmp(argv[1], "all") == 0) {
        fflush(stdout);
        for (unsigned i = 0; i < CHECK_COUNT; i++) {
            int ws = 0;
            pid_t pid = fork();
            if (pid < 0) {
                perror("sqlmem-check: fork");
                return 2;
            }
            if (pid == 0)
                exit(run_one(i)); /* exit, not _exit: LeakSanitizer checks at exit */
            if (waitpid(pid, &ws, 0) < 0 || !WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
                if (WIFSIGNALED(ws) && WTERMSIG(ws) == SIGALRM)
                    printf("FAIL %s: did not finish in %d s\n", checks[i].name, CHECK_TIMEOUT_S);
                else if (WIFSIGNALED(ws))
                    printf("FAIL %s: killed by signal %d\n", checks[i].name, WTERMSIG(ws));
                else if (WIFEXITED(ws) && WEXITSTATUS(ws) != 1) /* 1: it said why */
                    printf("FAIL %s: exit status %d (a sanitizer's or valgrind's report is on stderr)\n",
                           checks[i].name, WEXITSTATUS(ws));
                status = 1;
            }
        }
        return status;
    }
    for (unsigned i = 0; i < CHECK_COUNT; i++)
        if (strcmp(argv[1], checks[i].name) == 0)
            return run_one(i);
    fprintf(stderr, "sqlmem-check: no check named %s (try: sqlmem-check list)\n", argv[1]);
    return 2;
}
