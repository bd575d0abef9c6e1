/*
 * wcload - loopback load generator for the whoconn benchmarks (bench/).
 *
 *   wcload rate -p PORT [-c CLIENTS] [-n MAXCONN] [-t SECONDS] [-m LINE]
 *       CLIENTS threads each run connect -> LINE -> one reply line -> close
 *       in a loop, until MAXCONN sessions are done or SECONDS have passed,
 *       whichever comes first.  Prints one line of key=value results:
 *       sessions, errors, conn/s and latency percentiles (connect to reply).
 *
 *   wcload hold -p PORT -n N [-t SECONDS] [-k SAMPLES] [-r READYFILE] [-W]
 *       Opens N connections and keeps them open; each is proven served by
 *       one probe line answered.  With -W (whoconn only) it then checks that
 *       WHO is exact (N on a held connection, N+1 on a fresh one).  It times
 *       SAMPLES WHO requests on held connections and SAMPLES fresh
 *       connect-WHO-close sessions (with -W, each answer must be exact).  Then it creates READYFILE and holds
 *       until SECONDS have passed or SIGTERM.
 *
 *   wcload spawn [-n COUNT] [-m LINE] -- PROGRAM [ARG...]
 *       Runs PROGRAM COUNT times over a socketpair, no launcher, and reports
 *       the CPU time each run cost (the per-connection cost, less noisy than
 *       a rate on a shared machine).
 *
 * Every run is bounded in count and time and talks to 127.0.0.1 only.
 * Results go to stdout, diagnostics to stderr; the exit status is 0 only
 * if every session got a well-formed reply (and, with -W, WHO was exact).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Bounds on what one run may ask for, so a typo cannot hog the machine. */
#define WCLOAD_CLIENTS_MAX 256
#define WCLOAD_SESSIONS_MAX 2000000
#define WCLOAD_SECONDS_MAX 600
#define WCLOAD_HOLD_MAX 30000
#define WCLOAD_SAMPLES_MAX 100000
/* A reply line longer than this is malformed for every program we test. */
#define WCLOAD_REPLY_MAX 128
/* A session that gets no reply in this long counts as an error. */
#define WCLOAD_IO_TIMEOUT_MS 5000
/* Connections opened at once while building up held connections: keeps the
 * accept queue short and the launcher's fork rate steady. */
#define WCLOAD_HOLD_INFLIGHT 32

static struct sockaddr_in target;
static char request[WCLOAD_REPLY_MAX + 2];
static size_t request_len;
static volatile sig_atomic_t stop_signal;

static int64_t now_us(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int parse_num(const char *s, long min, long max, long *ret) {
    char *end;

    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -ERANGE;
    *ret = v;
    return 0;
}

/* A reply is well-formed when it is one line of digits: WHO and WHY answer
 * numbers, trivial answers 0, and an ERR line is a failed session. */
static bool reply_ok(const char *buf, size_t len) {
    if (len < 2 || buf[len - 1] != '\n')
        return false;
    for (size_t i = 0; i + 1 < len; i++)
        if (buf[i] < '0' || buf[i] > '9')
            return false;
    return true;
}

/* Reads one reply line from fd into buf (NUL-terminated, LF kept).
 * Returns its length, or a negative errno (-EPROTO on EOF or overlong). */
static ssize_t read_line(int fd, char *buf, size_t size, int timeout_ms) {
    size_t len = 0;
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;

    while (len + 1 < size) {
        int left = (int)((deadline - now_us()) / 1000);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0)
            return -ETIMEDOUT;
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -ETIMEDOUT;
        ssize_t n = read(fd, buf + len, size - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EPROTO;
        len += (size_t)n;
        if (buf[len - 1] == '\n')
            break;
    }
    buf[len] = '\0';
    return buf[len - 1] == '\n' ? (ssize_t)len : -EPROTO;
}

static int write_all(int fd, const char *buf, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

static int connect_target(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0)
        return -errno;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&target, sizeof target) < 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    return fd;
}

/* One session: connect, send the request, read one reply line, close.
 * Stores the reply in buf.  Returns 0 or a negative errno. */
