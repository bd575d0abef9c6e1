/*
 * etcd.c - the etcd client itself: endpoints and failover, TLS, the login,
 * one call over the JSON gateway, and the words for its errors (contract
 * in etcd.h; KV and leases in etcd-kv.c, the watch in etcd-watch.c).
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "etcd-internal.h"

/* Of a reply in plain text (a proxy's, say), the log gets the first line
 * up to this many bytes. */
#define ETCD_TEXT_LINE_MAX 127

/* ---- buffers ------------------------------------------------------------- */

int etcd_buf_append(struct buf *b, const char *data, size_t n, size_t max) {
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

void etcd_buf_free(struct buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- one call ------------------------------------------------------------- */

static size_t body_cb(char *data, size_t size, size_t n, void *user) {
    return etcd_buf_append(user, data, size * n, ETCD_BODY_MAX) < 0 ? 0 : size * n;
}

/* The options every handle to etcd carries: the TLS files (libcurl reads
 * them at each new connection, so renewed certificates are picked up
 * without a restart) and the headers, which hold the auth token. */
void etcd_http_setup(struct etcd *e, CURL *h) {
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
    etcd_buf_free(&body);
    return err;
}

/* Gets a token for the user (/v3/auth/authenticate). */
int etcd_login(struct etcd *e) {
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
int etcd_call(struct etcd *e, const char *path, json_t *req, json_t **ret) {
    int err = 0;
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;

    json_decref(req);
    if (!text)
        return -ENOMEM;
    bool fresh = e->user && !e->token[0];
    if (fresh)
        err = etcd_login(e);
    if (err == 0)
        err = http_post(e, path, text, ret);
    if (err == -EACCES && e->token[0]) {
        e->token[0] = '\0';
        headers_build(e);
        if (!fresh && (err = etcd_login(e)) == 0)
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
    etcd_http_setup(e, e->http);
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
    etcd_buf_free(&e->wbody);
    etcd_buf_free(&e->wline);
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

