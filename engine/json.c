/*
 * json.c — json-c helpers: parsing with comments and line:column errors, the
 * position map that puts file:line:column on semantic errors in channel and
 * configuration files, and setters that always take ownership.
 *
 * json-c keeps no source positions in its tree, so hv_json_pos_new makes a
 * second, light pass over the text (already validated by json-c) and records
 * where each value starts, keyed by its JSON Pointer (RFC 6901).
 */
#include "config.h"
#include "engine/engine.h"

#include <json-c/json.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

static void offset_to_linecol(const char *text, size_t off, int *line, int *col) {
    size_t i;
    int l = 1, c = 1;
    for (i = 0; i < off; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)text[i] & 0xC0) != 0x80) {
            c++; /* count characters, not UTF-8 continuation bytes */
        }
    }
    *line = l;
    *col = c;
}

/* Skips whitespace and comments from p; returns the new offset. */
static size_t skip_ws(const char *t, size_t len, size_t p) {
    while (p < len) {
        if (t[p] == ' ' || t[p] == '\t' || t[p] == '\n' || t[p] == '\r') {
            p++;
        } else if (t[p] == '/' && p + 1 < len && t[p + 1] == '/') {
            while (p < len && t[p] != '\n') p++;
        } else if (t[p] == '/' && p + 1 < len && t[p + 1] == '*') {
            p += 2;
            while (p + 1 < len && !(t[p] == '*' && t[p + 1] == '/')) p++;
            p = p + 1 < len ? p + 2 : len;
        } else {
            break;
        }
    }
    return p;
}

int hv_json_parse(const char *text, size_t len, const char *origin, struct json_object **out,
                  hv_error_t *err) {
    struct json_tokener *tok = NULL;
    struct json_object *obj = NULL;
    enum json_tokener_error jerr;
    size_t end;
    int rc = HV_EPROTO;

    if (len > INT32_MAX) {
        hv_error_set(err, HV_ETOOBIG, origin, "document too large");
        return HV_ETOOBIG;
    }
    tok = json_tokener_new_ex(JSON_MAX_DEPTH);
    if (tok == NULL) return HV_ENOMEM;
    obj = json_tokener_parse_ex(tok, text, (int)len);
    jerr = json_tokener_get_error(tok);
    end = json_tokener_get_parse_end(tok);
    if (obj == NULL || jerr != json_tokener_success) {
        const char *why = jerr == json_tokener_continue ? "unexpected end of input"
                                                         : json_tokener_error_desc(jerr);
        hv_error_set(err, HV_EPROTO, origin, "invalid JSON: %s", why);
        if (err != NULL) {
            /* json-c stops one past the offending character */
            offset_to_linecol(text, end > 0 && jerr != json_tokener_continue ? end - 1 : end,
                              &err->line, &err->column);
        }
        goto out;
    }
    end = skip_ws(text, len, end);
    if (end < len && text[end] != '\0') {
        hv_error_set(err, HV_EPROTO, origin, "unexpected content after the JSON value");
        if (err != NULL) offset_to_linecol(text, end, &err->line, &err->column);
        goto out;
    }
    *out = obj;
    obj = NULL;
    rc = HV_OK;
out:
    json_object_put(obj);
    json_tokener_free(tok);
    return rc;
}

/* ---- position map ---- */

typedef struct pos_entry {
    char *pointer;
    int line;
    int column;
} pos_entry_t;

struct hv_json_pos {
    pos_entry_t *v;
    size_t n, cap;
    const char *t;
    size_t len;
    size_t p;
    int line, col; /* position of p, advanced incrementally */
    size_t lc_at;
};

static void advance_lc(hv_json_pos_t *s, size_t to) {
    for (; s->lc_at < to && s->lc_at < s->len; s->lc_at++) {
        unsigned char c = (unsigned char)s->t[s->lc_at];
        if (c == '\n') {
            s->line++;
            s->col = 1;
        } else if ((c & 0xC0) != 0x80) {
            s->col++;
        }
    }
}

