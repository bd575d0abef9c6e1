/*
 * whoconn-metrics - answer one HTTP request for whoconn's Prometheus
 * metrics.
 *
 * Started like whoconn itself, one process per connection, by systemd's
 * Accept=yes socket activation (whoconn-metrics.socket, 127.0.0.1:9242):
 * fd 0 reads the HTTP request, fd 1 carries the answer, fd 2 is the
 * journal.  It answers `GET /metrics` (and HEAD) in the Prometheus text
 * exposition format, anything else with an HTTP error, and closes.
 *
 * It only reads: the counters file "<registry>-metrics" that every
 * connection process adds to, the registry's `conn` rows whose liveness
 * lock is held (the live connections), and the `peer` table of cluster
 * mode.  It never creates or writes any of them.
 *
 * Limits are in whoconn.h; the metrics are described in docs/metrics.md.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <syslog.h> /* priorities only: we log to stderr */
#include <time.h>
#include <unistd.h>

#include "whoconn.h"
#include "lib/cli.h"
#include "lib/counters.h"
#include "lib/drain.h"
#include "lib/http.h"
#include "lib/log.h"
#include "lib/registry.h"
#include "lib/util.h"

struct config {
    const char *db;
    unsigned timeout; /* seconds for the request head, and per write */
};

/* ---- reading the metrics --------------------------------------------- */

struct snapshot {
    struct whoconn_metrics c; /* zero when no connection was ever served */
    int counters_err;         /* 0, or why the counters file is unreadable */
    int registry_err;         /* 0, or why the registry is unreadable */
    struct reg_status reg;    /* connections and peers */
};

static const char *err_str(int err) {
    switch (err) {
    case -EBADMSG:
        return "file is corrupt";
    case -EMEDIUMTYPE:
        return "file belongs to another program";
    case -EBUSY:
        return "registry busy";
    default:
        return strerror(-err);
    }
}

/* ---- writing the metrics --------------------------------------------- */

