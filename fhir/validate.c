/*
 * validate.c — validation of a FHIR R4 resource (its JSON tree) against the base
 * specification (FHIR R4 validation.html): structure (unknown elements, JSON
 * types and array-ness, json.html), cardinality (elementdefinition.html min/max),
 * primitive formats (the regexes of datatypes.html, as POSIX extended regular
 * expressions from libc, regcomp/regexec), required bindings
 * (terminologies.html#required, for value sets the model inlines), the invariants
 * (FHIRPath, through invariants.c) and profiles (profile.c).
 *
 * One walk over the tree does all of it. The issues become an OperationOutcome
 * (operationoutcome.html) whose issue.expression holds the element path in
 * FHIRPath simple form, "Patient.contact[0].name.given[1]".
 */
#include "config.h"

#include <json-c/json.h>
#include <libxml/parser.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "fhir/fhir_int.h"
#include "fhir/validate_int.h"

/* ---- format regexes, compiled once per process -------------------------------- */

static pthread_once_t rx_once = PTHREAD_ONCE_INIT;
static regex_t *rx_table; /* one per type id; valid where rx_ok[id] */
static unsigned char *rx_ok;
/* Per type id: how its format is checked (FMT_*), resolved once along the base chain. */
static unsigned char *fmt_kind;
static const hv_fhir_type_t **fmt_type;
enum {
    FMT_NONE = 0,
    FMT_REGEX,
    FMT_TEXT,
    FMT_BASE64,
    FMT_URI,
    FMT_CODE,
    FMT_ID,
    FMT_DATE,
    FMT_DATETIME,
    FMT_INSTANT,
    FMT_TIME,
    FMT_DECIMAL,
    FMT_INTEGER,
    FMT_UNSIGNED,
    FMT_POSITIVE
};

static const hv_fhir_type_t *format_type(const hv_fhir_type_t *t);

/* Byte classes of the hand-written uri and code formats (set by rx_compile): B_SPACE is \s
 * of the regexes (space, \t \n \v \f \r), B_NUL the byte 0. One load a byte instead of a
 * chain of comparisons: every uri and code of every resource is scanned. */
enum { B_SPACE = 1, B_NUL = 2 };
static unsigned char byte_class[256];

/* The formats checked by hand, by the name of the type that carries the format
 * (format_type); any other type with a regex is checked by regexec (FMT_REGEX). */
static const struct {
    const char *name;
    unsigned char kind;
} hand_formats[] = {
    {"uri", FMT_URI},         {"url", FMT_URI},          {"canonical", FMT_URI},     {"code", FMT_CODE},
    {"id", FMT_ID},           {"date", FMT_DATE},        {"dateTime", FMT_DATETIME}, {"instant", FMT_INSTANT},
    {"time", FMT_TIME},       {"decimal", FMT_DECIMAL},  {"integer", FMT_INTEGER},   {"unsignedInt", FMT_UNSIGNED},
    {"positiveInt", FMT_POSITIVE},
};

static unsigned char format_kind(const char *fname) {
    for (size_t k = 0; k < HV_ARRAY_LEN(hand_formats); k++)
        if (strcmp(fname, hand_formats[k].name) == 0)
            return hand_formats[k].kind;
    return FMT_REGEX;
}

static void rx_compile(void) {
    size_t n = hv_fhir_type_count();
    byte_class[0] = B_NUL;
    for (const char *sp = " \t\n\v\f\r"; *sp != '\0'; sp++)
        byte_class[(unsigned char)*sp] = B_SPACE;
    rx_table = hv_calloc(n, sizeof(regex_t));
    rx_ok = hv_calloc(n, 1);
    if (rx_table == NULL || rx_ok == NULL) {
        hv_free(rx_table);
        hv_free(rx_ok);
        rx_table = NULL;
        rx_ok = NULL;
        return;
    }
    fmt_kind = hv_calloc(n, 1);
    fmt_type = hv_calloc(n, sizeof(*fmt_type));
    for (size_t i = 0; i < n; i++) {
        const hv_fhir_type_t *t = hv_fhir_type_at(i);
        if (t->posix != 0 && regcomp(&rx_table[i], HV__S(t->posix), REG_EXTENDED | REG_NOSUB) == 0)
            rx_ok[i] = 1;
    }
    for (size_t i = 0; fmt_kind != NULL && fmt_type != NULL && i < n; i++) {
        const hv_fhir_type_t *ft = format_type(hv_fhir_type_at(i));
        const char *fname = ft != NULL ? hv_fhir_type_name(ft) : "";
        fmt_type[i] = ft;
        if (ft == NULL)
            fmt_kind[i] = FMT_NONE;
        else if (strcmp(fname, "base64Binary") == 0)
            fmt_kind[i] = FMT_BASE64;
        else if (ft->posix == 0)
            fmt_kind[i] = FMT_TEXT;
        else
            fmt_kind[i] = format_kind(fname);
    }
}

/* The nearest type in t's base chain that has a format, or NULL. */
static const hv_fhir_type_t *format_type(const hv_fhir_type_t *t) {
    for (; t != NULL && hv_fhir_type_kind(t) == HV_FHIR_KIND_PRIMITIVE; t = hv_fhir_type_base(t))
        if (t->regex != 0)
            return t;
    return NULL;
}

