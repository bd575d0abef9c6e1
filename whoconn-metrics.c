/*
 * whoconn-metrics - answer one HTTP request for whoconn's Prometheus
 * metrics.
 *
 * Started like whoconn itself, one process per connection, by systemd's
 * Accept=yes socket activation (whoconn-metrics.socket, 127.0.0.1:9242):
 * fd 0 reads the HTTP request, fd 1 carries the answer, fd 2 is the
 * journal.  It answers `GET /metrics` (and HEAD) in the Prometheus text
 * exposition format, anything else with an HTTP error, and closes.
 *
 * It only reads: the counters file "<registry>-metrics" that every
 * connection process adds to, the registry's `conn` rows whose liveness
 * lock is held (the live connections), and the `peer` table of cluster
 * mode.  It never creates or writes any of them.
 *
 * Limits are in whoconn.h; the metrics are described in docs/metrics.md.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h> /* priorities only: we log to stderr */
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "whoconn.h"

struct config {
    const char *db;
    unsigned timeout; /* seconds for the request head, and per write */
};

/* ---- HTTP answers ---------------------------------------------------- */

enum status {
    ST_OK,
    ST_BAD_REQUEST,
    ST_NOT_FOUND,
    ST_METHOD_NOT_ALLOWED,
    ST_REQUEST_TIMEOUT,
    ST_CONTENT_TOO_LARGE,
    ST_FIELDS_TOO_LARGE,
    ST_INTERNAL_ERROR,
    ST_BAD_VERSION,
    ST__MAX
};

static const struct {
    const char *reason;
    int code;
    int exit_status; /* the peer's fault is listed in SuccessExitStatus= */
} status_info[ST__MAX] = {
    [ST_OK] = {"OK", 200, WHOCONN_EXIT_OK},
    [ST_BAD_REQUEST] = {"Bad Request", 400, WHOCONN_EXIT_PROTOCOL},
    [ST_NOT_FOUND] = {"Not Found", 404, WHOCONN_EXIT_PROTOCOL},
    [ST_METHOD_NOT_ALLOWED] = {"Method Not Allowed", 405, WHOCONN_EXIT_PROTOCOL},
    [ST_REQUEST_TIMEOUT] = {"Request Timeout", 408, WHOCONN_EXIT_TIMEOUT},
    [ST_CONTENT_TOO_LARGE] = {"Content Too Large", 413, WHOCONN_EXIT_PROTOCOL},
    [ST_FIELDS_TOO_LARGE] = {"Request Header Fields Too Large", 431, WHOCONN_EXIT_PROTOCOL},
    [ST_INTERNAL_ERROR] = {"Internal Server Error", 500, WHOCONN_EXIT_SOFTWARE},
    [ST_BAD_VERSION] = {"HTTP Version Not Supported", 505, WHOCONN_EXIT_PROTOCOL},
};

#define STR_(x) #x
#define STR(x) STR_(x)

#define METRICS_PATH "/metrics"
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct request {
    char head[WHOCONN_METRICS_HEAD_MAX + 1]; /* NUL-terminated once parsed */
    size_t len;
    const char *method;
    const char *path; /* without the query */
    bool head_only;   /* HEAD: the answer's header, no body */
    const char *why;  /* what was wrong, for the log */
};

static int64_t now_ms(clockid_t clk) {
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One write(2) per line, with the journal's <N> priority prefix when stderr
 * is the journal (systemd sets $JOURNAL_STREAM then). */
static void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_msg(int prio, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    whoconn_vlog("whoconn-metrics", getenv("JOURNAL_STREAM") != NULL, prio, fmt, ap);
    va_end(ap);
}

/* ---- reading the request --------------------------------------------- */

/* Where the head ends (just past its empty line), or 0 if not yet.  A bare
 * LF is accepted as a line end, as RFC 9112 section 2.2 allows. */
static size_t head_end(const char *buf, size_t len) {
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i - 1] == '\n')
            return i + 1;
        if (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')
            return i + 1;
    }
    return 0;
}

