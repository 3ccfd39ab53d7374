/*
 * v2_to_fhir.c — HL7 v2 → FHIR R4: runs the mapping tables generated from the HL7
 * v2-to-FHIR Implementation Guide (the .tsv files of mappings/v2, read by v2_load.c) over a
 * message parsed by adapters/hl7v2, and writes a FHIR transaction Bundle.
 *
 * How a message is mapped (docs/mappings.md has the long form):
 *  1. The structure (MSH-9.3, else MSH-9.1_MSH-9.2, through an alias table: ADT_A04
 *     and ADT_A08 use ADT_A01 …) selects the message table; a segment the table does
 *     not name is looked up in ADT_A01 and ORU_R01, else reported as not mapped.
 *  2. Each segment, in order, runs the rows of its message table: a row names a
 *     resource slot ("Observation[2]"), a segment map ("OBX[Observation]") and the
 *     references to set. When a segment id appears in several groups (OBX under
 *     PATIENT_OBSERVATION, OBSERVATION, SPECIMEN_OBSERVATION) the group closest to the
 *     previous segment's group is taken. A slot first filled by another occurrence
 *     of the same segment id gets a new resource (each OBX its own Observation);
 *     other segments merge into it (PD1 into the Patient made from PID).
 *  3. A segment map row takes a field, checks its condition, and writes the FHIR
 *     element its target path names, through a data-type map (CX[Identifier]) applied
 *     recursively to components and subcomponents, a concept map, or a constant. The
 *     FHIR model (fhir/fhir.h) checks every path and types every value (dateTime,
 *     decimal, boolean …); rows whose path the model does not know are skipped.
 *  4. Resources get stable identities: a business identifier (PID-3, PV1-19, placer
 *     and filler numbers …) gives a conditional update `PUT Type?identifier=sys|val`;
 *     others get `PUT Type/<id>` with an id hashed from the patient, the order and the
 *     position (order results) or the content (everything else), so that a resend or
 *     an A08 updates the same resources instead of creating new ones.
 *
 * Conditions are the postfix form the generator compiles (docs/mappings.md):
 * `@PID-7 len #8 gt`, `@OBX-2 'ST 'TX in2`, `@.3 valued not`.
 */
#include "config.h"

#include <ctype.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "adapters/hl7v2/hl7v2.h"
#include "fhir/fhir.h"
#include "mappings/mappings_int.h"

#define MAX_RESOURCES 512  /* resources one message may produce */
#define MAX_REPS 64        /* repetitions of one field that are mapped */
#define MAX_DEPTH 5        /* data-type maps within data-type maps */
#define SLOT_BITS 11       /* the element slot table: at most 2048 entries */
#define SLOT_BITS_MIN 7    /* it starts with 128 and doubles when half full */
#define MAX_ISSUES 200     /* issues listed in the OperationOutcome */
#define MAX_FAMILY 8       /* members of a resource family ("[1]".."[8]" rows) */

typedef hv_hl7v2_span_t span_t;

typedef struct res {
    char slot[48];          /* "Patient[1]", "" for resources made by a reference */
    const char *type;       /* static: from the FHIR model */
    json_object *obj;
    char seg[4];            /* the segment that created it */
    size_t seg_index;
    char tmp[24];           /* "#hvtmp-N": the reference used until identities are known */
    char *full_url;         /* arena */
    char *request_url;      /* arena */
    int dropped;
    int merged_into;        /* index of the resource it duplicates, or -1 */
    char *order_key;        /* arena: the order it belongs to, or NULL */
    size_t ordinal;         /* the segment's position, for ids of order results */
    int referenced;         /* its tmp reference was handed out (ref_to) */
    int dirty;              /* lost a reference since it was last cleaned */
} res_t;

typedef struct slot {
    uint64_t key;
    json_object *elem;
} slot_t;

typedef struct ctx {
    const hv_map_tables_t *t;
    hv_hl7v2_msg_t msg;
    hv_arena_t *arena;
    char structure[16];
    char trigger[8];
    res_t *res;
    size_t nres;
    json_object *bundle_obj;  /* the Bundle object MSH[Bundle] writes into */
    json_object *issues;      /* OperationOutcome.issue */
    json_object *explain;     /* NULL unless asked */
    slot_t *slots;            /* open addressing, slot_mask + 1 entries */
    size_t slot_mask;
    size_t nslots;
    /* The chain of rows being applied, formatted only when an issue or --explain needs it. */
    const char *rule_base;    /* "ORU_R01 OBX[Observation]" */
    const hv__map_row_t *frames[MAX_DEPTH + 4];
    int nframes;
    char rule[512];
    /* The fields of the segment last split (seg_field): found once per segment. */
    const char *fc_seg;
    size_t fc_len;
    span_t fc[256];
    unsigned fc_n;
    hv_buf_t tmp;             /* unescaping */
    size_t cur_seg;           /* index of the segment being mapped */
    char *order_key;          /* the current ORC/OBR order (placer/filler), arena */
    size_t unmapped_rows;
    int lenient;              /* hv_map_opts_t.lenient_identity */
    /* The "#hvtmp-N" references of the resources, found once when mapping is done
     * (collect_refs): holder object (a counted reference of ours), its resource, target N. */
    struct refent {
        json_object *holder;
        size_t owner, target;
        int live;
    } *refs;
    size_t nrefs, caprefs;
    /* Rows for the next apply_map call, found at load (USE_ROWS sets them). */
    int map_rows_resolved;
    const hv__map_row_t *map_rows;
    size_t map_rows_n;
    /* Members [2]..[MAX_FAMILY] of resource families (PL[Location]: bed [1], room [2], floor
     * [3], point of care [4], building [5], facility [6]): base and member resource indexes. */
    struct {
        size_t base, member;
        unsigned n;
    } fam[64];
    size_t nfam;
} ctx_t;

/* The next apply_map runs these rows instead of looking the map's name up. */
#define USE_DT_ROWS(c, row) \
    ((c)->map_rows_resolved = (row)->dt_resolved, (c)->map_rows = (row)->dt_rows, (c)->map_rows_n = (row)->dt_n)
#define USE_SEG_ROWS(c, row) \
    ((c)->map_rows_resolved = (row)->seg_resolved, (c)->map_rows = (row)->seg_rows, (c)->map_rows_n = (row)->seg_n)

/* ------------------------------------------------------------------------- */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------- */

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ULL;
    }
    return h;
}
#define FNV0 1469598103934665603ULL

/* "ORU_R01 OBX[Observation] > OBX[Observation] OBX-5 → valueQuantity > …": the rows that
 * are being applied, for an issue's location and for --explain. */
static const char *rule_text(ctx_t *c) {
    size_t n = (size_t)snprintf(c->rule, sizeof(c->rule), "%s", c->rule_base ? c->rule_base : "");
    int i;
    for (i = 0; i < c->nframes && n < sizeof(c->rule); i++) {
        const hv__map_row_t *r = c->frames[i];
        /* The first frame is the segment map's row (SEG-F), the others data-type rows. */
        if (i == 0 && r->src_f)
            n += (size_t)snprintf(c->rule + n, sizeof(c->rule) - n, " > %s %.3s-%u%s%.0u → %s", r->map, r->map,
                                  r->src_f, r->src_c ? "." : "", r->src_c, r->target);
        else
            n += (size_t)snprintf(c->rule + n, sizeof(c->rule) - n, " > %s %u → %s", r->map, r->src_f, r->target);
        /* A row of mappings/v2/local.tsv or of an override file says where it comes from. */
        if (n < sizeof(c->rule) && r->origin != NULL && strcmp(r->origin, "mappings/v2") != 0)
            n += (size_t)snprintf(c->rule + n, sizeof(c->rule) - n, " (%s)", r->origin);
    }
    return c->rule;
}

static void issue(ctx_t *c, const char *severity, const char *code, const char *where,
                  const char *fmt, ...) HV_PRINTF(5, 6);
static void issue(ctx_t *c, const char *severity, const char *code, const char *where,
                  const char *fmt, ...) {
    char msg[300];
    va_list ap;
    json_object *i, *ex;
    if (json_object_array_length(c->issues) >= MAX_ISSUES) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    i = json_object_new_object();
    hv_json_set_str(i, "severity", severity);
    hv_json_set_str(i, "code", code);
    hv_json_set_str(i, "diagnostics", msg);
    if (where != NULL && where[0]) {
        ex = json_object_new_array();
        json_object_array_add(ex, json_object_new_string(where));
        hv_json_set(i, "location", ex);
    }
    json_object_array_add(c->issues, i);
}

/* The text of a raw span, unescaped (HL7 v2.5.1 §2.7), trimmed; arena. */
static char *span_text(ctx_t *c, span_t s) {
    size_t a = 0, b;
    hv_buf_reset(&c->tmp);
    if (s.p == NULL || s.len == 0) return hv_arena_strdup(c->arena, "");
    if (hv_hl7v2_unescape(&c->msg.delims, s.p, s.len, 0, &c->tmp) != HV_OK || c->tmp.data == NULL)
        return hv_arena_strndup(c->arena, s.p, s.len);
    b = c->tmp.len;
    while (a < b && isspace((unsigned char)c->tmp.data[a])) a++;
    while (b > a && isspace((unsigned char)c->tmp.data[b - 1])) b--;
    return hv_arena_strndup(c->arena, c->tmp.data + a, b - a);
}

static int span_valued(span_t s) {
    size_t i;
    if (s.p == NULL || s.len == 0 || hv_hl7v2_span_is_null(s)) return 0;
    for (i = 0; i < s.len; i++)
        if (!isspace((unsigned char)s.p[i])) return 1;
    return 0;
}

/* The separator that splits a span of the given level: 0 segment → fields, 1 field
 * repetition → components, 2 component → subcomponents, 3 nothing. */
static char level_sep(const ctx_t *c, int level) {
    switch (level) {
    case 0: return c->msg.delims.field;
    case 1: return c->msg.delims.comp;
    case 2: return c->msg.delims.sub;
    default: return 0;
    }
}

/* Field f (1-based) of a segment span, all repetitions. MSH-1 is the separator itself.
 * The fields of the last segment asked for are found in one scan and kept. */
static span_t seg_field(ctx_t *c, span_t seg, unsigned f) {
    span_t out = {NULL, 0};
    int is_msh = seg.len >= 3 && memcmp(seg.p, "MSH", 3) == 0;
    if (f == 0 || seg.p == NULL) return out;
    if (is_msh && f == 1) {
        out.p = seg.p + 3;
        out.len = seg.len > 3 ? 1 : 0;
        return out;
    }
    if (c->fc_seg != seg.p || c->fc_len != seg.len) {
        const char *p = seg.p, *end = seg.p + seg.len;
        c->fc_seg = seg.p;
        c->fc_len = seg.len;
        c->fc_n = 0;
        while (c->fc_n < HV_ARRAY_LEN(c->fc)) {
            const char *q = memchr(p, c->msg.delims.field, (size_t)(end - p));
            c->fc[c->fc_n].p = p;
            c->fc[c->fc_n].len = (size_t)((q ? q : end) - p);
            c->fc_n++;
            if (q == NULL) break;
            p = q + 1;
        }
    }
    f = is_msh ? f - 1 : f;
    if (f < c->fc_n) out = c->fc[f];
    return out;
}

