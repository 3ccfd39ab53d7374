/*
 * fhirpath_strfn.c — the FHIRPath function library, part 2: string manipulation
 * (fhirpath.html#string-manipulation, with the 2.1 additions split, join, trim,
 * encode, decode, escape, unescape, lastIndexOf, matchesFull), math (#math),
 * conversion (#conversion), and the 2.1 boundary functions lowBoundary,
 * highBoundary, precision and comparable.
 *
 * Regular expressions are POSIX extended expressions (regcomp) with the common
 * Perl shorthands \d \D translated; FHIRPath's single-line mode holds since POSIX '.'
 * matches a newline.
 */
#include "config.h"

#include <ctype.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhirpath_int.h"

#define FN(name) int hv__fp_fn_##name(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out)

/* The input as a single String: *present 0 when empty; an error for other types. */
static int in_str(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, const char **s, size_t *len,
                  int *present) {
    hv__fp_item_t v;
    int rc = hv__fp_singleton(c, n, in, &v, present);
    if (rc != HV_OK || !*present) return rc;
    if (v.kind != HV__FP_STR) return hv__fp_fail(c, n, HV_EINVAL, "%s() needs a String input", n->name);
    *s = v.u.s.p;
    *len = v.u.s.len;
    return HV_OK;
}

static char *dupn(hv__fp_ctx_t *c, const char *s, size_t n) {
    return hv_arena_strndup(c->arena, s, n);
}

/* ---- strings ---- */

/* Positions and lengths count characters (Unicode code points of the UTF-8 text), as
 * FHIRPath strings are sequences of characters (fhirpath.html#string). */
static size_t u8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) k++;
    return k;
}

/* The byte offset of character k (n when past the end). */
static size_t u8_offset(const char *s, size_t n, size_t k) {
    size_t i = 0;
    for (; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (k == 0) return i;
            k--;
        }
    }
    return n;
}

/* The byte length of the character at s[i]. */
static size_t u8_len(const char *s, size_t n, size_t i) {
    size_t j = i + 1;
    while (j < n && ((unsigned char)s[j] & 0xC0) == 0x80) j++;
    return j - i;
}

static const char *find_sub(const char *s, size_t n, const char *sub, size_t sn) {
    if (sn == 0) return s;
    for (size_t i = 0; i + sn <= n; i++)
        if (memcmp(s + i, sub, sn) == 0) return s + i;
    return NULL;
}

FN(indexOf) {
    const char *s = NULL, *sub = NULL, *p = NULL;
    size_t n1 = 0, n2 = 0;
    int pr1, pr2, rc = in_str(c, n, in, &s, &n1, &pr1);
    if (rc != HV_OK || !pr1) return rc;
    rc = hv__fp_arg_str(c, n, in, 0, &sub, &n2, &pr2);
    if (rc != HV_OK || !pr2) return rc;
    p = find_sub(s, n1, sub, n2);
    return hv__fp_push_int(c, out, p != NULL ? (int64_t)u8_count(s, (size_t)(p - s)) : -1);
}

FN(lastIndexOf) {
    const char *s = NULL, *sub = NULL;
    size_t n1 = 0, n2 = 0;
    int pr1, pr2, rc = in_str(c, n, in, &s, &n1, &pr1);
    int64_t last = -1;
    if (rc != HV_OK || !pr1) return rc;
    rc = hv__fp_arg_str(c, n, in, 0, &sub, &n2, &pr2);
    if (rc != HV_OK || !pr2) return rc;
    for (size_t i = 0; i + n2 <= n1; i++)
        if (memcmp(s + i, sub, n2) == 0) last = (int64_t)i;
    return hv__fp_push_int(c, out, last >= 0 ? (int64_t)u8_count(s, (size_t)last) : -1);
}

FN(substring) {
    const char *s = NULL;
    size_t len = 0;
    int64_t start = 0, cnt = -1;
    int pr, rc = in_str(c, n, in, &s, &len, &pr);
    if (rc != HV_OK || !pr) return rc;
    rc = hv__fp_arg_int(c, n, in, 0, &start, &pr);
    if (rc != HV_OK || !pr) return rc;
    if (n->nargs > 1) {
        rc = hv__fp_arg_int(c, n, in, 1, &cnt, &pr);
        if (rc != HV_OK) return rc;
        if (!pr) cnt = -1;
    }
    {
        size_t chars = u8_count(s, len), b0, b1;
        if (start < 0 || (size_t)start >= chars) return HV_OK;
        if (cnt < 0 || (size_t)cnt > chars - (size_t)start) cnt = (int64_t)(chars - (size_t)start);
        b0 = u8_offset(s, len, (size_t)start);
        b1 = u8_offset(s, len, (size_t)(start + cnt));
        return hv__fp_push_str(c, out, dupn(c, s + b0, b1 - b0), b1 - b0);
    }
}

static int str_pred(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out, int which) {
    const char *s = NULL, *sub = NULL;
    size_t n1 = 0, n2 = 0;
    int pr1, pr2, rc = in_str(c, n, in, &s, &n1, &pr1);
    if (rc != HV_OK || !pr1) return rc;
    rc = hv__fp_arg_str(c, n, in, 0, &sub, &n2, &pr2);
    if (rc != HV_OK || !pr2) return rc;
    if (n2 > n1) return hv__fp_push_bool(c, out, 0);
    if (which == 0) return hv__fp_push_bool(c, out, memcmp(s, sub, n2) == 0);
    if (which == 1) return hv__fp_push_bool(c, out, memcmp(s + n1 - n2, sub, n2) == 0);
    return hv__fp_push_bool(c, out, find_sub(s, n1, sub, n2) != NULL);
}
FN(startsWith) { return str_pred(c, n, in, out, 0); }
FN(endsWith) { return str_pred(c, n, in, out, 1); }
FN(contains) { return str_pred(c, n, in, out, 2); }