/* Reads the request head from fd 0 until its empty line, within the
 * deadline.  Returns 0, -EMSGSIZE past WHOCONN_METRICS_HEAD_MAX,
 * -ETIMEDOUT, -EPIPE when the peer closed before the end (*len tells
 * whether it sent anything), or another negative errno. */
static int read_head(struct request *rq, int64_t deadline) {
    rq->len = 0;
    for (;;) {
        /* Empty lines before the request line are skipped (RFC 9112 2.2). */
        size_t skip = 0;
        while (skip < rq->len && (rq->head[skip] == '\r' || rq->head[skip] == '\n'))
            skip++;
        memmove(rq->head, rq->head + skip, rq->len - skip);
        rq->len -= skip;
        size_t end = head_end(rq->head, rq->len);
        if (end) {
            rq->len = end;
            return 0;
        }
        if (rq->len >= WHOCONN_METRICS_HEAD_MAX)
            return -EMSGSIZE;

        int64_t left = deadline - now_ms(CLOCK_MONOTONIC);
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -ETIMEDOUT;
        /* One byte over the limit is enough to know it is too long. */
        ssize_t n = read(STDIN_FILENO, rq->head + rq->len, WHOCONN_METRICS_HEAD_MAX + 1 - rq->len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EPIPE;
        rq->len += (size_t)n;
        if (rq->len > WHOCONN_METRICS_HEAD_MAX && !head_end(rq->head, WHOCONN_METRICS_HEAD_MAX))
            return -EMSGSIZE;
    }
}

/* ---- parsing the request --------------------------------------------- */

static bool is_tchar(unsigned char c) {
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Cuts the next line out of the head: returns it NUL-terminated with CR
 * and LF removed, and advances *pos.  NULL at the empty line. */
static char *next_line(char *head, size_t len, size_t *pos) {
    char *line = head + *pos;
    char *lf = memchr(line, '\n', len - *pos);

    if (!lf)
        return NULL;
    *pos = (size_t)(lf - head) + 1;
    *lf = '\0';
    if (lf > line && lf[-1] == '\r')
        lf[-1] = '\0';
    return *line ? line : NULL;
}

/* Parses the request line and header fields in place and decides the
 * answer.  Never reads past the head: a body is refused, not read. */
static enum status parse_request(struct request *rq) {
    size_t pos = 0;
    unsigned hosts = 0, fields = 0;
    bool body = false;

    /* Only printable ASCII, SP and HTAB: no NUL, no stray CR, no obs-text
     * (we need none of it, and refusing it keeps parsing simple). */
    for (size_t i = 0; i < rq->len; i++) {
        unsigned char c = (unsigned char)rq->head[i];
        if (c == '\r' && i + 1 < rq->len && rq->head[i + 1] == '\n')
            continue;
        if (c != '\n' && c != '\t' && (c < 0x20 || c > 0x7e)) {
            rq->why = "a byte that is not printable ASCII";
            return ST_BAD_REQUEST;
        }
    }

    /* request-line = method SP request-target SP HTTP-version */
    char *line = next_line(rq->head, rq->len, &pos);
    if (!line) {
        rq->why = "no request line";
        return ST_BAD_REQUEST;
    }
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || sp1 == line || sp2 == sp1 + 1) {
        rq->why = "request line is not METHOD SP TARGET SP VERSION";
        return ST_BAD_REQUEST;
    }
    *sp1 = *sp2 = '\0';
    char *method = line, *target = sp1 + 1, *version = sp2 + 1;
    for (char *c = method; *c; c++)
        if (!is_tchar((unsigned char)*c)) {
            rq->why = "method is not a token";
            return ST_BAD_REQUEST;
        }
    rq->head_only = strcmp(method, "HEAD") == 0; /* even an error's answer has no body */
    if (strchr(target, '\t')) {
        rq->why = "control character in the target";
        return ST_BAD_REQUEST;
    }
    if (strlen(version) != 8 || strncmp(version, "HTTP/", 5) != 0 ||
        !isdigit((unsigned char)version[5]) || version[6] != '.' ||
        !isdigit((unsigned char)version[7])) {
        rq->why = "malformed HTTP version";
        return ST_BAD_REQUEST;
    }
    if (version[5] != '1') {
        rq->why = "HTTP version other than 1.x";
        return ST_BAD_VERSION;
    }
    bool http11 = version[7] != '0';

    /* field-line = field-name ":" OWS field-value OWS */
    while ((line = next_line(rq->head, rq->len, &pos))) {
        if (++fields > WHOCONN_METRICS_FIELDS_MAX) {
            rq->why = "too many header fields";
            return ST_FIELDS_TOO_LARGE;
        }
        char *colon = strchr(line, ':');
        if (!colon || colon == line) {
            rq->why = "header field without a name and colon";
            return ST_BAD_REQUEST;
        }
        for (char *c = line; c < colon; c++)
            if (!is_tchar((unsigned char)*c)) {
                /* also catches obs-fold and "Name :" (RFC 9112 5.1, 5.2) */
                rq->why = "header field name is not a token";
                return ST_BAD_REQUEST;
            }
        *colon = '\0';
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        if (strcasecmp(line, "Host") == 0)
            hosts++;
        else if (strcasecmp(line, "Transfer-Encoding") == 0)
            body = true;
        else if (strcasecmp(line, "Content-Length") == 0) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(value, &end, 10);
            while (*end == ' ' || *end == '\t')
                end++;
            if (!isdigit((unsigned char)*value) || errno || *end) {
                rq->why = "invalid Content-Length";
                return ST_BAD_REQUEST;
            }
            if (n > 0)
                body = true;
        }
    }
    /* RFC 9112 3.2: an HTTP/1.1 request has exactly one Host field. */
    if ((http11 && hosts == 0) || hosts > 1) {
        rq->why = hosts ? "more than one Host field" : "HTTP/1.1 request without Host";
        return ST_BAD_REQUEST;
    }

    /* absolute-form (RFC 9112 3.2.2): only the path matters to us. */
    if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
        char *slash = strchr(strstr(target, "//") + 2, '/');
        target = slash ? slash : target + strlen(target); /* no path: 404 */
    }
    target[strcspn(target, "?#")] = '\0';
    rq->method = method;
    rq->path = target;
    if (strcmp(target, METRICS_PATH) != 0) {
        rq->why = "no such path";
        return ST_NOT_FOUND;
    }
    if (strcmp(method, "GET") != 0 && !rq->head_only) {
        rq->why = "method other than GET or HEAD";
        return ST_METHOD_NOT_ALLOWED;
    }
    if (body) {
        rq->why = "a request body";
        return ST_CONTENT_TOO_LARGE;
    }
    return ST_OK;
}

