/*
 * charset.c — MSH-18 character sets (HL7 table 0211, HL7 v2.5.1 §2.15.9.18) and
 * conversion to and from UTF-8 with the C library's iconv.
 *
 *   MSH-18              iconv
 *   (empty)             none declared: UTF-8 if valid, else read as ISO-8859-1
 *   ASCII, ISO IR6      ASCII
 *   8859/1 … 8859/15    ISO-8859-1 … ISO-8859-15
 *   ISO IR100           ISO-8859-1
 *   UNICODE UTF-8       UTF-8
 *
 * UTF-16/32 and the multi-byte Asian sets are refused with HV_ENOTSUP: their MSH
 * is not ASCII, so the delimiters cannot be read before converting.
 */
#include "config.h"

#include <errno.h>
#include <iconv.h>
#include <string.h>
#include <strings.h>

#include "adapters/hl7v2/hl7v2_int.h"

static const struct {
    const char *hl7;
    const char *iconv;
} charsets[] = {
    {"ASCII", "ASCII"},
    {"ISO IR6", "ASCII"},
    {"ISO IR100", "ISO-8859-1"},
    {"UNICODE UTF-8", "UTF-8"},
    {"UTF-8", "UTF-8"}, /* not in table 0211, but senders write it */
    {"8859/1", "ISO-8859-1"},
    {"8859/2", "ISO-8859-2"},
    {"8859/3", "ISO-8859-3"},
    {"8859/4", "ISO-8859-4"},
    {"8859/5", "ISO-8859-5"},
    {"8859/6", "ISO-8859-6"},
    {"8859/7", "ISO-8859-7"},
    {"8859/8", "ISO-8859-8"},
    {"8859/9", "ISO-8859-9"},
    {"8859/15", "ISO-8859-15"},
};

int hv_hl7v2_charset_iconv_name(const char *msh18, size_t n, const char **out) {
    size_t i;
    /* Trailing spaces are common in fixed-width senders. */
    while (n > 0 && msh18[n - 1] == ' ') n--;
    if (n == 0) {
        *out = NULL;
        return HV_OK;
    }
    for (i = 0; i < HV_ARRAY_LEN(charsets); i++) {
        if (strlen(charsets[i].hl7) == n && strncasecmp(charsets[i].hl7, msh18, n) == 0) {
            *out = charsets[i].iconv;
            return HV_OK;
        }
    }
    return HV_ENOTSUP;
}

int hv_hl7v2_utf8_valid(const char *p, size_t n) {
    const unsigned char *s = (const unsigned char *)p;
    size_t i = 0;
    while (i < n) {
        unsigned c;
        size_t k, need;
        unsigned cp;
        /* ASCII runs, eight bytes at a time. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (w & 0x8080808080808080ull) break;
            i += 8;
        }
        if (i >= n) break;
        c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return 0;
        }
        if (i + need >= n) return 0;
        for (k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        /* RFC 3629 §3: no overlongs, no surrogates, nothing above U+10FFFF. */
        if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += need + 1;
    }
    return 1;
}

int hv_hl7v2_charset_convert(const char *from, const char *to, const char *p, size_t n,
                             hv_buf_t *out) {
    iconv_t cd = iconv_open(to, from);
    char *in = (char *)(uintptr_t)p;
    size_t inleft = n;
    int rc = HV_OK;
    if (cd == (iconv_t)-1) return HV_ENOTSUP;
    while (inleft > 0) {
        char *o;
        size_t oleft, r;
        if ((rc = hv_buf_reserve(out, inleft * 2 + 16)) != HV_OK) goto out;
        o = out->data + out->len;
        oleft = out->cap - out->len - 1;
        r = iconv(cd, &in, &inleft, &o, &oleft);
        out->len = (size_t)(o - out->data);
        out->data[out->len] = 0;
        if (r == (size_t)-1 && errno != E2BIG) {
            rc = HV_EPROTO;
            goto out;
        }
    }
out:
    iconv_close(cd);
    return rc;
}
