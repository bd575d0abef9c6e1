/*
 * trivial - the cheapest inetd-style program: answers every read from
 * fd 0 with one line on fd 1 and touches nothing else (no files, no
 * registry, no libraries beyond libc).  The benchmarks run it under the
 * same launcher as whoconn: its rate is the exec limit of the model.
 */
#include <unistd.h>

int main(void) {
    char buf[4096];

    while (read(0, buf, sizeof buf) > 0)
        if (write(1, "0\n", 2) != 2)
            return 74;
    return 0;
}