/* ---- reading the metrics --------------------------------------------- */

struct peer {
    char id[WHOCONN_METRICS_LABEL_MAX + 1];
    long long count;
    int64_t expires_ms;
    bool has_updated;
    int64_t updated_ms;
};

struct snapshot {
    struct whoconn_metrics c; /* zero when no connection was ever served */
    int counters_err;         /* 0, or why the counters file is unreadable */
    int registry_err;         /* 0, or why the registry is unreadable */
    const char *registry_what;
    long long connections;
    long long peers_alive, peers_expired;
    bool peer_updated_column;
    struct peer peers[WHOCONN_METRICS_PEERS_MAX];
    size_t npeers;
    int64_t now_ms; /* CLOCK_BOOTTIME, the peer table's clock */
};

/* Copies the shared counters.  A missing file is not an error: it appears
 * with the first connection.  Each field is read atomically; the copy as a
 * whole is not a snapshot, which Prometheus counters do not need. */
static int counters_read(const char *db, struct whoconn_metrics *out) {
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
    if (st.st_size < (off_t)sizeof *out) {
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
        for (size_t i = 0; i < sizeof *out / sizeof(uint64_t); i++)
            dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    } else if (magic != 0)
        err = -EMEDIUMTYPE;
    munmap((void *)m, sizeof *m);
    return err;
}