/* Piece i (1-based) of a span at a level; the whole span at level 3 for i == 1. */
static span_t piece(const ctx_t *c, span_t s, int level, unsigned i) {
    span_t out = {NULL, 0};
    char sep = level_sep(c, level);
    if (i == 0 || s.p == NULL) return out;
    if (sep == 0) return i == 1 ? s : out;
    if (hv_hl7v2_span_piece(s, sep, i - 1, &out) != HV_OK) out.p = NULL, out.len = 0;
    return out;
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
static span_t cond_path(ctx_t *c, const hv__cond_op_t *op, span_t seg, span_t dt, int dt_level,
                        size_t *count) {
    span_t v = {NULL, 0}, f;
    *count = 0;
    if (op->kind == HV__COND_COMP) {
        v = piece(c, dt, dt_level, op->a);
        if (op->b) v = piece(c, v, dt_level + 1, op->b);
        *count = span_valued(v) ? 1 : 0;
        return v;
    }
    if (op->kind != HV__COND_FIELD) return v;
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
    f = seg_field(c, seg, op->a);
    if (!span_valued(f)) return v;
    *count = hv_hl7v2_span_count(f, c->msg.delims.rep);
    if (hv_hl7v2_span_piece(f, c->msg.delims.rep, 0, &v) != HV_OK) v.p = NULL, v.len = 0;
    if (op->b) v = piece(c, v, 1, op->b);
    return v;
}

static int val_eq(span_t s, const char *lit, size_t n) {
    return s.p != NULL && s.len == n && strncasecmp(s.p, lit, n) == 0;
}

/*
 * Evaluates a row's condition: the program compiled at load (v2_cond.c), or — for a row
 * made by hand with a condition text and no program — the text compiled now. No
 * condition is true; one that could not be read is false.
 */
static int cond_eval(ctx_t *c, const hv__cond_t *cc, const char *text, span_t seg, span_t dt, int dt_level) {
    val_t st[HV__COND_MAX_STACK];
    int sp = 0;
    size_t i;
    if (cc == NULL) {
        if (text == NULL || text[0] == '\0') return 1;
        if (hv__map_cond_compile(c->arena, text, &cc) != HV_OK || cc == NULL) return cc == NULL;
    }
    if (cc->never) return 0;
    for (i = 0; i < cc->nops; i++) {
        const hv__cond_op_t *op = &cc->ops[i];
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
            st[sp - 1].n = span_valued(st[sp - 1].s);
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

/* ------------------------------------------------------------------------- */
/* Values (FHIR R4 datatypes.html)                                           */
/* ------------------------------------------------------------------------- */

/*
 * HL7 v2 DTM (v2.5.1 §2.A.22: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]) → FHIR
 * date, dateTime, instant or time. A time without an offset is read as UTC (FHIR
 * requires a zone when a time is given). NULL when the text is not a DTM.
 */
static char *dtm_to_fhir(ctx_t *c, const char *s, const char *type) {
    char d[20] = "", tz[8] = "", frac[8] = "";
    size_t n = 0, i;
    const char *p = s;
    char out[48];
    int want_date = strcmp(type, "date") == 0, want_time = strcmp(type, "time") == 0;
    int instant = strcmp(type, "instant") == 0;
    while (isdigit((unsigned char)*p) && n < 14) d[n++] = *p++;
    d[n] = '\0';
    if (*p == '.') {
        p++;
        for (i = 0; isdigit((unsigned char)*p) && i < 4; i++) frac[i] = *p++;
        frac[i] = '\0';
        while (isdigit((unsigned char)*p)) p++;
    }
    if ((*p == '+' || *p == '-') && strlen(p) >= 5 && isdigit((unsigned char)p[1]) &&
        isdigit((unsigned char)p[4])) {
        tz[0] = p[0], tz[1] = p[1], tz[2] = p[2], tz[3] = ':', tz[4] = p[3], tz[5] = p[4], tz[6] = '\0';
        p += 5;
    }
    if (*p != '\0') return NULL;
    if (want_time) {
        if (n < 4 || n % 2) return NULL;
        snprintf(out, sizeof(out), "%.2s:%.2s:%.2s%s%s", d, d + 2, n >= 6 ? d + 4 : "00",
                 frac[0] ? "." : "", frac);
        return hv_arena_strdup(c->arena, out);
    }
    if (n != 4 && n != 6 && n != 8 && n != 10 && n != 12 && n != 14) return NULL;
    if (memcmp(d, "0000", 4) == 0) return NULL; /* FHIR years start at 0001 */
    if (n >= 6 && (memcmp(d + 4, "01", 2) < 0 || memcmp(d + 4, "12", 2) > 0)) return NULL;
    if (n >= 8 && (memcmp(d + 6, "01", 2) < 0 || memcmp(d + 6, "31", 2) > 0)) return NULL;
    if (n >= 10 && memcmp(d + 8, "23", 2) > 0) return NULL;
    if (n >= 12 && memcmp(d + 10, "59", 2) > 0) return NULL;
    if (n >= 14 && memcmp(d + 12, "59", 2) > 0) return NULL;
    if (want_date || n <= 8) {
        if (instant) return NULL;
        if (n == 4) snprintf(out, sizeof(out), "%.4s", d);
        else if (n == 6) snprintf(out, sizeof(out), "%.4s-%.2s", d, d + 4);
        else snprintf(out, sizeof(out), "%.4s-%.2s-%.2s", d, d + 4, d + 6);
        return hv_arena_strdup(c->arena, out);
    }
    {
        /* YYYY-MM-DDThh:mm:ss[.f][zone]: 19 characters, then the fraction and the zone. */
        size_t o = 0, k;
        memcpy(out, d, 4), out[4] = '-', memcpy(out + 5, d + 4, 2), out[7] = '-';
        memcpy(out + 8, d + 6, 2), out[10] = 'T', memcpy(out + 11, d + 8, 2), out[13] = ':';
        memcpy(out + 14, n >= 12 ? d + 10 : "00", 2), out[16] = ':';
        memcpy(out + 17, n >= 14 ? d + 12 : "00", 2);
        o = 19;
        if (frac[0]) {
            out[o++] = '.';
            for (k = 0; frac[k]; k++) out[o++] = frac[k];
        }
        if (tz[0]) {
            memcpy(out + o, tz, 6);
            o += 6;
        } else {
            out[o++] = 'Z';
        }
        out[o] = '\0';
    }
    return hv_arena_strdup(c->arena, out);
}

/* A decimal in FHIR form (json.html#number: no leading '+', no leading '.'). */
static json_object *decimal_value(const char *s) {
    char buf[64];
    size_t o = 0;
    const char *p = s;
    int digits = 0, dot = 0;
    if (*p == '+') p++;
    else if (*p == '-') buf[o++] = *p++;
    if (*p == '.') buf[o++] = '0';
    for (; *p && o < sizeof(buf) - 2; p++) {
        if (isdigit((unsigned char)*p)) digits++;
        else if (*p == '.' && !dot) dot = 1;
        else return NULL;
        buf[o++] = *p;
    }
    if (*p || digits == 0 || buf[o - 1] == '.') return NULL;
    buf[o] = '\0';
    /* Leading zeros are not JSON: "007" → "7". */
    {
        char *q = buf + (buf[0] == '-');
        while (q[0] == '0' && isdigit((unsigned char)q[1])) memmove(q, q + 1, strlen(q));
    }
    return json_object_new_double_s(strtod(buf, NULL), buf);
}

/* HL7 table 0396 coding system names → FHIR system URIs (terminologies.html). */
static const char *const coding_systems[][2] = {
    {"LN", "http://loinc.org"},
    {"LOINC", "http://loinc.org"},
    {"SCT", "http://snomed.info/sct"},
    {"SNM", "http://snomed.info/sct"},
    {"SNOMED", "http://snomed.info/sct"},
    {"I10", "http://hl7.org/fhir/sid/icd-10"},
    {"I10C", "http://hl7.org/fhir/sid/icd-10-cm"},
    {"ICD10CM", "http://hl7.org/fhir/sid/icd-10-cm"},
    {"I9", "http://hl7.org/fhir/sid/icd-9-cm"},
    {"I9C", "http://hl7.org/fhir/sid/icd-9-cm"},
    {"I9CDX", "http://hl7.org/fhir/sid/icd-9-cm"},
    {"C4", "http://www.ama-assn.org/go/cpt"},
    {"CPT", "http://www.ama-assn.org/go/cpt"},
    {"CVX", "http://hl7.org/fhir/sid/cvx"},
    {"MVX", "http://terminology.hl7.org/CodeSystem/MVX"},
    {"NDC", "http://hl7.org/fhir/sid/ndc"},
    {"RXNORM", "http://www.nlm.nih.gov/research/umls/rxnorm"},
    {"RXN", "http://www.nlm.nih.gov/research/umls/rxnorm"},
    {"UCUM", "http://unitsofmeasure.org"},
    {"NUCC", "http://nucc.org/provider-taxonomy"},
    {"NPI", "http://hl7.org/fhir/sid/us-npi"},
    {"CDCREC", "urn:oid:2.16.840.1.113883.6.238"},
    {"ISO3166_1", "urn:iso:std:iso:3166"},
    {"ISO+", "urn:iso:std:iso:11073:10101"},
    {"ISO639", "urn:ietf:bcp:47"},
    {"HCPCS", "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"},
    {"HL7nnnn", ""},
};

static const char *coding_system_uri(ctx_t *c, const char *name) {
    size_t i;
    if (strchr(name, ':') != NULL) return name; /* already a URI */
    if ((name[0] == 'H' || name[0] == 'h') && strncasecmp(name, "HL7", 3) == 0 &&
        strlen(name) == 7 && isdigit((unsigned char)name[3]))
        return hv_arena_sprintf(c->arena, "http://terminology.hl7.org/CodeSystem/v2-%s", name + 3);
    for (i = 0; i < HV_ARRAY_LEN(coding_systems) - 1; i++)
        if (strcasecmp(name, coding_systems[i][0]) == 0) return coding_systems[i][1];
    return hv_arena_sprintf(c->arena, "urn:id:%s", name);
}

/* Makes the JSON value of a primitive of FHIR type tname from text; NULL if the text
 * is not a valid value of that type. */
static json_object *primitive(ctx_t *c, const char *tname, const char *text) {
    size_t i;
    if (text[0] == '\0') return NULL;
    if (!strcmp(tname, "date") || !strcmp(tname, "dateTime") || !strcmp(tname, "instant") ||
        !strcmp(tname, "time")) {
        char *v = dtm_to_fhir(c, text, tname);
        size_t tl = strlen(text);
        /* A value already in FHIR form (a constant of the tables, "2024-01-02"). */
        if (v == NULL && ((tl > 4 && text[4] == '-' && isdigit((unsigned char)text[0])) ||
                          (tl > 2 && text[2] == ':' && isdigit((unsigned char)text[0]))))
            v = (char *)text;
        return v ? json_object_new_string(v) : NULL;
    }
    if (!strcmp(tname, "decimal")) return decimal_value(text);
    if (!strcmp(tname, "integer") || !strcmp(tname, "positiveInt") || !strcmp(tname, "unsignedInt")) {
        char *end;
        long v = strtol(text, &end, 10);
        if (*end || end == text || v < 0 || v > 2147483647L) return NULL;
        if (!strcmp(tname, "positiveInt") && v == 0) return NULL;
        return json_object_new_int((int)v);
    }
    if (!strcmp(tname, "boolean")) {
        if (!strcasecmp(text, "Y") || !strcasecmp(text, "true")) return json_object_new_boolean(1);
        if (!strcasecmp(text, "N") || !strcasecmp(text, "false")) return json_object_new_boolean(0);
        return NULL;
    }
    if (!strcmp(tname, "base64Binary")) {
        size_t k = 0;
        for (i = 0; text[i]; i++) {
            if (isspace((unsigned char)text[i])) continue;
            if (!isalnum((unsigned char)text[i]) && text[i] != '+' && text[i] != '/' && text[i] != '=')
                return NULL;
            k++;
        }
        if (k % 4 != 0) return NULL;
        return json_object_new_string(text);
    }
    for (i = 0; text[i]; i++)
        if ((unsigned char)text[i] < 32 && text[i] != '\n' && text[i] != '\t') return NULL;
    if (!strcmp(tname, "code") || !strcmp(tname, "id") || !strcmp(tname, "uri") ||
        !strcmp(tname, "url") || !strcmp(tname, "canonical") || !strcmp(tname, "oid")) {
        for (i = 0; text[i]; i++)
            if (text[i] == '\n' || text[i] == '\t') return NULL;
        if (!strcmp(tname, "id") && strlen(text) > 64) return NULL;
        if (strcmp(tname, "code") && strchr(text, ' ')) return NULL;
    }
    return json_object_new_string(text);
}

/* ------------------------------------------------------------------------- */
/* Resources and element paths                                               */
/* ------------------------------------------------------------------------- */

static res_t *res_new(ctx_t *c, const char *type, const char *slot) {
    res_t *r;
    const hv_fhir_type_t *t = hv_fhir_resource_type(type);
    if (t == NULL || c->nres >= MAX_RESOURCES) return NULL;
    r = &c->res[c->nres];
    memset(r, 0, sizeof(*r));
    r->type = hv_fhir_type_name(t);
    if (slot != NULL) {
        size_t sl = strnlen(slot, sizeof(r->slot) - 1);
        memcpy(r->slot, slot, sl);
        r->slot[sl] = '\0';
    }
    r->obj = json_object_new_object();
    hv_json_set_str(r->obj, "resourceType", r->type);
    memcpy(r->seg, c->msg.segs[c->cur_seg].id, 3);
    r->seg[3] = '\0';
    r->seg_index = c->cur_seg;
    r->ordinal = c->cur_seg;
    r->merged_into = -1;
    r->order_key = c->order_key;
    {
        /* "#hvtmp-N" */
        char digits[24];
        size_t nd = 0, k = c->nres;
        do digits[nd++] = (char)('0' + k % 10), k /= 10;
        while (k > 0);
        memcpy(r->tmp, "#hvtmp-", 7);
        for (k = 0; k < nd; k++) r->tmp[7 + k] = digits[nd - 1 - k];
        r->tmp[7 + nd] = '\0';
    }
    c->nres++;
    return r;
}

/* The reference to a resource until identities are known ("#hvtmp-N"); noting that it
 * was handed out lets finish() skip looking for dangling references when no resource
 * that anything refers to was left out. */
static const char *ref_to(res_t *r) {
    r->referenced = 1;
    return r->tmp;
}

/* The element object for (owner, name, index, rep): made once, found again by the
 * rows that share it (extension[1].url and extension[1].valueString). */
/*
 * The place of key k in the element slot table: *found is set when k is there; else the
 * free place where it goes (the table doubled first when half full). SIZE_MAX when the
 * table holds its cap of elements per message, or on ENOMEM.
 */
static size_t slot_place(ctx_t *c, uint64_t k, int *found) {
    size_t i, mask = c->slot_mask;
    *found = 0;
    for (i = k & mask;; i = (i + 1) & mask) {
        if (c->slots[i].key == k) {
            *found = 1;
            return i;
        }
        if (c->slots[i].key == 0) break;
    }
    if (c->nslots >= (1u << SLOT_BITS) - 1) return SIZE_MAX; /* full: the cap of elements per message */
    if (2 * (c->nslots + 1) > mask + 1 && mask + 1 < (1u << SLOT_BITS)) {
        /* Half full: double the table (the keys are hashes already) and find the place again. */
        size_t j, nmask = 2 * mask + 1;
        slot_t *ns = hv_calloc(nmask + 1, sizeof(*ns));
        if (ns == NULL) return SIZE_MAX;
        for (j = 0; j <= mask; j++) {
            size_t h;
            if (c->slots[j].key == 0) continue;
            for (h = c->slots[j].key & nmask; ns[h].key != 0; h = (h + 1) & nmask) {}
            ns[h] = c->slots[j];
        }
        hv_free(c->slots);
        c->slots = ns;
        c->slot_mask = mask = nmask;
        for (i = k & mask; c->slots[i].key != 0; i = (i + 1) & mask) {}
    }
    return i;
}

static json_object *slot_get(ctx_t *c, json_object *owner, const char *name, size_t nlen,
                             unsigned idx, unsigned rep, int is_array) {
    uint64_t k = FNV0;
    size_t i;
    int found;
    json_object *arr = NULL, *e;
    char key[64];
    k = fnv(k, &owner, sizeof(owner));
    k = fnv(k, name, nlen);
    k = fnv(k, &idx, sizeof(idx));
    k = fnv(k, &rep, sizeof(rep));
    if (k == 0) k = 1;
    i = slot_place(c, k, &found);
    if (found) return c->slots[i].elem;
    if (i == SIZE_MAX) return NULL;
    if (nlen >= sizeof(key)) return NULL;
    memcpy(key, name, nlen);
    key[nlen] = '\0';
    if (is_array) {
        e = json_object_new_object();
        if (!json_object_object_get_ex(owner, key, &arr) || !json_object_is_type(arr, json_type_array)) {
            arr = json_object_new_array();
            hv_json_set(owner, key, arr);
        }
        json_object_array_add(arr, e);
    } else {
        json_object *old = NULL;
        if (json_object_object_get_ex(owner, key, &old) && json_object_is_type(old, json_type_object)) {
            e = old;
        } else {
            e = json_object_new_object();
            hv_json_set(owner, key, e);
        }
    }
    c->slots[i].key = k;
    c->slots[i].elem = e;
    c->nslots++;
    return e;
}

static void explain_add(ctx_t *c, const char *owner_path, const char *path) {
    json_object *o;
    if (c->explain == NULL) return;
    o = json_object_new_object();
    hv_json_set_str(o, "element", hv_arena_sprintf(c->arena, "%s.%s", owner_path, path));
    hv_json_set_str(o, "rule", rule_text(c));
    json_object_array_add(c->explain, o);
}

typedef struct target {
    json_object *owner;            /* the object holding the element */
    const hv_fhir_elem_t *owner_e; /* its element in the model */
    const char *res_type;          /* the resource type */
    const char *path;              /* the owner's element path, for --explain ("Patient.name") */
    json_object *arr;              /* the array holding owner when it is one repetition, else NULL */
} target_t;

static int apply_map(ctx_t *c, const char *map, span_t v, int level, span_t seg, target_t *tg,
                     const hv_fhir_type_t *ttype, unsigned rep, int depth, const char **prim_out);

/*
 * Evaluates an assignment that concatenates fields of the segment and quoted literals
 * (`OBX-5.1+"-"+OBX-5.2`); NULL for anything else or when no field is valued.
 */
static char *concat_value(ctx_t *c, const char *expr, span_t seg) {
    char out[512];
    size_t o = 0;
    int valued = 0;
    const char *p = expr;
    while (*p) {
        if (*p == '"') {
            const char *q = strchr(p + 1, '"');
            size_t n;
            if (q == NULL) return NULL;
            n = (size_t)(q - p - 1);
            if (o + n >= sizeof(out)) return NULL;
            memcpy(out + o, p + 1, n);
            o += n;
            p = q + 1;
        } else if (strnlen(p, 5) == 5 && isupper((unsigned char)p[0]) && p[3] == '-' &&
                   isdigit((unsigned char)p[4])) {
            char *end;
            unsigned f = (unsigned)strtoul(p + 4, &end, 10), comp = 0;
            span_t v, r0;
            char *t;
            size_t n;
            if (memcmp(p, c->msg.segs[c->cur_seg].id, 3) != 0) return NULL;
            if (*end == '.') comp = (unsigned)strtoul(end + 1, &end, 10);
            v = seg_field(c, seg, f);
            if (hv_hl7v2_span_piece(v, c->msg.delims.rep, 0, &r0) != HV_OK) r0.p = NULL, r0.len = 0;
            if (comp) r0 = piece(c, r0, 1, comp);
            t = span_text(c, r0);
            n = strlen(t);
            if (n) valued = 1;
            if (o + n >= sizeof(out)) return NULL;
            memcpy(out + o, t, n);
            o += n;
            p = end;
        } else {
            return NULL;
        }
        if (*p == '+') p++;
        else if (*p != '\0') return NULL;
    }
    if (!valued) return NULL;
    out[o] = '\0';
    return hv_arena_strdup(c->arena, out);
}

/*
 * The concept map of a row whose target is a Coding or CodeableConcept (PV1-2 → Encounter.class
 * through PatientClass[EncounterClass]: "O" → v3-ActCode AMB): the code the data-type map wrote
 * is looked up; a Coding takes the mapped code, system and display, a CodeableConcept gets the
 * mapped coding first and keeps the one sent. A code the map does not have stays as sent, with
 * a warning unless it came with a coding system of its own.
 */
static void vocab_complex(ctx_t *c, json_object *o, const char *tname, const char *vocab) {
    json_object *codings = NULL, *first, *mapped;
    const hv__vocab_row_t *vr;
    const char *code;
    if (strcmp(tname, "Coding") == 0) {
        first = o;
    } else if (strcmp(tname, "CodeableConcept") == 0) {
        if (!json_object_object_get_ex(o, "coding", &codings) || !json_object_is_type(codings, json_type_array) ||
            json_object_array_length(codings) == 0)
            return;
        first = json_object_array_get_idx(codings, 0);
    } else {
        return;
    }
    code = hv_json_get_str(first, "code");
    if (code == NULL) return;
    vr = hv__vocab_find(c->t, vocab, code);
    /* A code sent with its own coding system (SPM-4 in SNOMED CT) is not a code of the v2
     * table the concept map reads: it is kept, without a warning. */
    if (vr == NULL && hv_json_get_str(first, "system") != NULL) return;
    if (vr == NULL) {
        issue(c, "warning", "code-invalid", rule_text(c), "code '%.40s' has no mapping in %s (kept as sent)", code,
              vocab);
        return;
    }
    mapped = first;
    if (codings != NULL) {
        json_object *arr = json_object_new_array();
        size_t i;
        mapped = json_object_new_object();
        json_object_array_add(arr, mapped);
        for (i = 0; i < json_object_array_length(codings); i++)
            json_object_array_add(arr, json_object_get(json_object_array_get_idx(codings, i)));
        hv_json_set(o, "coding", arr);
    }
    hv_json_set_str(mapped, "code", vr->fcode);
    if (vr->system[0]) hv_json_set_str(mapped, "system", vr->system);
    else json_object_object_del(mapped, "system");
    if (vr->display[0]) hv_json_set_str(mapped, "display", vr->display);
    else json_object_object_del(mapped, "display");
}

/* Repetition n (> 1) of the element tg->owner is one repetition of: a new object appended to
 * tg->arr at the first row that names it, found again by the rows after. */
static json_object *sibling(ctx_t *c, const target_t *tg, unsigned n) {
    uint64_t k = FNV0;
    size_t i;
    int found;
    json_object *e;
    k = fnv(k, &tg->owner, sizeof(tg->owner));
    k = fnv(k, "#sibling", 8);
    k = fnv(k, &n, sizeof(n));
    if (k == 0) k = 1;
    i = slot_place(c, k, &found);
    if (found) return c->slots[i].elem;
    if (i == SIZE_MAX) return NULL;
    e = json_object_new_object();
    json_object_array_add(tg->arr, e);
    c->slots[i].key = k;
    c->slots[i].elem = e;
    c->nslots++;
    return e;
}

/* True when a data-type map has a row for the value itself ("$value"/"$this"), i.e. it
 * converts a value to one primitive; an unknown map counts as such (the value as sent). */
static int map_has_value_rows(ctx_t *c, const char *map) {
    size_t n, i;
    const hv__map_row_t *rows = hv__map_rows(c->t, map, &n);
    if (rows == NULL) return 1;
    for (i = 0; i < n; i++)
        if (!strcmp(rows[i].target, "$value") || !strcmp(rows[i].target, "$this")) return 1;
    return 0;
}

static void apply_row(ctx_t *c, const hv__map_row_t *row, span_t v, int level, span_t seg,
                      target_t *tg, unsigned rep, int depth);

/* The resource whose JSON object is o, NULL when none. */
static res_t *res_of(ctx_t *c, json_object *o) {
    size_t i;
    for (i = c->nres; i-- > 0;)
        if (c->res[i].obj == o) return &c->res[i];
    return NULL;
}

/* Member n (2..MAX_FAMILY) of the family of resource base; made when make is set. */
static res_t *family_member(ctx_t *c, res_t *base, unsigned n, int make) {
    size_t i, bi = (size_t)(base - c->res);
    res_t *m;
    for (i = 0; i < c->nfam; i++)
        if (c->fam[i].base == bi && c->fam[i].n == n && !c->res[c->fam[i].member].dropped)
            return &c->res[c->fam[i].member];
    if (!make || c->nfam >= HV_ARRAY_LEN(c->fam)) return NULL;
    m = res_new(c, base->type, NULL);
    if (m == NULL) return NULL;
    c->fam[c->nfam].base = bi;
    c->fam[c->nfam].member = (size_t)(m - c->res);
    c->fam[c->nfam].n = n;
    c->nfam++;
    return m;
}

/*
 * A row "[a-b].path" of a map that makes a family of resources (HL7 v2-to-FHIR IG PL[Location]:
 * [1] the bed the element references, [2] its room, [3] floor, [4] point of care, [5] building,
 * [6] facility): applied to member n, made at the first row that gives it a value; a range
 * applies to the members that exist. "partOf.reference(Location[m])" rows are set by
 * family_link once the map is done.
 */
static void apply_family(ctx_t *c, const hv__map_row_t *row, span_t v, int level, span_t seg,
                         target_t *tg, unsigned a, unsigned b, const char *rest, unsigned rep, int depth) {
    res_t *base = res_of(c, tg->owner);
    unsigned k;
    if (base == NULL || strncmp(rest, "partOf.reference(", 17) == 0) return;
    for (k = a; k <= b; k++) {
        res_t *m;
        target_t sub = {NULL, NULL, NULL, NULL, NULL};
        hv__map_row_t r2 = *row;
        int made = 0;
        if (k == 1) {
            m = base;
        } else {
            m = family_member(c, base, k, 0);
            if (m == NULL && a == b) {
                m = family_member(c, base, k, 1);
                made = m != NULL;
            }
        }
        if (m == NULL) continue;
        sub.owner = m->obj;
        sub.owner_e = hv_fhir_type_root(hv_fhir_resource_type(m->type));
        sub.res_type = m->type;
        sub.path = m->type;
        r2.target = rest;
        apply_row(c, &r2, v, level, seg, &sub, rep, depth);
        if (made && json_object_object_length(m->obj) <= 1) m->dropped = 1;
    }
}

static void set_ref(json_object *o, const char *name, res_t *to) {
    json_object *ref = json_object_new_object();
    hv_json_set_str(ref, "reference", ref_to(to));
    hv_json_set(o, name, ref);
}

/*
 * After a family map: when the base (the referenced resource) got nothing, the most
 * specific member that did takes its place (a PL with only a facility references the
 * facility); then the map's "[k].partOf.reference(Type[m])" rows link the members that exist.
 */
static void family_link(ctx_t *c, res_t *base, const char *map) {
    size_t who[MAX_FAMILY + 1], i, n, bi = (size_t)(base - c->res);
    const hv__map_row_t *rows;
    unsigned k;
    int any = 0;
    for (k = 0; k <= MAX_FAMILY; k++) who[k] = SIZE_MAX;
    for (i = 0; i < c->nfam; i++)
        if (c->fam[i].base == bi && !c->res[c->fam[i].member].dropped) {
            who[c->fam[i].n] = c->fam[i].member;
            any = 1;
        }
    if (!any) return;
    if (json_object_object_length(base->obj) > 1) {
        who[1] = bi;
    } else {
        for (k = 2; k <= MAX_FAMILY; k++) {
            if (who[k] != SIZE_MAX) {
                json_object *tmp = base->obj;
                base->obj = c->res[who[k]].obj;
                c->res[who[k]].obj = tmp;
                c->res[who[k]].dropped = 1;
                who[k] = bi;
                break;
            }
        }
    }
    rows = hv__map_rows(c->t, map, &n);
    for (i = 0; rows != NULL && i < n; i++) {
        const char *t = rows[i].target, *q;
        unsigned from, to;
        char *end;
        if (t[0] != '[') continue;
        from = (unsigned)strtoul(t + 1, &end, 10);
        if (strncmp(end, "].partOf.reference(", 19) != 0) continue;
        q = strchr(end, '[');
        if (q == NULL) continue;
        to = (unsigned)strtoul(q + 1, NULL, 10);
        if (from == to || from > MAX_FAMILY || to > MAX_FAMILY || who[from] == SIZE_MAX || who[to] == SIZE_MAX)
            continue;
        if (!json_object_object_get_ex(c->res[who[from]].obj, "partOf", NULL))
            set_ref(c->res[who[from]].obj, "partOf", &c->res[who[to]]);
    }
}

/* The ')' that closes the '(' at p, NULL when unbalanced. */
static const char *match_paren(const char *p) {
    int d = 0;
    for (; *p; p++) {
        if (*p == '(') d++;
        else if (*p == ')' && --d == 0) return p;
    }
    return NULL;
}

/*
 * A target step "name[idx](Type[n].path)" (HL7 v2-to-FHIR IG: a value that goes into a
 * resource the element references): the Reference at owner.name[idx] — one per index and
 * repetition, so that the rows naming the same index fill one resource, e.g. NK1-13, -30,
 * -31 and -32 all write contact.organization[1](Organization…) — points at a resource of
 * that type, made at the first row that gives it a value. With no path, the row's
 * data-type map fills the resource; with a path (which may itself hold "(Type…)"), the
 * row is applied to the resource with that path as its target. A resource that ends up
 * empty is left out and the reference removed.
 */
static void apply_in_resource(ctx_t *c, const hv__map_row_t *row, span_t v, int level, span_t seg,
                              json_object *owner, const char *name, size_t nlen, unsigned idx,
                              unsigned rep, int is_array, const char *inner, int depth) {
    char type[40];
    size_t tl = 0;
    const char *rest, *ref;
    json_object *slot;
    res_t *nr = NULL;
    target_t sub = {NULL, NULL, NULL, NULL, NULL};
    int made = 0;
    while (isalpha((unsigned char)inner[tl]) && tl + 1 < sizeof(type)) tl++;
    memcpy(type, inner, tl);
    type[tl] = '\0';
    rest = inner + tl;
    if (*rest == '[') {
        rest = strchr(rest, ']');
        if (rest == NULL) goto unmapped;
        rest++;
    }
    if (*rest != '\0' && *rest != '.') goto unmapped;
    if (*rest == '.') rest++;
    if (hv_fhir_resource_type(type) == NULL) goto unmapped;
    if (*rest == '\0' && row->dtmap[0] == '\0') goto unmapped;
    slot = slot_get(c, owner, name, nlen, idx, rep, is_array);
    if (slot == NULL) return;
    ref = hv_json_get_str(slot, "reference");
    if (ref != NULL && strncmp(ref, "#hvtmp-", 7) == 0) {
        size_t k = strtoul(ref + 7, NULL, 10);
        if (k < c->nres && !c->res[k].dropped && strcmp(c->res[k].type, type) == 0) nr = &c->res[k];
        else goto unmapped;
    }
    if (nr == NULL) {
        nr = res_new(c, type, NULL);
        if (nr == NULL) goto unmapped;
        hv_json_set_str(slot, "reference", ref_to(nr));
        made = 1;
    }
    sub.owner = nr->obj;
    sub.owner_e = hv_fhir_type_root(hv_fhir_resource_type(nr->type));
    sub.res_type = nr->type;
    sub.path = nr->type;
    if (*rest == '\0') {
        USE_DT_ROWS(c, row);
        apply_map(c, row->dtmap, v, level, seg, &sub, hv_fhir_resource_type(nr->type), rep, depth + 1, NULL);
        if (made) family_link(c, nr, row->dtmap);
    } else {
        hv__map_row_t inner_row = *row;
        inner_row.target = hv_arena_strdup(c->arena, rest);
        if (inner_row.target == NULL) return;
        apply_row(c, &inner_row, v, level, seg, &sub, rep, depth + 1);
    }
    if (made && json_object_object_length(nr->obj) <= 1) {
        /* Nothing mapped: the resource is left out (its slot entries stay unique). */
        nr->dropped = 1;
        json_object_object_del(slot, "reference");
    }
    return;
unmapped:
    c->unmapped_rows++;
}

/*
 * Writes one row's value at a target path under tg. The path is a dotted list of
 * steps "name[idx](Type)"; the FHIR model types each step. The last step gets a
 * primitive (converted from text, or from a primitive data-type map) or, for a
 * complex type, the object the data-type map fills; "(Type)" makes a new resource
 * of that type filled by the data-type map and puts a reference to it there.
 */
static void apply_row(ctx_t *c, const hv__map_row_t *row, span_t v, int level, span_t seg,
                      target_t *tg, unsigned rep, int depth) {
    const char *path = row->target;
    json_object *owner = tg->owner;
    const hv_fhir_elem_t *oe = tg->owner_e;
    char pbuf[160];
    const char *p;
    if (row->prim || (path[0] == '$' && (!strcmp(path, "$value") || !strcmp(path, "$this")))) {
        /* "$this" with a data-type map: that map writes into the same object (SPS into Specimen). */
        if (row->dtmap[0] && depth < MAX_DEPTH) {
            USE_DT_ROWS(c, row);
            apply_map(c, row->dtmap, v, level, seg, tg, NULL, rep, depth + 1, NULL);
        }
        return;
    }
    /* An expression: only a concatenation of fields and literals with a condition of its own
     * (OBX-5 VR: OBX-5.1+"-"+OBX-5.2) is evaluated; other expressions are not applied. */
    if (row->assign[0] == '=' && (row->cond[0] == '\0' || concat_value(c, row->assign + 1, seg) == NULL))
        return;
    /* "[1].family" in XPN, "Quantity.code" in CWE[Quantity]: relative to the value itself. */
    if (path[0] == '[') {
        /* "[n].path": member n of the family of resources one map makes (PL[Location]); in a
         * data type, "[1].family" is the value itself. */
        char *end;
        unsigned a = (unsigned)strtoul(path + 1, &end, 10), b = a;
        if (*end == '-') b = (unsigned)strtoul(end + 1, &end, 10);
        if (*end != ']' || end[1] != '.' || a == 0 || b < a || b > MAX_FAMILY) return;
        if (a != 1 || b != 1 || strncmp(end + 2, "partOf.reference(", 17) == 0) {
            if (hv_fhir_elem_parent(oe) == NULL && hv_fhir_resource_type(tg->res_type) != NULL &&
                tg->owner_e == hv_fhir_type_root(hv_fhir_resource_type(tg->res_type)))
                apply_family(c, row, v, level, seg, tg, a, b, end + 2, rep, depth);
            return;
        }
        path = end + 2;
    }
    {
        const char *tn = hv_fhir_type_name(hv_fhir_elem_owner_type(oe));
        size_t tl = strlen(tn);
        if (hv_fhir_elem_parent(oe) == NULL && strncmp(path, tn, tl) == 0 && path[tl] == '.')
            path += tl + 1;
    }
    {
        size_t pl = strlen(path);
        if (pl >= sizeof(pbuf)) return;
        memcpy(pbuf, path, pl + 1);
    }
    p = pbuf;
    while (*p) {
        const char *dot = strchr(p, '.'), *br, *par;
        size_t seglen, nlen;
        unsigned idx = 1;
        const hv_fhir_elem_t *e;
        const hv_fhir_type_t *chosen = NULL;
        char rtype[160] = "";
        int last;
        /* A step "name[idx](Type[n].path)": the parentheses hold a resource and a path in it,
         * possibly with parentheses of their own; they close at the end of the target. */
        par = strchr(p, '(');
        if (par != NULL && (dot == NULL || par < dot)) {
            const char *close = match_paren(par);
            if (close == NULL || close[1] != '\0') goto unmapped;
            dot = NULL;
        }
        seglen = dot ? (size_t)(dot - p) : strlen(p);
        last = dot == NULL;
        nlen = seglen;
        br = memchr(p, '[', seglen);
        par = memchr(p, '(', seglen);
        if (par != NULL) {
            size_t rl = seglen - (size_t)(par - p) - 2;
            if (rl >= sizeof(rtype)) goto unmapped;
            memcpy(rtype, par + 1, rl);
            rtype[rl] = '\0';
            nlen = (size_t)(par - p);
        }
        if (br != NULL && (par == NULL || br < par)) {
            char *end;
            idx = (unsigned)strtoul(br + 1, &end, 10);
            if (*end != ']' || idx == 0) idx = 1; /* "[each]", "[1-3]": the first */
            nlen = (size_t)(br - p);
        }
        e = hv_fhir_elem_child(oe, p, nlen, &chosen);
        if (e == NULL || chosen == NULL) goto unmapped;
        if (p == pbuf && idx > 1 && !hv_fhir_elem_is_array(e) && tg->arr != NULL) {
            /* "value[2]" in HD[Identifier]: the element of the owner's repetition n (HD.1 →
             * identifier[1].value, HD.2 → identifier[2].value), a sibling in the same array. */
            owner = sibling(c, tg, idx);
            if (owner == NULL) return;
            idx = 1;
        }
        if (rtype[0]) {
            if (!last || strcmp(hv_fhir_type_name(chosen), "Reference") != 0 || depth >= MAX_DEPTH)
                goto unmapped;
            apply_in_resource(c, row, v, level, seg, owner, p, nlen, idx, rep, hv_fhir_elem_is_array(e),
                              rtype, depth);
            return;
        }
        if (hv_fhir_type_kind(chosen) == HV_FHIR_KIND_PRIMITIVE) {
            char key[64];
            const char *text = NULL, *tname = hv_fhir_type_name(chosen);
            json_object *val;
            if (!last) {
                /* "birthDate.extension": primitive extensions are not mapped. */
                goto unmapped;
            }
            if (nlen >= sizeof(key)) goto unmapped;
            memcpy(key, p, nlen);
            key[nlen] = '\0';
            if (row->assign[0] == '=') {
                text = concat_value(c, row->assign + 1, seg);
            } else if (row->assign[0]) {
                text = row->assign;
            } else if (row->dtmap[0] && depth < MAX_DEPTH && !map_has_value_rows(c, row->dtmap)) {
                /* A map of the parts of one repeating primitive (XAD.1 SAD → line[1-3]: SAD.1,
                 * .2, .3 → line[1], line[2], line[3]) writes them into the owner itself. */
                target_t same = {owner, oe, tg->res_type, tg->path, NULL};
                apply_map(c, row->dtmap, v, level, seg, &same, NULL, rep, depth + 1, NULL);
                return;
            } else if (row->dtmap[0] && depth < MAX_DEPTH) {
                USE_DT_ROWS(c, row);
                apply_map(c, row->dtmap, v, level, seg, tg, chosen, rep, depth + 1, &text);
            } else {
                span_t first = piece(c, v, level, 1);
                if (level == 1) {
                    /* A primitive from a whole field repetition: its first component. */
                    text = span_text(c, first);
                } else {
                    text = span_text(c, level >= 3 ? v : first);
                }
            }
            if (text == NULL || text[0] == '\0') return;
            /* A concept map the IG names but does not publish (PrimaryLanguage): the code as sent. */
            if (row->vocab[0] && hv__vocab_known(c->t, row->vocab)) {
                const hv__vocab_row_t *vr = hv__vocab_find(c->t, row->vocab, text);
                if (vr == NULL) {
                    issue(c, "warning", "code-invalid", rule_text(c), "code '%.40s' has no mapping in %s",
                          text, row->vocab);
                    return;
                }
                text = vr->fcode;
            }
            if (!strcmp(key, "system") && !row->assign[0] &&
                !strcmp(hv_fhir_type_name(hv_fhir_elem_owner_type(oe)), "Coding"))
                text = coding_system_uri(c, text);
            if (!strcmp(tname, "code") && hv_fhir_elem_binding(e) != NULL &&
                hv_fhir_binding_strength(hv_fhir_elem_binding(e)) == HV_FHIR_BIND_REQUIRED &&
                hv_fhir_binding_has(hv_fhir_elem_binding(e), NULL, text) == 0) {
                issue(c, "warning", "code-invalid", rule_text(c),
                      "code '%.40s' is not in the value set FHIR requires for %s", text, key);
                return;
            }
            val = primitive(c, tname, text);
            if (val == NULL) {
                issue(c, "warning", "value", rule_text(c), "value not valid as FHIR %s", tname);
                return;
            }
            if (hv_fhir_elem_is_array(e)) {
                json_object *arr = NULL;
                if (!json_object_object_get_ex(owner, key, &arr) ||
                    !json_object_is_type(arr, json_type_array)) {
                    arr = json_object_new_array();
                    hv_json_set(owner, key, arr);
                }
                /* given[1], given[2]: positions; a repeated value is not added twice. */
                {
                    size_t k, nn = json_object_array_length(arr);
                    for (k = 0; k < nn; k++)
                        if (json_object_equal(json_object_array_get_idx(arr, k), val)) {
                            json_object_put(val);
                            return;
                        }
                }
                json_object_array_add(arr, val);
            } else {
                hv_json_set(owner, key, val);
            }
            explain_add(c, tg->path, path);
            return;
        }
        /* A complex element: step into it. */
        {
            json_object *o = slot_get(c, owner, p, nlen, idx, rep, hv_fhir_elem_is_array(e));
            json_object *parent = owner;
            if (o == NULL) return;
            owner = o;
            oe = hv_fhir_elem_owner(e, chosen);
            if (oe == NULL) goto unmapped;
            if (last) {
                if (row->dtmap[0] && depth < MAX_DEPTH) {
                    target_t sub = {owner, oe, tg->res_type, NULL, NULL};
                    json_object *holder = NULL;
                    char hk[64];
                    if (hv_fhir_elem_is_array(e) && nlen < sizeof(hk)) {
                        memcpy(hk, p, nlen);
                        hk[nlen] = '\0';
                        if (json_object_object_get_ex(parent, hk, &holder))
                            sub.arr = holder;
                    }
                    sub.path = c->explain ? hv_arena_sprintf(c->arena, "%s.%s", tg->path, path) : tg->path;
                    USE_DT_ROWS(c, row);
                    apply_map(c, row->dtmap, v, level, seg, &sub, chosen, rep, depth + 1, NULL);
                    if (row->vocab[0] && hv__vocab_known(c->t, row->vocab))
                        vocab_complex(c, owner, hv_fhir_type_name(chosen), row->vocab);
                } else if (row->assign[0] || row->dtmap[0] == '\0') {
                    goto unmapped;
                }
                return;
            }
        }
        p = dot + 1;
    }
    return;
unmapped:
    c->unmapped_rows++;
}

/*
 * Applies the rows of a map to value v (a segment at level 0, a field repetition at
 * level 1, a component at level 2). For a primitive target (ttype primitive) only
 * the "$value" rows count: the first that gives text sets *prim_out.
 */
static int apply_map(ctx_t *c, const char *map, span_t v, int level, span_t seg, target_t *tg,
                     const hv_fhir_type_t *ttype, unsigned rep, int depth, const char **prim_out) {
    size_t n, i;
    int fr = c->nframes;
    const hv__map_row_t *rows;
    /* The rows were found at load when the map is a loaded row's data-type or segment map. */
    if (c->map_rows_resolved) {
        rows = c->map_rows;
        n = c->map_rows_n;
        c->map_rows_resolved = 0;
    } else {
        rows = hv__map_rows(c->t, map, &n);
    }
    (void)ttype;
    if (rows == NULL || depth > MAX_DEPTH) {
        if (prim_out != NULL) *prim_out = span_text(c, piece(c, v, level, 1));
        return HV_ENOTFOUND;
    }
    for (i = 0; i < n; i++) {
        const hv__map_row_t *row = &rows[i];
        span_t f = {NULL, 0};
        int is_prim_row = row->prim;
        if (prim_out != NULL && !is_prim_row) continue;
        if (prim_out == NULL && is_prim_row && row->dtmap[0] == '\0') continue;
        if (level == 0) {
            if (row->src_f == 0) {
                if (!row->assign[0] || !cond_eval(c, row->cc, row->cond, seg, v, level)) continue;
                if (fr < (int)HV_ARRAY_LEN(c->frames)) c->frames[c->nframes++] = row;
                apply_row(c, row, v, level, seg, tg, 0, depth);
                c->nframes = fr;
                continue;
            }
            f = seg_field(c, seg, row->src_f);
            if (!span_valued(f)) continue;
            if (!cond_eval(c, row->cc, row->cond, seg, v, level)) continue;
            if (fr < (int)HV_ARRAY_LEN(c->frames)) c->frames[c->nframes++] = row;
            if (seg.len >= 3 && memcmp(seg.p, "MSH", 3) == 0 && row->src_f <= 2) {
                apply_row(c, row, f, 3, seg, tg, 0, depth);
            } else {
                size_t r, nr = hv_hl7v2_span_count(f, c->msg.delims.rep);
                if (nr > MAX_REPS) nr = MAX_REPS;
                for (r = 0; r < nr; r++) {
                    span_t rv;
                    if (hv_hl7v2_span_piece(f, c->msg.delims.rep, r, &rv) != HV_OK || !span_valued(rv))
                        continue;
                    if (row->src_c) {
                        rv = piece(c, rv, 1, row->src_c);
                        if (!span_valued(rv)) continue;
                        apply_row(c, row, rv, 2, seg, tg, (unsigned)r, depth);
                    } else {
                        apply_row(c, row, rv, 1, seg, tg, (unsigned)r, depth);
                    }
                }
            }
            c->nframes = fr;
            continue;
        }
        /* A data-type map: the source is a component (or subcomponent) of v. */
        if (row->src_f == 0) {
            f = v;
        } else {
            f = piece(c, v, level, row->src_f);
            if (row->src_c) f = piece(c, f, level + 1, row->src_c);
        }
        if (!span_valued(f)) continue;
        if (!cond_eval(c, row->cc, row->cond, seg, v, level)) continue;
        if (is_prim_row && prim_out != NULL) {
            char *text;
            if (row->assign[0] == '=') {
                /* "urn:oid:"+HD.2 style: the two expressions the tables use for HD. */
                if (strstr(row->assign, "urn:oid:") != NULL)
                    text = hv_arena_sprintf(c->arena, "urn:oid:%s", span_text(c, f));
                else if (strstr(row->assign, "urn:uuid:") != NULL)
                    text = hv_arena_sprintf(c->arena, "urn:uuid:%s", span_text(c, f));
                else
                    text = span_text(c, level + (row->src_f ? 1 : 0) >= 3 ? f : piece(c, f, level + (row->src_f ? 1 : 0), 1));
            } else if (row->assign[0]) {
                text = hv_arena_strdup(c->arena, row->assign);
            } else {
                int fl = level + (row->src_f ? 1 : 0);
                text = span_text(c, fl >= 3 ? f : piece(c, f, fl, 1));
            }
            if (text != NULL && text[0]) {
                *prim_out = text;
                return HV_OK;
            }
            continue;
        }
        if (fr < (int)HV_ARRAY_LEN(c->frames)) c->frames[c->nframes++] = row;
        apply_row(c, row, f, row->src_f ? level + 1 : level, seg, tg, rep, depth);
        c->nframes = fr;
    }
    if (prim_out != NULL && *prim_out == NULL) *prim_out = span_text(c, piece(c, v, level, 1));
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Message structure                                                         */
/* ------------------------------------------------------------------------- */

/* Structures the tables do not have, read with the table of one that has the same
 * segments for what matters here (HL7 v2.5.1 chapter 3 message structures). */
static const char *const aliases[][2] = {
    {"ADT_A03", "ADT_A01"}, {"ADT_A04", "ADT_A01"}, {"ADT_A08", "ADT_A01"}, {"ADT_A13", "ADT_A01"},
    {"ADT_A28", "ADT_A05"}, {"ADT_A31", "ADT_A05"}, {"ADT_A14", "ADT_A05"}, {"ADT_A39", "ADT_A01"},
    {"ADT_A40", "ADT_A01"}, {"ADT_A30", "ADT_A01"}, {"ADT_A12", "ADT_A09"}, {"ADT_A10", "ADT_A09"},
    {"MDM_T01", "MDM_T02"}, {"MDM_T06", "MDM_T02"}, {"MDM_T08", "MDM_T02"}, {"MDM_T04", "MDM_T02"},
    {"SIU_S13", "SIU_S12"}, {"SIU_S14", "SIU_S12"}, {"SIU_S15", "SIU_S12"}, {"SIU_S17", "SIU_S12"},
    {"SIU_S26", "SIU_S12"}, {"ORU_R30", "ORU_R01"}, {"OUL_R22", "ORU_R01"}, {"DFT_P03", "ADT_A01"},
    {"DFT_P11", "ADT_A01"}, {"BAR_P01", "ADT_A01"}, {"BAR_P12", "ADT_A01"}, {"VXU_V04", "VXU_V04"},
};

static void pick_structure(ctx_t *c, const char *forced) {
    char *s3 = NULL, *s1 = NULL, *s2 = NULL;
    size_t i;
    hv_hl7v2_get_text(&c->msg, "MSH-9.3", &s3, NULL);
    hv_hl7v2_get_text(&c->msg, "MSH-9.1", &s1, NULL);
    hv_hl7v2_get_text(&c->msg, "MSH-9.2", &s2, NULL);
    snprintf(c->trigger, sizeof(c->trigger), "%.7s", s2 ? s2 : "");
    if (forced != NULL && forced[0]) s3 = (char *)forced;
    if (s3 != NULL && s3[0] && hv__msg_structure_known(c->t, s3))
        snprintf(c->structure, sizeof(c->structure), "%.15s", s3);
    else
        snprintf(c->structure, sizeof(c->structure), "%.3s_%.7s", s1 ? s1 : "", s2 ? s2 : "");
    if (hv__msg_structure_known(c->t, c->structure)) return;
    for (i = 0; i < HV_ARRAY_LEN(aliases); i++) {
        if (strcmp(c->structure, aliases[i][0]) == 0) {
            snprintf(c->structure, sizeof(c->structure), "%s", aliases[i][1]);
            return;
        }
    }
    if (strncmp(c->structure, "ADT", 3) == 0) snprintf(c->structure, sizeof(c->structure), "ADT_A01");
}

static size_t common_prefix(const char *a, const char *b) {
    size_t n = 0, last = 0;
    while (a[n] && a[n] == b[n]) {
        n++;
        if (a[n] == '.' || a[n] == '\0') last = n;
    }
    return last;
}

static res_t *slot_find(ctx_t *c, const char *slot) {
    size_t i;
    for (i = c->nres; i-- > 0;)
        if (!c->res[i].dropped && strcmp(c->res[i].slot, slot) == 0) return &c->res[i];
    return NULL;
}

/* "Patient[1]" → that slot; "DiagnosticReport" → the latest resource of that type. */
static res_t *res_lookup(ctx_t *c, const char *name, size_t n) {
    char buf[48];
    size_t i;
    if (n >= sizeof(buf)) return NULL;
    memcpy(buf, name, n);
    buf[n] = '\0';
    if (strchr(buf, '[') != NULL) {
        res_t *r = slot_find(c, buf);
        if (r != NULL) return r;
        *strchr(buf, '[') = '\0';
    }
    for (i = c->nres; i-- > 0;)
        if (!c->res[i].dropped && c->res[i].slot[0] && strcmp(c->res[i].type, buf) == 0)
            return &c->res[i];
    return NULL;
}

/* Sets one "A.path.reference=B.id" of a message row (HL7 v2-to-FHIR message tables). */
static void apply_ref(ctx_t *c, const char *ref) {
    const char *eq = strchr(ref, '='), *dot;
    res_t *a, *b;
    const hv_fhir_elem_t *oe;
    json_object *owner;
    char path[128];
    char *p, *step;
    size_t plen;
    if (eq == NULL || strchr(ref, '(') != NULL) return;
    if (strcmp(eq + strlen(eq) - 3, ".id") != 0) return;
    dot = strchr(ref, '.');
    if (dot == NULL || dot > eq) return;
    plen = (size_t)(eq - dot - 1);
    if (plen < 10 || plen >= sizeof(path) || strncmp(eq - 10, ".reference", 10) != 0) return;
    a = res_lookup(c, ref, (size_t)(dot - ref));
    b = res_lookup(c, eq + 1, strlen(eq + 1) - 3);
    if (a == NULL || b == NULL || a == b) return;
    if (json_object_object_length(a->obj) <= 1 || json_object_object_length(b->obj) <= 1) return;
    memcpy(path, dot + 1, plen - 10);
    path[plen - 10] = '\0';
    owner = a->obj;
    oe = hv_fhir_type_root(hv_fhir_resource_type(a->type));
    for (step = strtok_r(path, ".", &p); step != NULL; step = strtok_r(NULL, ".", &p)) {
        const hv_fhir_type_t *chosen = NULL;
        const hv_fhir_elem_t *e;
        char *br = strchr(step, '[');
        int last = p == NULL || *p == '\0';
        json_object *o = NULL;
        if (br) *br = '\0';
        e = hv_fhir_elem_child(oe, step, strlen(step), &chosen);
        if (e == NULL || chosen == NULL) return;
        if (last) {
            size_t i, n;
            json_object *arr = NULL, *r;
            if (strcmp(hv_fhir_type_name(chosen), "Reference") != 0) return;
            /* The target type must be one the element allows. */
            n = hv_fhir_elem_target_count(e, 0);
            for (i = 0; i < n; i++)
                if (strcmp(hv_fhir_type_name(hv_fhir_elem_target_at(e, 0, i)), b->type) == 0 ||
                    strcmp(hv_fhir_type_name(hv_fhir_elem_target_at(e, 0, i)), "Resource") == 0)
                    break;
            if (n > 0 && i == n) return;
            if (hv_fhir_elem_is_array(e)) {
                if (!json_object_object_get_ex(owner, step, &arr)) {
                    arr = json_object_new_array();
                    hv_json_set(owner, step, arr);
                }
                for (i = 0; i < json_object_array_length(arr); i++) {
                    const char *s = hv_json_get_str(json_object_array_get_idx(arr, i), "reference");
                    if (s && strcmp(s, b->tmp) == 0) return;
                }
                r = json_object_new_object();
                hv_json_set_str(r, "reference", ref_to(b));
                json_object_array_add(arr, r);
            } else {
                if (json_object_object_get_ex(owner, step, &o)) return; /* set already */
                r = json_object_new_object();
                hv_json_set_str(r, "reference", ref_to(b));
                hv_json_set(owner, step, r);
            }
            return;
        }
        if (hv_fhir_elem_is_array(e)) {
            json_object *arr = NULL;
            if (!json_object_object_get_ex(owner, step, &arr)) {
                arr = json_object_new_array();
                hv_json_set(owner, step, arr);
            }
            if (json_object_array_length(arr) == 0) json_object_array_add(arr, json_object_new_object());
            o = json_object_array_get_idx(arr, 0);
        } else if (!json_object_object_get_ex(owner, step, &o)) {
            o = json_object_new_object();
            hv_json_set(owner, step, o);
        }
        owner = o;
        oe = hv_fhir_elem_owner(e, chosen);
        if (oe == NULL) return;
    }
}

/* The order a segment belongs to (ORC-2/ORC-3/OBR-2/OBR-3 raw), for ids of results. */
static void note_order(ctx_t *c, span_t seg) {
    const char *id = c->msg.segs[c->cur_seg].id;
    span_t a, b;
    if (strcmp(id, "ORC") != 0 && strcmp(id, "OBR") != 0 && strcmp(id, "RXA") != 0 &&
        strcmp(id, "SCH") != 0 && strcmp(id, "TXA") != 0)
        return;
    a = seg_field(c, seg, strcmp(id, "TXA") == 0 ? 12 : 2);
    b = seg_field(c, seg, 3);
    if (!span_valued(a) && !span_valued(b)) return;
    c->order_key = hv_arena_sprintf(c->arena, "%.*s|%.*s", (int)a.len, a.p ? a.p : "", (int)b.len,
                                    b.p ? b.p : "");
}

static void map_segment(ctx_t *c, size_t si, char *group, size_t group_cap) {
    static const char *const fallback[] = {"ADT_A01", "ORU_R01"};
    const hv_hl7v2_seg_t *sg = &c->msg.segs[si];
    span_t seg = {sg->p, sg->len};
    const hv__msg_row_t *rows;
    size_t n, i, best = 0, fb;
    const char *structure = c->structure, *chosen = NULL;
    c->cur_seg = si;
    note_order(c, seg);
    rows = hv__msg_rows(c->t, structure, sg->id, &n);
    for (fb = 0; rows == NULL && fb < HV_ARRAY_LEN(fallback); fb++) {
        structure = fallback[fb];
        rows = hv__msg_rows(c->t, structure, sg->id, &n);
    }
    if (rows == NULL) {
        if (strcmp(sg->id, "MSH") && strcmp(sg->id, "EVN") && sg->id[0] != 'Z')
            issue(c, "information", "not-supported", sg->id, "segment %s is not mapped", sg->id);
        return;
    }
    /* The group of this occurrence: the candidate closest to the previous segment's group. */
    for (i = 0; i < n; i++) {
        size_t cp = common_prefix(rows[i].group, group);
        if (chosen == NULL || cp > best) {
            best = cp;
            chosen = rows[i].group;
        }
    }
    snprintf(group, group_cap, "%s.%s", chosen, sg->id);
    for (i = 0; i < n; i++) {
        const hv__msg_row_t *row = &rows[i];
        char type[40];
        const char *br;
        res_t *r;
        target_t tg;
        size_t before;
        int had_prev;
        if (strcmp(row->group, chosen) != 0) continue;
        if (!cond_eval(c, row->cc, row->cond, seg, seg, 0)) continue;
        if (strcmp(row->target, "Bundle") == 0) {
            tg.owner = c->bundle_obj;
            tg.arr = NULL;
            tg.owner_e = hv_fhir_type_root(hv_fhir_resource_type("Bundle"));
            tg.res_type = "Bundle";
            tg.path = "Bundle";
            c->rule_base = row->segmap;
            c->nframes = 0;
            USE_SEG_ROWS(c, row);
            USE_SEG_ROWS(c, row);
        apply_map(c, row->segmap, seg, 0, seg, &tg, NULL, 0, 0, NULL);
            continue;
        }
        if (strpbrk(row->target, ".(") != NULL) continue; /* element targets: not mapped */
        br = strchr(row->target, '[');
        {
            size_t tl = br ? (size_t)(br - row->target) : strlen(row->target);
            if (tl >= sizeof(type)) tl = sizeof(type) - 1;
            memcpy(type, row->target, tl);
            type[tl] = '\0';
        }
        r = slot_find(c, row->target);
        had_prev = r != NULL;
        if (r != NULL && strcmp(r->seg, sg->id) == 0 && r->seg_index != si) r = NULL;
        before = c->nres;
        if (r == NULL) {
            r = res_new(c, type, row->target);
            if (r == NULL) continue;
        }
        tg.owner = r->obj;
        tg.arr = NULL;
        tg.owner_e = hv_fhir_type_root(hv_fhir_resource_type(r->type));
        tg.res_type = r->type;
        tg.path = r->type;
        c->rule_base = row->segmap; /* the structure is in the message; keep this cheap */
        c->nframes = 0;
        USE_SEG_ROWS(c, row);
        apply_map(c, row->segmap, seg, 0, seg, &tg, NULL, 0, 0, NULL);
        if (c->nres > before && json_object_object_length(c->res[before].obj) <= 1 &&
            c->res[before].obj == r->obj &&
            !(c->lenient && !had_prev && strcmp(r->type, "Patient") == 0 && strcmp(sg->id, "PID") == 0)) {
            /* This row made nothing: the slot stays free for the next row. */
            r->dropped = 1;
            r->slot[0] = '\0';
        }
        if (row->refs[0]) {
            char *refs = hv_arena_strdup(c->arena, row->refs), *save = NULL, *one;
            for (one = strtok_r(refs, ";", &save); one; one = strtok_r(NULL, ";", &save)) {
                while (*one == ' ') one++;
                {
                    size_t l = strlen(one);
                    while (l && one[l - 1] == ' ') one[--l] = '\0';
                }
                apply_ref(c, one);
            }
        }
    }
}

/* ------------------------------------------------------------------------- */
/* Finishing: defaults, pruning, identities, the Bundle                      */
/* ------------------------------------------------------------------------- */

/*
 * Values FHIR requires that a v2 message often leaves out (FHIR R4 resource
 * definitions, min 1): set only when the mapping gave none, so that the resource
 * stays valid and storable. Encounter.status comes from the trigger event below.
 */
static const char *const defaults[][3] = {
    {"Observation", "status", "\"unknown\""},
    {"DiagnosticReport", "status", "\"unknown\""},
    {"ServiceRequest", "status", "\"unknown\""},
    {"ServiceRequest", "intent", "\"order\""},
    {"MedicationRequest", "status", "\"unknown\""},
    {"MedicationRequest", "intent", "\"order\""},
    {"Immunization", "status", "\"completed\""},
    {"DocumentReference", "status", "\"current\""},
    {"Coverage", "status", "\"active\""},
    {"Account", "status", "\"active\""},
    {"EpisodeOfCare", "status", "\"active\""},
    {"Procedure", "status", "\"unknown\""},
    {"Appointment", "status", "\"booked\""},
    {"Encounter", "class",
     "{\"system\":\"http://terminology.hl7.org/CodeSystem/v3-NullFlavor\",\"code\":\"UNK\"}"},
};

/* Encounter.status by trigger event (HL7 v2.5.1 §3.3; FHIR encounter-status). */
static const char *encounter_status(const char *trigger) {
    if (!strcmp(trigger, "A03")) return "finished";
    if (!strcmp(trigger, "A05") || !strcmp(trigger, "A14")) return "planned";
    if (!strcmp(trigger, "A11") || !strcmp(trigger, "A27") || !strcmp(trigger, "A38")) return "cancelled";
    if (!strcmp(trigger, "A01") || !strcmp(trigger, "A02") || !strcmp(trigger, "A04") ||
        !strcmp(trigger, "A06") || !strcmp(trigger, "A07") || !strcmp(trigger, "A08") ||
        !strcmp(trigger, "A13"))
        return "in-progress";
    return "unknown";
}

static void apply_defaults(ctx_t *c, res_t *r) {
    size_t i;
    json_object *v;
    for (i = 0; i < HV_ARRAY_LEN(defaults); i++) {
        if (strcmp(r->type, defaults[i][0]) != 0) continue;
        if (json_object_object_get_ex(r->obj, defaults[i][1], NULL)) continue;
        v = json_tokener_parse(defaults[i][2]);
        if (v != NULL) hv_json_set(r->obj, defaults[i][1], v);
    }
    if (strcmp(r->type, "Encounter") == 0) {
        const char *st = encounter_status(c->trigger);
        /* A11 cancels the visit, A13 cancels the discharge: the trigger decides. */
        if (!strcmp(c->trigger, "A11") || !strcmp(c->trigger, "A13") ||
            !json_object_object_get_ex(r->obj, "status", NULL))
            hv_json_set_str(r->obj, "status", st);
        if (!strcmp(c->trigger, "A13")) {
            json_object *per = NULL;
            if (json_object_object_get_ex(r->obj, "period", &per)) json_object_object_del(per, "end");
        }
    }
}

static int has_choice(json_object *o, const char *name, size_t l) {
    json_object_object_foreach(o, k, v) {
        (void)v;
        if (strncmp(k, name, l) == 0 && k[l] >= 'A' && k[l] <= 'Z') return 1;
    }
    return 0;
}

/*
 * Cleans one object the mapping wrote, with its element in the FHIR model: removes
 * empty objects and arrays, extensions without a value (FHIR ext-1), and any object
 * that lacks an element FHIR requires in it (min ≥ 1), so that what a partial v2
 * value gives is left out rather than written invalid. Returns 1 when the object
 * itself must go. *missing (may be NULL) names the first required element missing.
 */
/* The model types clean_node repairs, found once. */
static const hv_fhir_type_t *ty_contactpoint, *ty_duration, *ty_extension;
static pthread_once_t ty_once = PTHREAD_ONCE_INIT;
static void find_types(void) {
    ty_contactpoint = hv_fhir_type_find("ContactPoint", 12);
    ty_duration = hv_fhir_type_find("Duration", 8);
    ty_extension = hv_fhir_type_find("Extension", 9);
}

static int clean_node(json_object *o, const hv_fhir_elem_t *owner, const char **missing) {
    struct lh_entry *e, *next;
    size_t i, n;
    const hv_fhir_type_t *otype;
    int type_root;
    if (owner == NULL) return 0;
    pthread_once(&ty_once, find_types);
    for (e = json_object_get_object(o)->head; e != NULL; e = next) {
        json_object *v = (json_object *)lh_entry_v(e);
        const char *k = (const char *)lh_entry_k(e);
        const hv_fhir_type_t *chosen = NULL;
        const hv_fhir_elem_t *el, *sub;
        next = e->next;
        if (!strcmp(k, "resourceType") || !strcmp(k, "id")) continue;
        el = hv_fhir_elem_child(owner, k, strlen(k), &chosen);
        if (el == NULL) {
            json_object_object_del(o, k);
            continue;
        }
        sub = chosen != NULL && hv_fhir_type_kind(chosen) != HV_FHIR_KIND_PRIMITIVE
                  ? hv_fhir_elem_owner(el, chosen)
                  : NULL;
        if (json_object_is_type(v, json_type_array)) {
            size_t j = json_object_array_length(v);
            while (j-- > 0) {
                json_object *it = json_object_array_get_idx(v, j);
                if (json_object_is_type(it, json_type_object) && sub != NULL &&
                    clean_node(it, sub, NULL))
                    json_object_array_del_idx(v, j, 1);
            }
            if (json_object_array_length(v) == 0) json_object_object_del(o, k);
        } else if (json_object_is_type(v, json_type_object)) {
            if (sub == NULL || clean_node(v, sub, NULL)) json_object_object_del(o, k);
        }
    }
    if (json_object_object_length(o) == 0) return 1;
    otype = hv_fhir_elem_owner_type(owner);
    type_root = hv_fhir_elem_parent(owner) == NULL;
    /* FHIR cpt-2: a ContactPoint with a value needs a system; XTN.3 may be empty. */
    if (otype == ty_contactpoint && type_root && hv_json_get_str(o, "value") != NULL &&
        !json_object_object_get_ex(o, "system", NULL))
        hv_json_set_str(o, "system", strchr(hv_json_get_str(o, "value"), '@') ? "email" : "phone");
    /* FHIR pat-1: a contact has a name, telecom, address or organization. */
    if (!type_root && !strcmp(hv_fhir_elem_path(owner), "Patient.contact") &&
        !json_object_object_get_ex(o, "name", NULL) && !json_object_object_get_ex(o, "telecom", NULL) &&
        !json_object_object_get_ex(o, "address", NULL) &&
        !json_object_object_get_ex(o, "organization", NULL))
        return 1;
    /* FHIR tim-8 (countMax needs count) and tim-10 (timeOfDay or when, not both). */
    if (!type_root && !strcmp(hv_fhir_elem_path(owner), "Timing.repeat")) {
        if (json_object_object_get_ex(o, "countMax", NULL) && !json_object_object_get_ex(o, "count", NULL))
            json_object_object_del(o, "countMax");
        if (json_object_object_get_ex(o, "timeOfDay", NULL)) json_object_object_del(o, "when");
        if (json_object_object_length(o) == 0) return 1;
    }
    /* FHIR drt-1: a Duration needs a UCUM code. */
    if (otype == ty_duration && type_root &&
        (hv_json_get_str(o, "code") == NULL || hv_json_get_str(o, "system") == NULL ||
         strcmp(hv_json_get_str(o, "system"), "http://unitsofmeasure.org") != 0))
        return 1;
    if (otype == ty_extension && type_root && !has_choice(o, "value", 5) &&
        !json_object_object_get_ex(o, "extension", NULL))
        return 1;
    n = hv_fhir_elem_child_count(owner);
    for (i = 0; i < n; i++) {
        const hv_fhir_elem_t *c = hv_fhir_elem_child_at(owner, i);
        const char *name;
        size_t l;
        if (hv_fhir_elem_min(c) == 0) continue;
        name = hv_fhir_elem_name(c);
        l = strlen(name);
        if (l > 3 && strcmp(name + l - 3, "[x]") == 0 ? has_choice(o, name, l - 3)
                                                      : json_object_object_get_ex(o, name, NULL))
            continue;
        if (missing != NULL) *missing = name;
        return 1;
    }
    return 0;
}

/* Cleans a resource (clean_node); 0 when it must be left out, with an issue saying why. */
static int resource_ok(ctx_t *c, res_t *r) {
    const char *missing = NULL;
    int ok = !clean_node(r->obj, hv_fhir_type_root(hv_fhir_resource_type(r->type)), &missing);
    /* FHIR org-1: an Organization has a name or an identifier (an NK1 with only the contact
     * person's address of an unnamed organization gives neither). */
    if (ok && strcmp(r->type, "Organization") == 0 && !json_object_object_get_ex(r->obj, "name", NULL) &&
        !json_object_object_get_ex(r->obj, "identifier", NULL)) {
        issue(c, "information", "incomplete", r->slot[0] ? r->slot : r->type,
              "Organization left out: the message gives neither its name nor an identifier (FHIR org-1)");
        return 0;
    }
    if (ok && strcmp(r->type, "Organization") == 0) {
        /* FHIR org-2, org-3: an organization's address and telecom are not "home"; the use
         * the message gives is dropped, the address or number kept. */
        static const char *const uses[] = {"address", "telecom"};
        size_t u, k;
        for (u = 0; u < HV_ARRAY_LEN(uses); u++) {
            json_object *arr = NULL;
            if (!json_object_object_get_ex(r->obj, uses[u], &arr) || !json_object_is_type(arr, json_type_array))
                continue;
            for (k = 0; k < json_object_array_length(arr); k++) {
                json_object *it = json_object_array_get_idx(arr, k);
                const char *use = hv_json_get_str(it, "use");
                if (use != NULL && strcmp(use, "home") == 0) json_object_object_del(it, "use");
            }
        }
    }
    if (ok) return 1;
    if (missing != NULL)
        issue(c, "information", "incomplete", r->slot[0] ? r->slot : r->type,
              "%s left out: the message does not give %s.%s, which FHIR requires", r->type, r->type,
              missing);
    return 0;
}

/* splitmix64's finalizer: spreads a hash before it is summed with others. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/*
 * A hash of a resource's content for its name-based id: the members of an object are
 * summed (so the order they were written in does not matter), arrays hashed in order,
 * values by their JSON text. Cheaper than writing the resource out and hashing the text.
 */
static uint64_t content_hash(uint64_t h, json_object *v, int depth) {
    if (depth > 64) return h;
    switch (json_object_get_type(v)) {
    case json_type_object: {
        uint64_t sum = 0;
        json_object_object_foreach(v, key, val) {
            uint64_t m = fnv(FNV0, key, strlen(key));
            sum += mix64(content_hash(m, val, depth + 1));
        }
        return fnv(fnv(h, "{", 1), &sum, sizeof(sum));
    }
    case json_type_array: {
        size_t i, n = json_object_array_length(v);
        h = fnv(h, "[", 1);
        for (i = 0; i < n; i++) h = content_hash(h, json_object_array_get_idx(v, i), depth + 1);
        return fnv(h, "]", 1);
    }
    case json_type_string:
        return fnv(fnv(h, "s", 1), json_object_get_string(v), (size_t)json_object_get_string_len(v));
    case json_type_null:
        return fnv(h, "n", 1);
    default: {
        const char *t = json_object_get_string(v); /* numbers and booleans: their JSON text */
        return fnv(fnv(h, "v", 1), t, strlen(t));
    }
    }
}

static void uuid_from(uint64_t a, uint64_t b, char out[37]) {
    static const char hex[] = "0123456789abcdef";
    unsigned char u[16];
    int i, o = 0;
    for (i = 0; i < 8; i++) u[i] = (unsigned char)(a >> (56 - 8 * i));
    for (i = 0; i < 8; i++) u[8 + i] = (unsigned char)(b >> (56 - 8 * i));
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x50); /* RFC 4122 §4.3: name-based */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
    for (i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
        out[o++] = hex[u[i] >> 4];
        out[o++] = hex[u[i] & 15];
    }
    out[o] = '\0';
}

static void url_encode(hv_buf_t *b, const char *s) {
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == ':' || ch == '/')
            hv_buf_putc(b, (char)ch);
        else
            hv_buf_printf(b, "%%%02X", ch);
    }
}

/* The business identifier of a resource: the first identifier with a value, one with a
 * system preferred. */
static int business_id(json_object *res, const char **sys, const char **val) {
    json_object *ids = NULL, *id;
    size_t i, n;
    *sys = *val = NULL;
    if (!json_object_object_get_ex(res, "identifier", &ids)) return 0;
    if (json_object_is_type(ids, json_type_object)) {
        *val = hv_json_get_str(ids, "value");
        *sys = hv_json_get_str(ids, "system");
        return *val != NULL;
    }
    n = json_object_array_length(ids);
    for (i = 0; i < n; i++) {
        id = json_object_array_get_idx(ids, i);
        if (hv_json_get_str(id, "value") == NULL) continue;
        if (*val == NULL) {
            *val = hv_json_get_str(id, "value");
            *sys = hv_json_get_str(id, "system");
        }
    }
    return *val != NULL;
}

/* Rewrites the "#hvtmp-N" references to the final fullUrl; a reference to a resource left
 * out is removed (the resource that held it is marked dirty, to be cleaned again). */
static void rewrite_refs(ctx_t *c) {
    size_t i;
    for (i = 0; i < c->nrefs; i++) {
        struct refent *e = &c->refs[i];
        size_t k = e->target;
        if (!e->live || c->res[e->owner].dropped) continue;
        while (k < c->nres && c->res[k].merged_into >= 0) k = (size_t)c->res[k].merged_into;
        if (k < c->nres && !c->res[k].dropped && c->res[k].full_url) {
            hv_json_set_str(e->holder, "reference", c->res[k].full_url);
        } else {
            json_object_object_del(e->holder, "reference");
            c->res[e->owner].dirty = 1;
        }
        e->live = 0;
    }
}

/*
 * A40 (merge patient, HL7 v2.5.1 §3.3.40): MRG-1 names the identifier that is
 * merged into the PID patient. The old record becomes an inactive Patient that
 * links to the survivor (replaced-by), the survivor links back (replaces), FHIR R4
 * patient.html#links.
 */
static void merge_a40(ctx_t *c, res_t *survivor) {
    size_t i;
    for (i = 0; i < c->msg.nsegs; i++) {
        const hv_hl7v2_seg_t *sg = &c->msg.segs[i];
        span_t seg = {sg->p, sg->len}, f;
        res_t *old;
        hv__map_row_t row;
        target_t tg;
        json_object *links, *l, *ref;
        if (strcmp(sg->id, "MRG") != 0) continue;
        f = seg_field(c, seg, 1);
        if (!span_valued(f)) continue;
        c->cur_seg = i;
        old = res_new(c, "Patient", "Patient[merged]");
        if (old == NULL) return;
        memset(&row, 0, sizeof(row));
        row.map = "MRG[Patient]";
        row.src_f = 1;
        row.cond = row.type = row.vocab = row.assign = "";
        row.target = "identifier";
        row.dtmap = "CX[Identifier]";
        tg.owner = old->obj;
        tg.arr = NULL;
        tg.owner_e = hv_fhir_type_root(hv_fhir_resource_type("Patient"));
        tg.res_type = "Patient";
        tg.path = "Patient";
        c->rule_base = "ADT_A40 MRG-1 → Patient(merged).identifier";
        c->nframes = 0;
        {
            size_t r, nr = hv_hl7v2_span_count(f, c->msg.delims.rep);
            for (r = 0; r < nr && r < MAX_REPS; r++) {
                span_t rv;
                if (hv_hl7v2_span_piece(f, c->msg.delims.rep, r, &rv) == HV_OK && span_valued(rv))
                    apply_row(c, &row, rv, 1, seg, &tg, (unsigned)r, 0);
            }
        }
        hv_json_set(old->obj, "active", json_object_new_boolean(0));
        links = json_object_new_array();
        l = json_object_new_object();
        ref = json_object_new_object();
        hv_json_set_str(ref, "reference", ref_to(survivor));
        hv_json_set(l, "other", ref);
        hv_json_set_str(l, "type", "replaced-by");
        json_object_array_add(links, l);
        hv_json_set(old->obj, "link", links);
        links = json_object_new_array();
        l = json_object_new_object();
        ref = json_object_new_object();
        hv_json_set_str(ref, "reference", ref_to(old));
        hv_json_set(l, "other", ref);
        hv_json_set_str(l, "type", "replaces");
        json_object_array_add(links, l);
        hv_json_set(survivor->obj, "link", links);
        return;
    }
    issue(c, "warning", "required", "MRG-1", "A40 without MRG-1: nothing to merge");
}

/*
 * Provenance (HL7 v2-to-FHIR IG message tables: MSH → Provenance-Source and
 * Provenance-Transformation, EVN → Provenance): the IG's target is the Bundle and the
 * MessageHeader, which a transaction cannot reference (a transaction Bundle is not stored
 * as a resource). A Provenance of the message without a target therefore names what the
 * message writes: every other resource of the Bundle except the Provenances (FHIR R4
 * provenance.html: "target — the Reference(s) that were generated or updated by the
 * activity"). References to resources later left out are removed with them.
 */
static void provenance_targets(ctx_t *c) {
    size_t i, j;
    for (i = 0; i < c->nres; i++) {
        res_t *p = &c->res[i];
        json_object *arr = NULL;
        if (p->dropped || strcmp(p->type, "Provenance") != 0) continue;
        if (!json_object_object_get_ex(p->obj, "target", &arr) || !json_object_is_type(arr, json_type_array)) {
            arr = json_object_new_array();
            hv_json_set(p->obj, "target", arr);
        }
        for (j = 0; j < c->nres; j++) {
            res_t *t = &c->res[j];
            json_object *ref;
            /* The message header's own resources (sender, software, the engine as agent) are
             * what the Provenance is about, not what the message wrote. */
            if (t->dropped || strcmp(t->type, "Provenance") == 0 || !strcmp(t->seg, "MSH") ||
                !strcmp(t->seg, "SFT") || !strcmp(t->seg, "EVN"))
                continue;
            ref = json_object_new_object();
            hv_json_set_str(ref, "reference", ref_to(t));
            json_object_array_add(arr, ref);
        }
    }
}

/* Removes repeated references from a Provenance's target (two rows that made the same
 * resource, merged by identity, name it once). Run after rewrite_refs. */
static void provenance_dedupe(json_object *prov) {
    json_object *arr = NULL;
    size_t i, j;
    if (!json_object_object_get_ex(prov, "target", &arr) || !json_object_is_type(arr, json_type_array)) return;
    for (i = json_object_array_length(arr); i-- > 1;) {
        const char *a = hv_json_get_str(json_object_array_get_idx(arr, i), "reference");
        for (j = 0; a != NULL && j < i; j++) {
            const char *b = hv_json_get_str(json_object_array_get_idx(arr, j), "reference");
            if (b != NULL && strcmp(a, b) == 0) {
                json_object_array_del_idx(arr, i, 1);
                break;
            }
        }
    }
}

/* Finds the "#hvtmp-N" references of resource `owner` (its JSON tree, once, when the mapping
 * of the message is done) and records each with its holder object. */
static void collect_refs(ctx_t *c, json_object *o, size_t owner, int depth) {
    if (depth > 64) return;
    if (json_object_is_type(o, json_type_object)) {
        json_object *rv = NULL;
        if (json_object_object_get_ex(o, "reference", &rv) && json_object_is_type(rv, json_type_string) &&
            strncmp(json_object_get_string(rv), "#hvtmp-", 7) == 0) {
            if (c->nrefs == c->caprefs) {
                size_t nc = c->caprefs ? 2 * c->caprefs : 64;
                struct refent *n = hv_realloc(c->refs, nc * sizeof(*n));
                if (n == NULL) return; /* ENOMEM: the reference stays (the validator names it) */
                c->refs = n;
                c->caprefs = nc;
            }
            c->refs[c->nrefs].holder = json_object_get(o);
            c->refs[c->nrefs].owner = owner;
            c->refs[c->nrefs].target = strtoul(json_object_get_string(rv) + 7, NULL, 10);
            c->refs[c->nrefs].live = 1;
            c->nrefs++;
        }
        json_object_object_foreach(o, key, v) {
            (void)key;
            if (json_object_is_type(v, json_type_object) || json_object_is_type(v, json_type_array))
                collect_refs(c, v, owner, depth + 1);
        }
    } else if (json_object_is_type(o, json_type_array)) {
        size_t i;
        for (i = 0; i < json_object_array_length(o); i++)
            collect_refs(c, json_object_array_get_idx(o, i), owner, depth + 1);
    }
}

/* Removes the references to resources left out (target `only`, or any when SIZE_MAX) and
 * marks the resources that held them dirty (to be cleaned again). */
static void drop_dangling(ctx_t *c, size_t only) {
    size_t i;
    for (i = 0; i < c->nrefs; i++) {
        struct refent *e = &c->refs[i];
        size_t k = e->target;
        if (!e->live || (only != SIZE_MAX && k != only)) continue;
        if (k >= c->nres || (c->res[k].dropped && c->res[k].merged_into < 0)) {
            json_object_object_del(e->holder, "reference");
            e->live = 0;
            c->res[e->owner].dirty = 1;
        }
    }
}

/*
 * Links a resource to the message's patient (or encounter) when the tables left the
 * element empty: the IG's message tables name Observation.subject but not, e.g.,
 * DiagnosticReport.subject or ServiceRequest.subject, which FHIR requires.
 */
static void link_to(ctx_t *c, res_t *r, const char *name, res_t *target) {
    const hv_fhir_elem_t *root = hv_fhir_type_root(hv_fhir_resource_type(r->type)), *e;
    const hv_fhir_type_t *chosen = NULL;
    json_object *ref;
    size_t i, n;
    (void)c;
    if (json_object_object_get_ex(r->obj, name, NULL)) return;
    e = hv_fhir_elem_child(root, name, strlen(name), &chosen);
    if (e == NULL || chosen == NULL || strcmp(hv_fhir_type_name(chosen), "Reference") != 0 ||
        hv_fhir_elem_is_array(e))
        return;
    n = hv_fhir_elem_target_count(e, 0);
    for (i = 0; i < n; i++)
        if (strcmp(hv_fhir_type_name(hv_fhir_elem_target_at(e, 0, i)), target->type) == 0) break;
    if (i == n) return;
    ref = json_object_new_object();
    hv_json_set_str(ref, "reference", ref_to(target));
    hv_json_set(r->obj, name, ref);
}

/*
 * The patient's identity is PID-3 (its first repetition with an ID number, HL7 v2.5.1
 * §3.4.2.3) with its assigning authority: that identifier is moved first so that the
 * conditional update searches by it rather than, e.g., by PID-2.
 */
static void patient_identity_first(ctx_t *c, res_t *patient) {
    json_object *ids = NULL;
    char *want = NULL;
    size_t i, n;
    for (i = 1; i <= 8; i++) {
        char path[24];
        snprintf(path, sizeof(path), "PID-3[%zu].1", i);
        if (hv_hl7v2_get_text(&c->msg, path, &want, NULL) != HV_OK) return;
        if (want != NULL && want[0]) break;
    }
    if (want == NULL || want[0] == '\0') return;
    if (!json_object_object_get_ex(patient->obj, "identifier", &ids) ||
        !json_object_is_type(ids, json_type_array))
        return;
    n = json_object_array_length(ids);
    for (i = 0; i < n; i++) {
        json_object *id = json_object_array_get_idx(ids, i);
        const char *v = hv_json_get_str(id, "value");
        if (v != NULL && strcmp(v, want) == 0) {
            if (i > 0) {
                json_object *arr = json_object_new_array();
                size_t k;
                json_object_array_add(arr, json_object_get(id));
                for (k = 0; k < n; k++)
                    if (k != i) json_object_array_add(arr, json_object_get(json_object_array_get_idx(ids, k)));
                hv_json_set(patient->obj, "identifier", arr);
            }
            return;
        }
    }
}

static int finish(ctx_t *c, json_object **bundle_out, hv_error_t *err) {
    size_t i, j;
    int pass, changed;
    char *ctl = NULL;
    res_t *enc;
    res_t *patient = slot_find(c, "Patient[1]");
    const char *psys = NULL, *pval = NULL;
    json_object *bundle = c->bundle_obj, *entries;
    hv_buf_t b;
    uint64_t pkey;
    if (patient == NULL) {
        for (i = 0; i < c->nres && patient == NULL; i++)
            if (!c->res[i].dropped && strcmp(c->res[i].type, "Patient") == 0) patient = &c->res[i];
    }
    if (patient != NULL) patient_identity_first(c, patient);
    if (patient == NULL || !business_id(patient->obj, &psys, &pval)) {
        if (!c->lenient) {
            hv_error_set(err, HV_EPROTO, "PID-3",
                         "the patient's identity cannot be mapped: no PID-3 identifier with an ID number");
            return HV_EPROTO;
        }
        issue(c, "warning", "required", "PID-3",
              "no patient identifier: the resources have no stable identity across messages");
        psys = NULL;
        pval = "";
        if (hv_hl7v2_get_text(&c->msg, "MSH-10", &ctl, NULL) == HV_OK && ctl != NULL) pval = ctl;
        patient = NULL;
    }
    if (patient != NULL && strcmp(c->trigger, "A40") == 0 && strncmp(c->structure, "ADT", 3) == 0)
        merge_a40(c, patient);
    if (patient == NULL && c->lenient) patient = slot_find(c, "Patient[1]");
    enc = slot_find(c, "Encounter[1]");
    pkey = fnv(fnv(FNV0, psys ? psys : "", psys ? strlen(psys) : 0), pval, strlen(pval));
    for (i = 0; i < c->nres; i++) {
        if (c->res[i].dropped) continue;
        apply_defaults(c, &c->res[i]);
        /* Resources of the message header (sender, receiving application) are not the patient's. */
        if (!strcmp(c->res[i].seg, "MSH") || !strcmp(c->res[i].seg, "SFT") || !strcmp(c->res[i].seg, "EVN"))
            continue;
        if (patient != NULL && &c->res[i] != patient) {
            link_to(c, &c->res[i], "subject", patient);
            link_to(c, &c->res[i], "patient", patient);
            link_to(c, &c->res[i], "beneficiary", patient);
        }
        if (enc != NULL && &c->res[i] != enc) link_to(c, &c->res[i], "encounter", enc);
    }
    provenance_targets(c);
    /* Leaving one resource out can leave another without a reference it requires
     * (Provenance.target): repeat until nothing changes. The references are found once;
     * the first pass cleans every resource, a later pass only those that lost a reference
     * to a resource left out (clean_node is idempotent, and only that changes a resource
     * between passes). A resource left out takes the references to it away at once, so
     * the resources after it in the same pass are checked without them. */
    for (i = 0; i < c->nres; i++)
        if (!c->res[i].dropped) collect_refs(c, c->res[i].obj, i, 0);
    drop_dangling(c, SIZE_MAX);
    for (pass = 0, changed = 1; changed && pass < 8; pass++) {
        changed = 0;
        for (i = 0; i < c->nres; i++) {
            res_t *r = &c->res[i];
            if (r->dropped) continue;
            if (pass > 0 && !r->dirty) continue;
            r->dirty = 0;
            /* Lenient mode keeps the message's patient even when PID gave nothing (it is linked). */
            if ((json_object_object_length(r->obj) <= 1 && !(c->lenient && r == patient)) ||
                !resource_ok(c, r)) {
                r->dropped = 1;
                changed = 1;
                drop_dangling(c, i);
            }
        }
    }
    /* Identities, and one entry per identity (the same Practitioner named twice). */
    hv_buf_init(&b, 4096);
    for (i = 0; i < c->nres; i++) {
        res_t *r = &c->res[i];
        const char *sys = NULL, *val = NULL;
        char uuid[37];
        uint64_t h1, h2;
        if (r->dropped) continue;
        hv_buf_reset(&b);
        if (business_id(r->obj, &sys, &val)) {
            hv_buf_printf(&b, "%s?identifier=", r->type);
            if (sys != NULL) {
                url_encode(&b, sys);
                hv_buf_putc(&b, '|');
            }
            url_encode(&b, val);
            h1 = fnv(FNV0, b.data, b.len);
            h2 = fnv(h1 ^ 0x9e3779b97f4a7c15ULL, b.data, b.len);
        } else {
            h1 = fnv(pkey, r->type, strlen(r->type));
            if (r->order_key != NULL && strcmp(r->type, "Patient") != 0 &&
                strcmp(r->type, "Practitioner") != 0 && strcmp(r->type, "Organization") != 0) {
                /* A result of an order: its place in the message names it. */
                h1 = fnv(h1, r->order_key, strlen(r->order_key));
                h1 = fnv(h1, &r->ordinal, sizeof(r->ordinal));
            } else {
                h1 = content_hash(h1, r->obj, 0);
            }
            h2 = fnv(h1 ^ 0x9e3779b97f4a7c15ULL, r->type, strlen(r->type));
        }
        uuid_from(h1, h2, uuid);
        r->full_url = hv_arena_alloc(c->arena, 9 + 37);
        if (r->full_url != NULL) {
            memcpy(r->full_url, "urn:uuid:", 9);
            memcpy(r->full_url + 9, uuid, 37);
        }
        if (b.len > 0) {
            r->request_url = hv_arena_strndup(c->arena, b.data, b.len);
        } else {
            size_t tl = strlen(r->type);
            r->request_url = hv_arena_alloc(c->arena, tl + 1 + 37);
            if (r->request_url != NULL) {
                memcpy(r->request_url, r->type, tl);
                r->request_url[tl] = '/';
                memcpy(r->request_url + tl + 1, uuid, 37);
            }
            hv_json_set_str(r->obj, "id", uuid);
        }
        for (j = 0; j < i; j++) {
            if (!c->res[j].dropped && c->res[j].full_url && !strcmp(c->res[j].full_url, r->full_url)) {
                r->merged_into = (int)j;
                r->dropped = 1;
                break;
            }
        }
    }
    hv_buf_release(&b);
    rewrite_refs(c);
    entries = json_object_new_array();
    for (i = 0; i < c->nres; i++) {
        res_t *r = &c->res[i];
        json_object *e, *req;
        if (r->dropped) continue;
        /* Cleaned already; again only when a reference was removed here. */
        if (strcmp(r->type, "Provenance") == 0) provenance_dedupe(r->obj);
        if (r->dirty) clean_node(r->obj, hv_fhir_type_root(hv_fhir_resource_type(r->type)), NULL);
        e = json_object_new_object();
        hv_json_set_str(e, "fullUrl", r->full_url);
        hv_json_set(e, "resource", json_object_get(r->obj));
        req = json_object_new_object();
        hv_json_set_str(req, "method", "PUT");
        hv_json_set_str(req, "url", r->request_url);
        hv_json_set(e, "request", req);
        json_object_array_add(entries, e);
    }
    hv_json_set_str(bundle, "type", "transaction");
    json_object_object_del(bundle, "entry");
    clean_node(bundle, hv_fhir_type_root(hv_fhir_resource_type("Bundle")), NULL);
    if (json_object_array_length(entries) > 0) hv_json_set(bundle, "entry", entries);
    else json_object_put(entries);
    hv_json_set_str(bundle, "resourceType", "Bundle");
    hv_json_set_str(bundle, "type", "transaction");
    *bundle_out = json_object_get(bundle);
    return HV_OK;
}

/* ------------------------------------------------------------------------- */
/* Entry point                                                               */
/* ------------------------------------------------------------------------- */

static int map_once(const char *msg, size_t len, const hv_map_opts_t *opts, hv_map_result_t *out,
                    hv_error_t *err);

/* Lenient identity is a fallback: the message is mapped as strict mode maps it, and only
 * a message strict mode refuses for want of a patient identity is mapped leniently — so a
 * message both modes can map gives the same Bundle (the fuzz target's invariant). */
int hv_map_v2_to_fhir(const char *msg, size_t len, const hv_map_opts_t *opts, hv_map_result_t *out,
                      hv_error_t *err) {
    hv_map_opts_t strict;
    hv_error_t first;
    int rc;
    if (opts == NULL || !opts->lenient_identity) return map_once(msg, len, opts, out, err);
    strict = *opts;
    strict.lenient_identity = 0;
    hv_error_clear(&first);
    rc = map_once(msg, len, &strict, out, &first);
    if (rc != HV_EPROTO || strcmp(first.location, "PID-3") != 0) {
        if (rc != HV_OK && err != NULL) *err = first;
        return rc;
    }
    return map_once(msg, len, opts, out, err);
}

/*
 * One mapping context is kept for the next message (of any thread): allocating and
 * clearing its ~100 KB (resource table, element slots, arena) for every message cost
 * more than mapping a short ADT. ctx_get hands out the kept one or a new one, cleared;
 * ctx_put keeps it (when none is kept) or frees it.
 */
static _Atomic(ctx_t *) spare_ctx;

static void ctx_free(ctx_t *c) {
    if (c == NULL) return;
    hv_free(c->refs);
    hv_free(c->res);
    hv_free(c->slots);
    hv_buf_release(&c->tmp);
    hv_arena_free(c->arena);
    hv_free(c);
}

static ctx_t *ctx_get(void) {
    ctx_t *c = atomic_exchange(&spare_ctx, NULL);
    if (c != NULL) return c;
    c = hv_calloc(1, sizeof(*c));
    if (c == NULL) return NULL;
    hv_buf_init(&c->tmp, 1u << 20);
    c->arena = hv_arena_new(0);
    /* Not zeroed: res_new clears each entry it hands out, and only those are read. */
    c->res = hv_malloc(MAX_RESOURCES * sizeof(*c->res));
    c->slot_mask = (1u << SLOT_BITS_MIN) - 1;
    c->slots = hv_calloc(c->slot_mask + 1, sizeof(*c->slots));
    if (c->arena == NULL || c->res == NULL || c->slots == NULL) {
        ctx_free(c);
        return NULL;
    }
    return c;
}

static void ctx_put(ctx_t *c) {
    ctx_t keep, *expected = NULL;
    size_t i;
    for (i = 0; i < c->nrefs; i++) json_object_put(c->refs[i].holder);
    /* What outlives a message: the allocations; everything else starts from zero. */
    hv_arena_reset(c->arena);
    hv_buf_reset(&c->tmp);
    if (c->tmp.cap > 64 * 1024) hv_buf_release(&c->tmp); /* a big message's buffer is not kept */
    memset(c->slots, 0, (c->slot_mask + 1) * sizeof(*c->slots));
    keep = *c;
    memset(c, 0, sizeof(*c));
    c->arena = keep.arena;
    c->tmp = keep.tmp;
    c->res = keep.res;
    c->slots = keep.slots;
    c->slot_mask = keep.slot_mask;
    c->refs = keep.refs;
    c->caprefs = keep.caprefs;
    if (!atomic_compare_exchange_strong(&spare_ctx, &expected, c)) ctx_free(c);
}

static int map_once(const char *msg, size_t len, const hv_map_opts_t *opts, hv_map_result_t *out,
                    hv_error_t *err) {
    ctx_t *c = NULL;
    hv_map_tables_t *own = NULL;
    hv_hl7v2_parse_opts_t po;
    json_object *bundle = NULL, *oo = NULL;
    char group[256] = "";
    size_t i;
    int rc;
    c = ctx_get();
    if (c == NULL) {
        hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
        return HV_ENOMEM;
    }
    c->issues = json_object_new_array();
    c->bundle_obj = json_object_new_object();
    if (opts != NULL && opts->tables != NULL) {
        c->t = opts->tables;
    } else if (opts != NULL && opts->override_file != NULL) {
        rc = hv__map_tables_load(opts->override_file, &own, err);
        if (rc != HV_OK) goto out;
        c->t = own;
    } else {
        c->t = hv__map_tables_default();
    }
    if (c->t == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    if (opts != NULL && opts->explain) c->explain = json_object_new_array();
    c->lenient = opts != NULL && opts->lenient_identity;
    hv_hl7v2_parse_opts_default(&po);
    po.strict_escapes = 0;
    rc = hv_hl7v2_parse(c->arena, msg, len, &po, &c->msg, err, NULL);
    if (rc != HV_OK) goto out;
    hv_json_set_str(c->bundle_obj, "resourceType", "Bundle");
    pick_structure(c, opts != NULL ? opts->structure : NULL);
    for (i = 0; i < c->msg.nsegs; i++) map_segment(c, i, group, sizeof(group));
    if (c->unmapped_rows > 0)
        issue(c, "information", "not-supported", NULL,
              "%zu mapping rows name elements this engine does not write (see docs/mappings.md)",
              c->unmapped_rows);
    rc = finish(c, &bundle, err);
    if (rc != HV_OK) goto out;
    oo = json_object_new_object();
    hv_json_set_str(oo, "resourceType", "OperationOutcome");
    if (json_object_array_length(c->issues) == 0) issue(c, "information", "informational", NULL, "mapped");
    hv_json_set(oo, "issue", json_object_get(c->issues));
    memset(out, 0, sizeof(*out));
    out->bundle = bundle;
    out->outcome = oo;
    out->explain = c->explain ? json_object_get(c->explain) : NULL;
    bundle = NULL;
out:
    if (bundle != NULL) json_object_put(bundle);
    if (c != NULL) {
        for (i = 0; i < c->nres; i++) json_object_put(c->res[i].obj);
        json_object_put(c->issues);
        json_object_put(c->bundle_obj);
        if (c->explain) json_object_put(c->explain);
        ctx_put(c);
    }
    hv__map_tables_free(own);
    if (rc == HV_ENOMEM) hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
    return rc;
}
