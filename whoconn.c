/*
 * whoconn - tell a TCP client how many clients are connected (WHO), which
 * server it reached (WHERE), and why (WHY).
 *
 * One process serves one connection.  It is started by systemd's
 * Accept=yes socket activation (or any inetd-style launcher): fd 0 reads
 * from the peer, fd 1 writes to it, fd 2 is the journal.  Nothing but
 * protocol is ever written to fd 1.
 *
 * Connected clients are counted in a SQLite registry (WAL mode) shared by
 * all connection processes: one row per live process, keyed by its PID.
 * While registered, a process holds an OFD lock on the byte at offset PID of
 * a lock file beside the registry; the kernel drops it whenever the process
 * ends, however it ends.  Rows whose lock is free (SIGKILL, crash, OOM, or a
 * PID since reused by another program) are swept by the next WHO that finds
 * the last sweep more than 0.5 s old.
 *
 * Limits and defaults are in whoconn.h; the protocol is in whoconn(8) and
 * README.md.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <arpa/inet.h>
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
#include <systemd/sd-daemon.h>
#include <systemd/sd-id128.h>
#include <uuid/uuid.h>

#include "whoconn.h"

#define UUID_STR_LEN 37 /* 36 characters and NUL */

struct config {
    const char *db;
    unsigned idle_timeout; /* seconds */
    char server_id[UUID_STR_LEN];
};

/* Prepared statements, made on first use: a short session prepares only
 * what it runs, and preparing is most of SQLite's per-process cost. */
enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_COUNT,
    ST_INSERT,
    ST_DELETE,
    ST_SWEPT_SET,
    ST_SCAN,
    ST__MAX
};

static const char *const stmt_sql[ST__MAX] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_COUNT] = "SELECT (SELECT count(*) FROM conn),"
                 " (SELECT value FROM meta WHERE key='swept'),"
                 " (SELECT total(count) FROM peer WHERE expires_ms > ?1)",
    [ST_INSERT] = "INSERT OR REPLACE INTO conn(pid, since) VALUES(?1, ?2)",
    [ST_DELETE] = "DELETE FROM conn WHERE pid=?1",
    [ST_SWEPT_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES('swept', ?1)",
    [ST_SCAN] = "SELECT pid FROM conn",
};

struct registry {
    const char *path;
    sqlite3 *db;
    sqlite3_stmt *st[ST__MAX];
    long long pid;
    int lockfd[WHOCONN_LOCK_SHARDS]; /* -1: not open yet */
    bool registered;
    bool register_failed; /* then WHO retries it, and fails if it fails */
    int logged_err;
    unsigned long failures; /* failed operations, for whoconn_registry_errors_total */ /* last error logged, so a lasting fault logs once */
};

static const struct {
    const char *name;
    int status;
} end_info[END__MAX] = {
    [END_NONE] = {"none", WHOCONN_EXIT_OK},
    [END_CLOSED] = {"client-closed", WHOCONN_EXIT_OK},
    [END_QUIT] = {"quit", WHOCONN_EXIT_OK},
    [END_IDLE] = {"idle-timeout", WHOCONN_EXIT_TIMEOUT},
    [END_WRITE_TIMEOUT] = {"write-timeout", WHOCONN_EXIT_TIMEOUT},
    [END_LINE_TOO_LONG] = {"line-too-long", WHOCONN_EXIT_PROTOCOL},
    [END_BAD_BYTE] = {"invalid-byte", WHOCONN_EXIT_PROTOCOL},
    [END_RESET] = {"reset", WHOCONN_EXIT_IO},
    [END_SIGNAL] = {"signal", WHOCONN_EXIT_SIGNAL},
    [END_NOMEM] = {"out-of-memory", WHOCONN_EXIT_SOFTWARE},
};

struct session {
    const struct config *cfg;
    struct registry reg;
    int out_fd;
    char in[WHOCONN_READ_BUF];
    size_t in_len;  /* bytes buffered */
    size_t scanned; /* of which already checked */
    char out[WHOCONN_WRITE_BUF];
    size_t out_len;
    unsigned long commands;
    unsigned long errors;
    unsigned long by_cmd[CMD__MAX];
    unsigned long by_err[ERRK__MAX];
    unsigned long lines; /* complete lines, blank included */
    enum whoconn_end end;
    bool sweep_pending;
    char where[UUID_STR_LEN];
};

static volatile sig_atomic_t got_signal;

/* ---- time and logging ------------------------------------------------ */