static int str_case(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out, int up) {
    const char *s = NULL;
    size_t len = 0;
    char *o;
    int pr, rc = in_str(c, n, in, &s, &len, &pr);
    if (rc != HV_OK || !pr) return rc;
    o = dupn(c, s, len);
    if (o == NULL) return HV_ENOMEM;
    for (size_t i = 0; i < len; i++) o[i] = (char)(up ? toupper((unsigned char)o[i]) : tolower((unsigned char)o[i]));
    return hv__fp_push_str(c, out, o, len);
}
FN(upper) { return str_case(c, n, in, out, 1); }
FN(lower) { return str_case(c, n, in, out, 0); }

FN(replace) {
    const char *s = NULL, *pat = NULL, *rep = NULL;
    size_t len = 0, pl = 0, rl = 0;
    int pr, rc = in_str(c, n, in, &s, &len, &pr);
    hv_buf_t b;
    if (rc != HV_OK || !pr) return rc;
    rc = hv__fp_arg_str(c, n, in, 0, &pat, &pl, &pr);
    if (rc != HV_OK || !pr) return rc;
    rc = hv__fp_arg_str(c, n, in, 1, &rep, &rl, &pr);
    if (rc != HV_OK || !pr) return rc;
    hv_buf_init(&b, 0);
    if (pl == 0) {
        /* An empty pattern matches between every character. */
        rc = hv_buf_append(&b, rep, rl);
        for (size_t i = 0; i < len && rc == HV_OK; i++) {
            rc = hv_buf_putc(&b, s[i]);
            if (rc == HV_OK) rc = hv_buf_append(&b, rep, rl);
        }
    } else {
        size_t i = 0;
        while (i < len && rc == HV_OK) {
            if (i + pl <= len && memcmp(s + i, pat, pl) == 0) {
                rc = hv_buf_append(&b, rep, rl);
                i += pl;
            } else {
                rc = hv_buf_putc(&b, s[i++]);
            }
        }
    }
    if (rc == HV_OK) rc = hv__fp_push_str(c, out, b.len ? dupn(c, b.data, b.len) : "", b.len);
    hv_buf_release(&b);
    return rc;
}

/* Compiles a FHIRPath regular expression as POSIX ERE; anchored wraps it in ^(...)$. */
static int re_compile(hv__fp_ctx_t *c, const hv__fp_node_t *n, const char *pat, size_t pl, int anchored, regex_t *re) {
    hv_buf_t b;
    const char *why, *src;
    int rc = HV_OK, inbr = 0;
    hv_buf_init(&b, 65536);
    if (anchored) rc = hv_buf_puts(&b, "^(");
    for (size_t i = 0; i < pl && rc == HV_OK; i++) {
        if (pat[i] == '\\' && i + 1 < pl && (pat[i + 1] == 'd' || pat[i + 1] == 'D')) {
            if (inbr) rc = hv_buf_puts(&b, "0-9");
            else rc = hv_buf_puts(&b, pat[i + 1] == 'd' ? "[0-9]" : "[^0-9]");
            i++;
            continue;
        }
        if (pat[i] == '\\' && i + 1 < pl) {
            rc = hv_buf_append(&b, pat + i, 2);
            i++;
            continue;
        }
        if (pat[i] == '[') inbr = 1;
        else if (pat[i] == ']') inbr = 0;
        rc = hv_buf_putc(&b, pat[i]);
    }
    if (rc == HV_OK && anchored) rc = hv_buf_puts(&b, ")$");
    src = b.data != NULL ? b.data : "";
    if (rc == HV_OK && (why = hv_regex_too_costly(src, b.len)) != NULL)
        rc = hv__fp_fail(c, n, HV_EINVAL, "regular expression refused: %s", why);
    if (rc == HV_OK && regcomp(re, src, REG_EXTENDED) != 0)
        rc = hv__fp_fail(c, n, HV_EINVAL, "invalid regular expression");
    hv_buf_release(&b);
    return rc;
}

static int matches(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out, int full) {
    const char *s = NULL, *pat = NULL;
    size_t len = 0, pl = 0;
    regex_t re;
    int pr, rc = in_str(c, n, in, &s, &len, &pr), m;
    char *z;
    if (rc != HV_OK || !pr) return rc;
    rc = hv__fp_arg_str(c, n, in, 0, &pat, &pl, &pr);
    if (rc != HV_OK || !pr) return rc;
    rc = re_compile(c, n, pat, pl, full, &re);
    if (rc != HV_OK) return rc;
    z = dupn(c, s, len);
    m = z != NULL && regexec(&re, z, 0, NULL, 0) == 0;
    regfree(&re);
    return z != NULL ? hv__fp_push_bool(c, out, m) : HV_ENOMEM;
}
FN(matches) { return matches(c, n, in, out, 0); }
FN(matchesFull) { return matches(c, n, in, out, 1); }

