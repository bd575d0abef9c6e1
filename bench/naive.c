/*
 * naive - the whoconn design card implemented the obvious way, as a peer to
 * beat in the benchmarks (issue 12).  Not shipped, not installed.
 *
 * One process per connection, inetd-style (fd 0 the peer, fd 1 the reply),
 * linked against the shared libsqlite3.  At start it opens the registry
 * ($WHOCONN_DB), switches it to WAL with synchronous=OFF, creates the table
 * if needed and inserts its PID; WHO is SELECT count(*); WHERE and WHY are
 * fixed replies; at EOF it deletes its row and closes.  Nothing else: no
 * confinement, no logging, no clean-up after a crash, no line limits beyond
 * the buffer.  It is what a competent engineer writes in an hour, so that
 * whoconn's extra work can be weighed against it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <sqlite3.h>

/* A fixed server id: the naive version does not derive one. */
#define NAIVE_WHERE "00000000-0000-4000-8000-000000000000"
#define NAIVE_BUSY_MS 5000

static sqlite3_int64 count(sqlite3 *db) {
    sqlite3_stmt *st;
    sqlite3_int64 n = -1;

    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM conn", -1, &st, NULL) != SQLITE_OK)
        return -1;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int exec_pid(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);

    if (rc != SQLITE_OK)
        return rc;
    sqlite3_bind_int64(st, 1, (sqlite3_int64)getpid());
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int main(void) {
    const char *path = getenv("WHOCONN_DB");
    char line[1100];
    sqlite3 *db;

    if (!path)
        path = "/run/whoconn/registry.db";
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return 1;
    sqlite3_busy_timeout(db, NAIVE_BUSY_MS);
    if (sqlite3_exec(db,
                     "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;"
                     "CREATE TABLE IF NOT EXISTS conn(pid INTEGER PRIMARY KEY)",
                     NULL, NULL, NULL) != SQLITE_OK ||
        exec_pid(db, "INSERT OR REPLACE INTO conn(pid) VALUES(?)") != SQLITE_OK) {
        sqlite3_close(db);
        return 1;
    }

    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcasecmp(line, "WHO") == 0)
            printf("%lld\n", (long long)count(db));
        else if (strcasecmp(line, "WHERE") == 0)
            printf("%s\n", NAIVE_WHERE);
        else if (strcasecmp(line, "WHY") == 0)
            printf("42\n");
        else if (strcasecmp(line, "QUIT") == 0)
            break;
        else if (line[0])
            printf("ERR unknown command\n");
        fflush(stdout);
    }

    exec_pid(db, "DELETE FROM conn WHERE pid = ?");
    sqlite3_close(db);
    return 0;
}
