/*
 * whoconn - tell a TCP client how many clients are connected (WHO), which
 * server it reached (WHERE), and why (WHY).
 *
 * One process serves one connection.  It is started by systemd's
 * Accept=yes socket activation (or any inetd-style launcher): fd 0 reads
 * from the peer, fd 1 writes to it, fd 2 is the journal.  Nothing but
 * protocol is ever written to fd 1.
 *
 * Connected clients are counted in a SQLite registry (WAL mode) shared by
 * all connection processes: a connection registers before its first reply
 * and unregisters before its process exits, so WHO is exact at once.
 *
 * This file is the process: start-up, configuration, confinement, the poll
 * loop, signals and the journal entry.  The protocol engine is
 * lib/session.c, the registry lib/registry.c, the confinement
 * lib/confine.c, the counters file lib/counters.c, logging lib/log.c, the
 * server id lib/serverid.c.  Limits and defaults are in whoconn.h; the
 * protocol is in whoconn(8) and README.md.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "whoconn.h"
#include "lib/cli.h"
#include "lib/confine.h"
#include "lib/counters.h"
#include "lib/drain.h"
#include "lib/log.h"
#include "lib/peer.h"
#include "lib/proxy.h"
#include "lib/registry.h"
#include "lib/serverid.h"
#include "lib/session.h"
#include "lib/sqlmem.h"
#include "lib/util.h"

static volatile sig_atomic_t got_signal;

/* A launcher may start us with fd 0, 1 or 2 closed.  The registry, its
 * lock files and SQLite's own files would then be opened on them, and the
 * replies written into the registry.  A closed fd is taken by /dev/null
 * opened the wrong way round, so it still fails as a closed fd would:
 * reading fd 0 or writing fd 1 gives EBADF (exit 74), logs are dropped. */
static void std_fds_guard(void) {
    static const int modes[3] = {O_WRONLY, O_RDONLY, O_WRONLY};
    /* one system call for all three, on every connection: a closed fd
     * polls as POLLNVAL */
    struct pollfd p[3] = {{.fd = 0}, {.fd = 1}, {.fd = 2}};

    if (poll(p, 3, 0) <= 0)
        return;
    for (int fd = 0; fd < 3; fd++)
        if (p[fd].revents & POLLNVAL)
            open("/dev/null", modes[fd] | O_CLOEXEC); /* lowest free fd: this one */
}

static void on_signal(int sig) {
    got_signal = sig;
}

static volatile sig_atomic_t got_dir_change;

static void on_dir_change(int sig) {
    (void)sig;
    got_dir_change = 1;
}

/* The one entry per finished connection.  Under systemd it carries
 * WHOCONN_* fields for journalctl filters; elsewhere it is a stderr line.
 * conn is fd 0's peer.  Behind a PROXY header that named a client, the
 * peer is that client and proxy= the balancer that relayed it; for the
 * balancer's own connections (LOCAL, UNSPEC) the peer is the balancer. */
static void log_session(const struct peer *conn, const struct session *s, int64_t duration_ms) {
    char msg[320], via[sizeof conn->name + 32] = "", f[11][96];
    char *fields[] = {f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], msg};
    size_t nfields = 8;
    const struct peer *p = conn;

    if (s->proxied) {
        if (s->proxy.kind == PROXY_V2_CLIENT)
            p = &s->client;
        snprintf(via, sizeof via, " proxy=%s header=%s", conn->name,
                 proxy_v2_kind_names[s->proxy.kind]);
    }
    snprintf(msg, sizeof msg,
             "MESSAGE=peer=%s%s duration_ms=%" PRId64 " commands=%lu errors=%lu end=%s", p->name,
             via, duration_ms, s->commands, s->errors, whoconn_end_names[s->end]);
    if (log_to_journal()) {
        snprintf(f[0], sizeof f[0], "PRIORITY=%d", LOG_INFO);
        snprintf(f[1], sizeof f[1], "SYSLOG_IDENTIFIER=whoconn");
        snprintf(f[2], sizeof f[2], "WHOCONN_PEER_ADDRESS=%s", p->addr);
        snprintf(f[3], sizeof f[3], "WHOCONN_PEER_PORT=%u", p->port);
        snprintf(f[4], sizeof f[4], "WHOCONN_DURATION_MS=%" PRId64, duration_ms);
        snprintf(f[5], sizeof f[5], "WHOCONN_COMMANDS=%lu", s->commands);
        snprintf(f[6], sizeof f[6], "WHOCONN_ERRORS=%lu", s->errors);
        snprintf(f[7], sizeof f[7], "WHOCONN_END=%s", whoconn_end_names[s->end]);
        if (s->proxied) {
            snprintf(f[8], sizeof f[8], "WHOCONN_PROXY_ADDRESS=%s", conn->addr);
            snprintf(f[9], sizeof f[9], "WHOCONN_PROXY_PORT=%u", conn->port);
            snprintf(f[10], sizeof f[10], "WHOCONN_PROXY_HEADER=%s",
                     proxy_v2_kind_names[s->proxy.kind]);
            nfields = 11;
        }
        fields[nfields] = msg;
        if (journal_send(fields, nfields + 1) == 0) {
            /* journald finds our unit from /proc/PID when it reads the
             * datagram; if systemd has already reaped us, the entry loses
             * _SYSTEMD_UNIT and `journalctl -u` misses it (1 in 200 in a
             * burst here).  The client is gone already: linger briefly. */
            struct timespec grace = {.tv_nsec = WHOCONN_JOURNAL_GRACE_MS * 1000000L};
            nanosleep(&grace, NULL);
            return;
        }
    }
    log_set_prefix(NULL); /* the message names the peer itself */
    log_msg(LOG_INFO, "%s", msg + strlen("MESSAGE="));
}

