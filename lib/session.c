/*
 * session.c - the protocol engine of one connection (contract in
 * session.h): request lines in, one reply line each out, through one
 * command table.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../whoconn.h"
#include "log.h"
#include "peer.h"
#include "proxy.h"
#include "serverid.h"
#include "session.h"

/* The exit status of a session that ended so (whoconn(8), EXIT STATUS). */
static const int end_status[END__MAX] = {
    [END_NONE] = WHOCONN_EXIT_OK,
    [END_CLOSED] = WHOCONN_EXIT_OK,
    [END_QUIT] = WHOCONN_EXIT_OK,
    [END_IDLE] = WHOCONN_EXIT_TIMEOUT,
    [END_WRITE_TIMEOUT] = WHOCONN_EXIT_TIMEOUT,
    [END_LINE_TOO_LONG] = WHOCONN_EXIT_PROTOCOL,
    [END_BAD_BYTE] = WHOCONN_EXIT_PROTOCOL,
    [END_RESET] = WHOCONN_EXIT_IO,
    [END_SIGNAL] = WHOCONN_EXIT_SIGNAL,
    [END_PROXY_HEADER] = WHOCONN_EXIT_PROTOCOL,
};

int session_exit_status(enum whoconn_end end) {
    return end_status[end];
}

/* Each command writes one reply line, without LF, into reply[size]. */
typedef void command_fn(struct session *s, char *reply, size_t size);

static command_fn cmd_who, cmd_where, cmd_why, cmd_help, cmd_quit;

static const struct command {
    const char *name;
    command_fn *run;
    enum whoconn_cmd metric;
} commands[] = {
    {"WHO", cmd_who, CMD_WHO},
    {"WHERE", cmd_where, CMD_WHERE},
    {"WHY", cmd_why, CMD_WHY},
    {"HELP", cmd_help, CMD_HELP},
    {"QUIT", cmd_quit, CMD_QUIT},
};

/* Counts an ERR reply, for the log line and the metrics. */
static void session_error(struct session *s, enum whoconn_err kind) {
    s->errors++;
    s->by_err[kind]++;
}

static void cmd_who(struct session *s, char *reply, size_t size) {
    long long n = 0;
    bool later = false;
    int err = reg_count(&s->reg, &n, &later);

    if (err < 0) {
        session_error(s, ERRK_REGISTRY);
        snprintf(reply, size, "ERR registry unavailable: %s", reg_strerror(err));
        return;
    }
    s->sweep_pending = later;
    snprintf(reply, size, "%lld", n);
}

static void cmd_where(struct session *s, char *reply, size_t size) {
    if (!s->where[0]) {
        int err = server_id_derive(s->where);
        if (err < 0) {
            s->where[0] = '\0';
            session_error(s, ERRK_SERVER_ID);
            log_msg(LOG_ERR, "cannot derive server id from the machine id: %s",
                    strerror(-err));
            snprintf(reply, size, "ERR server id unavailable");
            return;
        }
    }
    snprintf(reply, size, "%s", s->where);
}

static void cmd_why(struct session *s, char *reply, size_t size) {
    (void)s;
    snprintf(reply, size, "42");
}

static void cmd_help(struct session *s, char *reply, size_t size) {
    (void)s;
    snprintf(reply, size, "WHO WHERE WHY HELP QUIT");
}

static void cmd_quit(struct session *s, char *reply, size_t size) {
    s->end = END_QUIT;
    snprintf(reply, size, "BYE");
}

/* ---- session --------------------------------------------------------- */

/* Writes out every gathered reply.  fd 1 carries SO_SNDTIMEO, so a peer
 * that never reads makes this fail after the idle timeout instead of
 * blocking forever. */
int session_flush(struct session *s) {
    size_t off = 0;

    while (off < s->out_len) {
        ssize_t n = write(s->out_fd, s->out + off, s->out_len - off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            s->out_len = 0;
            return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
        }
        off += (size_t)n;
    }
    s->out_len = 0;
    return 0;
}

