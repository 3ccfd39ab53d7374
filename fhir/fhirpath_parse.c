/*
 * fhirpath_parse.c — the FHIRPath parser (FHIRPath N1 grammar, fhirpath.g4) and
 * printer: builds the syntax tree of an expression by precedence climbing, checks
 * function names and arities, and writes a tree back as canonical text.
 *
 * Operator precedence, weakest first (fhirpath.html#operator-precedence):
 *   implies | or xor | and | in contains | = ~ != !~ | < > <= >= | '|' | is as |
 *   + - & | * / div mod | unary + - | . and [] (postfix)
 * All binary operators associate to the left.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhirpath_int.h"

typedef struct parser {
    unsigned flags; /* HV_FHIRPATH_STRICT */
    hv__fp_lexer_t lx;
    hv__fp_token_t tok; /* the current (lookahead) token */
    hv_arena_t *arena;
    hv_error_t *err;
    unsigned depth, max_depth;
} parser_t;

static int syntax_error(parser_t *ps, const hv__fp_token_t *t, const char *fmt, const char *arg) {
    char msg[256];
    snprintf(msg, sizeof(msg), fmt, arg);
    hv_error_set(ps->err, HV_EPROTO, NULL, "syntax error at column %d: %s", t->col, msg);
    if (ps->err != NULL) {
        ps->err->line = t->line;
        ps->err->column = t->col;
    }
    return HV_EPROTO;
}

static const char *tok_desc(const hv__fp_token_t *t, char *buf, size_t n) {
    if (t->type == HV__FP_T_EOF) return "end of input";
    snprintf(buf, n, "'%.*s'", (int)(t->len > 40 ? 40 : t->len), t->p);
    return buf;
}

static int advance(parser_t *ps) {
    return hv__fp_lex_next(&ps->lx, &ps->tok);
}

static int is_op(const hv__fp_token_t *t, const char *s) {
    size_t n = strlen(s);
    return t->type == HV__FP_T_OP && t->len == n && memcmp(t->p, s, n) == 0;
}

static int is_word(const hv__fp_token_t *t, const char *s) {
    size_t n = strlen(s);
    return t->type == HV__FP_T_IDENT && t->len == n && memcmp(t->p, s, n) == 0;
}

static int expect_op(parser_t *ps, const char *s) {
    char b[64];
    if (!is_op(&ps->tok, s)) {
        char what[96];
        snprintf(what, sizeof(what), "expected '%s', found %%s", s);
        return syntax_error(ps, &ps->tok, what, tok_desc(&ps->tok, b, sizeof(b)));
    }
    return advance(ps);
}

/* Sets a node's name and, for a name that may be a type, its resolved type. */
static void set_name(hv__fp_node_t *n, const char *name) {
    n->name = name;
    n->namelen = strlen(name);
    if (n->op == HV__FP_N_IDENT || n->op == HV__FP_N_IS || n->op == HV__FP_N_AS) hv__fp_typeref_resolve(name, &n->tref);
}

static hv__fp_node_t *new_node(parser_t *ps, int op, const hv__fp_token_t *t) {
    hv__fp_node_t *n = hv_arena_calloc(ps->arena, sizeof(*n));
    if (n != NULL) {
        n->op = (uint8_t)op;
        n->col = t->col;
        n->line = t->line;
        n->fn = -1;
    }
    return n;
}

static int parse_expr(parser_t *ps, int minprec, hv__fp_node_t **out);

