/*
 * fhirpath_lex.c — the FHIRPath lexer (FHIRPath N1 grammar, fhirpath.g4 lexer rules):
 * identifiers and `delimited identifiers`, 'string' literals with their escapes,
 * numbers (with the 2.1 'L' suffix for Long), @date/@dateTime/@Ttime literals,
 * %variables, $this/$index/$total, symbolic operators, and // and block comments.
 *
 * Tokens point into the source; strings, delimited identifiers and variable names
 * are unescaped into the compile arena. Positions are 1-based line and column.
 */
#include "config.h"

#include <ctype.h>
#include <string.h>

#include "fhir/fhirpath_int.h"

static int lex_error(hv__fp_lexer_t *lx, const char *at, const char *msg) {
    const char *ls = lx->line_start;
    int col = 1;
    for (const char *p = ls; p < at && p < lx->end; p++) col++;
    hv_error_set(lx->err, HV_EPROTO, NULL, "%s", msg);
    if (lx->err != NULL) {
        lx->err->line = lx->line;
        lx->err->column = col;
    }
    return HV_EPROTO;
}

static void newline(hv__fp_lexer_t *lx, const char *p) {
    lx->line++;
    lx->line_start = p + 1;
}

/* Skips blanks and comments. */
static int skip_space(hv__fp_lexer_t *lx) {
    const char *p = lx->cur;
    for (;;) {
        if (p >= lx->end) break;
        if (*p == '\n') {
            newline(lx, p);
            p++;
        } else if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\f') {
            p++;
        } else if (*p == '/' && p + 1 < lx->end && p[1] == '/') {
            while (p < lx->end && *p != '\n') p++;
        } else if (*p == '/' && p + 1 < lx->end && p[1] == '*') {
            const char *start = p;
            p += 2;
            while (p + 1 < lx->end && !(p[0] == '*' && p[1] == '/')) {
                if (*p == '\n') newline(lx, p);
                p++;
            }
            if (p + 1 >= lx->end) {
                lx->cur = p;
                return lex_error(lx, start, "unterminated comment");
            }
            p += 2;
        } else {
            break;
        }
    }
    lx->cur = p;
    return HV_OK;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Appends code point cp as UTF-8. */
static size_t put_utf8(char *o, unsigned cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
}

/* Reads a quoted string or delimited identifier ending in `q`, with FHIRPath escapes
 * (fhirpath.html#string: \' \" \` \\ \/ \f \n \r \t \uXXXX). */
static int lex_quoted(hv__fp_lexer_t *lx, char q, hv__fp_token_t *t) {
    const char *p = lx->cur + 1;
    char *o, *val;
    val = hv_arena_alloc(lx->arena, (size_t)(lx->end - p) + 1);
    if (val == NULL) return HV_ENOMEM;
    o = val;
    for (;;) {
        if (p >= lx->end) return lex_error(lx, lx->cur, q == '\'' ? "unterminated string literal"
                                                                   : "unterminated delimited identifier");
        if (*p == q) break;
        if (*p == '\\') {
            p++;
            if (p >= lx->end) continue;
            switch (*p) {
            case '\'': case '"': case '`': case '\\': case '/': *o++ = *p; break;
            case 'f': *o++ = '\f'; break;
            case 'n': *o++ = '\n'; break;
            case 'r': *o++ = '\r'; break;
            case 't': *o++ = '\t'; break;
            case 'u': {
                unsigned cp = 0;
                for (int i = 1; i <= 4; i++) {
                    int h = p + i < lx->end ? hexval((unsigned char)p[i]) : -1;
                    if (h < 0) return lex_error(lx, p - 1, "invalid \\u escape");
                    cp = cp * 16 + (unsigned)h;
                }
                o += put_utf8(o, cp);
                p += 4;
                break;
            }
            default:
                return lex_error(lx, p - 1, "invalid escape sequence");
            }
            p++;
            continue;
        }
        if (*p == '\n') newline(lx, p);
        *o++ = *p++;
    }
    *o = '\0';
    t->val = val;
    t->len = (size_t)(p + 1 - lx->cur);
    lx->cur = p + 1;
    return HV_OK;
}

static int digits(const char *p, const char *end, int n) {
    for (int i = 0; i < n; i++)
        if (p + i >= end || !isdigit((unsigned char)p[i])) return 0;
    return 1;
}

/* Length of a time part "HH(:MM(:SS(.fff)?)?)?" at p, 0 if none. */
static size_t time_len(const char *p, const char *end) {
    const char *s = p;
    if (!digits(p, end, 2)) return 0;
    p += 2;
    if (p < end && *p == ':' && digits(p + 1, end, 2)) {
        p += 3;
        if (p < end && *p == ':' && digits(p + 1, end, 2)) {
            p += 3;
            if (p < end && *p == '.' && digits(p + 1, end, 1)) {
                p++;
                while (p < end && isdigit((unsigned char)*p)) p++;
            }
        }
    }
    return (size_t)(p - s);
}

