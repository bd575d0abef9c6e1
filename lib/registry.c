/*
 * registry.c - the registry: the only code that knows its schema and its
 * SQL (contract in registry.h).
 *
 * One SQLite file in WAL mode, one row per live connection process keyed by
 * its PID.  While registered, a process holds an OFD lock on the byte at
 * offset PID of "<registry>-locks/NN"; the kernel drops it whenever the
 * process ends, however it ends, so a row whose lock is free is dead and is
 * swept.  Design and measured costs: README.md, "Decisions and why".
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "../whoconn.h"
#include "log.h"
#include "registry.h"
#include "util.h"

/* Prepared statements, made on first use: a session prepares only what
 * it runs, and preparing is most of SQLite's per-process cost. */
enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_COUNT,
    ST_INSERT,
    ST_DELETE,
    ST_SWEPT_SET,
    ST_SCAN,
    ST_LOCAL,
    ST_PEER_CLEAR,
    ST_PEER_PUT,
    ST__MAX
};

_Static_assert(ST__MAX == REG_STATEMENTS, "registry.h: REG_STATEMENTS");

static const char *const stmt_sql[ST__MAX] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    /* Our own row is left out and we add one: exact whether or not we have
     * registered yet, even beside a dead row that still holds our PID.  An
     * aggregate over conn (one row even when conn is empty) rather than a
     * third sub-select: preparing it is ~9 k instructions cheaper, on
     * every connection that asks WHO (bench/NOTES.md item 17). */
    [ST_COUNT] = "SELECT count(*), (SELECT value FROM meta WHERE key='swept'),"
                 " (SELECT total(count) FROM peer WHERE expires_ms > ?1)"
                 " FROM conn WHERE pid <> ?2",
    [ST_INSERT] = "INSERT OR REPLACE INTO conn(pid, since) VALUES(?1, ?2)",
    [ST_DELETE] = "DELETE FROM conn WHERE pid=?1",
    [ST_SWEPT_SET] = "INSERT OR REPLACE INTO meta(key, value) VALUES('swept', ?1)",
    [ST_SCAN] = "SELECT pid FROM conn",
    /* whoconn-sync: the local count it publishes, and the peers it mirrors */
    [ST_LOCAL] = "SELECT count(*) FROM conn",
    [ST_PEER_CLEAR] = "DELETE FROM peer",
    [ST_PEER_PUT] = "INSERT INTO peer(id, count, expires_ms, updated_ms) VALUES(?1, ?2, ?3, ?4)",
};

/* Whether the process that registered pid still holds its lock; fd is the
 * pid's shard file.  1 alive, 0 dead, -1 (errno set) if it cannot tell. */
static int reg_lock_held(int fd, long long pid) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = pid, .l_len = 1};

    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return -1;
    return fl.l_type != F_UNLCK;
}

/* Maps a SQLite result to a negative errno, so that callers deal in one
 * kind of error.  The OS error behind an I/O failure wins when known. */