static void help_type(FILE *f, const char *name, const char *type, const char *help) {
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void write_metrics(FILE *f, const struct snapshot *s) {
    static const int64_t bounds_ms[WHOCONN_DURATION_BUCKETS] = WHOCONN_DURATION_BOUNDS_MS;
    const struct whoconn_metrics *c = &s->c;

    help_type(f, "whoconn_build_info", "gauge", "Version of whoconn-metrics, always 1.");
    fprintf(f, "whoconn_build_info{version=\"%s\",sqlite_version=\"%s\"} 1\n", WHOCONN_VERSION,
            sqlite3_libversion());

    help_type(f, "whoconn_registry_up", "gauge",
              "1 if the registry and the counters file could be read, else 0.");
    fprintf(f, "whoconn_registry_up %d\n", !s->registry_err && !s->counters_err);

    if (!s->registry_err) {
        help_type(f, "whoconn_connections", "gauge",
                  "Connections registered now (a connection registers before its first reply).");
        fprintf(f, "whoconn_connections %lld\n", s->reg.connections);

        help_type(f, "whoconn_peers", "gauge", "Cluster peers in the registry, by state.");
        fprintf(f, "whoconn_peers{state=\"alive\"} %lld\n", s->reg.peers_alive);
        fprintf(f, "whoconn_peers{state=\"expired\"} %lld\n", s->reg.peers_expired);
        if (s->reg.npeers) {
            help_type(f, "whoconn_peer_connections", "gauge",
                      "Connections a cluster peer last reported.");
            for (size_t i = 0; i < s->reg.npeers; i++)
                fprintf(f, "whoconn_peer_connections{peer=\"%s\"} %lld\n", s->reg.peers[i].id,
                        s->reg.peers[i].count);
            help_type(f, "whoconn_peer_expiry_seconds", "gauge",
                      "Seconds until a peer's count expires; negative once expired.");
            for (size_t i = 0; i < s->reg.npeers; i++)
                fprintf(f, "whoconn_peer_expiry_seconds{peer=\"%s\"} %.3f\n", s->reg.peers[i].id,
                        (double)(s->reg.peers[i].expires_ms - s->reg.now_ms) / 1000);
        }
        bool any_updated = false;
        for (size_t i = 0; i < s->reg.npeers; i++)
            any_updated |= s->reg.peers[i].has_updated;
        if (any_updated) {
            help_type(f, "whoconn_peer_count_age_seconds", "gauge",
                      "Seconds since a peer's count was last updated.");
            for (size_t i = 0; i < s->reg.npeers; i++)
                if (s->reg.peers[i].has_updated)
                    fprintf(f, "whoconn_peer_count_age_seconds{peer=\"%s\"} %.3f\n",
                            s->reg.peers[i].id, (double)(s->reg.now_ms - s->reg.peers[i].updated_ms) / 1000);
        }
    }
    if (s->counters_err)
        return; /* absent rather than zero: zero would look like a reset */

    help_type(f, "whoconn_connections_accepted_total", "counter",
              "Connections accepted since boot.");
    fprintf(f, "whoconn_connections_accepted_total %" PRIu64 "\n", c->accepted);

    help_type(f, "whoconn_commands_total", "counter",
              "Requests by command, counted when their connection ends.");
    for (int i = 0; i < CMD__MAX; i++)
        fprintf(f, "whoconn_commands_total{command=\"%s\"} %" PRIu64 "\n", whoconn_cmd_names[i],
                c->commands[i]);

    help_type(f, "whoconn_errors_total", "counter",
              "ERR replies by reason, counted when their connection ends.");
    for (int i = 0; i < ERRK__MAX; i++)
        fprintf(f, "whoconn_errors_total{reason=\"%s\"} %" PRIu64 "\n", whoconn_err_names[i],
                counters_err_value(c, (enum whoconn_err)i));

    help_type(f, "whoconn_disconnects_total", "counter", "Finished connections by why they ended.");
    for (int i = 0; i < END__MAX; i++)
        if (i != END_NONE) /* every finished session has a reason */
            fprintf(f, "whoconn_disconnects_total{reason=\"%s\"} %" PRIu64 "\n",
                    whoconn_end_names[i], counters_end_value(c, (enum whoconn_end)i));

    help_type(f, "whoconn_registry_errors_total", "counter",
              "Failed registry operations in connection processes.");
    fprintf(f, "whoconn_registry_errors_total %" PRIu64 "\n", c->registry_errors);

    help_type(f, "whoconn_connection_duration_seconds", "histogram",
              "How long finished connections lasted.");
    uint64_t cum = 0;
    for (int i = 0; i <= WHOCONN_DURATION_BUCKETS; i++) {
        cum += c->duration_bucket[i];
        if (i < WHOCONN_DURATION_BUCKETS)
            fprintf(f, "whoconn_connection_duration_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                    (double)bounds_ms[i] / 1000, cum);
        else
            fprintf(f, "whoconn_connection_duration_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n", cum);
    }
    fprintf(f, "whoconn_connection_duration_seconds_sum %.6f\n", (double)c->duration_sum_us / 1e6);
    fprintf(f, "whoconn_connection_duration_seconds_count %" PRIu64 "\n", cum);
}

/* ---- answering -------------------------------------------------------- */

static int write_all(const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Sends status, the header fields and (unless head_only) the body. */
static int respond(enum status st, const char *type, const char *body, size_t len, bool head_only) {
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %zu\r\n"
                     "%s"
                     "Cache-Control: no-store\r\n"
                     "Connection: close\r\n"
                     "\r\n",
                     status_info[st].code, status_info[st].reason, type, len,
                     st == ST_METHOD_NOT_ALLOWED ? "Allow: GET, HEAD\r\n" : "");
    int err = write_all(head, (size_t)n);

    if (err == 0 && !head_only)
        err = write_all(body, len);
    return err;
}

static int respond_error(enum status st, bool head_only) {
    char body[128];
    int n = snprintf(body, sizeof body, "%d %s\n", status_info[st].code, status_info[st].reason);

    return respond(st, "text/plain; charset=utf-8", body, (size_t)n, head_only);
}

/* ---- configuration ---------------------------------------------------- */

static void usage(FILE *f) {
    fprintf(f,
            "usage: whoconn-metrics [--db PATH] [--request-timeout SECONDS]\n"
            "       whoconn-metrics --help | --version\n"
            "\n"
            "Answers one HTTP request for GET /metrics on stdin/stdout (inetd style)\n"
            "with whoconn's metrics in the Prometheus text format.\n"
            "\n"
            CLI_USAGE_DB
            "  --request-timeout SECONDS time for the request to arrive (WHOCONN_METRICS_TIMEOUT)\n"
            "                            default: %d, range %d-%d\n"
            CLI_USAGE_END,
            WHOCONN_METRICS_TIMEOUT_DEFAULT, WHOCONN_METRICS_TIMEOUT_MIN,
            WHOCONN_METRICS_TIMEOUT_MAX);
}

/* Environment first, then the command line; the registry default is
 * whoconn's own.  Returns 0, 1 for --help/--version done, or -EINVAL. */
static int config_load(struct config *cfg, int argc, char **argv, char *dbbuf, size_t dbsize) {
    enum { DB, TIMEOUT, NSETTINGS };
    struct cli_setting set[NSETTINGS] = {
        [DB] = {"--db", "WHOCONN_DB", NULL, NULL},
        [TIMEOUT] = {"--request-timeout", "WHOCONN_METRICS_TIMEOUT", NULL, NULL},
    };

    cfg->db = NULL;
    cfg->timeout = WHOCONN_METRICS_TIMEOUT_DEFAULT;
    int r = cli_parse("whoconn-metrics", argc, argv, set, NSETTINGS, usage, "SQLite " SQLITE_VERSION);
    if (r != 0)
        return r;
    if (cli_seconds("whoconn-metrics", set[TIMEOUT].from, set[TIMEOUT].value,
                    WHOCONN_METRICS_TIMEOUT_MIN, WHOCONN_METRICS_TIMEOUT_MAX, &cfg->timeout) < 0)
        return -EINVAL;
    return cli_db("whoconn-metrics", set[DB].value, dbbuf, dbsize, &cfg->db);
}

/* Collects the metrics into a body.  Returns 0 or -ENOMEM. */
static int metrics_body(const struct config *cfg, char **body, size_t *len) {
    static struct snapshot s; /* large (the peers): not on the stack */
    FILE *f;

    memset(&s, 0, sizeof s);
    s.reg.now_ms = now_ms(CLOCK_BOOTTIME);
    s.counters_err = counters_read(cfg->db, &s.c);
    if (s.counters_err < 0)
        log_msg(LOG_ERR, "counters %s" WHOCONN_METRICS_SUFFIX ": %s", cfg->db,
                err_str(s.counters_err));
    s.registry_err = reg_read_status(cfg->db, &s.reg);
    if (s.registry_err < 0)
        log_msg(LOG_ERR, "registry %s: %s: %s", s.reg.what, cfg->db, err_str(s.registry_err));

    f = open_memstream(body, len);
    if (!f)
        return -ENOMEM;
    write_metrics(f, &s);
    if (fclose(f) != 0) {
        free(*body);
        *body = NULL;
        return -ENOMEM;
    }
    return 0;
}

#ifndef WHOCONN_METRICS_NO_MAIN /* fuzz/fuzz_metrics_http.c has its own */

int main(int argc, char **argv) {
    static struct request rq;
    struct config cfg;
    char dbbuf[4096];
    enum status st;
    char *body = NULL;
    size_t len = 0;
    int r;

    log_setup("whoconn-metrics");
    r = config_load(&cfg, argc, argv, dbbuf, sizeof dbbuf);
    if (r != 0)
        return r > 0 ? WHOCONN_EXIT_OK : WHOCONN_EXIT_USAGE;
    signal(SIGPIPE, SIG_IGN); /* a vanished peer is an EPIPE, not a death */

    /* Fails harmlessly with ENOTSOCK when fd 1 is a pipe or a terminal. */
    struct timeval tv = {.tv_sec = cfg.timeout};
    setsockopt(STDOUT_FILENO, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);

    r = read_head(&rq, now_ms(CLOCK_MONOTONIC) + (int64_t)cfg.timeout * 1000);
    if (r == -EPIPE && rq.len == 0)
        return WHOCONN_EXIT_OK; /* connected and closed: a port probe */
    if (r == -ETIMEDOUT) {
        st = ST_REQUEST_TIMEOUT;
        rq.why = "request not complete in time";
    } else if (r == -EMSGSIZE) {
        st = ST_FIELDS_TOO_LARGE;
        rq.why = "request head too long";
    } else if (r == -EPIPE) {
        st = ST_BAD_REQUEST;
        rq.why = "connection closed inside the request head";
    } else if (r < 0) {
        log_msg(LOG_INFO, "reading the request: %s", strerror(-r));
        return WHOCONN_EXIT_IO;
    } else
        st = parse_request(&rq);

    if (st == ST_OK && metrics_body(&cfg, &body, &len) < 0) {
        st = ST_INTERNAL_ERROR;
        rq.why = "out of memory";
    }
    if (st == ST_OK)
        r = respond(st, CONTENT_TYPE, body, len, rq.head_only);
    else {
        log_msg(LOG_NOTICE, "answered %d: %s", status_info[st].code, rq.why);
        r = respond_error(st, rq.head_only);
    }
    free(body);
    if (r < 0) {
        log_msg(LOG_INFO, "writing the answer: %s", strerror(-r));
        return r == -ETIMEDOUT ? WHOCONN_EXIT_TIMEOUT : WHOCONN_EXIT_IO;
    }
    drain_input();
    return status_info[st].exit_status;
}

#endif /* WHOCONN_METRICS_NO_MAIN */