/* The binary operator of a token and its precedence; 0 if none. */
static int binop(const hv__fp_token_t *t, int *prec) {
    static const struct {
        const char *s;
        int op, prec, word;
    } ops[] = {
        {"implies", HV__FP_N_IMPLIES, 1, 1}, {"or", HV__FP_N_OR, 2, 1},
        {"xor", HV__FP_N_XOR, 2, 1},         {"and", HV__FP_N_AND, 3, 1},
        {"in", HV__FP_N_IN, 4, 1},           {"contains", HV__FP_N_CONTAINS, 4, 1},
        {"=", HV__FP_N_EQ, 5, 0},            {"~", HV__FP_N_EQUIV, 5, 0},
        {"!=", HV__FP_N_NE, 5, 0},           {"!~", HV__FP_N_NEQUIV, 5, 0},
        {"<", HV__FP_N_LT, 6, 0},            {">", HV__FP_N_GT, 6, 0},
        {"<=", HV__FP_N_LE, 6, 0},           {">=", HV__FP_N_GE, 6, 0},
        {"|", HV__FP_N_UNION, 7, 0},         {"is", HV__FP_N_IS, 8, 1},
        {"as", HV__FP_N_AS, 8, 1},           {"+", HV__FP_N_ADD, 9, 0},
        {"-", HV__FP_N_SUB, 9, 0},           {"&", HV__FP_N_CONCAT, 9, 0},
        {"*", HV__FP_N_MUL, 10, 0},          {"/", HV__FP_N_DIV, 10, 0},
        {"div", HV__FP_N_IDIV, 10, 1},       {"mod", HV__FP_N_MOD, 10, 1},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(ops); i++) {
        if (ops[i].word ? is_word(t, ops[i].s) : is_op(t, ops[i].s)) {
            *prec = ops[i].prec;
            return ops[i].op;
        }
    }
    return 0;
}

/* qualifiedIdentifier: identifier ('.' identifier)* — the type after is/as. */
static int parse_type_spec(parser_t *ps, char **out) {
    hv_buf_t b;
    int rc;
    char d[64];
    hv_buf_init(&b, 1024);
    for (;;) {
        if (ps->tok.type != HV__FP_T_IDENT && ps->tok.type != HV__FP_T_DELIM) {
            hv_buf_release(&b);
            return syntax_error(ps, &ps->tok, "expected a type name, found %s",
                                tok_desc(&ps->tok, d, sizeof(d)));
        }
        rc = hv_buf_puts(&b, ps->tok.val);
        if (rc == HV_OK) rc = advance(ps);
        if (rc != HV_OK) goto out;
        if (!is_op(&ps->tok, ".")) break;
        rc = hv_buf_putc(&b, '.');
        if (rc == HV_OK) rc = advance(ps);
        if (rc != HV_OK) goto out;
    }
    *out = hv_arena_strdup(ps->arena, b.data);
    rc = *out != NULL ? HV_OK : HV_ENOMEM;
out:
    hv_buf_release(&b);
    return rc;
}

/* The qualified name an is/as/ofType argument spells, or NULL. */
static char *type_arg_name(parser_t *ps, const hv__fp_node_t *a) {
    if (a->op == HV__FP_N_IDENT) return hv_arena_strdup(ps->arena, a->name);
    if (a->op == HV__FP_N_MEMBER && a->left != NULL && a->left->op == HV__FP_N_IDENT)
        return hv_arena_sprintf(ps->arena, "%s.%s", a->left->name, a->name);
    return NULL;
}

