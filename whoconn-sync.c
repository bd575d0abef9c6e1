/*
 * whoconn-sync - the cluster agent of whoconn: makes WHO count the clients
 * of every available server, not only this one.
 *
 * One long-running process per server, started by whoconn-sync.service
 * (Type=notify, with a watchdog), next to the socket-activated whoconn
 * connection processes.  It talks to etcd's v3 JSON gateway over HTTP or
 * HTTPS (a CA file, a client certificate and an etcd user may be set) and
 * to the local SQLite registry:
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
 * This file is the agent's loop: one step_* per concern, each reading as a
 * sentence.  Its settings are lib/sync-config.c's; etcd is lib/etcd.c's
 * client (libcurl and jansson live there); it links whoconn's registry
 * module (lib/registry.c), so the schema, the liveness check and the
 * sweep have one definition.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "whoconn.h"
#include "lib/etcd.h"
#include "lib/log.h"
#include "lib/registry.h"
#include "lib/serverid.h"
#include "lib/sync-config.h"
#include "lib/util.h"

#include <systemd/sd-daemon.h>

/* ---- limits and defaults --------------------------------------------- */

/* Where the servers' counts live in etcd; one key per server id. */
#define SYNC_PREFIX "/whoconn/v1/count/"

/* The registry is polled this often for a changed local count; a new
 * client reaches the other servers within this plus one etcd round trip
 * (a connection registers before its first reply). */
#define SYNC_POLL_MS 150

/* After a failed call, the same kind of call waits this long.  Every call
 * itself gives up after ETCD_CALL_TIMEOUT_MS (lib/etcd.h). */
#define SYNC_RETRY_MS 500

/* Peer rows are rewritten at least this often while the view is
 * confirmed, so their expiry moves forward. */
#define SYNC_REFRESH_MS 500

/* Bounds on what etcd (and through it, any peer) can make us hold: a
 * count is a few digits, and a longer value is not one. */
#define SYNC_PEERS_MAX 64
#define SYNC_COUNT_MAX 1000000000LL
#define SYNC_VALUE_MAX 63

/* The agent waits this long for the registry's write lock; connection
 * processes hold it for microseconds. */
#define SYNC_BUSY_TIMEOUT_MS 1000

/* ---- state ------------------------------------------------------------ */

struct agent {
    struct sync_config cfg;
    char key[ETCD_KEY_MAX];        /* this server's key */
    char prefix_end[ETCD_KEY_MAX]; /* the end of SYNC_PREFIX's range */
    struct etcd *etcd;
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