static int pos_add_at(hv_json_pos_t *s, const char *prefix, const hv_buf_t *ptr, size_t at) {
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 32;
        pos_entry_t *nv = hv_realloc(s->v, ncap * sizeof(*nv));
        if (nv == NULL) return HV_ENOMEM;
        s->v = nv;
        s->cap = ncap;
    }
    advance_lc(s, at);
    {
        size_t plen = strlen(prefix);
        char *p = hv_malloc(plen + ptr->len + 1);
        if (p == NULL) return HV_ENOMEM;
        memcpy(p, prefix, plen);
        if (ptr->len > 0) memcpy(p + plen, ptr->data, ptr->len);
        p[plen + ptr->len] = '\0';
        s->v[s->n].pointer = p;
    }
    s->v[s->n].line = s->line;
    s->v[s->n].column = s->col;
    s->n++;
    return HV_OK;
}

static int pos_add(hv_json_pos_t *s, const hv_buf_t *ptr) { return pos_add_at(s, "", ptr, s->p); }

/* Moves past a string; returns HV_EPROTO (with p at the end) if it is not terminated. */
static int skip_string(hv_json_pos_t *s) {
    s->p++; /* opening quote */
    while (s->p < s->len && s->t[s->p] != '"') {
        if (s->t[s->p] == '\\') s->p++;
        s->p++;
    }
    if (s->p >= s->len) {
        s->p = s->len;
        return HV_EPROTO;
    }
    s->p++;
    return HV_OK;
}

/* Appends a pointer token, escaped per RFC 6901 (~ → ~0, / → ~1). */
static int ptr_push(hv_buf_t *ptr, const char *tok, size_t n) {
    size_t i;
    int rc = hv_buf_putc(ptr, '/');
    for (i = 0; rc == HV_OK && i < n; i++) {
        if (tok[i] == '~') rc = hv_buf_puts(ptr, "~0");
        else if (tok[i] == '/') rc = hv_buf_puts(ptr, "~1");
        else rc = hv_buf_putc(ptr, tok[i]);
    }
    return rc;
}

static int scan_value(hv_json_pos_t *s, hv_buf_t *ptr, int depth) {
    int rc;
    if (depth > JSON_MAX_DEPTH) return HV_ETOOBIG;
    s->p = skip_ws(s->t, s->len, s->p);
    if (s->p >= s->len) return HV_EPROTO;
    if ((rc = pos_add(s, ptr)) != HV_OK) return rc;
    if (s->t[s->p] == '{') {
        s->p++;
        for (;;) {
            size_t keep = ptr->len, kstart;
            s->p = skip_ws(s->t, s->len, s->p);
            if (s->p >= s->len) return HV_EPROTO;
            if (s->t[s->p] == '}') { s->p++; return HV_OK; }
            if (s->t[s->p] == ',') { s->p++; continue; }
            if (s->t[s->p] != '"') return HV_EPROTO;
            kstart = s->p;
            if (skip_string(s) != HV_OK) return HV_EPROTO;
            /* decode the key with json-c so that escapes in keys are handled */
            {
                char *raw = hv_strndup(s->t + kstart, s->p - kstart);
                struct json_object *k;
                if (raw == NULL) return HV_ENOMEM;
                k = json_tokener_parse(raw);
                hv_free(raw);
                if (k == NULL) return HV_EPROTO;
                rc = ptr_push(ptr, json_object_get_string(k), (size_t)json_object_get_string_len(k));
                json_object_put(k);
                if (rc == HV_OK) rc = pos_add_at(s, "#", ptr, kstart);
                if (rc != HV_OK) return rc;
            }
            s->p = skip_ws(s->t, s->len, s->p);
            if (s->p >= s->len || s->t[s->p] != ':') return HV_EPROTO;
            s->p++;
            rc = scan_value(s, ptr, depth + 1);
            ptr->len = keep;
            if (ptr->data) ptr->data[keep] = '\0';
            if (rc != HV_OK) return rc;
        }
    } else if (s->t[s->p] == '[') {
        size_t idx = 0;
        s->p++;
        for (;;) {
            size_t keep = ptr->len;
            char num[24];
            s->p = skip_ws(s->t, s->len, s->p);
            if (s->p >= s->len) return HV_EPROTO;
            if (s->t[s->p] == ']') { s->p++; return HV_OK; }
            if (s->t[s->p] == ',') { s->p++; continue; }
            snprintf(num, sizeof(num), "%zu", idx++);
            if ((rc = ptr_push(ptr, num, strlen(num))) != HV_OK) return rc;
            rc = scan_value(s, ptr, depth + 1);
            ptr->len = keep;
            if (ptr->data) ptr->data[keep] = '\0';
            if (rc != HV_OK) return rc;
        }
    } else if (s->t[s->p] == '"') {
        return skip_string(s);
    } else {
        /* a bare token (number, true, false, null): at least one byte, so that
         * malformed input always advances */
        do {
            s->p++;
        } while (s->p < s->len && (s->t[s->p] == '\0' || strchr(",]} \t\r\n/", s->t[s->p]) == NULL));
    }
    return HV_OK;
}