FN(replaceMatches) {
    const char *s = NULL, *pat = NULL, *rep = NULL;
    size_t len = 0, pl = 0, rl = 0;
    regex_t re;
    regmatch_t m[10];
    hv_buf_t b;
    char *z;
    const char *p = NULL;
    int pr, rc = in_str(c, n, in, &s, &len, &pr);
    if (rc != HV_OK || !pr) return rc;
    rc = hv__fp_arg_str(c, n, in, 0, &pat, &pl, &pr);
    if (rc != HV_OK || !pr) return rc;
    rc = hv__fp_arg_str(c, n, in, 1, &rep, &rl, &pr);
    if (rc != HV_OK || !pr) return rc;
    if (pl == 0) return hv__fp_push_str(c, out, s, len);
    rc = re_compile(c, n, pat, pl, 0, &re);
    if (rc != HV_OK) return rc;
    z = dupn(c, s, len);
    hv_buf_init(&b, 0);
    p = z;
    while (z != NULL && rc == HV_OK && *p != '\0' && regexec(&re, p, 10, m, p == z ? 0 : REG_NOTBOL) == 0) {
        rc = hv_buf_append(&b, p, (size_t)m[0].rm_so);
        for (size_t i = 0; i < rl && rc == HV_OK; i++) {
            if (rep[i] == '$' && i + 1 < rl && isdigit((unsigned char)rep[i + 1])) {
                int g = rep[i + 1] - '0';
                if (m[g].rm_so >= 0) rc = hv_buf_append(&b, p + m[g].rm_so, (size_t)(m[g].rm_eo - m[g].rm_so));
                i++;
            } else {
                rc = hv_buf_putc(&b, rep[i]);
            }
        }
        if (m[0].rm_eo == m[0].rm_so) {
            if (rc == HV_OK) rc = hv_buf_putc(&b, p[m[0].rm_eo]);
            p += m[0].rm_eo + 1;
        } else {
            p += m[0].rm_eo;
        }
    }
    if (rc == HV_OK && z != NULL) rc = hv_buf_puts(&b, p);
    regfree(&re);
    if (z == NULL) rc = HV_ENOMEM;
    if (rc == HV_OK) rc = hv__fp_push_str(c, out, b.len ? dupn(c, b.data, b.len) : "", b.len);
    hv_buf_release(&b);
    return rc;
}

FN(length) {
    const char *s = NULL;
    size_t len = 0;
    int pr, rc = in_str(c, n, in, &s, &len, &pr);
    if (rc != HV_OK || !pr) return rc;
    return hv__fp_push_int(c, out, (int64_t)u8_count(s, len));
}

FN(toChars) {
    const char *s = NULL;
    size_t len = 0;
    int pr, rc = in_str(c, n, in, &s, &len, &pr);
    for (size_t i = 0; rc == HV_OK && pr && i < len;) {
        size_t k = u8_len(s, len, i);
        rc = hv__fp_push_str(c, out, dupn(c, s + i, k), k);
        i += k;
    }
    return rc;
}

FN(split) {
    const char *s = NULL, *sep = NULL;
    size_t len = 0, sl = 0;
    int pr, rc = in_str(c, n, in, &s, &len, &pr);
    size_t start = 0;
    if (rc != HV_OK || !pr) return rc;
    rc = hv__fp_arg_str(c, n, in, 0, &sep, &sl, &pr);
    if (rc != HV_OK || !pr) return rc;
    if (sl == 0) return hv__fp_fn_toChars(c, n, in, out);
    for (size_t i = 0; i + sl <= len && rc == HV_OK;) {
        if (memcmp(s + i, sep, sl) == 0) {
            rc = hv__fp_push_str(c, out, dupn(c, s + start, i - start), i - start);
            i += sl;
            start = i;
        } else {
            i++;
        }
    }
    if (rc == HV_OK) rc = hv__fp_push_str(c, out, dupn(c, s + start, len - start), len - start);
    return rc;
}

FN(join) {
    const char *sep = "";
    size_t sl = 0, len = 0;
    hv_buf_t b;
    int pr = 0, rc = HV_OK;
    if (n->nargs > 0) {
        rc = hv__fp_arg_str(c, n, in, 0, &sep, &sl, &pr);
        if (rc != HV_OK) return rc;
        if (!pr) sl = 0;
    }
    hv_buf_init(&b, 0);
    for (size_t i = 0; i < in->n && rc == HV_OK; i++) {
        const char *s = hv__fp_to_string(c, &in->v[i], &len);
        if (s == NULL) continue;
        if (i > 0) rc = hv_buf_append(&b, sep, sl);
        if (rc == HV_OK) rc = hv_buf_append(&b, s, len);
    }
    if (rc == HV_OK) rc = hv__fp_push_str(c, out, b.len ? dupn(c, b.data, b.len) : "", b.len);
    hv_buf_release(&b);
    return rc;
}

FN(trim) {
    const char *s = NULL;
    size_t len = 0;
    int pr, rc = in_str(c, n, in, &s, &len, &pr);
    if (rc != HV_OK || !pr) return rc;
    while (len > 0 && isspace((unsigned char)*s)) {
        s++;
        len--;
    }
    while (len > 0 && isspace((unsigned char)s[len - 1])) len--;
    return hv__fp_push_str(c, out, s, len);
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64val(int ch, int url) {
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == (url ? '-' : '+')) return 62;
    if (ch == (url ? '_' : '/')) return 63;
    return -1;
}

