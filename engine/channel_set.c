/*
 * channel_set.c — the `set` step: assigns one value in a message's JSON content at a
 * JSON Pointer (RFC 6901 §4: "~1" is "/", "~0" is "~"), creating the objects on the
 * way: {"type": "set", "pointer": "/meta/source", "value": "lab"}; "content_type"
 * sets the message's content type instead (or as well).
 *
 * Two ways to the same bytes. The reference is json-c's: parse the content, set the
 * member, serialize the whole document plainly (no whitespace, "/" unescaped). That
 * round trip costs ~35,000 instructions for a 150-byte resource, most of the step's
 * cost on a channel's hot path. So content that json-c would write back exactly as it
 * came — canonical text (below) — is edited in place instead: one scan checks it and
 * finds where the member's value is (or where it goes), and the output is the input
 * with that span replaced, byte for byte what json-c would have written. Anything else
 * takes json-c's way (hv__set_apply with fast = 0, which the unit tests and the
 * fuzz target compare against the edit).
 *
 * Canonical text, per RFC 8259 and json-c 0.16's writer (JSON_C_TO_STRING_PLAIN |
 * JSON_C_TO_STRING_NOSLASHESCAPE):
 *   | element  | accepted as is                               | else (json-c's way) |
 *   |----------|----------------------------------------------|---------------------|
 *   | space    | none outside strings                         | whitespace, comments |
 *   | string   | bytes >= 0x20 but '"' and '\', valid UTF-8   | any escape          |
 *   | integer  | -?(0|[1-9][0-9]*), at most 18 digits, not -0 | -0, larger numbers  |
 *   | decimal  | with a fraction or exponent (json-c keeps    |                     |
 *   |          | the text of a parsed double)                 |                     |
 *   | object   | at most 32 members, no key twice, depth 32   | duplicates, more    |
 *   | document | an object and nothing after it               | anything else       |
 */
#include "config.h"
#include "engine/channel_int.h"

#include <stdio.h>
#include <string.h>

#define SET_MAX_KEYS 32  /* members per object checked for duplicates */
#define SET_MAX_DEPTH 32 /* below JSON_MAX_DEPTH (engine/json.c): deeper takes json-c's way */
#define SET_TOKEN_MAX 256

/* A scan of canonical text: NULL at the first byte that is not (or the end). */
static const char *scan_value(const char *p, const char *end, int depth);

/* A string from its opening quote: past its closing quote, or NULL. */
static const char *scan_string(const char *p, const char *end) {
    p++;
    while (p < end) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c == '\\' || c < 0x20) return NULL;
        if (c < 0x80) {
            p++;
            continue;
        }
        /* RFC 3629 §4: a well-formed UTF-8 sequence (no overlongs, no surrogates). */
        {
            size_t n = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
            unsigned char c1;
            size_t i;
            if (c < 0xC2 || c > 0xF4 || (size_t)(end - p) < n) return NULL;
            c1 = (unsigned char)p[1];
            if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) ||
                (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F))
                return NULL;
            for (i = 1; i < n; i++)
                if (((unsigned char)p[i] & 0xC0) != 0x80) return NULL;
            p += n;
        }
    }
    return NULL;
}

