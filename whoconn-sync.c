/*
 * whoconn-sync - the cluster agent of whoconn: makes WHO count the clients
 * of every available server, not only this one.
 *
 * One long-running process per server, started by whoconn-sync.service
 * (Type=notify, with a watchdog), next to the socket-activated whoconn
 * connection processes.  It talks to etcd's v3 JSON gateway over HTTP or
 * HTTPS (libcurl, jansson; a CA file, a client certificate and an etcd
 * user may be set) and to the local SQLite registry:
 *
 *   - it publishes this server's local count (rows in `conn`) under
 *     PREFIX/<server id>, attached to a lease that it keeps alive, and puts
 *     it again only when the count changes;
 *   - it reads the prefix once and then watches it, and mirrors the other
 *     servers' counts into the registry's `peer` table, each row valid
 *     until now + the staleness bound;
 *   - it sweeps `conn` rows whose process is gone, so the published count
 *     is exact even when nobody asks WHO here;
 *   - on SIGTERM it revokes its lease, so that a planned stop is exact for
 *     the other servers at once.
 *
 * The connection processes never touch the network: WHO = local rows +
 * peer rows not yet expired.  If this agent dies, or loses etcd's quorum,
 * the peer rows stop being refreshed and age out by themselves after the
 * staleness bound; a peer whose agent or host dies loses its lease, and
 * etcd deletes its key after the lease TTL.  DESIGN.md has the argument.
 *
 * It links whoconn's registry module (lib/registry.c), so the schema, the
 * liveness check and the sweep have one definition.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "whoconn.h"
#include "lib/log.h"
#include "lib/registry.h"
#include "lib/serverid.h"
#include "lib/util.h"

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <systemd/sd-daemon.h>

/* ---- limits and defaults --------------------------------------------- */

/* Where the servers' counts live in etcd; one key per server id. */
#define SYNC_PREFIX "/whoconn/v1/count/"

/* The lease TTL bounds how long a dead server's clients stay counted by
 * the others.  etcd refuses TTLs under 2 s; past a minute the failover
 * time stops being useful. */
#define SYNC_TTL_DEFAULT 3
#define SYNC_TTL_MIN 2
#define SYNC_TTL_MAX 60

/* Staleness bound: how long after its last proof of an etcd quorum this
 * server keeps counting its peers.  At least the TTL, so that an etcd
 * leader election (about a second) never drops live peers' clients. */
#define SYNC_STALENESS_DEFAULT 5
#define SYNC_STALENESS_MAX 3600

/* The registry is polled this often for a changed local count; a new
 * client reaches the other servers within this plus one etcd round trip
 * (a connection registers before its first reply). */
#define SYNC_POLL_MS 150

/* Every etcd call gives up after this long: a member that lost its quorum
 * may hold a request for seconds, and the loop must keep polling. */
#define SYNC_HTTP_TIMEOUT_MS 1000
#define SYNC_CONNECT_TIMEOUT_MS 500

/* After a failed call, the same kind of call waits this long. */
#define SYNC_RETRY_MS 500

/* Peer rows are rewritten at least this often while the view is
 * confirmed, so their expiry moves forward. */
#define SYNC_REFRESH_MS 500

/* Bounds on what etcd (and through it, any peer) can make us hold. */
#define SYNC_PEERS_MAX 64
#define SYNC_COUNT_MAX 1000000000LL
#define SYNC_BODY_MAX (1 << 20)
#define SYNC_ENDPOINTS_MAX 9
#define SYNC_ENDPOINT_LEN 256
#define SYNC_KEY_MAX 256
/* etcd's simple tokens are 16 random letters plus a revision; JWTs a few
 * hundred bytes.  A password is read from a file of at most this size. */
#define SYNC_TOKEN_MAX 2048
#define SYNC_PASSWORD_MAX 1024

/* The agent waits this long for the registry's write lock; connection
 * processes hold it for microseconds. */
#define SYNC_BUSY_TIMEOUT_MS 1000

/* Exit statuses (as whoconn's). */
#define SYNC_EXIT_OK 0
#define SYNC_EXIT_USAGE 64
#define SYNC_EXIT_SOFTWARE 70

/* ---- state ------------------------------------------------------------ */

struct buf {
    char *data;
    size_t len, cap;
};

struct agent {
    /* configuration */
    char endpoints[SYNC_ENDPOINTS_MAX][SYNC_ENDPOINT_LEN];
    int nendpoints;
    unsigned ttl;          /* seconds */
    unsigned staleness;    /* seconds */
    const char *db;
    char id[UUID_STR_LEN];
    char key[SYNC_KEY_MAX];
    /* TLS (libcurl) and etcd authentication; NULL: not used */
    const char *ca_file, *cert_file, *key_file, *user;
    char password[SYNC_PASSWORD_MAX];
    char token[SYNC_TOKEN_MAX]; /* "": not authenticated (yet) */
    char curl_err[CURL_ERROR_SIZE];
    char err_text[CURL_ERROR_SIZE + 64]; /* why the last failed call failed */

    int ep; /* endpoint in use */
    CURL *http;
    struct curl_slist *headers;
    CURLM *multi;
    struct registry reg;

    /* local count */
    long long local;       /* -1: unknown */
    long long published;   /* -1: not published on the current lease */
    int64_t poll_at;
    int64_t put_at;        /* next put attempt after a failed one */

    /* lease */
    long long lease;       /* 0: none */
    int64_t lease_at;      /* next grant or keepalive (monotonic) */
    int64_t last_ok;       /* last proof of quorum (boottime ms), 0 never */

    /* view of the peers, from a range and then the watch stream */
    CURL *watch;
    struct buf wbody;      /* request body, kept alive for the transfer */
    struct buf wline;      /* partial line of the stream */
    bool watch_synced;     /* view == etcd's, as far as the stream says */
    int64_t watch_at;      /* next attempt to (re)start the watch */
    long long revision;
    struct reg_peer peers[SYNC_PEERS_MAX];
    int npeers;
    bool view_dirty;
    bool peers_full_logged;

    /* what the registry holds */
    int64_t written_base;  /* last_ok used for the peer rows written */
    bool rows_live;        /* peer rows may still count (not yet aged out) */
    int written_npeers;    /* peers in the rows written, and their sum */
    long long written_sum;

    /* logging state, so that a lasting fault logs once */
    int etcd_err;
    unsigned etcd_logged; /* kinds of etcd failure logged since the last success */
    int reg_err;
};