/* base64Binary checked by hand: the POSIX engine backtracks badly on megabyte inputs. */
static int base64_ok(const char *s, size_t n) {
    size_t count = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
            continue;
        if (c == '=') {
            pad++;
        } else if (pad > 0 || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                (c >= '0' && c <= '9') || c == '+' || c == '/')) {
            return 0;
        }
        count++;
    }
    return count > 0 && count % 4 == 0 && pad <= 2;
}

/* string and markdown ("[ \r\n\t\S]+"): non-empty, no control characters but TAB CR LF. */
static int text_ok(const char *s, size_t n) {
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 && c != '\t' && c != '\r' && c != '\n')
            return 0;
    }
    return 1;
}

/* Two digits at s forming a number in [lo, hi]. */
static int two(const char *s, int lo, int hi) {
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return 0;
    int v = (s[0] - '0') * 10 + (s[1] - '0');
    return v >= lo && v <= hi;
}

/* hh:mm:ss(.f+)? with hh 00-23, mm 00-59, ss 00-60; returns the length matched or 0. */
static size_t time_part(const char *s, size_t n) {
    size_t i = 8;
    if (n < 8 || !two(s, 0, 23) || s[2] != ':' || !two(s + 3, 0, 59) || s[5] != ':' ||
        !two(s + 6, 0, 60))
        return 0;
    if (i < n && s[i] == '.') {
        size_t d = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    return i;
}

/*
 * The date, dateTime, instant and time regexes of datatypes.html, by hand (they are
 * checked on every date of every resource): YYYY(-MM(-DD(Thh:mm:ss(.f+)?TZ)?)?)? with
 * year 0001-9999, TZ = Z | (+|-)hh:mm up to 13:59, or 14:00. mode: 0 date, 1 dateTime,
 * 2 instant, 3 time.
 */
static int datetime_ok(const char *s, size_t n, int mode) {
    size_t i;
    if (mode == 3)
        return time_part(s, n) == n && n > 0;
    if (n < 4 || !two(s, 0, 99) || !two(s + 2, 0, 99) || memcmp(s, "0000", 4) == 0)
        return 0;
    if (n == 4)
        return mode != 2;
    if (s[4] != '-' || n < 7 || !two(s + 5, 1, 12))
        return 0;
    if (n == 7)
        return mode != 2;
    if (s[7] != '-' || n < 10 || !two(s + 8, 1, 31))
        return 0;
    if (n == 10)
        return mode != 2;
    if (mode == 0 || s[10] != 'T')
        return 0;
    i = time_part(s + 11, n - 11);
    if (i == 0)
        return 0;
    i += 11;
    if (i == n)
        return 0; /* a time needs a zone */
    if (s[i] == 'Z')
        return i + 1 == n;
    if ((s[i] != '+' && s[i] != '-') || n - i != 6 || s[i + 3] != ':')
        return 0;
    if (two(s + i + 1, 0, 13) && two(s + i + 4, 0, 59))
        return 1;
    return memcmp(s + i + 1, "14:00", 5) == 0;
}

/*
 * The number regexes of datatypes.html, by hand (every quantity, count and sequence number
 * is one): integer -?([0]|([1-9][0-9]*)), unsignedInt [0]|([1-9][0-9]*), positiveInt
 * [1-9][0-9]*, decimal -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, each matching all
 * n bytes of s. kind is FMT_DECIMAL, FMT_INTEGER, FMT_UNSIGNED or FMT_POSITIVE.
 */
static int number_ok(const char *s, size_t n, int kind) {
    size_t i = 0, d;
    if (i < n && s[i] == '-' && (kind == FMT_DECIMAL || kind == FMT_INTEGER))
        i++;
    if (i < n && s[i] == '0' && kind != FMT_POSITIVE) {
        i++;
    } else {
        if (i == n || s[i] < '1' || s[i] > '9')
            return 0;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
    }
    if (kind != FMT_DECIMAL)
        return i == n;
    if (i < n && s[i] == '.') {
        d = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        d = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == d)
            return 0;
    }
    return i == n;
}

/* Returns 1 when the string value s of primitive type t matches its format. */
int hv__fhir_format_ok(const hv_fhir_type_t *t, const char *s, size_t n) {
    pthread_once(&rx_once, rx_compile);
    if (fmt_kind == NULL || fmt_type == NULL)
        return 1;
    size_t tid = hv_fhir_type_id(t);
    const hv_fhir_type_t *ft = fmt_type[tid];
    int kind = fmt_kind[tid];
    if (kind == FMT_NONE)
        return 1;
    if (kind == FMT_BASE64)
        return base64_ok(s, n);
    if (kind == FMT_TEXT)
        return text_ok(s, n);
    /* Hand-written equivalents of the simplest regexes (hot: every uri, code and id). */
    if (kind == FMT_URI) {
        /* \S* */
        for (size_t i = 0; i < n; i++)
            if (byte_class[(unsigned char)s[i]] & (B_SPACE | B_NUL))
                return 0;
        return 1;
    }
    if (kind == FMT_CODE) {
        /* [^\s]+(\s[^\s]+)*: non-empty, single spaces between non-space runs */
        if (n == 0)
            return 0;
        for (size_t i = 0; i < n; i++) {
            int b = byte_class[(unsigned char)s[i]];
            if (b == B_NUL || (b == B_SPACE && (i == 0 || i == n - 1 ||
                                                byte_class[(unsigned char)s[i + 1]] == B_SPACE)))
                return 0;
        }
        return 1;
    }
    if (kind >= FMT_DATE && kind <= FMT_TIME)
        return strlen(s) == n && datetime_ok(s, n, kind - FMT_DATE);
    if (kind >= FMT_DECIMAL && kind <= FMT_POSITIVE)
        return number_ok(s, n, kind);
    if (kind == FMT_ID)
        return hv__fhir_id_valid_n(s, n);
    if (strlen(s) != n)
        return 0; /* an embedded NUL */
    size_t id = hv_fhir_type_id(ft);
    if (rx_table == NULL || !rx_ok[id])
        return 1;
    return regexec(&rx_table[id], s, 0, NULL, 0) == 0;
}