static size_t tz_len(const char *p, const char *end) {
    if (p < end && *p == 'Z') return 1;
    if (p < end && (*p == '+' || *p == '-') && digits(p + 1, end, 2) && p + 3 < end && p[3] == ':' &&
        digits(p + 4, end, 2))
        return 6;
    return 0;
}

/* @ literals (fhirpath.g4 DATE, DATETIME, TIME). */
static int lex_at(hv__fp_lexer_t *lx, hv__fp_token_t *t) {
    const char *p = lx->cur + 1, *end = lx->end;
    if (p < end && *p == 'T') {
        size_t n = time_len(p + 1, end);
        if (n == 0) return lex_error(lx, lx->cur, "invalid time literal");
        p += 1 + n;
        p += tz_len(p, end); /* rejected later: a Time has no time zone */
        t->type = HV__FP_T_TIME;
    } else {
        if (!digits(p, end, 4)) return lex_error(lx, lx->cur, "invalid date literal");
        p += 4;
        t->type = HV__FP_T_DATE;
        if (p < end && *p == '-' && digits(p + 1, end, 2)) {
            p += 3;
            if (p < end && *p == '-' && digits(p + 1, end, 2)) p += 3;
        }
        if (p < end && *p == 'T') {
            t->type = HV__FP_T_DATETIME;
            p++;
            p += time_len(p, end);
            p += tz_len(p, end);
        } else if (tz_len(p, end) == 1 || (tz_len(p, end) == 6)) {
            /* A time zone on a date without 'T' is not a date: leave it to the parser. */
        }
    }
    t->len = (size_t)(p - lx->cur);
    lx->cur = p;
    return HV_OK;
}

int hv__fp_lex_next(hv__fp_lexer_t *lx, hv__fp_token_t *t) {
    int rc;
    const char *p;
    memset(t, 0, sizeof(*t));
    rc = skip_space(lx);
    if (rc != HV_OK) return rc;
    p = lx->cur;
    t->p = p;
    t->line = lx->line;
    t->col = (int)(p - lx->line_start) + 1;
    if (p >= lx->end) {
        t->type = HV__FP_T_EOF;
        return HV_OK;
    }
    if (isalpha((unsigned char)*p) || *p == '_') {
        while (p < lx->end && (isalnum((unsigned char)*p) || *p == '_')) p++;
        t->type = HV__FP_T_IDENT;
        t->len = (size_t)(p - lx->cur);
        t->val = hv_arena_strndup(lx->arena, lx->cur, t->len);
        lx->cur = p;
        return t->val != NULL ? HV_OK : HV_ENOMEM;
    }
    if (*p == '`') {
        t->type = HV__FP_T_DELIM;
        return lex_quoted(lx, '`', t);
    }
    if (*p == '\'') {
        t->type = HV__FP_T_STRING;
        return lex_quoted(lx, '\'', t);
    }
    if (isdigit((unsigned char)*p)) {
        while (p < lx->end && isdigit((unsigned char)*p)) p++;
        t->type = HV__FP_T_NUMBER;
        if (p + 1 < lx->end && *p == '.' && isdigit((unsigned char)p[1])) {
            p++;
            while (p < lx->end && isdigit((unsigned char)*p)) p++;
        } else if (p < lx->end && *p == 'L') {
            t->type = HV__FP_T_LONG;
            t->len = (size_t)(p - lx->cur);
            lx->cur = p + 1;
            return HV_OK;
        }
        t->len = (size_t)(p - lx->cur);
        lx->cur = p;
        return HV_OK;
    }
    if (*p == '@') {
        return lex_at(lx, t);
    }
    if (*p == '%') {
        hv__fp_token_t inner;
        lx->cur = p + 1;
        t->type = HV__FP_T_VAR;
        if (p + 1 < lx->end && (p[1] == '`' || p[1] == '\'')) {
            rc = lex_quoted(lx, p[1], &inner);
            if (rc != HV_OK) return rc;
            t->val = inner.val;
        } else if (p + 1 < lx->end && (isalpha((unsigned char)p[1]) || p[1] == '_')) {
            const char *q = p + 1;
            while (q < lx->end && (isalnum((unsigned char)*q) || *q == '_' || *q == '-')) q++;
            t->val = hv_arena_strndup(lx->arena, p + 1, (size_t)(q - p - 1));
            if (t->val == NULL) return HV_ENOMEM;
            lx->cur = q;
        } else {
            return lex_error(lx, p, "expected a variable name after '%'");
        }
        t->len = (size_t)(lx->cur - p);
        return HV_OK;
    }
    if (*p == '$') {
        const char *q = p + 1;
        while (q < lx->end && isalpha((unsigned char)*q)) q++;
        t->type = HV__FP_T_DOLLAR;
        t->len = (size_t)(q - p);
        if (!(t->len == 5 && memcmp(p, "$this", 5) == 0) && !(t->len == 6 && memcmp(p, "$index", 6) == 0) &&
            !(t->len == 6 && memcmp(p, "$total", 6) == 0))
            return lex_error(lx, p, "unknown special variable (expected $this, $index or $total)");
        lx->cur = q;
        return HV_OK;
    }
    t->type = HV__FP_T_OP;
    if (p + 1 < lx->end && ((p[0] == '!' && (p[1] == '=' || p[1] == '~')) ||
                            ((p[0] == '<' || p[0] == '>') && p[1] == '='))) {
        t->len = 2;
    } else if (strchr("()[]{}.,+-*/&|=~<>", *p) != NULL) {
        t->len = 1;
    } else {
        return lex_error(lx, p, "unexpected character");
    }
    lx->cur = p + t->len;
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Date/time text (FHIRPath literals and FHIR date/dateTime/instant/time)    */
/* ------------------------------------------------------------------------- */

static int num(const char *p, int n) {
    int v = 0;
    for (int i = 0; i < n; i++) v = v * 10 + (p[i] - '0');
    return v;
}

static int days_in_month(int y, int m) {
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)) return 29;
    return d[m - 1];
}

