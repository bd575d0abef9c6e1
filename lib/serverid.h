/*
 * serverid.h - whoconn's server id (WHERE), derived without libsystemd, so
 * that whoconn is linked fully static and loads nothing per connection.
 *
 * Contract:
 *  - server_id_derive(out) writes this machine's server id, what WHERE
 *    answers: sd_id128_get_machine_app_specific() of /etc/machine-id with
 *    WHOCONN_APP_ID, as a lowercase RFC 4122 UUID: the same on every call,
 *    across restarts and reboots, different between machines; the raw
 *    machine id never leaves the host.  0, or a negative errno when the
 *    machine id cannot be read.
 *  - server_id_parse(s, out) accepts a configured id (8-4-4-4-12 hex
 *    digits in any case) and writes it lowercase; -EINVAL otherwise.
 *  - serverid_get(app_id, id) returns exactly what libsystemd's
 * sd_id128_get_machine_app_specific(app_id, &id) returns, value and error
 * alike, without loading libsystemd, so that whoconn can be linked fully
 * static.  The derivation (systemd 252, src/libsystemd/sd-id128/sd-id128.c
 * and id128-util.c):
 *   1. the machine id is the 16 bytes written as 32 hexadecimal digits in
 *      /etc/machine-id, optionally followed by one LF and nothing else;
 *   2. HMAC-SHA256 keyed by those 16 bytes, over the 16 bytes of the
 *      application id;
 *   3. the first 16 bytes of the MAC, made an RFC 4122 version 4 UUID:
 *      byte 6 = (byte 6 & 0x0f) | 0x40, byte 8 = (byte 8 & 0x3f) | 0x80.
 * The raw machine id never leaves these functions.  HMAC-SHA256 is nettle's
 * (link with -Wl,-Bstatic -lnettle -Wl,-Bdynamic, or plain -lnettle under
 * -static); nothing here allocates, logs or keeps state between calls.
 *
 * Every function returning int returns 0, or a negative errno, as
 * libsystemd's do.  Tested against libsystemd by tests/serverid.bats.
 */
#ifndef WHOCONN_SERVERID_H
#define WHOCONN_SERVERID_H

#include <stddef.h>
#include <stdint.h>

#include "util.h" /* UUID_STR_LEN */

/* Bytes of an id (machine id, application id, server id). */
#define SERVERID_BYTES 16
/* A server id as a lowercase UUID string, with its NUL. */
#define SERVERID_STRING_MAX 37
/* Where libsystemd reads the machine id. */
#define SERVERID_MACHINE_ID_PATH "/etc/machine-id"

/* Parses LEN bytes read from a machine-id file, as libsystemd 252 does:
 * 32 hexadecimal digits (either case), optionally followed by one LF.
 * Returns 0 and sets RET, or:
 *   -ENOMEDIUM  LEN is 0 (an empty file),
 *   -ENOPKG     "uninitialized", with or without LF (systemd's first-boot
 *               marker),
 *   -EINVAL     anything else (a UUID with dashes, CR LF, other lengths, a
 *               byte that is not a hexadecimal digit).
 * (Newer systemd says -EUCLEAN where 252 says -EINVAL; 252 is what Debian 12
 * ships and what tests/serverid.bats compares with.)
 * An all-zero id parses; serverid_read_machine_id() rejects it. */
int serverid_parse_machine_id(const char *buf, size_t len, uint8_t ret[SERVERID_BYTES]);

/* Reads and parses the machine-id file PATH (normally
 * SERVERID_MACHINE_ID_PATH), reading at most 38 bytes as libsystemd does.
 * Returns 0, the negative errno of open() or read() (-ENOENT, -EACCES,
 * -EISDIR, ...), a serverid_parse_machine_id() error, or -ENOMEDIUM for the
 * all-zero id, as sd_id128_get_machine() does. */
int serverid_read_machine_id(const char *path, uint8_t ret[SERVERID_BYTES]);

/* The application-specific id of BASE: steps 2 and 3 above.  Cannot fail.
 * Equals sd_id128_get_app_specific() of newer libsystemd. */
void serverid_app_specific(const uint8_t base[SERVERID_BYTES],
                           const uint8_t app_id[SERVERID_BYTES], uint8_t ret[SERVERID_BYTES]);

/* sd_id128_get_machine_app_specific(APP_ID): the machine id from
 * SERVERID_MACHINE_ID_PATH, then serverid_app_specific().  Returns 0 or a
 * serverid_read_machine_id() error; RET is untouched on error. */
int serverid_get(const uint8_t app_id[SERVERID_BYTES], uint8_t ret[SERVERID_BYTES]);

/* Writes ID as a lowercase 8-4-4-4-12 UUID string into OUT. */
void serverid_to_string(const uint8_t id[SERVERID_BYTES], char out[SERVERID_STRING_MAX]);

int server_id_derive(char out[UUID_STR_LEN]);
int server_id_parse(const char *s, char out[UUID_STR_LEN]);

#endif /* WHOCONN_SERVERID_H */