static int sql_error(sqlite3 *db, int rc) {
    int sys = db ? sqlite3_system_errno(db) : 0;

    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    case SQLITE_NOMEM:
        return -ENOMEM;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return -EBUSY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EBADMSG;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    default:
        return sys > 0 ? -sys : -EIO;
    }
}

static const char *err_str(int err) {
    switch (err) {
    case -EBADMSG:
        return "file is corrupt";
    case -EMEDIUMTYPE:
        return "file belongs to another program";
    case -EBUSY:
        return "registry busy";
    default:
        return strerror(-err);
    }
}

/* Runs sql and returns its first column of its first row in *ret. */
static int sql_int(sqlite3 *db, const char *sql, long long *ret) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *ret = sqlite3_column_int64(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        *ret = 0;
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return sql_error(db, rc);
}

/* Counts the conn rows whose process still holds its liveness lock, the
 * same test whoconn's sweep uses.  A lock that cannot be tested counts as
 * alive, as in the sweep: never under-count a live connection. */
static int count_live(sqlite3 *db, const char *dbpath, long long *ret) {
    int fds[WHOCONN_LOCK_SHARDS];
    sqlite3_stmt *st = NULL;
    char path[4096];
    long long n = 0;
    int rc, err = 0;

    for (int i = 0; i < WHOCONN_LOCK_SHARDS; i++)
        fds[i] = -2; /* not tried yet; -1: does not exist */
    if ((size_t)snprintf(path, sizeof path, "%s" WHOCONN_LOCKS_SUFFIX "/00", dbpath) >= sizeof path)
        return -ENAMETOOLONG;
    rc = sqlite3_prepare_v2(db, "SELECT pid FROM conn", -1, &st, NULL);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        if ((rc = sqlite3_step(st)) != SQLITE_ROW)
            break;
        long long pid = sqlite3_column_int64(st, 0);
        unsigned shard = (unsigned)(pid % WHOCONN_LOCK_SHARDS);
        if (pid < 0)
            continue;
        if (fds[shard] == -2) {
            snprintf(path + strlen(path) - 2, 3, "%02u", shard);
            fds[shard] = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            if (fds[shard] < 0 && errno != ENOENT)
                fds[shard] = -3; /* cannot tell */
            else if (fds[shard] < 0)
                fds[shard] = -1;
        }
        if (fds[shard] == -1)
            continue; /* no lock file: nobody ever locked here */
        if (fds[shard] == -3 || whoconn_lock_held(fds[shard], pid) != 0)
            n++;
    }
    if (rc != SQLITE_DONE)
        err = sql_error(db, rc);
    sqlite3_finalize(st);
    for (int i = 0; i < WHOCONN_LOCK_SHARDS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    *ret = n;
    return err;
}

/* Peers by state, and the first WHOCONN_METRICS_PEERS_MAX of them by id.
 * updated_ms is optional, added by the cluster agent (docs/metrics.md). */