static int coding(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out, int enc) {
    const char *s = NULL, *fmt = NULL;
    size_t len = 0, fl = 0;
    hv_buf_t b;
    int pr, rc = in_str(c, n, in, &s, &len, &pr);
    if (rc != HV_OK || !pr) return rc;
    rc = hv__fp_arg_str(c, n, in, 0, &fmt, &fl, &pr);
    if (rc != HV_OK || !pr) return rc;
    hv_buf_init(&b, 0);
    if (fl == 3 && memcmp(fmt, "hex", 3) == 0) {
        if (enc) {
            for (size_t i = 0; i < len && rc == HV_OK; i++) rc = hv_buf_printf(&b, "%02x", (unsigned char)s[i]);
        } else {
            for (size_t i = 0; i + 1 < len && rc == HV_OK; i += 2) {
                unsigned v;
                char h[3] = {s[i], s[i + 1], 0};
                if (sscanf(h, "%2x", &v) != 1) break;
                rc = hv_buf_putc(&b, (char)v);
            }
        }
    } else if ((fl == 6 && memcmp(fmt, "base64", 6) == 0) || (fl == 9 && memcmp(fmt, "urlbase64", 9) == 0)) {
        int url = fl == 9;
        if (enc) {
            for (size_t i = 0; i < len && rc == HV_OK; i += 3) {
                unsigned v = (unsigned char)s[i] << 16;
                if (i + 1 < len) v |= (unsigned char)s[i + 1] << 8;
                if (i + 2 < len) v |= (unsigned char)s[i + 2];
                for (int k = 0; k < 4 && rc == HV_OK; k++) {
                    char ch = b64[(v >> (18 - 6 * k)) & 63];
                    if (url && ch == '+') ch = '-';
                    if (url && ch == '/') ch = '_';
                    if ((k == 2 && i + 1 >= len) || (k == 3 && i + 2 >= len)) ch = '=';
                    rc = hv_buf_putc(&b, ch);
                }
            }
        } else {
            unsigned acc = 0;
            int bits = 0;
            for (size_t i = 0; i < len && rc == HV_OK; i++) {
                int v = b64val((unsigned char)s[i], url);
                if (v < 0) continue;
                acc = (acc << 6) | (unsigned)v;
                bits += 6;
                if (bits >= 8) {
                    bits -= 8;
                    rc = hv_buf_putc(&b, (char)((acc >> bits) & 0xFF));
                }
            }
        }
    } else {
        hv_buf_release(&b);
        return HV_OK;
    }
    if (rc == HV_OK) rc = hv__fp_push_str(c, out, b.len ? dupn(c, b.data, b.len) : "", b.len);
    hv_buf_release(&b);
    return rc;
}
FN(encode) { return coding(c, n, in, out, 1); }
FN(decode) { return coding(c, n, in, out, 0); }

static int escaping(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out, int esc) {
    static const struct {
        char ch;
        const char *html;
    } ents[] = {{'&', "&amp;"}, {'<', "&lt;"}, {'>', "&gt;"}, {'"', "&quot;"}, {'\'', "&#39;"}};
    const char *s = NULL, *fmt = NULL;
    size_t len = 0, fl = 0;
    hv_buf_t b;
    int pr, rc = in_str(c, n, in, &s, &len, &pr), html;
    if (rc != HV_OK || !pr) return rc;
    rc = hv__fp_arg_str(c, n, in, 0, &fmt, &fl, &pr);
    if (rc != HV_OK || !pr) return rc;
    html = fl == 4 && memcmp(fmt, "html", 4) == 0;
    if (!html && !(fl == 4 && memcmp(fmt, "json", 4) == 0)) return HV_OK;
    hv_buf_init(&b, 0);
    for (size_t i = 0; i < len && rc == HV_OK; i++) {
        int done = 0;
        if (html && esc) {
            for (size_t k = 0; k < HV_ARRAY_LEN(ents) && !done; k++)
                if (s[i] == ents[k].ch) {
                    rc = hv_buf_puts(&b, ents[k].html);
                    done = 1;
                }
        } else if (html) {
            for (size_t k = 0; k < HV_ARRAY_LEN(ents) && !done; k++) {
                size_t el = strlen(ents[k].html);
                if (i + el <= len && memcmp(s + i, ents[k].html, el) == 0) {
                    rc = hv_buf_putc(&b, ents[k].ch);
                    i += el - 1;
                    done = 1;
                }
            }
        } else if (esc) {
            if (s[i] == '"' || s[i] == '\\') {
                rc = hv_buf_putc(&b, '\\');
                if (rc == HV_OK) rc = hv_buf_putc(&b, s[i]);
                done = 1;
            } else if (s[i] == '\n') {
                rc = hv_buf_puts(&b, "\\n");
                done = 1;
            }
        } else if (s[i] == '\\' && i + 1 < len) {
            char e = s[++i];
            rc = hv_buf_putc(&b, e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e);
            done = 1;
        }
        if (!done && rc == HV_OK) rc = hv_buf_putc(&b, s[i]);
    }
    if (rc == HV_OK) rc = hv__fp_push_str(c, out, b.len ? dupn(c, b.data, b.len) : "", b.len);
    hv_buf_release(&b);
    return rc;
}
FN(escape) { return escaping(c, n, in, out, 1); }
FN(unescape) { return escaping(c, n, in, out, 0); }

/* ---- math ---- */

static int in_num(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_item_t *v, int *present) {
    int rc = hv__fp_singleton(c, n, in, v, present);
    if (rc != HV_OK || !*present) return rc;
    if (v->kind != HV__FP_INT && v->kind != HV__FP_DEC && !(v->kind == HV__FP_QTY && strcmp(n->name, "abs") == 0))
        return hv__fp_fail(c, n, HV_EINVAL, "%s() needs a number", n->name);
    return HV_OK;
}

static hv__fp_dec_t as_dec(const hv__fp_item_t *v) {
    return v->kind == HV__FP_INT ? hv__fp_dec_from_int(v->u.i) : v->u.d;
}

