/*
 * confine.h - how a connection process confines itself, right after
 * start-up and before the first byte from the peer.
 *
 * Contract: confine(db) narrows the calling process for the rest of its
 * life, irreversibly: no new privileges; with Landlock (where the kernel has
 * it) file-system writes only beneath the directory of the registry db (or
 * its nearest existing parent) and no execve(); and the system-call
 * allow-list of whoconn-seccomp.h (generated at build time by
 * lib/gen-seccomp.c): no socket() but AF_UNIX, no fork, exec or ptrace.
 * Returns 0, or a negative errno when a step the kernel offers failed (the
 * caller must then not serve).  A kernel or container without Landlock is
 * not an error.  Built with -DWHOCONN_NO_CONFINE (valgrind and sanitizer
 * builds only) it sets no-new-privileges and nothing else.
 */
#ifndef WHOCONN_CONFINE_H
#define WHOCONN_CONFINE_H

int confine(const char *db);

#endif /* WHOCONN_CONFINE_H */
