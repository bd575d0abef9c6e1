/*
 * proxy.c - the PROXY protocol v2 header (contract in proxy.h).  Checked
 * byte by byte as it arrives, so that a connection that does not start
 * with one is refused on its first wrong byte.
 */
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const unsigned char signature[PROXY_V2_SIG_LEN] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                                          0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* Byte 12: the version (high nibble, must be 2) and the command. */
#define VER_CMD 12
#define VERSION_2 0x20
#define CMD_LOCAL 0x0
#define CMD_PROXY 0x1
/* Byte 13: the address family (high nibble) and the transport. */
#define FAM 13
#define TRANSPORT_STREAM 0x1
#define TRANSPORT_MAX 0x2 /* DGRAM; above: refused by the specification */
/* Bytes 14-15: how many bytes follow, network order. */
#define LEN_HI 14

/* The families a PROXY command may carry, by the high nibble of byte 13:
 * block is the bytes of its two addresses and ports.  A family that is not
 * known (the rest of the table) or has a refusal is refused. */
static const struct family {
    bool known;
    int af;
    size_t addr_len, block;
    const char *refusal;
} families[16] = {
    [0x0] = {true, AF_UNSPEC, 0, 0, NULL},
    [0x1] = {true, AF_INET, 4, 2 * 4 + 2 * 2, NULL},
    [0x2] = {true, AF_INET6, 16, 2 * 16 + 2 * 2, NULL},
    [0x3] = {true, AF_UNIX, 0, 0, "AF_UNIX addresses are not supported"},
};

const char *const proxy_v2_kind_names[] = {
    [PROXY_V2_CLIENT] = "client",
    [PROXY_V2_LOCAL] = "local",
    [PROXY_V2_UNSPEC] = "unspec",
};

/* Checks byte 13 of a PROXY command: 0, or -EPROTO and *why. */
static int check_family(unsigned char fam, const char **why) {
    const struct family *f = &families[fam >> 4];
    unsigned transport = fam & 0x0f;

    if (f->refusal) {
        *why = f->refusal;
        return -EPROTO;
    }
    if (!f->known) {
        *why = "unknown address family";
        return -EPROTO;
    }
    if (transport > TRANSPORT_MAX) {
        *why = "unknown transport";
        return -EPROTO;
    }
    if (f->af != AF_UNSPEC && transport != TRANSPORT_STREAM) {
        *why = "not TCP (datagram or unspecified transport)";
        return -EPROTO;
    }
    return 0;
}

static bool v1_text(const unsigned char *buf, size_t n) {
    static const char v1[] = "PROXY ";
    size_t k = n < sizeof v1 - 1 ? n : sizeof v1 - 1;

    return memcmp(buf, v1, k) == 0;
}

long proxy_v2_length(const unsigned char *buf, size_t n, const char **why) {
    size_t sig = n < PROXY_V2_SIG_LEN ? n : PROXY_V2_SIG_LEN;

    if (memcmp(buf, signature, sig) != 0) {
        *why = v1_text(buf, n) ? "a PROXY v1 (text) header: only v2 is accepted"
                               : "no PROXY v2 signature";
        return -EPROTO;
    }
    if (n > VER_CMD && (buf[VER_CMD] & 0xf0) != VERSION_2) {
        *why = "not version 2";
        return -EPROTO;
    }
    if (n > VER_CMD && (buf[VER_CMD] & 0x0f) > CMD_PROXY) {
        *why = "unknown command";
        return -EPROTO;
    }
    /* LOCAL: the family is ignored, whatever it says (specification) */
    bool proxy = n > VER_CMD && (buf[VER_CMD] & 0x0f) == CMD_PROXY;
    if (proxy && n > FAM && check_family(buf[FAM], why) < 0)
        return -EPROTO;
    if (n < PROXY_V2_FIXED)
        return 0;
    size_t len = (size_t)buf[LEN_HI] << 8 | buf[LEN_HI + 1];
    if (len > PROXY_V2_LEN_MAX) {
        *why = "longer than PROXY_V2_LEN_MAX (" STR(PROXY_V2_LEN_MAX) " bytes after the fixed part)";
        return -EPROTO;
    }
    if (proxy && len < families[buf[FAM] >> 4].block) {
        *why = "too short for its addresses";
        return -EPROTO;
    }
    return (long)(PROXY_V2_FIXED + len);
}

/* The TLVs after the addresses: type (1 byte), length (2), value, to the
 * header's end exactly.  We use none; a malformed list is refused all the
 * same, as a sign of a sender that is not what it claims. */
static int check_tlvs(const unsigned char *p, size_t n, const char **why) {
    size_t off = 0;

    while (off < n) {
        if (n - off < 3) {
            *why = "a TLV cut short";
            return -EPROTO;
        }
        size_t len = (size_t)p[off + 1] << 8 | p[off + 2];
        if (len > n - off - 3) {
            *why = "a TLV longer than the header";
            return -EPROTO;
        }
        off += 3 + len;
    }
    return 0;
}

static void set_addr(struct sockaddr_storage *ss, int af, const unsigned char *addr,
                     const unsigned char *port) {
    memset(ss, 0, sizeof *ss);
    if (af == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)ss;
        in->sin_family = AF_INET;
        memcpy(&in->sin_addr, addr, 4);
        memcpy(&in->sin_port, port, 2); /* both in network order */
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        in6->sin6_family = AF_INET6;
        memcpy(&in6->sin6_addr, addr, 16);
        memcpy(&in6->sin6_port, port, 2);
    }
}

int proxy_v2_parse(const unsigned char *buf, size_t n, struct proxy_v2 *h, const char **why) {
    long len = proxy_v2_length(buf, n, why);

    memset(h, 0, sizeof *h);
    if (len < 0)
        return -EPROTO;
    if (len == 0 || (size_t)len != n) {
        *why = len == 0 || (size_t)len > n ? "incomplete" : "longer than its length field";
        return -EPROTO;
    }
    if ((buf[VER_CMD] & 0x0f) == CMD_LOCAL) {
        h->kind = PROXY_V2_LOCAL;
        return 0;
    }
    const struct family *f = &families[buf[FAM] >> 4];
    if (f->af == AF_UNSPEC) {
        h->kind = PROXY_V2_UNSPEC;
        return 0;
    }
    const unsigned char *a = buf + PROXY_V2_FIXED;
    if (check_tlvs(a + f->block, n - PROXY_V2_FIXED - f->block, why) < 0)
        return -EPROTO;
    h->kind = PROXY_V2_CLIENT;
    set_addr(&h->src, f->af, a, a + 2 * f->addr_len);
    set_addr(&h->dst, f->af, a + f->addr_len, a + 2 * f->addr_len + 2);
    return 0;
}