FN(abs) {
    hv__fp_item_t v;
    int pr, rc = in_num(c, n, in, &v, &pr);
    if (rc != HV_OK || !pr) return rc;
    if (v.kind == HV__FP_INT && v.u.i < 0) v.u.i = -v.u.i;
    if (v.kind == HV__FP_DEC && v.u.d.m < 0) v.u.d.m = -v.u.d.m;
    if (v.kind == HV__FP_QTY && v.u.q.v.m < 0) v.u.q.v.m = -v.u.q.v.m;
    return hv__fp_push(c, out, &v);
}

static int64_t dec_floor(hv__fp_dec_t d) {
    int64_t q = d.m, div = 1;
    for (int i = 0; i < d.s; i++) div *= 10;
    q = d.m / div;
    if (d.m % div != 0 && d.m < 0) q--;
    return q;
}

FN(ceiling) {
    hv__fp_item_t v;
    int pr, rc = in_num(c, n, in, &v, &pr);
    hv__fp_dec_t d;
    if (rc != HV_OK || !pr) return rc;
    d = as_dec(&v);
    d.m = -d.m;
    return hv__fp_push_int(c, out, -dec_floor(d));
}

FN(floor) {
    hv__fp_item_t v;
    int pr, rc = in_num(c, n, in, &v, &pr);
    if (rc != HV_OK || !pr) return rc;
    return hv__fp_push_int(c, out, dec_floor(as_dec(&v)));
}

FN(truncate) {
    hv__fp_item_t v;
    int pr, rc = in_num(c, n, in, &v, &pr);
    hv__fp_dec_t d;
    if (rc != HV_OK || !pr) return rc;
    d = as_dec(&v);
    while (d.s > 0) {
        d.m /= 10;
        d.s--;
    }
    return hv__fp_push_int(c, out, d.m);
}

FN(round) {
    hv__fp_item_t v;
    int64_t digits = 0;
    int pr, rc = in_num(c, n, in, &v, &pr);
    if (rc != HV_OK || !pr) return rc;
    if (n->nargs > 0) {
        int p2 = 0;
        rc = hv__fp_arg_int(c, n, in, 0, &digits, &p2);
        if (rc != HV_OK || !p2) return rc;
        if (digits < 0) return hv__fp_fail(c, n, HV_EINVAL, "round() precision must be >= 0");
    }
    return hv__fp_push_dec(c, out, hv__fp_dec_round(as_dec(&v), (int)digits));
}

static int push_double(hv__fp_ctx_t *c, hv__fp_coll_t *out, double r) {
    hv__fp_dec_t d;
    if (!isfinite(r) || hv__fp_dec_from_double(r, &d) != HV_OK) return HV_OK;
    return hv__fp_push_dec(c, out, d);
}

static int unary_math(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out,
                      double (*f)(double)) {
    hv__fp_item_t v;
    int pr, rc = in_num(c, n, in, &v, &pr);
    if (rc != HV_OK || !pr) return rc;
    return push_double(c, out, f(hv__fp_dec_to_double(as_dec(&v))));
}
FN(exp) { return unary_math(c, n, in, out, exp); }
FN(ln) { return unary_math(c, n, in, out, log); }
FN(sqrt) { return unary_math(c, n, in, out, sqrt); }

static int arg_num(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_item_t *v, int *pr) {
    hv__fp_coll_t r = {0};
    int rc = hv__fp_eval_arg(c, n->args[0], in, &r);
    if (rc == HV_OK) rc = hv__fp_singleton(c, n, &r, v, pr);
    if (rc == HV_OK && *pr && v->kind != HV__FP_INT && v->kind != HV__FP_DEC)
        rc = hv__fp_fail(c, n, HV_EINVAL, "%s() needs a number argument", n->name);
    return rc;
}

FN(log) {
    hv__fp_item_t v, b;
    int pr, pb, rc = in_num(c, n, in, &v, &pr);
    if (rc != HV_OK || !pr) return rc;
    rc = arg_num(c, n, in, &b, &pb);
    if (rc != HV_OK || !pb) return rc;
    return push_double(c, out, log(hv__fp_dec_to_double(as_dec(&v))) / log(hv__fp_dec_to_double(as_dec(&b))));
}

FN(power) {
    hv__fp_item_t v, e;
    int pr, pe, rc = in_num(c, n, in, &v, &pr);
    if (rc != HV_OK || !pr) return rc;
    rc = arg_num(c, n, in, &e, &pe);
    if (rc != HV_OK || !pe) return rc;
    if (v.kind == HV__FP_INT && e.kind == HV__FP_INT && e.u.i >= 0) {
        int64_t r = 1;
        for (int64_t i = 0; i < e.u.i; i++)
            if (__builtin_mul_overflow(r, v.u.i, &r)) return HV_OK;
        return hv__fp_push_int(c, out, r);
    }
    return push_double(c, out, pow(hv__fp_dec_to_double(as_dec(&v)), hv__fp_dec_to_double(as_dec(&e))));
}

/* ---- conversion (fhirpath.html#conversion) ---- */

