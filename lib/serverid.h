/*
 * serverid.h - the id WHERE answers.
 *
 * Contract:
 *  - server_id_derive(out) writes this machine's server id: libsystemd's
 *    sd_id128_get_machine_app_specific() of /etc/machine-id with
 *    WHOCONN_APP_ID, as a lowercase RFC 4122 UUID: the same on every call,
 *    across restarts and reboots, different between machines, and the raw
 *    machine id never leaves the host.  0, or a negative errno when the
 *    machine id cannot be read (or libsystemd cannot be loaded).
 *  - server_id_parse(s, out) accepts a configured id (8-4-4-4-12 hex digits
 *    in any case) and writes it lowercase; -EINVAL otherwise.
 */
#ifndef WHOCONN_SERVERID_H
#define WHOCONN_SERVERID_H

#include "util.h"

int server_id_derive(char out[UUID_STR_LEN]);
int server_id_parse(const char *s, char out[UUID_STR_LEN]);

#endif /* WHOCONN_SERVERID_H */