static int64_t now_us(clockid_t clk) {
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t now_ms(clockid_t clk) {
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One write(2) per line, with the journal's <N> priority prefix when stderr
 * is the journal (systemd sets $JOURNAL_STREAM then). */
static void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_msg(int prio, const char *fmt, ...) {
    char line[512];
    int n = 0;
    va_list ap;

    if (getenv("JOURNAL_STREAM"))
        n = snprintf(line, sizeof line, "<%d>", prio);
    else
        n = snprintf(line, sizeof line, "whoconn[%ld]: ", (long)getpid());
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    n += m;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w; /* nowhere left to report a failing log */
}

/* Peer text is shown printable and short: \xNN for anything else. */
static void sanitize(char *dst, size_t dstsize, const char *src, size_t len) {
    size_t o = 0;

    for (size_t i = 0; i < len && i < WHOCONN_LOG_PEER_TEXT && o + 5 < dstsize; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            dst[o++] = (char)c;
        else
            o += (size_t)snprintf(dst + o, dstsize - o, "\\x%02x", c);
    }
    if (len > WHOCONN_LOG_PEER_TEXT && o + 4 < dstsize) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

/* ---- registry -------------------------------------------------------- */

/* Maps a SQLite result to a negative errno, so that callers deal in one
 * kind of error.  The OS error behind an I/O failure wins when known. */
static int reg_error(sqlite3 *db, int rc) {
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
    case SQLITE_READONLY:
        return -EROFS;
    case SQLITE_FULL:
        return -ENOSPC;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return -EBADMSG;
    case SQLITE_PERM:
    case SQLITE_AUTH:
        return -EACCES;
    case SQLITE_CANTOPEN:
        return sys > 0 ? -sys : -ENOENT;
    case SQLITE_IOERR:
        return sys > 0 ? -sys : -EIO;
    default:
        return -EIO;
    }
}

static const char *reg_strerror(int err) {
    switch (err) {
    case -EBADMSG:
        return "registry file is corrupt";
    case -EMEDIUMTYPE:
        return "registry file belongs to another program";
    case -EBUSY:
        return "registry busy";
    default:
        return strerror(-err);
    }
}

/* The lock file of a shard.  The kernel keeps one list of locks per file
 * and walks it on every test, so locks are spread over
 * WHOCONN_LOCK_SHARDS files to keep that walk short with 10,000 rows. */
static int reg_lock_fd(struct registry *r, long long pid, bool create) {
    unsigned shard = (unsigned)(pid % WHOCONN_LOCK_SHARDS);
    char path[4096];

    if (r->lockfd[shard] >= 0)
        return r->lockfd[shard];
    if ((size_t)snprintf(path, sizeof path, "%s" WHOCONN_LOCKS_SUFFIX, r->path) >= sizeof path - 8)
        return -ENAMETOOLONG;
    if (create && mkdir(path, 0700) < 0 && errno != EEXIST)
        return -errno;
    snprintf(path + strlen(path), 8, "/%02u", shard);
    int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
    if (fd < 0)
        return -errno;
    r->lockfd[shard] = fd;
    return fd;
}

/* Takes this process's liveness lock: a write lock on byte PID.  An OFD
 * lock belongs to our open file only, and the kernel releases it when the
 * process ends, including by SIGKILL or a crash. */
static int reg_lock(struct registry *r) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = r->pid, .l_len = 1};
    int fd = reg_lock_fd(r, r->pid, true);

    if (fd < 0)
        return fd;
    if (fcntl(fd, F_OFD_SETLK, &fl) < 0)
        return -errno;
    return 0;
}

/* Whether the process that registered PID still runs: its lock is held.
 * A PID reused by another program holds no lock, so it never looks alive. */
static int reg_alive(struct registry *r, long long pid) {
    int fd = reg_lock_fd(r, pid, false);

    if (fd == -ENOENT)
        return 0;
    if (fd < 0)
        return fd;
    int alive = whoconn_lock_held(fd, pid);
    return alive < 0 ? -errno : alive;
}

/* Closes the database; the lock files stay open while registered, since
 * closing one would drop our liveness lock. */
static void reg_close(struct registry *r) {
    for (int i = 0; i < ST__MAX; i++) {
        sqlite3_finalize(r->st[i]);
        r->st[i] = NULL;
    }
    sqlite3_close(r->db);
    r->db = NULL;
}

static int reg_exec(struct registry *r, const char *sql) {
    return reg_error(r->db, sqlite3_exec(r->db, sql, NULL, NULL, NULL));
}

/* Creates the schema in a new file, or refuses a file that is not ours.
 * Runs once per registry file, not per connection. */
_Static_assert(WHOCONN_SQLITE_APP_ID == 2003332963, "reg_init() spells the id in decimal");

static int reg_init(struct registry *r) {
    sqlite3_stmt *st = NULL;
    int err, rc;

    /* Checked before anything is written: a file that is not ours is
     * refused untouched.  A race with another initialising process is
     * harmless, every step below is idempotent. */
    rc = sqlite3_prepare_v2(r->db,
                            "SELECT (SELECT application_id FROM pragma_application_id),"
                            " (SELECT count(*) FROM sqlite_schema)",
                            -1, &st, NULL);
    if (rc != SQLITE_OK) {
        err = reg_error(r->db, rc);
        goto fail;
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        err = reg_error(r->db, rc);
        goto fail;
    }
    long long app = sqlite3_column_int64(st, 0), objects = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    st = NULL;
    if (app != WHOCONN_SQLITE_APP_ID && !(app == 0 && objects == 0)) {
        err = -EMEDIUMTYPE;
        goto fail;
    }
    /* journal_mode cannot change inside a transaction; WAL is persistent. */
    err = reg_exec(r, "PRAGMA journal_mode=WAL");
    if (err < 0)
        return err;
    err = reg_exec(r, "BEGIN IMMEDIATE");
    if (err < 0)
        return err;
    err = reg_exec(r, "CREATE TABLE IF NOT EXISTS conn("
                      " pid INTEGER PRIMARY KEY," /* the connection process */
                      " since INTEGER NOT NULL)"  /* unix time it registered */
                      " WITHOUT ROWID;"
                      "CREATE TABLE IF NOT EXISTS meta("
                      " key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;"
                      /* Cluster mode: other servers' counts, mirrored by
                       * whoconn-sync.  A row counts until expires_ms
                       * (CLOCK_BOOTTIME), so a dead agent's data ages out. */
                      "CREATE TABLE IF NOT EXISTS peer("
                      " id TEXT PRIMARY KEY, count INTEGER NOT NULL,"
                      " expires_ms INTEGER NOT NULL) WITHOUT ROWID;"
                      "PRAGMA application_id=2003332963;"
                      "PRAGMA user_version=1;"
                      "COMMIT");
    if (err < 0)
        goto fail;
    return 0;
fail:
    sqlite3_finalize(st);
    if (!sqlite3_get_autocommit(r->db))
        reg_exec(r, "ROLLBACK");
    return err;
}

