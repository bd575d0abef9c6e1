/*
 * peer.c - naming a connection's peer for the log (contract in peer.h).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "peer.h"

void peer_name(struct peer *p, const struct sockaddr_storage *ss) {
    memset(p, 0, sizeof *p);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, p->addr, sizeof p->addr);
        p->port = ntohs(in->sin_port);
        snprintf(p->name, sizeof p->name, "%s:%u", p->addr, p->port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        p->port = ntohs(in6->sin6_port);
        /* an IPv4 client of a dual-stack socket, or of a balancer that
         * wrote it so: a.b.c.d, as systemd names its unit */
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], p->addr, sizeof p->addr);
            snprintf(p->name, sizeof p->name, "%s:%u", p->addr, p->port);
        } else {
            inet_ntop(AF_INET6, &in6->sin6_addr, p->addr, sizeof p->addr);
            snprintf(p->name, sizeof p->name, "[%s]:%u", p->addr, p->port);
        }
    } else {
        snprintf(p->addr, sizeof p->addr, "unix");
        snprintf(p->name, sizeof p->name, "unix");
    }
}

void peer_get(struct peer *p) {
    struct sockaddr_storage ss = {0}; /* getpeername() may fill only part */
    socklen_t len = sizeof ss;

    if (getpeername(STDIN_FILENO, (struct sockaddr *)&ss, &len) < 0) {
        memset(p, 0, sizeof *p);
        snprintf(p->addr, sizeof p->addr, "stdin");
        snprintf(p->name, sizeof p->name, "stdin");
        return;
    }
    peer_name(p, &ss);
}
