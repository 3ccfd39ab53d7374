/*
 * config.c — declarative configuration.
 *
 * Each module exports a table of hv_setting_t with defaults; the engine declares
 * them all, then layers holovitals.json, HOLOVITALS_* environment variables and
 * command-line flags on top (in that order of precedence, lowest first). Every
 * value is checked against its type when it is set, so a bad value is refused
 * with where it came from: "holovitals.json:3:14: http.max_body: not a size".
 *
 * holovitals.json mirrors the dotted keys as nested objects:
 *     { "http": { "listen": "127.0.0.1:8080", "max_body": "32MiB" }, "data": "./var" }
 */
#include "config.h"
#include "engine/engine.h"

#include <ctype.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    const hv_setting_t *s;
    char *value;  /* current value as text */
    char *origin; /* "default", "FILE:LINE:COL", "env HOLOVITALS_X", "flag --x" */
} entry_t;

struct hv_config {
    entry_t *v;
    size_t n, cap;
};

hv_config_t *hv_config_new(void) { return hv_calloc(1, sizeof(hv_config_t)); }

void hv_config_free(hv_config_t *c) {
    size_t i;
    if (c == NULL) return;
    for (i = 0; i < c->n; i++) {
        hv_free(c->v[i].value);
        hv_free(c->v[i].origin);
    }
    hv_free(c->v);
    hv_free(c);
}

static entry_t *find_entry(const hv_config_t *c, const char *key) {
    size_t i;
    for (i = 0; i < c->n; i++)
        if (strcmp(c->v[i].s->key, key) == 0) return &c->v[i];
    return NULL;
}

const hv_setting_t *hv_config_find(const hv_config_t *c, const char *key) {
    entry_t *e = find_entry(c, key);
    return e ? e->s : NULL;
}

const hv_setting_t *hv_config_find_flag(const hv_config_t *c, const char *flag) {
    size_t i;
    for (i = 0; i < c->n; i++)
        if (c->v[i].s->flag != NULL && strcmp(c->v[i].s->flag, flag) == 0) return c->v[i].s;
    return NULL;
}

/* Checks value against the setting's type; on failure explains in why. */
static int check_value(const hv_setting_t *s, const char *value, char *why, size_t whylen) {
    uint64_t u;
    char host[256];
    int port;
    switch (s->type) {
    case HV_SET_STRING:
        return HV_OK;
    case HV_SET_INT: {
        char *end;
        errno = 0;
        (void)strtoll(value, &end, 10);
        if (errno != 0 || end == value || *end != '\0') {
            snprintf(why, whylen, "not an integer: \"%s\"", value);
            return HV_ECONFIG;
        }
        return HV_OK;
    }
    case HV_SET_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "false") || !strcmp(value, "on") ||
            !strcmp(value, "off") || !strcmp(value, "yes") || !strcmp(value, "no") ||
            !strcmp(value, "1") || !strcmp(value, "0"))
            return HV_OK;
        snprintf(why, whylen, "not a boolean (true/false, on/off): \"%s\"", value);
        return HV_ECONFIG;
    case HV_SET_SIZE:
        if (hv_parse_size(value, &u) == HV_OK) return HV_OK;
        snprintf(why, whylen, "not a size (e.g. 16MiB, 64k, 1000): \"%s\"", value);
        return HV_ECONFIG;
    case HV_SET_DURATION:
        if (hv_parse_duration_ms(value, &u) == HV_OK) return HV_OK;
        snprintf(why, whylen, "not a duration (e.g. 30s, 500ms, 5m): \"%s\"", value);
        return HV_ECONFIG;
    case HV_SET_HOSTPORT:
        if (hv_parse_hostport(value, host, sizeof(host), &port) == HV_OK) return HV_OK;
        snprintf(why, whylen, "not HOST:PORT: \"%s\"", value);
        return HV_ECONFIG;
    case HV_SET_ENUM: {
        const char *p = s->choices;
        size_t vl = strlen(value);
        while (p != NULL && *p) {
            const char *bar = strchr(p, '|');
            size_t n = bar ? (size_t)(bar - p) : strlen(p);
            if (n == vl && strncmp(p, value, n) == 0) return HV_OK;
            p = bar ? bar + 1 : NULL;
        }
        snprintf(why, whylen, "must be one of %s: \"%s\"", s->choices, value);
        return HV_ECONFIG;
    }
    }
    return HV_ECONFIG;
}

static int entry_set(entry_t *e, const char *value, const char *origin) {
    char *v = hv_strdup(value), *o = hv_strdup(origin);
    if (v == NULL || o == NULL) {
        hv_free(v);
        hv_free(o);
        return HV_ENOMEM;
    }
    hv_free(e->value);
    hv_free(e->origin);
    e->value = v;
    e->origin = o;
    return HV_OK;
}

