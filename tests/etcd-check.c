/*
 * etcd-check - drives lib/etcd for tests/etcd.bats: runs the operations
 * named on its command line, in order, on one client, and prints one line
 * per result (one per key or event where there are several):
 *
 *   etcd-check [--endpoints URLS] [--user NAME --password-file PATH]
 *              [--ca-file PEM] [--cert-file PEM --key-file PEM] OP...
 *
 *   put KEY VALUE       "put: ok", on the lease granted last (if any)
 *   get KEY             "KEY VALUE" if the key exists
 *   prefix PREFIX       "KEY VALUE" per key under PREFIX
 *   count PREFIX        "count: N"
 *   rev PREFIX          "revision: N", the store's revision
 *   grant TTL           "grant: ok"; later puts use the lease
 *   keepalive           "keepalive: ok"
 *   revoke              "revoke: ok"
 *   watch PREFIX REV N  "put KEY VALUE" or "delete KEY" per event from
 *                       revision REV on, and "watch: N events, synced"
 *                       once there were at least N (synced: etcd
 *                       confirmed the watch), or
 *                       "watch: ended: ECODE" (with libcurl's words for
 *                       ECONNRESET) when the stream ends first
 *   failover            "endpoint: URL", the one now in use
 *   wait FILE           waits until FILE exists (a step of the test's)
 *
 * A failed operation prints "OP: ECODE: words" (etcd_strerror()), and the
 * next one runs; the exit status is 0 when all succeeded, 1 when one
 * failed, 64 for a usage error, 70 when the client could not start.
 * Every operation is bounded: calls by ETCD_CALL_TIMEOUT_MS, a watch and
 * a wait by CHECK_WAIT_MS.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/etcd.h"

/* A watch or a wait gives up after this long: far past anything a test
 * waits for, on the slowest machine. */
#define CHECK_WAIT_MS 20000
#define CHECK_POLL_MS 50

