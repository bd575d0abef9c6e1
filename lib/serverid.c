/*
 * serverid.c - whoconn's server id without libsystemd: the machine id as
 * systemd reads it, HMAC-SHA256 (nettle) over the application id, made a v4
 * UUID.  The contract, and the systemd source it follows, is in serverid.h.
 */
#define _GNU_SOURCE /* explicit_bzero */
#include "serverid.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <nettle/hmac.h>
#include <systemd/sd-id128.h> /* SD_ID128_MAKE, in WHOCONN_APP_ID: the header only */
#include <uuid/uuid.h>

#include "../whoconn.h"

/* libsystemd reads one byte more than the longest form it accepts (a UUID
 * and LF, 37 bytes), so that anything longer is seen to be too long. */
#define SERVERID_READ_MAX 38
#define SERVERID_HEX_LEN ((size_t)2 * SERVERID_BYTES)
#define SERVERID_UNINIT "uninitialized\n"

static int hexval(char c) {
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int serverid_parse_machine_id(const char *buf, size_t len, uint8_t ret[SERVERID_BYTES]) {
    uint8_t id[SERVERID_BYTES];

    if (len == 0)
        return -ENOMEDIUM;
    /* "uninitialized", with or without its LF (systemd's first-boot marker) */
    if ((len == sizeof SERVERID_UNINIT - 2 || len == sizeof SERVERID_UNINIT - 1) &&
        memcmp(buf, SERVERID_UNINIT, len) == 0)
        return -ENOPKG;
    if (len == SERVERID_HEX_LEN + 1 && buf[SERVERID_HEX_LEN] != '\n')
        return -EINVAL;
    /* the UUID form (36 or 37 bytes) is valid only for boot ids, not here */
    if (len != SERVERID_HEX_LEN && len != SERVERID_HEX_LEN + 1)
        return -EINVAL;
    for (size_t i = 0; i < SERVERID_BYTES; i++) {
        int hi = hexval(buf[2 * i]), lo = hexval(buf[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            explicit_bzero(id, sizeof id);
            return -EINVAL;
        }
        id[i] = (uint8_t)(hi << 4 | lo);
    }
    memcpy(ret, id, sizeof id);
    explicit_bzero(id, sizeof id);
    return 0;
}

int serverid_read_machine_id(const char *path, uint8_t ret[SERVERID_BYTES]) {
    static const uint8_t null_id[SERVERID_BYTES];
    char buf[SERVERID_READ_MAX];
    uint8_t id[SERVERID_BYTES];
    size_t len = 0;
    int err = 0;

    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    /* read until full or EOF; an error after some bytes ends the read with
     * what came, as systemd's loop_read() does */
    while (len < sizeof buf) {
        ssize_t n = read(fd, buf + len, sizeof buf - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (len == 0)
                err = -errno;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    if (err == 0)
        err = serverid_parse_machine_id(buf, len, id);
    if (err == 0 && memcmp(id, null_id, sizeof id) == 0)
        err = -ENOMEDIUM;
    if (err == 0)
        memcpy(ret, id, sizeof id);
    explicit_bzero(buf, sizeof buf);
    explicit_bzero(id, sizeof id);
    return err;
}

void serverid_app_specific(const uint8_t base[SERVERID_BYTES],
                           const uint8_t app_id[SERVERID_BYTES], uint8_t ret[SERVERID_BYTES]) {
    struct hmac_sha256_ctx ctx;
    uint8_t mac[SHA256_DIGEST_SIZE];

    hmac_sha256_set_key(&ctx, SERVERID_BYTES, base);
    hmac_sha256_update(&ctx, SERVERID_BYTES, app_id);
    hmac_sha256_digest(&ctx, sizeof mac, mac);
    memcpy(ret, mac, SERVERID_BYTES);
    ret[6] = (uint8_t)((ret[6] & 0x0f) | 0x40); /* version 4 */
    ret[8] = (uint8_t)((ret[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    explicit_bzero(&ctx, sizeof ctx);
    explicit_bzero(mac, sizeof mac);
}

int serverid_get(const uint8_t app_id[SERVERID_BYTES], uint8_t ret[SERVERID_BYTES]) {
    uint8_t machine[SERVERID_BYTES];
    int err = serverid_read_machine_id(SERVERID_MACHINE_ID_PATH, machine);

    if (err == 0)
        serverid_app_specific(machine, app_id, ret);
    explicit_bzero(machine, sizeof machine);
    return err;
}

void serverid_to_string(const uint8_t id[SERVERID_BYTES], char out[SERVERID_STRING_MAX]) {
    static const char hex[] = "0123456789abcdef";
    size_t k = 0;

    for (size_t i = 0; i < SERVERID_BYTES; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[k++] = '-';
        out[k++] = hex[id[i] >> 4];
        out[k++] = hex[id[i] & 0x0f];
    }
    out[k] = '\0';
}

_Static_assert(UUID_STR_LEN == SERVERID_STRING_MAX, "one length for a UUID string");

int server_id_derive(char out[UUID_STR_LEN]) {
    static const sd_id128_t app = WHOCONN_APP_ID;
    uint8_t id[SERVERID_BYTES] = {0};
    int r = serverid_get(app.bytes, id);

    if (r < 0)
        return r;
    serverid_to_string(id, out);
    return 0;
}

int server_id_parse(const char *s, char out[UUID_STR_LEN]) {
    uuid_t u;

    if (!s || strlen(s) != 36 || uuid_parse(s, u) < 0)
        return -EINVAL;
    uuid_unparse_lower(u, out);
    return 0;
}
