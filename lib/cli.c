/*
 * cli.c - shared checks of command-line and environment settings
 * (contract in cli.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../whoconn.h"
#include "cli.h"
#include "util.h"

int cli_other(int c, const char *prog, char **argv, void (*usage)(FILE *), const char *built_with) {
    if (c == 'h') {
        usage(stdout);
        return 1;
    }
    if (c == 'V') {
        printf("%s %s (%s)\n", prog, WHOCONN_VERSION, built_with);
        return 1;
    }
    if (optopt && strncmp(argv[optind - 1], "--", 2) != 0)
        fprintf(stderr, "%s: unknown or incomplete option: -%c\n", prog, optopt);
    else
        fprintf(stderr, "%s: unknown or incomplete option: %s\n", prog, argv[optind - 1]);
    usage(stderr);
    return -EINVAL;
}

int cli_no_operands(const char *prog, int argc, char **argv) {
    if (optind >= argc)
        return 0;
    fprintf(stderr, "%s: unexpected argument: %s\n", prog, argv[optind]);
    return -EINVAL;
}

int cli_seconds(const char *prog, const char *from, const char *value, unsigned min,
                unsigned max, unsigned *ret) {
    if (!value || parse_uint(value, min, max, ret) == 0)
        return 0;
    fprintf(stderr, "%s: %s: \"%s\" is not a number of seconds from %u to %u\n", prog, from, value,
            min, max);
    return -EINVAL;
}

int cli_db(const char *prog, const char *value, char *buf, size_t size, const char **ret) {
    if (value && !*value) {
        fprintf(stderr, "%s: the registry path (--db, WHOCONN_DB) is empty\n", prog);
        return -EINVAL;
    }
    *ret = value ? value : db_default(buf, size);
    return 0;
}