/* Parses "HH(:MM(:SS(.fff)?)?)?" into d; returns the length consumed or -1. */
static int parse_time(const char *s, const char *end, hv__fp_dt_t *d) {
    size_t n = time_len(s, end);
    if (n == 0) return -1;
    d->hour = (int8_t)num(s, 2);
    d->prec = HV__FP_P_HOUR;
    if (n >= 5) {
        d->minute = (int8_t)num(s + 3, 2);
        d->prec = HV__FP_P_MINUTE;
    }
    if (n >= 8) {
        d->second = (int8_t)num(s + 6, 2);
        d->prec = HV__FP_P_SECOND;
    }
    if (n > 9) {
        int ms = 0, k = 0;
        for (size_t i = 9; i < n; i++, k++)
            if (k < 3) ms = ms * 10 + (s[i] - '0');
        for (; k < 3; k++) ms *= 10;
        d->ms = (int16_t)ms;
        d->prec = HV__FP_P_MS;
    }
    if (d->hour > 23 || d->minute > 59 || d->second > 59) return -1;
    return (int)n;
}

int hv__fp_dt_parse(const char *s, size_t n, int kind, hv__fp_dt_t *out) {
    const char *p = s, *end = s + n;
    hv__fp_dt_t d;
    memset(&d, 0, sizeof(d));
    if (kind == HV__FP_TIME) {
        int k = parse_time(p, end, &d);
        if (k < 0 || (size_t)k != n) return HV_EINVAL;
        *out = d;
        return HV_OK;
    }
    if (!digits(p, end, 4)) return HV_EINVAL;
    d.year = num(p, 4);
    d.prec = HV__FP_P_YEAR;
    p += 4;
    if (p < end && *p == '-' && digits(p + 1, end, 2)) {
        d.month = (int8_t)num(p + 1, 2);
        d.prec = HV__FP_P_MONTH;
        p += 3;
        if (d.month < 1 || d.month > 12) return HV_EINVAL;
        if (p < end && *p == '-' && digits(p + 1, end, 2)) {
            d.day = (int8_t)num(p + 1, 2);
            d.prec = HV__FP_P_DAY;
            p += 3;
            if (d.day < 1 || d.day > days_in_month(d.year, d.month)) return HV_EINVAL;
        }
    }
    if (p < end && *p == 'T') {
        if (kind == HV__FP_DATE) return HV_EINVAL;
        p++;
        if (p < end && isdigit((unsigned char)*p)) {
            int k;
            if (d.prec != HV__FP_P_DAY) return HV_EINVAL;
            k = parse_time(p, end, &d);
            if (k < 0) return HV_EINVAL;
            p += k;
        }
        if (p < end) {
            size_t z = tz_len(p, end);
            if (z == 0) return HV_EINVAL;
            d.has_tz = 1;
            if (z == 6) {
                int m = num(p + 1, 2) * 60 + num(p + 4, 2);
                d.tz = (int16_t)(*p == '-' ? -m : m);
            }
            p += z;
        }
    }
    if (p != end) return HV_EINVAL;
    *out = d;
    return HV_OK;
}