/* function: identifier '(' paramList? ')' — the '(' is the current token. */
static int parse_call(parser_t *ps, hv__fp_node_t *n, const hv__fp_token_t *nt) {
    hv__fp_node_t *args[16];
    int nargs = 0, rc;
    char d[64];
    n->op = HV__FP_N_FUNC;
    rc = advance(ps);
    if (rc != HV_OK) return rc;
    if (!is_op(&ps->tok, ")")) {
        for (;;) {
            if (nargs == (int)HV_ARRAY_LEN(args))
                return syntax_error(ps, &ps->tok, "too many arguments%s", "");
            rc = parse_expr(ps, 1, &args[nargs]);
            if (rc != HV_OK) return rc;
            nargs++;
            if (!is_op(&ps->tok, ",")) break;
            rc = advance(ps);
            if (rc != HV_OK) return rc;
        }
    }
    rc = expect_op(ps, ")");
    if (rc != HV_OK) return rc;
    n->fn = (int16_t)hv__fp_func_find(n->name);
    if (n->fn < 0) return syntax_error(ps, nt, "unknown function '%s'", n->name);
    if (nargs < hv__fp_funcs[n->fn].min_args || nargs > hv__fp_funcs[n->fn].max_args)
        return syntax_error(ps, nt, "wrong number of arguments to '%s'", n->name);
    n->nargs = (uint16_t)nargs;
    if (nargs > 0) {
        n->args = hv_arena_alloc(ps->arena, sizeof(*n->args) * (size_t)nargs);
        if (n->args == NULL) return HV_ENOMEM;
        memcpy(n->args, args, sizeof(*n->args) * (size_t)nargs);
    }
    if (hv__fp_func_takes_type(n->fn) && nargs == 1) {
        hv__fp_node_t *t = new_node(ps, HV__FP_N_IDENT, nt);
        if (t == NULL) return HV_ENOMEM;
        const char *tn = type_arg_name(ps, args[0]);
        if (tn == NULL) return syntax_error(ps, nt, "'%s' expects a type name", n->name);
        set_name(t, tn);
        n->right = t;
    }
    (void)d;
    return HV_OK;
}

static int calendar_word(const hv__fp_token_t *t) {
    static const char *w[] = {"year", "years", "month", "months", "week", "weeks", "day", "days",
                              "hour", "hours", "minute", "minutes", "second", "seconds",
                              "millisecond", "milliseconds"};
    for (size_t i = 0; i < HV_ARRAY_LEN(w); i++)
        if (is_word(t, w[i])) return 1;
    return 0;
}

static int parse_literal_number(parser_t *ps, hv__fp_node_t *n) {
    const hv__fp_token_t *t = &ps->tok;
    int rc;
    if (t->type == HV__FP_T_LONG || memchr(t->p, '.', t->len) == NULL) {
        char buf[32];
        char *end;
        long long v;
        if (t->len >= sizeof(buf)) return syntax_error(ps, t, "integer literal out of range%s", "");
        memcpy(buf, t->p, t->len);
        buf[t->len] = '\0';
        v = strtoll(buf, &end, 10);
        if (v > INT64_MAX / 10 || (t->type != HV__FP_T_LONG && v > 2147483647LL))
            return syntax_error(ps, t, "integer literal out of range%s", "");
        n->lit.kind = HV__FP_INT;
        n->lit.u.i = v;
    } else {
        n->lit.kind = HV__FP_DEC;
        if (hv__fp_dec_parse(t->p, t->len, &n->lit.u.d) != HV_OK)
            return syntax_error(ps, t, "decimal literal out of range%s", "");
    }
    rc = advance(ps);
    if (rc != HV_OK) return rc;
    /* quantity: number unit, the unit a 'string' (UCUM) or a calendar duration word. */
    if (ps->tok.type == HV__FP_T_STRING || calendar_word(&ps->tok)) {
        hv__fp_dec_t v = n->lit.kind == HV__FP_INT ? hv__fp_dec_from_int(n->lit.u.i) : n->lit.u.d;
        n->lit.kind = HV__FP_QTY;
        n->lit.u.q.v = v;
        n->lit.u.q.unit = ps->tok.val;
        rc = advance(ps);
    }
    return rc;
}

/* The type an expression is cast to (`x as T`, `x.as(T)`), or NULL. */
static const hv_fhir_type_t *cast_type(const hv__fp_node_t *n) {
    if (n->op == HV__FP_N_AS) return n->tref.fhir;
    if (n->op == HV__FP_N_FUNC && n->right != NULL && strcmp(n->name, "as") == 0) return n->right->tref.fhir;
    return NULL;
}

static int is_unordered(const hv__fp_node_t *n) {
    return n != NULL && n->op == HV__FP_N_FUNC && (strcmp(n->name, "children") == 0 || strcmp(n->name, "descendants") == 0);
}

