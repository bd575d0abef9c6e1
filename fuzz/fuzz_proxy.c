/*
 * fuzz_proxy.c - libFuzzer over the PROXY v2 header parser (lib/proxy.c),
 * with ASan and UBSan: the input is the first bytes of a connection.  It
 * links lib/proxy.c, the parser whoconn runs (fuzz/fuzz_session.c drives it
 * inside the session too, with flag bit 3).  `make fuzz-proxy` (mk/proxy.mk).
 *
 * Besides the sanitizers, it checks the contract (an oracle, so wrong
 * answers are found, not only crashes):
 *   - proxy_v2_length() over every prefix, as bytes arrive one by one: 0
 *     only before the fixed part is complete; once a prefix is refused,
 *     every longer one is; once the length is known, it never changes and
 *     stays within PROXY_V2_HEADER_MAX; every refusal says why;
 *   - proxy_v2_parse() accepts exactly a complete header of that length,
 *     never fewer or more bytes, and what it returns matches the header:
 *     a client's addresses only for PROXY over TCP, in the family the
 *     header names.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    long known = 0;
    size_t refused_at = 0;

    if (size > PROXY_V2_HEADER_MAX + 64)
        return 0;
    for (size_t n = 1; n <= size; n++) {
        const char *why = NULL;
        long len = proxy_v2_length(data, n, &why);
        if (len < 0) {
            if (!why)
                abort(); /* every refusal says why, for the log */
            if (!refused_at)
                refused_at = n;
            continue;
        }
        if (refused_at)
            abort(); /* accepted again after a refusal */
        if ((len == 0) != (n < PROXY_V2_FIXED))
            abort();
        if (len > 0 && ((known && len != known) || len < PROXY_V2_FIXED ||
                        len > PROXY_V2_HEADER_MAX))
            abort();
        if (len > 0)
            known = len;
    }

    /* parsed at the known length, one byte either side, and whole */
    size_t tries[4] = {size, size, size, size};
    for (size_t i = 0; known > 0 && i < 3; i++)
        if ((size_t)known + i - 1 <= size)
            tries[i] = (size_t)known + i - 1;
    struct proxy_v2 h;
    const char *why = NULL;
    for (size_t i = 0; i < 4; i++) {
        size_t n = tries[i];
        int r = proxy_v2_parse(data, n, &h, &why);
        if (r == 0 && (refused_at || known == 0 || (size_t)known != n))
            abort(); /* only a complete header of its own length */
        if (r < 0 && !why)
            abort();
        if (r == 0 && h.kind == PROXY_V2_CLIENT) {
            int af = (data[13] >> 4) == 1 ? AF_INET : (data[13] >> 4) == 2 ? AF_INET6 : -1;
            if ((data[12] & 0x0f) != 1 || (data[13] & 0x0f) != 1 || h.src.ss_family != af ||
                h.dst.ss_family != af)
                abort();
        }
        if (r == 0 && h.kind != PROXY_V2_CLIENT && h.src.ss_family != AF_UNSPEC)
            abort();
    }
    return 0;
}
