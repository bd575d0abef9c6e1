/*
 * fuzz_session.c - libFuzzer harness over everything a peer can reach:
 * line framing, byte checks, parsing, dispatch, reply formatting and the
 * registry (a real SQLite file in a scratch directory).
 *
 * It links the session engine (lib/session.c) and the registry
 * (lib/registry.c) the server links, so it drives the very session_input()
 * the server runs, with no copy of it.  Like whoconn.c's loop, it registers
 * the session before feeding it anything.
 *
 * Input layout: byte 0 holds flags, byte 1 seeds the chunk sizes, the rest
 * is what the peer sends.  Flags: bit 0 ends the input with EOF, bit 1
 * makes the session go quiet between chunks (closes its SQLite handle and
 * watches the directory, as a held connection does), bit 2 lets WHERE
 * derive the id from the machine id (lib/serverid.c: reads /etc/machine-id,
 * so only when asked), bit 3 makes it a --proxy-protocol v2 session: the
 * bytes must start with a PROXY v2 header (lib/proxy.c; seeds made by
 * tests/proxyhdr.py corpus --session).
 *
 * Besides the sanitizers, each run checks the replies against the protocol
 * (an oracle, so wrong answers are found, not only crashes):
 *   - every reply is one LF-terminated line of the protocol's alphabet;
 *   - one reply per non-blank line, plus one for a violation;
 *   - WHO answers exactly 1: the session is alone in its registry;
 *   - behind a PROXY header, requests are answered only once it was
 *     accepted, and a refused one is the only reply;
 *   - after QUIT or a violation (a refused PROXY header included) nothing
 *     more is answered;
 *   - session_free() leaves no row behind.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../lib/registry.h"
#include "../lib/session.h"

#define FUZZ_SERVER_ID "6b2f0ed4-5a91-4c37-a81d-93c47e05b26f"
#define FUZZ_OUT_MAX (1 << 22) /* replies of one input: far more than needed */

static struct config fuzz_cfg, fuzz_cfg_derive;
static char fuzz_db[256];
static int fuzz_out = -1;
static char *fuzz_buf;
static int report_fd = STDERR_FILENO;

static void watch_open(void);

static void die(const char *what) {
    dprintf(report_fd, "fuzz_session: %s: %s\n", what, strerror(errno));
    abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *base = getenv("FUZZ_TMPDIR");
    char dir[200];

    snprintf(dir, sizeof dir, "%s/whoconn-fuzz.XXXXXX", base && *base ? base : "/dev/shm");
    if (!mkdtemp(dir))
        die("mkdtemp");
    snprintf(fuzz_db, sizeof fuzz_db, "%s/registry.db", dir);
    fuzz_cfg.db = fuzz_db;
    fuzz_cfg.idle_timeout = WHOCONN_IDLE_TIMEOUT_DEFAULT;
    memcpy(fuzz_cfg.server_id, FUZZ_SERVER_ID, sizeof fuzz_cfg.server_id);
    fuzz_cfg_derive = fuzz_cfg;
    fuzz_cfg_derive.server_id[0] = '\0';
    /* Replies go to a memory file that is read back and checked. */
    fuzz_out = memfd_create("whoconn-fuzz-out", MFD_CLOEXEC);
    if (fuzz_out < 0)
        die("memfd_create");
    fuzz_buf = malloc(FUZZ_OUT_MAX + 1);
    if (!fuzz_buf)
        die("malloc");
    /* The oracle reports on a copy of stderr taken now: `make fuzz` runs
     * with -close_fd_mask=2 so that the log line of every protocol
     * violation does not flood the terminal. */
    report_fd = dup(STDERR_FILENO);
    if (report_fd < 0)
        die("dup");
    watch_open();
    return 0;
}

static bool is_uuid(const char *l, size_t n) {
    if (n != 36)
        return false;
    for (size_t i = 0; i < n; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? l[i] != '-' : !isxdigit((unsigned char)l[i]) || isupper((unsigned char)l[i]))
            return false;
    }
    return true;
}

static bool is_line(const char *l, size_t n, const char *want) {
    return n == strlen(want) && memcmp(l, want, n) == 0;
}

static bool starts(const char *l, size_t n, const char *prefix) {
    return n >= strlen(prefix) && memcmp(l, prefix, strlen(prefix)) == 0;
}

/* Checks every reply; returns the number of lines, aborts on a bad one. */
static size_t check_replies(const char *out, size_t len, bool *last_bye, bool *last_violation) {
    size_t lines = 0, pos = 0;

    *last_bye = *last_violation = false;
    if (len > 0 && out[len - 1] != '\n') {
        dprintf(report_fd, "reply output does not end in LF\n");
        abort();
    }
    while (pos < len) {
        const char *l = out + pos, *nl = memchr(l, '\n', len - pos);
        size_t n = (size_t)(nl - l);
        if (n == 0 || n >= WHOCONN_REPLY_MAX) {
            dprintf(report_fd, "reply %zu has length %zu\n", lines, n);
            abort();
        }
        for (size_t i = 0; i < n; i++)
            if (l[i] < 0x20 || l[i] > 0x7e) {
                dprintf(report_fd, "reply %zu has byte 0x%02x\n", lines, (unsigned char)l[i]);
                abort();
            }
        *last_bye = is_line(l, n, "BYE");
        *last_violation = is_line(l, n, "ERR line too long") || is_line(l, n, "ERR invalid byte") ||
                          is_line(l, n, "ERR invalid PROXY v2 header");
        if (!(is_line(l, n, "1") || is_line(l, n, "42") || is_uuid(l, n) ||
              is_line(l, n, "WHO WHERE WHY HELP QUIT") || *last_bye ||
              is_line(l, n, "ERR unknown command") || is_line(l, n, "ERR WHO takes no arguments") ||
              is_line(l, n, "ERR WHERE takes no arguments") ||
              is_line(l, n, "ERR WHY takes no arguments") ||
              is_line(l, n, "ERR HELP takes no arguments") ||
              is_line(l, n, "ERR QUIT takes no arguments") || *last_violation ||
              starts(l, n, "ERR registry unavailable: ") ||
              is_line(l, n, "ERR server id unavailable"))) {
            dprintf(report_fd, "reply %zu is not a protocol reply: \"%.*s\"\n", lines, (int)n, l);
            abort();
        }
        lines++;
        pos += n + 1;
    }
    return lines;
}