/* SQLite reports the last of its open attempts (often ENOENT from a
 * read-only retry); the directory tells the real cause far better. */
static int reg_dir_error(const char *path, int err) {
    char dir[4096];
    const char *slash = strrchr(path, '/');

    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else if ((size_t)snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path) >= sizeof dir)
        return err;
    if (!dir[0])
        snprintf(dir, sizeof dir, "/");
    if (access(dir, W_OK | X_OK) < 0)
        return -errno;
    return err;
}

static int reg_open(struct registry *r) {
    int rc, err;

    if (r->db)
        return 0;
    rc = sqlite3_open_v2(r->path, &r->db,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                         NULL);
    if (rc != SQLITE_OK) {
        err = reg_error(r->db, rc);
        reg_close(r);
        return reg_dir_error(r->path, err);
    }
    /* SQLite quietly falls back to read-only when the file or file system
     * is; then WHO could answer but nobody could register: refuse. */
    if (sqlite3_db_readonly(r->db, "main") == 1) {
        reg_close(r);
        return -EROFS;
    }
    sqlite3_extended_result_codes(r->db, 1);
    sqlite3_busy_timeout(r->db, WHOCONN_BUSY_TIMEOUT_MS);
    /* The registry is per boot and rebuilt by sweeping: durability across
     * power loss buys nothing, so commits need not fsync. */
    err = reg_exec(r, "PRAGMA synchronous=OFF");
    if (err < 0) {
        reg_close(r);
        return err;
    }
    return 0;
}

static int reg_stmt(struct registry *r, enum stmt_id id, sqlite3_stmt **ret) {
    int rc, err;

    err = reg_open(r);
    if (err < 0)
        return err;
    if (!r->st[id]) {
        rc = sqlite3_prepare_v3(r->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                &r->st[id], NULL);
        if (rc == SQLITE_ERROR && id != ST_BEGIN && id != ST_COMMIT && id != ST_ROLLBACK) {
            /* no such table: a new file, or not ours (reg_init tells) */
            err = reg_init(r);
            if (err < 0)
                return err;
            rc = sqlite3_prepare_v3(r->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &r->st[id], NULL);
        }
        if (rc != SQLITE_OK)
            return reg_error(r->db, rc);
    }
    sqlite3_reset(r->st[id]);
    sqlite3_clear_bindings(r->st[id]);
    *ret = r->st[id];
    return 0;
}

/* Runs a statement that returns no rows. */
static int reg_run(struct registry *r, enum stmt_id id, long long a, long long b, long long c) {
    sqlite3_stmt *st;
    int err = reg_stmt(r, id, &st);

    if (err < 0)
        return err;
    int n = sqlite3_bind_parameter_count(st);
    if (n >= 1)
        sqlite3_bind_int64(st, 1, a);
    if (n >= 2)
        sqlite3_bind_int64(st, 2, b);
    if (n >= 3)
        sqlite3_bind_int64(st, 3, c);
    int rc = sqlite3_step(st);
    err = rc == SQLITE_DONE ? 0 : reg_error(r->db, rc);
    sqlite3_reset(st);
    return err;
}

/* Runs one write statement in its own short IMMEDIATE transaction: the
 * write lock is taken up front, so the busy timeout applies and no
 * SQLITE_BUSY_SNAPSHOT can surface half-way. */
static int reg_write(struct registry *r, enum stmt_id id, long long a, long long b, long long c) {
    sqlite3_stmt *st;
    /* Prepared first: a new file gets its schema outside the transaction. */
    int err = reg_stmt(r, id, &st);

    if (err < 0)
        return err;
    err = reg_run(r, ST_BEGIN, 0, 0, 0);

    if (err < 0)
        return err;
    err = reg_run(r, id, a, b, c);
    if (err == 0)
        err = reg_run(r, ST_COMMIT, 0, 0, 0);
    if (err < 0)
        reg_run(r, ST_ROLLBACK, 0, 0, 0);
    return err;
}

/* A failing registry is closed so that the next use opens it afresh: that
 * is how the service recovers once a fault (missing directory, read-only
 * file system, corrupt file) is gone. */
