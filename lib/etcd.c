/*
 * etcd.c - etcd v3 over its JSON gateway, with libcurl and jansson
 * (contract in etcd.h).
 *
 * The gateway maps each gRPC call to a POST of a JSON body: keys and values
 * travel base64-encoded (protobuf bytes), every int64 as a string, and
 * zero values are left out.  Unary calls run on one easy handle, one at a
 * time, each bounded by ETCD_CALL_TIMEOUT_MS; the watch stream is a second
 * handle on a multi handle, driven by the caller's loop.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "etcd.h"

/* Bounds on what a member can make the client hold: one reply, or one
 * line of the watch stream. */
#define ETCD_BODY_MAX (1 << 20)

/* etcd's simple tokens are 16 random letters plus a revision; JWTs a few
 * hundred bytes. */
#define ETCD_TOKEN_MAX 2048

/* Of a reply in plain text (a proxy's, say), the log gets the first line
 * up to this many bytes. */
#define ETCD_TEXT_LINE_MAX 127

/* A key in base64, with its NUL. */
#define ETCD_KEY64_MAX (4 * ((ETCD_KEY_MAX + 2) / 3) + 1)

/* Watch connections: TCP keepalive finds a member's host that vanished
 * without a FIN (idle seconds before the first probe, then between). */
#define ETCD_WATCH_KEEPIDLE_S 2L
#define ETCD_WATCH_KEEPINTVL_S 1L

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

/* ---- small helpers ----------------------------------------------------- */

static int buf_append(struct buf *b, const char *data, size_t n, size_t max) {
    if (b->len + n + 1 > max)
        return -EMSGSIZE;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->data, cap);
        if (!p)
            return -ENOMEM;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static void buf_free(struct buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

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
static int json_int64(json_t *obj, const char *name, long long *ret) {
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
static int json_set_key(json_t *obj, const char *name, const char *key) {
    char k64[ETCD_KEY64_MAX];

    if (strlen(key) > ETCD_KEY_MAX || b64_encode(key, strlen(key), k64, sizeof k64) < 0)
        return -ENAMETOOLONG;
    return json_object_set_new(obj, name, json_string(k64)) < 0 ? -ENOMEM : 0;
}

/* Adds "name": "N", as the gateway takes an int64. */
static int json_set_int64(json_t *obj, const char *name, long long v) {
    char s[32];

    snprintf(s, sizeof s, "%lld", v);
    return json_object_set_new(obj, name, json_string(s)) < 0 ? -ENOMEM : 0;
}

/* Decodes one mvccpb.KeyValue and hands it to fn; one whose key or value
 * is not base64, or whose key is too long, is skipped. */
static void kv_deliver(json_t *kv, bool deleted, etcd_kv_fn *fn, void *user) {
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
    json_int64(kv, "mod_revision", &out.mod_revision);
    fn(user, &out);
    free(val);
}

/* ---- one call ------------------------------------------------------------- */

static size_t body_cb(char *data, size_t size, size_t n, void *user) {
    return buf_append(user, data, size * n, ETCD_BODY_MAX) < 0 ? 0 : size * n;
}

/* The options every handle to etcd carries: the TLS files (libcurl reads
 * them at each new connection, so renewed certificates are picked up
 * without a restart) and the headers, which hold the auth token. */
static void http_setup(struct etcd *e, CURL *h) {
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, e->headers);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)ETCD_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (e->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, e->ca_file);
#if LIBCURL_VERSION_NUM >= 0x075700
    /* libcurl would keep the CAs it read for a day; new connections are
     * rare (start, failover), so read them afresh each time */
    curl_easy_setopt(h, CURLOPT_CA_CACHE_TIMEOUT, 0L);
#endif
    if (e->cert_file) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, e->cert_file);
        curl_easy_setopt(h, CURLOPT_SSLKEY, e->key_file);
    }
}

/* Rebuilds the header list with the current token.  The watch uses the
 * list too: it is stopped first (the caller restarts it, with the new
 * token). */
