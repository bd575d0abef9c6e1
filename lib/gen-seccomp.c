/*
 * gen-seccomp - writes whoconn's system-call filter as a C array of BPF
 * instructions (whoconn-seccomp.h), at build time.
 *
 * The filter is built with libseccomp here, once, so that the
 * per-connection binary links no extra shared library and spends no time
 * compiling a filter: at run time it only hands the finished program to
 * seccomp(2).  The program is for the architecture this runs on; a system
 * call from any other ABI (i386, x32) kills the process.
 *
 * The list is what a connection process needs after start-up (see
 * confine() in whoconn.c): SQLite on its registry files, reading
 * liveness locks, the journal datagram, /etc/machine-id for WHERE, the session's I/O and
 * signals.  Everything else fails with EPERM: a denied call is an error the
 * code already handles, never a silent success.
 *
 * usage: gen-seccomp OUTPUT.h
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *const allowed[] = {
    /* the session: peer I/O, timers, signals, exit */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "poll", "ppoll",
    "shutdown", "setsockopt", "getsockopt", "getpeername", "getsockname",
    "clock_gettime", "clock_getres", "gettimeofday", "time", "nanosleep",
    "clock_nanosleep", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
    "restart_syscall", "exit", "exit_group", "getpid", "gettid", "getppid",
    /* identity queries (SQLite and glibc ask; they change nothing) */
    "getuid", "geteuid", "getgid", "getegid", "uname",
    /* memory (mmap and mprotect: never executable, see build()) */
    "brk", "munmap", "mremap", "madvise",
    /* files: the registry (and -wal, -shm), the lock files,
     * /etc/machine-id.  Where writes may go is Landlock's job, not this
     * filter's: unix permissions and Landlock confine the paths. */
    "openat", "open", "close", "fstat", "newfstatat", "stat", "lstat", "statx",
    "fstatfs", "access", "faccessat", "faccessat2", "readlink", "readlinkat",
    "getcwd", "lseek", "fcntl", "ftruncate", "fallocate", "fsync", "fdatasync",
    "unlink", "unlinkat", "fchown", "fchmod", "getdents64",
    /* the liveness-lock directory beside the registry; a new registry is
     * built under a private name and link()ed into place */
    "mkdir", "mkdirat", "link", "linkat",
    /* the journal entry: a datagram to journald (socket() is AF_UNIX only,
     * see build()) */
    "sendmsg", "sendto",
    /* locks and threads as used by glibc and SQLite */
    "futex", "set_robust_list", "rseq", "sched_yield", "getrandom",
    /* abort() on a failed assertion must still be able to raise SIGABRT */
    "tgkill",
};

static int build(scmp_filter_ctx ctx) {
    int r;

    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        int nr = seccomp_syscall_resolve_name(allowed[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not a system call on this architecture */
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (r < 0)
            return r;
    }
    /* The one socket a connection may open: an AF_UNIX datagram socket, to
     * send journald its entry (no connect(): the address goes with it). */
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 2, SCMP_A0(SCMP_CMP_EQ, AF_UNIX),
                         SCMP_A1(SCMP_CMP_EQ, SOCK_DGRAM | SOCK_CLOEXEC));
    if (r < 0)
        return r;
    /* Memory is never made executable once confined, what systemd's
     * MemoryDenyWriteExecute= does for a unit: whoconn is one static binary
     * that loads nothing (mremap keeps a mapping's protection). */
    r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1,
                         SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    if (r == 0)
        r = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1,
                             SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    return r < 0 ? r : 0;
}

int main(int argc, char **argv) {
    char tmpl[] = "/tmp/gen-seccomp.XXXXXX";
    struct sock_filter prog[4096];
    scmp_filter_ctx ctx;
    FILE *out;
    int fd, r;
    ssize_t n;

    if (argc != 2) {
        fprintf(stderr, "usage: gen-seccomp OUTPUT.h\n");
        return 64;
    }
    ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    if (!ctx) {
        fprintf(stderr, "gen-seccomp: seccomp_init failed\n");
        return 1;
    }
    r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r == 0)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0); /* whoconn sets it */
    if (r == 0)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2); /* binary tree */
    if (r == 0)
        r = build(ctx);
    fd = r == 0 ? mkstemp(tmpl) : -1;
    if (fd >= 0) {
        unlink(tmpl);
        r = seccomp_export_bpf(ctx, fd);
    } else if (r == 0)
        r = -errno;
    seccomp_release(ctx);
    if (r < 0) {
        fprintf(stderr, "gen-seccomp: %s\n", strerror(-r));
        return 1;
    }
    lseek(fd, 0, SEEK_SET);
    n = read(fd, prog, sizeof prog);
    close(fd);
    if (n <= 0 || n % sizeof prog[0] != 0 || (size_t)n == sizeof prog) {
        fprintf(stderr, "gen-seccomp: unexpected BPF size %zd\n", n);
        return 1;
    }
    out = fopen(argv[1], "w");
    if (!out) {
        perror(argv[1]);
        return 1;
    }
    fprintf(out, "/* Generated by lib/gen-seccomp.c: do not edit. */\n"
                 "static const struct sock_filter whoconn_seccomp_filter[] = {\n");
    for (size_t i = 0; i < (size_t)n / sizeof prog[0]; i++)
        fprintf(out, "    {0x%04x, %3u, %3u, 0x%08x},\n", prog[i].code, prog[i].jt, prog[i].jf,
                prog[i].k);
    fprintf(out, "};\n");
    if (fclose(out) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
