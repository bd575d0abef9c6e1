/*
 * drain.c - read what the peer already sent before closing (contract in
 * drain.h).  Used by whoconn after QUIT or a protocol error, and by
 * whoconn-metrics after its answer.
 */
#define _GNU_SOURCE
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../whoconn.h"
#include "drain.h"
#include "util.h"

/* Reads and discards what the peer already sent, briefly, so that closing
 * sends FIN and the last reply arrives instead of being lost to an RST. */
void drain_input(void) {
    char buf[WHOCONN_READ_BUF];
    size_t total = 0;
    int64_t deadline = now_ms(CLOCK_MONOTONIC) + WHOCONN_DRAIN_MS;

    shutdown(STDOUT_FILENO, SHUT_WR);
    while (total < WHOCONN_DRAIN_MAX) {
        int64_t left = deadline - now_ms(CLOCK_MONOTONIC);
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return;
        ssize_t n = read(STDIN_FILENO, buf, sizeof buf);
        if (n <= 0)
            return;
        total += (size_t)n;
    }
}