static int reg_fail(struct registry *r, int err, const char *what) {
    r->failures++;
    if (err != r->logged_err) {
        /* SQLite's own message says which step failed; it has no peer text. */
        log_msg(LOG_ERR, "registry %s: %s: %s (sqlite: %s)", what, r->path, reg_strerror(err),
                r->db ? sqlite3_errmsg(r->db) : "cannot open");
        r->logged_err = err;
    }
    reg_close(r);
    return err;
}

static int reg_register(struct registry *r) {
    int err;

    if (r->registered)
        return 0;
    /* Lock first: from the moment the row exists, a sweep must see us alive. */
    err = reg_lock(r);
    if (err == 0)
        err = reg_write(r, ST_INSERT, r->pid, (long long)time(NULL), 0);
    if (err < 0) {
        r->register_failed = true;
        return reg_fail(r, err, "register");
    }
    r->registered = true;
    r->register_failed = false;
    r->logged_err = 0;
    return 0;
}

static void reg_unregister(struct registry *r) {
    if (!r->registered)
        return;
    int err = reg_write(r, ST_DELETE, r->pid, 0, 0);
    if (err < 0)
        reg_fail(r, err, "unregister"); /* the next sweep removes the row */
    r->registered = false;
}

/* Removes the rows of processes that are gone.  The sweep is claimed in a
 * write transaction first, so concurrent WHOs do not all scan; liveness is
 * checked outside any transaction, so the write lock is held for
 * microseconds whatever the number of rows. */
static int reg_sweep(struct registry *r) {
    sqlite3_stmt *st;
    long long *dead = NULL;
    size_t ndead = 0, cap = 0;
    int err, rc;
    int64_t now = now_ms(CLOCK_BOOTTIME);

    /* Prepared first: a new file gets its schema outside the transaction. */
    static const enum stmt_id used[] = {ST_COUNT, ST_SWEPT_SET, ST_SCAN, ST_DELETE};
    for (size_t i = 0; i < sizeof used / sizeof used[0]; i++) {
        err = reg_stmt(r, used[i], &st);
        if (err < 0)
            return err;
    }
    err = reg_run(r, ST_BEGIN, 0, 0, 0);
    if (err < 0)
        return err;
    err = reg_stmt(r, ST_COUNT, &st);
    if (err < 0)
        goto rollback;
    sqlite3_bind_int64(st, 1, now);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        err = reg_error(r->db, rc);
        goto rollback;
    }
    bool have = sqlite3_column_type(st, 1) != SQLITE_NULL;
    int64_t swept = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    if (have && swept <= now && now - swept < WHOCONN_SWEEP_AFTER_MS) {
        reg_run(r, ST_ROLLBACK, 0, 0, 0); /* another process just swept */
        return 0;
    }
    err = reg_run(r, ST_SWEPT_SET, now, 0, 0);
    if (err == 0)
        err = reg_run(r, ST_COMMIT, 0, 0, 0);
    if (err < 0)
        goto rollback;

    err = reg_stmt(r, ST_SCAN, &st);
    if (err < 0)
        return err;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        long long pid = sqlite3_column_int64(st, 0);
        if (pid == r->pid || reg_alive(r, pid) != 0)
            continue; /* alive, or cannot tell: never drop a live count */
        if (ndead == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            void *p = realloc(dead, ncap * sizeof *dead);
            if (!p) {
                err = -ENOMEM;
                break;
            }
            dead = p;
            cap = ncap;
        }
        dead[ndead++] = pid;
    }
    if (rc != SQLITE_DONE && err == 0)
        err = reg_error(r->db, rc);
    sqlite3_reset(st);
    if (err == 0 && ndead > 0) {
        /* Checked again under the write lock: a new process that got a dead
         * PID takes the lock before it inserts, so a row whose lock is free
         * now is dead now, and no insert can slip in before the commit. */
        err = reg_run(r, ST_BEGIN, 0, 0, 0);
        for (size_t i = 0; err == 0 && i < ndead; i++)
            if (reg_alive(r, dead[i]) == 0)
                err = reg_run(r, ST_DELETE, dead[i], 0, 0);
        if (err == 0)
            err = reg_run(r, ST_COMMIT, 0, 0, 0);
        if (err < 0)
            reg_run(r, ST_ROLLBACK, 0, 0, 0);
    }
    free(dead);
    return err;
rollback:
    reg_run(r, ST_ROLLBACK, 0, 0, 0);
    return err;
}

/* The number of live connections, the caller included.  Sets *sweep_later
 * when a sweep is due but may run after the reply. */