/* ---- issues ----------------------------------------------------------------------- */

/* Appends the steps from the outermost down to s, each as hv__fhir_path_push would have when
 * the walk entered it, so that the text (and its truncation past the buffer) is what an eager
 * push and pop per element gave. The recursion is as deep as the walk that made the steps. */
static void render_steps(hv__fhir_path_t *p, const hv__fhir_step_t *s) {
    if (s == NULL)
        return;
    render_steps(p, s->up);
    hv__fhir_path_push(p, s->name, s->index);
}

/* The current path: c->path alone outside the walk, else rendered into *tmp. */
static const hv__fhir_path_t *current_path(const hv__fhir_vctx_t *c, hv__fhir_path_t *tmp) {
    if (c->step == NULL)
        return &c->path;
    memcpy(tmp->buf, c->path.buf, c->path.len + 1);
    tmp->len = c->path.len;
    render_steps(tmp, c->step);
    return tmp;
}

/* Enters step s (name[index], index -1 for none) under the current one; step_out leaves it. */
static inline void step_in(hv__fhir_vctx_t *c, hv__fhir_step_t *s, const char *name, long index) {
    s->up = c->step;
    s->name = name;
    s->index = index;
    c->step = s;
}

static inline void step_out(hv__fhir_vctx_t *c, const hv__fhir_step_t *s) {
    c->step = s->up;
}

/* Adds member key (a string literal, new to o) with value v, which o takes: json-c neither
 * copies such a key nor looks for an earlier one (an issue has up to five members, and a
 * resource of the population one issue or more). */
static void put(struct json_object *o, const char *key, struct json_object *v) {
    if (o == NULL || json_object_object_add_ex(o, key, v,
                                               JSON_C_OBJECT_ADD_KEY_IS_NEW |
                                                   JSON_C_OBJECT_KEY_IS_CONSTANT) != 0)
        json_object_put(v);
}

static void put_str(struct json_object *o, const char *key, const char *s) {
    put(o, key, json_object_new_string(s));
}

void hv__fhir_issue(hv__fhir_vctx_t *c, const char *severity, const char *code, const char *key,
                    const char *fmt, ...) {
    hv__fhir_path_t tmp;
    int is_error = strcmp(severity, "error") == 0 || strcmp(severity, "fatal") == 0;
    if (is_error)
        c->errors++;
    if (c->err != NULL) {
        /* First-error mode (the parser's structural check). */
        if (is_error && c->err->code == 0) {
            char msg[400];
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(msg, sizeof(msg), fmt, ap);
            va_end(ap);
            hv_error_set(c->err, HV_EINVAL, current_path(c, &tmp)->buf, "%s", msg);
        }
        return;
    }
    if (c->issues == NULL || c->nissues >= c->max_issues) {
        c->dropped++;
        return;
    }
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct json_object *iss = json_object_new_object();
    if (iss == NULL) {
        c->oom = 1;
        return;
    }
    put_str(iss, "severity", severity);
    put_str(iss, "code", code);
    if (key != NULL) {
        struct json_object *details = json_object_new_object();
        struct json_object *codings = json_object_new_array();
        struct json_object *coding = json_object_new_object();
        put_str(coding, "system", "urn:holovitals:fhir:constraint-key");
        put_str(coding, "code", key);
        json_object_array_add(codings, coding);
        put(details, "coding", codings);
        put(iss, "details", details);
    }
    put_str(iss, "diagnostics", msg);
    struct json_object *expr = json_object_new_array();
    const hv__fhir_path_t *path = current_path(c, &tmp);
    json_object_array_add(expr, json_object_new_string(path->len > 0 ? path->buf : "?"));
    put(iss, "expression", expr);
    json_object_array_add(c->issues, iss);
    c->nissues++;
}

/* ---- the walk ------------------------------------------------------------------- */

static const char *json_type_word(struct json_object *v) {
    switch (json_object_get_type(v)) {
    case json_type_null:
        return "null";
    case json_type_boolean:
        return "a boolean";
    case json_type_int:
    case json_type_double:
        return "a number";
    case json_type_string:
        return "a string";
    case json_type_array:
        return "an array";
    case json_type_object:
        return "an object";
    }
    return "?";
}

/* The JSON representation of a primitive type's value (json.html §Primitive types). */
enum { JP_STRING, JP_BOOL, JP_INTEGER, JP_DECIMAL };