static int headers_build(struct etcd *e) {
    char auth[ETCD_TOKEN_MAX + 32];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");

    /* fail at once on a member that knows it has no leader */
    if (h)
        h = curl_slist_append(h, "Grpc-Metadata-hasleader: true");
    if (h && e->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: %s", e->token);
        h = curl_slist_append(h, auth);
    }
    if (!h)
        return -ENOMEM;
    etcd_watch_stop(e);
    curl_slist_free_all(e->headers);
    e->headers = h;
    curl_easy_setopt(e->http, CURLOPT_HTTPHEADER, e->headers);
    return 0;
}

/* What a failed transfer means, in errno's terms. */
static int curl_error(CURLcode rc, const char *words) {
    switch (rc) {
    case CURLE_OK:
        return 0;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_WRITE_ERROR:
        return -EMSGSIZE;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CLIENTCERT:
        return -EPROTO;
    default:
        /* a server that refuses our certificate (or its absence) may say
         * so only after the handshake, on the first read or write */
        return strstr(words, "SSL") ? -EPROTO : -ECONNREFUSED;
    }
}

/* Says why a member refused a request: what (a phrase), the HTTP status,
 * and etcd's own words from the reply, {"error": "etcdserver: ...", ...},
 * or a plain-text reply's first line, printable bytes only, cut short. */
static void refusal_words(const struct buf *body, const char *what, long status, char *out,
                          size_t size) {
    json_t *e = json_loadb(body->data ? body->data : "", body->len, 0, NULL);
    const char *m = json_string_value(json_object_get(e, "error"));
    char line[ETCD_TEXT_LINE_MAX + 1];

    if (!m)
        m = json_string_value(json_object_get(e, "message"));
    if (!m && !e && body->len > 0) {
        size_t i;
        for (i = 0; i < body->len && i < sizeof line - 1 && body->data[i] != '\n'; i++)
            line[i] = isprint((unsigned char)body->data[i]) ? body->data[i] : '?';
        line[i] = '\0';
        m = line;
    }
    snprintf(out, size, "%s (HTTP %ld: %s)", what, status, m ? m : "no reason given");
    json_decref(e);
}

/* POSTs text to the current endpoint's path and parses the JSON reply
 * into *ret.  Errors as in etcd.h; e->err_text says why, in etcd's or
 * libcurl's words. */
