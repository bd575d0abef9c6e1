/*
 * session.h - the protocol engine of one whoconn connection: bytes from
 * the peer in, replies out, the registry consulted for WHO.  What the
 * fuzzer drives (fuzz/fuzz_session.c); whoconn.c adds the process around
 * it (start-up, the poll loop, signals, the journal entry).
 *
 * Contract:
 *  - session_init() prepares s for one connection whose replies go to
 *    out_fd; opens nothing.  session_free() unregisters and closes all.
 *  - session_input() feeds n peer bytes (eof: the peer will send no more):
 *    each complete non-blank line gets exactly one reply line, in order,
 *    gathered in s->out; a protocol violation (WHOCONN_LINE_MAX, a byte
 *    outside printable ASCII, TAB, CR, LF) gets one ERR line and ends the
 *    session.  s->end says whether and why the session is over.  Returns
 *    0 or a negative errno from writing replies.
 *  - With cfg->proxy_v2, the connection must start with a PROXY v2 header
 *    (lib/proxy.h), taken off the input before the first request, which
 *    may follow in the same read.  Once it is complete and valid,
 *    s->proxied is set, s->proxy says what it named (s->client names a
 *    client, for the log), and later log lines name the client
 *    ("peer=ADDR:PORT ...").  Anything else gets one line
 *    "ERR invalid PROXY v2 header" and ends the session (END_PROXY_HEADER),
 *    as soon as a byte shows it, or at EOF in the middle of it, or when
 *    session_header_timeout() is called; EOF before any byte is END_CLOSED
 *    as ever (the caller's, as for any session).
 *  - session_flush() writes the gathered replies to out_fd; -ETIMEDOUT
 *    when the peer stopped reading for the send timeout.
 *  - Adding a command is one row in session.c's table and one function.
 */
#ifndef WHOCONN_SESSION_H
#define WHOCONN_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include "../whoconn.h"
#include "counters.h"
#include "peer.h"
#include "proxy.h"
#include "registry.h"
#include "util.h"

struct config {
    const char *db;
    unsigned idle_timeout; /* seconds */
    char server_id[UUID_STR_LEN]; /* empty: derived from the machine id */
    bool proxy_v2; /* connections start with a PROXY v2 header */
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
    bool proxy_pending;     /* the PROXY header is still to come */
    bool proxied;           /* it came, and proxy says what it named */
    struct proxy_v2 proxy;
    struct peer client;     /* proxy.src named once, for every log line */
};

void session_init(struct session *s, const struct config *cfg, int out_fd);
void session_free(struct session *s);
int session_input(struct session *s, const char *data, size_t n, bool eof);
int session_flush(struct session *s);

/* The PROXY header's time is up (while s->proxy_pending): refuses it. */
int session_header_timeout(struct session *s);

/* The process's exit status for a session that ended so. */
int session_exit_status(enum whoconn_end end);

#endif /* WHOCONN_SESSION_H */
