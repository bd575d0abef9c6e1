/*
 * etcd.h - a small etcd v3 client for etcd's JSON gateway (POST /v3/...),
 * over libcurl and jansson, for whoconn-sync and its tests.  The caller
 * sees plain C values only: no libcurl, no jansson, no base64.  (etcd.c:
 * the client and its calls; etcd-kv.c: KV and leases; etcd-watch.c: the
 * watch stream.)
 *
 * Contract:
 *   - Endpoints and failover.  A client holds a list of endpoints
 *     (http:// or https://HOST:PORT, no path) and talks to one at a time,
 *     the first at open.  A failed call does not move by itself:
 *     etcd_failover() moves to the next one, so that the caller can name
 *     the member that failed first (etcd_endpoint()).  Failing over ends
 *     the watch stream: it must come from the member the caller trusts.
 *     A new login token ends it too (the stream carries the old one).
 *   - TLS and login.  With a CA file, the members' certificates are checked
 *     against it (else against the system's CAs); with a client certificate
 *     and key, the client presents them.  libcurl reads these files at each
 *     new connection, so renewed ones are used without a restart.  With a
 *     user, the client logs in (/v3/auth/authenticate) before its first
 *     call, and once again when etcd refuses the token (expired, or lost by
 *     a member that restarted), then retries the call once.
 *   - Every request carries "Grpc-Metadata-hasleader: true": a member that
 *     knows it has no leader refuses at once instead of holding the call.
 *   - Calls block for at most the call timeout (ETCD_CALL_TIMEOUT_MS); the
 *     watch stream is the only long transfer and is driven by the caller's
 *     loop (etcd_watch_run(), etcd_wait()), never blocking.
 *   - Keys and values are bytes for etcd; here they are C strings on the
 *     way in and (pointer, length) pairs, NUL-terminated too, on the way
 *     out, valid during the callback only.
 *   - Errors.  Every function returns 0 or one negative errno-style code:
 *       -ETIMEDOUT     no answer within the call timeout
 *       -ECONNREFUSED  the member is not reachable
 *       -EPROTO        TLS failed (untrusted or missing certificate)
 *       -EACCES        HTTP 401: user, password or token refused
 *       -EPERM         HTTP 403: etcd's RBAC denies the request
 *       -EREMOTEIO     any other status but 200 (no leader, no quorum,
 *                      a refused login: etcd answers those with 400)
 *       -EBADMSG       a reply that is not the JSON expected
 *       -EMSGSIZE      a reply over ETCD_BODY_MAX
 *       -ENOLINK       (keepalive) etcd no longer knows the lease
 *       -ENAMETOOLONG  a key over ETCD_KEY_MAX
 *       -ENOMEM
 *     and etcd_strerror() gives the words for the log: etcd's own or
 *     libcurl's for the last failed call, where there were any.
 *   - Nothing here logs; nothing is thread-safe (one client, one thread).
 */
#ifndef WHOCONN_ETCD_H
#define WHOCONN_ETCD_H

#include <stdbool.h>
#include <stddef.h>

/* A client talks to at most this many members, each URL shorter than
 * ETCD_ENDPOINT_LEN: an etcd cluster has 3, 5 or 7 members. */
#define ETCD_ENDPOINTS_MAX 9
#define ETCD_ENDPOINT_LEN 256

/* Every call gives up after this long: a member that lost its quorum may
 * hold a request for seconds, and the caller's loop must keep going.  A
 * new connection gets the smaller part of it. */
#define ETCD_CALL_TIMEOUT_MS 1000
#define ETCD_CONNECT_TIMEOUT_MS 500

/* The longest key the client sends or hands back. */
#define ETCD_KEY_MAX 256

struct etcd;

struct etcd_config {
    const char *endpoints[ETCD_ENDPOINTS_MAX];
    int nendpoints;
    /* NULL: not used */
    const char *ca_file, *cert_file, *key_file;
    const char *user, *password;
};

/* One key and value from a range or the watch stream.  value is NULL
 * (length 0) for a deletion; an empty value is "" (length 0). */
struct etcd_kv {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
    long long mod_revision; /* 0 where etcd did not say */
};