static int json_kind_slow(const hv_fhir_type_t *t) {
    const hv_fhir_type_t *sys = hv_fhir_type_system(t);
    const char *n = sys != NULL ? hv_fhir_type_name(sys) : "";
    if (strcmp(n, "System.Boolean") == 0)
        return JP_BOOL;
    if (strcmp(n, "System.Integer") == 0)
        return JP_INTEGER;
    if (strcmp(n, "System.Decimal") == 0)
        return JP_DECIMAL;
    return JP_STRING;
}

/* Per type id, resolved once: the JSON kind (JP_*), and the types bindings look at. */
static pthread_once_t kinds_once = PTHREAD_ONCE_INIT;
static unsigned char *json_kinds;
static const hv_fhir_type_t *type_code, *type_coding, *type_cc;

static void kinds_init(void) {
    size_t n = hv_fhir_type_count();
    json_kinds = hv_calloc(n, 1);
    for (size_t i = 0; json_kinds != NULL && i < n; i++)
        json_kinds[i] = (unsigned char)json_kind_slow(hv_fhir_type_at(i));
    type_code = hv_fhir_type_find("code", 4);
    type_coding = hv_fhir_type_find("Coding", 6);
    type_cc = hv_fhir_type_find("CodeableConcept", 15);
}

static int json_kind_of(const hv_fhir_type_t *t) {
    pthread_once(&kinds_once, kinds_init);
    return json_kinds != NULL ? json_kinds[hv_fhir_type_id(t)] : json_kind_slow(t);
}

static void check_binding(hv__fhir_vctx_t *c, const hv_fhir_elem_t *e, const hv_fhir_type_t *t,
                          struct json_object *v);