/* Strict mode's static checks of a postfix node m (see HV_FHIRPATH_STRICT). */
static int strict_check(parser_t *ps, const hv__fp_node_t *m, const hv__fp_token_t *at) {
    const hv_fhir_type_t *t;
    if (!(ps->flags & HV_FHIRPATH_STRICT)) return HV_OK;
    if (m->op == HV__FP_N_MEMBER && (t = cast_type(m->left)) != NULL) {
        const hv_fhir_elem_t *e;
        const hv_fhir_type_t *chosen;
        int choice;
        if (hv__fp_model_child(hv_fhir_type_root(t), m->name, m->namelen, &e, &choice, &chosen) != HV_OK)
            return syntax_error(ps, at, "'%s' is not an element of the type cast to", m->name);
    }
    if ((m->op == HV__FP_N_INDEX || (m->op == HV__FP_N_FUNC &&
         (strcmp(m->name, "first") == 0 || strcmp(m->name, "last") == 0 || strcmp(m->name, "tail") == 0 ||
          strcmp(m->name, "skip") == 0 || strcmp(m->name, "take") == 0))) && is_unordered(m->left))
        return syntax_error(ps, at, "'%s' depends on an order that children()/descendants() do not have",
                            m->op == HV__FP_N_INDEX ? "[]" : m->name);
    return HV_OK;
}

/* term and invocation, then postfix '.' invocation and '[' expression ']'. */
static int parse_postfix(parser_t *ps, hv__fp_node_t **out) {
    hv__fp_node_t *n = NULL;
    hv__fp_token_t t = ps->tok;
    int rc;
    char d[64];

    n = new_node(ps, HV__FP_N_LIT, &t);
    if (n == NULL) return HV_ENOMEM;
    switch (t.type) {
    case HV__FP_T_NUMBER:
    case HV__FP_T_LONG:
        rc = parse_literal_number(ps, n);
        if (rc != HV_OK) return rc;
        break;
    case HV__FP_T_STRING:
        n->lit.kind = HV__FP_STR;
        n->lit.u.s.p = t.val;
        n->lit.u.s.len = strlen(t.val);
        rc = advance(ps);
        if (rc != HV_OK) return rc;
        break;
    case HV__FP_T_DATE:
    case HV__FP_T_DATETIME:
    case HV__FP_T_TIME: {
        int kind = t.type == HV__FP_T_DATE ? HV__FP_DATE
                   : t.type == HV__FP_T_DATETIME ? HV__FP_DATETIME : HV__FP_TIME;
        size_t skip = kind == HV__FP_TIME ? 2 : 1;
        n->lit.kind = (uint8_t)kind;
        if (hv__fp_dt_parse(t.p + skip, t.len - skip, kind, &n->lit.u.dt) != HV_OK)
            return syntax_error(ps, &t, "invalid date/time literal %s", tok_desc(&t, d, sizeof(d)));
        rc = advance(ps);
        if (rc != HV_OK) return rc;
        break;
    }
    case HV__FP_T_VAR:
        n->op = HV__FP_N_VAR;
        set_name(n, t.val);
        rc = advance(ps);
        if (rc != HV_OK) return rc;
        break;
    case HV__FP_T_DOLLAR:
        n->op = t.p[1] == 't' && t.p[2] == 'h' ? HV__FP_N_THIS
                : t.p[1] == 'i'                ? HV__FP_N_INDEXVAR
                                               : HV__FP_N_TOTAL;
        rc = advance(ps);
        if (rc != HV_OK) return rc;
        break;
    case HV__FP_T_IDENT:
    case HV__FP_T_DELIM:
        if (t.type == HV__FP_T_IDENT && (is_word(&t, "true") || is_word(&t, "false"))) {
            n->lit.kind = HV__FP_BOOL;
            n->lit.u.b = is_word(&t, "true");
            rc = advance(ps);
            if (rc != HV_OK) return rc;
            break;
        }
        n->op = HV__FP_N_IDENT;
        set_name(n, t.val);
        rc = advance(ps);
        if (rc != HV_OK) return rc;
        if (t.type == HV__FP_T_IDENT && is_op(&ps->tok, "(")) {
            rc = parse_call(ps, n, &t);
            if (rc != HV_OK) return rc;
        }
        break;
    case HV__FP_T_OP:
        if (is_op(&t, "(")) {
            /* Parentheses only group: the tree keeps no node for them. */
            rc = advance(ps);
            if (rc == HV_OK) rc = parse_expr(ps, 1, &n);
            if (rc == HV_OK) rc = expect_op(ps, ")");
            if (rc != HV_OK) return rc;
            break;
        }
        if (is_op(&t, "{")) {
            rc = advance(ps);
            if (rc == HV_OK) rc = expect_op(ps, "}");
            if (rc != HV_OK) return rc;
            n->op = HV__FP_N_EMPTY;
            break;
        }
        /* fall through */
    default:
        return syntax_error(ps, &t, "expected an expression, found %s", tok_desc(&t, d, sizeof(d)));
    }

    for (;;) {
        if (is_op(&ps->tok, ".")) {
            hv__fp_token_t nt;
            hv__fp_node_t *m;
            rc = advance(ps);
            if (rc != HV_OK) return rc;
            nt = ps->tok;
            if (nt.type != HV__FP_T_IDENT && nt.type != HV__FP_T_DELIM)
                return syntax_error(ps, &nt, "expected a name after '.', found %s",
                                    tok_desc(&nt, d, sizeof(d)));
            m = new_node(ps, HV__FP_N_MEMBER, &nt);
            if (m == NULL) return HV_ENOMEM;
            set_name(m, nt.val);
            m->left = n;
            rc = advance(ps);
            if (rc != HV_OK) return rc;
            if (nt.type == HV__FP_T_IDENT && is_op(&ps->tok, "(")) {
                rc = parse_call(ps, m, &nt);
                if (rc != HV_OK) return rc;
            }
            rc = strict_check(ps, m, &nt);
            if (rc != HV_OK) return rc;
            n = m;
        } else if (is_op(&ps->tok, "[")) {
            hv__fp_node_t *m = new_node(ps, HV__FP_N_INDEX, &ps->tok);
            if (m == NULL) return HV_ENOMEM;
            rc = advance(ps);
            if (rc == HV_OK) rc = parse_expr(ps, 1, &m->right);
            if (rc == HV_OK) rc = expect_op(ps, "]");
            if (rc != HV_OK) return rc;
            m->left = n;
            rc = strict_check(ps, m, &ps->tok);
            if (rc != HV_OK) return rc;
            n = m;
        } else {
            break;
        }
    }
    *out = n;
    return HV_OK;
}

