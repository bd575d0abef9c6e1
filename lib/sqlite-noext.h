/*
 * sqlite-noext.h - keeps the SQLite extensions whoconn never uses out of
 * every connection.
 *
 * Contract: linking lib/sqlite-noext.o before Debian's static libsqlite3.a
 * replaces the entry points that sqlite3_open_v2() calls to register the
 * built-in FTS3, FTS5, R*Tree, dbstat and sqlite_stmt modules with ones that
 * register nothing and return SQLITE_OK, so the archive members that hold
 * those modules are never linked in.  Nothing else changes: the registry
 * uses none of them, and the sqlite3 shell and other programs keep them.
 * Why: registering them was ~54 k of the ~93 k instructions of opening the
 * registry, and closing it ~17 k more, on every connection (bench/NOTES.md
 * item 17).  If a libsqlite3.a ever needs one of those members for another
 * symbol, the link fails with a duplicate definition (loud, never
 * silent); if it stops calling them by these names, they are dead code.
 */
#ifndef WHOCONN_SQLITE_NOEXT_H
#define WHOCONN_SQLITE_NOEXT_H

#include <sqlite3.h>

/* SQLite's internal names (main.c's sqlite3BuiltinExtensions[]). */
int sqlite3Fts3Init(sqlite3 *db);
int sqlite3Fts5Init(sqlite3 *db);
int sqlite3RtreeInit(sqlite3 *db);
int sqlite3DbstatRegister(sqlite3 *db);
int sqlite3StmtVtabInit(sqlite3 *db);

#endif /* WHOCONN_SQLITE_NOEXT_H */
