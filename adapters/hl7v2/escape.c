/*
 * escape.c — HL7 v2 escape sequences (HL7 v2.5.1 §2.7; v2.7 §2.7.1 adds \P\ for
 * the truncation character).
 *
 *   \F\ field separator      \S\ component separator   \T\ subcomponent separator
 *   \R\ repetition separator \E\ escape character      \P\ truncation character
 *   \Xhhhh…\ bytes in hex    \.br\ line break          \H\ \N\ highlighting on/off
 *   \.sp n\ \.fi\ \.nf\ \.in n\ \.ti n\ \.sk n\ \.ce\   formatted text (§2.7.6)
 *   \Cxxyy\ \Mxxyyzz\        character set switches (§2.7.2–2.7.3)
 *   \Zxxx\                   locally defined
 *
 * Decoding keeps the meaning of text (delimiters, hex bytes, line breaks) and drops
 * presentation (highlighting, formatting, character set switches).
 */
#include "config.h"

#include <string.h>

#include "adapters/hl7v2/hl7v2_int.h"

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static int is_delim(const hv_hl7v2_delims_t *d, char c) {
    return c == d->field || c == d->comp || c == d->rep || (d->sub != 0 && c == d->sub) ||
           (d->trunc != 0 && c == d->trunc);
}

/* Classifies the sequence body b[0..n): 1 when it is one this module knows. */
static int known_sequence(const char *b, size_t n) {
    size_t i;
    if (n == 1) return strchr("FSTREPHN", b[0]) != NULL;
    if (n == 0) return 0;
    switch (b[0]) {
    case 'X':
        if ((n - 1) % 2 != 0) return 0;
        for (i = 1; i < n; i++)
            if (hexval(b[i]) < 0) return 0;
        return 1;
    case 'C':
    case 'M':
        for (i = 1; i < n; i++)
            if (hexval(b[i]) < 0) return 0;
        return (b[0] == 'C' && n == 5) || (b[0] == 'M' && (n == 5 || n == 7));
    case 'Z':
        return 1;
    case '.':
        if (n == 3 && (memcmp(b, ".br", 3) == 0 || memcmp(b, ".fi", 3) == 0 ||
                       memcmp(b, ".nf", 3) == 0 || memcmp(b, ".ce", 3) == 0 ||
                       memcmp(b, ".sp", 3) == 0 || memcmp(b, ".sk", 3) == 0))
            return 1;
        if (n >= 3 && (memcmp(b, ".sp", 3) == 0 || memcmp(b, ".in", 3) == 0 ||
                       memcmp(b, ".ti", 3) == 0 || memcmp(b, ".sk", 3) == 0)) {
            for (i = 3; i < n; i++)
                if (!((b[i] >= '0' && b[i] <= '9') || b[i] == '-' || b[i] == '+' || b[i] == ' '))
                    return 0;
            return 1;
        }
        return 0;
    default:
        return 0;
    }
}

/* Finds the closing escape character of a sequence starting after p[i]; n if none. */
static size_t seq_end(const hv_hl7v2_delims_t *d, const char *p, size_t n, size_t i) {
    size_t j;
    for (j = i; j < n; j++) {
        if (p[j] == d->esc) return j;
        if (is_delim(d, p[j]) || HV__HL7_EOL(p[j])) return n;
    }
    return n;
}

int hv_hl7v2_escape_check(const hv_hl7v2_delims_t *d, const char *p, size_t n, size_t *bad_at) {
    size_t i;
    const char *q;
    if (d->esc == 0) return HV_OK;
    i = 0;
    while (i < n && (q = memchr(p + i, d->esc, n - i)) != NULL) {
        size_t s = (size_t)(q - p), e = seq_end(d, p, n, s + 1);
        if (e == n || !known_sequence(p + s + 1, e - s - 1)) {
            if (bad_at) *bad_at = s;
            return HV_EPROTO;
        }
        i = e + 1;
    }
    return HV_OK;
}

int hv_hl7v2_unescape(const hv_hl7v2_delims_t *d, const char *p, size_t n, int strict,
                      hv_buf_t *out) {
    size_t i = 0;
    int rc = HV_OK;
    while (i < n) {
        const char *q = d->esc != 0 ? memchr(p + i, d->esc, n - i) : NULL;
        size_t s, e, bl;
        const char *b;
        if (q == NULL) return hv_buf_append(out, p + i, n - i);
        s = (size_t)(q - p);
        if (s > i && (rc = hv_buf_append(out, p + i, s - i)) != HV_OK) return rc;
        e = seq_end(d, p, n, s + 1);
        b = p + s + 1;
        bl = e - s - 1;
        if (e == n || !known_sequence(b, bl)) {
            if (strict) return HV_EPROTO;
            /* Lenient: the escape character stands for itself. */
            if ((rc = hv_buf_putc(out, d->esc)) != HV_OK) return rc;
            i = s + 1;
            continue;
        }
        if (bl == 1) {
            char c = 0;
            switch (b[0]) {
            case 'F': c = d->field; break;
            case 'S': c = d->comp; break;
            case 'T': c = d->sub; break;
            case 'R': c = d->rep; break;
            case 'E': c = d->esc; break;
            case 'P': c = d->trunc; break;
            default: break; /* \H\ \N\: presentation only */
            }
            if (c != 0 && (rc = hv_buf_putc(out, c)) != HV_OK) return rc;
        } else if (b[0] == 'X') {
            size_t k;
            for (k = 1; k + 1 < bl; k += 2) {
                char c = (char)(hexval(b[k]) * 16 + hexval(b[k + 1]));
                if ((rc = hv_buf_putc(out, c)) != HV_OK) return rc;
            }
        } else if (bl == 3 && memcmp(b, ".br", 3) == 0) {
            if ((rc = hv_buf_putc(out, '\n')) != HV_OK) return rc;
        }
        i = e + 1;
    }
    return HV_OK;
}

int hv_hl7v2_escape(const hv_hl7v2_delims_t *d, const char *p, size_t n, hv_buf_t *out) {
    size_t i, run = 0;
    int rc;
    for (i = 0; i < n; i++) {
        const char *rep = NULL;
        char c = p[i];
        if (c == d->field) rep = "F";
        else if (c == d->comp) rep = "S";
        else if (c == d->rep && c != 0) rep = "R";
        else if (c == d->esc && c != 0) rep = "E";
        else if (c == d->sub && c != 0) rep = "T";
        else if (c == d->trunc && c != 0) rep = "P";
        else if (c == '\r') rep = "X0D";
        else if (c == '\n') rep = "X0A";
        if (rep == NULL) continue;
        if (i > run && (rc = hv_buf_append(out, p + run, i - run)) != HV_OK) return rc;
        run = i + 1;
        if (d->esc == 0) {
            /* Without an escape character a delimiter cannot be written: drop it. */
            continue;
        }
        if ((rc = hv_buf_putc(out, d->esc)) != HV_OK || (rc = hv_buf_puts(out, rep)) != HV_OK ||
            (rc = hv_buf_putc(out, d->esc)) != HV_OK)
            return rc;
    }
    if (n > run) return hv_buf_append(out, p + run, n - run);
    return HV_OK;
}