static const char *scan_number(const char *p, const char *end) {
    const char *d;
    int real = 0;
    if (*p == '-') p++;
    d = p;
    if (p >= end || *p < '0' || *p > '9') return NULL;
    if (*p == '0') p++;
    else
        while (p < end && *p >= '0' && *p <= '9') p++;
    if (p < end && *p == '.') {
        real = 1;
        if (++p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = 1;
        p++;
        if (p < end && (*p == '+' || *p == '-')) p++;
        if (p >= end || *p < '0' || *p > '9') return NULL;
        while (p < end && *p >= '0' && *p <= '9') p++;
    }
    if (!real) {
        /* json-c writes an int64 back as %lld: "-0" becomes "0", and it clamps past
         * 64 bits; 18 digits always fit. */
        if (p - d > 18 || (d[-1] == '-' && p - d == 1 && *d == '0')) return NULL;
    }
    return p;
}

/* A member of a scanned object: its key with the quotes [k, ke), its value [v, ve). */
typedef struct member {
    const char *k, *ke, *v, *ve;
} member_t;

/* An object from its '{': past its '}', or NULL. Each key once. With ms (SET_MAX_KEYS
 * slots), its members are recorded there and counted in *nm. */
static const char *scan_members(const char *p, const char *end, int depth, member_t *ms,
                                size_t *nm) {
    const char *ks[SET_MAX_KEYS];
    size_t kl[SET_MAX_KEYS], nk = 0, i;
    if (depth > SET_MAX_DEPTH) return NULL;
    p++;
    if (ms != NULL) *nm = 0;
    if (p < end && *p == '}') return p + 1;
    for (;;) {
        const char *k = p, *ke;
        if (p >= end || *p != '"' || (ke = scan_string(p, end)) == NULL) return NULL;
        if (nk == SET_MAX_KEYS) return NULL;
        for (i = 0; i < nk; i++)
            if (kl[i] == (size_t)(ke - k) && memcmp(ks[i], k, kl[i]) == 0) return NULL;
        ks[nk] = k;
        kl[nk++] = (size_t)(ke - k);
        p = ke;
        if (p >= end || *p != ':') return NULL;
        if ((p = scan_value(p + 1, end, depth)) == NULL || p >= end) return NULL;
        if (ms != NULL) {
            ms[*nm].k = k;
            ms[*nm].ke = ke;
            ms[*nm].v = ke + 1;
            ms[(*nm)++].ve = p;
        }
        if (*p == '}') return p + 1;
        if (*p != ',') return NULL;
        p++;
    }
}

static const char *scan_object(const char *p, const char *end, int depth) {
    return scan_members(p, end, depth, NULL, NULL);
}

static const char *scan_array(const char *p, const char *end, int depth) {
    if (depth > SET_MAX_DEPTH) return NULL;
    p++;
    if (p < end && *p == ']') return p + 1;
    for (;;) {
        if ((p = scan_value(p, end, depth)) == NULL || p >= end) return NULL;
        if (*p == ']') return p + 1;
        if (*p != ',') return NULL;
        p++;
    }
}

static const char *scan_value(const char *p, const char *end, int depth) {
    if (p >= end) return NULL;
    switch (*p) {
    case '{': return scan_object(p, end, depth + 1);
    case '[': return scan_array(p, end, depth + 1);
    case '"': return scan_string(p, end);
    case 't': return end - p >= 4 && memcmp(p, "true", 4) == 0 ? p + 4 : NULL;
    case 'f': return end - p >= 5 && memcmp(p, "false", 5) == 0 ? p + 5 : NULL;
    case 'n': return end - p >= 4 && memcmp(p, "null", 4) == 0 ? p + 4 : NULL;
    default: return *p == '-' || (*p >= '0' && *p <= '9') ? scan_number(p, end) : NULL;
    }
}

/*
 * The next reference token of a JSON Pointer from p (just past a '/'), unescaped
 * into tok (SET_TOKEN_MAX bytes; "~1" is "/", "~0" is "~", another '~' is itself):
 * its length, *next where it ends. -1 for a token of SET_TOKEN_MAX bytes or more
 * (set_check refuses such a pointer).
 */
static int pointer_token(const char *p, char *tok, const char **next) {
    size_t n = 0;
    while (*p && *p != '/') {
        if (n + 1 >= SET_TOKEN_MAX) return -1;
        if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
            tok[n++] = p[1] == '0' ? '~' : '/';
            p += 2;
        } else {
            tok[n++] = *p++;
        }
    }
    tok[n] = '\0';
    *next = p;
    return (int)n;
}

/* 1 when a key of n bytes is written by json-c as it is (nothing to escape). */
static int key_plain(const char *k, size_t n) {
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)k[i];
        if (c < 0x20 || c == '"' || c == '\\' || c >= 0x80) return 0;
    }
    return 1;
}

/*
 * The in-place edit of canonical content: HV_OK with the new text in *out (arena),
 * or HV_ENOTSUP when the content is not canonical, or a step of the pointer meets
 * something that is not an object (json-c's way then reports it).
 */
