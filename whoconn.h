/*
 * whoconn.h - limits, defaults and exit statuses of whoconn(8).
 *
 * Every quantity a peer or an operator can influence is bounded here, in one
 * place, with the reason for its value.  Each is a macro so that a build can
 * override it (-DWHOCONN_LINE_MAX=...), as SQLite does in sqliteLimit.h.
 */
#ifndef WHOCONN_H
#define WHOCONN_H

#ifndef WHOCONN_VERSION
#define WHOCONN_VERSION "0.1.0"
#endif

/* Longest request line, CR and LF excluded.  Commands are at most five
 * letters; 1 KiB leaves room for future arguments while keeping a hostile
 * peer from making us buffer anything large. */
#ifndef WHOCONN_LINE_MAX
#define WHOCONN_LINE_MAX 1024
#endif

/* Bytes read from the peer per read(2).  Larger than a line so that a
 * pipelining client is served with few system calls. */
#define WHOCONN_READ_BUF 4096

/* Replies are gathered and written once per read.  The longest reply is an
 * ERR line under 128 bytes, so a flush always leaves room for the next. */
#define WHOCONN_WRITE_BUF 8192
#define WHOCONN_REPLY_MAX 128

/* Seconds without a complete request line (or without progress writing a
 * reply) before the peer is dropped.  Bytes that do not finish a line do
 * not reset it, which is what stops a slowloris client. */
#define WHOCONN_IDLE_TIMEOUT_DEFAULT 60
#define WHOCONN_IDLE_TIMEOUT_MIN 1
#define WHOCONN_IDLE_TIMEOUT_MAX 86400

/* A connection registers itself before it reads its first request and
 * stays registered until its process ends, so every WHO that begins after a
 * connection was served counts it.  A registered connection keeps its SQLite
 * handle open while it is busy and closes it once it has been quiet this
 * long: short sessions open the registry once, held connections hold no
 * lock on the -shm file (see reg_idle()). */
#define WHOCONN_HANDLE_IDLE_MS 100

/* After the registry was deleted or replaced, every held connection
 * registers again in the new file; they spread it over this long, by PID,
 * so that 10,000 of them do not all queue for the write lock at once. */
#define WHOCONN_REREGISTER_SPREAD_MS 250

/* While the registry is failing, a held connection retries this often, so
 * counting recovers by itself once the fault is gone. */
#define WHOCONN_RETRY_MS 1000

/* Dead entries (SIGKILL, crash, OOM) are swept by whichever WHO finds the
 * last sweep older than this.  Between SWEEP_AFTER_MS and SWEEP_BEFORE_MS the
 * sweep runs after the reply is sent, so WHO latency is not paid for it under
 * steady load; a sweep older than SWEEP_BEFORE_MS runs before the reply, so a
 * WHO answer is never more than 1 s stale. */
#define WHOCONN_SWEEP_AFTER_MS 500
#define WHOCONN_SWEEP_BEFORE_MS 1000

/* Liveness locks are spread over this many files ("<registry>-locks/NN"):
 * the kernel walks a file's whole lock list on each test, so with 10,000
 * connections one file would make a sweep quadratic. */
#define WHOCONN_LOCK_SHARDS 64

/* How long a connection process waits for another one's write lock.  Writes
 * are single-row transactions of a few microseconds; 5 s absorbs a burst of
 * thousands of connections without a client ever seeing SQLITE_BUSY. */
#define WHOCONN_BUSY_TIMEOUT_MS 5000

/* While waiting for the write lock, a process sleeps this long at first,
 * doubling up to BUSY_SLEEP_MAX_US.  SQLite's default handler sleeps 1 ms,
 * then 2, 5, 10 ms...: far longer than the few microseconds a holder keeps
 * the lock, so under contention every session would idle for milliseconds. */
#define WHOCONN_BUSY_SLEEP_MIN_US 20
#define WHOCONN_BUSY_SLEEP_MAX_US 1000

/* SQLite checkpoints the WAL into the database after a commit that leaves
 * it this many pages long (its default is 1000).  Each session writes two
 * small transactions, so the WAL grows ~2 pages a session; a short WAL keeps
 * each checkpoint to a few page copies (tens of microseconds, paid by the
 * one committing session) and the -wal file small.  JOURNAL_LIMIT caps what
 * the -wal file keeps on disk once checkpointed (journal_size_limit). */
#define WHOCONN_WAL_AUTOCHECKPOINT 200
#define WHOCONN_WAL_LIMIT_BYTES 1048576 /* spelled out: pasted into SQL */

/* After the last reply before a close (QUIT, protocol error), input the peer
 * already sent is read and discarded for at most this long / this much, so
 * the kernel sends FIN rather than RST and the reply is not lost. */
#define WHOCONN_DRAIN_MS 200
#define WHOCONN_DRAIN_MAX 65536

/* Most fields in one structured journal entry. */
#define WHOCONN_JOURNAL_FIELDS 12

/* After its journal entry a process waits this long before exiting, so
 * journald can still read its unit from /proc (see log_session()). */
