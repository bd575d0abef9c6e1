/*
 * serverid.c - the server id of WHERE (contract in serverid.h).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <string.h>

#include <systemd/sd-id128.h>
#include <uuid/uuid.h>

#include "../whoconn.h"
#include "serverid.h"

/* libsystemd is loaded only when WHERE is asked: linking it costs every
 * connection the dynamic loader's work for ten shared objects, and most
 * connections never ask WHERE. */
int server_id_derive(char out[UUID_STR_LEN]) {
    int (*app_specific)(sd_id128_t, sd_id128_t *);
    sd_id128_t id;
    int r;

    void *h = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return -ELIBACC;
    *(void **)&app_specific = dlsym(h, "sd_id128_get_machine_app_specific");
    if (!app_specific) {
        dlclose(h);
        return -ELIBBAD;
    }
    r = app_specific(WHOCONN_APP_ID, &id);
    dlclose(h);
    if (r < 0)
        return r;
    uuid_unparse_lower(id.bytes, out);
    return 0;
}

int server_id_parse(const char *s, char out[UUID_STR_LEN]) {
    uuid_t u;

    if (!s || strlen(s) != 36 || uuid_parse(s, u) < 0)
        return -EINVAL;
    uuid_unparse_lower(u, out);
    return 0;
}
