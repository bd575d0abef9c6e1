/*
 * confine-probe - tries, from inside whoconn's confinement, each thing a
 * connection process must not be able to do, and prints what happened.
 *
 * It links whoconn's own confinement module (lib/confine.c): the registry
 * is found as whoconn finds it without options and the same confine()
 * runs, so run from a unit exactly like a connection it proves what a real
 * connection process can and cannot do.
 * tests/systemd.bats runs it as whoconn@.service's ExecStart=.
 *
 *   confine-probe                     probes; one "ACTION: RESULT" line each
 *   confine-probe --bench N           times confine() in N fresh processes
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../whoconn.h"
#include "../lib/confine.h"
#include "../lib/log.h"

static void report(const char *what, int r) {
    if (r >= 0)
        printf("%s: allowed\n", what);
    else
        printf("%s: denied (%s)\n", what, strerror(-r));
}

static int try_create(const char *path) {
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    close(fd);
    unlink(path);
    return 0;
}

static int try_fork(void) {
    pid_t pid = fork();
    if (pid < 0)
        return -errno;
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    return 0;
}

static int try_socket(int family, int type) {
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

static int try_read(const char *path) {
    char buf[64];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    return n < 0 ? -errno : 0;
}

/* The value of a "Key:" line of /proc/self/status ("?" if missing): what
 * the kernel holds for this process, whoever set it (the process itself,
 * or a unit's NoNewPrivileges=). */
static const char *self_status(const char *key, char *val, size_t size) {
    char buf[4096];
    size_t klen = strlen(key);
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);

    if (fd >= 0)
        close(fd);
    snprintf(val, size, "?");
    if (n <= 0)
        return val;
    buf[n] = '\0';
    for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
        if (strncmp(l, key, klen) == 0 && l[klen] == ':') {
            l += klen + 1;
            l += strspn(l, " \t");
            snprintf(val, size, "%.*s", (int)strcspn(l, "\n"), l);
            break;
        }
    return val;
}

/* Tries to get memory that is writable and executable, or to make
 * writable memory executable, as injected code would need. */
static int try_map_exec(void) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    munmap(p, 4096);
    return 0;
}

static int try_mprotect_exec(void) {
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return -errno;
    int r = mprotect(p, 4096, PROT_READ | PROT_EXEC) < 0 ? -errno : 0;
    munmap(p, 4096);
    return r;
}

static int probe(const char *db) {
    char dir[4096], path[4200];
    int r = confine(db);

    if (r < 0) {
        printf("confine: failed (%s)\n", strerror(-r));
        return 1;
    }
    snprintf(dir, sizeof dir, "%s", db);
    char *d = dirname(dir);
    snprintf(path, sizeof path, "%s/probe.tmp", d);
    report("create a file in the registry directory", try_create(path));
    /* Landlock allows no rmdir here (a connection never removes one), so
     * each probe makes its own: a second probe would find the first's. */
    snprintf(path, sizeof path, "%s/probe.dir.%ld", d, (long)getpid());
    report("mkdir in the registry directory", mkdir(path, 0700) < 0 ? -errno : (rmdir(path), 0));
    report("mkdir /tmp/whoconn-probe.dir",
           mkdir("/tmp/whoconn-probe.dir", 0700) < 0 ? -errno : (rmdir("/tmp/whoconn-probe.dir"), 0));
    report("create /tmp/whoconn-probe", try_create("/tmp/whoconn-probe"));
    report("create /var/tmp/whoconn-probe", try_create("/var/tmp/whoconn-probe"));
    report("create /dev/shm/whoconn-probe", try_create("/dev/shm/whoconn-probe"));
    report("fork", try_fork());
    report("open an AF_INET socket", try_socket(AF_INET, SOCK_STREAM));
    report("open an AF_INET6 socket", try_socket(AF_INET6, SOCK_DGRAM));
    report("open an AF_UNIX stream socket", try_socket(AF_UNIX, SOCK_STREAM));
    report("open an AF_UNIX datagram socket (for journald)",
           try_socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC));
    report("open an AF_NETLINK socket", try_socket(AF_NETLINK, SOCK_RAW));
    report("setuid(0)", setuid(0) < 0 ? -errno : 0);
    char v[64];
    /* set by confine() itself: the unit need not (whoconn@.service has no
     * NoNewPrivileges= since issue 20) */
    printf("no new privileges (NoNewPrivs): %s\n", self_status("NoNewPrivs", v, sizeof v));
    report("read /proc/1/stat", try_read("/proc/1/stat"));
    report("read /etc/machine-id", try_read("/etc/machine-id"));
    report("map writable and executable memory", try_map_exec());
    report("make memory executable", try_mprotect_exec());
    /* Must land in the journal, never on the connection (fd 1). */
    log_msg(LOG_INFO, "confine-probe: this line goes to stderr");
    /* Last: had it worked, /bin/true would replace the probe and the line
     * would be missing from the output. */
    fflush(stdout);
    execl("/bin/true", "true", (char *)NULL);
    report("execute /bin/true", -errno);
    return 0;
}

/* Times confine() alone: each sample is a fresh child, as each connection
 * is a fresh process.  Prints the mean and the median in microseconds. */
static int bench(int n, const char *db) {
    int64_t *ns = calloc((size_t)n, sizeof *ns);
    int fds[2];

    if (!ns || pipe(fds) < 0)
        return 1;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            struct timespec a, b;
            clock_gettime(CLOCK_MONOTONIC, &a);
            int r = confine(db);
            clock_gettime(CLOCK_MONOTONIC, &b);
            int64_t t = r < 0 ? -1 : (b.tv_sec - a.tv_sec) * 1000000000LL + b.tv_nsec - a.tv_nsec;
            ssize_t w = write(fds[1], &t, sizeof t);
            _exit(w == sizeof t ? 0 : 1);
        }
        if (pid < 0 || read(fds[0], &ns[i], sizeof ns[i]) != sizeof ns[i] || ns[i] < 0)
            return 1;
        waitpid(pid, NULL, 0);
    }
    int64_t sum = 0;
    for (int i = 0; i < n; i++) {
        sum += ns[i];
        for (int j = i; j > 0 && ns[j - 1] > ns[j]; j--) {
            int64_t t = ns[j];
            ns[j] = ns[j - 1];
            ns[j - 1] = t;
        }
    }
    printf("confine() over %d processes: mean %.1f us, median %.1f us\n", n,
           (double)sum / n / 1000, (double)ns[n / 2] / 1000);
    return 0;
}

/* The registry path as config_load() picks it when no option is given. */
static const char *registry_path(char *buf, size_t size) {
    const char *db = getenv("WHOCONN_DB"), *rt = getenv("RUNTIME_DIRECTORY");

    if (db && *db)
        return db;
    if (rt && rt[0] == '/' &&
        (size_t)snprintf(buf, size, "%.*s/%s", (int)strcspn(rt, ":"), rt, WHOCONN_DB_NAME) < size)
        return buf;
    return WHOCONN_DB_DEFAULT;
}

int main(int argc, char **argv) {
    char buf[4096];
    const char *db = registry_path(buf, sizeof buf);

    if (argc == 3 && strcmp(argv[1], "--bench") == 0)
        return bench(atoi(argv[2]) > 0 ? atoi(argv[2]) : 1000, db);
    log_setup("whoconn"); /* as main() does: the journal's <N> prefixes */
    return probe(db);
}