/* The conversions write the converted item into *r and return 1, or 0 when not convertible. */
static int conv_bool(hv__fp_item_t *v, hv__fp_item_t *r) {
    static const char *t[] = {"true", "t", "yes", "y", "1", "1.0"};
    static const char *f[] = {"false", "f", "no", "n", "0", "0.0"};
    r->kind = HV__FP_BOOL;
    switch (v->kind) {
    case HV__FP_BOOL: r->u.b = v->u.b; return 1;
    case HV__FP_INT: if (v->u.i == 0 || v->u.i == 1) { r->u.b = (int)v->u.i; return 1; } return 0;
    case HV__FP_DEC: {
        hv__fp_dec_t d = v->u.d;
        hv__fp_dec_norm(&d);
        if (d.s == 0 && (d.m == 0 || d.m == 1)) { r->u.b = (int)d.m; return 1; }
        return 0;
    }
    case HV__FP_STR:
        for (size_t i = 0; i < HV_ARRAY_LEN(t); i++) {
            if (strlen(t[i]) == v->u.s.len && strncasecmp(t[i], v->u.s.p, v->u.s.len) == 0) { r->u.b = 1; return 1; }
            if (strlen(f[i]) == v->u.s.len && strncasecmp(f[i], v->u.s.p, v->u.s.len) == 0) { r->u.b = 0; return 1; }
        }
        return 0;
    default: return 0;
    }
}

static int is_int_text(const char *s, size_t n) {
    size_t i = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= n) return 0;
    for (; i < n; i++)
        if (!isdigit((unsigned char)s[i])) return 0;
    return 1;
}

static int is_dec_text(const char *s, size_t n) {
    size_t i = 0, d = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    while (i < n && isdigit((unsigned char)s[i])) i++, d++;
    if (d == 0) return 0;
    if (i < n && s[i] == '.') {
        size_t f = 0;
        i++;
        while (i < n && isdigit((unsigned char)s[i])) i++, f++;
        if (f == 0) return 0;
    }
    return i == n;
}

static int conv_int(hv__fp_item_t *v, hv__fp_item_t *r) {
    r->kind = HV__FP_INT;
    switch (v->kind) {
    case HV__FP_INT: r->u.i = v->u.i; return 1;
    case HV__FP_BOOL: r->u.i = v->u.b; return 1;
    case HV__FP_STR: {
        char buf[32];
        if (!is_int_text(v->u.s.p, v->u.s.len) || v->u.s.len >= sizeof(buf)) return 0;
        memcpy(buf, v->u.s.p, v->u.s.len);
        buf[v->u.s.len] = '\0';
        r->u.i = strtoll(buf, NULL, 10);
        return r->u.i >= -2147483648LL && r->u.i <= 2147483647LL;
    }
    default: return 0;
    }
}

static int conv_dec(hv__fp_item_t *v, hv__fp_item_t *r) {
    r->kind = HV__FP_DEC;
    switch (v->kind) {
    case HV__FP_INT: r->u.d = hv__fp_dec_from_int(v->u.i); return 1;
    case HV__FP_DEC: r->u.d = v->u.d; return 1;
    case HV__FP_BOOL: r->u.d.m = v->u.b * 10; r->u.d.s = 1; return 1;
    case HV__FP_STR:
        return is_dec_text(v->u.s.p, v->u.s.len) && hv__fp_dec_parse(v->u.s.p, v->u.s.len, &r->u.d) == HV_OK;
    default: return 0;
    }
}

static int conv_dt(hv__fp_item_t *v, hv__fp_item_t *r, int kind) {
    *r = *v;
    if (v->kind == HV__FP_STR) {
        const char *s = v->u.s.p;
        size_t len = v->u.s.len;
        if (kind == HV__FP_TIME) {
            if (len > 0 && s[0] == 'T') s++, len--;
            if (hv__fp_dt_parse(s, len, HV__FP_TIME, &r->u.dt) != HV_OK) return 0;
            r->kind = HV__FP_TIME;
            return 1;
        }
        if (hv__fp_dt_parse(s, len, HV__FP_DATETIME, &r->u.dt) != HV_OK) return 0;
        r->kind = HV__FP_DATETIME;
    }
    if (kind == HV__FP_TIME) return v->kind == HV__FP_TIME;
    if (r->kind != HV__FP_DATE && r->kind != HV__FP_DATETIME) return 0;
    if (kind == HV__FP_DATE) {
        if (r->u.dt.prec > HV__FP_P_DAY) r->u.dt.prec = HV__FP_P_DAY;
        r->u.dt.has_tz = 0;
        r->u.dt.hour = r->u.dt.minute = r->u.dt.second = 0;
        r->u.dt.ms = 0;
    }
    r->kind = (uint8_t)kind;
    return 1;
}

/* Parses "5.5 'mg'", "4 days", "10" as a Quantity. */
static int conv_qty(hv__fp_ctx_t *c, hv__fp_item_t *v, hv__fp_item_t *r) {
    r->kind = HV__FP_QTY;
    switch (v->kind) {
    case HV__FP_QTY: *r = *v; return 1;
    case HV__FP_INT: r->u.q.v = hv__fp_dec_from_int(v->u.i); r->u.q.unit = "1"; return 1;
    case HV__FP_DEC: r->u.q.v = v->u.d; r->u.q.unit = "1"; return 1;
    case HV__FP_BOOL: r->u.q.v.m = v->u.b * 10; r->u.q.v.s = 1; r->u.q.unit = "1"; return 1;
    case HV__FP_STR: {
        const char *s = v->u.s.p, *e = s + v->u.s.len, *p = s;
        int ucum = 0;
        while (p < e && (*p == '+' || *p == '-' || *p == '.' || isdigit((unsigned char)*p))) p++;
        if (!is_dec_text(s, (size_t)(p - s)) || hv__fp_dec_parse(s, (size_t)(p - s), &r->u.q.v) != HV_OK) return 0;
        while (p < e && *p == ' ') p++;
        if (p == e) {
            r->u.q.unit = "1";
            return 1;
        }
        if (*p == '\'') {
            const char *q = memchr(p + 1, '\'', (size_t)(e - p - 1));
            if (q == NULL || q + 1 != e) return 0;
            r->u.q.unit = dupn(c, p + 1, (size_t)(q - p - 1));
            return r->u.q.unit != NULL;
        }
        r->u.q.unit = dupn(c, p, (size_t)(e - p));
        return r->u.q.unit != NULL && hv__fp_cal_unit(r->u.q.unit, &ucum) != 0 && !ucum;
    }
    default: return 0;
    }
}

