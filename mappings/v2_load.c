/*
 * v2_load.c — reads the HL7 v2 → FHIR mapping tables: the generated lines of
 * mappings/v2_tables.c (from the .tsv files of mappings/v2) and, for a channel, an override file
 * in the same format. docs/mappings.md describes the format:
 *
 *   map   MAP  SEQ  SOURCE  V2TYPE  CONDITION  TARGET  FHIRTYPE  DATATYPEMAP  VOCAB  ASSIGN
 *   msg   STRUCTURE  SEQ  SEGMENT  GROUP  CONDITION  TARGET  SEGMENTMAP  REFERENCES
 *   vocab MAP  V2CODE  FHIRCODE  SYSTEM  DISPLAY
 *
 * Fields are separated by one tab; '#' starts a comment line; empty lines are skipped.
 * The tables are sorted once and searched by binary search.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mappings/mappings_int.h"

#define MAX_FIELDS 12
#define MAX_LINE_BYTES 8192
#define MAX_OVERRIDE_BYTES (4u << 20)

/* Splits a line at tabs in place; returns the number of fields. */
static size_t split_tabs(char *s, char **f, size_t max) {
    size_t n = 0;
    f[n++] = s;
    for (; *s && n < max; s++) {
        if (*s == '\t') {
            *s = '\0';
            f[n++] = s + 1;
        }
    }
    return n;
}

static unsigned to_uint(const char *s) {
    unsigned long v = strtoul(s, NULL, 10);
    return v > 100000 ? 100000 : (unsigned)v;
}

typedef struct builder {
    hv_map_tables_t *t;
    size_t cap_maps, cap_msgs, cap_vocab;
} builder_t;

static int grow(void **arr, size_t *cap, size_t n, size_t size) {
    void *p;
    size_t nc;
    if (n < *cap) return HV_OK;
    nc = *cap ? *cap * 2 : 256;
    p = hv_realloc(*arr, nc * size);
    if (p == NULL) return HV_ENOMEM;
    *arr = p;
    *cap = nc;
    return HV_OK;
}

static const char *opt(const char **f, size_t n, size_t i) { return i < n ? f[i] : ""; }