/* A connection of our own keeps the registry open across runs, as held
 * connections do in production: otherwise each run's close would be the
 * last one and checkpoint and delete the WAL, which is most of the time. */
static sqlite3 *watch_db;
static sqlite3_stmt *watch_rows;

static long long rows_left(void) {
    long long n = -1;

    if (sqlite3_step(watch_rows) == SQLITE_ROW)
        n = sqlite3_column_int64(watch_rows, 0);
    sqlite3_reset(watch_rows);
    return n;
}

static void watch_open(void) {
    static struct session s;

    session_init(&s, &fuzz_cfg, fuzz_out);
    if (reg_register(&s.reg) < 0) /* creates the schema */
        die("first registration");
    session_free(&s);
    if (sqlite3_open_v2(fuzz_db, &watch_db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(watch_db, "SELECT count(*) FROM conn", -1, &watch_rows, NULL) !=
            SQLITE_OK)
        die("opening the registry to watch it");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct session s; /* 12 KiB: keep it off the stack, as main() does */
    static struct config cfg;
    uint8_t flags = size > 0 ? data[0] : 0, seed = size > 1 ? data[1] : 0;
    bool eof = flags & 1, quiet = flags & 2;
    size_t off = size > 2 ? 2 : size;
    uint32_t rng = seed * 2654435761u + 1;

    if (ftruncate(fuzz_out, 0) < 0 || lseek(fuzz_out, 0, SEEK_SET) < 0)
        die("reset output");
    cfg = (flags & 4) ? fuzz_cfg_derive : fuzz_cfg;
    cfg.proxy_v2 = flags & 8;
    session_init(&s, &cfg, fuzz_out);
    if (reg_register(&s.reg) < 0) {
        dprintf(report_fd, "cannot register in the scratch registry\n");
        abort();
    }

    /* Chunks of 1 to 8192 bytes, sized from the seed, mimic read(2)
     * returning whatever the network delivered; seed 0 sends it whole. */
    int err = 0;
    while (err == 0 && s.end == END_NONE && off < size) {
        size_t left = size - off, take = left;
        if (seed) {
            rng ^= rng << 13;
            rng ^= rng >> 17;
            rng ^= rng << 5;
            take = 1 + rng % (seed < 16 ? seed : 8192u);
            if (take > left)
                take = left;
        }
        err = session_input(&s, (const char *)data + off, take, eof && off + take == size);
        if (err == 0)
            err = session_flush(&s);
        off += take;
        /* what session_run() does between reads */
        if (s.sweep_pending) {
            s.sweep_pending = false;
            int e = reg_sweep(&s.reg);
            if (e < 0)
                reg_fail(&s.reg, e, "sweep");
        }
        if (quiet) {
            reg_idle(&s.reg);
            if (reg_moved(&s.reg))
                reg_register(&s.reg);
        }
    }
    if (err == 0 && eof && off == size && size <= 2 && s.end == END_NONE)
        err = session_input(&s, "", 0, true);
    if (err == 0)
        err = session_flush(&s);
    if (err < 0) {
        dprintf(report_fd, "writing replies to a memory file failed: %s\n", strerror(-err));
        abort();
    }

    unsigned long ncommands = s.commands;
    enum whoconn_end end = s.end;
    /* behind --proxy-protocol v2, a request is answered only after a
     * header that was accepted, and a refused header is all it gets */
    if (cfg.proxy_v2 && ((ncommands > 0 && !s.proxied) || (end == END_PROXY_HEADER && ncommands))) {
        dprintf(report_fd, "%lu commands answered, proxied=%d, end=%s\n", ncommands, s.proxied,
                whoconn_end_names[end]);
        abort();
    }
    session_free(&s);

    ssize_t len = pread(fuzz_out, fuzz_buf, FUZZ_OUT_MAX, 0);
    if (len < 0)
        die("pread");
    bool bye, violation;
    size_t lines = check_replies(fuzz_buf, (size_t)len, &bye, &violation);
    bool ended_by_violation =
        end == END_LINE_TOO_LONG || end == END_BAD_BYTE || end == END_PROXY_HEADER;
    if (lines != ncommands + (ended_by_violation ? 1 : 0)) {
        dprintf(report_fd, "%zu replies for %lu commands (end=%s)\n", lines, ncommands,
                whoconn_end_names[end]);
        abort();
    }
    if ((end == END_QUIT) != bye || ended_by_violation != violation) {
        dprintf(report_fd, "last reply does not match end=%s\n", whoconn_end_names[end]);
        abort();
    }
    if (rows_left() != 0) {
        dprintf(report_fd, "session_free() left a row in the registry\n");
        abort();
    }
    return 0;
}