    /* view of the peers, from a range and then the watch stream (which is
     * in sync with etcd while etcd_watch_synced()) */
    int64_t watch_at;      /* next attempt to (re)start the watch */
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

/* ---- the view of the peers ---------------------------------------------- */

/* Applies one key/value from etcd (a range or the watch stream; value NULL:
 * deleted).  Keys that are not a server id under the prefix, and values
 * that are not a count, are ignored: etcd is shared infrastructure, and a
 * stray key must not break WHO. */
static void view_apply(void *user, const struct etcd_kv *kv) {
    struct agent *a = user;
    char id[UUID_STR_LEN];
    size_t plen = strlen(SYNC_PREFIX);
    bool deleted = !kv->value;
    long long count = 0;

    if (kv->key_len != plen + 36 || memcmp(kv->key, SYNC_PREFIX, plen) != 0 ||
        server_id_parse(kv->key + plen, id) < 0 || strcmp(id, a->cfg.id) == 0)
        return;
    if (!deleted) {
        char *end;
        if (kv->value_len == 0 || kv->value_len > SYNC_VALUE_MAX)
            return;
        errno = 0;
        count = strtoll(kv->value, &end, 10);
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

/* Reads every server's count (a linearizable read: its success also
 * proves a quorum) and the revision to watch from.  The range replaces
 * the view; etcd_range() hands over keys only from a good reply, so a
 * failed read leaves the view as it was. */
static int view_load(struct agent *a, long long *revision) {
    int before = a->npeers;

    a->npeers = 0;
    int err = etcd_range(a->etcd, SYNC_PREFIX, a->prefix_end, view_apply, a, revision);
    if (err < 0) {
        a->npeers = before;
        return err;
    }
    a->view_dirty = true;
    return 0;
}

/* Proves that the member we talk to is part of a quorum right now: a
 * linearizable read goes through the leader's ReadIndex, which needs
 * heartbeats acknowledged by a majority.  A keepalive is no such proof: a
 * leader that lost its followers goes on renewing leases until its
 * check-quorum steps it down, one to two election timeouts later. */
static int quorum_probe(struct agent *a) {
    long long n;

    return etcd_count(a->etcd, SYNC_PREFIX, a->prefix_end, &n);
}

/* ---- outcomes, logged once per fault ------------------------------------- */

/* Records the outcome of an etcd call: a failure switches to the next
 * endpoint (the member may be cut off from the others) and logs once per
 * kind of failure; the first success after failures logs the recovery. */
static void etcd_outcome(struct agent *a, int err, const char *what) {
    static const int kinds[] = {ETIMEDOUT, ECONNREFUSED, EPROTO, EACCES, EPERM, EREMOTEIO, EBADMSG};
    unsigned kind = 1u << (sizeof kinds / sizeof kinds[0]);

    if (err == 0) {
        if (a->etcd_err != 0)
            log_msg(LOG_NOTICE, "etcd reachable again at %s", etcd_endpoint(a->etcd));
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
                 what, etcd_endpoint(a->etcd), etcd_strerror(a->etcd, err), a->cfg.staleness);
    a->etcd_logged |= kind;
    a->etcd_err = err;
    etcd_failover(a->etcd);
}

static void reg_outcome(struct agent *a, int err, const char *what) {
    if (err == 0) {
        if (a->reg_err)
            log_msg(LOG_NOTICE, "registry %s usable again", a->cfg.db);
        a->reg_err = 0;
        return;
    }
    if (err != a->reg_err)
        log_msg(LOG_ERR, "registry %s: %s: %s", what, a->cfg.db, reg_strerror(err));
    a->reg_err = err;
    reg_close(&a->reg); /* reopened afresh on the next poll */
}

/* ---- the loop ----------------------------------------------------------- */

/* Reads this server's count from the registry (which sweeps the rows of
 * processes that are gone). */
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

/* Holds a lease (granted, then kept alive three times a TTL) and proves,
 * after each renewal, that etcd has a quorum. */
static void step_lease(struct agent *a, int64_t now) {
    long long id = 0, ttl = 0;
    int err;

    if (now < a->lease_at)
        return;
    if (a->lease == 0) {
        err = etcd_lease_grant(a->etcd, a->cfg.ttl, &id);
        if (err == 0) {
            a->lease = id;
            a->published = -1;
        }
        etcd_outcome(a, err, "lease grant");
    } else {
        err = etcd_lease_keepalive(a->etcd, a->lease, &ttl);
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
    a->lease_at = now + (int64_t)a->cfg.ttl * 1000 / 3;
}

/* Puts the local count under this server's key, on the lease, when it
 * changed since the last put. */
static void step_publish(struct agent *a, int64_t now) {
    char val[32];

    if (a->lease == 0 || a->local < 0 || a->local == a->published || now < a->put_at)
        return;
    snprintf(val, sizeof val, "%lld", a->local);
    int err = etcd_put(a->etcd, a->key, val, a->lease);
    etcd_outcome(a, err, "put");
    if (err == 0)
        a->published = a->local;
    else
        a->put_at = now + SYNC_RETRY_MS;
}

/* Without a watch stream, reads every count and watches from there. */
static void step_watch(struct agent *a, int64_t now) {
    long long rev = 0;

    if (etcd_watching(a->etcd) || now < a->watch_at)
        return;
    int64_t sent = now_ms(CLOCK_BOOTTIME);
    int err = view_load(a, &rev);
    etcd_outcome(a, err, "range");
    if (err == 0) {
        a->last_ok = sent;
        err = etcd_watch_start(a->etcd, SYNC_PREFIX, a->prefix_end, rev + 1, view_apply, a);
    }
    if (err < 0)
        a->watch_at = now + SYNC_RETRY_MS;
}

/* Applies what the watch stream brought; a stream that ended (member
 * restarted, lost its leader, compaction, or a bad line) is read anew. */
static void step_watch_done(struct agent *a) {
    if (etcd_watch_run(a->etcd) == 0)
        return;
    if (etcd_watch_synced(a->etcd))
        log_msg(LOG_NOTICE, "etcd watch at %s ended; reading the counts again",
                 etcd_endpoint(a->etcd));
    etcd_watch_stop(a->etcd);
    a->watch_at = now_ms(CLOCK_MONOTONIC) + SYNC_RETRY_MS;
}

/* Writes the peer rows when the view changed, or when a newer proof of
 * quorum moves their expiry forward.  Rows are valid until the last proof
 * plus the staleness bound: without a new one they age out by themselves. */
static void step_peers(struct agent *a) {
    int64_t boot = now_ms(CLOCK_BOOTTIME);
    bool synced = etcd_watch_synced(a->etcd);
    int64_t base = synced ? a->last_ok : a->written_base;
    int64_t staleness_ms = (int64_t)a->cfg.staleness * 1000;

    if (a->last_ok == 0)
        return;
    if (a->rows_live && boot >= a->written_base + staleness_ms) {
        log_msg(LOG_WARNING,
                 "no etcd quorum confirmed for %u s: WHO now counts only this server's clients",
                 a->cfg.staleness);
        a->rows_live = false;
    }
    if (!synced)
        return;
    if (!a->view_dirty && base - a->written_base < SYNC_REFRESH_MS)
        return;
    int err = reg_put_peers(&a->reg, a->peers, a->npeers, base + staleness_ms, base);
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
    int64_t left = a->written_base + (int64_t)a->cfg.staleness * 1000 - boot;

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
        snprintf(status, sizeof status, "STATUS=%s; etcd %s: %s", who, etcd_endpoint(a->etcd),
                 etcd_strerror(a->etcd, a->etcd_err));
    else
        snprintf(status, sizeof status, "STATUS=%s; etcd %s %s", who, etcd_endpoint(a->etcd),
                 etcd_watch_synced(a->etcd) ? "in sync" : "syncing");
    /* the watchdog is fed only while the registry works */
    if (a->reg_err == 0)
        sd_notify(0, "WATCHDOG=1");
    sd_notify(0, status);
}

/* Sleeps until the next step is due or the watch stream has news. */
static void step_sleep(struct agent *a) {
    int64_t now = now_ms(CLOCK_MONOTONIC);
    int64_t wake = a->poll_at;

    if (a->lease_at < wake)
        wake = a->lease_at;
    if (!etcd_watching(a->etcd) && a->watch_at < wake)
        wake = a->watch_at;
    etcd_wait(a->etcd, wake > now ? (int)(wake - now) : 0);
}

/* ---- start and stop -------------------------------------------------- */

static void sync_on_signal(int sig) {
    sync_signal = sig;
}

/* A planned stop is exact for the others: the key goes with the lease. */
static void stop(struct agent *a) {
    sd_notify(0, "STOPPING=1");
    etcd_watch_stop(a->etcd);
    int r = a->lease ? etcd_lease_revoke(a->etcd, a->lease) : -ENOLINK;
    if (r == 0)
        log_msg(LOG_INFO, "stopping on signal %d; lease revoked, the other servers no longer "
                           "count this server's clients",
                 (int)sync_signal);
    else
        log_msg(LOG_WARNING, "stopping on signal %d; lease not revoked (%s): the other servers "
                              "drop this server's clients after the lease TTL (%u s)",
                 (int)sync_signal, r == -ENOLINK ? "none granted" : etcd_strerror(a->etcd, r),
                 a->cfg.ttl);
}

int main(int argc, char **argv) {
    static struct agent a;
    struct etcd_config ecfg;
    char dbbuf[4096];
    struct sigaction sa = {.sa_handler = sync_on_signal};

    log_setup("whoconn-sync");
    int r = sync_config_load(&a.cfg, argc, argv, dbbuf, sizeof dbbuf);
    if (r != 0)
        return r > 0 ? WHOCONN_EXIT_OK : WHOCONN_EXIT_USAGE;
    snprintf(a.key, sizeof a.key, "%s%s", SYNC_PREFIX, a.cfg.id);
    etcd_prefix_end(SYNC_PREFIX, a.prefix_end, sizeof a.prefix_end);

    umask(077);
    signal(SIGPIPE, SIG_IGN);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    sync_config_etcd(&a.cfg, &ecfg);
    r = etcd_open(&a.etcd, &ecfg);
    if (r < 0) {
        if (r == -ENOMEM)
            log_msg(LOG_ERR, "out of memory");
        return WHOCONN_EXIT_SOFTWARE;
    }
    reg_setup(&a.reg, a.cfg.db, 0); /* pid 0: the agent holds no connection row */
    a.reg.busy_timeout_ms = SYNC_BUSY_TIMEOUT_MS;
    a.local = a.published = -1;
    log_msg(LOG_INFO,
             "server %s, registry %s, etcd %s%s, lease TTL %u s, staleness bound %u s%s%s%s%s",
             a.cfg.id, a.cfg.db, a.cfg.endpoints[0], a.cfg.nendpoints > 1 ? " and others" : "",
             a.cfg.ttl, a.cfg.staleness, a.cfg.cert_file ? ", client certificate " : "",
             a.cfg.cert_file ? a.cfg.cert_file : "", a.cfg.user ? ", etcd user " : "",
             a.cfg.user ? a.cfg.user : "");
    /* Ready once the registry is usable: etcd may well be down at boot,
     * and this server must serve anyway. */
    step_registry(&a, now_ms(CLOCK_MONOTONIC));
    sd_notify(0, "READY=1");

    while (!sync_signal) {
        int64_t now = now_ms(CLOCK_MONOTONIC);

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
        step_watch_done(&a);
        step_peers(&a);
        step_notify(&a);
        step_sleep(&a);
    }

    stop(&a);
    reg_free(&a.reg);
    etcd_close(a.etcd);
    return WHOCONN_EXIT_OK;
}