/* Adds one line (already copied into the arena); override: replace a row with the same key. */
static int add_line(builder_t *b, char *line, const char *origin, int override, hv_error_t *err,
                    int lineno) {
    char *f[MAX_FIELDS];
    size_t n, i;
    hv_map_tables_t *t = b->t;
    size_t len = strlen(line);
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == '\n')) line[--len] = '\0';
    if (len == 0 || line[0] == '#') return HV_OK;
    n = split_tabs(line, f, MAX_FIELDS);
    if (strcmp(f[0], "map") == 0 && n >= 7) {
        hv__map_row_t r;
        const char *src = f[3], *dot;
        memset(&r, 0, sizeof(r));
        r.map = f[1];
        r.seq = to_uint(f[2]);
        r.src_f = to_uint(src);
        dot = strchr(src, '.');
        r.src_c = dot ? to_uint(dot + 1) : 0;
        r.cond = f[5];
        r.target = f[6];
        r.type = opt((const char **)f, n, 7);
        r.dtmap = opt((const char **)f, n, 8);
        r.vocab = opt((const char **)f, n, 9);
        r.assign = opt((const char **)f, n, 10);
        r.origin = origin;
        if (override) {
            for (i = 0; i < t->nmaps; i++) {
                hv__map_row_t *o = &t->maps[i];
                if (strcasecmp(o->map, r.map) == 0 && o->src_f == r.src_f && o->src_c == r.src_c &&
                    strcmp(o->target, r.target) == 0 && strcmp(o->cond, r.cond) == 0) {
                    if (strcmp(r.type, "-") == 0) {
                        /* FHIR-TYPE "-": the row is removed (docs/mappings.md, overrides). */
                        memmove(o, o + 1, (t->nmaps - i - 1) * sizeof(*o));
                        t->nmaps--;
                        return HV_OK;
                    }
                    r.seq = o->seq;
                    *o = r;
                    return HV_OK;
                }
            }
            /* Removing a row that is not there is an error of the override file. */
            if (strcmp(r.type, "-") == 0) {
                hv_error_set(err, HV_ECONFIG, origin,
                             "%s:%d: no row %s %s → %s to remove", origin, lineno, r.map, src,
                             r.target);
                err->line = lineno;
                return HV_ECONFIG;
            }
        }
        if (grow((void **)&t->maps, &b->cap_maps, t->nmaps, sizeof(r)) != HV_OK) return HV_ENOMEM;
        t->maps[t->nmaps++] = r;
        return HV_OK;
    }
    if (strcmp(f[0], "msg") == 0 && n >= 8) {
        hv__msg_row_t r;
        memset(&r, 0, sizeof(r));
        r.structure = f[1];
        r.seq = to_uint(f[2]);
        snprintf(r.seg, sizeof(r.seg), "%.3s", f[3]);
        r.group = f[4];
        r.cond = f[5];
        r.target = f[6];
        r.segmap = f[7];
        r.refs = opt((const char **)f, n, 8);
        if (override) {
            for (i = 0; i < t->nmsgs; i++) {
                hv__msg_row_t *o = &t->msgs[i];
                if (strcmp(o->structure, r.structure) == 0 && strcmp(o->seg, r.seg) == 0 &&
                    strcmp(o->group, r.group) == 0 && strcmp(o->segmap, r.segmap) == 0 &&
                    strcmp(o->target, r.target) == 0) {
                    r.seq = o->seq;
                    *o = r;
                    return HV_OK;
                }
            }
        }
        if (grow((void **)&t->msgs, &b->cap_msgs, t->nmsgs, sizeof(r)) != HV_OK) return HV_ENOMEM;
        t->msgs[t->nmsgs++] = r;
        return HV_OK;
    }
    if (strcmp(f[0], "vocab") == 0 && n >= 4) {
        hv__vocab_row_t r;
        r.map = f[1];
        r.code = f[2];
        r.fcode = f[3];
        r.system = opt((const char **)f, n, 4);
        r.display = opt((const char **)f, n, 5);
        if (override) {
            for (i = 0; i < t->nvocab; i++) {
                if (strcasecmp(t->vocab[i].map, r.map) == 0 && strcmp(t->vocab[i].code, r.code) == 0) {
                    t->vocab[i] = r;
                    return HV_OK;
                }
            }
        }
        if (grow((void **)&t->vocab, &b->cap_vocab, t->nvocab, sizeof(r)) != HV_OK)
            return HV_ENOMEM;
        t->vocab[t->nvocab++] = r;
        return HV_OK;
    }
    hv_error_set(err, HV_ECONFIG, origin,
                 "%s:%d: not a mapping line (expected 'map' with 7+, 'msg' with 8+ or 'vocab' with 4+ "
                 "tab-separated fields)",
                 origin, lineno);
    err->line = lineno;
    return HV_ECONFIG;
}

/* Sorting keeps table order within a key: qsort is not stable, so ties compare by position. */
static int cmp_map(const void *a, const void *b) {
    const hv__map_row_t *x = a, *y = b;
    int c = strcasecmp(x->map, y->map);
    if (c) return c;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    return x < y ? -1 : x > y;
}
static int cmp_msg(const void *a, const void *b) {
    const hv__msg_row_t *x = a, *y = b;
    int c = strcmp(x->structure, y->structure);
    if (c) return c;
    c = strcmp(x->seg, y->seg);
    if (c) return c;
    if (x->seq != y->seq) return x->seq < y->seq ? -1 : 1;
    return x < y ? -1 : x > y;
}
static int cmp_vocab(const void *a, const void *b) {
    const hv__vocab_row_t *x = a, *y = b;
    int c = strcasecmp(x->map, y->map);
    if (c) return c;
    c = strcmp(x->code, y->code);
    if (c) return c;
    return x < y ? -1 : x > y;
}

/*
 * qsort's ties are broken by address, which keeps the insertion order only when the
 * rows carry it: the sequence number is made unique per table position first.
 */
/* The entries of concept map `map` (case-insensitive), NULL with *n = 0 when it has none. */
static const hv__vocab_row_t *vocab_span(const hv_map_tables_t *t, const char *map, size_t *n) {
    size_t lo = 0, hi = t->nvocab, end;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcasecmp(t->vocab[mid].map, map) < 0) lo = mid + 1;
        else hi = mid;
    }
    for (end = lo; end < t->nvocab && strcasecmp(t->vocab[end].map, map) == 0; end++) {}
    *n = end - lo;
    return end > lo ? &t->vocab[lo] : NULL;
}