static int session_reply(struct session *s, const char *line) {
    size_t len = strlen(line);

    if (s->out_len + len + 1 > sizeof s->out) {
        int err = session_flush(s);
        if (err < 0)
            return err;
    }
    memcpy(s->out + s->out_len, line, len);
    s->out_len += len;
    s->out[s->out_len++] = '\n';
    return 0;
}

static bool is_blank(char c) {
    return c == ' ' || c == '\t';
}

/* Handles one request line (LF removed).  Returns 0 or a negative errno
 * from writing the reply. */
static int session_line(struct session *s, char *line, size_t len) {
    char reply[WHOCONN_REPLY_MAX];
    const struct command *cmd = NULL;

    s->lines++;
    if (len > 0 && line[len - 1] == '\r')
        len--;
    while (len > 0 && is_blank(line[len - 1]))
        len--;
    while (len > 0 && is_blank(*line)) {
        line++;
        len--;
    }
    if (len == 0)
        return 0; /* blank lines get no reply */
    s->commands++;

    size_t word = 0;
    while (word < len && !is_blank(line[word]))
        word++;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strlen(commands[i].name) == word && strncasecmp(commands[i].name, line, word) == 0) {
            cmd = &commands[i];
            break;
        }
    s->by_cmd[cmd ? cmd->metric : CMD_UNKNOWN]++;
    if (!cmd) {
        session_error(s, ERRK_UNKNOWN_COMMAND);
        snprintf(reply, sizeof reply, "ERR unknown command");
    } else if (word < len) {
        session_error(s, ERRK_ARGUMENTS);
        snprintf(reply, sizeof reply, "ERR %s takes no arguments", cmd->name);
    } else
        cmd->run(s, reply, sizeof reply);
    return session_reply(s, reply);
}

static bool byte_allowed(unsigned char c) {
    return (c >= 0x20 && c <= 0x7e) || c == '\t' || c == '\r' || c == '\n';
}

/* Ends the session on a protocol violation: one ERR line, then close. */
static int session_violation(struct session *s, enum whoconn_end why, const char *reply,
                             const char *text, size_t len) {
    char clean[WHOCONN_LOG_PEER_TEXT * 4 + 8];

    session_error(s, why == END_BAD_BYTE ? ERRK_INVALID_BYTE : ERRK_LINE_TOO_LONG);
    s->end = why;
    log_sanitize(clean, sizeof clean, text, len);
    log_msg(LOG_WARNING, "closing: %s after \"%s\"", whoconn_end_names[why], clean);
    return session_reply(s, reply);
}

/* Refuses the PROXY header: one ERR line, then close.  The log shows why,
 * and the bytes received (the header is binary: \xNN). */
static int session_bad_header(struct session *s, const char *why) {
    char clean[WHOCONN_LOG_PEER_TEXT * 4 + 8];

    session_error(s, ERRK_PROXY_HEADER);
    s->end = END_PROXY_HEADER;
    s->proxy_pending = false;
    log_sanitize(clean, sizeof clean, s->in, s->in_len);
    log_msg(LOG_WARNING, "closing: invalid PROXY v2 header (%s): \"%s\"", why, clean);
    return session_reply(s, "ERR invalid PROXY v2 header");
}

int session_header_timeout(struct session *s) {
    return session_bad_header(s, "incomplete when its time was up");
}

/* Takes the PROXY header off the buffered input once it is complete; the
 * requests after it stay.  Refuses it on the first byte that shows it
 * wrong, or at EOF in its middle. */
