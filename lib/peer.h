/*
 * peer.h - how the log names a connection's other end: the address the
 * kernel gives for fd 0 (getpeername), or the client a PROXY v2 header
 * names (lib/proxy.h).
 *
 * Contract: peer_name() fills p from an address: "a.b.c.d:port",
 * "[v6]:port", an IPv4 client of a dual-stack socket (::ffff:a.b.c.d) as
 * a.b.c.d, as systemd names its unit, so that one query finds a caller
 * whatever socket it came in on; "unix" for any other family.
 * peer_get() names fd 0's peer, "stdin" when fd 0 is no socket.  Neither
 * logs; both always leave p a valid name.
 */
#ifndef WHOCONN_PEER_H
#define WHOCONN_PEER_H

#include <netinet/in.h>
#include <sys/socket.h>

struct peer {
    char addr[INET6_ADDRSTRLEN]; /* "stdin" when fd 0 is no socket */
    unsigned port;
    char name[INET6_ADDRSTRLEN + 8]; /* addr:port, [addr]:port for IPv6 */
};

void peer_name(struct peer *p, const struct sockaddr_storage *ss);
void peer_get(struct peer *p);

#endif /* WHOCONN_PEER_H */
