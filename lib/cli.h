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

/* A program takes at most this many settings (whoconn-sync has ten). */
#define CLI_SETTINGS_MAX 16

/* One setting: "--option VALUE" over the environment variable env.
 * cli_parse fills value (NULL: neither gives it) and from, the name of
 * where it came from, for the program's own error messages. */
struct cli_setting {
    const char *option; /* with its "--" */
    const char *env;
    const char *value;
    const char *from;
};

/* The option loop of every program: the environment first, then the
 * command line over it, every option taking a value, plus --help (usage on
 * stdout) and --version ("PROG VERSION (BUILT_WITH)").  Returns 0; 1 when
 * --help or --version was done (exit 0); or -EINVAL after printing the
 * error (and, for an unknown option or one without its value, the usage)
 * on stderr (exit 64).  Operands after the options are an error. */
int cli_parse(const char *prog, int argc, char **argv, struct cli_setting *settings, size_t n,
              void (*usage)(FILE *), const char *built_with);

/* Usage lines of the options every program has, options in column 2 and
 * their descriptions in column 28 (each program's own lines align to it). */
#define CLI_USAGE_DB                                                                      \
    "  --db PATH                 the registry (WHOCONN_DB)\n"                              \
    "                            default: $RUNTIME_DIRECTORY/" WHOCONN_DB_NAME ", else "   \
    WHOCONN_DB_DEFAULT "\n"
#define CLI_USAGE_END                                                                     \
    "  --help                    show this help and exit\n"                                \
    "  --version                 show the version and exit\n"

/* A number of seconds from min to max; from names the setting:
 * "PROG: FROM: "VALUE" is not a number of seconds from MIN to MAX". */
int cli_seconds(const char *prog, const char *from, const char *value, unsigned min,
                unsigned max, unsigned *ret);

/* The same in a program's own words: "PROG: WHAT "VALUE" is not a number
 * of seconds from MIN_WHAT to MAX"; min_what NULL: the number min. */
int cli_seconds_as(const char *prog, const char *what, const char *value, unsigned min,
                   const char *min_what, unsigned max, unsigned *ret);

/* The registry path: value, or the default when absent (buf holds a
 * built one); an empty value is an error. */
int cli_db(const char *prog, const char *value, char *buf, size_t size, const char **ret);

#endif /* WHOCONN_CLI_H */