static int session_header(struct session *s, bool eof) {
    const char *why = "";
    long len = proxy_v2_length((const unsigned char *)s->in, s->in_len, &why);

    if (len < 0)
        return session_bad_header(s, why);
    if (len == 0 || (size_t)len > s->in_len)
        return eof && s->in_len > 0 ? session_bad_header(s, "cut short by the end of input") : 0;
    if (proxy_v2_parse((const unsigned char *)s->in, (size_t)len, &s->proxy, &why) < 0)
        return session_bad_header(s, why);
    s->proxy_pending = false;
    s->proxied = true;
    memmove(s->in, s->in + len, s->in_len - (size_t)len);
    s->in_len -= (size_t)len;
    s->scanned = 0;
    if (s->proxy.kind == PROXY_V2_CLIENT) {
        char prefix[sizeof s->client.name + 8];
        peer_name(&s->client, &s->proxy.src);
        snprintf(prefix, sizeof prefix, "peer=%s", s->client.name);
        log_set_prefix(prefix);
    }
    return 0;
}

/* Processes the buffered input: answers each complete line, stops at the
 * first violation.  With eof, a final unterminated line is a request too. */
static int session_process(struct session *s, bool eof) {
    size_t start = 0;
    int err = 0;

    if (s->proxy_pending) {
        err = session_header(s, eof);
        if (err < 0 || s->proxy_pending || s->end != END_NONE)
            return err;
    }

    for (size_t i = s->scanned; i < s->in_len && s->end == END_NONE; i++) {
        unsigned char c = (unsigned char)s->in[i];
        if (c == '\n') {
            if (i - start > WHOCONN_LINE_MAX + 1 ||
                (i - start == WHOCONN_LINE_MAX + 1 && s->in[i - 1] != '\r'))
                return session_violation(s, END_LINE_TOO_LONG, "ERR line too long",
                                         s->in + start, i - start);
            err = session_line(s, s->in + start, i - start);
            if (err < 0)
                return err;
            start = i + 1;
        } else if (!byte_allowed(c)) {
            return session_violation(s, END_BAD_BYTE, "ERR invalid byte", s->in + start,
                                     i - start + 1);
        } else if (i - start + 1 > WHOCONN_LINE_MAX + 1) {
            return session_violation(s, END_LINE_TOO_LONG, "ERR line too long",
                                     s->in + start, i - start + 1);
        }
    }
    if (s->end != END_NONE)
        return 0;
    memmove(s->in, s->in + start, s->in_len - start);
    s->in_len -= start;
    s->scanned = s->in_len;
    if (eof && s->in_len > 0) {
        if (s->in_len > WHOCONN_LINE_MAX + (s->in[s->in_len - 1] == '\r'))
            return session_violation(s, END_LINE_TOO_LONG, "ERR line too long", s->in,
                                     s->in_len);
        err = session_line(s, s->in, s->in_len);
        s->in_len = s->scanned = 0;
    }
    return err;
}

/* A whole header always fits in the input buffer, at its start. */
_Static_assert(PROXY_V2_HEADER_MAX <= WHOCONN_READ_BUF, "PROXY header larger than the input buffer");

/* Feeds peer bytes into the session.  Returns 0 or a negative errno from
 * writing replies; s->end tells whether the session is over. */
int session_input(struct session *s, const char *data, size_t n, bool eof) {
    int err = 0;

    do {
        size_t room = sizeof s->in - s->in_len, take = n < room ? n : room;
        memcpy(s->in + s->in_len, data, take);
        s->in_len += take;
        data += take;
        n -= take;
        err = session_process(s, eof && n == 0);
    } while (err == 0 && n > 0 && s->end == END_NONE);
    return err;
}

void session_init(struct session *s, const struct config *cfg, int out_fd) {
    memset(s, 0, sizeof *s);
    s->cfg = cfg;
    s->out_fd = out_fd;
    reg_setup(&s->reg, cfg->db, getpid());
    memcpy(s->where, cfg->server_id, sizeof s->where);
    s->proxy_pending = cfg->proxy_v2;
    log_set_prefix(NULL);
}

void session_free(struct session *s) {
    reg_free(&s->reg);
}