/* hv__map_ref_parse: see mappings_int.h. */
int hv__map_ref_parse(hv_arena_t *arena, const char *ref, hv__msg_ref_t *r) {
    const char *eq = strchr(ref, '='), *dot, *p, *end;
    size_t plen, blen, n = 0;
    char *a, *b;
    memset(r, 0, sizeof(*r));
    if (eq == NULL || strchr(ref, '(') != NULL) return HV_OK;
    blen = strlen(eq + 1);
    if (blen < 3 || strcmp(eq + 1 + blen - 3, ".id") != 0) return HV_OK;
    dot = strchr(ref, '.');
    if (dot == NULL || dot > eq) return HV_OK;
    plen = (size_t)(eq - dot - 1);
    if (plen < 10 || plen >= 128 || strncmp(eq - 10, ".reference", 10) != 0) return HV_OK;
    /* Names of 48 bytes or more name no resource (the engine's slot names are shorter). */
    if ((size_t)(dot - ref) >= 48 || blen - 3 >= 48) return HV_OK;
    a = hv_arena_strndup(arena, ref, (size_t)(dot - ref));
    b = hv_arena_strndup(arena, eq + 1, blen - 3);
    if (a == NULL || b == NULL) return HV_ENOMEM;
    r->a = a;
    r->b = b;
    r->a_type = strchr(a, '[') ? (size_t)(strchr(a, '[') - a) : strlen(a);
    r->b_type = strchr(b, '[') ? (size_t)(strchr(b, '[') - b) : strlen(b);
    /* The path dot+1 .. eq-10 in strtok_r's tokens at '.': first counted, then copied. */
    end = eq - 10;
    for (p = dot + 1; p < end; p++)
        if (*p != '.' && (p == dot + 1 || p[-1] == '.')) n++;
    r->steps = hv_arena_alloc(arena, (n ? n : 1) * sizeof(*r->steps));
    r->last = hv_arena_alloc(arena, n ? n : 1);
    if (r->steps == NULL || r->last == NULL) return HV_ENOMEM;
    p = dot + 1;
    while (p < end) {
        const char *q, *br;
        char *step;
        while (p < end && *p == '.') p++;
        if (p >= end) break;
        for (q = p; q < end && *q != '.'; q++) {}
        br = memchr(p, '[', (size_t)(q - p));
        step = hv_arena_strndup(arena, p, (size_t)((br ? br : q) - p));
        if (step == NULL) return HV_ENOMEM;
        /* strtok_r's save pointer after this token is empty: the token ends the text, or
         * one '.' does. */
        r->last[r->nsteps] = q == end || q + 1 == end;
        r->steps[r->nsteps++] = step;
        p = q;
    }
    r->ok = 1;
    return HV_OK;
}

/* The parts of a message row the engine would otherwise find per message (hv__msg_row_t:
 * refs_list, target_kind, res_type), with the same splitting rules map_segment used. */
static int split_msg_row(hv_map_tables_t *t, hv__msg_row_t *m) {
    const char **list;
    const char *p, *br;
    size_t n = 0, cap = 1, tl;
    char *type;
    if (strcmp(m->target, "Bundle") == 0) m->target_kind = MSG_T_BUNDLE;
    else if (strpbrk(m->target, ".(") != NULL) m->target_kind = MSG_T_ELEMENT;
    else m->target_kind = MSG_T_SLOT;
    br = strchr(m->target, '[');
    tl = br ? (size_t)(br - m->target) : strlen(m->target);
    if (tl > 39) tl = 39; /* map_segment's type[40] */
    type = hv_arena_strndup(t->arena, m->target, tl);
    if (type == NULL) return HV_ENOMEM;
    m->res_type = type;
    for (p = m->refs; *p; p++) cap += *p == ';';
    list = hv_arena_alloc(t->arena, cap * sizeof(*list));
    if (list == NULL) return HV_ENOMEM;
    /* strtok_r's tokens: the non-empty runs between ';', then blanks trimmed at both ends. */
    for (p = m->refs; *p;) {
        const char *q = strchr(p, ';'), *b, *e;
        if (q == NULL) q = p + strlen(p);
        if (q > p) {
            char *one;
            b = p;
            e = q;
            while (b < e && *b == ' ') b++;
            while (e > b && e[-1] == ' ') e--;
            one = hv_arena_strndup(t->arena, b, (size_t)(e - b));
            if (one == NULL) return HV_ENOMEM;
            list[n++] = one;
        }
        p = *q ? q + 1 : q;
    }
    m->refs_list = list;
    m->refs_n = n;
    {
        hv__msg_ref_t *parsed = hv_arena_alloc(t->arena, (n ? n : 1) * sizeof(*parsed));
        size_t k;
        if (parsed == NULL) return HV_ENOMEM;
        for (k = 0; k < n; k++)
            if (hv__map_ref_parse(t->arena, list[k], &parsed[k]) != HV_OK) return HV_ENOMEM;
        m->refs_parsed = parsed;
    }
    m->refs_split = 1;
    return HV_OK;
}

