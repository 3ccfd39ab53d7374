/*
 * v2_cond.c — compiles the postfix conditions of the HL7 v2 → FHIR mapping tables
 * (docs/mappings.md, "CONDITION") into a program of operations once, when the tables are
 * loaded, so that mapping a message does not tokenize, parse numbers or decode literals
 * per row and per message. hv__v2_cond_eval runs the program against the message.
 *
 * The language: operands `@SEG-F[.C]` (a field of the segment, or of the first segment
 * with that id), `@.C[.S]` (a component of the value being mapped), `'text` (%XX escapes),
 * `#n`; operators `valued not count len gt ge lt le eq or and in<k>`. A text the compiler
 * cannot read entirely — `?` (the generator could not read the table's condition), an
 * unknown operator, an operator without its operands, a stack deeper than HV__COND_MAX_STACK —
 * compiles to a program that is never true, as the text interpreter this replaces did.
 *
 * hv__v2_cond_eval (the end of this file) runs a program against the segment and the value
 * being mapped.
 */
#include "config.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mappings/v2_int.h"

#define MAX_OPS 64 /* operations in one condition; the tables' longest has about 20 */

/* Decodes a literal ('text with %XX escapes, the quote included in p) into buf. */
static size_t lit_decode(const char *p, size_t n, char *buf, size_t cap) {
    size_t i, o = 0;
    for (i = 1; i < n && o + 1 < cap; i++) {
        if (p[i] == '%' && i + 2 < n && isxdigit((unsigned char)p[i + 1]) && isxdigit((unsigned char)p[i + 2])) {
            char hx[3] = {p[i + 1], p[i + 2], 0};
            buf[o++] = (char)strtol(hx, NULL, 16);
            i += 2;
        } else {
            buf[o++] = p[i];
        }
    }
    buf[o] = '\0';
    return o;
}

/* "PID-7", "OBX-5.3", ".3", ".3.1" → a path operation; a path that names nothing readable
 * becomes HV__COND_EMPTY (an unvalued operand, as before). */
static void compile_path(const char *p, size_t n, hv__cond_op_t *op) {
    char path[24], *end;
    op->kind = HV__COND_EMPTY;
    if (n >= sizeof(path)) return;
    memcpy(path, p, n);
    path[n] = '\0';
    if (path[0] == '.') {
        if (!isdigit((unsigned char)path[1])) return;
        op->kind = HV__COND_COMP;
        op->a = (unsigned)strtoul(path + 1, &end, 10);
        if (*end == '.') op->b = (unsigned)strtoul(end + 1, NULL, 10);
        return;
    }
    if (n < 5 || path[3] != '-' || !isdigit((unsigned char)path[4])) return;
    op->kind = HV__COND_FIELD;
    memcpy(op->seg, path, 3);
    op->seg[3] = '\0';
    op->a = (unsigned)strtoul(path + 4, &end, 10);
    if (*end == '.') op->b = (unsigned)strtoul(end + 1, NULL, 10);
}

static const hv__cond_t never = {1, 0, NULL, 0, 0};

/*
 * The leading test of a compiled program (hv__cond_t.guard): a path (FIELD, COMP or EMPTY)
 * then k >= 1 literals then "eq" (k = 1) or "in<k>", i.e. ops[0..k+2). The test is
 * necessary when every operator that later takes the stack's bottom value as an operand is
 * an "and": the rest of the program is followed with the stack depth, and an operator
 * other than "and" that consumes the bottom slot (a unary one at depth 1, a binary one at
 * depth 2, an "in" reaching it) makes the test not necessary.
 */
