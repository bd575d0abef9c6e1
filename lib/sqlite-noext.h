/*
 * sqlite-noext.h - keeps the SQLite extensions whoconn never uses out of
 * every connection.
 *
 * Contract: linking lib/sqlite-noext.o before Debian's static libsqlite3.a
 * replaces the entry points that sqlite3_open_v2() calls to register the
 * built-in FTS3, FTS5, R*Tree, dbstat and sqlite_stmt modules, and those
 * sqlite3_initialize() calls to register the date/time and JSON SQL
 * functions, with ones that register nothing (and return SQLITE_OK), so the
 * archive members that hold them are never linked in.  The registry's SQL
 * uses none of them (a statement that did would fail to prepare: "no such
 * function"); the sqlite3 shell and the other programs keep them.
 * Why: registering the modules was ~54 k of the ~93 k instructions of
 * opening the registry, and closing it ~17 k more, the functions ~8 k, on
 * every connection (bench/NOTES.md item 17).  If a libsqlite3.a ever needs
 * one of those members for another symbol, the link fails with a duplicate
 * definition (loud, never silent); if it stops calling them by these
 * names, they are dead code.
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
/* func.c's sqlite3RegisterBuiltinFunctions() and main.c */
void sqlite3RegisterDateTimeFunctions(void);
void sqlite3RegisterJsonFunctions(void);
int sqlite3JsonTableFunctions(sqlite3 *db);

#endif /* WHOCONN_SQLITE_NOEXT_H */
