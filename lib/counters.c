/*
 * counters.c - the shared counters file "<registry>-metrics" (contract in
 * counters.h): mapped and added to by every connection with atomic adds,
 * because a SQLite write per connection would cost more than the rest of
 * the session; read by whoconn-metrics.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../whoconn.h"
#include "counters.h"

const char *const whoconn_end_names[END__MAX] = {
    [END_NONE] = "none",
    [END_CLOSED] = "client-closed",
    [END_QUIT] = "quit",
    [END_IDLE] = "idle-timeout",
    [END_WRITE_TIMEOUT] = "write-timeout",
    [END_LINE_TOO_LONG] = "line-too-long",
    [END_BAD_BYTE] = "invalid-byte",
    [END_RESET] = "reset",
    [END_SIGNAL] = "signal",
    [END_PROXY_HEADER] = "proxy-header",
};

const char *const whoconn_cmd_names[CMD__MAX] = {
    [CMD_WHO] = "WHO",
    [CMD_WHERE] = "WHERE",
    [CMD_WHY] = "WHY",
    [CMD_HELP] = "HELP",
    [CMD_QUIT] = "QUIT",
    [CMD_UNKNOWN] = "unknown",
};

const char *const whoconn_err_names[ERRK__MAX] = {
    [ERRK_UNKNOWN_COMMAND] = "unknown-command",
    [ERRK_ARGUMENTS] = "arguments",
    [ERRK_REGISTRY] = "registry",
    [ERRK_SERVER_ID] = "server-id",
    [ERRK_LINE_TOO_LONG] = "line-too-long",
    [ERRK_INVALID_BYTE] = "invalid-byte",
    [ERRK_PROXY_HEADER] = "proxy-header",
};

/* Maps the shared counters file beside the registry, creating it on first
 * use.  Returns NULL when it cannot: metrics are best effort and never
 * keep a client from being served. */
struct whoconn_metrics *counters_map(const char *db) {
    char path[4096];
    struct stat st;
    struct whoconn_metrics *m;

    if ((size_t)snprintf(path, sizeof path, "%s" WHOCONN_METRICS_SUFFIX, db) >= sizeof path)
        return NULL;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return NULL;
    /* Growing only: every process asks for the same size, and a newer
     * binary's larger file stays as it is. */
    if (fstat(fd, &st) < 0 || (st.st_size < (off_t)sizeof *m && ftruncate(fd, sizeof *m) < 0)) {
        close(fd);
        return NULL;
    }
    m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return NULL;
    uint64_t zero = 0;
    if (!__atomic_compare_exchange_n(&m->magic, &zero, WHOCONN_METRICS_MAGIC, false,
                                     __ATOMIC_RELAXED, __ATOMIC_RELAXED) &&
        zero != WHOCONN_METRICS_MAGIC) {
        munmap(m, sizeof *m);
        return NULL; /* not our format: leave it alone */
    }
    return m;
}

/* Adds a finished session to the shared counters. */
void counters_session(struct whoconn_metrics *m, const unsigned long by_cmd[CMD__MAX],
                      const unsigned long by_err[ERRK__MAX], enum whoconn_end end,
                      unsigned long registry_errors, int64_t duration_us) {
    static const int64_t bounds_ms[WHOCONN_DURATION_BUCKETS] = WHOCONN_DURATION_BOUNDS_MS;
    int b = 0;

    for (int i = 0; i < CMD__MAX; i++)
        counters_add(&m->commands[i], by_cmd[i]);
    for (int i = 0; i < ERRK__MAX; i++)
        counters_add(counters_err(m, (enum whoconn_err)i), by_err[i]);
    counters_add(counters_end(m, end), 1);
    counters_add(&m->registry_errors, registry_errors);
    while (b < WHOCONN_DURATION_BUCKETS && duration_us > bounds_ms[b] * 1000)
        b++;
    counters_add(&m->duration_bucket[b], 1);
    counters_add(&m->duration_sum_us, (uint64_t)(duration_us > 0 ? duration_us : 0));
}

/* Copies the shared counters.  A missing file is not an error: it appears
 * with the first connection.  Each field is read atomically; the copy as a
 * whole is not a snapshot, which Prometheus counters do not need. */
int counters_read(const char *db, struct whoconn_metrics *out) {
    char path[4096];
    struct stat st;

    memset(out, 0, sizeof *out);
    if ((size_t)snprintf(path, sizeof path, "%s" WHOCONN_METRICS_SUFFIX, db) >= sizeof path)
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    if (fstat(fd, &st) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    /* An older binary's file ends before the appended fields: they read
     * as 0 (the rest of the one page mapped). */
    if (st.st_size < (off_t)offsetof(struct whoconn_metrics, errors_more)) {
        close(fd);
        /* a connection process is creating it right now, or it is not ours */
        return st.st_size == 0 ? 0 : -EMEDIUMTYPE;
    }
    const struct whoconn_metrics *m = mmap(NULL, sizeof *m, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        return -errno;
    uint64_t magic = __atomic_load_n(&m->magic, __ATOMIC_RELAXED);
    int err = 0;
    if (magic == WHOCONN_METRICS_MAGIC) {
        const uint64_t *src = (const uint64_t *)m;
        uint64_t *dst = (uint64_t *)out;
        size_t words = (size_t)st.st_size < sizeof *out ? (size_t)st.st_size : sizeof *out;
        for (size_t i = 0; i < words / sizeof(uint64_t); i++)
            dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    } else if (magic != 0)
        err = -EMEDIUMTYPE;
    munmap((void *)m, sizeof *m);
    return err;
}
