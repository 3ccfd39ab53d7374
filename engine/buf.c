/*
 * buf.c — growable byte buffers with a cap (curl's dynbuf): every buffer that
 * holds peer input has a maximum, and exceeding it is HV_ETOOBIG, not a crash
 * or unbounded growth.
 */
#include "config.h"
#include "engine/engine.h"

#include <stdio.h>
#include <string.h>

void hv_buf_init(hv_buf_t *b, size_t max) {
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void hv_buf_release(hv_buf_t *b) {
    hv_free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void hv_buf_reset(hv_buf_t *b) {
    b->len = 0;
    if (b->data != NULL) b->data[0] = '\0';
}

int hv_buf_reserve(hv_buf_t *b, size_t extra) {
    size_t need = b->len + extra + 1, ncap;
    char *p;
    if (need < b->len) return HV_ETOOBIG;
    if (b->max != 0 && b->len + extra > b->max) return HV_ETOOBIG;
    if (need <= b->cap) return HV_OK;
    ncap = b->cap ? b->cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2) return HV_ETOOBIG;
        ncap *= 2;
    }
    p = hv_realloc(b->data, ncap);
    if (p == NULL) return HV_ENOMEM;
    b->data = p;
    b->cap = ncap;
    return HV_OK;
}

int hv_buf_append(hv_buf_t *b, const void *p, size_t n) {
    int rc = hv_buf_reserve(b, n);
    if (rc != HV_OK) return rc;
    if (n > 0) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return HV_OK;
}

int hv_buf_puts(hv_buf_t *b, const char *s) { return hv_buf_append(b, s, strlen(s)); }

int hv_buf_putc(hv_buf_t *b, char c) { return hv_buf_append(b, &c, 1); }

int hv_buf_vprintf(hv_buf_t *b, const char *fmt, va_list ap) {
    va_list ap2;
    int n, rc;
    va_copy(ap2, ap);
    n = vsnprintf(b->data ? b->data + b->len : NULL, b->data ? b->cap - b->len : 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return HV_EINVAL;
    if (b->data != NULL && (size_t)n < b->cap - b->len) {
        if (b->max != 0 && b->len + (size_t)n > b->max) {
            b->data[b->len] = '\0';
            return HV_ETOOBIG;
        }
        b->len += (size_t)n;
        return HV_OK;
    }
    rc = hv_buf_reserve(b, (size_t)n);
    if (rc != HV_OK) {
        if (b->data != NULL) b->data[b->len] = '\0';
        return rc;
    }
    vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    b->len += (size_t)n;
    return HV_OK;
}

int hv_buf_printf(hv_buf_t *b, const char *fmt, ...) {
    va_list ap;
    int rc;
    va_start(ap, fmt);
    rc = hv_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

int hv_buf_json_str(hv_buf_t *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t i, start = 0;
    int rc = hv_buf_reserve(b, n + 2);
    if (rc != HV_OK) return rc;
    b->data[b->len++] = '"';
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[7];
        size_t elen = 0;
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        switch (c) {
        case '"': memcpy(esc, "\\\"", 2); elen = 2; break;
        case '\\': memcpy(esc, "\\\\", 2); elen = 2; break;
        case '\n': memcpy(esc, "\\n", 2); elen = 2; break;
        case '\r': memcpy(esc, "\\r", 2); elen = 2; break;
        case '\t': memcpy(esc, "\\t", 2); elen = 2; break;
        default:
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            elen = 6;
        }
        if ((rc = hv_buf_append(b, s + start, i - start)) != HV_OK) return rc;
        if ((rc = hv_buf_append(b, esc, elen)) != HV_OK) return rc;
        start = i + 1;
    }
    if ((rc = hv_buf_append(b, s + start, n - start)) != HV_OK) return rc;
    return hv_buf_putc(b, '"');
}

void hv_buf_consume(hv_buf_t *b, size_t n) {
    if (n >= b->len) {
        hv_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *hv_buf_take(hv_buf_t *b) {
    char *p = b->data;
    if (p == NULL) p = hv_strdup("");
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}
