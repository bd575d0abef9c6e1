/*
 * sqlite-noext.c - SQLite's built-in extension modules, registered as
 * nothing (contract in sqlite-noext.h).  JSON stays: its functions are in
 * the same archive member as the core's, so it is linked in anyway.
 */
#include "sqlite-noext.h"

int sqlite3Fts3Init(sqlite3 *db) {
    (void)db;
    return SQLITE_OK;
}

int sqlite3Fts5Init(sqlite3 *db) {
    (void)db;
    return SQLITE_OK;
}

int sqlite3RtreeInit(sqlite3 *db) {
    (void)db;
    return SQLITE_OK;
}

int sqlite3DbstatRegister(sqlite3 *db) {
    (void)db;
    return SQLITE_OK;
}

int sqlite3StmtVtabInit(sqlite3 *db) {
    (void)db;
    return SQLITE_OK;
}

void sqlite3RegisterDateTimeFunctions(void) {
}

void sqlite3RegisterJsonFunctions(void) {
}

int sqlite3JsonTableFunctions(sqlite3 *db) {
    (void)db;
    return SQLITE_OK;
}