static int set_edit(const char *text, size_t len, const char *pointer, const char *value,
                    size_t vlen, hv_arena_t *arena, char **out, size_t *outlen) {
    const char *end = text + len, *p = pointer, *obj = text;
    const char *cut = NULL, *cut_end = NULL; /* the span replaced */
    char tok[SET_TOKEN_MAX];
    member_t ms[SET_MAX_KEYS];
    size_t nm = 0, i;
    hv_buf_t ins;
    char *o;
    int rc = HV_ENOTSUP, n;
    hv_buf_init(&ins, 0);
    /* The validating scan of the whole document records the root's members: the walk
     * below reads the root from them instead of scanning it again. */
    if (len == 0 || text[0] != '{' || scan_members(text, end, 1, ms, &nm) != end) goto out;
    /* Each token: the member of the current object (canonical: no escapes, each key
     * once), into which the next token goes; the last one's value is replaced. */
    while (*p == '/') {
        const char *q = obj + 1, *found = NULL, *vend = NULL;
        if ((n = pointer_token(p + 1, tok, &p)) < 0 || !key_plain(tok, (size_t)n)) goto out;
        if (obj == text) {
            for (i = 0; i < nm; i++)
                if ((size_t)(ms[i].ke - ms[i].k - 2) == (size_t)n &&
                    memcmp(ms[i].k + 1, tok, (size_t)n) == 0) {
                    found = ms[i].v;
                    vend = ms[i].ve;
                }
            q = nm > 0 ? ms[nm - 1].ve : obj + 1; /* at the root's '}' */
        } else {
            while (*q != '}') {
                const char *ke = scan_string(q, end);
                const char *ve = scan_value(ke + 1, end, 0);
                if ((size_t)(ke - q - 2) == (size_t)n && memcmp(q + 1, tok, (size_t)n) == 0) {
                    found = ke + 1;
                    vend = ve;
                }
                q = *ve == ',' ? ve + 1 : ve;
            }
        }
        if (found == NULL) {
            /* Appended at the end of the object (json-c keeps members in insertion
             * order), with the objects for the tokens left, nested. */
            int depth = 0;
            rc = hv_buf_puts(&ins, q == obj + 1 ? "\"" : ",\"");
            if (rc == HV_OK) rc = hv_buf_append(&ins, tok, (size_t)n);
            if (rc == HV_OK) rc = hv_buf_puts(&ins, "\":");
            while (rc == HV_OK && *p == '/') {
                if ((n = pointer_token(p + 1, tok, &p)) < 0 || !key_plain(tok, (size_t)n)) {
                    rc = HV_ENOTSUP;
                    goto out;
                }
                rc = hv_buf_puts(&ins, "{\"");
                if (rc == HV_OK) rc = hv_buf_append(&ins, tok, (size_t)n);
                if (rc == HV_OK) rc = hv_buf_puts(&ins, "\":");
                depth++;
            }
            if (rc == HV_OK) rc = hv_buf_append(&ins, value, vlen);
            while (rc == HV_OK && depth-- > 0) rc = hv_buf_putc(&ins, '}');
            if (rc != HV_OK) goto out;
            cut = cut_end = q;
            break;
        }
        if (*p == '\0') { /* replaced in place: json-c keeps the member's position */
            cut = found;
            cut_end = vend;
            rc = hv_buf_append(&ins, value, vlen);
            if (rc != HV_OK) goto out;
            break;
        }
        if (*found != '{') goto out; /* "does not lead through objects": json-c's way */
        obj = found;
    }
    if (cut == NULL) goto out;
    *outlen = (size_t)(cut - text) + ins.len + (size_t)(end - cut_end);
    o = hv_arena_alloc(arena, *outlen + 1);
    if (o == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    memcpy(o, text, (size_t)(cut - text));
    memcpy(o + (cut - text), ins.data, ins.len);
    memcpy(o + (cut - text) + ins.len, cut_end, (size_t)(end - cut_end));
    o[*outlen] = '\0';
    *out = o;
    rc = HV_OK;
out:
    hv_buf_release(&ins);
    return rc;
}

static void put_json(void *p) { json_object_put(p); }

/* json-c's way: parse, set, serialize (the reference for set_edit). */
static int set_roundtrip(const char *text, size_t len, const char *pointer, json_object *value,
                         hv_arena_t *arena, char **out, size_t *outlen, hv_error_t *err) {
    json_object *root = NULL, *cur;
    char tok[SET_TOKEN_MAX];
    const char *p, *s;
    if (hv_json_parse(text, len, "message", &root, err) != HV_OK) {
        hv_error_set(err, HV_EINVAL, NULL, "set: the content is not JSON");
        return HV_EINVAL;
    }
    if (hv_arena_cleanup_add(arena, put_json, root) != HV_OK) {
        json_object_put(root);
        return HV_ENOMEM;
    }
    cur = root;
    p = pointer;
    while (*p == '/') {
        json_object *next = NULL;
        if (pointer_token(p + 1, tok, &p) < 0) { /* refused by set_check */
            hv_error_set(err, HV_EINVAL, pointer, "set: a token of %s is too long", pointer);
            return HV_EINVAL;
        }
        if (!json_object_is_type(cur, json_type_object)) {
            hv_error_set(err, HV_EINVAL, pointer, "set: %s does not lead through objects", pointer);
            return HV_EINVAL;
        }
        if (*p == '\0') {
            if (hv_json_set(cur, tok, json_object_get(value)) != HV_OK) return HV_ENOMEM;
            break;
        }
        if (!json_object_object_get_ex(cur, tok, &next)) {
            next = json_object_new_object();
            if (next == NULL || hv_json_set(cur, tok, next) != HV_OK) return HV_ENOMEM;
        }
        cur = next;
    }
    s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    *out = hv_arena_strdup(arena, s);
    if (*out == NULL) return HV_ENOMEM;
    *outlen = strlen(*out);
    return HV_OK;
}

int hv__set_apply(const char *text, size_t len, const char *pointer, json_object *value,
                  const char *value_text, int fast, hv_arena_t *arena, char **out, size_t *outlen,
                  hv_error_t *err) {
    if (fast) {
        int rc = set_edit(text, len, pointer, value_text, strlen(value_text), arena, out, outlen);
        if (rc != HV_ENOTSUP || fast == 2) return rc;
    }
    return set_roundtrip(text, len, pointer, value, arena, out, outlen, err);
}

/* ------------------------------------------------------------------------- */
/* The step                                                                  */
/* ------------------------------------------------------------------------- */

typedef struct set_step {
    char *pointer;
    json_object *value; /* owned */
    char *value_text;   /* value as json-c writes it (plain), for the in-place edit */
    char *content_type;
} set_step_t;

/* 1 when every reference token of pointer p fits SET_TOKEN_MAX. */
static int tokens_fit(const char *p) {
    char tok[SET_TOKEN_MAX];
    while (*p == '/')
        if (pointer_token(p + 1, tok, &p) < 0) return 0;
    return 1;
}

static int set_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        if (strcmp(k, "pointer") == 0) {
            const char *p = json_object_get_string(v);
            if (json_object_is_type(v, json_type_string) && p[0] == '/' && strlen(p) > 1 &&
                tokens_fit(p))
                continue;
            hv_error_set(err, HV_ECONFIG, k,
                         "\"pointer\" is a JSON Pointer such as \"/status\" (tokens under %d bytes)",
                         SET_TOKEN_MAX);
        } else if (strcmp(k, "value") == 0) {
            continue;
        } else if (strcmp(k, "content_type") == 0) {
            if (json_object_is_type(v, json_type_string)) continue;
            hv_error_set(err, HV_ECONFIG, k, "\"content_type\" must be a string");
        } else {
            hv_error_set(err, HV_ECONFIG, k,
                         "unknown key \"%s\" in a set step (known: pointer, value, content_type)", k);
        }
        return HV_ECONFIG;
    }
    if (json_object_object_get_ex(conf, "pointer", NULL) != json_object_object_get_ex(conf, "value", NULL)) {
        hv_error_set(err, HV_ECONFIG, NULL, "a set step takes \"pointer\" and \"value\" together");
        return HV_ECONFIG;
    }
    if (!json_object_object_get_ex(conf, "pointer", NULL) && !json_object_object_get_ex(conf, "content_type", NULL)) {
        hv_error_set(err, HV_ECONFIG, NULL, "a set step needs \"pointer\" and \"value\", or \"content_type\"");
        return HV_ECONFIG;
    }
    return HV_OK;
}