/* Registers the session if it is not (yet, or any more) registered, so
 * that it is counted before its next reply.  On failure the next attempt
 * is due WHOCONN_RETRY_MS later, or before the next request, whichever
 * comes first; WHO answers ERR meanwhile (reg_count()). */
static void session_register(struct session *s, int64_t now, int64_t *retry_at) {
    if (s->reg.registered)
        return;
    s->reg.register_tried = false; /* a new attempt, for this batch */
    *retry_at = reg_register(&s->reg) < 0 ? now + WHOCONN_RETRY_MS : INT64_MAX;
}

/* After a change in the registry's directory: if our file moved, register
 * again soon, spread by PID (every held connection got the same signal,
 * and each re-registers with a write). */
static void session_check_moved(struct session *s, int64_t now, int64_t *retry_at) {
    if (reg_moved(&s->reg))
        *retry_at = now + s->reg.pid % WHOCONN_REREGISTER_SPREAD_MS;
}


/* keepalive_on FD - TCP keepalive with whoconn's timings (whoconn.h,
 * WHOCONN_KEEPALIVE_*), so that a connection whose peer vanished stops
 * being counted.  Set here rather than only in the socket unit: every
 * activator (systemd-socket-activate, inetd) gets it.  Called once a
 * connection has been quiet for WHOCONN_HANDLE_IDLE_MS, not at its start:
 * a short session, the common case, never pays its five system calls, and
 * a peer that vanishes leaves its connection quiet.  Fails harmlessly, and
 * then stops, where FD is not a TCP socket (a pipe, a terminal, a unix
 * socket). */
static void keepalive_on(int fd) {
    static const int on = 1, idle = WHOCONN_KEEPALIVE_IDLE_S, interval = WHOCONN_KEEPALIVE_INTERVAL_S,
                     probes = WHOCONN_KEEPALIVE_PROBES, unacked = WHOCONN_UNACKED_MAX_MS;

    if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) < 0)
        return;
    if (setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle) < 0)
        return;
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
    setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &unacked, sizeof unacked);
}