int hv_config_declare(hv_config_t *c, const hv_setting_t *table) {
    const hv_setting_t *s;
    for (s = table; s != NULL && s->key != NULL; s++) {
        entry_t *e;
        if (find_entry(c, s->key) != NULL) continue; /* declared twice: keep the first */
        if (c->n == c->cap) {
            size_t ncap = c->cap ? c->cap * 2 : 64;
            entry_t *nv = hv_realloc(c->v, ncap * sizeof(*nv));
            if (nv == NULL) return HV_ENOMEM;
            c->v = nv;
            c->cap = ncap;
        }
        e = &c->v[c->n];
        memset(e, 0, sizeof(*e));
        e->s = s;
        if (entry_set(e, s->def ? s->def : "", "default") != HV_OK) return HV_ENOMEM;
        c->n++;
    }
    return HV_OK;
}

int hv_config_set(hv_config_t *c, const char *key, const char *value, const char *origin,
                  hv_error_t *err) {
    entry_t *e = find_entry(c, key);
    char why[300];
    int rc;
    if (e == NULL) {
        hv_error_set(err, HV_ECONFIG, origin, "unknown setting \"%s\"", key);
        return HV_ECONFIG;
    }
    rc = check_value(e->s, value, why, sizeof(why));
    if (rc != HV_OK) {
        hv_error_set(err, rc, origin, "%s: %s", key, why);
        return rc;
    }
    return entry_set(e, value, origin);
}

/* Does any declared key start with "prefix."? */
static int is_section(const hv_config_t *c, const char *prefix) {
    size_t i, n = strlen(prefix);
    for (i = 0; i < c->n; i++)
        if (strncmp(c->v[i].s->key, prefix, n) == 0 && c->v[i].s->key[n] == '.') return 1;
    return 0;
}

static void pointer_of(const char *dotted, char *out, size_t outlen) {
    size_t o = 0;
    if (outlen < 2) return;
    out[o++] = '/';
    for (; *dotted && o + 1 < outlen; dotted++) out[o++] = *dotted == '.' ? '/' : *dotted;
    out[o] = '\0';
}

static int load_object(hv_config_t *c, struct json_object *obj, const char *prefix,
                       const char *path, const hv_json_pos_t *pos, hv_error_t *err) {
    struct json_object_iterator it = json_object_iter_begin(obj);
    struct json_object_iterator end = json_object_iter_end(obj);
    for (; !json_object_iter_equal(&it, &end); json_object_iter_next(&it)) {
        const char *k = json_object_iter_peek_name(&it);
        struct json_object *v = json_object_iter_peek_value(&it);
        char key[256], ptr[300], origin[600];
        int line = 0, col = 0, rc;
        snprintf(key, sizeof(key), "%s%s%s", prefix, *prefix ? "." : "", k);
        pointer_of(key, ptr, sizeof(ptr));
        hv_json_pos_get(pos, ptr, &line, &col);
        snprintf(origin, sizeof(origin), "%s:%d:%d", path, line, col);
        if (json_object_is_type(v, json_type_object)) {
            if (!is_section(c, key)) {
                hv_json_pos_get_key(pos, ptr, &line, &col);
                hv_error_set(err, HV_ECONFIG, path, "unknown setting \"%s\"", key);
                if (err) { err->line = line; err->column = col; }
                return HV_ECONFIG;
            }
            rc = load_object(c, v, key, path, pos, err);
            if (rc != HV_OK) return rc;
            continue;
        }
        if (find_entry(c, key) == NULL) {
            hv_json_pos_get_key(pos, ptr, &line, &col);
            hv_error_set(err, HV_ECONFIG, path, "unknown setting \"%s\"", key);
            if (err) { err->line = line; err->column = col; }
            return HV_ECONFIG;
        }
        {
            hv_buf_t val;
            hv_buf_init(&val, 0);
            if (json_object_is_type(v, json_type_array)) {
                size_t i, n = json_object_array_length(v);
                for (i = 0; i < n; i++) {
                    struct json_object *item = json_object_array_get_idx(v, i);
                    if (!json_object_is_type(item, json_type_string)) {
                        hv_buf_release(&val);
                        hv_error_set(err, HV_ECONFIG, path, "%s: list items must be strings", key);
                        if (err) { err->line = line; err->column = col; }
                        return HV_ECONFIG;
                    }
                    if (i > 0) hv_buf_putc(&val, ',');
                    hv_buf_puts(&val, json_object_get_string(item));
                }
            } else if (json_object_is_type(v, json_type_null)) {
                hv_buf_puts(&val, "");
            } else {
                hv_buf_puts(&val, json_object_get_string(v));
            }
            rc = hv_config_set(c, key, val.data ? val.data : "", origin, err);
            hv_buf_release(&val);
            if (rc != HV_OK) {
                if (err) {
                    char msg[sizeof(err->message)];
                    snprintf(msg, sizeof(msg), "%s", err->message);
                    hv_error_set(err, rc, path, "%s", msg);
                    err->line = line;
                    err->column = col;
                }
                return rc;
            }
        }
    }
    return HV_OK;
}

