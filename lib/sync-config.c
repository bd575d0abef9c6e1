/*
 * sync-config.c - whoconn-sync's settings and the checks of its TLS and
 * password files (contract in sync-config.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli.h"
#include "etcd.h"
#include "serverid.h"
#include "sync-config.h"

#define PROG "whoconn-sync"

/* "http://10.0.0.1:2379,http://10.0.0.2:2379": scheme, host and port only. */
static int parse_endpoints(struct sync_config *cfg, const char *s) {
    cfg->nendpoints = 0;
    while (*s) {
        size_t len = strcspn(s, ", ");
        if (len > 0) {
            if (cfg->nendpoints == ETCD_ENDPOINTS_MAX || len >= ETCD_ENDPOINT_LEN)
                return -E2BIG;
            if (!((len > 7 && strncmp(s, "http://", 7) == 0) ||
                  (len > 8 && strncmp(s, "https://", 8) == 0)))
                return -EINVAL;
            char *e = cfg->endpoints[cfg->nendpoints++];
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
    return cfg->nendpoints > 0 ? 0 : -ENOENT;
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
        fprintf(stderr, PROG ": %s (%s) \"%s\": %s\n", what, var, path, strerror(errno));
    return f;
}

static int check_pem_cert(const char *what, const char *var, const char *path, X509 **ret) {
    FILE *f = setting_open(what, var, path);

    if (!f)
        return -1;
    X509 *x = PEM_read_X509(f, NULL, no_passphrase, NULL);
    fclose(f);
    if (!x) {
        fprintf(stderr, PROG ": %s (%s) \"%s\": not a PEM certificate\n", what, var, path);
        return -1;
    }
    if (ret)
        *ret = x;
    else
        X509_free(x);
    return 0;
}

static int check_tls(const struct sync_config *cfg) {
    X509 *cert = NULL;
    int err = 0;

    if ((cfg->cert_file != NULL) != (cfg->key_file != NULL)) {
        fprintf(stderr, PROG ": a client certificate (WHOCONN_ETCD_CERT_FILE) needs its "
                        "key (WHOCONN_ETCD_KEY_FILE), and a key its certificate\n");
        return -1;
    }
    if (cfg->ca_file || cfg->cert_file)
        for (int i = 0; i < cfg->nendpoints; i++)
            if (strncmp(cfg->endpoints[i], "https://", 8) != 0) {
                fprintf(stderr,
                        PROG ": the TLS settings (WHOCONN_ETCD_CA_FILE, "
                        "WHOCONN_ETCD_CERT_FILE) need https:// endpoints, and \"%s\" is not one\n",
                        cfg->endpoints[i]);
                return -1;
            }
    if (cfg->ca_file && check_pem_cert("CA file", "WHOCONN_ETCD_CA_FILE", cfg->ca_file, NULL) < 0)
        return -1;
    if (!cfg->cert_file)
        return 0;
    if (check_pem_cert("client certificate", "WHOCONN_ETCD_CERT_FILE", cfg->cert_file, &cert) < 0)
        return -1;
    FILE *f = setting_open("client key", "WHOCONN_ETCD_KEY_FILE", cfg->key_file);
    EVP_PKEY *key = f ? PEM_read_PrivateKey(f, NULL, no_passphrase, NULL) : NULL;
    if (f)
        fclose(f);
    if (f && !key) {
        fprintf(stderr,
                PROG ": client key (WHOCONN_ETCD_KEY_FILE) \"%s\": not an unencrypted PEM "
                "private key\n",
                cfg->key_file);
        err = -1;
    } else if (!f)
        err = -1;
    else if (X509_check_private_key(cert, key) != 1) {
        fprintf(stderr,
                PROG ": client key (WHOCONN_ETCD_KEY_FILE) \"%s\" does not belong to the "
                "client certificate (WHOCONN_ETCD_CERT_FILE) \"%s\"\n",
                cfg->key_file, cfg->cert_file);
        err = -1;
    }
    EVP_PKEY_free(key);
    X509_free(cert);
    return err;
}

/* The password is the file's first line (a trailing newline is not part
 * of it); kept out of the environment, which /proc shows to the user. */
static int read_password(struct sync_config *cfg, const char *user, const char *path) {
    if ((user != NULL) != (path != NULL)) {
        fprintf(stderr, PROG ": an etcd user (WHOCONN_ETCD_USER) needs its password file "
                        "(WHOCONN_ETCD_PASSWORD_FILE), and a password file its user\n");
        return -1;
    }
    if (!user)
        return 0;
    FILE *f = setting_open("password file", "WHOCONN_ETCD_PASSWORD_FILE", path);
    if (!f)
        return -1;
    size_t n = fread(cfg->password, 1, sizeof cfg->password, f);
    int bad = ferror(f);
    fclose(f);
    if (!bad && n == sizeof cfg->password) {
        fprintf(stderr, PROG ": password file (WHOCONN_ETCD_PASSWORD_FILE) \"%s\": longer "
                        "than %d bytes\n", path, SYNC_PASSWORD_MAX - 1);
        return -1;
    }
    cfg->password[bad ? 0 : n] = '\0';
    cfg->password[strcspn(cfg->password, "\r\n")] = '\0';
    if (bad || !cfg->password[0]) {
        fprintf(stderr, PROG ": password file (WHOCONN_ETCD_PASSWORD_FILE) \"%s\": %s\n", path,
                bad ? "cannot be read" : "empty");
        return -1;
    }
    cfg->user = user;
    return 0;
}

static void usage(FILE *f) {
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

int sync_config_load(struct sync_config *cfg, int argc, char **argv, char *dbbuf, size_t dbsize) {
    enum { EPS, TTL, STALE, DB, SID, CA, CERT, KEY, USER, PWFILE, NSETTINGS };
    struct cli_setting set[NSETTINGS] = {
        [EPS] = {"--endpoints", "WHOCONN_ETCD_ENDPOINTS", NULL, NULL},
        [TTL] = {"--lease-ttl", "WHOCONN_LEASE_TTL", NULL, NULL},
        [STALE] = {"--staleness", "WHOCONN_STALENESS", NULL, NULL},
        [DB] = {"--db", "WHOCONN_DB", NULL, NULL},
        [SID] = {"--server-id", "WHOCONN_SERVER_ID", NULL, NULL},
        [CA] = {"--ca-file", "WHOCONN_ETCD_CA_FILE", NULL, NULL},
        [CERT] = {"--cert-file", "WHOCONN_ETCD_CERT_FILE", NULL, NULL},
        [KEY] = {"--key-file", "WHOCONN_ETCD_KEY_FILE", NULL, NULL},
        [USER] = {"--user", "WHOCONN_ETCD_USER", NULL, NULL},
        [PWFILE] = {"--password-file", "WHOCONN_ETCD_PASSWORD_FILE", NULL, NULL},
    };
    char min_stale[32];
    int err = cli_parse(PROG, argc, argv, set, NSETTINGS, usage, etcd_library_versions());

    if (err != 0)
        return err;
    const char *eps = set[EPS].value, *sid = set[SID].value;
    if (!eps || !*eps) {
        fprintf(stderr, PROG ": no etcd endpoints (WHOCONN_ETCD_ENDPOINTS, --endpoints): "
                             "cluster mode is not configured; see /etc/whoconn/cluster.conf\n");
        return -EINVAL;
    }
    err = parse_endpoints(cfg, eps);
    if (err < 0) {
        fprintf(stderr,
                PROG ": etcd endpoints \"%s\": %s\n", eps,
                err == -E2BIG ? "too many (at most 9) or too long"
                              : "each must be http://HOST:PORT or https://HOST:PORT, "
                                "comma-separated, without a path");
        return -EINVAL;
    }
    cfg->ttl = SYNC_TTL_DEFAULT;
    if (cli_seconds_as(PROG, "lease TTL", set[TTL].value, SYNC_TTL_MIN, NULL, SYNC_TTL_MAX,
                       &cfg->ttl) < 0)
        return -EINVAL;
    cfg->staleness = SYNC_STALENESS_DEFAULT < cfg->ttl ? cfg->ttl : SYNC_STALENESS_DEFAULT;
    snprintf(min_stale, sizeof min_stale, "the lease TTL (%u)", cfg->ttl);
    if (cli_seconds_as(PROG, "staleness bound", set[STALE].value, cfg->ttl, min_stale,
                       SYNC_STALENESS_MAX, &cfg->staleness) < 0)
        return -EINVAL;
    if (sid && server_id_parse(sid, cfg->id) < 0) {
        fprintf(stderr, PROG ": server id \"%s\" is not a UUID\n", sid);
        return -EINVAL;
    }
    if (!sid && (err = server_id_derive(cfg->id)) < 0) {
        fprintf(stderr, PROG ": cannot derive the server id from the machine id: %s\n",
                strerror(-err));
        return -EINVAL;
    }
    if (cli_db(PROG, set[DB].value, dbbuf, dbsize, &cfg->db) < 0)
        return -EINVAL;
    /* an empty setting is an unset one: `WHOCONN_ETCD_CA_FILE=` in the file */
    for (int i = CA; i <= PWFILE; i++)
        if (set[i].value && !*set[i].value)
            set[i].value = NULL;
    cfg->ca_file = set[CA].value;
    cfg->cert_file = set[CERT].value;
    cfg->key_file = set[KEY].value;
    if (check_tls(cfg) < 0 || read_password(cfg, set[USER].value, set[PWFILE].value) < 0)
        return -EINVAL;
    return 0;
}

void sync_config_etcd(const struct sync_config *cfg, struct etcd_config *out) {
    memset(out, 0, sizeof *out);
    for (int i = 0; i < cfg->nendpoints; i++)
        out->endpoints[i] = cfg->endpoints[i];
    out->nendpoints = cfg->nendpoints;
    out->ca_file = cfg->ca_file;
    out->cert_file = cfg->cert_file;
    out->key_file = cfg->key_file;
    out->user = cfg->user;
    out->password = cfg->user ? cfg->password : NULL;
}