#define WHOCONN_JOURNAL_GRACE_MS 20

/* Peer text quoted in a log line is cut to this many bytes. */
#define WHOCONN_LOG_PEER_TEXT 32

/* Default registry, inside the unit's RuntimeDirectory=whoconn.  When
 * systemd sets $RUNTIME_DIRECTORY, the registry goes there instead. */
#define WHOCONN_DB_DEFAULT "/run/whoconn/registry.db"
#define WHOCONN_DB_NAME "registry.db"

/* Application id for sd_id128_get_machine_app_specific(): WHERE is derived
 * from the machine id with it, so the raw machine id never leaves the host.
 * Never change it: it would change every server's id. */
#define WHOCONN_APP_ID \
    SD_ID128_MAKE(6b,2f,0e,d4,5a,91,4c,37,a8,1d,93,c4,7e,05,b2,6f)

/* "whoc": stored in the registry header so that we never adopt or alter a
 * SQLite file that belongs to something else. */
#define WHOCONN_SQLITE_APP_ID 0x77686f63
#define WHOCONN_SCHEMA_VERSION 1

/* Exit statuses (documented in whoconn(8)).  Statuses caused by the peer are
 * listed in SuccessExitStatus= of the unit, so they do not mark it failed. */
enum {
    WHOCONN_EXIT_OK = 0,        /* peer closed, or QUIT */
    WHOCONN_EXIT_USAGE = 64,    /* bad option or environment value */
    WHOCONN_EXIT_PROTOCOL = 65, /* peer broke the protocol: long line, bad byte */
    WHOCONN_EXIT_SOFTWARE = 70, /* internal error: confinement failed */
    WHOCONN_EXIT_IO = 74,       /* connection reset or write failed */
    WHOCONN_EXIT_TIMEOUT = 75,  /* idle timeout or stalled writes */
    WHOCONN_EXIT_SIGNAL = 76,   /* SIGTERM/SIGINT/SIGHUP */
};

/* ---- shared with the metrics endpoint and the cluster agent ---------- */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes one log line to stderr in a single write(2): with the journal's
 * <N> priority prefix when stderr is the journal, else "IDENT[PID]: ".
 * Lines are cut at 766 bytes. */
static inline void whoconn_vlog(const char *ident, bool journal, int prio, const char *fmt,
                                va_list ap) __attribute__((format(printf, 4, 0)));
static inline void whoconn_vlog(const char *ident, bool journal, int prio, const char *fmt,
                                va_list ap) {
    char line[768];
    int n = journal ? snprintf(line, sizeof line, "<%d>", prio)
                    : snprintf(line, sizeof line, "%s[%ld]: ", ident, (long)getpid());
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);

    if (m < 0)
        return;
    n += m;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w; /* nowhere left to report a failing log */
}

/* Parses a setting that is a whole number from min to max: digits only, no
 * sign, no suffix, no overflow.  0, or -EINVAL/-ERANGE. */
static inline int whoconn_parse_uint(const char *s, unsigned long min, unsigned long max,
                                     unsigned *ret) {
    char *end;
    unsigned long v;

    if (!s || !isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v < min || v > max)
        return -ERANGE;
    *ret = (unsigned)v;
    return 0;
}

/* The registry path when none is configured: WHOCONN_DB_NAME in the first
 * of systemd's $RUNTIME_DIRECTORY directories (':'-separated), else
 * WHOCONN_DB_DEFAULT.  Shared by whoconn, whoconn-sync and whoconn-metrics,
 * which must agree on it; buf holds the result when it is built. */
static inline const char *whoconn_db_default(char *buf, size_t size) {
    const char *rt = getenv("RUNTIME_DIRECTORY");

    if (rt && rt[0] == '/') {
        size_t len = strcspn(rt, ":");
        if ((size_t)snprintf(buf, size, "%.*s/%s", (int)len, rt, WHOCONN_DB_NAME) < size)
            return buf;
    }
    return WHOCONN_DB_DEFAULT;
}

/* Liveness locks: a registered process holds an OFD write lock on byte PID
 * of "<registry>-locks/NN", NN = PID % WHOCONN_LOCK_SHARDS in two digits. */
#define WHOCONN_LOCKS_SUFFIX "-locks"

/* Whether the process that registered pid still holds its lock; fd is the
 * pid's shard file.  1 alive, 0 dead, negative errno if it cannot tell. */
static inline int whoconn_lock_held(int fd, long long pid) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = pid, .l_len = 1};

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -1;
    return fl.l_type != F_UNLCK;
}

/* Why a session ended: the log's end=, WHOCONN_END= in the journal, and
 * the reason label of whoconn_disconnects_total. */
enum whoconn_end {
    END_NONE,
    END_CLOSED,
    END_QUIT,
    END_IDLE,
    END_WRITE_TIMEOUT,
    END_LINE_TOO_LONG,
    END_BAD_BYTE,
    END_RESET,
    END_SIGNAL,
    END__MAX
};

/* Requests by command: the command label of whoconn_commands_total. */
enum whoconn_cmd { CMD_WHO, CMD_WHERE, CMD_WHY, CMD_HELP, CMD_QUIT, CMD_UNKNOWN, CMD__MAX };

