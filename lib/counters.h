/*
 * counters.h - the counters of every connection ever served, shared by the
 * connection processes (which add to them) and whoconn-metrics (which
 * reads them): the label values, and the layout of "<registry>-metrics".
 *
 * Contract:
 *  - counters_map(db) maps the counters file beside registry db, creating
 *    it on first use, for counters_add() and counters_session(); NULL when
 *    it cannot (metrics are best effort: never a reason to refuse a client).
 *    Never alters a file whose magic is not WHOCONN_METRICS_MAGIC.
 *  - counters_read(db, out) copies them, read-only; a missing file reads as
 *    zeros.  0, or a negative errno (-EMEDIUMTYPE: not our format).
 *  - The names are the metrics' label values and the log's end= words, in
 *    enum order: one definition for both.
 */
#ifndef WHOCONN_COUNTERS_H
#define WHOCONN_COUNTERS_H

#include <stdint.h>

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
    END_PROXY_HEADER, /* appended: see ends_more[] */
    END__MAX
};
/* The reasons of the counters file's first layout, in ends[]. */
#define END__FIRST (END_SIGNAL + 1)

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
    ERRK_PROXY_HEADER, /* appended: see errors_more[] */
    ERRK__MAX
};
#define ERRK__FIRST (ERRK_INVALID_BYTE + 1)

/* Upper bounds of the connection duration histogram, in milliseconds. */
#define WHOCONN_DURATION_BOUNDS_MS \
    {1, 5, 10, 50, 100, 500, 1000, 5000, 30000, 60000, 300000, 3600000}
#define WHOCONN_DURATION_BUCKETS 12

/* Counters of all connections ever served, in "<registry>-metrics": a file
 * every connection process maps and updates with atomic adds, because a
 * SQLite write per connection would cost more than the rest of the session.
 * It lives beside the registry and, like it, is reset at boot.  Only ever
 * append fields, and bump the magic if their meaning changes: a file made by
 * an older binary is grown in place by the first newer one, and both go on
 * counting in it while an upgrade overlaps them.  So a reason or cause added
 * to the enums goes into the *_more[] arrays at the end, never into ends[]
 * or errors[]; counters_end() and counters_err() find either. */
#define WHOCONN_METRICS_SUFFIX "-metrics"
/* "WHOCMT2": ends[] lost END_NOMEM, which moved every later field. */
#define WHOCONN_METRICS_MAGIC 0x32544d434f4857ULL /* "WHOCMT2" */

struct whoconn_metrics {
    uint64_t magic;
    uint64_t accepted;                    /* connections started */
    uint64_t commands[CMD__MAX];          /* non-blank requests, by command */
    uint64_t errors[ERRK__FIRST];         /* ERR replies, by cause */
    uint64_t ends[END__FIRST];            /* finished connections, by reason */
    uint64_t registry_errors;             /* failed registry operations */
    uint64_t duration_bucket[WHOCONN_DURATION_BUCKETS + 1]; /* per bucket, last +Inf; not cumulative */
    uint64_t duration_sum_us;
    /* appended (issue 17, the PROXY protocol) */
    uint64_t errors_more[ERRK__MAX - ERRK__FIRST];
    uint64_t ends_more[END__MAX - END__FIRST];
};

/* The counter of one end reason, one ERR cause. */
static inline uint64_t *counters_end(struct whoconn_metrics *m, enum whoconn_end e) {
    return e < END__FIRST ? &m->ends[e] : &m->ends_more[e - END__FIRST];
}
static inline uint64_t *counters_err(struct whoconn_metrics *m, enum whoconn_err k) {
    return k < ERRK__FIRST ? &m->errors[k] : &m->errors_more[k - ERRK__FIRST];
}
static inline uint64_t counters_end_value(const struct whoconn_metrics *m, enum whoconn_end e) {
    return e < END__FIRST ? m->ends[e] : m->ends_more[e - END__FIRST];
}
static inline uint64_t counters_err_value(const struct whoconn_metrics *m, enum whoconn_err k) {
    return k < ERRK__FIRST ? m->errors[k] : m->errors_more[k - ERRK__FIRST];
}

/* Label values, in enum order (counters.c). */
extern const char *const whoconn_end_names[END__MAX];
extern const char *const whoconn_cmd_names[CMD__MAX];
extern const char *const whoconn_err_names[ERRK__MAX];

struct whoconn_metrics *counters_map(const char *db);

static inline void counters_add(uint64_t *counter, uint64_t n) {
    if (n)
        __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* Adds one finished session: its requests by command, ERR replies by
 * cause, how it ended, its failed registry operations and its duration. */
void counters_session(struct whoconn_metrics *m, const unsigned long by_cmd[CMD__MAX],
                      const unsigned long by_err[ERRK__MAX], enum whoconn_end end,
                      unsigned long registry_errors, int64_t duration_us);

int counters_read(const char *db, struct whoconn_metrics *out);

#endif /* WHOCONN_COUNTERS_H */