static int parse_unary(parser_t *ps, hv__fp_node_t **out) {
    if (is_op(&ps->tok, "-") || is_op(&ps->tok, "+")) {
        hv__fp_node_t *n = new_node(ps, is_op(&ps->tok, "-") ? HV__FP_N_NEG : HV__FP_N_POS, &ps->tok);
        int rc;
        if (n == NULL) return HV_ENOMEM;
        if (++ps->depth > ps->max_depth) return syntax_error(ps, &ps->tok, "expression nested too deeply%s", "");
        rc = advance(ps);
        if (rc == HV_OK) rc = parse_unary(ps, &n->left);
        ps->depth--;
        if (rc != HV_OK) return rc;
        *out = n;
        return HV_OK;
    }
    return parse_postfix(ps, out);
}

static int parse_expr(parser_t *ps, int minprec, hv__fp_node_t **out) {
    hv__fp_node_t *left = NULL;
    int rc, prec, op;

    if (++ps->depth > ps->max_depth) return syntax_error(ps, &ps->tok, "expression nested too deeply%s", "");
    rc = parse_unary(ps, &left);
    if (rc != HV_OK) goto out;
    for (;;) {
        hv__fp_node_t *n;
        hv__fp_token_t t = ps->tok;
        op = binop(&t, &prec);
        if (op == 0 || prec < minprec) break;
        n = new_node(ps, op, &t);
        if (n == NULL) {
            rc = HV_ENOMEM;
            goto out;
        }
        rc = advance(ps);
        if (rc != HV_OK) goto out;
        n->left = left;
        if (op == HV__FP_N_IS || op == HV__FP_N_AS) {
            char *name = NULL;
            rc = parse_type_spec(ps, &name);
            if (rc != HV_OK) goto out;
            set_name(n, name);
        } else {
            rc = parse_expr(ps, prec + 1, &n->right);
            if (rc != HV_OK) goto out;
        }
        left = n;
    }
    *out = left;
out:
    ps->depth--;
    return rc;
}