static void session_run(struct session *s) {
    char buf[WHOCONN_READ_BUF];
    int64_t idle_ms = (int64_t)s->cfg->idle_timeout * 1000;
    int64_t now = now_ms(CLOCK_MONOTONIC);
    int64_t idle_at = now + idle_ms, quiet_at = now + WHOCONN_HANDLE_IDLE_MS;
    /* The next registration attempt while no request is waiting.  Due at
     * once: a connection is counted from the start, as systemd counts it,
     * whether or not it ever sends anything.  When its first request is
     * already waiting (the common case), the first ppoll() returns it and
     * the registration before that batch is the only one. */
    int64_t retry_at = now;
    /* A PROXY header comes first, at once: a balancer sends it as it
     * connects.  Its deadline is at most the idle timeout. */
    int64_t header_at =
        now + (WHOCONN_PROXY_HEADER_TIMEOUT_MS < idle_ms ? WHOCONN_PROXY_HEADER_TIMEOUT_MS : idle_ms);
    struct timeval tv = {.tv_sec = s->cfg->idle_timeout};
    sigset_t unblocked;
    int err = 0;
    bool probing = false; /* keepalive_on() done */

    /* Fails harmlessly with ENOTSOCK when fd 1 is a pipe or a terminal. */
    setsockopt(STDOUT_FILENO, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sigprocmask(SIG_SETMASK, NULL, &unblocked);
    sigdelset(&unblocked, SIGTERM);
    sigdelset(&unblocked, SIGINT);
    sigdelset(&unblocked, SIGHUP);
    sigdelset(&unblocked, SIGIO);

    while (s->end == END_NONE) {
        now = now_ms(CLOCK_MONOTONIC);
        if (got_dir_change) {
            got_dir_change = 0;
            session_check_moved(s, now, &retry_at);
        }
        int64_t wake = idle_at;
        if (s->proxy_pending && header_at < wake)
            wake = header_at;
        if (!s->reg.registered && retry_at < wake)
            wake = retry_at;
        if (s->reg.db && quiet_at < wake)
            wake = quiet_at;
        struct timespec ts = {.tv_sec = (wake - now) / 1000, .tv_nsec = (wake - now) % 1000 * 1000000};
        if (wake < now)
            ts.tv_sec = ts.tv_nsec = 0;
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        int r = ppoll(&p, 1, &ts, &unblocked);
        if (got_signal) {
            s->end = END_SIGNAL;
            break;
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            s->end = END_RESET;
            break;
        }
        now = now_ms(CLOCK_MONOTONIC);
        if (r == 0) {
            if (s->proxy_pending && now >= header_at) {
                err = session_header_timeout(s);
                if (err == 0)
                    err = session_flush(s);
                if (err < 0)
                    s->end = err == -ETIMEDOUT ? END_WRITE_TIMEOUT : END_RESET;
                break;
            }
            if (now >= idle_at) {
                s->end = END_IDLE;
                break;
            }
            if (!probing && now >= quiet_at) {
                keepalive_on(STDIN_FILENO);
                probing = true;
            }
            if (s->reg.db && now >= quiet_at) {
                reg_idle(&s->reg);
                if (sqlmem_release)
                    sqlmem_release();
                session_check_moved(s, now, &retry_at);
            }
            if (now >= retry_at)
                session_register(s, now, &retry_at);
            continue;
        }
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            s->end = END_RESET;
            break;
        }
        /* Registered before the first reply, so any WHO that begins after
         * this connection was served counts it.  One that could not
         * register (registry failing, or replaced under it) tries again
         * before it answers anything more. */
        if (n > 0 || s->in_len > 0)
            session_register(s, now, &retry_at);
        unsigned long lines = s->lines;
        err = session_input(s, buf, (size_t)n, n == 0);
        if (err == 0)
            err = session_flush(s);
        if (err < 0) {
            s->end = err == -ETIMEDOUT ? END_WRITE_TIMEOUT : END_RESET;
            break;
        }
        if (n == 0) {
            if (s->end == END_NONE)
                s->end = END_CLOSED;
            break;
        }
        if (s->lines != lines)
            idle_at = now_ms(CLOCK_MONOTONIC) + idle_ms;
        if (s->sweep_pending) {
            s->sweep_pending = false;
            int e = reg_sweep(&s->reg);
            if (e < 0)
                reg_fail(&s->reg, e, "sweep");
        }
        quiet_at = now_ms(CLOCK_MONOTONIC) + WHOCONN_HANDLE_IDLE_MS;
    }
    if (s->end == END_QUIT || s->end == END_LINE_TOO_LONG || s->end == END_BAD_BYTE ||
        s->end == END_PROXY_HEADER)
        drain_input();
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: whoconn [--db PATH] [--idle-timeout SECONDS] [--server-id UUID]\n"
            "               [--proxy-protocol off | v2]\n"
            "       whoconn --help | --version\n"
            "\n"
            "Serves one WHO/WHERE/WHY session on stdin/stdout (inetd style).\n"
            "\n"
            CLI_USAGE_DB
            "  --idle-timeout SECONDS    drop a client silent this long (WHOCONN_IDLE_TIMEOUT)\n"
            "                            default: %d, range %d-%d\n"
            "  --server-id UUID          answer WHERE with this id (WHOCONN_SERVER_ID)\n"
            "                            default: derived from /etc/machine-id\n"
            "  --proxy-protocol off | v2 v2: read the PROXY v2 header a trusted balancer\n"
            "                            sends first (WHOCONN_PROXY_PROTOCOL)\n"
            "                            default: off\n"
            CLI_USAGE_END,
            WHOCONN_IDLE_TIMEOUT_DEFAULT, WHOCONN_IDLE_TIMEOUT_MIN, WHOCONN_IDLE_TIMEOUT_MAX);
}