static int http_post(struct etcd *e, const char *path, const char *text, json_t **ret) {
    char url[ETCD_ENDPOINT_LEN + 64];
    struct buf body = {0};
    long status = 0;

    snprintf(url, sizeof url, "%s%s", e->endpoints[e->ep], path);
    e->curl_err[0] = '\0';
    e->err_text[0] = '\0';
    curl_easy_setopt(e->http, CURLOPT_URL, url);
    curl_easy_setopt(e->http, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(e->http, CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(e->http);
    const char *words = e->curl_err[0] ? e->curl_err : curl_easy_strerror(rc);
    int err = curl_error(rc, e->curl_err);
    if (err == -EPROTO)
        snprintf(e->err_text, sizeof e->err_text, "TLS failed: %s", words);
    else if (err == -ECONNREFUSED)
        snprintf(e->err_text, sizeof e->err_text, "not reachable (%s)", words);
    if (err == 0) {
        curl_easy_getinfo(e->http, CURLINFO_RESPONSE_CODE, &status);
        if (status == 401)
            err = -EACCES;
        else if (status == 403)
            err = -EPERM;
        else if (status != 200)
            err = -EREMOTEIO;
    }
    if (err == -EACCES || err == -EPERM || err == -EREMOTEIO)
        refusal_words(&body,
                      err == -EACCES  ? "authentication refused"
                      : err == -EPERM ? "permission denied"
                                      : "refused the request",
                      status, e->err_text, sizeof e->err_text);
    if (err == 0) {
        *ret = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
        if (!*ret || !json_is_object(*ret)) {
            json_decref(*ret);
            *ret = NULL;
            err = -EBADMSG;
        }
    }
    buf_free(&body);
    return err;
}

/* Gets a token for the user (/v3/auth/authenticate). */
static int authenticate(struct etcd *e) {
    json_t *req = json_pack("{s:s, s:s}", "name", e->user, "password", e->password);
    json_t *resp = NULL;
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;

    json_decref(req);
    if (!text)
        return -ENOMEM;
    int err = http_post(e, "/v3/auth/authenticate", text, &resp);
    free(text);
    const char *token = err == 0 ? json_string_value(json_object_get(resp, "token")) : NULL;
    /* it goes into a header line: printable, no spaces */
    if (err == 0 && (!token || !*token || strlen(token) >= sizeof e->token))
        err = -EBADMSG;
    for (const char *c = token; err == 0 && *c; c++)
        if (!isgraph((unsigned char)*c))
            err = -EBADMSG;
    if (err == 0) {
        snprintf(e->token, sizeof e->token, "%s", token);
        err = headers_build(e);
    }
    json_decref(resp);
    return err;
}

/* One etcd call: POSTs req (stolen; NULL: out of memory) and parses the
 * reply into *ret.  With a user, logs in first when there is no token,
 * and once again when etcd refuses the token, then retries the call
 * once. */
static int etcd_call(struct etcd *e, const char *path, json_t *req, json_t **ret) {
    int err = 0;
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;

    json_decref(req);
    if (!text)
        return -ENOMEM;
    bool fresh = e->user && !e->token[0];
    if (fresh)
        err = authenticate(e);
    if (err == 0)
        err = http_post(e, path, text, ret);
    if (err == -EACCES && e->token[0]) {
        e->token[0] = '\0';
        headers_build(e);
        if (!fresh && (err = authenticate(e)) == 0)
            err = http_post(e, path, text, ret);
    }
    free(text);
    return err;
}

/* ---- the client --------------------------------------------------------- */

/* Copies an optional setting: 0, or -1 out of memory. */
static int dup_setting(char **dst, const char *src) {
    *dst = src ? strdup(src) : NULL;
    return src && !*dst ? -1 : 0;
}

int etcd_open(struct etcd **ret, const struct etcd_config *cfg) {
    struct etcd *e;

    if (cfg->nendpoints < 1 || cfg->nendpoints > ETCD_ENDPOINTS_MAX)
        return -EINVAL;
    for (int i = 0; i < cfg->nendpoints; i++)
        if (strlen(cfg->endpoints[i]) >= ETCD_ENDPOINT_LEN)
            return -EINVAL;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return -EIO;
    e = calloc(1, sizeof *e);
    if (!e) {
        curl_global_cleanup();
        return -ENOMEM;
    }
    for (int i = 0; i < cfg->nendpoints; i++)
        snprintf(e->endpoints[i], sizeof e->endpoints[i], "%s", cfg->endpoints[i]);
    e->nendpoints = cfg->nendpoints;
    int nomem = dup_setting(&e->ca_file, cfg->ca_file) + dup_setting(&e->cert_file, cfg->cert_file) +
                dup_setting(&e->key_file, cfg->key_file) + dup_setting(&e->user, cfg->user) +
                dup_setting(&e->password, cfg->password);
    e->http = curl_easy_init();
    e->multi = curl_multi_init();
    if (nomem < 0 || !e->http || !e->multi || headers_build(e) < 0) {
        etcd_close(e);
        return -ENOMEM;
    }
    http_setup(e, e->http);
    curl_easy_setopt(e->http, CURLOPT_ERRORBUFFER, e->curl_err);
    curl_easy_setopt(e->http, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(e->http, CURLOPT_TIMEOUT_MS, (long)ETCD_CALL_TIMEOUT_MS);
    *ret = e;
    return 0;
}

void etcd_close(struct etcd *e) {
    if (!e)
        return;
    etcd_watch_stop(e);
    buf_free(&e->wbody);
    buf_free(&e->wline);
    if (e->multi)
        curl_multi_cleanup(e->multi);
    if (e->http)
        curl_easy_cleanup(e->http);
    curl_slist_free_all(e->headers);
    if (e->password)
        explicit_bzero(e->password, strlen(e->password));
    explicit_bzero(e->token, sizeof e->token);
    free(e->ca_file);
    free(e->cert_file);
    free(e->key_file);
    free(e->user);
    free(e->password);
    free(e);
    curl_global_cleanup();
}

const char *etcd_endpoint(const struct etcd *e) {
    return e->endpoints[e->ep];
}

void etcd_failover(struct etcd *e) {
    if (e->nendpoints < 2)
        return;
    e->ep = (e->ep + 1) % e->nendpoints;
    etcd_watch_stop(e); /* the stream must come from the member we trust */
}

const char *etcd_strerror(const struct etcd *e, int err) {
    if (e->err_text[0] &&
        (err == -EPROTO || err == -ECONNREFUSED || err == -EACCES || err == -EPERM || err == -EREMOTEIO))
        return e->err_text;
    switch (err) {
    case -ETIMEDOUT:
        return "timed out";
    case -ECONNREFUSED:
        return "not reachable";
    case -EREMOTEIO:
        return "refused the request (no leader or no quorum)";
    case -EBADMSG:
        return "sent a reply that is not JSON";
    case -ENOLINK:
        return "lease lost";
    case -ECONNRESET:
        return e->watch_err_text[0] ? e->watch_err_text : "the member ended the stream";
    default:
        return strerror(-err);
    }
}

const char *etcd_library_versions(void) {
    static char v[256];

    snprintf(v, sizeof v, "%s, jansson %s", curl_version(), JANSSON_VERSION);
    return v;
}

/* ---- KV --------------------------------------------------------------------- */

int etcd_put(struct etcd *e, const char *key, const char *value, long long lease) {
    json_t *req = json_object(), *resp = NULL;
    size_t vlen = strlen(value);
    char *v64 = malloc(4 * ((vlen + 2) / 3) + 1);
    int err = req && v64 ? json_set_key(req, "key", key) : -ENOMEM;

    if (err == 0) {
        b64_encode(value, vlen, v64, 4 * ((vlen + 2) / 3) + 1);
        err = json_object_set_new(req, "value", json_string(v64)) < 0 ? -ENOMEM : 0;
    }
    if (err == 0 && lease != 0)
        err = json_set_int64(req, "lease", lease);
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
    int err = req ? json_set_key(req, "key", key) : -ENOMEM;

    if (err == 0 && range_end)
        err = json_set_key(req, "range_end", range_end);
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
    if (!hdr || json_int64(hdr, "revision", &rev) < 0) {
        json_decref(resp);
        return -EBADMSG;
    }
    json_t *kvs = json_object_get(resp, "kvs");
    for (i = 0; i < json_array_size(kvs); i++)
        kv_deliver(json_array_get(kvs, i), false, fn, user);
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
    if (err == 0 && json_int64(resp, "count", &n) == -EINVAL)
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
        if (json_int64(r, "ID", &lid) < 0 || json_int64(r, "TTL", &granted) < 0 || lid == 0)
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
        if (!r || json_int64(r, "TTL", &left) < 0 || left <= 0)
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

/* ---- the watch stream ------------------------------------------------------ */

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
        json_int64(r, "compact_revision", &rev) == 0) {
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
            kv_deliver(kv, type && strcmp(type, "DELETE") == 0, e->watch_fn, e->watch_user);
    }
    json_decref(msg);
    return 0;
}

static size_t watch_cb(char *data, size_t size, size_t n, void *user) {
    struct etcd *e = user;
    size_t total = size * n;
    int err = buf_append(&e->wline, data, total, ETCD_BODY_MAX);

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
    int err = create && req ? json_set_key(create, "key", key) : -ENOMEM;

    if (err == 0 && e->watch)
        err = -EBUSY;
    /* the stream carries the token: log in first if there is none yet */
    if (err == 0 && e->user && !e->token[0])
        err = authenticate(e);
    if (err == 0 && range_end)
        err = json_set_key(create, "range_end", range_end);
    if (err == 0)
        err = json_set_int64(create, "start_revision", start_revision);
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
    err = buf_append(&e->wbody, text, strlen(text), ETCD_BODY_MAX);
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
    http_setup(e, e->watch);
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