/* RFC 8259 §6: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? (also the FHIR decimal regex). */
static int json_number_ok(const char *p) {
    if (p == NULL)
        return 0;
    if (*p == '-')
        p++;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (*p >= '0' && *p <= '9')
            p++;
    else
        return 0;
    if (*p == '.') {
        p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-')
            p++;
        if (!(*p >= '0' && *p <= '9'))
            return 0;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '\0';
}

static void check_primitive(hv__fhir_vctx_t *c, const hv_fhir_elem_t *e, const hv_fhir_type_t *t,
                            struct json_object *v) {
    int kind = json_kind_of(t);
    enum json_type jt = json_object_get_type(v);
    int ok = (kind == JP_BOOL && jt == json_type_boolean) ||
             (kind == JP_INTEGER && jt == json_type_int) ||
             (kind == JP_DECIMAL && (jt == json_type_int || jt == json_type_double)) ||
             (kind == JP_STRING && jt == json_type_string);
    if (!ok) {
        hv__fhir_issue(c, "error", "structure", NULL, "Element %s of type %s must be %s, not %s",
                       hv_fhir_elem_path(e), hv_fhir_type_name(t),
                       kind == JP_BOOL     ? "a JSON boolean"
                       : kind == JP_STRING ? "a JSON string"
                                           : "a JSON number",
                       json_type_word(v));
        return;
    }
    if (jt == json_type_double && !json_number_ok(hv_fhir_json_number_text(v))) {
        /* json-c takes "040e25" even in strict mode; RFC 8259 §6 does not. */
        hv__fhir_issue(c, "error", "structure", NULL, "'%s' is not a valid JSON number",
                       hv_fhir_json_number_text(v));
        return;
    }
    if (c->structure_only)
        return;
    if (!(c->flags & HV_FHIR_VALIDATE_NO_FORMATS) && kind != JP_BOOL) {
        /* For booleans the JSON type is the whole format. */
        const char *s = kind == JP_STRING ? json_object_get_string(v) : hv_fhir_json_number_text(v);
        size_t n = kind == JP_STRING ? (size_t)json_object_get_string_len(v) : strlen(s);
        if (kind == JP_INTEGER &&
            (json_object_get_int64(v) > INT32_MAX || json_object_get_int64(v) < INT32_MIN)) {
            hv__fhir_issue(c, "error", "value", NULL,
                           "The value %s is outside the range of a 32-bit integer", s);
        } else if (!hv__fhir_format_ok(t, s, n)) {
            if (kind == JP_STRING)
                hv__fhir_issue(c, "error", "value", NULL, "The value is not a valid %s",
                               hv_fhir_type_name(t));
            else
                hv__fhir_issue(c, "error", "value", NULL, "The value %s is not a valid %s", s,
                               hv_fhir_type_name(t));
        } else if (kind == JP_STRING && hv_fhir_type_max_length(t) > 0 &&
                   n > hv_fhir_type_max_length(t)) {
            hv__fhir_issue(c, "error", "value", NULL, "The value is longer than %zu characters",
                           hv_fhir_type_max_length(t));
        }
    }
    if (!(c->flags & HV_FHIR_VALIDATE_NO_BINDINGS))
        check_binding(c, e, t, v);
}

static int coding_in(const hv_fhir_binding_t *b, struct json_object *coding,
                     int *has_system_of_vs) {
    const char *system = hv_json_get_str(coding, "system");
    const char *code = hv_json_get_str(coding, "code");
    if (code == NULL)
        return 0;
    if (system != NULL && has_system_of_vs != NULL) {
        for (size_t i = 0; i < hv_fhir_binding_code_count(b); i++) {
            const char *s;
            hv_fhir_binding_code_at(b, i, &s, NULL);
            if (strcmp(s, system) == 0) {
                *has_system_of_vs = 1;
                break;
            }
        }
    }
    return hv_fhir_binding_has(b, system, code) == 1;
}

/* FHIR R4 terminologies.html#required: the value SHALL be one of the value set's codes. */
static void check_binding(hv__fhir_vctx_t *c, const hv_fhir_elem_t *e, const hv_fhir_type_t *t,
                          struct json_object *v) {
    const hv_fhir_binding_t *b = hv_fhir_elem_binding(e);
    if (b == NULL || hv_fhir_binding_strength(b) != HV_FHIR_BIND_REQUIRED ||
        !hv_fhir_binding_inlined(b))
        return;
    pthread_once(&kinds_once, kinds_init);
    if (json_object_is_type(v, json_type_string) && t == type_code) {
        if (hv_fhir_binding_has(b, NULL, json_object_get_string(v)) != 1)
            hv__fhir_issue(c, "error", "code-invalid", NULL,
                           "The value '%s' is not in the required value set %s",
                           json_object_get_string(v), hv_fhir_binding_valueset(b));
    } else if (t == type_coding && json_object_is_type(v, json_type_object)) {
        if (hv_json_get_str(v, "code") != NULL && !coding_in(b, v, NULL))
            hv__fhir_issue(c, "error", "code-invalid", NULL,
                           "The Coding %s#%s is not in the required value set %s",
                           hv_json_get_str(v, "system") ? hv_json_get_str(v, "system") : "",
                           hv_json_get_str(v, "code"), hv_fhir_binding_valueset(b));
    } else if (t == type_cc && json_object_is_type(v, json_type_object)) {
        struct json_object *codings = NULL;
        if (!json_object_object_get_ex(v, "coding", &codings) ||
            !json_object_is_type(codings, json_type_array))
            return; /* text only: nothing to check against the value set */
        size_t n = json_object_array_length(codings);
        int found = 0, coded = 0;
        for (size_t i = 0; i < n && !found; i++) {
            struct json_object *cd = json_object_array_get_idx(codings, i);
            if (hv_json_get_str(cd, "code") != NULL)
                coded = 1;
            found = coding_in(b, cd, NULL);
        }
        if (coded && !found)
            hv__fhir_issue(c, "error", "code-invalid", NULL,
                           "None of the codings is in the required value set %s",
                           hv_fhir_binding_valueset(b));
    }
}

static void walk_object(hv__fhir_vctx_t *c, struct json_object *obj, const hv_fhir_elem_t *owner,
                        int underscore, int depth);

/*
 * references.html#literal: a relative or absolute literal reference names the resource type
 * ("Patient/123", "http://x/fhir/Patient/123", "Patient/123/_history/2"); that type must be
 * one of the element's target profiles (Reference(Patient | Group)). Local ("#x"), urn: and
 * other references say nothing about the type and are not checked.
 */
static void check_reference_target(hv__fhir_vctx_t *c, const hv__fhir_prop_t *p,
                                   struct json_object *v) {
    static const char hist[] = "/_history/";
    const char *ref;
    size_t ti = 0, nt;
    /* Every complex value comes here: the type is compared first, a look-up in the object
     * (~190 instructions) is for References only. */
    if (strcmp(hv_fhir_type_name(p->type), "Reference") != 0)
        return;
    ref = hv_json_get_str(v, "reference");
    if (ref == NULL)
        return;
    for (ti = 0; ti < hv_fhir_elem_type_count(p->elem); ti++)
        if (hv_fhir_elem_type_at(p->elem, ti) == p->type)
            break;
    nt = hv_fhir_elem_target_count(p->elem, ti);
    if (nt == 0 || ref[0] == '#' || strncmp(ref, "urn:", 4) == 0)
        return;
    /* Drop a version suffix, then take the last two segments: Type/id. */
    size_t len = strlen(ref);
    const char *h = strstr(ref, hist);
    if (h != NULL)
        len = (size_t)(h - ref);
    const char *end = ref + len, *slash = NULL, *prev = NULL;
    for (const char *q = ref; q < end; q++)
        if (*q == '/') {
            prev = slash;
            slash = q;
        }
    if (slash == NULL || slash + 1 >= end || strchr(ref, '?') != NULL)
        return;
    const char *tstart = prev != NULL ? prev + 1 : ref;
    const hv_fhir_type_t *rt = hv_fhir_type_find(tstart, (size_t)(slash - tstart));
    if (rt == NULL || hv_fhir_type_kind(rt) != HV_FHIR_KIND_RESOURCE)
        return;
    for (size_t j = 0; j < nt; j++)
        if (hv_fhir_type_is(rt, hv_fhir_elem_target_at(p->elem, ti, j)))
            return;
    hv__fhir_issue(c, "error", "invalid", NULL, "The reference is to a %s, which %s does not allow",
                   hv_fhir_type_name(rt), hv_fhir_elem_path(p->elem));
}

/* Writes "_" + key into us (size n) and returns 0, or returns -1 when it does not fit. Every
 * property of every resource asks for its twin, so this is a copy, not a snprintf (~600
 * instructions a call, ~3% of an import's preparation). */
static int underscored(char *us, size_t n, const char *key) {
    size_t len = strlen(key);
    if (len + 2 > n)
        return -1;
    us[0] = '_';
    memcpy(us + 1, key, len + 1);
    return 0;
}

/* Whether some property of obj is named `_…`. Most objects have none, and then no property
 * has a twin: one pass over the keys (a byte each) spares a hash look-up per primitive. */
static int has_underscore_key(struct json_object *obj) {
    json_object_object_foreach(obj, key, val) {
        (void)val;
        if (key[0] == '_')
            return 1;
    }
    return 0;
}

/* The `_key` twin of property key in obj, or NULL; twins is 0 when no twin is wanted or
 * obj has no `_…` key (has_underscore_key), and then nothing is looked up. */
static struct json_object *twin_of(struct json_object *obj, int twins, const char *key) {
    char us[160];
    struct json_object *t = NULL;
    if (!twins || underscored(us, sizeof(us), key) != 0)
        return NULL;
    return json_object_object_get_ex(obj, us, &t) ? t : NULL;
}

static void primitive_invariants(hv__fhir_vctx_t *c, const hv__fhir_prop_t *p,
                                 struct json_object *v, struct json_object *twin) {
    hv__fhir_focus_t f;
    if (c->inv == NULL)
        return;
    /* ele-1 (natively): a primitive needs a value or an extension. */
    if (v == NULL && (twin == NULL || !json_object_object_get_ex(twin, "extension", NULL))) {
        hv__fhir_issue(
            c, "error", "invariant", "ele-1",
            "Constraint failed: ele-1: 'All FHIR elements must have a @value or children'");
        return;
    }
    f.json = v;
    f.ext = twin;
    f.type = p->type;
    f.owner = hv_fhir_type_root(p->type);
    f.resource = c->resource;
    f.root_resource = c->root_resource;
    f.contained = 0;
    hv__fhir_invariants_check(c, p->elem, &f);
}

static void walk_value(hv__fhir_vctx_t *c, const hv__fhir_prop_t *p, struct json_object *v,
                       struct json_object *twin, int in_array, int depth) {
    const hv_fhir_type_t *t = p->type;
    hv_fhir_kind_t k = (hv_fhir_kind_t)t->kind; /* the row: every value walked */
    if (v == NULL) {
        if (!in_array)
            hv__fhir_issue(c, "error", "structure", NULL, "null is not allowed here");
        return; /* null in an array pairs with the `_x` twin (json.html) */
    }
    if (k == HV_FHIR_KIND_PRIMITIVE && !p->underscore) {
        check_primitive(c, p->elem, t, v);
        if (!c->structure_only)
            primitive_invariants(c, p, v, twin);
        return;
    }
    if (!json_object_is_type(v, json_type_object)) {
        hv__fhir_issue(c, "error", "structure", NULL, "Element %s must be a JSON object, not %s",
                       hv_fhir_elem_path(p->elem), json_type_word(v));
        return;
    }
    const hv_fhir_elem_t *owner = hv__fhir_value_owner(p->elem, t, p->underscore, v);
    if (owner == NULL) {
        if (k == HV_FHIR_KIND_RESOURCE)
            hv__fhir_issue(c, "error", "structure", NULL,
                           "A contained resource needs a known resourceType");
        return;
    }
    if (json_object_object_length(v) == 0) {
        hv__fhir_issue(c, "error", "structure", "ele-1",
                       "An element must have a value or children");
        return;
    }
    if (!c->structure_only && !(c->flags & HV_FHIR_VALIDATE_NO_BINDINGS) && !p->underscore)
        check_binding(c, p->elem, t, v);
    if (!c->structure_only && !p->underscore)
        check_reference_target(c, p, v);
    if (p->underscore) {
        walk_object(c, v, owner, 1, depth + 1);
        /* A `_x` without a value: its invariants are checked here, with no value. */
        if (!c->structure_only && twin == NULL)
            primitive_invariants(c, p, NULL, v);
        return;
    }
    if (k == HV_FHIR_KIND_RESOURCE) {
        /* fhirpath.html (FHIR R4) §Variables: %resource is the resource that holds the
         * element; %rootResource its container for a contained resource, else the resource
         * itself (a Bundle entry is its own root). */
        struct json_object *saved = c->resource, *saved_root = c->root_resource;
        int contained = strcmp(hv_fhir_elem_name(p->elem), "contained") == 0;
        c->resource = v;
        if (!contained)
            c->root_resource = v;
        walk_object(c, v, owner, 0, depth + 1);
        if (!c->structure_only && c->inv != NULL) {
            hv__fhir_focus_t f = {
                v, NULL, hv_fhir_elem_owner_type(owner), owner, v, c->root_resource, contained};
            hv__fhir_invariants_check(c, p->elem, &f);
        }
        c->resource = saved;
        c->root_resource = saved_root;
        return;
    }
    walk_object(c, v, owner, 0, depth + 1);
    if (!c->structure_only && c->inv != NULL) {
        /* ele-1 (natively): an element needs children other than its id. */
        size_t n = (size_t)json_object_object_length(v);
        if (n == 1 && json_object_object_get_ex(v, "id", NULL)) {
            hv__fhir_issue(
                c, "error", "invariant", "ele-1",
                "Constraint failed: ele-1: 'All FHIR elements must have a @value or children'");
            return;
        }
        hv__fhir_focus_t f = {v, NULL, t, owner, c->resource, c->root_resource, 0};
        hv__fhir_invariants_check(c, p->elem, &f);
    }
}

static void walk_object(hv__fhir_vctx_t *c, struct json_object *obj, const hv_fhir_elem_t *owner,
                        int underscore, int depth) {
    if (depth > c->max_depth) {
        hv__fhir_issue(c, "error", "too-costly", NULL, "The resource nests deeper than %d levels",
                       c->max_depth);
        c->too_deep = 1;
        return;
    }
    int is_resource = hv__fhir_elem_is_resource_root(owner);
    /* A primitive's `_x` twin feeds its invariants only; the structural check never reads it. */
    int any_twin = !c->structure_only && has_underscore_key(obj);
    json_object_object_foreach(obj, key, val) {
        hv__fhir_prop_t p;
        hv__fhir_step_t s;
        if (is_resource && key[0] == 'r' && strcmp(key, "resourceType") == 0)
            continue;
        if (hv__fhir_prop_resolve(owner, key, &p) != HV_OK ||
            (underscore && strcmp(key, "value") == 0)) {
            step_in(c, &s, key, -1);
            hv__fhir_issue(c, "error", "structure", NULL, "Unknown element '%s'", key);
            step_out(c, &s);
            continue;
        }
        if (p.underscore && p.type->kind != HV_FHIR_KIND_PRIMITIVE) {
            step_in(c, &s, key, -1);
            hv__fhir_issue(c, "error", "structure", NULL,
                           "'%s' is not a primitive element and has no '_' form", key + 1);
            step_out(c, &s);
            continue;
        }
        /* Paths use the element name, as FHIRPath navigates (valueQuantity → value). */
        const char *pname = p.underscore ? key + 1 : key;
        if (p.elem->flags & HV__EF_ARRAY) {
            if (!json_object_is_type(val, json_type_array)) {
                step_in(c, &s, pname, -1);
                hv__fhir_issue(c, "error", "structure", NULL,
                               "Element %s repeats and must be a JSON array",
                               hv_fhir_elem_path(p.elem));
                step_out(c, &s);
                continue;
            }
            size_t n = json_object_array_length(val);
            /* json.html: x and _x arrays run in parallel, same length, no item null in both. */
            struct json_object *other = NULL;
            if (p.underscore && json_object_object_get_ex(obj, key + 1, &other) &&
                json_object_is_type(other, json_type_array)) {
                size_t m = json_object_array_length(other);
                int both_null = 0;
                for (size_t i = 0; i < n && i < m; i++)
                    if (json_object_array_get_idx(val, i) == NULL &&
                        json_object_array_get_idx(other, i) == NULL)
                        both_null = 1;
                if (m != n || both_null) {
                    step_in(c, &s, pname, -1);
                    hv__fhir_issue(c, "error", "structure", NULL,
                                   "The arrays '%s' and '%s' must have the same length and no item "
                                   "null in both",
                                   key + 1, key);
                    step_out(c, &s);
                }
            }
            if (n == 0) {
                step_in(c, &s, pname, -1);
                hv__fhir_issue(c, "error", "structure", NULL, "Arrays must not be empty");
                step_out(c, &s);
            }
            struct json_object *twins = NULL;
            if (!p.underscore && p.type->kind == HV_FHIR_KIND_PRIMITIVE)
                twins = twin_of(obj, any_twin, key);
            else if (p.underscore)
                twins = json_object_object_get_ex(obj, key + 1, &twins) ? twins : NULL;
            int twins_arr = twins != NULL && json_object_is_type(twins, json_type_array);
            for (size_t i = 0; i < n && !c->too_deep; i++) {
                struct json_object *tw = twins_arr && i < json_object_array_length(twins)
                                             ? json_object_array_get_idx(twins, i)
                                             : NULL;
                step_in(c, &s, pname, (long)i);
                walk_value(c, &p, json_object_array_get_idx(val, i), tw, 1, depth);
                step_out(c, &s);
            }
            if (!p.underscore && hv_fhir_elem_max(p.elem) != HV_FHIR_UNBOUNDED &&
                n > hv_fhir_elem_max(p.elem)) {
                step_in(c, &s, pname, -1);
                hv__fhir_issue(c, "error", "structure", NULL,
                               "Element %s allows at most %u, found %zu", hv_fhir_elem_path(p.elem),
                               hv_fhir_elem_max(p.elem), n);
                step_out(c, &s);
            }
        } else {
            step_in(c, &s, pname, -1);
            if (json_object_is_type(val, json_type_array))
                hv__fhir_issue(c, "error", "structure", NULL,
                               "Element %s does not repeat and must not be a JSON array",
                               hv_fhir_elem_path(p.elem));
            else if (p.underscore)
                walk_value(c, &p, val, json_object_object_get_ex(obj, key + 1, NULL) ? val : NULL,
                           0, depth);
            else
                walk_value(c, &p, val,
                           p.type->kind == HV_FHIR_KIND_PRIMITIVE
                               ? twin_of(obj, any_twin, key)
                               : NULL,
                           0, depth);
            step_out(c, &s);
        }
        if (c->too_deep)
            return;
    }
    if (c->structure_only || underscore)
        return;
    /* Cardinality minimums (elementdefinition.html#min-max). */
    size_t kn = hv_fhir_elem_child_count(owner);
    for (size_t i = 0; i < kn; i++) {
        const hv_fhir_elem_t *k = hv_fhir_elem_child_at(owner, i);
        if (hv_fhir_elem_min(k) == 0)
            continue;
        size_t count = 0;
        if (hv_fhir_elem_is_choice(k)) {
            json_object_object_foreach(obj, key2, val2) {
                hv__fhir_prop_t p2;
                (void)val2;
                if (hv__fhir_prop_resolve(owner, key2, &p2) == HV_OK && p2.elem == k)
                    count = 1;
            }
        } else {
            struct json_object *v = NULL;
            char us[128];
            const char *kname = hv_fhir_elem_name(k);
            if (json_object_object_get_ex(obj, kname, &v))
                count = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 1;
            if (count == 0 && underscored(us, sizeof(us), kname) == 0 &&
                json_object_object_get_ex(obj, us, &v))
                count = json_object_is_type(v, json_type_array) ? json_object_array_length(v) : 1;
        }
        if (count < hv_fhir_elem_min(k)) {
            hv__fhir_step_t s;
            step_in(c, &s, hv_fhir_elem_name(k), -1);
            hv__fhir_issue(c, "error", "required", NULL,
                           "Element %s is required (min %u), found %zu", hv_fhir_elem_path(k),
                           hv_fhir_elem_min(k), count);
            step_out(c, &s);
        }
    }
}

void hv__fhir_walk_resource(hv__fhir_vctx_t *c, struct json_object *res) {
    const hv_fhir_elem_t *root = hv__fhir_resource_root(res);
    c->path.len = 0;
    c->path.buf[0] = '\0';
    c->step = NULL;
    if (root == NULL) {
        hv__fhir_issue(c, "fatal", "structure", NULL, "The resource has no known resourceType");
        return;
    }
    hv__fhir_path_push(&c->path, hv_fhir_elem_name(root), -1);
    c->resource = res;
    c->root_resource = res;
    walk_object(c, res, root, 0, 0);
    if (!c->structure_only && c->inv != NULL) {
        hv__fhir_focus_t f = {res, NULL, hv_fhir_elem_owner_type(root), root, res, res, 0};
        hv__fhir_invariants_check(c, root, &f);
    }
}

int hv_fhir_check_structure(struct json_object *resource, int max_depth, hv_error_t *err) {
    hv__fhir_vctx_t c;
    hv_error_t local;
    memset(&c, 0, sizeof(c));
    hv_error_clear(&local);
    c.err = &local;
    c.structure_only = 1;
    c.max_depth = max_depth > 0 ? max_depth : HV_FHIR_DEFAULT_MAX_DEPTH;
    hv__fhir_walk_resource(&c, resource);
    if (c.errors == 0)
        return HV_OK;
    int rc = c.too_deep ? HV_ETOOBIG : HV_EINVAL;
    if (err != NULL) {
        *err = local;
        err->code = rc;
    }
    return rc;
}

/* ---- narrative (FHIR R4 narrative.html#xhtml, constraints txt-1 and txt-2) ---------- */

static const char *const forbidden_html[] = {"head",   "body",     "script", "form",     "input",
                                             "base",   "link",     "frame",  "frameset", "iframe",
                                             "object", "applet",   "embed",  "meta",     "button",
                                             "select", "textarea", "style",  "html",     "title"};

static int html_walk(xmlNodePtr n, int *text) {
    for (; n != NULL; n = n->next) {
        if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
            for (const xmlChar *p = n->content; p != NULL && *p; p++)
                if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
                    *text = 1;
            continue;
        }
        if (n->type != XML_ELEMENT_NODE)
            continue;
        if (n->ns == NULL || strcmp((const char *)n->ns->href, "http://www.w3.org/1999/xhtml") != 0)
            return 0;
        for (size_t i = 0; i < HV_ARRAY_LEN(forbidden_html); i++)
            if (strcmp((const char *)n->name, forbidden_html[i]) == 0)
                return 0;
        if (strcmp((const char *)n->name, "img") == 0)
            *text = 1;
        for (xmlAttrPtr a = n->properties; a != NULL; a = a->next)
            if (strncasecmp((const char *)a->name, "on", 2) == 0)
                return 0; /* event handlers */
        if (!html_walk(n->children, text))
            return 0;
    }
    return 1;
}

/*
 * txt-1: the XHTML is a div in the XHTML namespace with only basic formatting (no
 * head, body, scripts, forms, frames, objects, event attributes); txt-2: it has some
 * non-whitespace content (text or an image). Sets both results (1 when the rule holds)
 * from one parse.
 */
void hv__fhir_narrative_check(const char *s, size_t n, int *txt1, int *txt2) {
    hv__fhir_xml_quiet_t quiet;
    hv__fhir_xml_quiet_begin(&quiet);
    xmlDocPtr doc = xmlReadMemory(s, (int)n, NULL, "UTF-8",
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    hv__fhir_xml_quiet_end(&quiet);
    int text = 0;
    *txt1 = *txt2 = 0;
    if (doc == NULL)
        return;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (doc->intSubset == NULL && root != NULL && strcmp((const char *)root->name, "div") == 0) {
        *txt1 = html_walk(root, &text);
        *txt2 = text;
    }
    xmlFreeDoc(doc);
}