static volatile sig_atomic_t sync_signal;

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

/* etcd keys and values travel base64-encoded (protobuf bytes in JSON). */
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

/* etcd's gateway writes every int64 as a string, and omits zero values. */
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

/* The prefix range: [prefix, prefix with its last byte + 1). */
static void prefix_end(char *out, size_t size) {
    snprintf(out, size, "%s", SYNC_PREFIX);
    out[strlen(out) - 1]++;
}

/* ---- etcd over HTTP ----------------------------------------------------- */

static size_t body_cb(char *data, size_t size, size_t n, void *user) {
    return buf_append(user, data, size * n, SYNC_BODY_MAX) < 0 ? 0 : size * n;
}

static void watch_stop(struct agent *a);

/* The options every handle to etcd carries: the TLS files (libcurl reads
 * them at each new connection, so renewed certificates are picked up
 * without a restart) and the headers, which hold the auth token. */
static void http_setup(struct agent *a, CURL *h) {
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, a->headers);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)SYNC_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    if (a->ca_file)
        curl_easy_setopt(h, CURLOPT_CAINFO, a->ca_file);
#if LIBCURL_VERSION_NUM >= 0x075700
    /* libcurl would keep the CAs it read for a day; new connections are
     * rare (start, failover), so read them afresh each time */
    curl_easy_setopt(h, CURLOPT_CA_CACHE_TIMEOUT, 0L);
#endif
    if (a->cert_file) {
        curl_easy_setopt(h, CURLOPT_SSLCERT, a->cert_file);
        curl_easy_setopt(h, CURLOPT_SSLKEY, a->key_file);
    }
}

/* Rebuilds the header list with the current token.  The watch uses the
 * list too: it is stopped first (it restarts with the new token). */
static int headers_build(struct agent *a) {
    char auth[SYNC_TOKEN_MAX + 32];
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");

    /* fail at once on a member that knows it has no leader */
    if (h)
        h = curl_slist_append(h, "Grpc-Metadata-hasleader: true");
    if (h && a->token[0]) {
        snprintf(auth, sizeof auth, "Authorization: %s", a->token);
        h = curl_slist_append(h, auth);
    }
    if (!h)
        return -ENOMEM;
    watch_stop(a);
    curl_slist_free_all(a->headers);
    a->headers = h;
    curl_easy_setopt(a->http, CURLOPT_HTTPHEADER, a->headers);
    return 0;
}

/* POSTs text to the current endpoint's path and parses the JSON reply
 * into *ret.  Returns 0, -ETIMEDOUT, -ECONNREFUSED (member not
 * reachable), -EPROTO (TLS failed: untrusted or missing certificate),
 * -EACCES (HTTP 401: user, password or token refused), -EPERM (HTTP 403:
 * etcd's RBAC denies it), -EREMOTEIO (any other status but 200: no
 * leader, no quorum), -EBADMSG (not JSON), -ENOMEM.  a->err_text says
 * why, in etcd's or libcurl's words, for the log. */