/* One fresh connect-WHO session that ends only once the server has: the
 * client half-closes after the reply and waits for the server's EOF, which
 * whoconn sends after it has unregistered.  So the next fresh WHO no longer
 * counts this one (whoconn counts a connection until its process ends).
 * *lat_us is connect to reply.  Without to_end it closes at once. */
static int session_ex(char *buf, size_t size, int64_t *lat_us, bool to_end) {
    int64_t t0 = now_us();
    int fd = connect_target();
    if (fd < 0)
        return fd;
    int err = write_all(fd, request, request_len);
    if (err == 0) {
        ssize_t n = read_line(fd, buf, size, WCLOAD_IO_TIMEOUT_MS);
        err = n < 0 ? (int)n : reply_ok(buf, (size_t)n) ? 0 : -EPROTO;
    }
    *lat_us = now_us() - t0;
    if (to_end && err == 0 && shutdown(fd, SHUT_WR) == 0) {
        char tail[64];
        struct pollfd p = {.fd = fd, .events = POLLIN};
        while (poll(&p, 1, WCLOAD_IO_TIMEOUT_MS) == 1 && read(fd, tail, sizeof tail) > 0)
            ;
    }
    close(fd);
    return err;
}

static int session_to_end(char *buf, size_t size, int64_t *lat_us) {
    return session_ex(buf, size, lat_us, true);
}

