/*
 * ucum_parse.c — the UCUM expression parser (https://ucum.org/ucum §§1-14 and the
 * BNF of its appendix), evaluating straight into the canonical form (no tree).
 *
 *   mainTerm    ::= "/" term | term
 *   term        ::= term "." component | term "/" component | component
 *   component   ::= annotatable annotation | annotatable | annotation | factor
 *                   | factor annotation | "(" term ")"
 *   annotatable ::= simpleUnit exponent | simpleUnit
 *   simpleUnit  ::= ATOM | PREFIX ATOM          (PREFIX only on metric atoms, §10)
 *   exponent    ::= ["+" | "-"] digits          (§9; "10*3", "10^-3" are the atoms
 *                                                "10*" and "10^" with an exponent)
 *   factor      ::= digits                      (a positive integer, §11)
 *   annotation  ::= "{" ASCII 32-126 except "{" "}" ... "}"   (§12; alone it is unity;
 *                                                the space is accepted as Ucum-java does)
 *
 * Codes are case-sensitive (the c/s column of the essence). An atom may contain
 * square-bracketed parts ("[in_i]", "m[H2O]", "[m/s2/Hz^(1/2)]") in which any
 * printable character except brackets may appear. "/" and "." are left-associative:
 * "s/4/m" is (s/4)/m. A symbol is looked up whole first, then as prefix + atom, so
 * "Pa" is the pascal and "cd" the candela. Errors give the 1-based column of the
 * offending character in err->column and the reason in err->message.
 */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "terminology/ucum_int.h"

#define MAX_EXP_DIGITS 4    /* exponents up to 9999 */
#define MAX_FACTOR_DIGITS 15 /* factors stay exact in a double */

typedef struct parser {
    hv_ucum_t *u;
    const char *s;
    size_t n;
    size_t pos;
    int depth;
    hv_buf_t *disp;
    hv_error_t *err;
} parser_t;

static int term(parser_t *p, hv_ucum_canon_t *out);

static int fail(parser_t *p, size_t at, int code, const char *fmt, ...) HV_PRINTF(4, 5);

static int fail(parser_t *p, size_t at, int code, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    if (p->err == NULL) return code;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    hv_error_set(p->err, code, NULL, "%s", msg);
    p->err->column = (int)at + 1;
    return code;
}

