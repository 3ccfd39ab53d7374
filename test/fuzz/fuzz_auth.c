/*
 * fuzz_auth.c — fuzzes the parsers of untrusted authentication input: compact
 * JWTs (hv__jwt_decode, with strict base64url) and SMART scope strings
 * (hv_auth_scopes_parse / hv_auth_scopes_narrow).
 *
 * Invariants:
 *   - a JWT that decodes splits at its dots: signed_len is the offset of the
 *     second dot, alg is a string, and each base64url part re-encodes to the
 *     exact bytes it came from (one spelling per value);
 *   - narrowing a scope string by itself yields its canonical form, which
 *     parses to the same number of resource scopes and narrows to itself again
 *     (narrow is idempotent), and grants nothing the original did not.
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_part(const char *p, size_t n) {
    unsigned char *raw = NULL;
    size_t len = 0;
    hv_buf_t b;
    if (hv__b64url_decode(p, n, &raw, &len) != HV_OK) abort();
    hv_buf_init(&b, 0);
    if (hv__b64url_encode(raw, len, &b) != HV_OK) abort();
    if (b.len != n || (n > 0 && memcmp(b.data, p, n) != 0)) abort();
    hv_buf_release(&b);
    hv_free(raw);
}

static void fuzz_jwt(const char *s, size_t n) {
    hv__jwt_t j;
    const char *d1, *d2;
    if (hv__jwt_decode(s, n, &j) != HV_OK) return;
    d1 = memchr(s, '.', n);
    d2 = d1 ? memchr(d1 + 1, '.', (size_t)(s + n - d1 - 1)) : NULL;
    if (d1 == NULL || d2 == NULL || j.signed_len != (size_t)(d2 - s) || j.alg == NULL) abort();
    check_part(s, (size_t)(d1 - s));
    check_part(d1 + 1, (size_t)(d2 - d1 - 1));
    check_part(d2 + 1, (size_t)(s + n - d2 - 1));
    hv__jwt_free(&j);
}

static void fuzz_scopes(const char *s) {
    hv_auth_scopes_t *a = hv_malloc(sizeof(*a)), *b = hv_malloc(sizeof(*b));
    hv_buf_t n1, n2;
    hv_error_t err;
    size_t i;
    hv_buf_init(&n1, 0);
    hv_buf_init(&n2, 0);
    if (a == NULL || b == NULL) goto out;
    if (hv_auth_scopes_parse(s, a, &err) != HV_OK) goto out;
    if (hv_auth_scopes_narrow(s, s, &n1, &err) != HV_OK) abort();
    if (hv_auth_scopes_parse(n1.data ? n1.data : "", b, &err) != HV_OK) abort();
    if (b->n != a->n) abort();
    for (i = 0; i < a->n; i++)
        if (a->s[i].perms != b->s[i].perms || a->s[i].context != b->s[i].context ||
            strcmp(a->s[i].type, b->s[i].type) != 0 || strcmp(a->s[i].category, b->s[i].category) != 0)
            abort();
    if (hv_auth_scopes_narrow(n1.data ? n1.data : "", n1.data ? n1.data : "", &n2, &err) != HV_OK) abort();
    if (strcmp(n1.data ? n1.data : "", n2.data ? n2.data : "") != 0) abort();
out:
    hv_buf_release(&n1);
    hv_buf_release(&n2);
    hv_free(a);
    hv_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = hv_strndup((const char *)data, size);
    if (s == NULL) return 0;
    fuzz_jwt((const char *)data, size);
    if (strlen(s) == size) fuzz_scopes(s);
    hv_free(s);
    return 0;
}