static void find_guard(hv__cond_t *cc) {
    const hv__cond_op_t *ops = cc->ops;
    size_t k = 0, g, i;
    long depth = 1;
    cc->guard = cc->guard_all = 0;
    if (cc->nops < 3 || cc->nops > 255 ||
        (ops[0].kind != HV__COND_FIELD && ops[0].kind != HV__COND_COMP && ops[0].kind != HV__COND_EMPTY))
        return;
    while (1 + k < cc->nops && ops[1 + k].kind == HV__COND_LIT) k++;
    if (k == 0 || 1 + k >= cc->nops) return;
    if (!(k == 1 && ops[1 + k].kind == HV__COND_EQ_TEXT) &&
        !(ops[1 + k].kind == HV__COND_IN && ops[1 + k].num == (long)k))
        return;
    g = k + 2;
    for (i = g; i < cc->nops; i++) {
        switch (ops[i].kind) {
        case HV__COND_EMPTY: case HV__COND_FIELD: case HV__COND_COMP: case HV__COND_LIT: case HV__COND_NUM:
            depth++;
            break;
        case HV__COND_VALUED: case HV__COND_NOT: case HV__COND_COUNT: case HV__COND_LEN:
            if (depth == 1) return;
            break;
        case HV__COND_IN:
            if (depth - 1 - ops[i].num <= 0) return;
            depth -= ops[i].num;
            break;
        default: /* binary */
            if (depth == 2 && ops[i].kind != HV__COND_AND) return;
            depth--;
            break;
        }
    }
    if (depth != 1) return;
    cc->guard = (unsigned char)g;
    cc->guard_all = g == cc->nops;
}

