/*
 * etcd-internal.h - what lib/etcd.c, lib/etcd-kv.c and lib/etcd-watch.c
 * share: the client's state and the helpers of the JSON gateway.  Not part
 * of the contract (that is etcd.h); nothing else includes it.
 *
 * The gateway maps each gRPC call to a POST of a JSON body: keys and values
 * travel base64-encoded (protobuf bytes), every int64 as a string, and
 * zero values are left out.  Unary calls run on one easy handle, one at a
 * time, each bounded by ETCD_CALL_TIMEOUT_MS; the watch stream is a second
 * handle on a multi handle, driven by the caller's loop.
 */
#ifndef WHOCONN_ETCD_INTERNAL_H
#define WHOCONN_ETCD_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <curl/curl.h>
#include <jansson.h>

#include "etcd.h"

/* Bounds on what a member can make the client hold: one reply, or one
 * line of the watch stream. */
#define ETCD_BODY_MAX (1 << 20)

/* etcd's simple tokens are 16 random letters plus a revision; JWTs a few
 * hundred bytes. */
#define ETCD_TOKEN_MAX 2048

struct buf {
    char *data;
    size_t len, cap;
};

struct etcd {
    char endpoints[ETCD_ENDPOINTS_MAX][ETCD_ENDPOINT_LEN];
    int nendpoints;
    int ep; /* endpoint in use */
    /* NULL: not used */
    char *ca_file, *cert_file, *key_file, *user, *password;
    char token[ETCD_TOKEN_MAX]; /* "": not logged in (yet) */
    char curl_err[CURL_ERROR_SIZE];
    char err_text[CURL_ERROR_SIZE + 64]; /* why the last failed call failed */

    CURL *http;
    struct curl_slist *headers;
    CURLM *multi;

    /* the watch stream */
    CURL *watch;
    struct buf wbody;    /* request body, kept alive for the transfer */
    struct buf wline;    /* partial line of the stream */
    bool synced;         /* etcd confirmed the watch */
    int watch_end;       /* 0: running; else why it ended */
    etcd_kv_fn *watch_fn;
    void *watch_user;
    char watch_curl_err[CURL_ERROR_SIZE];
    char watch_err_text[CURL_ERROR_SIZE + 64];
};

/* lib/etcd.c: buffers, the options of every handle, one call (req stolen,
 * NULL: out of memory; errors as in etcd.h), and the login. */
int etcd_buf_append(struct buf *b, const char *data, size_t n, size_t max);
void etcd_buf_free(struct buf *b);
void etcd_http_setup(struct etcd *e, CURL *h);
int etcd_call(struct etcd *e, const char *path, json_t *req, json_t **ret);
int etcd_login(struct etcd *e);

/* lib/etcd-kv.c: the gateway's encoding.  An int64 from a string or a
 * number (-ENOENT: left out, -EINVAL); "name": base64(key), or
 * -ENAMETOOLONG; "name": "N"; one mvccpb.KeyValue decoded and handed to
 * fn (skipped when its key or value is not base64, or the key too long). */
int etcd_json_int64(json_t *obj, const char *name, long long *ret);
int etcd_json_set_key(json_t *obj, const char *name, const char *key);
int etcd_json_set_int64(json_t *obj, const char *name, long long v);
void etcd_kv_deliver(json_t *kv, bool deleted, etcd_kv_fn *fn, void *user);

#endif /* WHOCONN_ETCD_INTERNAL_H */