int hv_fhirpath_compile(const char *expr, size_t len, const hv_fhirpath_limits_t *limits,
                        hv_fhirpath_t **out, hv_error_t *err) {
    hv_fhirpath_t *fp = NULL;
    parser_t ps;
    int rc;
    char d[64];

    if (expr == NULL || out == NULL) return HV_EINVAL;
    hv_error_clear(err);
    if (len == 0) len = strlen(expr);
    fp = hv_calloc(1, sizeof(*fp));
    if (fp == NULL) return HV_ENOMEM;
    fp->lim.max_expression = HV_FHIRPATH_MAX_EXPRESSION_DEFAULT;
    fp->lim.max_depth = HV_FHIRPATH_MAX_DEPTH_DEFAULT;
    fp->lim.max_items = HV_FHIRPATH_MAX_ITEMS_DEFAULT;
    if (limits != NULL) {
        if (limits->max_expression > 0) fp->lim.max_expression = limits->max_expression;
        if (limits->max_depth > 0) fp->lim.max_depth = limits->max_depth;
        if (limits->max_items > 0) fp->lim.max_items = limits->max_items;
        fp->lim.flags = limits->flags;
    }
    if (len > fp->lim.max_expression) {
        hv_error_set(err, HV_ETOOBIG, NULL, "expression longer than %zu bytes", fp->lim.max_expression);
        rc = HV_ETOOBIG;
        goto out;
    }
    fp->arena = hv_arena_new(len * 8 < 1024 ? 1024 : len * 8);
    if (fp->arena == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    memset(&ps, 0, sizeof(ps));
    ps.arena = fp->arena;
    ps.err = err;
    ps.max_depth = fp->lim.max_depth;
    ps.flags = fp->lim.flags;
    ps.lx.src = ps.lx.cur = ps.lx.line_start = expr;
    ps.lx.end = expr + len;
    ps.lx.line = 1;
    ps.lx.arena = fp->arena;
    ps.lx.err = err;
    rc = advance(&ps);
    if (rc != HV_OK) goto out;
    rc = parse_expr(&ps, 1, &fp->root);
    if (rc != HV_OK) goto out;
    if (ps.tok.type != HV__FP_T_EOF) {
        rc = syntax_error(&ps, &ps.tok, "unexpected %s after the expression", tok_desc(&ps.tok, d, sizeof(d)));
        goto out;
    }
    *out = fp;
    fp = NULL;
out:
    if (rc == HV_ENOMEM) hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
    hv_fhirpath_free(fp);
    return rc;
}

void hv_fhirpath_free(hv_fhirpath_t *fp) {
    if (fp == NULL) return;
    hv_arena_free(fp->arena);
    hv_free(fp);
}

/* ------------------------------------------------------------------------- */
/* Printer                                                                   */
/* ------------------------------------------------------------------------- */

static const char *op_text(int op) {
    switch (op) {
    case HV__FP_N_MUL: return "*";
    case HV__FP_N_DIV: return "/";
    case HV__FP_N_IDIV: return "div";
    case HV__FP_N_MOD: return "mod";
    case HV__FP_N_ADD: return "+";
    case HV__FP_N_SUB: return "-";
    case HV__FP_N_CONCAT: return "&";
    case HV__FP_N_UNION: return "|";
    case HV__FP_N_LT: return "<";
    case HV__FP_N_GT: return ">";
    case HV__FP_N_LE: return "<=";
    case HV__FP_N_GE: return ">=";
    case HV__FP_N_EQ: return "=";
    case HV__FP_N_EQUIV: return "~";
    case HV__FP_N_NE: return "!=";
    case HV__FP_N_NEQUIV: return "!~";
    case HV__FP_N_IN: return "in";
    case HV__FP_N_CONTAINS: return "contains";
    case HV__FP_N_AND: return "and";
    case HV__FP_N_OR: return "or";
    case HV__FP_N_XOR: return "xor";
    case HV__FP_N_IMPLIES: return "implies";
    case HV__FP_N_IS: return "is";
    case HV__FP_N_AS: return "as";
    default: return "?";
    }
}

/* Writes s as a quoted literal (q is ' or `) with FHIRPath escapes. */
static int put_quoted(hv_buf_t *b, const char *s, size_t n, char q) {
    int rc = hv_buf_putc(b, q);
    for (size_t i = 0; i < n && rc == HV_OK; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == (unsigned char)q || ch == '\\') {
            rc = hv_buf_putc(b, '\\');
            if (rc == HV_OK) rc = hv_buf_putc(b, (char)ch);
        } else if (ch == '\n') {
            rc = hv_buf_puts(b, "\\n");
        } else if (ch == '\r') {
            rc = hv_buf_puts(b, "\\r");
        } else if (ch == '\t') {
            rc = hv_buf_puts(b, "\\t");
        } else if (ch == '\f') {
            rc = hv_buf_puts(b, "\\f");
        } else if (ch < 0x20) {
            rc = hv_buf_printf(b, "\\u%04x", ch);
        } else {
            rc = hv_buf_putc(b, (char)ch);
        }
    }
    if (rc == HV_OK) rc = hv_buf_putc(b, q);
    return rc;
}

