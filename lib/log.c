/*
 * log.c - one log line per message on stderr, and the connection's
 * structured journal entry (contract in log.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include "../whoconn.h"
#include "log.h"

static const char *log_ident = "whoconn";
static char log_prefix[LOG_PREFIX_MAX + 2]; /* with its trailing space */

/* stderr is the journal: $JOURNAL_STREAM names fd 2's device and inode. */
static bool stderr_journal;

/* inetd and xinetd hand the connection to fd 2 as well: then anything we
 * log would reach the client, so stderr goes to /dev/null instead.  Under
 * systemd, fd 2 is the journal if $JOURNAL_STREAM says so (its dev:ino). */
void log_setup(const char *ident) {
    struct stat in, err;
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;

    log_ident = ident;
    if (fstat(STDERR_FILENO, &err) < 0)
        return;
    if (S_ISSOCK(err.st_mode) && fstat(STDIN_FILENO, &in) == 0 && in.st_dev == err.st_dev &&
        in.st_ino == err.st_ino) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        return;
    }
    if (!js)
        return;
    char *end;
    errno = 0;
    dev = strtoull(js, &end, 10);
    if (errno || *end != ':')
        return;
    ino = strtoull(end + 1, &end, 10);
    stderr_journal = !errno && !*end && dev == (unsigned long long)err.st_dev &&
                     ino == (unsigned long long)err.st_ino;
}

bool log_to_journal(void) {
    return stderr_journal;
}

static void log_vmsg(int prio, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
void log_set_prefix(const char *prefix) {
    log_prefix[0] = '\0';
    if (prefix && *prefix)
        snprintf(log_prefix, sizeof log_prefix, "%.*s ", LOG_PREFIX_MAX, prefix);
}

static void log_vmsg(int prio, const char *fmt, va_list ap) {
    char line[768];
    int n = stderr_journal ? snprintf(line, sizeof line, "<%d>%s", prio, log_prefix)
                           : snprintf(line, sizeof line, "%s[%ld]: %s", log_ident, (long)getpid(),
                                      log_prefix);
    /* ap was started by the caller, log_msg() */
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap); // NOLINT(clang-analyzer-valist.Uninitialized)

    if (m < 0)
        return;
    n += m;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w; /* nowhere left to report a failing log */
}

void log_msg(int prio, const char *fmt, ...) {
    va_list ap;

    va_start(ap, fmt);
    log_vmsg(prio, fmt, ap);
    va_end(ap);
}

/* Sends one structured entry over journald's native protocol: a datagram
 * of KEY=value lines (systemd's JOURNAL_NATIVE_PROTOCOL.md; values here
 * never hold a newline).  Done by hand because sd_journal_send() means
 * dlopen()ing libsystemd, measured at ~600 us and 0.9 M instructions: more
 * than the rest of a session. */
int journal_send(char *const *fields, size_t n) {
    static const struct sockaddr_un sa = {.sun_family = AF_UNIX,
                                          .sun_path = "/run/systemd/journal/socket"};
    struct iovec iov[2 * WHOCONN_JOURNAL_FIELDS];
    struct msghdr mh = {.msg_name = (void *)&sa, .msg_namelen = sizeof sa, .msg_iov = iov};

    if (n > WHOCONN_JOURNAL_FIELDS)
        return -E2BIG;
    for (size_t i = 0; i < n; i++) {
        iov[2 * i] = (struct iovec){.iov_base = fields[i], .iov_len = strlen(fields[i])};
        iov[2 * i + 1] = (struct iovec){.iov_base = (char *)"\n", .iov_len = 1};
    }
    mh.msg_iovlen = 2 * n;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int r = sendmsg(fd, &mh, MSG_NOSIGNAL) < 0 ? -errno : 0;
    close(fd);
    return r;
}

/* Peer text is shown printable and short: \xNN for anything else. */
void log_sanitize(char *dst, size_t dstsize, const char *src, size_t len) {
    size_t o = 0;

    for (size_t i = 0; i < len && i < WHOCONN_LOG_PEER_TEXT && o + 5 < dstsize; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            dst[o++] = (char)c;
        else
            o += (size_t)snprintf(dst + o, dstsize - o, "\\x%02x", c);
    }
    if (len > WHOCONN_LOG_PEER_TEXT && o + 4 < dstsize) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}