enum { CV_BOOL, CV_INT, CV_DEC, CV_STR, CV_DATE, CV_DATETIME, CV_TIME, CV_QTY };

static int convert(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out, int to,
                   int test) {
    hv__fp_item_t v, r;
    int pr, ok = 0, rc = hv__fp_singleton(c, n, in, &v, &pr);
    if (rc != HV_OK || !pr) return rc;
    memset(&r, 0, sizeof(r));
    switch (to) {
    case CV_BOOL: ok = conv_bool(&v, &r); break;
    case CV_INT: ok = conv_int(&v, &r); break;
    case CV_DEC: ok = conv_dec(&v, &r); break;
    case CV_STR:
        if (v.kind != HV__FP_NODE) {
            size_t len = 0;
            const char *s = hv__fp_to_string(c, &v, &len);
            if (s == NULL) return HV_ENOMEM;
            r.kind = HV__FP_STR;
            r.u.s.p = s;
            r.u.s.len = len;
            ok = 1;
        }
        break;
    case CV_DATE: ok = conv_dt(&v, &r, HV__FP_DATE); break;
    case CV_DATETIME: ok = conv_dt(&v, &r, HV__FP_DATETIME); break;
    case CV_TIME: ok = conv_dt(&v, &r, HV__FP_TIME); break;
    case CV_QTY:
        ok = conv_qty(c, &v, &r);
        if (ok && n->nargs > 0) {
            const char *u = NULL;
            size_t ul = 0;
            int pu = 0;
            rc = hv__fp_arg_str(c, n, in, 0, &u, &ul, &pu);
            if (rc != HV_OK) return rc;
            /* Another unit converts through UCUM. */
            if (pu && !(strlen(r.u.q.unit) == ul && memcmp(r.u.q.unit, u, ul) == 0)) {
                char *uz = hv_arena_strndup(c->arena, u, ul);
                if (uz == NULL) return HV_ENOMEM;
                ok = hv__fp_qty_convert(&r, uz, &r.u.q.v) == HV_OK;
                r.u.q.unit = uz;
            }
        }
        break;
    }
    if (test) return hv__fp_push_bool(c, out, ok);
    return ok ? hv__fp_push(c, out, &r) : HV_OK;
}
FN(toBoolean) { return convert(c, n, in, out, CV_BOOL, 0); }
FN(convertsToBoolean) { return convert(c, n, in, out, CV_BOOL, 1); }
FN(toInteger) { return convert(c, n, in, out, CV_INT, 0); }
FN(convertsToInteger) { return convert(c, n, in, out, CV_INT, 1); }
FN(toDecimal) { return convert(c, n, in, out, CV_DEC, 0); }
FN(convertsToDecimal) { return convert(c, n, in, out, CV_DEC, 1); }
FN(toString) { return convert(c, n, in, out, CV_STR, 0); }
FN(convertsToString) { return convert(c, n, in, out, CV_STR, 1); }
FN(toDate) { return convert(c, n, in, out, CV_DATE, 0); }
FN(convertsToDate) { return convert(c, n, in, out, CV_DATE, 1); }
FN(toDateTime) { return convert(c, n, in, out, CV_DATETIME, 0); }
FN(convertsToDateTime) { return convert(c, n, in, out, CV_DATETIME, 1); }
FN(toTime) { return convert(c, n, in, out, CV_TIME, 0); }
FN(convertsToTime) { return convert(c, n, in, out, CV_TIME, 1); }
FN(toQuantity) { return convert(c, n, in, out, CV_QTY, 0); }
FN(convertsToQuantity) { return convert(c, n, in, out, CV_QTY, 1); }

/* ---- boundaries (FHIRPath 2.1 lowBoundary, highBoundary, precision) ---- */

static const int dt_digits[] = {0, 4, 6, 8, 10, 12, 14, 17};
static const int tm_digits[] = {0, 0, 0, 0, 2, 4, 6, 9};

static int prec_from_digits(int kind, int64_t d) {
    for (int p = 1; p <= HV__FP_P_MS; p++)
        if ((kind == HV__FP_TIME ? tm_digits[p] : dt_digits[p]) == d && (kind != HV__FP_TIME || p >= HV__FP_P_HOUR)) return p;
    return 0;
}

static int mdays(int y, int m) {
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0) ? 29 : d[m - 1];
}

