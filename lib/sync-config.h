/*
 * sync-config.h - whoconn-sync's settings: the environment (in the unit,
 * /etc/whoconn/cluster.conf), then the command line over it, through
 * lib/cli's option loop.
 *
 * Contract: sync_config_load() returns 0 with every setting checked; 1
 * when --help or --version was done (exit 0); or -EINVAL after printing
 * one line on stderr that names the setting (exit 64).  The TLS and
 * password files are read at load, so that a typo stops the agent at once
 * instead of failing every etcd call later.  An empty TLS or user setting
 * is an unset one (`WHOCONN_ETCD_CA_FILE=` in the file).  It never logs
 * to the journal: an agent that cannot read its settings has not started.
 */
#ifndef WHOCONN_SYNC_CONFIG_H
#define WHOCONN_SYNC_CONFIG_H

#include <stddef.h>

#include "etcd.h"
#include "util.h"

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

/* A password is read from a file of at most this size. */
#define SYNC_PASSWORD_MAX 1024

struct sync_config {
    char endpoints[ETCD_ENDPOINTS_MAX][ETCD_ENDPOINT_LEN];
    int nendpoints;
    unsigned ttl;       /* seconds */
    unsigned staleness; /* seconds */
    const char *db;
    char id[UUID_STR_LEN];
    /* TLS and etcd authentication; NULL: not used */
    const char *ca_file, *cert_file, *key_file, *user;
    char password[SYNC_PASSWORD_MAX];
};

/* Fills cfg from the environment and argv; dbbuf holds the default
 * registry path when none is given. */
int sync_config_load(struct sync_config *cfg, int argc, char **argv, char *dbbuf, size_t dbsize);

/* The etcd client's settings from cfg (pointers into cfg). */
void sync_config_etcd(const struct sync_config *cfg, struct etcd_config *out);

#endif /* WHOCONN_SYNC_CONFIG_H */