static int reg_count(struct registry *r, long long *ret, bool *sweep_later) {
    sqlite3_stmt *st;
    int err, rc;

    /* A process that could not register is missing from everyone's count:
     * no answer is exact until the registry takes writes again. */
    if (r->register_failed) {
        err = reg_register(r);
        if (err < 0)
            return err;
    }
    for (int pass = 0; pass < 2; pass++) {
        int64_t now = now_ms(CLOCK_BOOTTIME);
        err = reg_stmt(r, ST_COUNT, &st);
        if (err < 0)
            return reg_fail(r, err, "count");
        sqlite3_bind_int64(st, 1, now);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            err = reg_error(r->db, rc);
            sqlite3_reset(st);
            return reg_fail(r, err, "count");
        }
        long long n = sqlite3_column_int64(st, 0) + sqlite3_column_int64(st, 2);
        bool have = sqlite3_column_type(st, 1) != SQLITE_NULL;
        int64_t swept = sqlite3_column_int64(st, 1);
        sqlite3_reset(st);

        int64_t age = (!have || swept > now) ? INT64_MAX : now - swept;
        if (age >= WHOCONN_SWEEP_BEFORE_MS && pass == 0) {
            err = reg_sweep(r);
            if (err < 0)
                return reg_fail(r, err, "sweep");
            continue; /* count again, now exact */
        }
        *sweep_later = age >= WHOCONN_SWEEP_AFTER_MS;
        *ret = n + (r->registered ? 0 : 1);
        r->logged_err = 0;
        return 0;
    }
    return 0; /* not reached: pass 1 always returns */
}

/* ---- server id ------------------------------------------------------- */

/* libsystemd is loaded only when WHERE is asked: linking it costs every
 * connection the dynamic loader's work for ten shared objects, and most
 * connections never ask WHERE. */
static int server_id_derive(char out[UUID_STR_LEN]) {
    int (*app_specific)(sd_id128_t, sd_id128_t *);
    sd_id128_t id;
    int r;

    void *h = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return -ELIBACC;
    *(void **)&app_specific = dlsym(h, "sd_id128_get_machine_app_specific");
    if (!app_specific) {
        dlclose(h);
        return -ELIBBAD;
    }
    r = app_specific(WHOCONN_APP_ID, &id);
    dlclose(h);
    if (r < 0)
        return r;
    uuid_unparse_lower(id.bytes, out);
    return 0;
}

/* ---- commands -------------------------------------------------------- */

/* Each command writes one reply line, without LF, into reply[size]. */
typedef void command_fn(struct session *s, char *reply, size_t size);

static command_fn cmd_who, cmd_where, cmd_why, cmd_help, cmd_quit;

static const struct command {
    const char *name;
    command_fn *run;
    enum whoconn_cmd metric;
} commands[] = {
    {"WHO", cmd_who, CMD_WHO},
    {"WHERE", cmd_where, CMD_WHERE},
    {"WHY", cmd_why, CMD_WHY},
    {"HELP", cmd_help, CMD_HELP},
    {"QUIT", cmd_quit, CMD_QUIT},
};

/* Counts an ERR reply, for the log line and the metrics. */
static void session_error(struct session *s, enum whoconn_err kind) {
    s->errors++;
    s->by_err[kind]++;
}

static void cmd_who(struct session *s, char *reply, size_t size) {
    long long n = 0;
    bool later = false;
    int err = reg_count(&s->reg, &n, &later);

    if (err < 0) {
        session_error(s, ERRK_REGISTRY);
        snprintf(reply, size, "ERR registry unavailable: %s", reg_strerror(err));
        return;
    }
    s->sweep_pending = later;
    snprintf(reply, size, "%lld", n);
}

static void cmd_where(struct session *s, char *reply, size_t size) {
    if (!s->where[0]) {
        int err = server_id_derive(s->where);
        if (err < 0) {
            s->where[0] = '\0';
            session_error(s, ERRK_SERVER_ID);
            log_msg(LOG_ERR, "cannot derive server id from the machine id: %s",
                    strerror(-err));
            snprintf(reply, size, "ERR server id unavailable");
            return;
        }
    }
    snprintf(reply, size, "%s", s->where);
}

static void cmd_why(struct session *s, char *reply, size_t size) {
    (void)s;
    snprintf(reply, size, "42");
}

static void cmd_help(struct session *s, char *reply, size_t size) {
    (void)s;
    snprintf(reply, size, "WHO WHERE WHY HELP QUIT");
}

static void cmd_quit(struct session *s, char *reply, size_t size) {
    s->end = END_QUIT;
    snprintf(reply, size, "BYE");
}

/* ---- session --------------------------------------------------------- */

/* Writes out every gathered reply.  fd 1 carries SO_SNDTIMEO, so a peer
 * that never reads makes this fail after the idle timeout instead of
 * blocking forever. */
static int session_flush(struct session *s) {
    size_t off = 0;

    while (off < s->out_len) {
        ssize_t n = write(s->out_fd, s->out + off, s->out_len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            s->out_len = 0;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        off += (size_t)n;
    }
    s->out_len = 0;
    return 0;
}

static int session_reply(struct session *s, const char *line) {
    size_t len = strlen(line);

    if (s->out_len + len + 1 > sizeof s->out) {
        int err = session_flush(s);
        if (err < 0)
            return err;
    }
    memcpy(s->out + s->out_len, line, len);
    s->out_len += len;
    s->out[s->out_len++] = '\n';
    return 0;
}

static bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

/* Handles one request line (LF removed).  Returns 0 or a negative errno
 * from writing the reply. */
static int session_line(struct session *s, char *line, size_t len) {
    char reply[WHOCONN_REPLY_MAX];
    const struct command *cmd = NULL;

    s->lines++;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    while (len > 0 && is_blank(line[len - 1]))
        len--;
    while (len > 0 && is_blank(*line)) {
        line++;
        len--;
    }
    if (len == 0)
        return 0; /* blank lines get no reply */
    s->commands++;

    size_t word = 0;
    while (word < len && !is_blank(line[word]))
        word++;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strlen(commands[i].name) == word && strncasecmp(commands[i].name, line, word) == 0) {
            cmd = &commands[i];
            break;
        }
    s->by_cmd[cmd ? cmd->metric : CMD_UNKNOWN]++;
    if (!cmd) {
        session_error(s, ERRK_UNKNOWN_COMMAND);
        snprintf(reply, sizeof reply, "ERR unknown command");
    } else if (word < len) {
        session_error(s, ERRK_ARGUMENTS);
        snprintf(reply, sizeof reply, "ERR %s takes no arguments", cmd->name);
    } else
        cmd->run(s, reply, sizeof reply);
    return session_reply(s, reply);
}