/* The positions of rows[0..n) that keep (want_val: the "$value"/"$this" rows; else all but
 * those without a data-type map) into *pos, and for each the position after its run of the
 * same source field in that list into *skip; arena. HV_ENOMEM only. */
static int plan_list(hv_arena_t *arena, const hv__map_row_t *rows, size_t n, int want_val, unsigned *count,
                     const unsigned **pos_out, const unsigned **skip_out) {
    unsigned *pos = hv_arena_alloc(arena, (n ? n : 1) * sizeof(*pos));
    unsigned *skip = hv_arena_alloc(arena, (n ? n : 1) * sizeof(*skip));
    size_t i, m = 0;
    if (pos == NULL || skip == NULL) return HV_ENOMEM;
    for (i = 0; i < n; i++) {
        const hv__map_row_t *r = &rows[i];
        int keep = want_val ? r->prim : !(r->prim && r->dtmap[0] == '\0');
        if (keep) pos[m++] = (unsigned)i;
    }
    for (i = m; i-- > 0;)
        skip[i] = i + 1 < m && rows[pos[i + 1]].src_f == rows[pos[i]].src_f ? skip[i + 1] : (unsigned)(i + 1);
    *count = (unsigned)m;
    *pos_out = pos;
    *skip_out = skip;
    return HV_OK;
}

static int finish(hv_map_tables_t *t) {
    size_t i, k = 0;
    qsort(t->maps, t->nmaps, sizeof(*t->maps), cmp_map);
    qsort(t->msgs, t->nmsgs, sizeof(*t->msgs), cmp_msg);
    qsort(t->vocab, t->nvocab, sizeof(*t->vocab), cmp_vocab);
    t->map_index = hv_arena_alloc(t->arena, (t->nmaps + 1) * sizeof(*t->map_index));
    if (t->map_index == NULL) return HV_ENOMEM;
    for (i = 0; i < t->nmaps; i++) {
        if (k == 0 || strcasecmp(t->map_index[k - 1].key, t->maps[i].map) != 0) {
            t->map_index[k].key = t->maps[i].map;
            t->map_index[k].start = i;
            t->map_index[k].count = 0;
            k++;
        }
        t->map_index[k - 1].count++;
    }
    t->nmap_index = k;
    /* The runs of rows with one source field in each map (hv__map_row_t.run). */
    for (k = 0; k < t->nmap_index; k++) {
        size_t start = t->map_index[k].start, end = start + t->map_index[k].count;
        for (i = end; i-- > start;)
            t->maps[i].run = i + 1 < end && t->maps[i + 1].src_f == t->maps[i].src_f ? t->maps[i + 1].run + 1 : 1;
    }
    /* Conditions are compiled once here, not per message (v2_cond.c). */
    for (i = 0; i < t->nmaps; i++) {
        hv__map_row_t *r = &t->maps[i];
        r->prim = !strcmp(r->target, "$value") || !strcmp(r->target, "$this");
        if (hv__map_cond_compile(t->arena, r->cond, &r->cc) != HV_OK) return HV_ENOMEM;
    }
    for (i = 0; i < t->nmsgs; i++)
        if (hv__map_cond_compile(t->arena, t->msgs[i].cond, &t->msgs[i].cc) != HV_OK) return HV_ENOMEM;
    /* The guard switches of the runs (after the runs and the conditions they read), and
     * the plan of each map (after the rows know whether they are "$value" rows). */
    for (i = 0; i < t->nmaps; i++) t->maps[i].plan = NULL;
    for (k = 0; k < t->nmap_index; k++) {
        hv__map_row_t *rows = &t->maps[t->map_index[k].start];
        size_t n = t->map_index[k].count;
        hv__map_plan_t *pl = hv_arena_alloc(t->arena, sizeof(*pl));
        if (hv__map_guard_build(t->arena, rows, n) != HV_OK) return HV_ENOMEM;
        if (pl == NULL) return HV_ENOMEM;
        pl->rows = rows;
        if (plan_list(t->arena, rows, n, 0, &pl->nall, &pl->all, &pl->all_skip) != HV_OK ||
            plan_list(t->arena, rows, n, 1, &pl->nval, &pl->val, &pl->val_skip) != HV_OK)
            return HV_ENOMEM;
        rows[0].plan = pl;
    }
    /* The rows a row's data-type map (or a message row's segment map) names, found once. */
    for (i = 0; i < t->nmaps; i++) {
        hv__map_row_t *r = &t->maps[i];
        if (r->dtmap[0]) r->dt_rows = hv__map_rows(t, r->dtmap, &r->dt_n);
        r->dt_resolved = 1;
        if (r->vocab[0]) r->vocab_rows = vocab_span(t, r->vocab, &r->vocab_n);
        r->vocab_resolved = 1;
    }
    for (i = 0; i < t->nmsgs; i++) {
        hv__msg_row_t *m = &t->msgs[i];
        m->seg_rows = hv__map_rows(t, m->segmap, &m->seg_n);
        m->seg_resolved = 1;
        if (split_msg_row(t, m) != HV_OK) return HV_ENOMEM;
    }
    return HV_OK;
}

