/*
 * v2_cond.c — compiles the postfix conditions of the HL7 v2 → FHIR mapping tables
 * (docs/mappings.md, "CONDITION") into a program of operations once, when the tables are
 * loaded, so that mapping a message does not tokenize, parse numbers or decode literals
 * per row and per message. v2_to_fhir.c runs the program against the message.
 *
 * The language: operands `@SEG-F[.C]` (a field of the segment, or of the first segment
 * with that id), `@.C[.S]` (a component of the value being mapped), `'text` (%XX escapes),
 * `#n`; operators `valued not count len gt ge lt le eq or and in<k>`. A text the compiler
 * cannot read entirely — `?` (the generator could not read the table's condition), an
 * unknown operator, an operator without its operands, a stack deeper than HV__COND_MAX_STACK —
 * compiles to a program that is never true, as the text interpreter this replaces did.
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "mappings/mappings_int.h"

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

static const hv__cond_t never = {1, 0, NULL};

/* Kinds of stack values, known when compiling: 0 text, 1 number, 2 boolean. */
int hv__map_cond_compile(hv_arena_t *arena, const char *text, const hv__cond_t **cc) {
    hv__cond_op_t ops[MAX_OPS];
    unsigned char kind[HV__COND_MAX_STACK];
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
            kind[sp++] = 0;
        } else if (p[0] == '\'') {
            char *buf = hv_arena_alloc(arena, n + 1);
            if (buf == NULL) return HV_ENOMEM;
            op->kind = HV__COND_LIT;
            op->n = lit_decode(p, n, buf, n + 1);
            op->s = buf;
            kind[sp++] = 0;
        } else if (p[0] == '#') {
            op->kind = HV__COND_NUM;
            op->num = strtol(p + 1, NULL, 10);
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
            op->kind = HV__COND_OR, sp--, kind[sp - 1] = 2;
        } else if (n == 3 && memcmp(p, "and", 3) == 0 && sp >= 2) {
            op->kind = HV__COND_AND, sp--, kind[sp - 1] = 2;
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
    *cc = out;
    return HV_OK;
}