static bool byte_allowed(unsigned char c) {
    return (c >= 0x20 && c <= 0x7e) || c == '\t' || c == '\r' || c == '\n';
}

/* Ends the session on a protocol violation: one ERR line, then close. */
static int session_violation(struct session *s, enum whoconn_end why, const char *reply,
                             const char *text, size_t len) {
    char clean[WHOCONN_LOG_PEER_TEXT * 4 + 8];

    session_error(s, why == END_BAD_BYTE ? ERRK_INVALID_BYTE : ERRK_LINE_TOO_LONG);
    s->end = why;
    sanitize(clean, sizeof clean, text, len);
    log_msg(LOG_WARNING, "closing: %s after \"%s\"", end_info[why].name, clean);
    return session_reply(s, reply);
}

/* Processes the buffered input: answers each complete line, stops at the
 * first violation.  With eof, a final unterminated line is a request too. */
static int session_process(struct session *s, bool eof) {
    size_t start = 0;
    int err = 0;

    for (size_t i = s->scanned; i < s->in_len && s->end == END_NONE; i++) {
        unsigned char c = (unsigned char)s->in[i];
        if (c == '\n') {
            if (i - start > WHOCONN_LINE_MAX + 1 ||
                (i - start == WHOCONN_LINE_MAX + 1 && s->in[i - 1] != '\r'))
                return session_violation(s, END_LINE_TOO_LONG, "ERR line too long",
                                         s->in + start, i - start);
            err = session_line(s, s->in + start, i - start);
            if (err < 0)
                return err;
            start = i + 1;
        } else if (!byte_allowed(c)) {
            return session_violation(s, END_BAD_BYTE, "ERR invalid byte", s->in + start,
                                     i - start + 1);
        } else if (i - start + 1 > WHOCONN_LINE_MAX + 1) {
            return session_violation(s, END_LINE_TOO_LONG, "ERR line too long",
                                     s->in + start, i - start + 1);
        }
    }
    if (s->end != END_NONE)
        return 0;
    memmove(s->in, s->in + start, s->in_len - start);
    s->in_len -= start;
    s->scanned = s->in_len;
    if (eof && s->in_len > 0) {
        if (s->in_len > WHOCONN_LINE_MAX + (s->in[s->in_len - 1] == '\r'))
            return session_violation(s, END_LINE_TOO_LONG, "ERR line too long", s->in,
                                     s->in_len);
        err = session_line(s, s->in, s->in_len);
        s->in_len = s->scanned = 0;
    }
    return err;
}

/* Feeds peer bytes into the session.  Returns 0 or a negative errno from
 * writing replies; s->end tells whether the session is over. */
static int session_input(struct session *s, const char *data, size_t n, bool eof) {
    int err = 0;

    do {
        size_t room = sizeof s->in - s->in_len, take = n < room ? n : room;
        memcpy(s->in + s->in_len, data, take);
        s->in_len += take;
        data += take;
        n -= take;
        err = session_process(s, eof && n == 0);
    } while (err == 0 && n > 0 && s->end == END_NONE);
    return err;
}

static void session_init(struct session *s, const struct config *cfg, int out_fd) {
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->out_fd = out_fd;
    s->reg.path = cfg->db;
    s->reg.pid = getpid();
    for (int i = 0; i < WHOCONN_LOCK_SHARDS; i++)
        s->reg.lockfd[i] = -1;
    memcpy(s->where, cfg->server_id, sizeof s->where);
}

static void session_free(struct session *s) {
    reg_unregister(&s->reg);
    reg_close(&s->reg);
    for (int i = 0; i < WHOCONN_LOCK_SHARDS; i++)
        if (s->reg.lockfd[i] >= 0)
            close(s->reg.lockfd[i]);
}

/* ---- metrics --------------------------------------------------------- */

/* Maps the shared counters file beside the registry, creating it on first
 * use.  Returns NULL when it cannot: metrics are best effort and never
 * keep a client from being served. */