static int read_peers(sqlite3 *db, struct snapshot *s) {
    sqlite3_stmt *st = NULL;
    long long has = 0;
    int err = sql_int(db, "SELECT count(*) FROM pragma_table_info('peer') WHERE name='updated_ms'", &has);

    if (err < 0)
        return err;
    s->peer_updated_column = has > 0;
    int rc = sqlite3_prepare_v2(db,
                                has ? "SELECT id, count, expires_ms, updated_ms FROM peer ORDER BY id"
                                    : "SELECT id, count, expires_ms, NULL FROM peer ORDER BY id",
                                -1, &st, NULL);
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        if ((rc = sqlite3_step(st)) != SQLITE_ROW)
            break;
        const unsigned char *id = sqlite3_column_text(st, 0);
        int64_t expires = sqlite3_column_int64(st, 2);
        if (expires > s->now_ms)
            s->peers_alive++;
        else
            s->peers_expired++;
        if (!id || s->npeers == WHOCONN_METRICS_PEERS_MAX)
            continue;
        /* Only ids that are label values as they are: escaping or cutting
         * could make two peers one series. */
        size_t len = (size_t)sqlite3_column_bytes(st, 0), i = 0;
        while (i < len && id[i] >= 0x20 && id[i] < 0x7f && id[i] != '"' && id[i] != '\\')
            i++;
        if (len == 0 || i < len || len > WHOCONN_METRICS_LABEL_MAX)
            continue;
        struct peer *p = &s->peers[s->npeers++];
        memcpy(p->id, id, len);
        p->id[len] = '\0';
        p->count = sqlite3_column_int64(st, 1);
        p->expires_ms = expires;
        p->has_updated = sqlite3_column_type(st, 3) != SQLITE_NULL;
        p->updated_ms = sqlite3_column_int64(st, 3);
    }
    err = rc == SQLITE_DONE ? 0 : sql_error(db, rc);
    sqlite3_finalize(st);
    return err;
}

/* Reads the registry without ever creating or changing it.  A registry
 * that does not exist yet (no connection since boot) counts
 * zero connections; a missing directory is a fault, whoconn could not
 * create it either. */
static int registry_read(const char *path, struct snapshot *s) {
    sqlite3 *db = NULL;
    struct stat st;
    long long app = 0, tables = 0;
    int err;

    s->registry_what = "open";
    if (stat(path, &st) < 0) {
        if (errno != ENOENT)
            return -errno;
        char dir[4096];
        const char *slash = strrchr(path, '/');
        snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
        return access(dir[0] ? dir : "/", W_OK | X_OK) < 0 ? -errno : 0;
    }
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        err = sql_error(db, rc);
        goto out;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, WHOCONN_BUSY_TIMEOUT_MS);
    /* One read transaction: rows and peers are from the same moment. */
    err = sql_error(db, sqlite3_exec(db, "BEGIN", NULL, NULL, NULL));
    if (err == 0)
        err = sql_int(db, "SELECT application_id FROM pragma_application_id", &app);
    if (err == 0)
        err = sql_int(db, "SELECT count(*) FROM sqlite_schema", &tables);
    if (err < 0)
        goto out;
    if (app != WHOCONN_SQLITE_APP_ID) {
        /* an empty file is a registry being created right now */
        err = app == 0 && tables == 0 ? 0 : -EMEDIUMTYPE;
        goto out;
    }
    s->registry_what = "count";
    err = count_live(db, path, &s->connections);
    if (err == 0) {
        s->registry_what = "peers";
        err = read_peers(db, s);
    }
out:
    sqlite3_close(db); /* ends the read transaction */
    return err;
}

/* ---- writing the metrics --------------------------------------------- */

