/*
 * registry.h - the registry of live connection processes, shared by
 * whoconn (registers, counts, sweeps), whoconn-sync (publishes the local
 * count, mirrors the peers') and whoconn-metrics (reads).  registry.c is the
 * only code that knows its schema and its SQL.
 *
 * All functions return 0 or a negative errno (reg_strerror() names it) and
 * never log, except reg_fail(), which is the one place a connection logs a
 * registry fault.  A failing registry is closed and reopened on next use:
 * that is how counting recovers by itself once a fault is gone.
 */
#ifndef WHOCONN_REGISTRY_H
#define WHOCONN_REGISTRY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <sqlite3.h>

#include "../whoconn.h"
#include "util.h"

/* Prepared statements a handle keeps (registry.c's enum stmt_id). */
#define REG_STATEMENTS 11

/* One process's handle on the registry.  Fields are registry.c's. */
struct registry {
    const char *path;
    sqlite3 *db;
    sqlite3_stmt *st[REG_STATEMENTS]; /* prepared on first use */
    long long pid;
    int lockfd[WHOCONN_LOCK_SHARDS]; /* -1: not open yet */
    bool registered;
    bool register_tried; /* in the current batch of requests (session_run()) */
    int register_err; /* how the last registration failed; 0: it did not */
    int watch_fd; /* the registry's directory, watched with dnotify; -1: none */
    dev_t reg_dev; /* the registry file our row is in, to notice a new one */
    ino_t reg_ino;
    int logged_err; /* last error logged, so a lasting fault logs once */
    int64_t busy_since_us; /* when the current wait for the write lock began */
    unsigned busy_timeout_ms; /* longest wait for the write lock */
    unsigned long failures; /* failed operations, for whoconn_registry_errors_total */
};

/* ---- a connection process (whoconn) ------------------------------------ */

/* Prepares r for the registry at path, for the process pid; opens nothing. */
void reg_setup(struct registry *r, const char *path, long long pid);

/* Unregisters (if registered) and releases every file r holds. */
void reg_free(struct registry *r);

/* Inserts this process's row, its liveness lock taken first, in one short
 * BEGIN IMMEDIATE transaction; creates a missing registry whole.  On
 * failure logs once (reg_fail()) and remembers the error for reg_count(). */
int reg_register(struct registry *r);

/* Deletes this process's row; on failure the next sweep removes it. */
void reg_unregister(struct registry *r);

/* The number of live connections on this server plus the unexpired peer
 * counts (cluster mode), the caller included.  Registers the caller first
 * if it is not registered (once per batch: see register_tried).  Sweeps
 * first when the last sweep is over WHOCONN_SWEEP_BEFORE_MS old; sets
 * *sweep_later when one is due but may run after the reply. */
int reg_count(struct registry *r, long long *ret, bool *sweep_later);

/* Removes the rows of processes whose liveness lock is free, at most once
 * per WHOCONN_SWEEP_AFTER_MS across all processes. */
int reg_sweep(struct registry *r);

/* A quiet held connection: closes the SQLite handle (no -shm lock held,
 * heap handed back) and watches the registry's directory with dnotify
 * (SIGIO on a change).  The caller runs reg_moved() next. */
void reg_idle(struct registry *r);

/* Whether the registry file or our lock file was deleted or replaced; if
 * so, drops the stale handles and marks r unregistered. */
bool reg_moved(struct registry *r);

/* Records and logs (once per distinct cause) a failed operation, closes
 * the handle; returns err. */
int reg_fail(struct registry *r, int err, const char *what);

/* Closes the SQLite handle; the lock files stay (closing one would drop
 * the liveness lock). */
void reg_close(struct registry *r);

/* What err means, for an ERR reply or a log line. */
const char *reg_strerror(int err);

/* A SQLite result code as a negative errno (0 for OK, ROW, DONE). */
int reg_error(sqlite3 *db, int rc);

/* ---- the cluster agent (whoconn-sync) ------------------------------------ */

struct reg_peer {
    char id[UUID_STR_LEN];
    long long count;
};

/* Sweeps (when due) and counts the local rows: what this server publishes.
 * Reopens a registry deleted or replaced under its long-lived handle. */
int reg_local_count(struct registry *r, long long *ret);

/* Replaces the peer rows with peers[0..n), valid until expires_ms and
 * confirmed at updated_ms (CLOCK_BOOTTIME), in one transaction. */
int reg_put_peers(struct registry *r, const struct reg_peer *peers, int n, int64_t expires_ms,
                  int64_t updated_ms);

/* ---- the metrics endpoint (whoconn-metrics) ------------------------------ */

struct reg_status_peer {
    char id[WHOCONN_METRICS_LABEL_MAX + 1];
    long long count;
    int64_t expires_ms;
    bool has_updated;
    int64_t updated_ms;
};

struct reg_status {
    const char *what; /* the step that failed: "open", "count", "peers" */
    long long connections; /* rows whose process holds its lock */
    long long peers_alive, peers_expired;
    bool peer_updated_column;
    struct reg_status_peer peers[WHOCONN_METRICS_PEERS_MAX];
    size_t npeers;
    int64_t now_ms; /* set by the caller: CLOCK_BOOTTIME, the peer table's clock */
};

/* Reads the registry at path in one read transaction, never creating or
 * changing anything.  A registry that does not exist yet reads as empty;
 * a missing directory is a fault.  -EMEDIUMTYPE: a file not ours. */
int reg_read_status(const char *path, struct reg_status *s);

#endif /* WHOCONN_REGISTRY_H */
