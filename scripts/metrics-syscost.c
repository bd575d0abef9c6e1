/*
 * metrics-syscost FILE - the kernel's share of what the counters cost a
 * connection: the system calls of whoconn.c's metrics_map() and the first
 * write to the shared page, then the munmap() that process exit does,
 * repeated and timed.  Callgrind (scripts/metrics-cost) sees only user
 * space; this is the rest.  FILE should be on a tmpfs, as /run is.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "whoconn.h"

#define ROUNDS 100000

int main(int argc, char **argv) {
    struct timespec a, b;
    struct stat st;

    if (argc != 2) {
        fprintf(stderr, "usage: metrics-syscost FILE\n");
        return 64;
    }
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (int i = 0; i < ROUNDS; i++) {
        int fd = open(argv[1], O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0 || fstat(fd, &st) < 0 ||
            (st.st_size < (off_t)sizeof(struct whoconn_metrics) &&
             ftruncate(fd, sizeof(struct whoconn_metrics)) < 0)) {
            perror(argv[1]);
            return 1;
        }
        struct whoconn_metrics *m = mmap(NULL, sizeof *m, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (m == MAP_FAILED) {
            perror("mmap");
            return 1;
        }
        __atomic_fetch_add(&m->accepted, 1, __ATOMIC_RELAXED);
        munmap(m, sizeof *m);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("kernel side (open, fstat, mmap, close, first write, munmap; %d rounds): %.1f us per connection\n",
           ROUNDS, ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / ROUNDS / 1000);
    unlink(argv[1]);
    return 0;
}