/* ERR replies by cause: the reason label of whoconn_errors_total. */
enum whoconn_err {
    ERRK_UNKNOWN_COMMAND,
    ERRK_ARGUMENTS,
    ERRK_REGISTRY,
    ERRK_SERVER_ID,
    ERRK_LINE_TOO_LONG,
    ERRK_INVALID_BYTE,
    ERRK__MAX
};

/* Upper bounds of the connection duration histogram, in milliseconds. */
#define WHOCONN_DURATION_BOUNDS_MS \
    {1, 5, 10, 50, 100, 500, 1000, 5000, 30000, 60000, 300000, 3600000}
#define WHOCONN_DURATION_BUCKETS 12

/* Counters of all connections ever served, in "<registry>-metrics": a file
 * every connection process maps and updates with atomic adds, because a
 * SQLite write per connection would cost more than the rest of the session.
 * It lives beside the registry and, like it, is reset at boot.  Only ever
 * append fields, and bump the magic if their meaning changes. */
#define WHOCONN_METRICS_SUFFIX "-metrics"
/* "WHOCMT2": ends[] lost END_NOMEM, which moved every later field. */
#define WHOCONN_METRICS_MAGIC 0x32544d434f4857ULL /* "WHOCMT2" */

struct whoconn_metrics {
    uint64_t magic;
    uint64_t accepted;                    /* connections started */
    uint64_t commands[CMD__MAX];          /* non-blank requests, by command */
    uint64_t errors[ERRK__MAX];           /* ERR replies, by cause */
    uint64_t ends[END__MAX];              /* finished connections, by reason */
    uint64_t registry_errors;             /* failed registry operations */
    uint64_t duration_bucket[WHOCONN_DURATION_BUCKETS + 1]; /* per bucket, last +Inf; not cumulative */
    uint64_t duration_sum_us;
};

/* Label values of the metrics, in enum order; whoconn.c's end_info names
 * must match whoconn_end_names (make check-metrics compares them). */
static const char *const whoconn_end_names[END__MAX] __attribute__((unused)) = {
    [END_NONE] = "none",
    [END_CLOSED] = "client-closed",
    [END_QUIT] = "quit",
    [END_IDLE] = "idle-timeout",
    [END_WRITE_TIMEOUT] = "write-timeout",
    [END_LINE_TOO_LONG] = "line-too-long",
    [END_BAD_BYTE] = "invalid-byte",
    [END_RESET] = "reset",
    [END_SIGNAL] = "signal",
};

static const char *const whoconn_cmd_names[CMD__MAX] __attribute__((unused)) = {
    [CMD_WHO] = "WHO",
    [CMD_WHERE] = "WHERE",
    [CMD_WHY] = "WHY",
    [CMD_HELP] = "HELP",
    [CMD_QUIT] = "QUIT",
    [CMD_UNKNOWN] = "unknown",
};

static const char *const whoconn_err_names[ERRK__MAX] __attribute__((unused)) = {
    [ERRK_UNKNOWN_COMMAND] = "unknown-command",
    [ERRK_ARGUMENTS] = "arguments",
    [ERRK_REGISTRY] = "registry",
    [ERRK_SERVER_ID] = "server-id",
    [ERRK_LINE_TOO_LONG] = "line-too-long",
    [ERRK_INVALID_BYTE] = "invalid-byte",
};

/* ---- whoconn-metrics(8): the Prometheus endpoint ----------------------- */

/* Default listening address of whoconn-metrics.socket (documentation and
 * units only: the program itself serves whatever fd 0 is). */
#define WHOCONN_METRICS_PORT 9242

/* Longest HTTP request head (request line and header fields) we read.  A
 * Prometheus scrape sends about 300 bytes; browsers and curl under 1 KiB.
 * Longer gets 431 and a close. */
#ifndef WHOCONN_METRICS_HEAD_MAX
#define WHOCONN_METRICS_HEAD_MAX 8192
#endif

/* Header fields per request, past which we answer 431 too. */
#define WHOCONN_METRICS_FIELDS_MAX 64

/* Time for the whole request head to arrive, in seconds: a deadline, not
 * an idle timer, so trickling bytes does not keep the process alive.  Also
 * bounds each write of the answer.  Prometheus' default scrape timeout is
 * 10 s, and a scrape's request arrives in one segment. */
#define WHOCONN_METRICS_TIMEOUT_DEFAULT 5
#define WHOCONN_METRICS_TIMEOUT_MIN 1
#define WHOCONN_METRICS_TIMEOUT_MAX 60

/* Peers listed one by one (whoconn_peer_*{peer=...}); further peers are
 * still counted in whoconn_peers.  Keeps a runaway peer table from making
 * an unbounded answer and unbounded series in Prometheus. */
#define WHOCONN_METRICS_PEERS_MAX 256

/* A peer id longer than this is cut in its label (ids are UUIDs). */
#define WHOCONN_METRICS_LABEL_MAX 128

#endif /* WHOCONN_H */