/* Reads the environment, then the command line over it.  Returns 0, 1 for
 * --help/--version done, or -EINVAL after printing the error. */
static int config_load(struct config *cfg, int argc, char **argv, char *dbbuf, size_t dbsize) {
    enum { DB, IDLE, SID, PROXY, NSETTINGS };
    struct cli_setting set[NSETTINGS] = {
        [DB] = {"--db", "WHOCONN_DB", NULL, NULL},
        [IDLE] = {"--idle-timeout", "WHOCONN_IDLE_TIMEOUT", NULL, NULL},
        [SID] = {"--server-id", "WHOCONN_SERVER_ID", NULL, NULL},
        [PROXY] = {"--proxy-protocol", "WHOCONN_PROXY_PROTOCOL", NULL, NULL},
    };

    memset(cfg, 0, sizeof *cfg);
    cfg->idle_timeout = WHOCONN_IDLE_TIMEOUT_DEFAULT;
    int r = cli_parse("whoconn", argc, argv, set, NSETTINGS, usage, "SQLite " SQLITE_VERSION);
    if (r != 0)
        return r;
    if (cli_seconds("whoconn", set[IDLE].from, set[IDLE].value, WHOCONN_IDLE_TIMEOUT_MIN,
                    WHOCONN_IDLE_TIMEOUT_MAX, &cfg->idle_timeout) < 0)
        return -EINVAL;
    if (set[SID].value && server_id_parse(set[SID].value, cfg->server_id) < 0) {
        fprintf(stderr,
                "whoconn: %s: \"%s\" is not a UUID (like 6b2f0ed4-5a91-4c37-a81d-93c47e05b26f)\n",
                set[SID].from, set[SID].value);
        return -EINVAL;
    }
    if (set[PROXY].value && strcmp(set[PROXY].value, "off") != 0 &&
        strcmp(set[PROXY].value, "v2") != 0) {
        fprintf(stderr, "whoconn: %s: \"%s\" is neither off nor v2\n", set[PROXY].from,
                set[PROXY].value);
        return -EINVAL;
    }
    cfg->proxy_v2 = set[PROXY].value && strcmp(set[PROXY].value, "v2") == 0;
    return cli_db("whoconn", set[DB].value, dbbuf, dbsize, &cfg->db);
}

int main(int argc, char **argv) {
    static struct session s;
    struct config cfg;
    char dbbuf[4096];
    struct peer peer;
    struct sigaction sa = {.sa_handler = on_signal};
    sigset_t block;
    int r;

    std_fds_guard();
    log_setup("whoconn");
    if (sqlmem_install)
        sqlmem_install(); /* before the first SQLite call */
    r = config_load(&cfg, argc, argv, dbbuf, sizeof dbbuf);
    if (r != 0)
        return r > 0 ? WHOCONN_EXIT_OK : WHOCONN_EXIT_USAGE;

    umask(077); /* the registry is the service user's alone */
    signal(SIGPIPE, SIG_IGN); /* a vanished peer is an EPIPE, not a death */
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGIO);
    sigprocmask(SIG_BLOCK, &block, NULL); /* delivered only inside ppoll() */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = on_dir_change; /* dnotify, see reg_watch() */
    sigaction(SIGIO, &sa, NULL);

    int64_t t0 = now_us(CLOCK_MONOTONIC);
    peer_get(&peer); /* now: a reset peer has no name later */
    r = confine(cfg.db);
    if (r < 0) {
        log_msg(LOG_ERR, "peer=%s cannot confine the process: %s", peer.name, strerror(-r));
        return WHOCONN_EXIT_SOFTWARE;
    }
    struct whoconn_metrics *m = counters_map(cfg.db);
    if (m)
        counters_add(&m->accepted, 1);
    session_init(&s, &cfg, STDOUT_FILENO);
    session_run(&s);
    session_free(&s);
    close(STDIN_FILENO); /* the client sees the end now, not after logging */
    close(STDOUT_FILENO);
    int64_t duration_us = now_us(CLOCK_MONOTONIC) - t0;
    if (m)
        counters_session(m, s.by_cmd, s.by_err, s.end, s.reg.failures, duration_us);

    log_session(&peer, &s, duration_us / 1000);
    return session_exit_status(s.end);
}
