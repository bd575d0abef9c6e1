/*
 * cli.c - shared checks of command-line and environment settings
 * (contract in cli.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "../whoconn.h"
#include "cli.h"
#include "util.h"

/* getopt_long()'s value for settings[i]: past every char, so that it
 * never meets 'h', 'V' or '?'. */
#define CLI_SETTING_VAL 256

/* What getopt_long() returned that is not a setting: --help, --version,
 * or an unknown option or one without its value. */
static int cli_other(int c, const char *prog, char **argv, void (*usage)(FILE *),
                     const char *built_with) {
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

static int cli_no_operands(const char *prog, int argc, char **argv) {
    if (optind >= argc)
        return 0;
    fprintf(stderr, "%s: unexpected argument: %s\n", prog, argv[optind]);
    return -EINVAL;
}

int cli_parse(const char *prog, int argc, char **argv, struct cli_setting *settings, size_t n,
              void (*usage)(FILE *), const char *built_with) {
    struct option opts[CLI_SETTINGS_MAX + 3] = {{0}};
    int c;

    if (n > CLI_SETTINGS_MAX) {
        fprintf(stderr, "%s: more than %d settings\n", prog, CLI_SETTINGS_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        opts[i] = (struct option){settings[i].option + 2, required_argument, NULL,
                                  CLI_SETTING_VAL + (int)i};
        settings[i].value = settings[i].env ? getenv(settings[i].env) : NULL;
        settings[i].from = settings[i].env;
    }
    opts[n] = (struct option){"help", no_argument, NULL, 'h'};
    opts[n + 1] = (struct option){"version", no_argument, NULL, 'V'};
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c < CLI_SETTING_VAL || c >= CLI_SETTING_VAL + (int)n)
            return cli_other(c, prog, argv, usage, built_with);
        settings[c - CLI_SETTING_VAL].value = optarg;
        settings[c - CLI_SETTING_VAL].from = settings[c - CLI_SETTING_VAL].option;
    }
    return cli_no_operands(prog, argc, argv);
}

int cli_seconds_as(const char *prog, const char *what, const char *value, unsigned min,
                   const char *min_what, unsigned max, unsigned *ret) {
    char minbuf[16];

    if (!value || parse_uint(value, min, max, ret) == 0)
        return 0;
    if (!min_what) {
        snprintf(minbuf, sizeof minbuf, "%u", min);
        min_what = minbuf;
    }
    fprintf(stderr, "%s: %s \"%s\" is not a number of seconds from %s to %u\n", prog, what, value,
            min_what, max);
    return -EINVAL;
}

int cli_seconds(const char *prog, const char *from, const char *value, unsigned min,
                unsigned max, unsigned *ret) {
    char what[64];

    snprintf(what, sizeof what, "%s:", from);
    return cli_seconds_as(prog, what, value, min, NULL, max, ret);
}

int cli_db(const char *prog, const char *value, char *buf, size_t size, const char **ret) {
    if (value && !*value) {
        fprintf(stderr, "%s: the registry path (--db, WHOCONN_DB) is empty\n", prog);
        return -EINVAL;
    }
    *ret = value ? value : db_default(buf, size);
    return 0;
}
