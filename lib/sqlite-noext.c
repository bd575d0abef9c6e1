/*
 * sqlite-noext.c - SQLite's built-in extension modules and its date/time
 * and JSON SQL functions, registered as nothing (contract in
 * sqlite-noext.h).
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
