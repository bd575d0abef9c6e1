/*
 * etcd-kv.c - KV and leases over the JSON gateway, and the gateway's
 * encoding of keys, values and int64s (contract in etcd.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "etcd-internal.h"

/* A key in base64, with its NUL. */
#define ETCD_KEY64_MAX (4 * ((ETCD_KEY_MAX + 2) / 3) + 1)

/* ---- the gateway's encoding ------------------------------------------------ */

static int b64_encode(const char *in, size_t n, char *out, size_t size) {
    if (4 * ((n + 2) / 3) + 1 > size)
        return -ENAMETOOLONG;
    EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
    return 0;
}

static int b64_decode(const char *in, char *out, size_t size, size_t *outlen) {
    size_t n = strlen(in);
    if (n % 4 != 0 || n / 4 * 3 + 1 > size)
        return -EINVAL;
    int len = EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)in, (int)n);
    if (len < 0)
        return -EINVAL;
    /* EVP_DecodeBlock counts the padding as zero bytes */
    if (n > 0 && in[n - 1] == '=')
        len--;
    if (n > 1 && in[n - 2] == '=')
        len--;
    out[len] = '\0';
    *outlen = (size_t)len;
    return 0;
}

/* The gateway writes every int64 as a string, and omits zero values. */
int etcd_json_int64(json_t *obj, const char *name, long long *ret) {
    json_t *v = json_object_get(obj, name);
    char *end;

    if (!v)
        return -ENOENT;
    if (json_is_integer(v)) {
        *ret = json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return -EINVAL;
    const char *s = json_string_value(v);
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end)
        return -EINVAL;
    *ret = x;
    return 0;
}

/* Adds "name": base64(key) to obj. */
int etcd_json_set_key(json_t *obj, const char *name, const char *key) {
    char k64[ETCD_KEY64_MAX];

    if (strlen(key) > ETCD_KEY_MAX || b64_encode(key, strlen(key), k64, sizeof k64) < 0)
        return -ENAMETOOLONG;
    return json_object_set_new(obj, name, json_string(k64)) < 0 ? -ENOMEM : 0;
}

/* Adds "name": "N", as the gateway takes an int64. */
int etcd_json_set_int64(json_t *obj, const char *name, long long v) {
    char s[32];

    snprintf(s, sizeof s, "%lld", v);
    return json_object_set_new(obj, name, json_string(s)) < 0 ? -ENOMEM : 0;
}

/* Decodes one mvccpb.KeyValue and hands it to fn; one whose key or value
 * is not base64, or whose key is too long, is skipped. */
void etcd_kv_deliver(json_t *kv, bool deleted, etcd_kv_fn *fn, void *user) {
    const char *k64 = json_string_value(json_object_get(kv, "key"));
    const char *v64 = json_string_value(json_object_get(kv, "value"));
    char key[ETCD_KEY_MAX + 1], *val = NULL;
    struct etcd_kv out = {.key = key};

    if (!k64 || b64_decode(k64, key, sizeof key, &out.key_len) < 0)
        return;
    if (!deleted) {
        size_t size = (v64 ? strlen(v64) : 0) / 4 * 3 + 1;
        val = malloc(size);
        if (!val)
            return;
        if (!v64)
            val[0] = '\0'; /* an empty value is left out */
        else if (b64_decode(v64, val, size, &out.value_len) < 0) {
            free(val);
            return;
        }
        out.value = val;
    }
    etcd_json_int64(kv, "mod_revision", &out.mod_revision);
    fn(user, &out);
    free(val);
}

/* ---- KV --------------------------------------------------------------------- */

int etcd_put(struct etcd *e, const char *key, const char *value, long long lease) {
    json_t *req = json_object(), *resp = NULL;
    size_t vlen = strlen(value);
    char *v64 = malloc(4 * ((vlen + 2) / 3) + 1);
    int err = req && v64 ? etcd_json_set_key(req, "key", key) : -ENOMEM;

    if (err == 0) {
        b64_encode(value, vlen, v64, 4 * ((vlen + 2) / 3) + 1);
        err = json_object_set_new(req, "value", json_string(v64)) < 0 ? -ENOMEM : 0;
    }
    if (err == 0 && lease != 0)
        err = etcd_json_set_int64(req, "lease", lease);
    free(v64);
    if (err < 0) {
        json_decref(req);
        return err;
    }
    err = etcd_call(e, "/v3/kv/put", req, &resp);
    json_decref(resp);
    return err;
}