static int boundary(hv__fp_ctx_t *c, const hv__fp_node_t *n, const hv__fp_coll_t *in, hv__fp_coll_t *out, int high) {
    hv__fp_item_t v;
    int64_t p = -1;
    int pr, rc = hv__fp_singleton(c, n, in, &v, &pr);
    if (rc != HV_OK || !pr) return rc;
    if (n->nargs > 0) {
        int pp = 0;
        rc = hv__fp_arg_int(c, n, in, 0, &p, &pp);
        if (rc != HV_OK || !pp) return rc;
    }
    if (v.kind == HV__FP_INT || v.kind == HV__FP_DEC || v.kind == HV__FP_QTY) {
        hv__fp_dec_t d = v.kind == HV__FP_INT ? hv__fp_dec_from_int(v.u.i) : v.kind == HV__FP_DEC ? v.u.d : v.u.q.v;
        /* The boundary is the value ± half a unit of its last digit. Below that precision
         * the R4 suite truncates the low boundary and rounds the high one, mirrored for
         * negative values (LowBoundary and HighBoundary groups). */
        int neg = d.m < 0, up;
        hv__fp_dec_t half, b;
        if (n->nargs == 0) p = 8;
        if (p < 0 || p > HV__FP_DEC_MAXSCALE - 1) return HV_OK;
        if (neg) d.m = -d.m;
        up = neg ? !high : high;
        half.m = up ? 5 : -5;
        half.s = d.s + 1;
        if (hv__fp_dec_add(d, half, &b) != HV_OK) return HV_OK;
        if (p >= b.s) {
            while (b.s < p) {
                b.m *= 10;
                b.s++;
            }
        } else if (up) {
            b = hv__fp_dec_round(b, (int)p);
        } else {
            while (b.s > p) {
                b.m /= 10;
                b.s--;
            }
        }
        if (neg) b.m = -b.m;
        if (v.kind == HV__FP_QTY) {
            v.u.q.v = b;
            return hv__fp_push(c, out, &v);
        }
        return hv__fp_push_dec(c, out, b);
    }
    if (v.kind == HV__FP_DATE || v.kind == HV__FP_DATETIME || v.kind == HV__FP_TIME) {
        hv__fp_dt_t d = v.u.dt;
        int target = 0;
        if (n->nargs == 0) p = v.kind == HV__FP_DATE ? 8 : v.kind == HV__FP_TIME ? 9 : 17;
        target = prec_from_digits(v.kind, p);
        if (target == 0 || (v.kind == HV__FP_DATE && target > HV__FP_P_DAY)) return HV_OK;
        /* An hour without minutes is read as hh:00 (the suite's HighBoundaryDateTime tests). */
        if (v.kind == HV__FP_DATETIME && d.prec == HV__FP_P_HOUR) d.prec = HV__FP_P_MINUTE;
        if (d.prec < HV__FP_P_MONTH) d.month = high ? 12 : 1;
        if (d.prec < HV__FP_P_DAY) d.day = (int8_t)(high ? mdays(d.year, d.month ? d.month : 1) : 1);
        if (d.prec < HV__FP_P_HOUR) d.hour = high ? 23 : 0;
        if (d.prec < HV__FP_P_MINUTE) d.minute = high ? 59 : 0;
        if (d.prec < HV__FP_P_SECOND) d.second = high ? 59 : 0;
        if (d.prec < HV__FP_P_MS) d.ms = high ? 999 : 0;
        if (v.kind == HV__FP_DATETIME && !d.has_tz && target >= HV__FP_P_HOUR) {
            d.has_tz = 1;
            d.tz = high ? -12 * 60 : 14 * 60;
        }
        d.prec = (uint8_t)target;
        v.u.dt = d;
        if (v.kind == HV__FP_DATETIME && target <= HV__FP_P_DAY) v.kind = HV__FP_DATE;
        return hv__fp_push(c, out, &v);
    }
    return hv__fp_fail(c, n, HV_EINVAL, "%s() needs a number, quantity or date/time", n->name);
}
FN(lowBoundary) { return boundary(c, n, in, out, 0); }
FN(highBoundary) { return boundary(c, n, in, out, 1); }

FN(precision) {
    hv__fp_item_t v;
    int pr, rc = hv__fp_singleton(c, n, in, &v, &pr);
    if (rc != HV_OK || !pr) return rc;
    switch (v.kind) {
    case HV__FP_DEC: return hv__fp_push_int(c, out, v.u.d.s);
    case HV__FP_INT: return hv__fp_push_int(c, out, 0);
    case HV__FP_DATE:
    case HV__FP_DATETIME: return hv__fp_push_int(c, out, dt_digits[v.u.dt.prec]);
    case HV__FP_TIME: return hv__fp_push_int(c, out, tm_digits[v.u.dt.prec]);
    default: return hv__fp_fail(c, n, HV_EINVAL, "precision() needs a number or date/time");
    }
}

/* comparable(q): the same unit, two calendar durations, or commensurable UCUM units. */
FN(comparable) {
    hv__fp_item_t v, w;
    hv__fp_coll_t r = {0};
    int pr, pw, rc = hv__fp_singleton(c, n, in, &v, &pr);
    if (rc != HV_OK || !pr) return rc;
    rc = hv__fp_eval_arg(c, n->args[0], in, &r);
    if (rc == HV_OK) rc = hv__fp_singleton(c, n, &r, &w, &pw);
    if (rc != HV_OK || !pw) return rc;
    if (v.kind != HV__FP_QTY || w.kind != HV__FP_QTY) return hv__fp_fail(c, n, HV_EINVAL, "comparable() needs quantities");
    {
        int u1, u2, a = hv__fp_cal_unit(v.u.q.unit, &u1), b = hv__fp_cal_unit(w.u.q.unit, &u2);
        hv__fp_dec_t tmp;
        return hv__fp_push_bool(c, out, strcmp(v.u.q.unit, w.u.q.unit) == 0 || (a != 0 && b != 0) ||
                                            hv__fp_qty_convert(&w, v.u.q.unit, &tmp) == HV_OK);
    }
}