static void disp(parser_t *p, const char *s) {
    if (p->disp != NULL) (void)hv_buf_puts(p->disp, s);
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Characters of a symbol outside brackets: printable ASCII minus the operators. */
static int is_symbol_char(char c) {
    if (c < 33 || c > 126 || is_digit(c)) return 0;
    return strchr(".(){}/+-[]", c) == NULL;
}

/* Describes a byte for an error message: "'x'", or "byte 0xE9" if not printable. */
static const char *describe(char c, char *buf, size_t len) {
    if (c >= 33 && c <= 126) snprintf(buf, len, "'%c'", c);
    else if (c == ' ') snprintf(buf, len, "a space");
    else snprintf(buf, len, "byte 0x%02X", (unsigned)(unsigned char)c);
    return buf;
}

/* Reads an annotation at p->pos ('{'); sets *end past '}'. */
static int annotation(parser_t *p) {
    size_t start = p->pos, i;
    char d[24];
    for (i = start + 1; i < p->n; i++) {
        char c = p->s[i];
        if (c == '}') {
            p->pos = i + 1;
            return HV_OK;
        }
        if (c == '{')
            return fail(p, i, HV_EINVAL, "'{' inside an annotation (annotations do not nest)");
        if (c < 32 || c > 126)
            return fail(p, i, HV_EINVAL,
                        "%s in an annotation: annotations hold printable ASCII only",
                        describe(c, d, sizeof d));
    }
    return fail(p, start, HV_EINVAL, "the annotation '{' is not closed by '}'");
}

/* Reads an optional signed exponent; *has is set when one was written. */
static int exponent(parser_t *p, int *exp, int *has) {
    size_t start = p->pos, digits;
    int sign = 1, v = 0;
    *has = 0;
    *exp = 1;
    if (p->pos < p->n && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) {
        sign = p->s[p->pos] == '-' ? -1 : 1;
        p->pos++;
        if (p->pos >= p->n || !is_digit(p->s[p->pos]))
            return fail(p, start, HV_EINVAL, "the sign '%c' is not followed by exponent digits",
                        p->s[start]);
    }
    for (digits = 0; p->pos < p->n && is_digit(p->s[p->pos]); digits++, p->pos++) {
        if (digits >= MAX_EXP_DIGITS)
            return fail(p, start, HV_ETOOBIG, "the exponent has more than %d digits",
                        MAX_EXP_DIGITS);
        v = v * 10 + (p->s[p->pos] - '0');
    }
    if (digits > 0) {
        *has = 1;
        *exp = sign * v;
    }
    return HV_OK;
}

/* Finds the atom (and prefix) a symbol names: whole first, then prefix + metric atom. */
static int lookup(parser_t *p, size_t start, size_t len, const hv__ucum_atom_t **atom,
                  const hv__ucum_prefix_t **prefix) {
    const char *sym = p->s + start;
    const hv__ucum_atom_t *a = hv__ucum_atom_find(p->u, sym, len);
    const hv__ucum_atom_t *nonmetric = NULL;
    const hv__ucum_prefix_t *best = NULL;
    size_t i;
    if (a != NULL) {
        *atom = a;
        *prefix = NULL;
        return HV_OK;
    }
    for (i = 0; i < p->u->nprefixes; i++) {
        const hv__ucum_prefix_t *pf = &p->u->prefixes[i];
        size_t pl = strlen(pf->code);
        const hv__ucum_atom_t *b;
        if (pl >= len || memcmp(pf->code, sym, pl) != 0) continue;
        b = hv__ucum_atom_find(p->u, sym + pl, len - pl);
        if (b == NULL) continue;
        if (!b->is_metric) {
            nonmetric = b;
            continue;
        }
        if (best == NULL || pl > strlen(best->code)) {
            best = pf;
            a = b;
        }
    }
    if (a != NULL) {
        *atom = a;
        *prefix = best;
        return HV_OK;
    }
    if (nonmetric != NULL)
        return fail(p, start, HV_EINVAL, "the unit '%s' is not metric and takes no prefix ('%.*s')",
                    nonmetric->code, (int)len, sym);
    return fail(p, start, HV_EINVAL, "unknown unit '%.*s'", (int)len, sym);
}

/* A symbol (simpleUnit), its exponent and an optional annotation. */
static int symbol(parser_t *p, hv_ucum_canon_t *out) {
    size_t start = p->pos, len;
    const hv__ucum_atom_t *atom = NULL;
    const hv__ucum_prefix_t *prefix = NULL;
    hv_ucum_canon_t c;
    int exp, has_exp, rc;
    char d[24];

    if (p->pos + 2 < p->n && p->s[p->pos] == '1' && p->s[p->pos + 1] == '0' &&
        (p->s[p->pos + 2] == '*' || p->s[p->pos + 2] == '^')) {
        p->pos += 3; /* the atoms "10*" and "10^" */
    } else {
        while (p->pos < p->n) {
            char ch = p->s[p->pos];
            if (ch == '[') {
                size_t open = p->pos;
                for (p->pos++; p->pos < p->n && p->s[p->pos] != ']'; p->pos++) {
                    ch = p->s[p->pos];
                    if (ch == '[' || ch < 33 || ch > 126)
                        return fail(p, p->pos, HV_EINVAL, "%s inside '[...]'",
                                    describe(ch, d, sizeof d));
                }
                if (p->pos >= p->n)
                    return fail(p, open, HV_EINVAL, "'[' is not closed by ']'");
                p->pos++;
            } else if (is_symbol_char(ch)) {
                p->pos++;
            } else {
                break;
            }
        }
    }
    len = p->pos - start;
    if (len == 0) {
        char ch = p->s[p->pos];
        if (ch == ']') return fail(p, p->pos, HV_EINVAL, "']' without '['");
        return fail(p, p->pos, HV_EINVAL, "%s cannot start a unit (UCUM uses printable ASCII)",
                    describe(ch, d, sizeof d));
    }
    rc = lookup(p, start, len, &atom, &prefix);
    if (rc != HV_OK) return rc;
    if (atom->state != HV__ATOM_DONE) {
        /* Only while loading: resolve the definitions this one depends on first. */
        rc = hv__ucum_atom_resolve(p->u, (hv__ucum_atom_t *)atom, p->err);
        if (rc != HV_OK) return rc;
    }
    rc = exponent(p, &exp, &has_exp);
    if (rc != HV_OK) return rc;
    c = atom->canon;
    if (prefix != NULL) {
        if (c.flags & HV_UCUM_SPECIAL) c.special_scale *= prefix->value;
        else c.magnitude *= prefix->value;
    }
    if (has_exp && exp != 1) {
        rc = hv__ucum_power(&c, exp, &c);
        if (rc != HV_OK)
            return fail(p, start, rc, "'%.*s' raised to %d is out of range", (int)len, p->s + start,
                        exp);
    }
    if (p->disp != NULL) {
        char e[32];
        disp(p, "(");
        if (prefix != NULL) disp(p, prefix->name);
        disp(p, atom->name);
        if (has_exp && exp != 1) {
            snprintf(e, sizeof e, " ^ %d", exp);
            disp(p, e);
        }
        disp(p, ")");
    }
    if (p->pos < p->n && p->s[p->pos] == '{') {
        rc = annotation(p);
        if (rc != HV_OK) return rc;
    }
    *out = c;
    return HV_OK;
}

static int component(parser_t *p, hv_ucum_canon_t *out) {
    size_t start = p->pos;
    char ch;
    int rc;
    if (p->pos >= p->n) return fail(p, p->pos, HV_EINVAL, "a unit term is missing at the end");
    ch = p->s[p->pos];
    if (ch == '(') {
        if (p->depth >= HV_UCUM_MAX_DEPTH)
            return fail(p, p->pos, HV_ETOOBIG, "parentheses nest deeper than %d", HV_UCUM_MAX_DEPTH);
        p->depth++;
        p->pos++;
        if (p->pos < p->n && p->s[p->pos] == ')') return fail(p, start, HV_EINVAL, "empty '()'");
        disp(p, "(");
        rc = term(p, out);
        if (rc != HV_OK) return rc;
        if (p->pos >= p->n || p->s[p->pos] != ')')
            return fail(p, start, HV_EINVAL, "'(' is not closed by ')'");
        p->pos++;
        p->depth--;
        disp(p, ")");
        if (p->pos < p->n && (is_digit(p->s[p->pos]) || p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            return fail(p, p->pos, HV_EINVAL, "an exponent cannot follow ')' in UCUM");
        if (p->pos < p->n && p->s[p->pos] == '{')
            return fail(p, p->pos, HV_EINVAL, "an annotation cannot follow ')'");
        return HV_OK;
    }
    if (ch == '{') {
        rc = annotation(p);
        if (rc != HV_OK) return rc;
        hv__ucum_unity(out);
        if (p->disp != NULL) (void)hv_buf_append(p->disp, p->s + start, p->pos - start);
        return HV_OK;
    }
    if (is_digit(ch) && !(p->pos + 2 < p->n && ch == '1' && p->s[p->pos + 1] == '0' &&
                          (p->s[p->pos + 2] == '*' || p->s[p->pos + 2] == '^'))) {
        double v = 0;
        size_t digits = 0;
        for (; p->pos < p->n && is_digit(p->s[p->pos]); p->pos++, digits++) {
            if (digits >= MAX_FACTOR_DIGITS)
                return fail(p, start, HV_ETOOBIG, "the number has more than %d digits",
                            MAX_FACTOR_DIGITS);
            v = v * 10 + (p->s[p->pos] - '0');
        }
        if (v == 0) return fail(p, start, HV_EINVAL, "a factor of 0 is not a unit");
        if (p->disp != NULL) (void)hv_buf_append(p->disp, p->s + start, p->pos - start);
        if (p->pos < p->n && p->s[p->pos] == '{') {
            rc = annotation(p);
            if (rc != HV_OK) return rc;
        }
        hv__ucum_unity(out);
        out->magnitude = v;
        return HV_OK;
    }
    if (ch == '.' || ch == '/')
        return fail(p, p->pos, HV_EINVAL, "'%c' is not preceded by a unit term", ch);
    if (ch == ')') return fail(p, p->pos, HV_EINVAL, "')' without '('");
    if (ch == '+' || ch == '-')
        return fail(p, p->pos, HV_EINVAL, "the sign '%c' is not attached to a unit", ch);
    if (ch == '}') return fail(p, p->pos, HV_EINVAL, "'}' without '{'");
    return symbol(p, out);
}

/* Explains what follows a complete component when it is not an operator. */
static int junk_after(parser_t *p, size_t comp_start) {
    char ch = p->s[p->pos], d[24];
    int prev_digit = p->pos > 0 && is_digit(p->s[p->pos - 1]);
    int comp_number = is_digit(p->s[comp_start]);
    if (comp_number && (ch == '+' || ch == '-'))
        return fail(p, p->pos, HV_EINVAL,
                    "a sign after the number '%.*s': only units take exponents (10*+3 is a power of "
                    "ten)",
                    (int)(p->pos - comp_start), p->s + comp_start);
    if (comp_number && prev_digit && (is_symbol_char(ch) || ch == '['))
        return fail(p, comp_start, HV_EINVAL,
                    "a number cannot be written against a unit ('%.*s%c...'): write '%.*s.%c'",
                    (int)(p->pos - comp_start), p->s + comp_start, ch,
                    (int)(p->pos - comp_start), p->s + comp_start, ch);
    if (p->s[p->pos - 1] == '}' && (is_symbol_char(ch) || is_digit(ch) || ch == '['))
        return fail(p, p->pos, HV_EINVAL,
                    "a unit cannot follow an annotation directly: join them with '.'");
    if (ch == '(')
        return fail(p, p->pos, HV_EINVAL, "'(' must be preceded by '.' or '/'");
    if (ch == ')') return fail(p, p->pos, HV_EINVAL, "')' without '('");
    return fail(p, p->pos, HV_EINVAL, "unexpected %s: expected '.' or '/'",
                describe(ch, d, sizeof d));
}

static int term(parser_t *p, hv_ucum_canon_t *out) {
    hv_ucum_canon_t acc, c;
    size_t comp_start = p->pos;
    int rc = component(p, &acc);
    if (rc != HV_OK) return rc;
    for (;;) {
        char op;
        size_t op_pos;
        if (p->pos >= p->n) break;
        op = p->s[p->pos];
        if (op == ')' && p->depth > 0) break;
        if (op != '.' && op != '/') return junk_after(p, comp_start);
        op_pos = p->pos++;
        if (p->pos >= p->n || p->s[p->pos] == '.' || p->s[p->pos] == '/' || p->s[p->pos] == ')')
            return fail(p, op_pos, HV_EINVAL, "'%c' is not followed by a unit term", op);
        disp(p, op == '.' ? " * " : " / ");
        comp_start = p->pos;
        rc = component(p, &c);
        if (rc != HV_OK) return rc;
        rc = hv__ucum_combine(&acc, &c, op == '.' ? 1 : -1, &acc);
        if (rc != HV_OK)
            return fail(p, comp_start, rc, "the product is out of range (magnitude, exponent or "
                                           "more than %d arbitrary units)", HV_UCUM_MAX_ARB);
    }
    *out = acc;
    return HV_OK;
}

int hv__ucum_parse(hv_ucum_t *u, const char *s, size_t n, hv_ucum_canon_t *out, hv_buf_t *dbuf,
                   hv_error_t *err) {
    parser_t p;
    hv_ucum_canon_t c;
    int rc;
    memset(&p, 0, sizeof p);
    p.u = u;
    p.s = s;
    p.n = n;
    p.disp = dbuf;
    p.err = err;
    if (n > HV_UCUM_MAX_UNIT_LEN)
        return fail(&p, HV_UCUM_MAX_UNIT_LEN, HV_ETOOBIG, "the unit is longer than %d bytes",
                    HV_UCUM_MAX_UNIT_LEN);
    if (memchr(s, '\0', n) != NULL)
        return fail(&p, (size_t)((const char *)memchr(s, '\0', n) - s), HV_EINVAL,
                    "a NUL byte in the unit");
    if (n == 0) {
        hv__ucum_unity(out);
        disp(&p, "(unity)");
        return HV_OK;
    }
    if (s[0] == '/') {
        hv_ucum_canon_t one;
        p.pos = 1;
        if (n == 1) return fail(&p, 0, HV_EINVAL, "'/' is not followed by a unit term");
        disp(&p, "1 / ");
        rc = term(&p, &c);
        if (rc != HV_OK) return rc;
        hv__ucum_unity(&one);
        rc = hv__ucum_combine(&one, &c, -1, &c);
        if (rc != HV_OK) return fail(&p, 0, rc, "the unit is out of range");
    } else {
        rc = term(&p, &c);
        if (rc != HV_OK) return rc;
    }
    if (p.pos < n) return fail(&p, p.pos, HV_EINVAL, "')' without '('");
    *out = c;
    return HV_OK;
}