static void help_type(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void write_metrics(FILE *f, const struct snapshot *s) {
    static const int64_t bounds_ms[WHOCONN_DURATION_BUCKETS] = WHOCONN_DURATION_BOUNDS_MS;
    const struct whoconn_metrics *c = &s->c;

    help_type(f, "whoconn_build_info", "gauge", "Version of whoconn-metrics, always 1.");
    fprintf(f, "whoconn_build_info{version=\"%s\",sqlite_version=\"%s\"} 1\n", WHOCONN_VERSION,
            sqlite3_libversion());

    help_type(f, "whoconn_registry_up", "gauge",
              "1 if the registry and the counters file could be read, else 0.");
    fprintf(f, "whoconn_registry_up %d\n", !s->registry_err && !s->counters_err);

    if (!s->registry_err) {
        help_type(f, "whoconn_connections", "gauge",
                  "Connections registered now (a connection registers before its first reply).");
        fprintf(f, "whoconn_connections %lld\n", s->connections);

        help_type(f, "whoconn_peers", "gauge", "Cluster peers in the registry, by state.");
        fprintf(f, "whoconn_peers{state=\"alive\"} %lld\n", s->peers_alive);
        fprintf(f, "whoconn_peers{state=\"expired\"} %lld\n", s->peers_expired);
        if (s->npeers) {
            help_type(f, "whoconn_peer_connections", "gauge",
                      "Connections a cluster peer last reported.");
            for (size_t i = 0; i < s->npeers; i++)
                fprintf(f, "whoconn_peer_connections{peer=\"%s\"} %lld\n", s->peers[i].id,
                        s->peers[i].count);
            help_type(f, "whoconn_peer_expiry_seconds", "gauge",
                      "Seconds until a peer's count expires; negative once expired.");
            for (size_t i = 0; i < s->npeers; i++)
                fprintf(f, "whoconn_peer_expiry_seconds{peer=\"%s\"} %.3f\n", s->peers[i].id,
                        (double)(s->peers[i].expires_ms - s->now_ms) / 1000);
        }
        bool any_updated = false;
        for (size_t i = 0; i < s->npeers; i++)
            any_updated |= s->peers[i].has_updated;
        if (any_updated) {
            help_type(f, "whoconn_peer_count_age_seconds", "gauge",
                      "Seconds since a peer's count was last updated.");
            for (size_t i = 0; i < s->npeers; i++)
                if (s->peers[i].has_updated)
                    fprintf(f, "whoconn_peer_count_age_seconds{peer=\"%s\"} %.3f\n",
                            s->peers[i].id, (double)(s->now_ms - s->peers[i].updated_ms) / 1000);
        }
    }
    if (s->counters_err)
        return; /* absent rather than zero: zero would look like a reset */

    help_type(f, "whoconn_connections_accepted_total", "counter",
              "Connections accepted since boot.");
    fprintf(f, "whoconn_connections_accepted_total %" PRIu64 "\n", c->accepted);

    help_type(f, "whoconn_commands_total", "counter",
              "Requests by command, counted when their connection ends.");
    for (int i = 0; i < CMD__MAX; i++)
        fprintf(f, "whoconn_commands_total{command=\"%s\"} %" PRIu64 "\n", whoconn_cmd_names[i],
                c->commands[i]);

    help_type(f, "whoconn_errors_total", "counter",
              "ERR replies by reason, counted when their connection ends.");
    for (int i = 0; i < ERRK__MAX; i++)
        fprintf(f, "whoconn_errors_total{reason=\"%s\"} %" PRIu64 "\n", whoconn_err_names[i],
                c->errors[i]);

    help_type(f, "whoconn_disconnects_total", "counter", "Finished connections by why they ended.");
    for (int i = 0; i < END__MAX; i++)
        if (i != END_NONE) /* every finished session has a reason */
            fprintf(f, "whoconn_disconnects_total{reason=\"%s\"} %" PRIu64 "\n",
                    whoconn_end_names[i], c->ends[i]);

    help_type(f, "whoconn_registry_errors_total", "counter",
              "Failed registry operations in connection processes.");
    fprintf(f, "whoconn_registry_errors_total %" PRIu64 "\n", c->registry_errors);

    help_type(f, "whoconn_connection_duration_seconds", "histogram",
              "How long finished connections lasted.");
    uint64_t cum = 0;
    for (int i = 0; i <= WHOCONN_DURATION_BUCKETS; i++) {
        cum += c->duration_bucket[i];
        if (i < WHOCONN_DURATION_BUCKETS)
            fprintf(f, "whoconn_connection_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                    (double)bounds_ms[i] / 1000, cum);
        else
            fprintf(f, "whoconn_connection_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    fprintf(f, "whoconn_connection_duration_seconds_sum %.6f\n", (double)c->duration_sum_us / 1e6);
    fprintf(f, "whoconn_connection_duration_seconds_count %" PRIu64 "\n", cum);
}

/* ---- answering -------------------------------------------------------- */

static int write_all(const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sends status, the header fields and (unless head_only) the body. */
static int respond(enum status st, const char *type, const char *body, size_t len, bool head_only) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "Cache-Control: no-store\r\n"
                     "Connection: close\r\n"
                     "\r\n",
                     status_info[st].code, status_info[st].reason, type, len,
                     st == ST_METHOD_NOT_ALLOWED ? "Allow: GET, HEAD\r\n" : "");
    int err = write_all(head, (size_t)n);

    if (err == 0 && !head_only)
        err = write_all(body, len);
    return err;
}

static int respond_error(enum status st, bool head_only) {
    char body[128];
    int n = snprintf(body, sizeof body, "%d %s\n", status_info[st].code, status_info[st].reason);

    return respond(st, "text/plain; charset=utf-8", body, (size_t)n, head_only);
}

/* Reads and discards what the peer already sent, briefly, so that closing
 * sends FIN and the answer arrives instead of being lost to an RST. */
static void drain_input(void) {
    char buf[4096];
    size_t total = 0;
    int64_t deadline = now_ms(CLOCK_MONOTONIC) + WHOCONN_DRAIN_MS;

    shutdown(STDOUT_FILENO, SHUT_WR);
    while (total < WHOCONN_DRAIN_MAX) {
        int64_t left = deadline - now_ms(CLOCK_MONOTONIC);
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return;
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n <= 0)
            return;
        total += (size_t)n;
    }
}

/* ---- configuration ---------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: whoconn-metrics [--db PATH] [--request-timeout SECONDS]\n"
            "       whoconn-metrics --help | --version\n"
            "\n"
            "Answers one HTTP request for GET /metrics on stdin/stdout (inetd style)\n"
            "with whoconn's metrics in the Prometheus text format.\n"
            "\n"
            "  --db PATH                 whoconn's registry (WHOCONN_DB)\n"
            "                            default: $RUNTIME_DIRECTORY/%s, else %s\n"
            "  --request-timeout SECONDS time for the request to arrive (WHOCONN_METRICS_TIMEOUT)\n"
            "                            default: %d, range %d-%d\n"
            "  --help                    show this help and exit\n"
            "  --version                 show the version and exit\n",
            WHOCONN_DB_NAME, WHOCONN_DB_DEFAULT, WHOCONN_METRICS_TIMEOUT_DEFAULT,
            WHOCONN_METRICS_TIMEOUT_MIN, WHOCONN_METRICS_TIMEOUT_MAX);
}

static int parse_seconds(const char *s, unsigned *ret) {
    return whoconn_parse_uint(s, WHOCONN_METRICS_TIMEOUT_MIN, WHOCONN_METRICS_TIMEOUT_MAX, ret);
}

/* Environment first, then the command line; the registry default is
 * whoconn's own.  Returns 0, 1 for --help/--version done, or -EINVAL. */
static int config_load(struct config *cfg, int argc, char **argv, char *dbbuf, size_t dbsize) {
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"request-timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0, 0, 0, 0},
    };
    const char *db = getenv("WHOCONN_DB"), *timeout = getenv("WHOCONN_METRICS_TIMEOUT"),
               *timeout_from = "WHOCONN_METRICS_TIMEOUT";
    int c;

    cfg->db = NULL;
    cfg->timeout = WHOCONN_METRICS_TIMEOUT_DEFAULT;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 't':
            timeout = optarg;
            timeout_from = "--request-timeout";
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("whoconn-metrics %s (SQLite %s)\n", WHOCONN_VERSION, sqlite3_libversion());
            return 1;
        default:
            fprintf(stderr, "whoconn-metrics: unknown or incomplete option: %s\n", argv[optind - 1]);
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "whoconn-metrics: unexpected argument: %s\n", argv[optind]);
        return -EINVAL;
    }
    if (timeout && parse_seconds(timeout, &cfg->timeout) < 0) {
        fprintf(stderr, "whoconn-metrics: %s: \"%s\" is not a number of seconds from %d to %d\n",
                timeout_from, timeout, WHOCONN_METRICS_TIMEOUT_MIN, WHOCONN_METRICS_TIMEOUT_MAX);
        return -EINVAL;
    }
    if (db && !*db) {
        fprintf(stderr, "whoconn-metrics: the registry path (--db, WHOCONN_DB) is empty\n");
        return -EINVAL;
    }
    if (!db)
        db = whoconn_db_default(dbbuf, dbsize);
    cfg->db = db;
    return 0;
}