static struct whoconn_metrics *metrics_map(const char *db) {
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

static void metrics_add(uint64_t *counter, uint64_t n) {
    if (n)
        __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* Adds a finished session to the shared counters. */
static void metrics_session(struct whoconn_metrics *m, const struct session *s, int64_t duration_us) {
    static const int64_t bounds_ms[WHOCONN_DURATION_BUCKETS] = WHOCONN_DURATION_BOUNDS_MS;
    int b = 0;

    for (int i = 0; i < CMD__MAX; i++)
        metrics_add(&m->commands[i], s->by_cmd[i]);
    for (int i = 0; i < ERRK__MAX; i++)
        metrics_add(&m->errors[i], s->by_err[i]);
    metrics_add(&m->ends[s->end], 1);
    metrics_add(&m->registry_errors, s->reg.failures);
    while (b < WHOCONN_DURATION_BUCKETS && duration_us > bounds_ms[b] * 1000)
        b++;
    metrics_add(&m->duration_bucket[b], 1);
    metrics_add(&m->duration_sum_us, (uint64_t)(duration_us > 0 ? duration_us : 0));
}

#ifndef WHOCONN_NO_MAIN

static void on_signal(int sig) {
    got_signal = sig;
}

static void peer_name(char *buf, size_t size) {
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[INET6_ADDRSTRLEN];

    if (getpeername(STDIN_FILENO, (struct sockaddr *)&ss, &len) < 0) {
        snprintf(buf, size, "stdin");
        return;
    }
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        snprintf(buf, size, "%s:%u", host, ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        snprintf(buf, size, "[%s]:%u", host, ntohs(in6->sin6_port));
    } else
        snprintf(buf, size, "unix");
}

/* Reads and discards what the peer already sent, briefly, so that closing
 * sends FIN and the last reply arrives instead of being lost to an RST. */
static void drain_input(void) {
    char buf[WHOCONN_READ_BUF];
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

static void session_run(struct session *s) {
    char buf[WHOCONN_READ_BUF];
    int64_t idle_ms = (int64_t)s->cfg->idle_timeout * 1000;
    int64_t now = now_ms(CLOCK_MONOTONIC);
    int64_t idle_at = now + idle_ms, register_at = now + WHOCONN_REGISTER_DELAY_MS;
    struct timeval tv = {.tv_sec = s->cfg->idle_timeout};
    sigset_t unblocked;
    int err = 0;

    /* Fails harmlessly with ENOTSOCK when fd 1 is a pipe or a terminal. */
    setsockopt(STDOUT_FILENO, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sigprocmask(SIG_SETMASK, NULL, &unblocked);
    sigdelset(&unblocked, SIGTERM);
    sigdelset(&unblocked, SIGINT);
    sigdelset(&unblocked, SIGHUP);

    while (s->end == END_NONE) {
        now = now_ms(CLOCK_MONOTONIC);
        int64_t wake = idle_at;
        if (!s->reg.registered && register_at < wake)
            wake = register_at;
        struct timespec ts = {.tv_sec = (wake - now) / 1000, .tv_nsec = (wake - now) % 1000 * 1000000};
        if (wake < now)
            ts.tv_sec = ts.tv_nsec = 0;
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = ppoll(&p, 1, &ts, &unblocked);
        if (got_signal) {
            s->end = END_SIGNAL;
            break;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            s->end = END_RESET;
            break;
        }
        now = now_ms(CLOCK_MONOTONIC);
        if (r == 0) {
            if (now >= idle_at) {
                s->end = END_IDLE;
                break;
            }
            if (!s->reg.registered && now >= register_at && reg_register(&s->reg) < 0)
                register_at = now + WHOCONN_RETRY_MS;
            continue;
        }
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            s->end = END_RESET;
            break;
        }
        unsigned long lines = s->lines;
        err = session_input(s, buf, (size_t)n, n == 0);
        if (err == 0)
            err = session_flush(s);
        if (err < 0) {
            s->end = err == -ETIMEDOUT ? END_WRITE_TIMEOUT : END_RESET;
            break;
        }
        if (n == 0) {
            if (s->end == END_NONE)
                s->end = END_CLOSED;
            break;
        }
        if (s->lines != lines)
            idle_at = now_ms(CLOCK_MONOTONIC) + idle_ms;
        if (s->sweep_pending) {
            s->sweep_pending = false;
            int e = reg_sweep(&s->reg);
            if (e < 0)
                reg_fail(&s->reg, e, "sweep");
        }
    }
    if (s->end == END_QUIT || s->end == END_LINE_TOO_LONG || s->end == END_BAD_BYTE)
        drain_input();
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: whoconn [--db PATH] [--idle-timeout SECONDS] [--server-id UUID]\n"
            "       whoconn --help | --version\n"
            "\n"
            "Serves one WHO/WHERE/WHY session on stdin/stdout (inetd style).\n"
            "\n"
            "  --db PATH              registry file (WHOCONN_DB)\n"
            "                         default: $RUNTIME_DIRECTORY/%s, else %s\n"
            "  --idle-timeout SECONDS drop a client silent this long (WHOCONN_IDLE_TIMEOUT)\n"
            "                         default: %d, range %d-%d\n"
            "  --server-id UUID       answer WHERE with this id (WHOCONN_SERVER_ID)\n"
            "                         default: derived from /etc/machine-id\n"
            "  --help                 show this help and exit\n"
            "  --version              show the version and exit\n",
            WHOCONN_DB_NAME, WHOCONN_DB_DEFAULT, WHOCONN_IDLE_TIMEOUT_DEFAULT,
            WHOCONN_IDLE_TIMEOUT_MIN, WHOCONN_IDLE_TIMEOUT_MAX);
}

static int parse_seconds(const char *s, unsigned *ret) {
    char *end;
    unsigned long v;

    if (!s || !isdigit((unsigned char)s[0]))
        return -EINVAL;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno || *end || v < WHOCONN_IDLE_TIMEOUT_MIN || v > WHOCONN_IDLE_TIMEOUT_MAX)
        return -ERANGE;
    *ret = (unsigned)v;
    return 0;
}

static int parse_uuid(const char *s, char out[UUID_STR_LEN]) {
    uuid_t u;

    if (!s || strlen(s) != 36 || uuid_parse(s, u) < 0)
        return -EINVAL;
    uuid_unparse_lower(u, out);
    return 0;
}

/* Reads the environment, then the command line over it.  Returns 0, 1 for
 * --help/--version done, or -EINVAL after printing the error. */
static int config_load(struct config *cfg, int argc, char **argv, char *dbbuf, size_t dbsize) {
    static const struct option opts[] = {
        {"db", required_argument, NULL, 'd'},
        {"idle-timeout", required_argument, NULL, 't'},
        {"server-id", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0, 0, 0, 0},
    };
    const char *db = getenv("WHOCONN_DB"), *idle = getenv("WHOCONN_IDLE_TIMEOUT"),
               *sid = getenv("WHOCONN_SERVER_ID"), *idle_from = "WHOCONN_IDLE_TIMEOUT",
               *sid_from = "WHOCONN_SERVER_ID";
    int c;

    memset(cfg, 0, sizeof *cfg);
    cfg->idle_timeout = WHOCONN_IDLE_TIMEOUT_DEFAULT;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'd':
            db = optarg;
            break;
        case 't':
            idle = optarg;
            idle_from = "--idle-timeout";
            break;
        case 's':
            sid = optarg;
            sid_from = "--server-id";
            break;
        case 'h':
            usage(stdout);
            return 1;
        case 'V':
            printf("whoconn %s (SQLite %s)\n", WHOCONN_VERSION, sqlite3_libversion());
            return 1;
        default:
            fprintf(stderr, "whoconn: unknown or incomplete option: %s\n", argv[optind - 1]);
            usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "whoconn: unexpected argument: %s\n", argv[optind]);
        return -EINVAL;
    }
    if (idle && parse_seconds(idle, &cfg->idle_timeout) < 0) {
        fprintf(stderr, "whoconn: %s: \"%s\" is not a number of seconds from %d to %d\n",
                idle_from, idle, WHOCONN_IDLE_TIMEOUT_MIN, WHOCONN_IDLE_TIMEOUT_MAX);
        return -EINVAL;
    }
    if (sid && parse_uuid(sid, cfg->server_id) < 0) {
        fprintf(stderr,
                "whoconn: %s: \"%s\" is not a UUID (like 6b2f0ed4-5a91-4c37-a81d-93c47e05b26f)\n",
                sid_from, sid);
        return -EINVAL;
    }
    if (db && !*db) {
        fprintf(stderr, "whoconn: the registry path (--db, WHOCONN_DB) is empty\n");
        return -EINVAL;
    }
    if (!db) {
        const char *rt = getenv("RUNTIME_DIRECTORY");
        /* several directories are separated by ':'; the first is ours */
        if (rt && *rt && rt[0] == '/') {
            size_t len = strcspn(rt, ":");
            if ((size_t)snprintf(dbbuf, dbsize, "%.*s/%s", (int)len, rt, WHOCONN_DB_NAME) < dbsize)
                db = dbbuf;
        }
        if (!db)
            db = WHOCONN_DB_DEFAULT;
    }
    cfg->db = db;
    return 0;
}