typedef void etcd_kv_fn(void *user, const struct etcd_kv *kv);

/* Opens a client on cfg (copied: cfg's strings may go after).  Returns 0,
 * -EINVAL (no endpoint, or one too long), -EIO (libcurl would not start),
 * or -ENOMEM. */
int etcd_open(struct etcd **ret, const struct etcd_config *cfg);

/* Ends the watch stream and frees everything; NULL is fine. */
void etcd_close(struct etcd *e);

/* The endpoint in use.  etcd_failover moves to the next one (the first
 * after the last) and ends the watch stream; with one endpoint it does
 * nothing. */
const char *etcd_endpoint(const struct etcd *e);
void etcd_failover(struct etcd *e);

/* The words for err, for a log line: etcd's or libcurl's for the last
 * failed call where it gave any ("TLS failed: ...", "refused the request
 * (HTTP 400: etcdserver: ...)"), else a fixed phrase. */
const char *etcd_strerror(const struct etcd *e, int err);

/* "libcurl/7.88.1 OpenSSL/3.0.15 ..., jansson 2.14", for --version. */
const char *etcd_library_versions(void);

/* KV.  etcd_put attaches the key to lease (0: none).  etcd_range reads
 * [key, range_end) (range_end NULL: key alone), linearizable, calls fn for
 * each key and gives the store's revision.  etcd_count is the same read
 * counting only: the cheapest linearizable read, so its success proves
 * that the member is part of a quorum right now. */
int etcd_put(struct etcd *e, const char *key, const char *value, long long lease);
int etcd_range(struct etcd *e, const char *key, const char *range_end, etcd_kv_fn *fn, void *user,
               long long *revision);
int etcd_count(struct etcd *e, const char *key, const char *range_end, long long *count);

/* The end of the range of every key that starts with prefix: prefix with
 * its last byte + 1.  Returns 0 or -ENAMETOOLONG (or -EINVAL: empty). */
int etcd_prefix_end(const char *prefix, char *out, size_t size);

/* Leases.  grant gives the id of a new lease of ttl seconds; keepalive
 * renews it once and gives its TTL (-ENOLINK: etcd no longer knows it);
 * revoke ends it now, and etcd deletes the keys attached to it. */
int etcd_lease_grant(struct etcd *e, unsigned ttl, long long *id);
int etcd_lease_keepalive(struct etcd *e, long long id, long long *ttl);
int etcd_lease_revoke(struct etcd *e, long long id);

/* The watch stream: one at a time, on the endpoint in use, over
 * [key, range_end) from start_revision on.  etcd_watch_start logs in if
 * there is a user and no token yet, and sends the request without
 * waiting for the answer (-EBUSY: a stream is open); etcd_watch_run reads what has arrived, without waiting,
 * and calls fn for each event (kv->value NULL: a deletion).  It returns 0
 * while the stream runs, or why it ended:
 *   -ESTALE     etcd compacted past start_revision, or cancelled the
 *               watch (e.g. its member lost the leader): read again
 *   -EREMOTEIO  etcd answered with an error
 *   -EBADMSG    a line that is not a watch response
 *   -EMSGSIZE   a line over ETCD_BODY_MAX
 *   -ECONNRESET the member closed the stream (restarted, killed), or the
 *               transfer failed otherwise; etcd_strerror(e, -ECONNRESET)
 *               says how, in libcurl's words
 * An event cut short by the end is never delivered.  An ended stream
 * stays (etcd_watching() true) until etcd_watch_stop().
 * etcd_watch_synced() is true once etcd confirmed the watch, until it is
 * stopped.  etcd_wait() sleeps until the stream has something to read or
 * timeout_ms has passed (or a signal arrived). */
int etcd_watch_start(struct etcd *e, const char *key, const char *range_end, long long start_revision,
                     etcd_kv_fn *fn, void *user);
int etcd_watch_run(struct etcd *e);
void etcd_watch_stop(struct etcd *e);
bool etcd_watching(const struct etcd *e);
bool etcd_watch_synced(const struct etcd *e);
void etcd_wait(struct etcd *e, int timeout_ms);

#endif /* WHOCONN_ETCD_H */
