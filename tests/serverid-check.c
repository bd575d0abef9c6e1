/*
 * serverid-check - compares serverid.c with libsystemd (tests/serverid.bats).
 *
 *   serverid-check [--machine-id-file FILE | --no-machine-id | --machine-id-dir]
 *                  [--app-id HEX]
 *       Prints two lines, "serverid: R" and "libsystemd: R", where R is the
 *       server id (lowercase UUID) or the negative errno's name, of
 *       serverid_get() and of sd_id128_get_machine_app_specific() for the
 *       application id HEX (32 hexadecimal digits; default WHOCONN_APP_ID).
 *       Exits 0 when they agree (same id, or same error), 1 when not.
 *       --machine-id-file bind-mounts FILE over /etc/machine-id, and
 *       --no-machine-id hides /etc under an empty tmpfs, --machine-id-dir
 *       also makes /etc/machine-id a directory there, each in a private
 *       mount namespace of this process only (needs root; exit 77 when
 *       refused).
 *
 *   serverid-check --app-specific BASEHEX APPHEX
 *       Prints serverid_app_specific(BASE, APP) as a UUID, for a check
 *       against an independent HMAC-SHA256.
 *
 *   serverid-check --bench N
 *       Runs serverid_get() N times and prints the mean time per call.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>

#include <systemd/sd-id128.h>

#include "../lib/serverid.h"
#include "../whoconn.h"

static int parse_hex(const char *s, uint8_t out[SERVERID_BYTES]) {
    if (strlen(s) != (size_t)2 * SERVERID_BYTES || strspn(s, "0123456789abcdefABCDEF") != strlen(s))
        return -EINVAL;
    for (size_t i = 0; i < SERVERID_BYTES; i++) {
        char byte[3] = {s[2 * i], s[2 * i + 1], '\0'};
        out[i] = (uint8_t)strtoul(byte, NULL, 16);
    }
    return 0;
}

static void show(const char *who, int r, const uint8_t id[SERVERID_BYTES]) {
    char s[SERVERID_STRING_MAX];

    if (r < 0) {
        const char *name = strerrorname_np(-r);
        printf("%s: -%s\n", who, name ? name : "?");
        return;
    }
    serverid_to_string(id, s);
    printf("%s: %s\n", who, s);
}

/* Gives this process its own view of /etc/machine-id: FILE bound over it,
 * or none at all, or (DIR) a directory in its place. */
static int private_machine_id(const char *file, int dir) {
    if (unshare(CLONE_NEWNS) < 0)
        return -errno;
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -errno;
    if (file)
        return mount(file, SERVERID_MACHINE_ID_PATH, NULL, MS_BIND, NULL) < 0 ? -errno : 0;
    if (mount("serverid-check", "/etc", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0)
        return -errno;
    return dir && mkdir(SERVERID_MACHINE_ID_PATH, 0755) < 0 ? -errno : 0;
}

int main(int argc, char **argv) {
    uint8_t app[SERVERID_BYTES], ours[SERVERID_BYTES] = {0};
    sd_id128_t theirs = SD_ID128_NULL;
    const char *file = NULL;
    int hide = 0, dir = 0;

    memcpy(app, WHOCONN_APP_ID.bytes, sizeof app);
    if (argc == 4 && strcmp(argv[1], "--app-specific") == 0) {
        uint8_t base[SERVERID_BYTES];
        if (parse_hex(argv[2], base) < 0 || parse_hex(argv[3], app) < 0) {
            fprintf(stderr, "serverid-check: ids are 32 hexadecimal digits\n");
            return 2;
        }
        serverid_app_specific(base, app, ours);
        show("serverid", 0, ours);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--bench") == 0) {
        long n = strtol(argv[2], NULL, 10);
        struct timespec t0, t1;
        int r = 0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (long i = 0; i < n && r == 0; i++)
            r = serverid_get(app, ours);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (r < 0 || n <= 0)
            return 1;
        printf("serverid_get() over %ld calls: mean %.2f us\n", n,
               ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3 /
                   (double)n);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--machine-id-file") == 0 && i + 1 < argc)
            file = argv[++i];
        else if (strcmp(argv[i], "--no-machine-id") == 0)
            hide = 1;
        else if (strcmp(argv[i], "--machine-id-dir") == 0)
            hide = dir = 1;
        else if (strcmp(argv[i], "--app-id") == 0 && i + 1 < argc && parse_hex(argv[i + 1], app) == 0)
            i++;
        else {
            fprintf(stderr, "usage: serverid-check [--machine-id-file FILE | --no-machine-id | "
                            "--machine-id-dir] [--app-id HEX]\n"
                            "       serverid-check --app-specific BASEHEX APPHEX\n"
                            "       serverid-check --bench N\n");
            return 2;
        }
    }
    if (file || hide) {
        int r = private_machine_id(file, dir);
        if (r < 0) {
            printf("skip: cannot make a private /etc/machine-id: %s\n", strerror(-r));
            return 77;
        }
    }

    sd_id128_t app_sd;
    memcpy(app_sd.bytes, app, sizeof app);
    int ro = serverid_get(app, ours);
    int rt = sd_id128_get_machine_app_specific(app_sd, &theirs);
    show("serverid", ro, ours);
    show("libsystemd", rt, theirs.bytes);
    if (ro != rt)
        return 1;
    return ro < 0 || memcmp(ours, theirs.bytes, sizeof ours) == 0 ? 0 : 1;
}
