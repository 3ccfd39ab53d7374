/*
 * fuzz_http_answers.c — fuzzes http-send's reader of pipelined HTTP/1.1 answers
 * (engine/channel_pipe.c, parse_answers through hv__pipe_feed_answers): the first byte
 * picks the number of requests in flight (1-64), the rest is what the peer sends back,
 * then the connection ends.
 *
 * Invariants: the batch reports exactly once, between 1 and the number of requests;
 * every outcome before the last is delivered or an error (never a retry: nothing after
 * a retry counts); the last is delivered, retry or error; the outcome does not depend on
 * how the bytes are split into reads (whole, one byte at a time, 7 at a time) — the
 * reader is resumable.
 */
#include "config.h"
#include "engine/channel_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int whole[64], bytes[64], sevens[64];
    size_t nreq, n1 = 0, n2 = 0, n3 = 0, i;
    const char *p;
    if (size < 1) return 0;
    nreq = (size_t)(data[0] % 64) + 1;
    p = (const char *)data + 1;
    size--;
    if (hv__pipe_feed_answers(p, size, nreq, size ? size : 1, whole, &n1) != HV_OK) abort();
    if (hv__pipe_feed_answers(p, size, nreq, 1, bytes, &n2) != HV_OK) abort();
    if (hv__pipe_feed_answers(p, size, nreq, 7, sevens, &n3) != HV_OK) abort();
    if (n1 < 1 || n1 > nreq) abort();
    if (n1 != n2 || n1 != n3) abort();
    for (i = 0; i < n1; i++) {
        if (whole[i] != bytes[i] || whole[i] != sevens[i]) abort();
        if (whole[i] != HV_CHANNEL_DELIVERED && whole[i] != HV_CHANNEL_ERROR &&
            (whole[i] != HV_CHANNEL_RETRY || i + 1 != n1))
            abort();
    }
    return 0;
}