static int http_post(struct agent *a, const char *path, const char *text, json_t **ret) {
    char url[SYNC_ENDPOINT_LEN + 64];
    struct buf body = {0};
    long status = 0;
    int err = 0;

    snprintf(url, sizeof url, "%s%s", a->endpoints[a->ep], path);
    a->curl_err[0] = '\0';
    a->err_text[0] = '\0';
    curl_easy_setopt(a->http, CURLOPT_URL, url);
    curl_easy_setopt(a->http, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(a->http, CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(a->http);
    switch (rc) {
    case CURLE_OK:
        break;
    case CURLE_OPERATION_TIMEDOUT:
        err = -ETIMEDOUT;
        break;
    case CURLE_WRITE_ERROR:
        err = -EMSGSIZE;
        break;
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_CLIENTCERT:
        err = -EPROTO;
        break;
    default:
        /* a server that refuses our certificate (or its absence) may say
         * so only after the handshake, on the first read or write */
        err = strstr(a->curl_err, "SSL") ? -EPROTO : -ECONNREFUSED;
        break;
    }
    if (err == -EPROTO)
        snprintf(a->err_text, sizeof a->err_text, "TLS failed: %s",
                 a->curl_err[0] ? a->curl_err : curl_easy_strerror(rc));
    else if (err == -ECONNREFUSED)
        snprintf(a->err_text, sizeof a->err_text, "not reachable (%s)",
                 a->curl_err[0] ? a->curl_err : curl_easy_strerror(rc));
    if (err == 0) {
        curl_easy_getinfo(a->http, CURLINFO_RESPONSE_CODE, &status);
        if (status == 401)
            err = -EACCES;
        else if (status == 403)
            err = -EPERM;
        else if (status != 200)
            err = -EREMOTEIO;
    }
    if (err == -EACCES || err == -EPERM || err == -EREMOTEIO) {
        /* etcd's own words: {"error": "etcdserver: permission denied", ...} */
        json_t *e = json_loadb(body.data ? body.data : "", body.len, 0, NULL);
        const char *m = json_string_value(json_object_get(e, "error"));
        char line[128];
        if (!m)
            m = json_string_value(json_object_get(e, "message"));
        if (!m && !e && body.len > 0) {
            /* a plain-text reply: its first line, printable bytes only */
            size_t i;
            for (i = 0; i < body.len && i < sizeof line - 1 && body.data[i] != '\n'; i++)
                line[i] = isprint((unsigned char)body.data[i]) ? body.data[i] : '?';
            line[i] = '\0';
            m = line;
        }
        snprintf(a->err_text, sizeof a->err_text, "%s (HTTP %ld: %s)",
                 err == -EACCES  ? "authentication refused"
                 : err == -EPERM ? "permission denied"
                                 : "refused the request",
                 status, m ? m : "no reason given");
        json_decref(e);
    }
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

/* Gets a token for WHOCONN_ETCD_USER (etcd's /v3/auth/authenticate). */
static int etcd_authenticate(struct agent *a) {
    json_t *req = json_pack("{s:s, s:s}", "name", a->user, "password", a->password);
    json_t *resp = NULL;
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;

    json_decref(req);
    if (!text)
        return -ENOMEM;
    int err = http_post(a, "/v3/auth/authenticate", text, &resp);
    free(text);
    const char *token = err == 0 ? json_string_value(json_object_get(resp, "token")) : NULL;
    /* it goes into a header line: printable, no spaces */
    if (err == 0 && (!token || !*token || strlen(token) >= sizeof a->token))
        err = -EBADMSG;
    for (const char *c = token; err == 0 && *c; c++)
        if (!isgraph((unsigned char)*c))
            err = -EBADMSG;
    if (err == 0) {
        snprintf(a->token, sizeof a->token, "%s", token);
        err = headers_build(a);
    }
    json_decref(resp);
    return err;
}

/* One etcd call: POSTs req (stolen) and parses the reply into *ret.  With
 * a user configured, authenticates first when there is no token, and once
 * again when etcd refuses the token (expired, or lost by a member that
 * restarted), then retries the call once.  Errors as http_post(). */
static int etcd_call(struct agent *a, const char *path, json_t *req, json_t **ret) {
    int err = 0;
    char *text = json_dumps(req, JSON_COMPACT);

    json_decref(req);
    if (!text)
        return -ENOMEM;
    bool fresh = a->user && !a->token[0];
    if (fresh)
        err = etcd_authenticate(a);
    if (err == 0)
        err = http_post(a, path, text, ret);
    if (err == -EACCES && a->token[0]) {
        a->token[0] = '\0';
        headers_build(a);
        if (!fresh && (err = etcd_authenticate(a)) == 0)
            err = http_post(a, path, text, ret);
    }
    free(text);
    return err;
}

static const char *etcd_strerror(const struct agent *a, int err) {
    if (a->err_text[0] &&
        (err == -EPROTO || err == -ECONNREFUSED || err == -EACCES || err == -EPERM || err == -EREMOTEIO))
        return a->err_text;
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
    default:
        return strerror(-err);
    }
}

/* Records the outcome of an etcd call: a failure switches to the next
 * endpoint (the member may be cut off from the others) and logs once per
 * kind of failure; the first success after failures logs the recovery. */
static void etcd_outcome(struct agent *a, int err, const char *what) {
    static const int kinds[] = {ETIMEDOUT, ECONNREFUSED, EPROTO, EACCES, EPERM, EREMOTEIO, EBADMSG};
    unsigned kind = 1u << (sizeof kinds / sizeof kinds[0]);

    if (err == 0) {
        if (a->etcd_err != 0)
            log_msg(LOG_NOTICE, "etcd reachable again at %s", a->endpoints[a->ep]);
        a->etcd_err = 0;
        a->etcd_logged = 0;
        return;
    }
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (err == -kinds[i])
            kind = 1u << i;
    /* each kind of failure once per outage: a member that was still
     * starting ("timed out") must not hide a certificate it refuses */
    if (!(a->etcd_logged & kind))
        log_msg(LOG_WARNING,
                 "etcd %s at %s: %s; this server keeps counting its peers for at "
                 "most %u s after the last confirmation",
                 what, a->endpoints[a->ep], etcd_strerror(a, err), a->staleness);
    a->etcd_logged |= kind;
    a->etcd_err = err;
    if (a->nendpoints > 1) {
        a->ep = (a->ep + 1) % a->nendpoints;
        watch_stop(a); /* the stream must come from the member we trust */
    }
}

static int lease_grant(struct agent *a) {
    json_t *resp = NULL;
    long long id = 0, ttl = 0;
    int err = etcd_call(a, "/v3/lease/grant", json_pack("{s:I}", "TTL", (json_int_t)a->ttl), &resp);

    if (err == 0) {
        json_t *r = json_object_get(resp, "result") ? json_object_get(resp, "result") : resp;
        if (json_int64(r, "ID", &id) < 0 || json_int64(r, "TTL", &ttl) < 0 || id == 0)
            err = -EBADMSG;
    }
    json_decref(resp);
    if (err < 0)
        return err;
    a->lease = id;
    a->published = -1;
    return 0;
}

/* Returns -ENOLINK when etcd no longer knows the lease: it answers 200
 * without a TTL then. */
static int lease_keepalive(struct agent *a) {
    char id[32];
    json_t *resp = NULL;
    long long ttl = 0;

    snprintf(id, sizeof id, "%lld", a->lease);
    int err = etcd_call(a, "/v3/lease/keepalive", json_pack("{s:s}", "ID", id), &resp);
    if (err == 0) {
        json_t *r = json_object_get(resp, "result");
        if (!r || json_int64(r, "TTL", &ttl) < 0 || ttl <= 0)
            err = -ENOLINK;
    }
    json_decref(resp);
    return err;
}

/* Ends the lease at once: etcd deletes our key with it, and every watcher
 * sees the DELETE, so the other servers stop counting this server's
 * clients now instead of after the TTL.  One call, bounded by
 * SYNC_HTTP_TIMEOUT_MS like every other. */
static int lease_revoke(struct agent *a) {
    char id[32];
    json_t *resp = NULL;

    snprintf(id, sizeof id, "%lld", a->lease);
    int err = etcd_call(a, "/v3/lease/revoke", json_pack("{s:s}", "ID", id), &resp);
    json_decref(resp);
    return err;
}

static int count_put(struct agent *a, long long count) {
    char key[SYNC_KEY_MAX], val[32], val64[64], lease[32];
    json_t *resp = NULL;

    snprintf(val, sizeof val, "%lld", count);
    snprintf(lease, sizeof lease, "%lld", a->lease);
    if (b64_encode(a->key, strlen(a->key), key, sizeof key) < 0 ||
        b64_encode(val, strlen(val), val64, sizeof val64) < 0)
        return -ENAMETOOLONG;
    int err = etcd_call(a, "/v3/kv/put",
                        json_pack("{s:s, s:s, s:s}", "key", key, "value", val64, "lease", lease),
                        &resp);
    json_decref(resp);
    return err;
}

/* ---- the view of the peers ---------------------------------------------- */

/* Applies one key/value from etcd.  Keys that are not a server id under
 * the prefix, and values that are not a count, are ignored: etcd is shared
 * infrastructure, and a stray key must not break WHO. */
static void view_apply(struct agent *a, json_t *kv, bool deleted) {
    char key[SYNC_KEY_MAX], val[64], id[UUID_STR_LEN];
    size_t klen, vlen;
    const char *k64 = json_string_value(json_object_get(kv, "key"));
    const char *v64 = json_string_value(json_object_get(kv, "value"));
    size_t plen = strlen(SYNC_PREFIX);
    long long count = 0;

    if (!k64 || b64_decode(k64, key, sizeof key, &klen) < 0 || klen != plen + 36 ||
        memcmp(key, SYNC_PREFIX, plen) != 0 || server_id_parse(key + plen, id) < 0 ||
        strcmp(id, a->id) == 0)
        return;
    if (!deleted) {
        char *end;
        if (!v64 || b64_decode(v64, val, sizeof val, &vlen) < 0 || vlen == 0)
            return;
        errno = 0;
        count = strtoll(val, &end, 10);
        if (errno || *end || count < 0 || count > SYNC_COUNT_MAX)
            return;
    }
    int i;
    for (i = 0; i < a->npeers; i++)
        if (strcmp(a->peers[i].id, id) == 0)
            break;
    if (deleted) {
        if (i < a->npeers) {
            a->peers[i] = a->peers[--a->npeers];
            a->view_dirty = true;
        }
        return;
    }
    if (i == a->npeers) {
        if (a->npeers == SYNC_PEERS_MAX) {
            if (!a->peers_full_logged)
                log_msg(LOG_ERR, "more than %d servers under %s: the others are not counted",
                         SYNC_PEERS_MAX, SYNC_PREFIX);
            a->peers_full_logged = true;
            return;
        }
        memcpy(a->peers[i].id, id, sizeof id);
        a->npeers++;
    } else if (a->peers[i].count == count)
        return;
    a->peers[i].count = count;
    a->view_dirty = true;
}

/* Proves that the member we talk to is part of a quorum right now: a
 * linearizable read goes through the leader's ReadIndex, which needs
 * heartbeats acknowledged by a majority.  A keepalive is no such proof: a
 * leader that lost its followers goes on renewing leases until its
 * check-quorum steps it down, one to two election timeouts later. */
static int quorum_probe(struct agent *a) {
    char key[SYNC_KEY_MAX], end[SYNC_KEY_MAX], k64[SYNC_KEY_MAX], e64[SYNC_KEY_MAX];
    json_t *resp = NULL;

    snprintf(key, sizeof key, "%s", SYNC_PREFIX);
    prefix_end(end, sizeof end);
    b64_encode(key, strlen(key), k64, sizeof k64);
    b64_encode(end, strlen(end), e64, sizeof e64);
    int err = etcd_call(a, "/v3/kv/range",
                        json_pack("{s:s, s:s, s:b}", "key", k64, "range_end", e64, "count_only", 1),
                        &resp);
    if (err == 0 && !json_object_get(resp, "header"))
        err = -EBADMSG;
    json_decref(resp);
    return err;
}

/* Reads every server's count (a linearizable read: its success also
 * proves a quorum) and the revision to watch from. */
static int view_load(struct agent *a) {
    char key[SYNC_KEY_MAX], end[SYNC_KEY_MAX], k64[SYNC_KEY_MAX], e64[SYNC_KEY_MAX];
    json_t *resp = NULL;
    long long rev = 0;

    snprintf(key, sizeof key, "%s", SYNC_PREFIX);
    prefix_end(end, sizeof end);
    b64_encode(key, strlen(key), k64, sizeof k64);
    b64_encode(end, strlen(end), e64, sizeof e64);
    int err = etcd_call(a, "/v3/kv/range", json_pack("{s:s, s:s}", "key", k64, "range_end", e64),
                        &resp);
    if (err < 0)
        return err;
    json_t *hdr = json_object_get(resp, "header");
    if (!hdr || json_int64(hdr, "revision", &rev) < 0) {
        json_decref(resp);
        return -EBADMSG;
    }
    a->npeers = 0;
    json_t *kvs = json_object_get(resp, "kvs"), *kv;
    size_t i;
    json_array_foreach(kvs, i, kv) view_apply(a, kv, false);
    json_decref(resp);
    a->revision = rev;
    a->view_dirty = true;
    return 0;
}

/* Handles one line of the watch stream. */
static int watch_line(struct agent *a, const char *line, size_t len) {
    json_t *msg = json_loadb(line, len, 0, NULL), *r;
    long long rev;

    if (!msg)
        return -EBADMSG;
    if ((r = json_object_get(msg, "error"))) {
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
        /* compacted past our revision, or cancelled for lack of a leader:
         * read everything again */
        json_decref(msg);
        return -ESTALE;
    }
    if (json_is_true(json_object_get(r, "created")))
        a->watch_synced = true;
    json_t *evs = json_object_get(r, "events"), *ev;
    size_t i;
    json_array_foreach(evs, i, ev) {
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *kv = json_object_get(ev, "kv");
        if (kv)
            view_apply(a, kv, type && strcmp(type, "DELETE") == 0);
        if (kv && json_int64(kv, "mod_revision", &rev) == 0 && rev > a->revision)
            a->revision = rev;
    }
    json_decref(msg);
    return 0;
}

static size_t watch_cb(char *data, size_t size, size_t n, void *user) {
    struct agent *a = user;
    size_t total = size * n;

    if (buf_append(&a->wline, data, total, SYNC_BODY_MAX) < 0)
        return 0; /* a line over the bound ends the stream */
    char *nl;
    size_t start = 0;
    while ((nl = memchr(a->wline.data + start, '\n', a->wline.len - start))) {
        size_t len = (size_t)(nl - (a->wline.data + start));
        if (len > 0 && watch_line(a, a->wline.data + start, len) < 0)
            return 0; /* ends the stream; the loop reads everything again */
        start += len + 1;
    }
    memmove(a->wline.data, a->wline.data + start, a->wline.len - start);
    a->wline.len -= start;
    return total;
}

static void watch_stop(struct agent *a) {
    if (a->watch) {
        curl_multi_remove_handle(a->multi, a->watch);
        curl_easy_cleanup(a->watch);
        a->watch = NULL;
    }
    a->watch_synced = false;
    a->wline.len = 0;
}

static int watch_start(struct agent *a) {
    char key[SYNC_KEY_MAX], end[SYNC_KEY_MAX], k64[SYNC_KEY_MAX], e64[SYNC_KEY_MAX];
    char rev[32], url[SYNC_ENDPOINT_LEN + 16];

    snprintf(key, sizeof key, "%s", SYNC_PREFIX);
    prefix_end(end, sizeof end);
    b64_encode(key, strlen(key), k64, sizeof k64);
    b64_encode(end, strlen(end), e64, sizeof e64);
    snprintf(rev, sizeof rev, "%lld", a->revision + 1);
    json_t *req = json_pack("{s:{s:s, s:s, s:s}}", "create_request", "key", k64, "range_end", e64,
                            "start_revision", rev);
    char *text = req ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    if (!text)
        return -ENOMEM;
    a->wbody.len = 0;
    int err = buf_append(&a->wbody, text, strlen(text), SYNC_BODY_MAX);
    free(text);
    if (err < 0)
        return err;
    a->watch = curl_easy_init();
    if (!a->watch)
        return -ENOMEM;
    snprintf(url, sizeof url, "%s/v3/watch", a->endpoints[a->ep]);
    curl_easy_setopt(a->watch, CURLOPT_URL, url);
    curl_easy_setopt(a->watch, CURLOPT_POSTFIELDS, a->wbody.data);
    http_setup(a, a->watch);
    curl_easy_setopt(a->watch, CURLOPT_WRITEFUNCTION, watch_cb);
    curl_easy_setopt(a->watch, CURLOPT_WRITEDATA, a);
    /* TCP keepalive finds a peer host that vanished without a FIN. */
    curl_easy_setopt(a->watch, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(a->watch, CURLOPT_TCP_KEEPIDLE, 2L);
    curl_easy_setopt(a->watch, CURLOPT_TCP_KEEPINTVL, 1L);
    if (curl_multi_add_handle(a->multi, a->watch) != CURLM_OK) {
        curl_easy_cleanup(a->watch);
        a->watch = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* ---- registry ----------------------------------------------------------- */

static void reg_outcome(struct agent *a, int err, const char *what) {
    if (err == 0) {
        if (a->reg_err)
            log_msg(LOG_NOTICE, "registry %s usable again", a->db);
        a->reg_err = 0;
        return;
    }
    if (err != a->reg_err)
        log_msg(LOG_ERR, "registry %s: %s: %s", what, a->db, reg_strerror(err));
    a->reg_err = err;
    reg_close(&a->reg); /* reopened afresh on the next poll */
}

/* ---- the loop ----------------------------------------------------------- */

static void step_registry(struct agent *a, int64_t now) {
    long long n = 0;

    if (now < a->poll_at)
        return;
    a->poll_at = now + SYNC_POLL_MS;
    int err = reg_local_count(&a->reg, &n);
    reg_outcome(a, err, "poll");
    if (err == 0)
        a->local = n;
}

static void step_lease(struct agent *a, int64_t now) {
    int err;

    if (now < a->lease_at)
        return;
    if (a->lease == 0) {
        err = lease_grant(a);
        etcd_outcome(a, err, "lease grant");
    } else {
        err = lease_keepalive(a);
        if (err == -ENOLINK) {
            log_msg(LOG_WARNING, "lease %llx expired in etcd; granting a new one", a->lease);
            a->lease = 0;
            a->lease_at = now;
            return;
        }
        etcd_outcome(a, err, "lease keepalive");
    }
    if (err == 0) {
        /* the proof counts from before the request was sent */
        int64_t sent = now_ms(CLOCK_BOOTTIME);
        err = quorum_probe(a);
        etcd_outcome(a, err, "quorum read");
        if (err == 0)
            a->last_ok = sent;
    }
    if (err < 0) {
        a->lease_at = now + SYNC_RETRY_MS;
        return;
    }
    /* three keepalives per TTL: one lost request never costs the lease */
    a->lease_at = now + (int64_t)a->ttl * 1000 / 3;
}

static void step_publish(struct agent *a, int64_t now) {
    if (a->lease == 0 || a->local < 0 || a->local == a->published || now < a->put_at)
        return;
    int err = count_put(a, a->local);
    etcd_outcome(a, err, "put");
    if (err == 0)
        a->published = a->local;
    else
        a->put_at = now + SYNC_RETRY_MS;
}

static void step_watch(struct agent *a, int64_t now) {
    if (a->watch || now < a->watch_at)
        return;
    int64_t sent = now_ms(CLOCK_BOOTTIME);
    int err = view_load(a);
    etcd_outcome(a, err, "range");
    if (err == 0) {
        a->last_ok = sent;
        err = watch_start(a);
    }
    if (err < 0)
        a->watch_at = now + SYNC_RETRY_MS;
}

/* Reaps a finished watch transfer: the stream ended (member restarted,
 * lost its leader, compaction, or a bad line) and is read anew. */
static void step_watch_done(struct agent *a, int64_t now) {
    CURLMsg *m;
    int left;

    while ((m = curl_multi_info_read(a->multi, &left)))
        if (m->msg == CURLMSG_DONE && m->easy_handle == a->watch) {
            if (a->watch_synced)
                log_msg(LOG_NOTICE, "etcd watch at %s ended; reading the counts again",
                         a->endpoints[a->ep]);
            watch_stop(a);
            a->watch_at = now + SYNC_RETRY_MS;
        }
}

/* Writes the peer rows when the view changed, or when a newer proof of
 * quorum moves their expiry forward.  Rows are valid until the last proof
 * plus the staleness bound: without a new one they age out by themselves. */
static void step_peers(struct agent *a) {
    int64_t boot = now_ms(CLOCK_BOOTTIME);
    int64_t base = a->watch_synced ? a->last_ok : a->written_base;

    if (a->last_ok == 0)
        return;
    if (a->rows_live && boot >= a->written_base + (int64_t)a->staleness * 1000) {
        log_msg(LOG_WARNING,
                 "no etcd quorum confirmed for %u s: WHO now counts only this server's clients",
                 a->staleness);
        a->rows_live = false;
    }
    if (!a->watch_synced)
        return;
    if (!a->view_dirty && base - a->written_base < SYNC_REFRESH_MS)
        return;
    int err = reg_put_peers(&a->reg, a->peers, a->npeers, base + (int64_t)a->staleness * 1000, base);
    reg_outcome(a, err, "peer update");
    if (err < 0)
        return;
    if (!a->rows_live && a->written_base != 0)
        log_msg(LOG_NOTICE, "counting %d peer server(s) again", a->npeers);
    a->written_npeers = a->npeers;
    a->written_sum = 0;
    for (int i = 0; i < a->npeers; i++)
        a->written_sum += a->peers[i].count;
    a->written_base = base;
    a->view_dirty = false;
    a->rows_live = true;
}

/* STATUS= says what WHO counts right now (what the peer rows hold, not
 * the agent's view), and how etcd is doing:
 *   WHO counts local 3 + 6 from 2 peer(s); etcd URL in sync
 *   WHO counts local 3 + 6 from 2 peer(s) for at most 2 s more; etcd URL: timed out
 *   WHO counts local 3 only (no etcd quorum for 9 s); etcd URL: timed out */
static void step_notify(struct agent *a) {
    char status[512], who[128];
    int64_t boot = now_ms(CLOCK_BOOTTIME);
    int64_t left = a->written_base + (int64_t)a->staleness * 1000 - boot;

    if (a->rows_live && a->etcd_err == 0)
        snprintf(who, sizeof who, "WHO counts local %lld + %lld from %d peer(s)", a->local,
                 a->written_sum, a->written_npeers);
    else if (a->rows_live && left > 0)
        snprintf(who, sizeof who, "WHO counts local %lld + %lld from %d peer(s) for at most %lld s more",
                 a->local, a->written_sum, a->written_npeers, (long long)(left + 999) / 1000);
    else if (a->last_ok == 0)
        snprintf(who, sizeof who, "WHO counts local %lld only (no etcd quorum yet)", a->local);
    else
        snprintf(who, sizeof who, "WHO counts local %lld only (no etcd quorum for %lld s)",
                 a->local, (long long)(boot - a->last_ok) / 1000);
    if (a->etcd_err)
        snprintf(status, sizeof status, "STATUS=%s; etcd %s: %s", who, a->endpoints[a->ep],
                 etcd_strerror(a, a->etcd_err));
    else
        snprintf(status, sizeof status, "STATUS=%s; etcd %s %s", who, a->endpoints[a->ep],
                 a->watch_synced ? "in sync" : "syncing");
    /* the watchdog is fed only while the registry works */
    if (a->reg_err == 0)
        sd_notify(0, "WATCHDOG=1");
    sd_notify(0, status);
}

/* ---- configuration ------------------------------------------------------ */

/* "http://10.0.0.1:2379,http://10.0.0.2:2379": scheme, host and port only. */
static int parse_endpoints(struct agent *a, const char *s) {
    a->nendpoints = 0;
    while (*s) {
        size_t len = strcspn(s, ", ");
        if (len > 0) {
            if (a->nendpoints == SYNC_ENDPOINTS_MAX || len >= SYNC_ENDPOINT_LEN)
                return -E2BIG;
            if (!((len > 7 && strncmp(s, "http://", 7) == 0) ||
                  (len > 8 && strncmp(s, "https://", 8) == 0)))
                return -EINVAL;
            char *e = a->endpoints[a->nendpoints++];
            memcpy(e, s, len);
            e[len] = '\0';
            while (len > 0 && e[len - 1] == '/')
                e[--len] = '\0';
            if (strchr(strstr(e, "://") + 3, '/'))
                return -EINVAL;
        }
        s += len;
        s += strspn(s, ", ");
    }
    return a->nendpoints > 0 ? 0 : -ENOENT;
}

/* The TLS and authentication files are checked at start, so that a typo
 * stops the agent with one line naming the setting instead of failing
 * every etcd call later.  Each returns 0 or prints why and returns -1. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1; /* an encrypted key cannot be used unattended */
}

static FILE *setting_open(const char *what, const char *var, const char *path) {
    FILE *f = fopen(path, "re");

    if (!f)
        fprintf(stderr, "whoconn-sync: %s (%s) \"%s\": %s\n", what, var, path, strerror(errno));
    return f;
}

static int check_pem_cert(const char *what, const char *var, const char *path, X509 **ret) {
    FILE *f = setting_open(what, var, path);

    if (!f)
        return -1;
    X509 *x = PEM_read_X509(f, NULL, no_passphrase, NULL);
    fclose(f);
    if (!x) {
        fprintf(stderr, "whoconn-sync: %s (%s) \"%s\": not a PEM certificate\n", what, var, path);
        return -1;
    }
    if (ret)
        *ret = x;
    else
        X509_free(x);
    return 0;
}

static int check_tls(const struct agent *a) {
    X509 *cert = NULL;
    int err = 0;

    if ((a->cert_file != NULL) != (a->key_file != NULL)) {
        fprintf(stderr, "whoconn-sync: a client certificate (WHOCONN_ETCD_CERT_FILE) needs its "
                        "key (WHOCONN_ETCD_KEY_FILE), and a key its certificate\n");
        return -1;
    }
    if (a->ca_file || a->cert_file)
        for (int i = 0; i < a->nendpoints; i++)
            if (strncmp(a->endpoints[i], "https://", 8) != 0) {
                fprintf(stderr,
                        "whoconn-sync: the TLS settings (WHOCONN_ETCD_CA_FILE, "
                        "WHOCONN_ETCD_CERT_FILE) need https:// endpoints, and \"%s\" is not one\n",
                        a->endpoints[i]);
                return -1;
            }
    if (a->ca_file && check_pem_cert("CA file", "WHOCONN_ETCD_CA_FILE", a->ca_file, NULL) < 0)
        return -1;
    if (!a->cert_file)
        return 0;
    if (check_pem_cert("client certificate", "WHOCONN_ETCD_CERT_FILE", a->cert_file, &cert) < 0)
        return -1;
    FILE *f = setting_open("client key", "WHOCONN_ETCD_KEY_FILE", a->key_file);
    EVP_PKEY *key = f ? PEM_read_PrivateKey(f, NULL, no_passphrase, NULL) : NULL;
    if (f)
        fclose(f);
    if (f && !key) {
        fprintf(stderr,
                "whoconn-sync: client key (WHOCONN_ETCD_KEY_FILE) \"%s\": not an unencrypted PEM "
                "private key\n",
                a->key_file);
        err = -1;
    } else if (!f)
        err = -1;
    else if (X509_check_private_key(cert, key) != 1) {
        fprintf(stderr,
                "whoconn-sync: client key (WHOCONN_ETCD_KEY_FILE) \"%s\" does not belong to the "
                "client certificate (WHOCONN_ETCD_CERT_FILE) \"%s\"\n",
                a->key_file, a->cert_file);
        err = -1;
    }
    EVP_PKEY_free(key);
    X509_free(cert);
    return err;
}

/* The password is the file's first line (a trailing newline is not part
 * of it); kept out of the environment, which /proc shows to the user. */
static int read_password(struct agent *a, const char *user, const char *path) {
    if ((user != NULL) != (path != NULL)) {
        fprintf(stderr, "whoconn-sync: an etcd user (WHOCONN_ETCD_USER) needs its password file "
                        "(WHOCONN_ETCD_PASSWORD_FILE), and a password file its user\n");
        return -1;
    }
    if (!user)
        return 0;
    FILE *f = setting_open("password file", "WHOCONN_ETCD_PASSWORD_FILE", path);
    if (!f)
        return -1;
    size_t n = fread(a->password, 1, sizeof a->password, f);
    int bad = ferror(f);
    fclose(f);
    if (!bad && n == sizeof a->password) {
        fprintf(stderr, "whoconn-sync: password file (WHOCONN_ETCD_PASSWORD_FILE) \"%s\": longer "
                        "than %d bytes\n", path, SYNC_PASSWORD_MAX - 1);
        return -1;
    }
    a->password[bad ? 0 : n] = '\0';
    a->password[strcspn(a->password, "\r\n")] = '\0';
    if (bad || !a->password[0]) {
        fprintf(stderr, "whoconn-sync: password file (WHOCONN_ETCD_PASSWORD_FILE) \"%s\": %s\n", path,
                bad ? "cannot be read" : "empty");
        return -1;
    }
    a->user = user;
    return 0;
}

static void sync_usage(FILE *f) {
    fprintf(f,
            "usage: whoconn-sync [--endpoints URLS] [--lease-ttl SECONDS] [--staleness SECONDS]\n"
            "                    [--db PATH] [--server-id UUID] [--ca-file PEM]\n"
            "                    [--cert-file PEM --key-file PEM] [--user NAME --password-file PATH]\n"
            "       whoconn-sync --help | --version\n"
            "\n"
            "Publishes this server's whoconn count to etcd and mirrors the other servers'.\n"
            "Settings come from the environment (in the unit: /etc/whoconn/cluster.conf),\n"
            "options override them.\n"
            "\n"
            "  --endpoints URLS     etcd client URLs, comma-separated (WHOCONN_ETCD_ENDPOINTS)\n"
            "                       required; this server's own member first\n"
            "  --lease-ttl SECONDS  lease TTL: a dead server's clients stop counting after it\n"
            "                       (WHOCONN_LEASE_TTL) default %d, range %d-%d\n"
            "  --staleness SECONDS  without etcd, peers' counts are kept this long\n"
            "                       (WHOCONN_STALENESS) default %d, range lease TTL-%d\n"
            "  --db PATH            registry file (WHOCONN_DB), as whoconn\n"
            "  --server-id UUID     this server's id (WHOCONN_SERVER_ID), as whoconn's WHERE\n"
            "  --ca-file PEM        CAs that sign etcd's certificate (WHOCONN_ETCD_CA_FILE)\n"
            "                       default: the system's CAs; needs https:// endpoints\n"
            "  --cert-file PEM      client certificate for etcd (WHOCONN_ETCD_CERT_FILE)\n"
            "                       default: none; needs --key-file\n"
            "  --key-file PEM       its unencrypted private key (WHOCONN_ETCD_KEY_FILE)\n"
            "  --user NAME          etcd user to authenticate as (WHOCONN_ETCD_USER)\n"
            "                       default: none (etcd auth off); needs --password-file\n"
            "  --password-file PATH file whose first line is that user's password\n"
            "                       (WHOCONN_ETCD_PASSWORD_FILE)\n",
            SYNC_TTL_DEFAULT, SYNC_TTL_MIN, SYNC_TTL_MAX, SYNC_STALENESS_DEFAULT,
            SYNC_STALENESS_MAX);
}

static int sync_config(struct agent *a, int argc, char **argv, char *dbbuf, size_t dbsize) {
    static const struct option opts[] = {
        {"endpoints", required_argument, NULL, 'e'},
        {"lease-ttl", required_argument, NULL, 'l'},
        {"staleness", required_argument, NULL, 's'},
        {"db", required_argument, NULL, 'd'},
        {"server-id", required_argument, NULL, 'i'},
        {"ca-file", required_argument, NULL, 'C'},
        {"cert-file", required_argument, NULL, 'c'},
        {"key-file", required_argument, NULL, 'k'},
        {"user", required_argument, NULL, 'u'},
        {"password-file", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {0, 0, 0, 0},
    };
    const char *eps = getenv("WHOCONN_ETCD_ENDPOINTS"), *ttl = getenv("WHOCONN_LEASE_TTL"),
               *stale = getenv("WHOCONN_STALENESS"), *db = getenv("WHOCONN_DB"),
               *sid = getenv("WHOCONN_SERVER_ID");
    /* an empty setting is an unset one: `WHOCONN_ETCD_CA_FILE=` in the file */
    const char *ca = getenv("WHOCONN_ETCD_CA_FILE"), *cert = getenv("WHOCONN_ETCD_CERT_FILE"),
               *key = getenv("WHOCONN_ETCD_KEY_FILE"), *user = getenv("WHOCONN_ETCD_USER"),
               *pwfile = getenv("WHOCONN_ETCD_PASSWORD_FILE");
    int c, err;

    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'e': eps = optarg; break;
        case 'l': ttl = optarg; break;
        case 's': stale = optarg; break;
        case 'd': db = optarg; break;
        case 'i': sid = optarg; break;
        case 'C': ca = optarg; break;
        case 'c': cert = optarg; break;
        case 'k': key = optarg; break;
        case 'u': user = optarg; break;
        case 'p': pwfile = optarg; break;
        case 'h':
            sync_usage(stdout);
            return 1;
        case 'V':
            printf("whoconn-sync %s (%s, jansson %s)\n", WHOCONN_VERSION, curl_version(),
                   JANSSON_VERSION);
            return 1;
        default:
            fprintf(stderr, "whoconn-sync: unknown or incomplete option: %s\n", argv[optind - 1]);
            sync_usage(stderr);
            return -EINVAL;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "whoconn-sync: unexpected argument: %s\n", argv[optind]);
        return -EINVAL;
    }
    if (!eps || !*eps) {
        fprintf(stderr, "whoconn-sync: no etcd endpoints (WHOCONN_ETCD_ENDPOINTS, --endpoints): "
                        "cluster mode is not configured; see /etc/whoconn/cluster.conf\n");
        return -EINVAL;
    }
    err = parse_endpoints(a, eps);
    if (err < 0) {
        fprintf(stderr,
                "whoconn-sync: etcd endpoints \"%s\": %s\n", eps,
                err == -E2BIG ? "too many (at most 9) or too long"
                              : "each must be http://HOST:PORT or https://HOST:PORT, "
                                "comma-separated, without a path");
        return -EINVAL;
    }
    a->ttl = SYNC_TTL_DEFAULT;
    if (ttl && parse_uint(ttl, SYNC_TTL_MIN, SYNC_TTL_MAX, &a->ttl) < 0) {
        fprintf(stderr, "whoconn-sync: lease TTL \"%s\" is not a number of seconds from %d to %d\n",
                ttl, SYNC_TTL_MIN, SYNC_TTL_MAX);
        return -EINVAL;
    }
    a->staleness = SYNC_STALENESS_DEFAULT < a->ttl ? a->ttl : SYNC_STALENESS_DEFAULT;
    if (stale && parse_uint(stale, a->ttl, SYNC_STALENESS_MAX, &a->staleness) < 0) {
        fprintf(stderr,
                "whoconn-sync: staleness bound \"%s\" is not a number of seconds from the lease "
                "TTL (%u) to %d\n",
                stale, a->ttl, SYNC_STALENESS_MAX);
        return -EINVAL;
    }
    if (sid && server_id_parse(sid, a->id) < 0) {
        fprintf(stderr, "whoconn-sync: server id \"%s\" is not a UUID\n", sid);
        return -EINVAL;
    }
    if (!sid && (err = server_id_derive(a->id)) < 0) {
        fprintf(stderr, "whoconn-sync: cannot derive the server id from the machine id: %s\n",
                strerror(-err));
        return -EINVAL;
    }
    if (db && !*db) {
        fprintf(stderr, "whoconn-sync: the registry path (--db, WHOCONN_DB) is empty\n");
        return -EINVAL;
    }
    if (!db)
        db = db_default(dbbuf, dbsize);
    a->db = db;
    a->ca_file = ca && *ca ? ca : NULL;
    a->cert_file = cert && *cert ? cert : NULL;
    a->key_file = key && *key ? key : NULL;
    if (check_tls(a) < 0 ||
        read_password(a, user && *user ? user : NULL, pwfile && *pwfile ? pwfile : NULL) < 0)
        return -EINVAL;
    snprintf(a->key, sizeof a->key, "%s%s", SYNC_PREFIX, a->id);
    return 0;
}

static void sync_on_signal(int sig) {
    sync_signal = sig;
}

int main(int argc, char **argv) {
    static struct agent a;
    char dbbuf[4096];
    struct sigaction sa = {.sa_handler = sync_on_signal};

    log_setup("whoconn-sync");
    int r = sync_config(&a, argc, argv, dbbuf, sizeof dbbuf);
    if (r != 0)
        return r > 0 ? SYNC_EXIT_OK : SYNC_EXIT_USAGE;

    umask(077);
    signal(SIGPIPE, SIG_IGN);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return SYNC_EXIT_SOFTWARE;
    a.http = curl_easy_init();
    a.multi = curl_multi_init();
    if (!a.http || !a.multi || headers_build(&a) < 0) {
        log_msg(LOG_ERR, "out of memory");
        return SYNC_EXIT_SOFTWARE;
    }
    http_setup(&a, a.http);
    curl_easy_setopt(a.http, CURLOPT_ERRORBUFFER, a.curl_err);
    curl_easy_setopt(a.http, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(a.http, CURLOPT_TIMEOUT_MS, (long)SYNC_HTTP_TIMEOUT_MS);

    reg_setup(&a.reg, a.db, 0); /* pid 0: the agent holds no connection row */
    a.reg.busy_timeout_ms = SYNC_BUSY_TIMEOUT_MS;
    a.local = a.published = -1;
    log_msg(LOG_INFO,
             "server %s, registry %s, etcd %s%s, lease TTL %u s, staleness bound %u s%s%s%s%s", a.id,
             a.db, a.endpoints[0], a.nendpoints > 1 ? " and others" : "", a.ttl, a.staleness,
             a.cert_file ? ", client certificate " : "", a.cert_file ? a.cert_file : "",
             a.user ? ", etcd user " : "", a.user ? a.user : "");
    /* Ready once the registry is usable: etcd may well be down at boot,
     * and this server must serve anyway. */
    step_registry(&a, now_ms(CLOCK_MONOTONIC));
    sd_notify(0, "READY=1");

    while (!sync_signal) {
        int64_t now = now_ms(CLOCK_MONOTONIC);
        int running;

        /* a stop request is seen between etcd calls, so that stopping takes
         * at most the call in progress plus the revoke */
        step_registry(&a, now);
        step_lease(&a, now);
        if (sync_signal)
            break;
        step_publish(&a, now);
        if (sync_signal)
            break;
        step_watch(&a, now);
        curl_multi_perform(a.multi, &running);
        step_watch_done(&a, now_ms(CLOCK_MONOTONIC));
        step_peers(&a);
        step_notify(&a);

        now = now_ms(CLOCK_MONOTONIC);
        int64_t wake = a.poll_at;
        if (a.lease_at < wake)
            wake = a.lease_at;
        if (!a.watch && a.watch_at < wake)
            wake = a.watch_at;
        int timeout = wake > now ? (int)(wake - now) : 0;
        curl_multi_poll(a.multi, NULL, 0, timeout, NULL);
    }

    sd_notify(0, "STOPPING=1");
    watch_stop(&a);
    /* A planned stop is exact for the others: the key goes with the lease. */
    r = a.lease ? lease_revoke(&a) : -ENOLINK;
    if (r == 0)
        log_msg(LOG_INFO, "stopping on signal %d; lease revoked, the other servers no longer "
                           "count this server's clients",
                 (int)sync_signal);
    else
        log_msg(LOG_WARNING, "stopping on signal %d; lease not revoked (%s): the other servers "
                              "drop this server's clients after the lease TTL (%u s)",
                 (int)sync_signal, r == -ENOLINK ? "none granted" : etcd_strerror(&a, r), a.ttl);
    buf_free(&a.wbody);
    buf_free(&a.wline);
    reg_free(&a.reg);
    curl_multi_cleanup(a.multi);
    curl_easy_cleanup(a.http);
    curl_slist_free_all(a.headers);
    curl_global_cleanup();
    return SYNC_EXIT_OK;
}
