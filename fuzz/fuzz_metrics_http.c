/*
 * fuzz_metrics_http - libFuzzer over whoconn-metrics' request parsing: any
 * bytes that end a request head go through parse_request(), which must
 * neither crash nor read out of bounds (ASan, UBSan), and may accept only
 * GET or HEAD of /metrics.  It links lib/http.c, the parser whoconn-metrics
 * runs.  `make fuzz-metrics` (mk/metrics.mk).
 */
#include <stdlib.h>
#include <string.h>

#include "../lib/http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct request rq;
    size_t skip = 0;

    if (size > WHOCONN_METRICS_HEAD_MAX)
        return 0;
    /* what read_head() hands over: leading empty lines dropped, the head
     * cut after its empty line */
    while (skip < size && (data[skip] == '\r' || data[skip] == '\n'))
        skip++;
    memset(&rq, 0, sizeof rq);
    memcpy(rq.head, data + skip, size - skip);
    rq.len = head_end(rq.head, size - skip);
    if (rq.len == 0)
        return 0;
    enum status st = parse_request(&rq);
    if (st == ST_OK && (strcmp(rq.path, METRICS_PATH) != 0 ||
                        (strcmp(rq.method, "GET") != 0 && strcmp(rq.method, "HEAD") != 0)))
        abort();
    if (st != ST_OK && !rq.why)
        abort(); /* every refusal says why, for the log */
    return 0;
}