/* Collects the metrics into a body.  Returns 0 or -ENOMEM. */
static int metrics_body(const struct config *cfg, char **body, size_t *len) {
    static struct snapshot s; /* large (the peers): not on the stack */
    FILE *f;

    memset(&s, 0, sizeof s);
    s.now_ms = now_ms(CLOCK_BOOTTIME);
    s.counters_err = counters_read(cfg->db, &s.c);
    if (s.counters_err < 0)
        log_msg(LOG_ERR, "counters %s" WHOCONN_METRICS_SUFFIX ": %s", cfg->db,
                err_str(s.counters_err));
    s.registry_err = registry_read(cfg->db, &s);
    if (s.registry_err < 0)
        log_msg(LOG_ERR, "registry %s: %s: %s", s.registry_what, cfg->db, err_str(s.registry_err));

    f = open_memstream(body, len);
    if (!f)
        return -ENOMEM;
    write_metrics(f, &s);
    if (fclose(f) != 0) {
        free(*body);
        *body = NULL;
        return -ENOMEM;
    }
    return 0;
}

#ifndef WHOCONN_METRICS_NO_MAIN /* fuzz/fuzz_metrics_http.c has its own */

int main(int argc, char **argv) {
    static struct request rq;
    struct config cfg;
    char dbbuf[4096];
    enum status st;
    char *body = NULL;
    size_t len = 0;
    int r;

    r = config_load(&cfg, argc, argv, dbbuf, sizeof dbbuf);
    if (r != 0)
        return r > 0 ? WHOCONN_EXIT_OK : WHOCONN_EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN); /* a vanished peer is an EPIPE, not a death */

    /* Fails harmlessly with ENOTSOCK when fd 1 is a pipe or a terminal. */
    struct timeval tv = {.tv_sec = cfg.timeout};
    setsockopt(STDOUT_FILENO, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

    r = read_head(&rq, now_ms(CLOCK_MONOTONIC) + (int64_t)cfg.timeout * 1000);
    if (r == -EPIPE && rq.len == 0)
        return WHOCONN_EXIT_OK; /* connected and closed: a port probe */
    if (r == -ETIMEDOUT) {
        st = ST_REQUEST_TIMEOUT;
        rq.why = "request not complete in time";
    } else if (r == -EMSGSIZE) {
        st = ST_FIELDS_TOO_LARGE;
        rq.why = "request head too long";
    } else if (r == -EPIPE) {
        st = ST_BAD_REQUEST;
        rq.why = "connection closed inside the request head";
    } else if (r < 0) {
        log_msg(LOG_INFO, "reading the request: %s", strerror(-r));
        return WHOCONN_EXIT_IO;
    } else
        st = parse_request(&rq);

    if (st == ST_OK && metrics_body(&cfg, &body, &len) < 0) {
        st = ST_INTERNAL_ERROR;
        rq.why = "out of memory";
    }
    if (st == ST_OK)
        r = respond(st, CONTENT_TYPE, body, len, rq.head_only);
    else {
        log_msg(LOG_NOTICE, "answered %d: %s", status_info[st].code, rq.why);
        r = respond_error(st, rq.head_only);
    }
    free(body);
    if (r < 0) {
        log_msg(LOG_INFO, "writing the answer: %s", strerror(-r));
        return r == -ETIMEDOUT ? WHOCONN_EXIT_TIMEOUT : WHOCONN_EXIT_IO;
    }
    drain_input();
    return status_info[st].exit_status;
}

#endif /* WHOCONN_METRICS_NO_MAIN */