static long long now_ms(void) {
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A whole number operand: true, or false for a usage error. */
static bool number(const char *s, long long *ret) {
    char *end;

    errno = 0;
    *ret = strtoll(s, &end, 10);
    return errno == 0 && end != s && *end == '\0' && *ret >= 0;
}

static int fail(struct etcd *e, const char *op, int err) {
    printf("%s: %s: %s\n", op, strerrorname_np(-err), etcd_strerror(e, err));
    return err;
}

static void print_kv(void *user, const struct etcd_kv *kv) {
    (void)user;
    printf("%s %s\n", kv->key, kv->value ? kv->value : "");
}

static void ignore_kv(void *user, const struct etcd_kv *kv) {
    (void)user, (void)kv;
}

struct watch {
    int events;
};

static void print_event(void *user, const struct etcd_kv *kv) {
    struct watch *w = user;

    if (kv->value)
        printf("put %s %s\n", kv->key, kv->value);
    else
        printf("delete %s\n", kv->key);
    w->events++;
}

static int watch(struct etcd *e, const char *prefix, long long rev, long long want) {
    char end[ETCD_KEY_MAX];
    struct watch w = {0};
    int err;
    long long give_up = now_ms() + CHECK_WAIT_MS;

    err = etcd_prefix_end(prefix, end, sizeof end);
    if (err == 0)
        err = etcd_watch_start(e, prefix, end, rev, print_event, &w);
    if (err < 0)
        return fail(e, "watch", err);
    while (w.events < want && now_ms() < give_up) {
        err = etcd_watch_run(e);
        if (err < 0)
            break;
        fflush(stdout);
        etcd_wait(e, CHECK_POLL_MS);
    }
    if (err < 0)
        printf("watch: ended: %s%s%s\n", strerrorname_np(-err), err == -ECONNRESET ? ": " : "",
               err == -ECONNRESET ? etcd_strerror(e, err) : "");
    else if (w.events >= want)
        printf("watch: %d events%s\n", w.events, etcd_watch_synced(e) ? ", synced" : "");
    else
        printf("watch: gave up after %d s\n", CHECK_WAIT_MS / 1000);
    etcd_watch_stop(e);
    return w.events >= want ? 0 : -ETIMEDOUT;
}

static int wait_file(const char *path) {
    long long give_up = now_ms() + CHECK_WAIT_MS;

    while (access(path, F_OK) != 0)
        if (now_ms() >= give_up)
            return -ETIMEDOUT;
        else
            nanosleep(&(struct timespec){.tv_nsec = CHECK_POLL_MS * 1000000L}, NULL);
    return 0;
}

/* Runs op with its arguments at argv; returns how many words it took, or
 * 0 for a usage error; *failed is set when it failed. */
static int run_op(struct etcd *e, char **argv, int argc, long long *lease, bool *failed) {
    const char *op = argv[0];
    char end[ETCD_KEY_MAX];
    long long n = 0, m = 0;
    int err = 0, took = 1;

#define NEED(k)                                                                           \
    do {                                                                                  \
        if (argc < (k) + 1)                                                               \
            return 0;                                                                     \
        took = (k) + 1;                                                                   \
    } while (0)
    if (strcmp(op, "put") == 0) {
        NEED(2);
        if ((err = etcd_put(e, argv[1], argv[2], *lease)) == 0)
            printf("put: ok\n");
    } else if (strcmp(op, "get") == 0) {
        NEED(1);
        err = etcd_range(e, argv[1], NULL, print_kv, NULL, &n);
    } else if (strcmp(op, "prefix") == 0) {
        NEED(1);
        if ((err = etcd_prefix_end(argv[1], end, sizeof end)) == 0)
            err = etcd_range(e, argv[1], end, print_kv, NULL, &n);
    } else if (strcmp(op, "count") == 0) {
        NEED(1);
        if ((err = etcd_prefix_end(argv[1], end, sizeof end)) == 0 &&
            (err = etcd_count(e, argv[1], end, &n)) == 0)
            printf("count: %lld\n", n);
    } else if (strcmp(op, "rev") == 0) {
        NEED(1);
        if ((err = etcd_prefix_end(argv[1], end, sizeof end)) == 0 &&
            (err = etcd_range(e, argv[1], end, ignore_kv, NULL, &n)) == 0)
            printf("revision: %lld\n", n);
    } else if (strcmp(op, "grant") == 0) {
        NEED(1);
        if (!number(argv[1], &n) || n > 3600)
            return 0;
        if ((err = etcd_lease_grant(e, (unsigned)n, lease)) == 0)
            printf("grant: ok\n");
    } else if (strcmp(op, "keepalive") == 0) {
        if ((err = etcd_lease_keepalive(e, *lease, &n)) == 0)
            printf("keepalive: ok\n");
    } else if (strcmp(op, "revoke") == 0) {
        if ((err = etcd_lease_revoke(e, *lease)) == 0)
            printf("revoke: ok\n");
    } else if (strcmp(op, "watch") == 0) {
        NEED(3);
        if (!number(argv[2], &n) || !number(argv[3], &m))
            return 0;
        *failed |= watch(e, argv[1], n, m) < 0;
        return took;
    } else if (strcmp(op, "failover") == 0) {
        etcd_failover(e);
        printf("endpoint: %s\n", etcd_endpoint(e));
    } else if (strcmp(op, "wait") == 0) {
        NEED(1);
        if (wait_file(argv[1]) < 0) {
            printf("wait: %s did not appear\n", argv[1]);
            *failed = true;
        }
        return took;
    } else
        return 0;
#undef NEED
    if (err < 0) {
        fail(e, op, err);
        *failed = true;
    }
    fflush(stdout);
    return took;
}

static char *read_line(const char *path) {
    static char buf[1024];
    FILE *f = fopen(path, "re");

    if (!f || !fgets(buf, sizeof buf, f)) {
        if (f)
            fclose(f);
        return NULL;
    }
    fclose(f);
    buf[strcspn(buf, "\r\n")] = '\0';
    return buf;
}

int main(int argc, char **argv) {
    struct etcd_config cfg = {0};
    struct etcd *e = NULL;
    char *eps = NULL;
    long long lease = 0;
    bool failed = false;
    int i;

    for (i = 1; i + 1 < argc && strncmp(argv[i], "--", 2) == 0; i += 2) {
        if (strcmp(argv[i], "--endpoints") == 0)
            eps = argv[i + 1];
        else if (strcmp(argv[i], "--user") == 0)
            cfg.user = argv[i + 1];
        else if (strcmp(argv[i], "--password-file") == 0 && !(cfg.password = read_line(argv[i + 1])))
            return 64;
        else if (strcmp(argv[i], "--ca-file") == 0)
            cfg.ca_file = argv[i + 1];
        else if (strcmp(argv[i], "--cert-file") == 0)
            cfg.cert_file = argv[i + 1];
        else if (strcmp(argv[i], "--key-file") == 0)
            cfg.key_file = argv[i + 1];
    }
    char *save = NULL;
    for (char *s = eps ? strtok_r(eps, ",", &save) : NULL; s && cfg.nendpoints < ETCD_ENDPOINTS_MAX;
         s = strtok_r(NULL, ",", &save))
        cfg.endpoints[cfg.nendpoints++] = s;
    if (i >= argc || cfg.nendpoints == 0) {
        fprintf(stderr, "usage: etcd-check --endpoints URLS [--user NAME --password-file PATH] "
                        "[--ca-file PEM] [--cert-file PEM --key-file PEM] OP...\n");
        return 64;
    }
    int err = etcd_open(&e, &cfg);
    if (err < 0) {
        fprintf(stderr, "etcd-check: %s\n", strerror(-err));
        return 70;
    }
    while (i < argc) {
        int took = run_op(e, argv + i, argc - i, &lease, &failed);
        if (took == 0) {
            fprintf(stderr, "etcd-check: bad operation: %s\n", argv[i]);
            etcd_close(e);
            return 64;
        }
        i += took;
    }
    etcd_close(e);
    return failed ? 1 : 0;
}
