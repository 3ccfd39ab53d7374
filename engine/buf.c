/*
 * buf.c — growable byte buffers with a cap (curl's dynbuf): every buffer that
 * holds peer input has a maximum, and exceeding it is HV_ETOOBIG, not a crash
 * or unbounded growth.
 */
#include "config.h"
#include "engine/engine.h"

#include <errno.h>
#include <stdint.h>
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
    if (hv_buf_has_room(b, extra)) return HV_OK;
    if (b->max != 0 && b->len + extra > b->max) return HV_ETOOBIG;
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

/* For each byte, the length of its form inside a JSON string: 1 for the bytes written
 * as they are, 2 for the two-character escapes (\" \\ \n \r \t), 6 for the other
 * control characters, written \u00XX. RFC 8259 §7 requires escaping the quotation
 * mark, the reverse solidus and U+0000..U+001F; everything else, including bytes of
 * multi-byte UTF-8 sequences, is copied. */
static const unsigned char json_esc_len[256] = {
    6, 6, 6, 6, 6, 6, 6, 6, 6, 2, 2, 6, 6, 2, 6, 6, /* 0x00: \t \n \r */
    6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, /* 0x10 */
    1, 1, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x20: " */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x30 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x40 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1, /* 0x50: \ */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x60 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x70 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x80 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0x90 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xa0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xb0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xc0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xd0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xe0 */
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, /* 0xf0 */
};

/* Returns the index of the first byte at or after i that must be escaped, or n. Tests
 * eight bytes at a time (the "has zero byte" and "has byte less than" tests of
 * Hacker's Delight §6-1): each of the three terms is non-zero in a word exactly when
 * the word holds such a byte, so a clean word is skipped whole; the byte loop then
 * finds the byte itself. Called for every string of every resource we store. */
static size_t json_next_escape(const unsigned char *s, size_t i, size_t n) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (n - i >= 8) {
        uint64_t v;
        memcpy(&v, s + i, 8);
        uint64_t quote = v ^ (ones * '"'), bslash = v ^ (ones * '\\');
        /* The high bit of quote and bslash is that of v: ~v masks all three terms. */
        if ((((v - ones * 0x20) | (quote - ones) | (bslash - ones)) & ~v & highs) != 0) break;
        i += 8;
    }
    while (i < n && json_esc_len[s[i]] == 1) i++;
    return i;
}

int hv_buf_json_str(hv_buf_t *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t first = json_next_escape(u, 0, n), need = n + 2, i, run;
    char *w;
    int rc;
    /* Measure first, so that the buffer grows at most once and nothing is written when
     * it may not grow (over the cap, the buffer is left as it was). The check guards
     * the sum against a length no real string has. */
    for (i = first; i < n; i = json_next_escape(u, i + 1, n)) {
        if (need > SIZE_MAX - 5) return HV_ETOOBIG;
        need += json_esc_len[u[i]] - 1u;
    }
    /* The room is usually there already. */
    if (!hv_buf_has_room(b, need) && (rc = hv_buf_reserve(b, need)) != HV_OK) return rc;
    w = b->data + b->len;
    *w++ = '"';
    for (i = 0, run = first; i < n; run = json_next_escape(u, i, n)) {
        unsigned char c;
        memcpy(w, s + i, run - i);
        w += run - i;
        if (run == n) break;
        c = u[run];
        *w++ = '\\';
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '\n': *w++ = 'n'; break;
        case '\r': *w++ = 'r'; break;
        case '\t': *w++ = 't'; break;
        default:
            memcpy(w, "u00", 3);
            w[3] = hex[c >> 4];
            w[4] = hex[c & 15];
            w += 5;
        }
        i = run + 1;
    }
    *w++ = '"';
    *w = '\0';
    b->len = (size_t)(w - b->data);
    return HV_OK;
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

int hv_file_read(const char *path, size_t max, char **out, size_t *len, hv_error_t *err) {
    int is_stdin = strcmp(path, "-") == 0, rc = HV_OK, os_error = 0;
    FILE *f = is_stdin ? stdin : fopen(path, "rb");
    hv_buf_t b;
    char chunk[65536];
    size_t n;
    if (f == NULL) {
        hv_error_set(err, HV_EIO, path, "cannot read: %s", strerror(errno));
        return HV_EIO;
    }
    hv_buf_init(&b, max);
    while (rc == HV_OK && (n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        rc = hv_buf_append(&b, chunk, n);
    if (rc == HV_OK && ferror(f)) {
        os_error = errno;
        rc = HV_EIO;
    }
    if (!is_stdin) fclose(f);
    if (rc == HV_OK && b.data == NULL) { /* an empty file is "", not NULL */
        rc = hv_buf_reserve(&b, 0);
        if (rc == HV_OK) b.data[0] = '\0';
    }
    if (rc != HV_OK) {
        if (rc == HV_ETOOBIG) hv_error_set(err, rc, path, "cannot read: larger than %zu bytes", max);
        else if (rc == HV_EIO) hv_error_set(err, rc, path, "cannot read: %s", strerror(os_error ? os_error : EIO));
        else hv_error_set(err, rc, path, "cannot read: %s", hv_strerror(rc));
        hv_buf_release(&b);
        return rc;
    }
    *len = b.len;
    *out = hv_buf_take(&b);
    return HV_OK;
}