int reg_error(sqlite3 *db, int rc) {
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
        /* the file was deleted or replaced under our open handle */
        return rc == SQLITE_READONLY_DBMOVED ? -ESTALE : -EROFS;
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

/* A registry deleted or replaced while this process was opening it: SQLite
 * then fails with ENOENT (it stats the path to give the -wal its mode) or
 * reports the file moved.  Worth one more try, on the new file: the soak
 * (tests/soak.py --delete) hit it in 40 of 5,313 sessions racing a
 * deletion every 20 ms. */
static bool reg_raced(int err) {
    return err == -ENOENT || err == -ESTALE;
}

const char *reg_strerror(int err) {
    switch (err) {
    case -EBADMSG:
        return "registry file is corrupt";
    case -EMEDIUMTYPE:
        return "registry file belongs to another program";
    case -EBUSY:
        return "registry busy";
    case -ESTALE:
        return "registry file was deleted or replaced";
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
    size_t dirlen = strlen(path);
    snprintf(path + dirlen, 8, "/%02u", shard);
    int flags = O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0);
    int fd = open(path, flags, 0600);
    if (fd < 0 && errno == ENOENT && create) {
        /* the -locks directory is made once, by the first registration */
        path[dirlen] = '\0';
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
            return -errno;
        snprintf(path + dirlen, 8, "/%02u", shard);
        fd = open(path, flags, 0600);
    }
    if (fd < 0)
        return -errno;
    r->lockfd[shard] = fd;
    return fd;
}

/* Closes the shard files of other processes' locks.  Kept open across
 * sweeps they could go stale (a -locks directory removed and recreated):
 * every live process would then look dead to us.  Our own shard's file
 * carries our lock and stays open. */
static void reg_forget_shards(struct registry *r) {
    for (int i = 0; i < WHOCONN_LOCK_SHARDS; i++)
        if (r->lockfd[i] >= 0 && !(r->registered && i == (int)(r->pid % WHOCONN_LOCK_SHARDS))) {
            close(r->lockfd[i]);
            r->lockfd[i] = -1;
        }
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
    int alive = reg_lock_held(fd, pid);
    return alive < 0 ? -errno : alive;
}

/* Closes the database; the lock files stay open while registered, since
 * closing one would drop our liveness lock. */
void reg_close(struct registry *r) {
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
/* The registry's schema, applied in one transaction by whoever creates the
 * file.  Only ever add to it (see PRODUCTION.md, schema upgrades). */
static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS conn("
    " pid INTEGER PRIMARY KEY," /* the connection process */
    " since INTEGER NOT NULL)"  /* unix time it registered */
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS meta("
    " key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;"
    /* Cluster mode: other servers' counts, mirrored by whoconn-sync.  A row
     * counts until expires_ms (CLOCK_BOOTTIME), so a dead agent's data
     * ages out by itself. */
    "CREATE TABLE IF NOT EXISTS peer("
    " id TEXT PRIMARY KEY, count INTEGER NOT NULL,"
    " expires_ms INTEGER NOT NULL,"
    " updated_ms INTEGER)" /* when the count was last confirmed (CLOCK_BOOTTIME) */
    " WITHOUT ROWID;"
    "PRAGMA application_id=2003332963;"
    "PRAGMA user_version=1;";

_Static_assert(WHOCONN_SQLITE_APP_ID == 2003332963, "reg_init() spells the id in decimal");

/* Runs sql and returns the first column of its first row (0 if none). */
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
    return reg_error(db, rc);
}

/* Brings a file made by an older schema up to this one, inside reg_init()'s
 * transaction: peer.updated_ms came after the first schema. */
static int reg_migrate(struct registry *r) {
    long long has = 0;
    int err = sql_int(r->db, "SELECT count(*) FROM pragma_table_info('peer') WHERE name='updated_ms'",
                      &has);

    if (err == 0 && has == 0)
        err = reg_exec(r, "ALTER TABLE peer ADD COLUMN updated_ms INTEGER");
    return err;
}

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
    err = reg_exec(r, schema_sql);
    if (err == 0)
        err = reg_migrate(r);
    if (err == 0)
        err = reg_exec(r, "COMMIT");
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

/* Removes what creators killed half-way (SIGKILL, OOM) left behind:
 * "<registry>.new-PID" and its -wal, -shm, -journal.  Called under the
 * create lock, which every creator holds while it builds, so each such
 * file is a leftover. */
static void reg_remove_leftovers(const char *path) {
    char dir[4096], name[4096];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dirlen = slash ? (size_t)(slash - path) : 0;

    if ((size_t)snprintf(dir, sizeof dir, "%.*s", (int)dirlen, path) >= sizeof dir ||
        (size_t)snprintf(name, sizeof name, "%s.new-", base) >= sizeof name)
        return;
    DIR *d = opendir(slash ? (dirlen ? dir : "/") : ".");
    if (!d)
        return;
    size_t plen = strlen(name);
    /* single-threaded; glibc deprecates readdir_r() */
    // cppcheck-suppress readdirCalled
    for (struct dirent *e; (e = readdir(d));)
        if (strncmp(e->d_name, name, plen) == 0)
            unlinkat(dirfd(d), e->d_name, 0);
    closedir(d);
}

/* Builds a new registry at tmp, in WAL mode and with its schema. */
static int reg_build(const char *tmp) {
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(tmp, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "PRAGMA journal_mode=WAL; BEGIN IMMEDIATE", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, schema_sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    int err = reg_error(db, rc);
    /* The last close checkpoints and removes tmp's -wal and -shm. */
    if (sqlite3_close(db) != SQLITE_OK && err == 0)
        err = -EBUSY;
    return err;
}

/* Creates a missing registry whole: built under a private name, in WAL
 * mode and with its schema, then link()ed into place.  Nobody ever opens a
 * half-made file, so there is no race between processes switching it to
 * WAL and creating tables at once (there was: "database is locked" for
 * some of six sessions starting together).  Creators take turns under a
 * lock ("<registry>-locks/create"): the first builds, the others find the
 * file there and return -EEXIST (its file is as good as theirs).  A deleted
 * registry may have left its -wal and -shm behind (they persist, see
 * reg_open()); SQLite would replay that old WAL into the new file, so they
 * are removed first. */
static int reg_create(const char *path) {
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    char lock[4096], tmp[4096], aux[4096];
    int err = 0;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.new-%ld", path, (long)getpid()) >= sizeof tmp ||
        (size_t)snprintf(lock, sizeof lock, "%s" WHOCONN_LOCKS_SUFFIX, path) >= sizeof lock - 8)
        return -ENAMETOOLONG;
    if (mkdir(lock, 0700) < 0 && errno != EEXIST)
        return -errno;
    size_t len = strlen(lock);
    snprintf(lock + len, sizeof lock - len, "/create");
    int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return -errno;
    if (fcntl(fd, F_OFD_SETLKW, &fl) < 0)
        err = -errno;
    else if (access(path, F_OK) == 0)
        err = -EEXIST;
    else {
        reg_remove_leftovers(path);
        err = reg_build(tmp);
        static const char *const stale[] = {"-wal", "-shm"};
        for (size_t i = 0; err == 0 && i < sizeof stale / sizeof stale[0]; i++) {
            snprintf(aux, sizeof aux, "%s%s", path, stale[i]);
            if (unlink(aux) < 0 && errno != ENOENT)
                err = -errno;
        }
        if (err == 0 && link(tmp, path) < 0)
            err = -errno;
        unlink(tmp);
    }
    close(fd); /* releases the lock */
    return err;
}

/* Waits for another process's write lock: short sleeps, doubling from
 * WHOCONN_BUSY_SLEEP_MIN_US, for at most WHOCONN_BUSY_TIMEOUT_MS in all.
 * Returns nonzero while SQLite should try again. */
static int reg_busy(void *arg, int tries) {
    struct registry *r = arg;
    int64_t now = now_us(CLOCK_MONOTONIC);

    if (tries == 0)
        r->busy_since_us = now;
    if (now - r->busy_since_us >= (int64_t)r->busy_timeout_ms * 1000)
        return 0;
    long us = (long)WHOCONN_BUSY_SLEEP_MIN_US << (tries < 10 ? tries : 10);
    if (us > WHOCONN_BUSY_SLEEP_MAX_US)
        us = WHOCONN_BUSY_SLEEP_MAX_US;
    struct timespec ts = {.tv_nsec = us * 1000};
    nanosleep(&ts, NULL);
    return 1;
}

static int reg_open(struct registry *r) {
    int rc, err;

    if (r->db)
        return 0;
    for (int attempt = 0;; attempt++) {
        rc = sqlite3_open_v2(r->path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
        if (rc == SQLITE_CANTOPEN && access(r->path, F_OK) < 0 && errno == ENOENT) {
            reg_close(r);
            err = reg_create(r->path);
            if (err < 0 && err != -EEXIST)
                return reg_dir_error(r->path, err);
            rc = sqlite3_open_v2(r->path, &r->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                                 NULL);
        }
        if (rc != SQLITE_OK) {
            err = reg_error(r->db, rc);
            reg_close(r);
            return reg_dir_error(r->path, err);
        }
        /* SQLite quietly falls back to read-only whenever opening for
         * writing fails: when the file or file system is read-only (then WHO
         * could answer but nobody could register: refuse), but also when the
         * file appeared between its two attempts (another process just
         * link()ed it into place: 1 in 1000 connections of a burst on a new
         * registry).  So once more before refusing. */
        if (sqlite3_db_readonly(r->db, "main") != 1)
            break;
        reg_close(r);
        if (attempt > 0)
            return -EROFS;
    }
    sqlite3_extended_result_codes(r->db, 1);
    sqlite3_busy_handler(r->db, reg_busy, r);
    sqlite3_wal_autocheckpoint(r->db, WHOCONN_WAL_AUTOCHECKPOINT);
    /* Keep -wal and -shm when the last connection closes: sequential
     * sessions would otherwise unlink and re-create both files, and every
     * held connection watching the directory (reg_watch()) would be woken
     * for nothing.  The last connection to close does checkpoint, and with
     * journal_size_limit set SQLite then truncates the kept -wal to 0
     * bytes: a process that opens the registry while nobody else has it
     * open finds -shm reset and must rebuild the WAL index from the whole
     * WAL, ~11 k instructions a frame (a sole WHO session grew from 0.70 M
     * to 0.87 M instructions over 8 sessions without this; 0.63 M flat
     * with it).  Under load the closer is rarely the last, and the
     * auto-checkpoint (WHOCONN_WAL_AUTOCHECKPOINT) keeps the WAL short. */
    int one = 1;
    sqlite3_file_control(r->db, "main", SQLITE_FCNTL_PERSIST_WAL, &one);
    /* The registry is per boot and rebuilt by sweeping: durability across
     * power loss buys nothing, so commits need not fsync. */
    err = reg_exec(r, "PRAGMA synchronous=OFF;"
                      "PRAGMA journal_size_limit=" STR(WHOCONN_WAL_LIMIT_BYTES));
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
        if (rc != SQLITE_OK) {
            err = reg_error(r->db, rc);
            return err < 0 ? err : -EIO; /* callers use *ret unless < 0 */
        }
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
    /* Prepared before BEGIN: on a new file, preparing creates the schema,
     * and reg_init cannot switch to WAL inside a transaction. */
    int err = reg_stmt(r, id, &st);

    if (err == 0)
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
int reg_fail(struct registry *r, int err, const char *what) {
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

/* Asks the kernel for a signal (SIGIO) when an entry of the registry's
 * directory is deleted, renamed or created, so that a held connection learns of a
 * deleted or replaced registry at once instead of polling for it: 10,000
 * held connections cost nothing while the directory is left alone.  dnotify
 * rather than inotify: inotify instances are limited per user (128 by
 * default), dnotify marks are not. */
static int reg_watch(struct registry *r) {
    char dir[4096];
    const char *slash = strrchr(r->path, '/');

    if (r->watch_fd >= 0)
        return 0;
    if ((size_t)snprintf(dir, sizeof dir, "%.*s", slash ? (int)(slash - r->path) : 1,
                         slash ? r->path : ".") >= sizeof dir)
        return -ENAMETOOLONG;
    int fd = open(dir[0] ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* DN_CREATE too: a file moved in from another directory over the
     * registry is a creation to dnotify, not a rename. */
    if (fcntl(fd, F_NOTIFY, DN_DELETE | DN_RENAME | DN_CREATE | DN_MULTISHOT) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    r->watch_fd = fd;
    return 0;
}

/* Closes the registry of a held connection once it has been quiet for
 * WHOCONN_HANDLE_IDLE_MS.  Every open SQLite connection holds a POSIX lock
 * on the -shm file, and the kernel walks an inode's whole lock list on each
 * fcntl(): with thousands of connections held open, every transaction of
 * every process slowed down in proportion, until registrations timed out
 * (bench/RESULTS.md).  It also hands SQLite's page cache and heap back,
 * which is most of a held process's memory.  From now on the directory is
 * watched (reg_watch()), so a deleted or replaced registry is still noticed;
 * the caller runs reg_moved() next, for a change before the watch began.
 * Short sessions end before this and never pay it. */
void reg_idle(struct registry *r) {
    if (!r->registered || !r->db)
        return;
    reg_close(r);
    malloc_trim(0);
    reg_watch(r);
}

/* How often registration tries again when the registry is deleted or
 * replaced while it runs (reg_raced()); each try takes about a millisecond. */
#define REG_RACE_TRIES 3

int reg_register(struct registry *r) {
    struct stat st = {0};
    int err;

    if (r->registered)
        return 0;
    r->register_tried = true;
    /* Lock first: from the moment the row exists, a sweep must see us alive. */
    err = reg_lock(r);
    for (int attempt = 1; err == 0; attempt++) {
        err = reg_write(r, ST_INSERT, r->pid, (long long)time(NULL), 0);
        /* The file our row is in, for reg_moved().  Had it been replaced
         * since the commit, our row would sit in the old one: again. */
        int moved = 0;
        if (err == 0 &&
            (sqlite3_file_control(r->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) != SQLITE_OK ||
             moved || stat(r->path, &st) < 0))
            err = -ESTALE;
        if (!reg_raced(err) || attempt == REG_RACE_TRIES)
            break;
        reg_close(r);
        err = 0;
    }
    if (err < 0) {
        r->register_err = err;
        return reg_fail(r, err, "register");
    }
    r->reg_dev = st.st_dev;
    r->reg_ino = st.st_ino;
    r->registered = true;
    r->register_err = 0;
    r->logged_err = 0;
    return 0;
}

void reg_unregister(struct registry *r) {
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
int reg_sweep(struct registry *r) {
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
    sqlite3_bind_int64(st, 2, r->pid);
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
    reg_forget_shards(r);
    return err;
rollback:
    reg_run(r, ST_ROLLBACK, 0, 0, 0);
    return err;
}

/* Whether path names the same file as fd. */
static bool same_file(const char *path, int fd) {
    struct stat a, b;

    return fd >= 0 && stat(path, &a) == 0 && fstat(fd, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* The registry file (or our lock file) was deleted or replaced: our row is
 * in a file nobody opens any more, or our lock where no sweep looks, and
 * an open handle would keep the old -wal and -shm alive.  Drops them; the
 * caller registers again.  A few stat(2)s: run on each change in the
 * registry's directory (dnotify), and by WHO when a handle is open. */
bool reg_moved(struct registry *r) {
    int has_moved = 0;
    bool moved = false;
    char lock[4096];
    struct stat st;

    if (r->db && sqlite3_file_control(r->db, "main", SQLITE_FCNTL_HAS_MOVED, &has_moved) ==
                     SQLITE_OK && has_moved) {
        reg_close(r);
        moved = true;
    }
    if (r->registered) {
        snprintf(lock, sizeof lock, "%s" WHOCONN_LOCKS_SUFFIX "/%02u", r->path,
                 (unsigned)(r->pid % WHOCONN_LOCK_SHARDS));
        if (stat(r->path, &st) < 0 || st.st_dev != r->reg_dev || st.st_ino != r->reg_ino ||
            !same_file(lock, r->lockfd[r->pid % WHOCONN_LOCK_SHARDS]))
            moved = true;
    }
    if (moved && r->registered) {
        reg_close(r);
        for (int i = 0; i < WHOCONN_LOCK_SHARDS; i++)
            if (r->lockfd[i] >= 0) {
                close(r->lockfd[i]);
                r->lockfd[i] = -1;
            }
        if (r->watch_fd >= 0) { /* the directory may be new as well */
            close(r->watch_fd);
            r->watch_fd = -1;
        }
        r->registered = false;
        r->register_tried = false; /* so WHO re-registers before it counts */
    }
    return moved;
}

/* The number of live connections, the caller included.  Sets *sweep_later
 * when a sweep is due but may run after the reply. */
/* reg_count() once; *what names the failed step for the log, NULL when it
 * was logged already (a failed registration). */
static int reg_count_once(struct registry *r, long long *ret, bool *sweep_later,
                          const char **what) {
    sqlite3_stmt *st;
    int err, rc;

    *what = NULL;
    reg_moved(r);
    /* A process that is not registered is missing from everyone's count:
     * no answer is exact until it is.  One attempt per batch of requests:
     * a WHO right after a failed attempt answers with its error. */
    if (!r->registered) {
        err = r->register_tried ? r->register_err : reg_register(r);
        if (err < 0)
            return err;
    }
    *what = "count";
    for (int pass = 0; pass < 2; pass++) {
        int64_t now = now_ms(CLOCK_BOOTTIME);
        err = reg_stmt(r, ST_COUNT, &st);
        if (err < 0)
            return err;
        sqlite3_bind_int64(st, 1, now);
        sqlite3_bind_int64(st, 2, r->pid);
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW) {
            err = reg_error(r->db, rc);
            sqlite3_reset(st);
            return err;
        }
        long long n = sqlite3_column_int64(st, 0) + sqlite3_column_int64(st, 2);
        bool have = sqlite3_column_type(st, 1) != SQLITE_NULL;
        int64_t swept = sqlite3_column_int64(st, 1);
        sqlite3_reset(st);

        int64_t age = (!have || swept > now) ? INT64_MAX : now - swept;
        if (age >= WHOCONN_SWEEP_BEFORE_MS && pass == 0) {
            *what = "sweep";
            err = reg_sweep(r);
            if (err < 0)
                return err;
            *what = "count";
            continue; /* count again, now exact */
        }
        *sweep_later = age >= WHOCONN_SWEEP_AFTER_MS;
        *ret = n + 1;
        r->logged_err = 0;
        return 0;
    }
    return 0; /* not reached: pass 1 always returns */
}

int reg_count(struct registry *r, long long *ret, bool *sweep_later) {
    const char *what;
    int err = reg_count_once(r, ret, sweep_later, &what);

    if (err < 0 && what && reg_raced(err)) {
        reg_close(r);
        err = reg_count_once(r, ret, sweep_later, &what);
    }
    return err < 0 && what ? reg_fail(r, err, what) : err;
}

void reg_setup(struct registry *r, const char *path, long long pid) {
    memset(r, 0, sizeof *r);
    r->path = path;
    r->pid = pid;
    r->busy_timeout_ms = WHOCONN_BUSY_TIMEOUT_MS;
    for (int i = 0; i < WHOCONN_LOCK_SHARDS; i++)
        r->lockfd[i] = -1;
    r->watch_fd = -1;
}

void reg_free(struct registry *r) {
    reg_unregister(r);
    reg_close(r);
    for (int i = 0; i < WHOCONN_LOCK_SHARDS; i++)
        if (r->lockfd[i] >= 0) {
            close(r->lockfd[i]);
            r->lockfd[i] = -1;
        }
    if (r->watch_fd >= 0)
        close(r->watch_fd);
    r->watch_fd = -1;
}

/* ---- whoconn-sync: the local count and the peers' ------------------- */

int reg_local_count(struct registry *r, long long *ret) {
    sqlite3_stmt *st;
    int moved = 0;

    /* A registry deleted or replaced under a long-lived handle: reopen,
     * or we would count and write into a file nobody else uses. */
    if (r->db && sqlite3_file_control(r->db, "main", SQLITE_FCNTL_HAS_MOVED, &moved) == SQLITE_OK &&
        moved)
        reg_close(r);
    int err = reg_sweep(r);
    if (err < 0)
        return err;
    err = reg_stmt(r, ST_LOCAL, &st);
    if (err < 0)
        return err;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *ret = sqlite3_column_int64(st, 0);
    err = rc == SQLITE_ROW ? 0 : reg_error(r->db, rc);
    sqlite3_reset(st);
    return err;
}

int reg_put_peers(struct registry *r, const struct reg_peer *peers, int n, int64_t expires_ms,
                  int64_t updated_ms) {
    sqlite3_stmt *clear, *put;
    /* Prepared before BEGIN: on a new or older file, preparing creates or
     * migrates the schema, which reg_init() does in its own transaction. */
    int err = reg_stmt(r, ST_PEER_PUT, &put);

    if (err == 0)
        err = reg_stmt(r, ST_PEER_CLEAR, &clear);
    if (err == 0)
        err = reg_run(r, ST_BEGIN, 0, 0, 0);
    if (err < 0)
        return err;
    int rc = sqlite3_step(clear);
    sqlite3_reset(clear);
    for (int i = 0; rc == SQLITE_DONE && i < n; i++) {
        sqlite3_bind_text(put, 1, peers[i].id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(put, 2, peers[i].count);
        sqlite3_bind_int64(put, 3, expires_ms);
        sqlite3_bind_int64(put, 4, updated_ms);
        rc = sqlite3_step(put);
        sqlite3_reset(put);
    }
    err = rc == SQLITE_DONE ? reg_run(r, ST_COMMIT, 0, 0, 0) : reg_error(r->db, rc);
    if (err < 0)
        reg_run(r, ST_ROLLBACK, 0, 0, 0);
    return err;
}

/* ---- whoconn-metrics: a read-only look ------------------------------- */

/* Counts the conn rows whose process still holds its liveness lock, the
 * same test the sweep uses.  A lock that cannot be tested counts as
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
        if (fds[shard] == -3 || reg_lock_held(fds[shard], pid) != 0)
            n++;
    }
    if (rc != SQLITE_DONE)
        err = reg_error(db, rc);
    sqlite3_finalize(st);
    for (int i = 0; i < WHOCONN_LOCK_SHARDS; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    *ret = n;
    return err;
}

/* Peers by state, and the first WHOCONN_METRICS_PEERS_MAX of them by id.
 * updated_ms is optional: a file of the first schema has no such column. */
static int read_peers(sqlite3 *db, struct reg_status *s) {
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
        struct reg_status_peer *p = &s->peers[s->npeers++];
        memcpy(p->id, id, len);
        p->id[len] = '\0';
        p->count = sqlite3_column_int64(st, 1);
        p->expires_ms = expires;
        p->has_updated = sqlite3_column_type(st, 3) != SQLITE_NULL;
        p->updated_ms = sqlite3_column_int64(st, 3);
    }
    err = rc == SQLITE_DONE ? 0 : reg_error(db, rc);
    sqlite3_finalize(st);
    return err;
}

int reg_read_status(const char *path, struct reg_status *s) {
    sqlite3 *db = NULL;
    struct stat st;
    long long app = 0, tables = 0;
    int err;

    s->what = "open";
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
        err = reg_error(db, rc);
        goto out;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, WHOCONN_BUSY_TIMEOUT_MS);
    /* One read transaction: rows and peers are from the same moment. */
    err = reg_error(db, sqlite3_exec(db, "BEGIN", NULL, NULL, NULL));
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
    s->what = "count";
    err = count_live(db, path, &s->connections);
    if (err == 0) {
        s->what = "peers";
        err = read_peers(db, s);
    }
out:
    sqlite3_close(db); /* ends the read transaction */
    return err;
}