/* Rows keep their table order: seq becomes the position in the input (rows replaced by an
 * override keep the position of the row they replace). */
static void number_rows(hv_map_tables_t *t, size_t from_maps, size_t from_msgs) {
    size_t i;
    for (i = from_maps; i < t->nmaps; i++) t->maps[i].seq = (unsigned)i;
    for (i = from_msgs; i < t->nmsgs; i++) t->msgs[i].seq = (unsigned)i;
}

/* The generated lines, then (after "#override") the rows of mappings/v2/local.tsv. */
static int load_builtin(builder_t *b, hv_error_t *err) {
    size_t i;
    int rc = HV_OK, override = 0;
    for (i = 0; hv__map_v2_lines[i] != NULL && rc == HV_OK; i++) {
        char *line;
        if (strcmp(hv__map_v2_lines[i], "#override") == 0) {
            number_rows(b->t, 0, 0);
            override = 1;
            continue;
        }
        line = hv_arena_strdup(b->t->arena, hv__map_v2_lines[i]);
        if (line == NULL) return HV_ENOMEM;
        rc = add_line(b, line, override ? "mappings/v2/local.tsv" : "mappings/v2", override, err,
                      (int)i + 1);
    }
    number_rows(b->t, 0, 0);
    return rc;
}

static int load_file(builder_t *b, const char *path, hv_error_t *err) {
    FILE *fp = NULL;
    char *buf = NULL, *origin;
    int rc = HV_OK, lineno = 0;
    size_t nm = b->t->nmaps, nmsg = b->t->nmsgs;
    origin = hv_arena_strdup(b->t->arena, path);
    buf = hv_malloc(MAX_LINE_BYTES);
    if (origin == NULL || buf == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    fp = fopen(path, "r");
    if (fp == NULL) {
        hv_error_set(err, HV_ECONFIG, path, "%s: cannot open the mapping override file: %s", path,
                     strerror(errno));
        rc = HV_ECONFIG;
        goto out;
    }
    while (fgets(buf, MAX_LINE_BYTES, fp) != NULL) {
        char *line;
        lineno++;
        if (strchr(buf, '\n') == NULL && !feof(fp)) {
            hv_error_set(err, HV_ECONFIG, path, "%s:%d: line longer than %d bytes", path, lineno,
                         MAX_LINE_BYTES);
            rc = HV_ECONFIG;
            goto out;
        }
        if ((size_t)lineno * MAX_LINE_BYTES > MAX_OVERRIDE_BYTES * 4u) {
            hv_error_set(err, HV_ECONFIG, path, "%s: too many lines", path);
            rc = HV_ECONFIG;
            goto out;
        }
        line = hv_arena_strdup(b->t->arena, buf);
        if (line == NULL) {
            rc = HV_ENOMEM;
            goto out;
        }
        rc = add_line(b, line, origin, 1, err, lineno);
        if (rc != HV_OK) goto out;
    }
    /* Added rows come after the built-in ones of their map. */
    {
        size_t i;
        for (i = nm; i < b->t->nmaps; i++) b->t->maps[i].seq = (unsigned)(1000000 + i);
        for (i = nmsg; i < b->t->nmsgs; i++) b->t->msgs[i].seq = (unsigned)(1000000 + i);
    }
out:
    if (fp != NULL) fclose(fp);
    hv_free(buf);
    return rc;
}

void hv__map_tables_free(hv_map_tables_t *t) {
    if (t == NULL) return;
    hv_free(t->maps);
    hv_free(t->msgs);
    hv_free(t->vocab);
    hv_arena_free(t->arena);
    hv_free(t);
}

int hv__map_tables_load(const char *override_file, hv_map_tables_t **out, hv_error_t *err) {
    builder_t b;
    int rc;
    memset(&b, 0, sizeof(b));
    b.t = hv_calloc(1, sizeof(*b.t));
    if (b.t == NULL) return HV_ENOMEM;
    b.t->arena = hv_arena_new(64 * 1024);
    if (b.t->arena == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    rc = load_builtin(&b, err);
    if (rc == HV_OK && override_file != NULL) rc = load_file(&b, override_file, err);
    if (rc == HV_OK) rc = finish(b.t);
out:
    if (rc != HV_OK) {
        if (rc == HV_ENOMEM) hv_error_set(err, HV_ENOMEM, NULL, "out of memory loading the mapping tables");
        hv__map_tables_free(b.t);
        return rc;
    }
    *out = b.t;
    return HV_OK;
}

static hv_map_tables_t *default_tables;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void load_default(void) {
    hv_error_t err;
    if (hv__map_tables_load(NULL, &default_tables, &err) != HV_OK) default_tables = NULL;
}

const hv_map_tables_t *hv__map_tables_default(void) {
    pthread_once(&default_once, load_default);
    return default_tables;
}

const hv__map_row_t *hv__map_rows(const hv_map_tables_t *t, const char *map, size_t *n) {
    size_t lo = 0, hi = t->nmap_index;
    *n = 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcasecmp(t->map_index[mid].key, map);
        if (c == 0) {
            *n = t->map_index[mid].count;
            return &t->maps[t->map_index[mid].start];
        }
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const hv__msg_row_t *hv__msg_rows(const hv_map_tables_t *t, const char *structure, const char *seg,
                                  size_t *n) {
    size_t lo = 0, hi = t->nmsgs, first;
    *n = 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(t->msgs[mid].structure, structure);
        if (c == 0) c = strcmp(t->msgs[mid].seg, seg);
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    first = lo;
    while (lo < t->nmsgs && strcmp(t->msgs[lo].structure, structure) == 0 &&
           strcmp(t->msgs[lo].seg, seg) == 0)
        lo++;
    *n = lo - first;
    return *n ? &t->msgs[first] : NULL;
}

int hv__msg_structure_known(const hv_map_tables_t *t, const char *structure) {
    size_t lo = 0, hi = t->nmsgs;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcmp(t->msgs[mid].structure, structure) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->nmsgs && strcmp(t->msgs[lo].structure, structure) == 0;
}

int hv__vocab_known(const hv_map_tables_t *t, const char *map) {
    size_t lo = 0, hi = t->nvocab;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (strcasecmp(t->vocab[mid].map, map) < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo < t->nvocab && strcasecmp(t->vocab[lo].map, map) == 0;
}

const hv__vocab_row_t *hv__vocab_find(const hv_map_tables_t *t, const char *map, const char *code) {
    size_t lo = 0, hi = t->nvocab;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcasecmp(t->vocab[mid].map, map);
        if (c == 0) c = strcmp(t->vocab[mid].code, code);
        if (c == 0) return &t->vocab[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}