/* A range request: key, range_end (NULL: none), and count_only. */
static int range_request(const char *key, const char *range_end, bool count_only, json_t **ret) {
    json_t *req = json_object();
    int err = req ? etcd_json_set_key(req, "key", key) : -ENOMEM;

    if (err == 0 && range_end)
        err = etcd_json_set_key(req, "range_end", range_end);
    if (err == 0 && count_only)
        err = json_object_set_new(req, "count_only", json_true()) < 0 ? -ENOMEM : 0;
    if (err < 0) {
        json_decref(req);
        return err;
    }
    *ret = req;
    return 0;
}

int etcd_range(struct etcd *e, const char *key, const char *range_end, etcd_kv_fn *fn, void *user,
               long long *revision) {
    json_t *req = NULL, *resp = NULL;
    long long rev = 0;
    size_t i;
    int err = range_request(key, range_end, false, &req);

    if (err == 0)
        err = etcd_call(e, "/v3/kv/range", req, &resp);
    if (err < 0)
        return err;
    json_t *hdr = json_object_get(resp, "header");
    if (!hdr || etcd_json_int64(hdr, "revision", &rev) < 0) {
        json_decref(resp);
        return -EBADMSG;
    }
    json_t *kvs = json_object_get(resp, "kvs");
    for (i = 0; i < json_array_size(kvs); i++)
        etcd_kv_deliver(json_array_get(kvs, i), false, fn, user);
    json_decref(resp);
    *revision = rev;
    return 0;
}

int etcd_count(struct etcd *e, const char *key, const char *range_end, long long *count) {
    json_t *req = NULL, *resp = NULL;
    long long n = 0;
    int err = range_request(key, range_end, true, &req);

    if (err == 0)
        err = etcd_call(e, "/v3/kv/range", req, &resp);
    if (err == 0 && !json_object_get(resp, "header"))
        err = -EBADMSG;
    if (err == 0 && etcd_json_int64(resp, "count", &n) == -EINVAL)
        err = -EBADMSG;
    json_decref(resp);
    if (err == 0)
        *count = n;
    return err;
}

int etcd_prefix_end(const char *prefix, char *out, size_t size) {
    size_t n = strlen(prefix);

    if (n == 0)
        return -EINVAL;
    if (n >= size)
        return -ENAMETOOLONG;
    memcpy(out, prefix, n + 1);
    out[n - 1]++;
    return 0;
}

/* ---- leases ------------------------------------------------------------ */

int etcd_lease_grant(struct etcd *e, unsigned ttl, long long *id) {
    json_t *resp = NULL;
    long long lid = 0, granted = 0;
    int err = etcd_call(e, "/v3/lease/grant", json_pack("{s:I}", "TTL", (json_int_t)ttl), &resp);

    if (err == 0) {
        json_t *r = json_object_get(resp, "result") ? json_object_get(resp, "result") : resp;
        if (etcd_json_int64(r, "ID", &lid) < 0 || etcd_json_int64(r, "TTL", &granted) < 0 || lid == 0)
            err = -EBADMSG;
    }
    json_decref(resp);
    if (err == 0)
        *id = lid;
    return err;
}

/* etcd answers 200 without a TTL for a lease it no longer knows. */
int etcd_lease_keepalive(struct etcd *e, long long id, long long *ttl) {
    char sid[32];
    json_t *resp = NULL;
    long long left = 0;

    snprintf(sid, sizeof sid, "%lld", id);
    int err = etcd_call(e, "/v3/lease/keepalive", json_pack("{s:s}", "ID", sid), &resp);
    if (err == 0) {
        json_t *r = json_object_get(resp, "result");
        if (!r || etcd_json_int64(r, "TTL", &left) < 0 || left <= 0)
            err = -ENOLINK;
    }
    json_decref(resp);
    if (err == 0)
        *ttl = left;
    return err;
}

int etcd_lease_revoke(struct etcd *e, long long id) {
    char sid[32];
    json_t *resp = NULL;

    snprintf(sid, sizeof sid, "%lld", id);
    int err = etcd_call(e, "/v3/lease/revoke", json_pack("{s:s}", "ID", sid), &resp);
    json_decref(resp);
    return err;
}

