/*
 * log.h - diagnostics of the whoconn programs: one line per message on
 * stderr, never on stdout (fd 1 is the peer), and the structured journal
 * entry of a finished connection.
 *
 * Contract:
 *  - log_setup() runs once, first thing in main(): it decides whether fd 2
 *    is the journal ($JOURNAL_STREAM names its device and inode) and, when an
 *    inetd-style launcher handed the connection to fd 2 as well, points fd 2
 *    at /dev/null so that nothing logged can reach the peer.
 *  - log_msg() writes one line in one write(2): "<N>" priority prefix when
 *    stderr is the journal, else "IDENT[PID]: ".  Lines are cut at 766 bytes.
 *    It never fails visibly: there is nowhere left to report that.
 *  - log_set_prefix() puts a text before every later line's message (NULL
 *    or "": none), such as "peer=CLIENT" once a PROXY header has named the
 *    client; cut at LOG_PREFIX_MAX bytes.
 *  - log_sanitize() makes peer bytes printable (\xNN) and cuts them to
 *    WHOCONN_LOG_PEER_TEXT bytes before they reach a log line.
 *  - journal_send() sends one entry of KEY=value fields over journald's
 *    native protocol; 0 or a negative errno, never logs.
 */
#ifndef WHOCONN_LOG_H
#define WHOCONN_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h> /* priorities only: we log to stderr */

void log_setup(const char *ident);

/* Whether stderr is the journal (after log_setup()). */
bool log_to_journal(void);

#define LOG_PREFIX_MAX 96

void log_set_prefix(const char *prefix);

void log_msg(int prio, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* dst must hold WHOCONN_LOG_PEER_TEXT * 4 + 8 bytes. */
void log_sanitize(char *dst, size_t dstsize, const char *src, size_t len);

int journal_send(char *const *fields, size_t n);

#endif /* WHOCONN_LOG_H */
