/*
 * http.c - reading and parsing whoconn-metrics' request head (contract in
 * http.h).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "http.h"
#include "util.h"

const struct http_status status_info[ST__MAX] = {
    [ST_OK] = {"OK", 200, WHOCONN_EXIT_OK},
    [ST_BAD_REQUEST] = {"Bad Request", 400, WHOCONN_EXIT_PROTOCOL},
    [ST_NOT_FOUND] = {"Not Found", 404, WHOCONN_EXIT_PROTOCOL},
    [ST_METHOD_NOT_ALLOWED] = {"Method Not Allowed", 405, WHOCONN_EXIT_PROTOCOL},
    [ST_REQUEST_TIMEOUT] = {"Request Timeout", 408, WHOCONN_EXIT_TIMEOUT},
    [ST_CONTENT_TOO_LARGE] = {"Content Too Large", 413, WHOCONN_EXIT_PROTOCOL},
    [ST_FIELDS_TOO_LARGE] = {"Request Header Fields Too Large", 431, WHOCONN_EXIT_PROTOCOL},
    [ST_INTERNAL_ERROR] = {"Internal Server Error", 500, WHOCONN_EXIT_SOFTWARE},
    [ST_BAD_VERSION] = {"HTTP Version Not Supported", 505, WHOCONN_EXIT_PROTOCOL},
};

/* ---- reading the request --------------------------------------------- */

/* Where the head ends (just past its empty line), or 0 if not yet.  A bare
 * LF is accepted as a line end, as RFC 9112 section 2.2 allows. */
size_t head_end(const char *buf, size_t len) {
    for (size_t i = 1; i < len; i++) {
        if (buf[i] != '\n')
            continue;
        if (buf[i - 1] == '\n')
            return i + 1;
        if (i >= 2 && buf[i - 1] == '\r' && buf[i - 2] == '\n')
            return i + 1;
    }
    return 0;
}

/* Reads the request head from fd 0 until its empty line, within the
 * deadline.  Returns 0, -EMSGSIZE past WHOCONN_METRICS_HEAD_MAX,
 * -ETIMEDOUT, -EPIPE when the peer closed before the end (*len tells
 * whether it sent anything), or another negative errno. */
int read_head(struct request *rq, int64_t deadline) {
    rq->len = 0;
    for (;;) {
        /* Empty lines before the request line are skipped (RFC 9112 2.2). */
        size_t skip = 0;
        while (skip < rq->len && (rq->head[skip] == '\r' || rq->head[skip] == '\n'))
            skip++;
        memmove(rq->head, rq->head + skip, rq->len - skip);
        rq->len -= skip;
        size_t end = head_end(rq->head, rq->len);
        if (end) {
            rq->len = end;
            return 0;
        }
        if (rq->len >= WHOCONN_METRICS_HEAD_MAX)
            return -EMSGSIZE;

        int64_t left = deadline - now_ms(CLOCK_MONOTONIC);
        if (left <= 0)
            return -ETIMEDOUT;
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            return -ETIMEDOUT;
        /* One byte over the limit is enough to know it is too long. */
        ssize_t n = read(STDIN_FILENO, rq->head + rq->len, WHOCONN_METRICS_HEAD_MAX + 1 - rq->len);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EPIPE;
        rq->len += (size_t)n;
        if (rq->len > WHOCONN_METRICS_HEAD_MAX && !head_end(rq->head, WHOCONN_METRICS_HEAD_MAX))
            return -EMSGSIZE;
    }
}

/* ---- parsing the request --------------------------------------------- */