/* Identifiers are printed delimited so that keywords and odd names survive a re-parse. */
static int put_ident(hv_buf_t *b, const char *s) {
    return put_quoted(b, s, strlen(s), '`');
}

static int print_node(const hv__fp_node_t *n, hv_buf_t *b);

/* The input of a postfix operator: a unary operator there needs parentheses. */
static int print_left(const hv__fp_node_t *n, hv_buf_t *b) {
    int rc;
    if (n->op != HV__FP_N_NEG && n->op != HV__FP_N_POS) return print_node(n, b);
    rc = hv_buf_putc(b, '(');
    if (rc == HV_OK) rc = print_node(n, b);
    if (rc == HV_OK) rc = hv_buf_putc(b, ')');
    return rc;
}

static int print_node(const hv__fp_node_t *n, hv_buf_t *b) {
    int rc = HV_OK;
    char tmp[64];
    switch (n->op) {
    case HV__FP_N_LIT:
        switch (n->lit.kind) {
        case HV__FP_BOOL: return hv_buf_puts(b, n->lit.u.b ? "true" : "false");
        case HV__FP_INT:
            return hv_buf_printf(b, "%lld%s", (long long)n->lit.u.i, n->lit.u.i > 2147483647LL ? "L" : "");
        case HV__FP_DEC:
            hv__fp_dec_str(n->lit.u.d, tmp, sizeof(tmp));
            if (strchr(tmp, '.') == NULL) strcat(tmp, ".0");
            return hv_buf_puts(b, tmp);
        case HV__FP_STR: return put_quoted(b, n->lit.u.s.p, n->lit.u.s.len, '\'');
        case HV__FP_QTY:
            hv__fp_dec_str(n->lit.u.q.v, tmp, sizeof(tmp));
            rc = hv_buf_printf(b, "%s ", tmp);
            if (rc == HV_OK) rc = put_quoted(b, n->lit.u.q.unit, strlen(n->lit.u.q.unit), '\'');
            return rc;
        case HV__FP_DATE:
        case HV__FP_DATETIME:
        case HV__FP_TIME:
            /* A DateTime above hour precision keeps its 'T' so that it reads back as one. */
            hv__fp_dt_str(&n->lit.u.dt, n->lit.kind, tmp, sizeof(tmp));
            return hv_buf_printf(b, "@%s%s%s", n->lit.kind == HV__FP_TIME ? "T" : "", tmp,
                                 n->lit.kind == HV__FP_DATETIME && n->lit.u.dt.prec < HV__FP_P_HOUR ? "T" : "");
        default: return HV_EINVAL;
        }
    case HV__FP_N_EMPTY: return hv_buf_puts(b, "{}");
    case HV__FP_N_THIS: return hv_buf_puts(b, "$this");
    case HV__FP_N_INDEXVAR: return hv_buf_puts(b, "$index");
    case HV__FP_N_TOTAL: return hv_buf_puts(b, "$total");
    case HV__FP_N_VAR:
        rc = hv_buf_putc(b, '%');
        if (rc == HV_OK) rc = put_ident(b, n->name);
        return rc;
    case HV__FP_N_IDENT: return put_ident(b, n->name);
    case HV__FP_N_MEMBER:
    case HV__FP_N_FUNC:
        if (n->left != NULL) {
            rc = print_left(n->left, b);
            if (rc == HV_OK) rc = hv_buf_putc(b, '.');
        }
        if (rc != HV_OK) return rc;
        if (n->op == HV__FP_N_MEMBER) return put_ident(b, n->name);
        rc = hv_buf_printf(b, "%s(", n->name);
        for (unsigned i = 0; i < n->nargs && rc == HV_OK; i++) {
            if (i > 0) rc = hv_buf_puts(b, ", ");
            if (rc == HV_OK) rc = print_node(n->args[i], b);
        }
        if (rc == HV_OK) rc = hv_buf_putc(b, ')');
        return rc;
    case HV__FP_N_INDEX:
        rc = print_left(n->left, b);
        if (rc == HV_OK) rc = hv_buf_putc(b, '[');
        if (rc == HV_OK) rc = print_node(n->right, b);
        if (rc == HV_OK) rc = hv_buf_putc(b, ']');
        return rc;
    case HV__FP_N_NEG:
    case HV__FP_N_POS:
        rc = hv_buf_puts(b, n->op == HV__FP_N_NEG ? "-(" : "+(");
        if (rc == HV_OK) rc = print_node(n->left, b);
        if (rc == HV_OK) rc = hv_buf_putc(b, ')');
        return rc;
    case HV__FP_N_IS:
    case HV__FP_N_AS: {
        const char *p = n->name;
        rc = hv_buf_putc(b, '(');
        if (rc == HV_OK) rc = print_node(n->left, b);
        if (rc == HV_OK) rc = hv_buf_printf(b, " %s ", op_text(n->op));
        /* each part of the qualified name delimited */
        while (rc == HV_OK) {
            const char *dot = strchr(p, '.');
            size_t l = dot != NULL ? (size_t)(dot - p) : strlen(p);
            rc = put_quoted(b, p, l, '`');
            if (dot == NULL || rc != HV_OK) break;
            rc = hv_buf_putc(b, '.');
            p = dot + 1;
        }
        if (rc == HV_OK) rc = hv_buf_putc(b, ')');
        return rc;
    }
    default:
        rc = hv_buf_putc(b, '(');
        if (rc == HV_OK) rc = print_node(n->left, b);
        if (rc == HV_OK) rc = hv_buf_printf(b, " %s ", op_text(n->op));
        if (rc == HV_OK) rc = print_node(n->right, b);
        if (rc == HV_OK) rc = hv_buf_putc(b, ')');
        return rc;
    }
}

int hv_fhirpath_print(const hv_fhirpath_t *fp, hv_buf_t *out) {
    if (fp == NULL || fp->root == NULL) return HV_EINVAL;
    return print_node(fp->root, out);
}