static void set_free(void *state) {
    set_step_t *s = state;
    if (s == NULL) return;
    hv_free(s->pointer);
    hv_free(s->content_type);
    hv_free(s->value_text);
    json_object_put(s->value);
    hv_free(s);
}

static int set_init(hv_engine_t *e, struct json_object *conf, void **state, hv_error_t *err) {
    set_step_t *s = hv_calloc(1, sizeof(*s));
    json_object *v = NULL;
    (void)e;
    (void)err;
    if (s == NULL) return HV_ENOMEM;
    if (hv_json_get_str(conf, "pointer")) s->pointer = hv_strdup(hv_json_get_str(conf, "pointer"));
    if (hv_json_get_str(conf, "content_type"))
        s->content_type = hv_strdup(hv_json_get_str(conf, "content_type"));
    if (json_object_object_get_ex(conf, "value", &v)) {
        s->value = json_object_get(v);
        s->value_text = hv_strdup(json_object_to_json_string_ext(
            v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        if (s->value_text == NULL) {
            set_free(s);
            return HV_ENOMEM;
        }
    }
    *state = s;
    return HV_OK;
}

static int set_run(void *state, hv_channel_msg_t *m, hv_error_t *err) {
    set_step_t *s = state;
    char *out = NULL;
    size_t n = 0;
    int rc;
    if (s->content_type != NULL) m->content_type = hv_arena_strdup(m->arena, s->content_type);
    if (s->pointer == NULL) return HV_OK;
    rc = hv__set_apply(m->content, m->len, s->pointer, s->value, s->value_text, 1, m->arena, &out,
                       &n, err);
    if (rc != HV_OK) return rc;
    m->content = out;
    m->len = n;
    return HV_OK;
}

const hv_channel_step_t hv__step_set = {"set", set_check, set_init, set_run, set_free};