static bool is_tchar(unsigned char c) {
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Cuts the next line out of the head: returns it NUL-terminated with CR
 * and LF removed, and advances *pos.  NULL at the empty line. */
static char *next_line(char *head, size_t len, size_t *pos) {
    char *line = head + *pos;
    char *lf = memchr(line, '\n', len - *pos);

    if (!lf)
        return NULL;
    *pos = (size_t)(lf - head) + 1;
    *lf = '\0';
    if (lf > line && lf[-1] == '\r')
        lf[-1] = '\0';
    return *line ? line : NULL;
}

/* Parses the request line and header fields in place and decides the
 * answer.  Never reads past the head: a body is refused, not read. */
enum status parse_request(struct request *rq) {
    size_t pos = 0;
    unsigned hosts = 0, fields = 0;
    bool body = false;

    /* Only printable ASCII, SP and HTAB: no NUL, no stray CR, no obs-text
     * (we need none of it, and refusing it keeps parsing simple). */
    for (size_t i = 0; i < rq->len; i++) {
        unsigned char c = (unsigned char)rq->head[i];
        if (c == '\r' && i + 1 < rq->len && rq->head[i + 1] == '\n')
            continue;
        if (c != '\n' && c != '\t' && (c < 0x20 || c > 0x7e)) {
            rq->why = "a byte that is not printable ASCII";
            return ST_BAD_REQUEST;
        }
    }

    /* request-line = method SP request-target SP HTTP-version */
    char *line = next_line(rq->head, rq->len, &pos);
    if (!line) {
        rq->why = "no request line";
        return ST_BAD_REQUEST;
    }
    char *sp1 = strchr(line, ' '), *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || strchr(sp2 + 1, ' ') || sp1 == line || sp2 == sp1 + 1) {
        rq->why = "request line is not METHOD SP TARGET SP VERSION";
        return ST_BAD_REQUEST;
    }
    *sp1 = *sp2 = '\0';
    char *method = line, *target = sp1 + 1, *version = sp2 + 1;
    for (char *c = method; *c; c++)
        if (!is_tchar((unsigned char)*c)) {
            rq->why = "method is not a token";
            return ST_BAD_REQUEST;
        }
    rq->head_only = strcmp(method, "HEAD") == 0; /* even an error's answer has no body */
    if (strchr(target, '\t')) {
        rq->why = "control character in the target";
        return ST_BAD_REQUEST;
    }
    if (strlen(version) != 8 || strncmp(version, "HTTP/", 5) != 0 ||
        !isdigit((unsigned char)version[5]) || version[6] != '.' ||
        !isdigit((unsigned char)version[7])) {
        rq->why = "malformed HTTP version";
        return ST_BAD_REQUEST;
    }
    if (version[5] != '1') {
        rq->why = "HTTP version other than 1.x";
        return ST_BAD_VERSION;
    }
    bool http11 = version[7] != '0';

    /* field-line = field-name ":" OWS field-value OWS */
    while ((line = next_line(rq->head, rq->len, &pos))) {
        if (++fields > WHOCONN_METRICS_FIELDS_MAX) {
            rq->why = "too many header fields";
            return ST_FIELDS_TOO_LARGE;
        }
        char *colon = strchr(line, ':');
        if (!colon || colon == line) {
            rq->why = "header field without a name and colon";
            return ST_BAD_REQUEST;
        }
        for (char *c = line; c < colon; c++)
            if (!is_tchar((unsigned char)*c)) {
                /* also catches obs-fold and "Name :" (RFC 9112 5.1, 5.2) */
                rq->why = "header field name is not a token";
                return ST_BAD_REQUEST;
            }
        *colon = '\0';
        char *value = colon + 1;
        while (*value == ' ' || *value == '\t')
            value++;
        if (strcasecmp(line, "Host") == 0)
            hosts++;
        else if (strcasecmp(line, "Transfer-Encoding") == 0)
            body = true;
        else if (strcasecmp(line, "Content-Length") == 0) {
            char *end;
            errno = 0;
            unsigned long long n = strtoull(value, &end, 10);
            while (*end == ' ' || *end == '\t')
                end++;
            if (!isdigit((unsigned char)*value) || errno || *end) {
                rq->why = "invalid Content-Length";
                return ST_BAD_REQUEST;
            }
            if (n > 0)
                body = true;
        }
    }
    /* RFC 9112 3.2: an HTTP/1.1 request has exactly one Host field. */
    if ((http11 && hosts == 0) || hosts > 1) {
        rq->why = hosts ? "more than one Host field" : "HTTP/1.1 request without Host";
        return ST_BAD_REQUEST;
    }

    /* absolute-form (RFC 9112 3.2.2): only the path matters to us. */
    if (strncasecmp(target, "http://", 7) == 0 || strncasecmp(target, "https://", 8) == 0) {
        char *slash = strchr(strstr(target, "//") + 2, '/');
        target = slash ? slash : target + strlen(target); /* no path: 404 */
    }
    target[strcspn(target, "?#")] = '\0';
    rq->method = method;
    rq->path = target;
    if (strcmp(target, METRICS_PATH) != 0) {
        rq->why = "no such path";
        return ST_NOT_FOUND;
    }
    if (strcmp(method, "GET") != 0 && !rq->head_only) {
        rq->why = "method other than GET or HEAD";
        return ST_METHOD_NOT_ALLOWED;
    }
    if (body) {
        rq->why = "a request body";
        return ST_CONTENT_TOO_LARGE;
    }
    return ST_OK;
}
