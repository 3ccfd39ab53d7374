/*
 * fuzz_search_fold.c — fuzzes the string search normalization of fhir/search_fold.c
 * (Unicode caseless form without marks, FHIR R4 search.html#string).
 *
 * Input: any bytes (up to the first NUL, as the engine's C strings; at most 4 KiB),
 * invalid UTF-8 included. Invariants: the output is valid UTF-8; folding is stable
 * (fold(fold(x)) == fold(x)); the fast paths (ASCII loop, code point table, library
 * chunks) give exactly what the library gives for the whole string
 * (hv__search_normalize_ref); an output truncated by a smaller cap is a prefix of the
 * whole output that ends on a code point boundary, and again the library's.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <unistr.h>

#include "fhir/search_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define IN_MAX 4096
#define OUT_MAX (12 * IN_MAX + 1) /* an invalid byte folds to 3 bytes, U+FDFA to 33 */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char in[IN_MAX + 1], a[OUT_MAX], b[OUT_MAX], c[OUT_MAX], t[OUT_MAX];
    size_t n = size < IN_MAX ? size : IN_MAX, la, lc, cap;
    memcpy(in, data, n);
    in[n] = '\0';
    la = hv__search_normalize(in, a, sizeof(a));
    if (la != strlen(a) || u8_check((const uint8_t *)a, la) != NULL)
        abort();
    hv__search_normalize_ref(in, b, sizeof(b));
    if (strcmp(a, b) != 0)
        abort();
    lc = hv__search_normalize(a, c, sizeof(c));
    if (lc != la || memcmp(a, c, la) != 0)
        abort();
    /* A cap picked from the input's length: the truncated fold is a prefix, whole code points. */
    cap = 1 + (size * 7) % (la + 2);
    lc = hv__search_normalize(in, t, cap);
    if (lc >= cap || memcmp(t, a, lc) != 0 || u8_check((const uint8_t *)t, lc) != NULL)
        abort();
    hv__search_normalize_ref(in, b, cap);
    if (strcmp(t, b) != 0)
        abort();
    if (lc < la && cap > lc + 4 + 1)
        abort(); /* only a last code point that did not fit may be missing */
    return 0;
}
