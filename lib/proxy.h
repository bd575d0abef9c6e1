/*
 * proxy.h - the PROXY protocol, version 2 (HAProxy's doc/proxy-protocol.txt,
 * section 2.2): the binary header a balancer (HAProxy `send-proxy-v2`)
 * sends first on each connection to say which client it relays.  Only a
 * socket configured for it reads one (whoconn --proxy-protocol v2,
 * whoconn-proxy.socket); everywhere else the header is peer bytes like any
 * other, and refused as such.
 *
 * Contract (pure functions over a byte buffer: no I/O, no allocation, never
 * a read past the n bytes given):
 *  - proxy_v2_length(buf, n) looks at the first n bytes a connection sent
 *    and says how long its header is: > 0, the header's whole length
 *    (PROXY_V2_FIXED + the length field; n may still be shorter: read
 *    more); 0, not known yet (fewer than PROXY_V2_FIXED bytes, all of them
 *    as a header starts); -EPROTO when the bytes cannot start a header we
 *    accept, as early as the first wrong byte, so that a client speaking
 *    the plain protocol to this port is answered at once, not after a
 *    timeout.  *why then says what was wrong, for the log.
 *  - proxy_v2_parse(buf, n, h) parses a complete header of exactly n
 *    bytes (n == proxy_v2_length()): 0 and *h filled, or -EPROTO and *why.
 *    Accepted: version 2; LOCAL (the balancer's own connection, such as a
 *    health check: addresses ignored, whatever they are); PROXY over
 *    IPv4 or IPv6 TCP (the client's and the balancer's addresses); PROXY
 *    with family UNSPEC (the balancer does not know the client: treated as
 *    LOCAL, as the specification allows).  TLVs after the addresses are
 *    skipped, but must be well formed.  Refused: every other version,
 *    command, family or transport, a length too short for its addresses,
 *    or longer than PROXY_V2_LEN_MAX.
 */
#ifndef WHOCONN_PROXY_H
#define WHOCONN_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The fixed part: the 12-byte signature, version and command, family and
 * transport, and the 2-byte length of what follows (network order). */
#define PROXY_V2_SIG_LEN 12
#define PROXY_V2_FIXED 16

/* Most bytes after the fixed part that we accept.  The specification
 * allows 65535; whoconn needs 36 (two IPv6 addresses and ports).  The rest
 * leaves room for the TLVs HAProxy may add (proxy-v2-options: ALPN and
 * authority up to 255 bytes each, unique-id, SSL details, CRC32C), which
 * we skip: 1 KiB, so that a header always fits in one read buffer. */
#ifndef PROXY_V2_LEN_MAX
#define PROXY_V2_LEN_MAX 1024
#endif
#define PROXY_V2_HEADER_MAX (PROXY_V2_FIXED + PROXY_V2_LEN_MAX)

/* What a header says.  kind PROXY_V2_CLIENT: src is the client, dst the
 * address it reached on the balancer.  PROXY_V2_LOCAL and
 * PROXY_V2_UNSPEC: src and dst are AF_UNSPEC; the connection's own peer
 * (getpeername) is the one to name. */
enum proxy_v2_kind { PROXY_V2_CLIENT, PROXY_V2_LOCAL, PROXY_V2_UNSPEC };

struct proxy_v2 {
    enum proxy_v2_kind kind;
    struct sockaddr_storage src, dst;
};

long proxy_v2_length(const unsigned char *buf, size_t n, const char **why);
int proxy_v2_parse(const unsigned char *buf, size_t n, struct proxy_v2 *h, const char **why);

/* The kinds' names, for the log's header= and WHOCONN_PROXY_HEADER=. */
extern const char *const proxy_v2_kind_names[];

#endif /* WHOCONN_PROXY_H */
