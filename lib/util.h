/*
 * util.h - small helpers every whoconn program uses: clocks, strict number
 * parsing, the default registry path.  All static inline: they are called
 * on every connection and cost less than a call.
 */
#ifndef WHOCONN_UTIL_H
#define WHOCONN_UTIL_H

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../whoconn.h"

/* A UUID as text: 36 characters and NUL. */
#define UUID_STR_LEN 37

#define STR_(x) #x
#define STR(x) STR_(x)

static inline int64_t now_us(clockid_t clk) {
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t now_ms(clockid_t clk) {
    struct timespec ts;

    clock_gettime(clk, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses a setting that is a whole number from min to max: digits only, no
 * sign, no suffix, no overflow.  0, or -EINVAL/-ERANGE. */
static inline int parse_uint(const char *s, unsigned long min, unsigned long max,
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
static inline const char *db_default(char *buf, size_t size) {
    const char *rt = getenv("RUNTIME_DIRECTORY");

    if (rt && rt[0] == '/') {
        size_t len = strcspn(rt, ":");
        if ((size_t)snprintf(buf, size, "%.*s/%s", (int)len, rt, WHOCONN_DB_NAME) < size)
            return buf;
    }
    return WHOCONN_DB_DEFAULT;
}

#endif /* WHOCONN_UTIL_H */