/* One connect-request-reply-close session. */
static int session(char *buf, size_t size) {
    int64_t lat;
    return session_ex(buf, size, &lat, false);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static int64_t pct(const int64_t *v, size_t n, double p) {
    if (n == 0)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

/* ---- rate ------------------------------------------------------------ */

static struct {
    long max_sessions;
    int64_t deadline;
    atomic_long claimed;
    atomic_long errors;
    atomic_long done;
    int64_t *lat; /* one slot per session, indexed by claim order */
    atomic_int first_err;
} rate;

static void *rate_worker(void *arg) {
    char buf[WCLOAD_REPLY_MAX + 2];
    (void)arg;

    for (;;) {
        if (now_us() >= rate.deadline || stop_signal)
            break;
        long i = atomic_fetch_add(&rate.claimed, 1);
        if (i >= rate.max_sessions)
            break;
        int64_t t0 = now_us();
        int err = session(buf, sizeof buf);
        int64_t t1 = now_us();
        if (err < 0) {
            atomic_fetch_add(&rate.errors, 1);
            int zero = 0;
            atomic_compare_exchange_strong(&rate.first_err, &zero, -err);
            rate.lat[i] = -1;
        } else {
            rate.lat[i] = t1 - t0;
            atomic_fetch_add(&rate.done, 1);
        }
    }
    return NULL;
}

static int run_rate(long clients, long max_sessions, long seconds) {
    pthread_t th[WCLOAD_CLIENTS_MAX];

    rate.max_sessions = max_sessions;
    rate.lat = calloc((size_t)max_sessions, sizeof *rate.lat);
    if (!rate.lat) {
        fprintf(stderr, "wcload: out of memory\n");
        return 2;
    }
    int64_t t0 = now_us();
    rate.deadline = t0 + seconds * 1000000;
    for (long i = 0; i < clients; i++)
        if (pthread_create(&th[i], NULL, rate_worker, NULL) != 0) {
            fprintf(stderr, "wcload: cannot start client thread %ld\n", i);
            clients = i;
            break;
        }
    for (long i = 0; i < clients; i++)
        pthread_join(th[i], NULL);
    int64_t elapsed = now_us() - t0;

    long n = atomic_load(&rate.claimed);
    if (n > max_sessions)
        n = max_sessions;
    size_t ok = 0;
    for (long i = 0; i < n; i++)
        if (rate.lat[i] >= 0)
            rate.lat[ok++] = rate.lat[i];
    qsort(rate.lat, ok, sizeof *rate.lat, cmp_i64);
    long errors = atomic_load(&rate.errors);
    printf("clients=%ld sessions=%zu errors=%ld seconds=%.3f rate=%.1f p50_us=%lld p90_us=%lld "
           "p99_us=%lld max_us=%lld\n",
           clients, ok, errors, elapsed / 1e6, ok / (elapsed / 1e6),
           (long long)pct(rate.lat, ok, 50), (long long)pct(rate.lat, ok, 90),
           (long long)pct(rate.lat, ok, 99), (long long)(ok ? rate.lat[ok - 1] : 0));
    if (errors)
        fprintf(stderr, "wcload: %ld sessions failed, first: %s\n", errors,
                strerror(atomic_load(&rate.first_err)));
    free(rate.lat);
    return errors == 0 && ok > 0 ? 0 : 1;
}

/* ---- hold ------------------------------------------------------------ */

static void on_signal(int sig) {
    stop_signal = sig;
}

/* Opens n connections, at most WCLOAD_HOLD_INFLIGHT unanswered at a time;
 * each sends the probe line and counts as held once a reply line came. */
static int hold_open(int *fds, long n, int64_t deadline) {
    struct pollfd *p = calloc((size_t)n, sizeof *p);
    long opened = 0, answered = 0, first = 0; /* all before first answered */
    int err = 0;

    if (!p)
        return -ENOMEM;
    while (answered < n && !err) {
        while (opened - answered < WCLOAD_HOLD_INFLIGHT && opened < n) {
            int fd = connect_target();
            if (fd < 0) {
                err = fd;
                break;
            }
            fds[opened] = fd;
            p[opened] = (struct pollfd){.fd = fd, .events = POLLIN};
            opened++;
            err = write_all(fd, request, request_len);
            if (err)
                break;
        }
        if (err)
            break;
        if (now_us() > deadline || stop_signal) {
            err = -ETIMEDOUT;
            break;
        }
        int r = poll(p + first, (nfds_t)(opened - first), 100);
        if (r < 0 && errno != EINTR) {
            err = -errno;
            break;
        }
        for (long i = first; r > 0 && i < opened; i++) {
            if (p[i].fd < 0 || !p[i].revents)
                continue;
            char buf[WCLOAD_REPLY_MAX + 2];
            ssize_t m = read_line(fds[i], buf, sizeof buf, WCLOAD_IO_TIMEOUT_MS);
            if (m < 0 || !reply_ok(buf, (size_t)m)) {
                err = m < 0 ? (int)m : -EPROTO;
                break;
            }
            p[i].fd = -1; /* answered: poll ignores negative fds */
            answered++;
        }
        while (first < opened && p[first].fd < 0)
            first++;
    }
    if (err)
        for (long i = 0; i < opened; i++)
            close(fds[i]);
    free(p);
    return err;
}

/* Sends "WHO" on fd and parses the number.  Returns 0 or negative errno. */
static int who_on(int fd, long long *ret) {
    char buf[WCLOAD_REPLY_MAX + 2], *end;
    int err = write_all(fd, "WHO\n", 4);
    if (err)
        return err;
    ssize_t n = read_line(fd, buf, sizeof buf, WCLOAD_IO_TIMEOUT_MS);
    if (n < 0)
        return (int)n;
    errno = 0;
    *ret = strtoll(buf, &end, 10);
    return errno || end == buf || *end != '\n' ? -EPROTO : 0;
}

static void print_lat(const char *name, int64_t *v, size_t n) {
    qsort(v, n, sizeof *v, cmp_i64);
    printf("%s_n=%zu %s_p50_us=%lld %s_p99_us=%lld %s_max_us=%lld ", name, n, name,
           (long long)pct(v, n, 50), name, (long long)pct(v, n, 99), name,
           (long long)(n ? v[n - 1] : 0));
}

static int run_hold(long n, long seconds, long samples, const char *ready, bool who) {
    struct rlimit rl;
    int *fds = malloc((size_t)n * sizeof *fds);
    int64_t *lat = calloc((size_t)samples + 1, sizeof *lat);
    int status = 0;

    if (!fds || !lat) {
        fprintf(stderr, "wcload: out of memory\n");
        return 2;
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = (rlim_t)n + 64;
        if (rl.rlim_max < rl.rlim_cur)
            rl.rlim_max = rl.rlim_cur;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            fprintf(stderr, "wcload: cannot raise RLIMIT_NOFILE to %ld: %s\n", n + 64,
                    strerror(errno));
            return 2;
        }
    }
    int64_t t0 = now_us(), deadline = t0 + seconds * 1000000;
    int err = hold_open(fds, n, deadline);
    if (err) {
        fprintf(stderr, "wcload: holding %ld connections failed: %s\n", n, strerror(-err));
        return 1;
    }
    printf("held=%ld open_seconds=%.3f ", n, (now_us() - t0) / 1e6);
    fflush(stdout);

    char buf[WCLOAD_REPLY_MAX + 2];
    if (who) {
        long long held_count = -1, fresh_count = -1;
        /* every held process registers itself as soon as it starts: the
         * wait lets the last ones started by the launcher get going */
        usleep(1000 * 1000);
        err = who_on(fds[0], &held_count);
        if (err == 0) {
            /* ended only once the server has ended it (session_to_end()),
             * so that the held connections' WHOs below do not count it */
            int64_t l;
            memcpy(request, "WHO\n", 5);
            request_len = 4;
            err = session_to_end(buf, sizeof buf, &l);
            fresh_count = err == 0 ? atoll(buf) : -1;
        }
        printf("who_held=%lld who_fresh=%lld who_exact=%s ", held_count, fresh_count,
               held_count == n && fresh_count == n + 1 ? "yes" : "no");
        if (err || held_count != n || fresh_count != n + 1)
            status = 1;
    }
    /* WHO on held connections, spread over them: the query alone.  Without
     * -W (another program) only the reply's form is checked. */
    size_t k = 0;
    for (long i = 0; i < samples && !stop_signal; i++) {
        long long c = 0;
        int64_t s = now_us();
        int e = who_on(fds[(i * 7919) % n], &c);
        if ((who && (e < 0 || c != n)) || (!who && e < 0 && e != -EPROTO)) {
            status = 1;
            continue;
        }
        lat[k++] = now_us() - s;
    }
    print_lat("who_held", lat, k);
    /* fresh connect-WHO-close sessions: what a new client sees */
    memcpy(request, "WHO\n", 5);
    request_len = 4;
    k = 0;
    for (long i = 0; i < samples && !stop_signal; i++) {
        int64_t l;
        if (session_to_end(buf, sizeof buf, &l) < 0 || (who && atoll(buf) != n + 1)) {
            status = 1;
            continue;
        }
        lat[k++] = l;
    }
    print_lat("who_fresh", lat, k);
    printf("status=%s\n", status ? "fail" : "ok");
    fflush(stdout);
    if (ready) {
        FILE *f = fopen(ready, "w");
        if (f)
            fclose(f);
    }
    while (!stop_signal && now_us() < deadline)
        usleep(50 * 1000);
    for (long i = 0; i < n; i++)
        close(fds[i]);
    free(fds);
    free(lat);
    return status;
}

/* ---- spawn ----------------------------------------------------------- */

/* Runs PROG n times, inetd style, over a socketpair (fd 0 and 1), one
 * request and one reply each, sequentially, without a network or launcher
 * in the way.  Reports wall time per session and the CPU time the child
 * used (exec, dynamic loader and program: what every connection pays). */
static int run_spawn(long n, char **argv) {
    int64_t *wall = calloc((size_t)n, sizeof *wall);
    double user = 0, sys = 0;
    long errors = 0, minflt = 0;
    size_t k = 0;
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);

    if (!wall || devnull < 0) {
        fprintf(stderr, "wcload: spawn: set-up failed\n");
        return 2;
    }
    int64_t t0 = now_us();
    for (long i = 0; i < n && !stop_signal; i++) {
        int sv[2];
        char buf[WCLOAD_REPLY_MAX + 2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
            errors++;
            break;
        }
        int64_t s = now_us();
        pid_t pid = fork();
        if (pid == 0) {
            dup2(sv[1], 0);
            dup2(sv[1], 1);
            dup2(devnull, 2);
            execv(argv[0], argv);
            _exit(127);
        }
        close(sv[1]);
        int err = pid < 0 ? -errno : write_all(sv[0], request, request_len);
        if (err == 0) {
            ssize_t m = read_line(sv[0], buf, sizeof buf, WCLOAD_IO_TIMEOUT_MS);
            err = m < 0 ? (int)m : reply_ok(buf, (size_t)m) ? 0 : -EPROTO;
        }
        int64_t e = now_us();
        close(sv[0]);
        if (pid > 0) {
            int st;
            struct rusage ru;
            if (wait4(pid, &st, 0, &ru) == pid) {
                user += ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec;
                sys += ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec;
                minflt += ru.ru_minflt;
                if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                    err = err ? err : -ECHILD;
            }
        }
        if (err)
            errors++;
        else
            wall[k++] = e - s;
    }
    double secs = (now_us() - t0) / 1e6;
    qsort(wall, k, sizeof *wall, cmp_i64);
    printf("sessions=%zu errors=%ld seconds=%.3f reply_p50_us=%lld reply_p99_us=%lld "
           "cpu_user_us=%.1f cpu_sys_us=%.1f cpu_us=%.1f minflt=%.1f\n",
           k, errors, secs, (long long)pct(wall, k, 50), (long long)pct(wall, k, 99),
           k ? user / (double)(k + errors) : 0, k ? sys / (double)(k + errors) : 0,
           k ? (user + sys) / (double)(k + errors) : 0,
           k ? (double)minflt / (double)(k + errors) : 0);
    free(wall);
    close(devnull);
    return errors == 0 && k > 0 ? 0 : 1;
}

