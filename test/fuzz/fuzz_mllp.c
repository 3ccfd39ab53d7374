/*
 * fuzz_mllp.c — the MLLP framer under arbitrary input, fed whole and in chunks
 * whose sizes come from the input. Invariant: chunking never changes the frames
 * read nor the final outcome (frame, need more, too big, protocol error), and
 * every frame wraps back to the bytes it was read from.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/hl7v2/hl7v2.h"

#define CHECK(c)                                                                      \
    do {                                                                              \
        if (!(c)) {                                                                   \
            fprintf(stderr, "fuzz_mllp: invariant failed: %s (line %d)\n", #c, __LINE__); \
            abort();                                                                  \
        }                                                                             \
    } while (0)

/* Runs the framer over p with chunk sizes from `sizes`; appends frames to out (length-prefixed). */
static int run(const char *p, size_t n, const uint8_t *sizes, size_t nsizes, hv_buf_t *out) {
    hv_mllp_framer_t f;
    size_t off = 0, k = 0;
    int rc = HV_AGAIN;
    hv_mllp_framer_init(&f, 64);
    while (off < n) {
        size_t chunk = nsizes ? (size_t)(sizes[k++ % nsizes] % 17) + 1 : n - off, pos = 0;
        if (chunk > n - off) chunk = n - off;
        while (pos < chunk) {
            const char *msg;
            size_t len, used;
            rc = hv_mllp_framer_feed(&f, p + off + pos, chunk - pos, &used, &msg, &len);
            pos += used;
            if (rc == HV_OK) {
                hv_buf_t w;
                uint32_t l = (uint32_t)len;
                CHECK(len <= 64);
                hv_buf_append(out, &l, sizeof(l));
                hv_buf_append(out, msg, len);
                hv_buf_init(&w, 0);
                CHECK(hv_mllp_wrap(msg, len, &w) == HV_OK && w.len == len + 3);
                hv_buf_release(&w);
                continue;
            }
            if (rc != HV_AGAIN) goto out;
            CHECK(pos == chunk);
        }
        off += chunk;
    }
out:
    hv_mllp_framer_release(&f);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hv_buf_t a, b;
    int ra, rb;
    size_t ns = size > 4 ? 4 : size;
    hv_buf_init(&a, 0);
    hv_buf_init(&b, 0);
    ra = run((const char *)data, size, NULL, 0, &a);
    rb = run((const char *)data, size, data, ns, &b);
    CHECK(ra == rb || (ra == HV_OK && rb == HV_AGAIN) || (ra == HV_AGAIN && rb == HV_OK));
    CHECK(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
    hv_buf_release(&a);
    hv_buf_release(&b);
    return 0;
}
