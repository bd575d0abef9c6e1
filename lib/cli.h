/*
 * cli.h - the command-line conventions the three whoconn programs share:
 * settings from the environment, options over them, every bad value an
 * error on stderr naming the setting (the caller exits 64), never a silent
 * default.
 *
 * Contract: each cli_* check returns 0 when the value is good (or absent,
 * where absent means "the default"), or -EINVAL after printing one line
 * "PROG: ..." on stderr.  They never log to the journal: a program that
 * cannot read its settings has not started.
 */
#ifndef WHOCONN_CLI_H
#define WHOCONN_CLI_H

#include <getopt.h>
#include <stddef.h>
#include <stdio.h>

#include "../whoconn.h"

/* The last rows of every program's getopt_long() table. */
#define CLI_OPTIONS_END                                                                   \
    {"help", no_argument, NULL, 'h'}, {"version", no_argument, NULL, 'V'}, { 0, 0, 0, 0 }

/* Usage lines of the options every program has, options in column 2 and
 * their descriptions in column 28 (each program's own lines align to it). */
#define CLI_USAGE_DB                                                                      \
    "  --db PATH                 the registry (WHOCONN_DB)\n"                              \
    "                            default: $RUNTIME_DIRECTORY/" WHOCONN_DB_NAME ", else "   \
    WHOCONN_DB_DEFAULT "\n"
#define CLI_USAGE_END                                                                     \
    "  --help                    show this help and exit\n"                                \
    "  --version                 show the version and exit\n"

/* What getopt_long() returned that is not the caller's own option:
 * --help (usage on stdout) and --version ("PROG VERSION (BUILT_WITH)") print
 * and return 1 (exit 0); an
 * unknown option or one without its value prints the error and the usage
 * on stderr and returns -EINVAL (exit 64). */
int cli_other(int c, const char *prog, char **argv, void (*usage)(FILE *), const char *built_with);

/* Operands after the options: none are taken. */
int cli_no_operands(const char *prog, int argc, char **argv);

/* A number of seconds from min to max; from names the setting. */
int cli_seconds(const char *prog, const char *from, const char *value, unsigned min,
                unsigned max, unsigned *ret);

/* The registry path: value, or the default when absent (buf holds a
 * built one); an empty value is an error. */
int cli_db(const char *prog, const char *value, char *buf, size_t size, const char **ret);

#endif /* WHOCONN_CLI_H */