int main(int argc, char **argv) {
    static struct session s;
    struct config cfg;
    char dbbuf[4096], peer[INET6_ADDRSTRLEN + 16];
    struct sigaction sa = {.sa_handler = on_signal};
    sigset_t block;
    int r;

    r = config_load(&cfg, argc, argv, dbbuf, sizeof dbbuf);
    if (r != 0)
        return r > 0 ? WHOCONN_EXIT_OK : WHOCONN_EXIT_USAGE;

    umask(077); /* the registry is the service user's alone */
    signal(SIGPIPE, SIG_IGN); /* a vanished peer is an EPIPE, not a death */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, NULL); /* delivered only inside ppoll() */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    int64_t t0 = now_us(CLOCK_MONOTONIC);
    peer_name(peer, sizeof peer); /* now: a reset peer has no name later */
    struct whoconn_metrics *m = metrics_map(cfg.db);
    if (m)
        metrics_add(&m->accepted, 1);
    session_init(&s, &cfg, STDOUT_FILENO);
    session_run(&s);
    session_free(&s);
    int64_t duration_us = now_us(CLOCK_MONOTONIC) - t0;
    if (m)
        metrics_session(m, &s, duration_us);

    log_msg(LOG_INFO, "peer=%s duration_ms=%" PRId64 " commands=%lu errors=%lu end=%s", peer,
            duration_us / 1000, s.commands, s.errors, end_info[s.end].name);
    return end_info[s.end].status;
}

#endif /* WHOCONN_NO_MAIN */
