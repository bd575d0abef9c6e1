/*
 * http.h - the little HTTP/1.x that whoconn-metrics(8) speaks: read one
 * request head from fd 0 within a deadline, and parse it.  What
 * fuzz/fuzz_metrics_http.c drives.
 *
 * Contract:
 *  - read_head() reads until the head's empty line, at most
 *    WHOCONN_METRICS_HEAD_MAX bytes, before deadline (CLOCK_MONOTONIC ms).
 *    0, -EMSGSIZE (too long), -ETIMEDOUT, -EPIPE (the peer closed first;
 *    rq->len tells whether it sent anything), or another negative errno.
 *  - head_end() is where a head ends (just past its empty line), 0 if not
 *    yet.
 *  - parse_request() parses rq->head in place, never past it, and decides
 *    the answer: ST_OK only for GET or HEAD of METRICS_PATH without a body;
 *    every refusal sets rq->why for the log.
 */
#ifndef WHOCONN_HTTP_H
#define WHOCONN_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../whoconn.h"

enum status {
    ST_OK,
    ST_BAD_REQUEST,
    ST_NOT_FOUND,
    ST_METHOD_NOT_ALLOWED,
    ST_REQUEST_TIMEOUT,
    ST_CONTENT_TOO_LARGE,
    ST_FIELDS_TOO_LARGE,
    ST_INTERNAL_ERROR,
    ST_BAD_VERSION,
    ST__MAX
};

struct http_status {
    const char *reason;
    int code;
    int exit_status; /* the peer's fault is listed in SuccessExitStatus= */
};

extern const struct http_status status_info[ST__MAX];

#define METRICS_PATH "/metrics"
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct request {
    char head[WHOCONN_METRICS_HEAD_MAX + 1]; /* NUL-terminated once parsed */
    size_t len;
    const char *method;
    const char *path; /* without the query */
    bool head_only;   /* HEAD: the answer's header, no body */
    const char *why;  /* what was wrong, for the log */
};

size_t head_end(const char *buf, size_t len);
int read_head(struct request *rq, int64_t deadline);
enum status parse_request(struct request *rq);

#endif /* WHOCONN_HTTP_H */