/* Kinds of stack values, known when compiling: 0 text, 1 number, 2 boolean. */
int hv__map_cond_compile(hv_arena_t *arena, const char *text, const hv__cond_t **cc) {
    hv__cond_op_t ops[MAX_OPS];
    unsigned char kind[HV__COND_MAX_STACK];
    size_t last[HV__COND_MAX_STACK]; /* the last op of the value in each stack slot */
    hv__cond_t *out;
    size_t nops = 0;
    int sp = 0;
    const char *p = text;
    *cc = NULL; /* always true */
    if (text == NULL || text[0] == '\0') return HV_OK;
    *cc = &never;
    if (text[0] == '?') return HV_OK;
    while (*p) {
        const char *q;
        size_t n;
        hv__cond_op_t *op;
        while (*p == ' ') p++;
        if (*p == '\0') break;
        q = strchr(p, ' ');
        n = q ? (size_t)(q - p) : strlen(p);
        if (nops >= MAX_OPS || sp >= HV__COND_MAX_STACK - 1) return HV_OK;
        op = &ops[nops++];
        memset(op, 0, sizeof(*op));
        if (p[0] == '@') {
            compile_path(p + 1, n - 1, op);
            last[sp] = nops - 1;
            kind[sp++] = 0;
        } else if (p[0] == '\'') {
            char *buf = hv_arena_alloc(arena, n + 1);
            if (buf == NULL) return HV_ENOMEM;
            op->kind = HV__COND_LIT;
            op->n = lit_decode(p, n, buf, n + 1);
            op->s = buf;
            last[sp] = nops - 1;
            kind[sp++] = 0;
        } else if (p[0] == '#') {
            op->kind = HV__COND_NUM;
            op->num = strtol(p + 1, NULL, 10);
            last[sp] = nops - 1;
            kind[sp++] = 1;
        } else if (n == 6 && memcmp(p, "valued", 6) == 0 && sp >= 1) {
            op->kind = HV__COND_VALUED;
            kind[sp - 1] = 2;
        } else if (n == 3 && memcmp(p, "not", 3) == 0 && sp >= 1) {
            op->kind = HV__COND_NOT;
            kind[sp - 1] = 2;
        } else if (n == 5 && memcmp(p, "count", 5) == 0 && sp >= 1) {
            op->kind = HV__COND_COUNT;
            kind[sp - 1] = 1;
        } else if (n == 3 && memcmp(p, "len", 3) == 0 && sp >= 1) {
            op->kind = HV__COND_LEN;
            kind[sp - 1] = 1;
        } else if (n == 2 && sp >= 2 && !memcmp(p, "gt", 2)) {
            op->kind = HV__COND_GT, sp--, kind[sp - 1] = 2;
        } else if (n == 2 && sp >= 2 && !memcmp(p, "ge", 2)) {
            op->kind = HV__COND_GE, sp--, kind[sp - 1] = 2;
        } else if (n == 2 && sp >= 2 && !memcmp(p, "lt", 2)) {
            op->kind = HV__COND_LT, sp--, kind[sp - 1] = 2;
        } else if (n == 2 && sp >= 2 && !memcmp(p, "le", 2)) {
            op->kind = HV__COND_LE, sp--, kind[sp - 1] = 2;
        } else if (n == 2 && sp >= 2 && !memcmp(p, "eq", 2)) {
            /* Two texts compare as text (case-insensitive), anything else as numbers. */
            op->kind = kind[sp - 2] == 0 && kind[sp - 1] == 0 ? HV__COND_EQ_TEXT : HV__COND_EQ;
            sp--, kind[sp - 1] = 2;
        } else if (n == 2 && sp >= 2 && !memcmp(p, "or", 2)) {
            op->kind = HV__COND_OR, ops[last[sp - 2]].jt = (unsigned short)nops, sp--, kind[sp - 1] = 2;
        } else if (n == 3 && memcmp(p, "and", 3) == 0 && sp >= 2) {
            op->kind = HV__COND_AND, ops[last[sp - 2]].jf = (unsigned short)nops, sp--, kind[sp - 1] = 2;
        } else if (n >= 3 && memcmp(p, "in", 2) == 0 && isdigit((unsigned char)p[2])) {
            long k = strtol(p + 2, NULL, 10);
            if (k < 1 || k >= sp) return HV_OK;
            op->kind = HV__COND_IN;
            op->num = k;
            sp -= (int)k;
            kind[sp - 1] = 2;
        } else {
            return HV_OK; /* an operator this engine does not know: the row is never applied */
        }
        if (sp >= 1) last[sp - 1] = nops - 1; /* an operator's value ends with it */
        p += n;
    }
    /* The result must be one boolean. */
    if (sp != 1 || kind[0] != 2) return HV_OK;
    out = hv_arena_alloc(arena, sizeof(*out));
    if (out == NULL) return HV_ENOMEM;
    out->never = 0;
    out->nops = nops;
    out->ops = hv_arena_alloc(arena, nops * sizeof(*ops));
    if (out->ops == NULL) return HV_ENOMEM;
    memcpy(out->ops, ops, nops * sizeof(*ops));
    find_guard(out);
    *cc = out;
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Conditions                                                                */
/* ------------------------------------------------------------------------- */

typedef struct val {
    int kind; /* 0 string, 1 number, 2 boolean */
    span_t s;
    long n;
} val_t;

/*
 * The raw value of a compiled condition path in the current context: FIELD "PID-7",
 * "OBX-5.3" (a field of the segment being mapped, or of the first segment with that id)
 * or COMP ".3" (a component of the data-type value being mapped). *count: the number of
 * repetitions (FIELD) or 1/0 valued (COMP).
 */
static span_t field_operand(ctx_t *c, const hv__cond_op_t *op, span_t seg, size_t *count);
static span_t cond_path(ctx_t *c, const hv__cond_op_t *op, span_t seg, span_t dt, int dt_level,
                        size_t *count) {
    span_t v = {NULL, 0};
    *count = 0;
    if (op->kind == HV__COND_COMP) {
        v = hv__v2_piece(c, dt, dt_level, op->a);
        if (op->b) v = hv__v2_piece(c, v, dt_level + 1, op->b);
        *count = hv__v2_span_valued(v) ? 1 : 0;
        return v;
    }
    if (op->kind != HV__COND_FIELD) return v;
    {
        /* The rows of one segment test the same few fields again and again (the 25 OBX-5
         * rows each test OBX-2): a field operand's value is found once per segment. */
        size_t h = ((uintptr_t)seg.p >> 3) ^ ((size_t)op->a * 31u) ^ ((size_t)op->b * 7u) ^
                   ((size_t)(unsigned char)op->seg[0] << 5) ^ ((size_t)(unsigned char)op->seg[2] << 9);
        struct hv__v2_opcache *e = &c->opcache[h & (HV_ARRAY_LEN(c->opcache) - 1)];
        if (e->gen == c->opgen && e->segp == seg.p && e->a == op->a && e->b == op->b &&
            memcmp(e->id, op->seg, 3) == 0) {
            *count = e->count;
            return e->v;
        }
        v = field_operand(c, op, seg, count);
        e->segp = seg.p;
        e->gen = c->opgen;
        memcpy(e->id, op->seg, 3);
        e->a = op->a;
        e->b = op->b;
        e->v = v;
        e->count = *count;
        return v;
    }
}

/* The value and repetition count of a FIELD operand, for cond_path. */
static span_t field_operand(ctx_t *c, const hv__cond_op_t *op, span_t seg, size_t *count) {
    span_t v = {NULL, 0}, f;
    *count = 0;
    if (seg.p == NULL || seg.len < 3 || memcmp(seg.p, op->seg, 3) != 0) {
        size_t i;
        seg.p = NULL;
        for (i = 0; i < c->msg.nsegs; i++) {
            if (memcmp(c->msg.segs[i].id, op->seg, 3) == 0) {
                seg.p = c->msg.segs[i].p;
                seg.len = c->msg.segs[i].len;
                break;
            }
        }
        if (seg.p == NULL) return v;
    }
    f = hv__v2_seg_field(c, seg, op->a);
    if (!hv__v2_span_valued(f)) return v;
    *count = hv_hl7v2_span_count(f, c->msg.delims.rep);
    if (hv_hl7v2_span_piece(f, c->msg.delims.rep, 0, &v) != HV_OK) v.p = NULL, v.len = 0;
    if (op->b) v = hv__v2_piece(c, v, 1, op->b);
    return v;
}

/* Case-insensitive (ASCII) equality of a span and a text of n bytes. */
static int val_eq(span_t s, const char *lit, size_t n) {
    size_t i;
    if (s.p == NULL || s.len != n) return 0;
    for (i = 0; i < n; i++) {
        unsigned char a = (unsigned char)s.p[i], b = (unsigned char)lit[i];
        if (a != b && (a | 0x20) != (b | 0x20)) return 0;
        if (a != b && !isalpha(a)) return 0;
    }
    return 1;
}

/*
 * The value of a guard's operand o0 (ops[0] of a program with a guard): a FIELD operand of
 * the segment being mapped is the one the rows before most likely tested too (the 25 OBX-5
 * rows each test OBX-2): it is kept in c->gmemo for the segment.
 */
static span_t guard_operand(ctx_t *c, const hv__cond_op_t *o0, span_t seg, span_t dt, int dt_level) {
    size_t count = 0;
    span_t s;
    if (o0->kind == HV__COND_FIELD && c->gmemo.segp == seg.p && seg.p != NULL && c->gmemo.a == o0->a &&
        c->gmemo.b == o0->b && c->gmemo.gen == c->opgen && memcmp(c->gmemo.id, o0->seg, 3) == 0)
        return c->gmemo.v;
    s = o0->kind == HV__COND_EMPTY ? (span_t){NULL, 0} : cond_path(c, o0, seg, dt, dt_level, &count);
    if (o0->kind == HV__COND_FIELD) {
        c->gmemo.segp = seg.p;
        c->gmemo.gen = c->opgen;
        memcpy(c->gmemo.id, o0->seg, 3);
        c->gmemo.a = o0->a;
        c->gmemo.b = o0->b;
        c->gmemo.v = s;
    }
    return s;
}

/*
 * Runs program cc from op `start`: 0 the whole program; else start is cc->guard, the guard
 * held, and the stack starts from its true value (find_guard).
 */
static int cond_run(ctx_t *c, const hv__cond_t *cc, span_t seg, span_t dt, int dt_level, size_t start) {
    val_t st[HV__COND_MAX_STACK];
    int sp = 0;
    size_t i;
    if (start > 0) {
        st[0].kind = 2;
        st[0].s.p = NULL;
        st[0].s.len = 0;
        st[0].n = 1;
        sp = 1;
    }
    for (i = start; i < cc->nops; i++) {
        const hv__cond_op_t *op = &cc->ops[i];
        if (i > 0) {
            /* Short-circuit (compiled jf/jt): the op before decided an AND or an OR; its
             * result, as that operator gives it, replaces the right operand's evaluation. */
            const hv__cond_op_t *prev = &cc->ops[i - 1];
            while (sp > 0 && ((prev->jf && st[sp - 1].n == 0) || (prev->jt && st[sp - 1].n != 0))) {
                size_t to = prev->jf && st[sp - 1].n == 0 ? prev->jf : prev->jt;
                st[sp - 1].n = st[sp - 1].n != 0;
                st[sp - 1].kind = 2;
                i = to; /* the op after the AND/OR */
                prev = &cc->ops[to - 1];
            }
            if (i >= cc->nops) break;
            op = &cc->ops[i];
        }
        val_t *x, *y;
        long r = 0, j, k;
        switch (op->kind) {
        case HV__COND_EMPTY:
        case HV__COND_FIELD:
        case HV__COND_COMP: {
            size_t count = 0;
            st[sp].s = op->kind == HV__COND_EMPTY ? (span_t){NULL, 0} : cond_path(c, op, seg, dt, dt_level, &count);
            st[sp].kind = 0;
            st[sp].n = (long)count;
            sp++;
            break;
        }
        case HV__COND_LIT:
            st[sp].kind = 0;
            st[sp].s.p = op->s;
            st[sp].s.len = op->n;
            st[sp].n = 0;
            sp++;
            break;
        case HV__COND_NUM:
            st[sp].kind = 1;
            st[sp].s.p = NULL;
            st[sp].s.len = 0;
            st[sp].n = op->num;
            sp++;
            break;
        case HV__COND_VALUED:
            st[sp - 1].n = hv__v2_span_valued(st[sp - 1].s);
            st[sp - 1].kind = 2;
            break;
        case HV__COND_NOT:
            st[sp - 1].n = !st[sp - 1].n;
            st[sp - 1].kind = 2;
            break;
        case HV__COND_COUNT:
            st[sp - 1].kind = 1; /* n already holds the repetition count */
            break;
        case HV__COND_LEN:
            st[sp - 1].n = (long)st[sp - 1].s.len;
            st[sp - 1].kind = 1;
            break;
        case HV__COND_IN:
            k = op->num;
            for (j = 0; j < k; j++) {
                y = &st[sp - 1 - j];
                if (y->s.p != NULL && val_eq(st[sp - 1 - k].s, y->s.p, y->s.len)) r = 1;
            }
            sp -= (int)k;
            st[sp - 1].kind = 2;
            st[sp - 1].n = r;
            break;
        default:
            x = &st[sp - 2];
            y = &st[sp - 1];
            switch (op->kind) {
            case HV__COND_OR: r = x->n || y->n; break;
            case HV__COND_AND: r = x->n && y->n; break;
            case HV__COND_EQ_TEXT: r = y->s.p != NULL && val_eq(x->s, y->s.p, y->s.len); break;
            case HV__COND_EQ: r = x->n == y->n; break;
            case HV__COND_GT: r = x->n > y->n; break;
            case HV__COND_GE: r = x->n >= y->n; break;
            case HV__COND_LT: r = x->n < y->n; break;
            default: r = x->n <= y->n; break;
            }
            sp--;
            st[sp - 1].kind = 2;
            st[sp - 1].n = r;
            break;
        }
    }
    return sp == 1 && st[0].n != 0;
}

/* True for an operand path op (EMPTY, FIELD or COMP). */
static int cond_is_path(const hv__cond_op_t *op) {
    return op->kind == HV__COND_EMPTY || op->kind == HV__COND_FIELD || op->kind == HV__COND_COMP;
}

/* The value of operand path op, as the loop pushes it. */
static span_t cond_operand(ctx_t *c, const hv__cond_op_t *op, span_t seg, span_t dt, int dt_level) {
    size_t count = 0;
    return op->kind == HV__COND_EMPTY ? (span_t){NULL, 0} : cond_path(c, op, seg, dt, dt_level, &count);
}

/*
 * Evaluates a row's condition: the program compiled at load (v2_cond.c), or — for a row
 * made by hand with a condition text and no program — the text compiled now. No
 * condition is true; one that could not be read is false.
 */
int hv__v2_cond_eval(ctx_t *c, const hv__cond_t *cc, const char *text, span_t seg, span_t dt, int dt_level) {
    if (cc == NULL) {
        if (text == NULL || text[0] == '\0') return 1;
        if (hv__map_cond_compile(c->arena, text, &cc) != HV_OK || cc == NULL) return cc == NULL;
    }
    if (cc->never) return 0;
    if (cc->guard) {
        /* The leading test (find_guard): false decides; true is the whole answer, or the
         * bottom of the stack the rest of the program starts from. */
        span_t s = guard_operand(c, &cc->ops[0], seg, dt, dt_level);
        size_t j;
        int r = 0;
        for (j = 1; j + 1 < cc->guard && !r; j++)
            r = cc->ops[j].s != NULL && val_eq(s, cc->ops[j].s, cc->ops[j].n);
        if (!r || cc->guard_all) return r;
        return cond_run(c, cc, seg, dt, dt_level, cc->guard);
    }
    /* The shapes most rows use, without the stack: "@X valued", "@X valued not" and
     * "@X 'text eq" (X a field or component path); the same results as the loop below. */
    if (cc->nops >= 2 && cc->nops <= 3 && (cc->ops[0].kind == HV__COND_EMPTY || cc->ops[0].kind == HV__COND_FIELD ||
                                                    cc->ops[0].kind == HV__COND_COMP)) {
        const hv__cond_op_t *o0 = &cc->ops[0], *o1 = &cc->ops[1];
        size_t count = 0;
        if (o1->kind == HV__COND_VALUED && (cc->nops == 2 || cc->ops[2].kind == HV__COND_NOT)) {
            span_t s = o0->kind == HV__COND_EMPTY ? (span_t){NULL, 0} : cond_path(c, o0, seg, dt, dt_level, &count);
            return (hv__v2_span_valued(s) != 0) != (cc->nops == 3);
        }
        if (cc->nops == 3 && o1->kind == HV__COND_LIT && cc->ops[2].kind == HV__COND_EQ_TEXT) {
            span_t s = o0->kind == HV__COND_EMPTY ? (span_t){NULL, 0} : cond_path(c, o0, seg, dt, dt_level, &count);
            return o1->s != NULL && val_eq(s, o1->s, o1->n);
        }
    }
    /* "@X valued [not] @Y valued [not] and|or" (the XCN, XPN, PL and SN rows' shape): the
     * loop's result, with its short-circuit, without the stack. */
    if (cc->nops >= 5 && cc->nops <= 7) {
        const hv__cond_op_t *o = cc->ops;
        size_t i = 0, pa, pb;
        int nota = 0, notb = 0;
        if (cond_is_path(&o[i]) && o[i + 1].kind == HV__COND_VALUED) {
            pa = i;
            i += 2;
            if (o[i].kind == HV__COND_NOT) nota = 1, i++;
            if (i + 2 < cc->nops && cond_is_path(&o[i]) && o[i + 1].kind == HV__COND_VALUED) {
                pb = i;
                i += 2;
                if (i < cc->nops && o[i].kind == HV__COND_NOT) notb = 1, i++;
                if (i + 1 == cc->nops && (o[i].kind == HV__COND_AND || o[i].kind == HV__COND_OR)) {
                    int x = (hv__v2_span_valued(cond_operand(c, &o[pa], seg, dt, dt_level)) != 0) != nota;
                    if (o[i].kind == HV__COND_AND ? !x : x) return x;
                    return (hv__v2_span_valued(cond_operand(c, &o[pb], seg, dt, dt_level)) != 0) != notb;
                }
            }
        }
    }
    return cond_run(c, cc, seg, dt, dt_level, 0);
}

/* ------------------------------------------------------------------------- */
/* Guard switches                                                            */
/* ------------------------------------------------------------------------- */

/*
 * The guard switches of one map's rows (hv__guard_sw_t): in each run, the rows whose
 * guards test the same FIELD operand as the run's first such row become members; a
 * literal is added once (byte-equal literals share a bit), and a row whose guard would need
 * more than HV__GUARD_SW_MAX literals in the switch stays out of it (its condition is
 * evaluated as before). A literal without text (never equal) gets no bit.
 */
int hv__map_guard_build(hv_arena_t *arena, hv__map_row_t *rows, size_t n) {
    size_t i = 0;
    while (i < n) {
        size_t end = i + (rows[i].run ? rows[i].run : 1), k;
        hv__guard_sw_t *sw = NULL;
        if (end > n) end = n;
        for (k = i; k < end; k++) {
            hv__map_row_t *r = &rows[k];
            const hv__cond_t *cc = r->cc;
            const hv__cond_op_t *o0;
            uint32_t mask = 0;
            size_t j;
            int fits = 1;
            r->gsw = NULL;
            r->gmask = 0;
            if (cc == NULL || cc->never || cc->guard == 0 || cc->ops[0].kind != HV__COND_FIELD) continue;
            o0 = &cc->ops[0];
            if (sw == NULL) {
                sw = hv_arena_alloc(arena, sizeof(*sw));
                if (sw == NULL) return HV_ENOMEM;
                memset(sw, 0, sizeof(*sw));
                sw->op = o0;
            } else if (memcmp(sw->op->seg, o0->seg, 3) != 0 || sw->op->a != o0->a || sw->op->b != o0->b) {
                continue;
            }
            for (j = 1; j + 1 < cc->guard; j++) {
                const hv__cond_op_t *l = &cc->ops[j];
                unsigned m;
                if (l->s == NULL) continue;
                for (m = 0; m < sw->n; m++)
                    if (sw->len[m] == l->n && memcmp(sw->lit[m], l->s, l->n) == 0) break;
                if (m == sw->n) {
                    if (sw->n == HV__GUARD_SW_MAX) {
                        fits = 0;
                        break;
                    }
                    sw->lit[m] = l->s;
                    sw->len[m] = l->n;
                    sw->n++;
                }
                mask |= (uint32_t)1 << m;
            }
            if (!fits) continue;
            r->gsw = sw;
            r->gmask = mask;
        }
        i = end;
    }
    return HV_OK;
}

/*
 * The literals of switch sw its operand equals (bit i: sw->lit[i]), compared as a guard
 * compares them (val_eq) with the operand read as a guard reads it (guard_operand).
 */
uint32_t hv__v2_guard_match(ctx_t *c, const hv__guard_sw_t *sw, span_t seg, span_t dt, int dt_level) {
    span_t s = guard_operand(c, sw->op, seg, dt, dt_level);
    uint32_t m = 0;
    unsigned i;
    if (s.p == NULL) return 0;
    /* val_eq needs the same length and first bytes equal but for bit 0x20 (an ASCII letter's
     * case): a literal failing either is not compared further. */
    for (i = 0; i < sw->n; i++)
        if (sw->len[i] == s.len &&
            (s.len == 0 || (((unsigned char)sw->lit[i][0] ^ (unsigned char)s.p[0]) & ~0x20u) == 0) &&
            val_eq(s, sw->lit[i], sw->len[i]))
            m |= (uint32_t)1 << i;
    return m;
}

/* The rest of program cc after its guard, which held (a member row of a guard switch whose
 * condition is more than the guard). */
int hv__v2_cond_rest(ctx_t *c, const hv__cond_t *cc, span_t seg, span_t dt, int dt_level) {
    return cond_run(c, cc, seg, dt, dt_level, cc->guard);
}
