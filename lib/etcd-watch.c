/*
 * etcd-watch.c - the watch stream over the JSON gateway: one long POST
 * whose reply is a line of JSON per watch response (contract in etcd.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd-internal.h"

/* Watch connections: TCP keepalive finds a member's host that vanished
 * without a FIN (idle seconds before the first probe, then between). */
#define ETCD_WATCH_KEEPIDLE_S 2L
#define ETCD_WATCH_KEEPINTVL_S 1L

/* Handles one line of the stream: 0, or why the stream must end. */
static int watch_line(struct etcd *e, const char *line, size_t len) {
    json_t *msg = json_loadb(line, len, 0, NULL), *r;
    long long rev;
    size_t i;

    if (!msg)
        return -EBADMSG;
    if (json_object_get(msg, "error")) {
        json_decref(msg);
        return -EREMOTEIO;
    }
    r = json_object_get(msg, "result");
    if (!r) {
        json_decref(msg);
        return -EBADMSG;
    }
    if (json_is_true(json_object_get(r, "canceled")) ||
        etcd_json_int64(r, "compact_revision", &rev) == 0) {
        /* compacted past our revision, or cancelled for lack of a leader */
        json_decref(msg);
        return -ESTALE;
    }
    if (json_is_true(json_object_get(r, "created")))
        e->synced = true;
    json_t *evs = json_object_get(r, "events");
    for (i = 0; i < json_array_size(evs); i++) {
        json_t *ev = json_array_get(evs, i);
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *kv = json_object_get(ev, "kv");
        if (kv)
            etcd_kv_deliver(kv, type && strcmp(type, "DELETE") == 0, e->watch_fn, e->watch_user);
    }
    json_decref(msg);
    return 0;
}

static size_t watch_cb(char *data, size_t size, size_t n, void *user) {
    struct etcd *e = user;
    size_t total = size * n;
    int err = etcd_buf_append(&e->wline, data, total, ETCD_BODY_MAX);

    if (err < 0) {
        e->watch_end = err; /* a line over the bound ends the stream */
        return 0;
    }
    char *nl;
    size_t start = 0;
    while ((nl = memchr(e->wline.data + start, '\n', e->wline.len - start))) {
        size_t len = (size_t)(nl - (e->wline.data + start));
        if (len > 0 && (err = watch_line(e, e->wline.data + start, len)) < 0) {
            e->watch_end = err;
            return 0; /* ends the transfer */
        }
        start += len + 1;
    }
    memmove(e->wline.data, e->wline.data + start, e->wline.len - start);
    e->wline.len -= start;
    return total;
}

int etcd_watch_start(struct etcd *e, const char *key, const char *range_end, long long start_revision,
                     etcd_kv_fn *fn, void *user) {
    char url[ETCD_ENDPOINT_LEN + 16];
    json_t *create = json_object(), *req = json_object();
    int err = create && req ? etcd_json_set_key(create, "key", key) : -ENOMEM;

    if (err == 0 && e->watch)
        err = -EBUSY;
    /* the stream carries the token: log in first if there is none yet */
    if (err == 0 && e->user && !e->token[0])
        err = etcd_login(e);
    if (err == 0 && range_end)
        err = etcd_json_set_key(create, "range_end", range_end);
    if (err == 0)
        err = etcd_json_set_int64(create, "start_revision", start_revision);
    if (err == 0)
        err = json_object_set(req, "create_request", create) < 0 ? -ENOMEM : 0;
    char *text = err == 0 ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(create);
    json_decref(req);
    if (err == 0 && !text)
        err = -ENOMEM;
    if (err < 0)
        return err;
    e->wbody.len = 0;
    err = etcd_buf_append(&e->wbody, text, strlen(text), ETCD_BODY_MAX);
    free(text);
    if (err < 0)
        return err;
    e->watch = curl_easy_init();
    if (!e->watch)
        return -ENOMEM;
    e->watch_fn = fn;
    e->watch_user = user;
    e->watch_end = 0;
    e->watch_curl_err[0] = '\0';
    e->watch_err_text[0] = '\0';
    snprintf(url, sizeof url, "%s/v3/watch", e->endpoints[e->ep]);
    curl_easy_setopt(e->watch, CURLOPT_URL, url);
    curl_easy_setopt(e->watch, CURLOPT_POSTFIELDS, e->wbody.data);
    etcd_http_setup(e, e->watch);
    curl_easy_setopt(e->watch, CURLOPT_ERRORBUFFER, e->watch_curl_err);
    curl_easy_setopt(e->watch, CURLOPT_WRITEFUNCTION, watch_cb);
    curl_easy_setopt(e->watch, CURLOPT_WRITEDATA, e);
    curl_easy_setopt(e->watch, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e->watch, CURLOPT_TCP_KEEPIDLE, ETCD_WATCH_KEEPIDLE_S);
    curl_easy_setopt(e->watch, CURLOPT_TCP_KEEPINTVL, ETCD_WATCH_KEEPINTVL_S);
    if (curl_multi_add_handle(e->multi, e->watch) != CURLM_OK) {
        curl_easy_cleanup(e->watch);
        e->watch = NULL;
        return -ENOMEM;
    }
    return 0;
}

int etcd_watch_run(struct etcd *e) {
    CURLMsg *m;
    int running, left;

    curl_multi_perform(e->multi, &running);
    while ((m = curl_multi_info_read(e->multi, &left)))
        if (m->msg == CURLMSG_DONE && m->easy_handle == e->watch && e->watch_end == 0) {
            e->watch_end = -ECONNRESET;
            snprintf(e->watch_err_text, sizeof e->watch_err_text, "the stream ended (%s)",
                     e->watch_curl_err[0] ? e->watch_curl_err
                     : m->data.result == CURLE_OK ? "the member closed it"
                                                  : curl_easy_strerror(m->data.result));
        }
    return e->watch ? e->watch_end : 0;
}

void etcd_watch_stop(struct etcd *e) {
    if (e->watch) {
        curl_multi_remove_handle(e->multi, e->watch);
        curl_easy_cleanup(e->watch);
        e->watch = NULL;
    }
    e->synced = false;
    e->watch_end = 0;
    e->wline.len = 0;
}

bool etcd_watching(const struct etcd *e) {
    return e->watch != NULL;
}

bool etcd_watch_synced(const struct etcd *e) {
    return e->synced;
}

void etcd_wait(struct etcd *e, int timeout_ms) {
    curl_multi_poll(e->multi, NULL, 0, timeout_ms, NULL);
}