hv_json_pos_t *hv_json_pos_new(const char *text, size_t len) {
    hv_json_pos_t *s = hv_calloc(1, sizeof(*s));
    hv_buf_t ptr;
    if (s == NULL) return NULL;
    s->t = text;
    s->len = len;
    s->line = 1;
    s->col = 1;
    hv_buf_init(&ptr, 0);
    /* A partial map is still useful: errors only lose their position. */
    (void)scan_value(s, &ptr, 0);
    hv_buf_release(&ptr);
    s->t = NULL;
    return s;
}

void hv_json_pos_free(hv_json_pos_t *p) {
    size_t i;
    if (p == NULL) return;
    for (i = 0; i < p->n; i++) hv_free(p->v[i].pointer);
    hv_free(p->v);
    hv_free(p);
}

int hv_json_pos_get(const hv_json_pos_t *p, const char *pointer, int *line, int *column) {
    size_t i;
    if (p == NULL) return HV_ENOTFOUND;
    for (i = 0; i < p->n; i++) {
        if (strcmp(p->v[i].pointer, pointer) == 0) {
            *line = p->v[i].line;
            *column = p->v[i].column;
            return HV_OK;
        }
    }
    return HV_ENOTFOUND;
}

int hv_json_pos_get_key(const hv_json_pos_t *p, const char *pointer, int *line, int *column) {
    size_t i;
    if (p == NULL) return HV_ENOTFOUND;
    for (i = 0; i < p->n; i++) {
        if (p->v[i].pointer[0] == '#' && strcmp(p->v[i].pointer + 1, pointer) == 0) {
            *line = p->v[i].line;
            *column = p->v[i].column;
            return HV_OK;
        }
    }
    return HV_ENOTFOUND;
}

int hv_json_set(struct json_object *obj, const char *key, struct json_object *val) {
    if (obj == NULL || json_object_object_add(obj, key, val) != 0) {
        json_object_put(val);
        return HV_ENOMEM;
    }
    return HV_OK;
}

int hv_json_set_str(struct json_object *obj, const char *key, const char *val) {
    return hv_json_set(obj, key, val ? json_object_new_string(val) : NULL);
}

int hv_json_set_int(struct json_object *obj, const char *key, int64_t val) {
    return hv_json_set(obj, key, json_object_new_int64(val));
}

/*
 * The objects of a FHIR resource are small: a Coding has three or four members, a
 * Reference one or two, a resource rarely more than sixteen. json-c's look-up hashes the
 * whole key first (~200 instructions a call, a twelfth of an import worker's time in the
 * index rows, the compartments and FHIRPath navigation); walking the members in order and
 * comparing first bytes finds a key in a few dozen. A larger object (json-c's table grows
 * past 16 entries) is looked up by its hash as before. Keys are unique in a json-c object
 * (a duplicate replaces the earlier value in place), so both find the same member.
 */
#define GET_SCAN_MAX 16

int hv_json_get_ex(struct json_object *obj, const char *key, struct json_object **out) {
    struct lh_table *t;
    struct json_object *v = NULL;
    int found = 0;
    if (!json_object_is_type(obj, json_type_object)) {
        if (out != NULL) *out = NULL;
        return 0;
    }
    t = json_object_get_object(obj);
    if (lh_table_length(t) > GET_SCAN_MAX) return json_object_object_get_ex(obj, key, out);
    for (struct lh_entry *e = lh_table_head(t); e != NULL; e = lh_entry_next(e)) {
        const char *k = lh_entry_k(e);
        if (k[0] == key[0] && strcmp(k, key) == 0) {
            v = (struct json_object *)lh_entry_v(e);
            found = 1;
            break;
        }
    }
    if (out != NULL) *out = v;
    return found;
}

const char *hv_json_get_str(struct json_object *obj, const char *key) {
    struct json_object *v;
    if (obj == NULL || !hv_json_get_ex(obj, key, &v)) return NULL;
    if (!json_object_is_type(v, json_type_string)) return NULL;
    return json_object_get_string(v);
}