int hv_config_load_text(hv_config_t *c, const char *text, size_t len, const char *path,
                        hv_error_t *err) {
    struct json_object *root = NULL;
    hv_json_pos_t *pos = NULL;
    int rc = hv_json_parse(text, len, path, &root, err);
    if (rc != HV_OK) goto out;
    if (!json_object_is_type(root, json_type_object)) {
        hv_error_set(err, HV_ECONFIG, path, "the configuration must be a JSON object");
        if (err) { err->line = 1; err->column = 1; }
        rc = HV_ECONFIG;
        goto out;
    }
    pos = hv_json_pos_new(text, len);
    rc = load_object(c, root, "", path, pos, err);
out:
    json_object_put(root);
    hv_json_pos_free(pos);
    return rc;
}

int hv_config_load_file(hv_config_t *c, const char *path, hv_error_t *err) {
    FILE *f = NULL;
    hv_buf_t text;
    char chunk[8192];
    size_t n;
    int rc = HV_OK;

    hv_buf_init(&text, 16u * 1024 * 1024);
    f = fopen(path, "rb");
    if (f == NULL) {
        hv_error_set(err, HV_EIO, path, "cannot open: %s", strerror(errno));
        rc = HV_EIO;
        goto out;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        rc = hv_buf_append(&text, chunk, n);
        if (rc != HV_OK) {
            hv_error_set(err, rc, path, "cannot read: %s", hv_strerror(rc));
            goto out;
        }
    }
    if (ferror(f)) {
        hv_error_set(err, HV_EIO, path, "cannot read: %s", strerror(errno));
        rc = HV_EIO;
        goto out;
    }
    rc = hv_config_load_text(c, text.data ? text.data : "", text.len, path, err);
out:
    if (f != NULL) fclose(f);
    hv_buf_release(&text);
    return rc;
}

void hv_config_env_name(const hv_setting_t *s, char *out, size_t outlen) {
    const char *src = s->flag ? s->flag : s->key;
    size_t o = (size_t)snprintf(out, outlen, "HOLOVITALS_");
    for (; *src && o + 1 < outlen; src++)
        out[o++] = (*src == '.' || *src == '-') ? '_' : (char)toupper((unsigned char)*src);
    out[o] = '\0';
}

int hv_config_load_env(hv_config_t *c, hv_error_t *err) {
    size_t i;
    for (i = 0; i < c->n; i++) {
        char name[128], origin[160];
        const char *v;
        hv_config_env_name(c->v[i].s, name, sizeof(name));
        v = getenv(name);
        if (v == NULL) continue;
        snprintf(origin, sizeof(origin), "environment %s", name);
        if (hv_config_set(c, c->v[i].s->key, v, origin, err) != HV_OK) return HV_ECONFIG;
    }
    return HV_OK;
}

static entry_t *must_find(const hv_config_t *c, const char *key) {
    entry_t *e = find_entry(c, key);
    if (e == NULL) {
        fprintf(stderr, "holovitals: internal error: setting \"%s\" was never declared\n", key);
        abort();
    }
    return e;
}

const char *hv_config_str(const hv_config_t *c, const char *key) { return must_find(c, key)->value; }

int64_t hv_config_int(const hv_config_t *c, const char *key) {
    return strtoll(must_find(c, key)->value, NULL, 10);
}

int hv_config_bool(const hv_config_t *c, const char *key) {
    const char *v = must_find(c, key)->value;
    return !strcmp(v, "true") || !strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "1");
}

uint64_t hv_config_size(const hv_config_t *c, const char *key) {
    uint64_t v = 0;
    hv_parse_size(must_find(c, key)->value, &v);
    return v;
}

uint64_t hv_config_duration_ms(const hv_config_t *c, const char *key) {
    uint64_t v = 0;
    hv_parse_duration_ms(must_find(c, key)->value, &v);
    return v;
}

void hv_config_dump(const hv_config_t *c, hv_buf_t *out) {
    size_t i;
    for (i = 0; i < c->n; i++) {
        const entry_t *e = &c->v[i];
        char env[128];
        hv_config_env_name(e->s, env, sizeof(env));
        hv_buf_printf(out, "%-28s %-24s # %s (%s", e->s->key, e->value, e->s->help ? e->s->help : "",
                      env);
        if (e->s->flag) hv_buf_printf(out, ", --%s", e->s->flag);
        hv_buf_printf(out, "; from %s)\n", e->origin);
    }
}