static void usage(void) {
    fprintf(stderr,
            "usage: wcload rate -p PORT [-c CLIENTS] [-n MAXCONN] [-t SECONDS] [-m LINE]\n"
            "       wcload hold -p PORT -n N [-t SECONDS] [-k SAMPLES] [-r READYFILE] [-W]\n"
            "       wcload spawn [-n COUNT] [-m LINE] -- PROGRAM [ARG...]\n");
}

int main(int argc, char **argv) {
    long port = 0, clients = 1, count = 10000, seconds = 5, samples = 200;
    const char *ready = NULL, *line = "WHO";
    bool who = false;
    int c;

    if (argc < 2) {
        usage();
        return 2;
    }
    const char *mode = argv[1];
    optind = 2;
    while ((c = getopt(argc, argv, "p:c:n:t:m:k:r:W")) != -1) {
        int err = 0;
        switch (c) {
        case 'p':
            err = parse_num(optarg, 1, 65535, &port);
            break;
        case 'c':
            err = parse_num(optarg, 1, WCLOAD_CLIENTS_MAX, &clients);
            break;
        case 'n':
            err = parse_num(optarg, 1, WCLOAD_SESSIONS_MAX, &count);
            break;
        case 't':
            err = parse_num(optarg, 1, WCLOAD_SECONDS_MAX, &seconds);
            break;
        case 'k':
            err = parse_num(optarg, 1, WCLOAD_SAMPLES_MAX, &samples);
            break;
        case 'm':
            line = optarg;
            err = strlen(line) > WCLOAD_REPLY_MAX || strchr(line, '\n') ? -EINVAL : 0;
            break;
        case 'r':
            ready = optarg;
            break;
        case 'W':
            who = true;
            break;
        default:
            usage();
            return 2;
        }
        if (err) {
            fprintf(stderr, "wcload: -%c %s: out of range\n", c, optarg);
            return 2;
        }
    }
    request_len = (size_t)snprintf(request, sizeof request, "%s\n", line);
    if (strcmp(mode, "spawn") == 0 && optind < argc) {
        signal(SIGPIPE, SIG_IGN);
        return run_spawn(count, argv + optind);
    }
    if (!port || optind != argc) {
        usage();
        return 2;
    }
    request_len = (size_t)snprintf(request, sizeof request, "%s\n", line);
    target.sin_family = AF_INET;
    target.sin_port = htons((uint16_t)port);
    target.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (strcmp(mode, "rate") == 0)
        return run_rate(clients, count, seconds);
    if (strcmp(mode, "hold") == 0) {
        if (count > WCLOAD_HOLD_MAX) {
            fprintf(stderr, "wcload: hold: at most %d connections\n", WCLOAD_HOLD_MAX);
            return 2;
        }
        return run_hold(count, seconds, samples, ready, who);
    }
    usage();
    return 2;
}
