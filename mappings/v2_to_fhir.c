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
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mappings/v2_int.h"

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

res_t *hv__v2_slot_find(ctx_t *c, const char *slot) {
    size_t i;
    for (i = c->nres; i-- > 0;)
        if (!c->res[i].dropped && c->res[i].slot[0] == slot[0] && strcmp(c->res[i].slot, slot) == 0)
            return &c->res[i];
    return NULL;
}

/* "Patient[1]" (a NUL-terminated name whose type is its first type_len bytes) → that slot;
 * "DiagnosticReport" → the latest resource of that type. */
static res_t *res_lookup(ctx_t *c, const char *name, size_t type_len) {
    size_t i;
    if (name[type_len] == '[') {
        res_t *r = hv__v2_slot_find(c, name);
        if (r != NULL) return r;
    }
    for (i = c->nres; i-- > 0;)
        if (!c->res[i].dropped && c->res[i].slot[0] && c->res[i].type[0] == name[0] &&
            strncmp(c->res[i].type, name, type_len) == 0 && c->res[i].type[type_len] == '\0')
            return &c->res[i];
    return NULL;
}

/* Sets one "A.path.reference=B.id" of a message row (HL7 v2-to-FHIR message tables), read at
 * load (hv__map_ref_parse). */
static void apply_ref(ctx_t *c, const hv__msg_ref_t *ref) {
    res_t *a, *b;
    const hv_fhir_elem_t *oe;
    hv__jv_t *owner;
    size_t si;
    if (!ref->ok) return;
    a = res_lookup(c, ref->a, ref->a_type);
    b = res_lookup(c, ref->b, ref->b_type);
    if (a == NULL || b == NULL || a == b) return;
    if (hv__jv_len(a->obj) <= 1 || hv__jv_len(b->obj) <= 1) return;
    owner = a->obj;
    oe = a->root;
    for (si = 0; si < ref->nsteps; si++) {
        const char *step = ref->steps[si];
        const hv_fhir_type_t *chosen = NULL;
        const hv_fhir_elem_t *e;
        int last = ref->last[si];
        hv__jv_t *o = NULL;
        e = hv__v2_elem_child(c, oe, step, strlen(step), &chosen);
        if (e == NULL || chosen == NULL) return;
        if (last) {
            size_t i, n;
            hv__jv_t *arr = NULL, *r;
            if (strcmp(hv_fhir_type_name(chosen), "Reference") != 0) return;
            /* The target type must be one the element allows. */
            n = hv_fhir_elem_target_count(e, 0);
            for (i = 0; i < n; i++)
                if (strcmp(hv_fhir_type_name(hv_fhir_elem_target_at(e, 0, i)), b->type) == 0 ||
                    strcmp(hv_fhir_type_name(hv_fhir_elem_target_at(e, 0, i)), "Resource") == 0)
                    break;
            if (n > 0 && i == n) return;
            /* The step names outlive the tree (they are the loaded tables', freed after the
             * result is made) and are model element names (no escapes): kept, not copied, and
             * tagged with the element found above (clean_node then does not look it up). The
             * reference is b's "#hvtmp-N", which lives as long as the message (hv__v2_put_ref). */
            if (hv_fhir_elem_is_array(e)) {
                if (!hv__jv_get_ex(owner, step, &arr)) {
                    arr = hv__jv_arr(c->arena);
                    hv__v2_put_el(c, owner, step, arr, HV__V2_NEW, e, chosen);
                }
                for (i = 0; i < hv__jv_len(arr); i++) {
                    const char *s = hv__jv_get_str(hv__jv_at(arr, i), "reference");
                    if (s && (s == b->tmp || strcmp(s, b->tmp) == 0)) return;
                }
                r = hv__jv_obj(c->arena);
                hv__v2_put_ref(c, r, "reference", hv__v2_ref_to(b), HV__V2_NEW);
                hv__jv_push(c->arena, arr, r);
            } else {
                if (hv__jv_get_ex(owner, step, &o)) return; /* set already */
                r = hv__jv_obj(c->arena);
                hv__v2_put_ref(c, r, "reference", hv__v2_ref_to(b), HV__V2_NEW);
                hv__v2_put_el(c, owner, step, r, HV__V2_NEW, e, chosen);
            }
            return;
        }
        if (hv_fhir_elem_is_array(e)) {
            hv__jv_t *arr = NULL;
            if (!hv__jv_get_ex(owner, step, &arr)) {
                arr = hv__jv_arr(c->arena);
                hv__v2_put_el(c, owner, step, arr, HV__V2_NEW, e, chosen);
            }
            if (hv__jv_len(arr) == 0) hv__jv_push(c->arena, arr, hv__jv_obj(c->arena));
            o = hv__jv_at(arr, 0);
        } else if (!hv__jv_get_ex(owner, step, &o)) {
            o = hv__jv_obj(c->arena);
            hv__v2_put_el(c, owner, step, o, HV__V2_NEW, e, chosen);
        }
        owner = o;
        oe = hv_fhir_elem_owner(e, chosen);
        if (oe == NULL) return;
    }
}

/* The order a segment belongs to (ORC-2/ORC-3/OBR-2/OBR-3 raw), for ids of results. */
static void note_order(ctx_t *c, span_t seg) {
    const char *id = c->msg.segs[c->cur_seg].id;
    int txa;
    span_t a, b;
    char *k;
    /* Segment ids are three characters (the parser's hv_hl7v2_seg_t.id): the first byte
     * rules out most segments before the comparisons. */
    switch (id[0]) {
    case 'O': if (strcmp(id, "ORC") != 0 && strcmp(id, "OBR") != 0) return; break;
    case 'R': if (strcmp(id, "RXA") != 0) return; break;
    case 'S': if (strcmp(id, "SCH") != 0) return; break;
    case 'T': if (strcmp(id, "TXA") != 0) return; break;
    default: return;
    }
    txa = id[0] == 'T';
    a = hv__v2_seg_field(c, seg, txa ? 12 : 2);
    b = hv__v2_seg_field(c, seg, 3);
    if (!hv__v2_span_valued(a) && !hv__v2_span_valued(b)) return;
    /* "A|B" of the two raw fields (what "%.*s|%.*s" wrote; a NUL inside a field ends it). */
    if (a.p == NULL) a.len = 0;
    if (b.p == NULL) b.len = 0;
    a.len = strnlen(a.p ? a.p : "", a.len);
    b.len = strnlen(b.p ? b.p : "", b.len);
    k = hv_arena_alloc(c->arena, a.len + b.len + 2);
    if (k == NULL) {
        c->order_key = NULL;
        return;
    }
    if (a.len) memcpy(k, a.p, a.len);
    k[a.len] = '|';
    if (b.len) memcpy(k + a.len + 1, b.p, b.len);
    k[a.len + 1 + b.len] = '\0';
    c->order_key = k;
}

/*
 * A message row whose target is an element of a resource another segment made, with no
 * index and no resource of its own ("Observation[2].note" for an NTE after OBX,
 * "ServiceRequest[1].note" for ORM_O01's NTE, both with NTE[ServiceRequest], whose rows
 * already start at that element: note.text, note.authorReference, note.time). The segment
 * map applies to that resource when it exists; a segment with no such resource (an NTE
 * before any OBX) makes none. Other element targets are not mapped.
 */
static void into_element(ctx_t *c, const hv__msg_row_t *row, span_t seg) {
    const char *dot = strchr(row->target, '.');
    char slot[40];
    size_t sl, i;
    res_t *r;
    target_t tg;
    if (dot == NULL || strpbrk(dot, "[(") != NULL || strchr(row->target, '(') != NULL) return;
    sl = (size_t)(dot - row->target);
    if (sl >= sizeof(slot)) return;
    memcpy(slot, row->target, sl);
    slot[sl] = '\0';
    r = hv__v2_slot_find(c, slot);
    if (r == NULL || r->dropped) return;
    /* The resource of the latest segment of its kind: after an OBX that made nothing, an
     * NTE does not annotate the Observation of an earlier OBX. */
    for (i = r->seg_index + 1; i < c->cur_seg; i++)
        if (memcmp(c->msg.segs[i].id, r->seg, 3) == 0) return;
    tg.owner = r->obj;
    tg.arr = NULL;
    tg.owner_e = r->root;
    tg.res_type = r->type;
    tg.path = r->type;
    c->rule_base = row->segmap;
    c->nframes = 0;
    USE_SEG_ROWS(c, row);
    hv__v2_apply_map(c, row->segmap, seg, 0, seg, &tg, NULL, 0, 0, NULL);
}

/* hv__msg_rows through the message's cache (ctx_t.mrcache). */
static const hv__msg_row_t *msg_rows(ctx_t *c, const char *structure, const char *id, size_t *n) {
    struct hv__v2_mrcache *e =
        &c->mrcache[((unsigned char)id[0] * 7u + (unsigned char)id[1] * 3u + (unsigned char)id[2]) &
                    (HV_ARRAY_LEN(c->mrcache) - 1)];
    if (e->id[0] != '\0' && e->structure == structure && memcmp(e->id, id, 4) == 0) {
        *n = e->n;
        return e->rows;
    }
    e->rows = hv__msg_rows(c->t, structure, id, &e->n);
    memcpy(e->id, id, 4);
    e->structure = structure;
    *n = e->n;
    return e->rows;
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
    rows = msg_rows(c, structure, sg->id, &n);
    for (fb = 0; rows == NULL && fb < HV_ARRAY_LEN(fallback); fb++) {
        structure = fallback[fb];
        rows = msg_rows(c, structure, sg->id, &n);
    }
    if (rows == NULL) {
        if (strcmp(sg->id, "MSH") && strcmp(sg->id, "EVN") && sg->id[0] != 'Z')
            hv__v2_issue(c, "information", "not-supported", sg->id, "segment %s is not mapped", sg->id);
        return;
    }
    /* The group of this occurrence: the candidate closest to the previous segment's group.
     * The choice depends only on the rows and that group, so a run of the same segment
     * (OBX after OBX) reuses the last choice. */
    if (rows == c->grp_rows && strcmp(group, c->grp_in) == 0) {
        chosen = c->grp_chosen;
    } else {
        for (i = 0; i < n; i++) {
            size_t cp = common_prefix(rows[i].group, group);
            if (chosen == NULL || cp > best) {
                best = cp;
                chosen = rows[i].group;
            }
        }
        c->grp_rows = NULL;
        if (strlen(group) < sizeof(c->grp_in)) {
            memcpy(c->grp_in, group, strlen(group) + 1);
            c->grp_rows = rows;
            c->grp_chosen = chosen;
        }
    }
    {
        size_t cl = strlen(chosen), il = strlen(sg->id);
        if (cl + 1 + il < group_cap) {
            memcpy(group, chosen, cl);
            group[cl] = '.';
            memcpy(group + cl + 1, sg->id, il + 1);
        } else {
            snprintf(group, group_cap, "%s.%s", chosen, sg->id);
        }
    }
    for (i = 0; i < n; i++) {
        const hv__msg_row_t *row = &rows[i];
        char type[40];
        const char *br, *rtype;
        res_t *r;
        target_t tg;
        size_t before;
        int had_prev;
        if (row->group != chosen && strcmp(row->group, chosen) != 0) continue;
        if (!hv__v2_cond_eval(c, row->cc, row->cond, seg, seg, 0)) continue;
        if (row->refs_split ? row->target_kind == MSG_T_BUNDLE : strcmp(row->target, "Bundle") == 0) {
            tg.owner = c->bundle_obj;
            tg.arr = NULL;
            tg.owner_e = hv_fhir_type_root(hv_fhir_resource_type("Bundle"));
            tg.res_type = "Bundle";
            tg.path = "Bundle";
            c->rule_base = row->segmap;
            c->nframes = 0;
            USE_SEG_ROWS(c, row);
            hv__v2_apply_map(c, row->segmap, seg, 0, seg, &tg, NULL, 0, 0, NULL);
            continue;
        }
        if (row->refs_split ? row->target_kind == MSG_T_ELEMENT : strpbrk(row->target, ".(") != NULL) {
            into_element(c, row, seg);
            continue;
        }
        if (row->refs_split) {
            rtype = row->res_type;
        } else {
            size_t tl;
            br = strchr(row->target, '[');
            tl = br ? (size_t)(br - row->target) : strlen(row->target);
            if (tl >= sizeof(type)) tl = sizeof(type) - 1;
            memcpy(type, row->target, tl);
            type[tl] = '\0';
            rtype = type;
        }
        r = hv__v2_slot_find(c, row->target);
        had_prev = r != NULL;
        if (r != NULL && strcmp(r->seg, sg->id) == 0 && r->seg_index != si) r = NULL;
        before = c->nres;
        if (r == NULL) {
            r = hv__v2_res_new(c, rtype, row->target);
            if (r == NULL) continue;
        }
        tg.owner = r->obj;
        tg.arr = NULL;
        tg.owner_e = r->root;
        tg.res_type = r->type;
        tg.path = r->type;
        c->rule_base = row->segmap; /* the structure is in the message; keep this cheap */
        c->nframes = 0;
        USE_SEG_ROWS(c, row);
        hv__v2_apply_map(c, row->segmap, seg, 0, seg, &tg, NULL, 0, 0, NULL);
        if (c->nres > before && hv__jv_len(c->res[before].obj) <= 1 &&
            c->res[before].obj == r->obj &&
            !(c->lenient && !had_prev && strcmp(r->type, "Patient") == 0 && strcmp(sg->id, "PID") == 0)) {
            /* This row made nothing: the slot stays free for the next row. */
            r->dropped = 1;
            r->slot[0] = '\0';
        }
        if (row->refs_split) {
            size_t k;
            for (k = 0; k < row->refs_n; k++) apply_ref(c, &row->refs_parsed[k]);
        } else if (row->refs[0]) {
            /* A row not read at load (none the loader makes): its references read now. */
            char *refs = hv_arena_strdup(c->arena, row->refs), *save = NULL, *one;
            for (one = refs ? strtok_r(refs, ";", &save) : NULL; one; one = strtok_r(NULL, ";", &save)) {
                hv__msg_ref_t one_ref;
                while (*one == ' ') one++;
                {
                    size_t l = strlen(one);
                    while (l && one[l - 1] == ' ') one[--l] = '\0';
                }
                if (hv__map_ref_parse(c->arena, one, &one_ref) == HV_OK) apply_ref(c, &one_ref);
            }
        }
    }
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
    c->opgen = 1;
    if (c->arena == NULL || c->res == NULL || c->slots == NULL) {
        ctx_free(c);
        return NULL;
    }
    return c;
}

static void ctx_put(ctx_t *c) {
    ctx_t *expected = NULL;
    /* What outlives a message: the allocations and the caches that know their valid
     * entries; the per-message part starts from zero. */
    hv_arena_reset(c->arena);
    hv_buf_reset(&c->tmp);
    if (c->tmp.cap > 64 * 1024) hv_buf_release(&c->tmp); /* a big message's buffer is not kept */
    memset(c->slots, 0, (c->slot_mask + 1) * sizeof(*c->slots));
    memset(c, 0, offsetof(ctx_t, arena));
    if (++c->opgen == 0) {
        memset(c->opcache, 0, sizeof(c->opcache));
        memset(&c->gmemo, 0, sizeof(c->gmemo));
        c->opgen = 1;
    }
    if (!atomic_compare_exchange_strong(&spare_ctx, &expected, c)) ctx_free(c);
}

/* One tree of the result as text (hv_malloc) into *text (and *len when not NULL). room: the
 * bytes reserved before writing (the writer grows the buffer by doubling past it; a Bundle's
 * room saves the copies of growing from the writer's first 4 KiB). */
static int tree_text(const hv__jv_t *v, char **text, size_t *len, size_t room) {
    hv_buf_t b;
    int rc;
    hv_buf_init(&b, 0);
    rc = room > 0 ? hv_buf_reserve(&b, room) : HV_OK;
    if (rc == HV_OK) rc = hv__jv_write(v, &b, 0);
    if (rc == HV_OK && b.data == NULL) rc = HV_ENOMEM;
    if (rc != HV_OK) {
        hv_buf_release(&b);
        return rc;
    }
    if (len != NULL) *len = b.len;
    *text = hv_buf_take(&b);
    return HV_OK;
}

/*
 * The result out of the context's trees, before the context's arena goes: JSON text
 * (opts->text) or json-c objects. Nothing is set in out unless all of it could be made.
 */
static int result_fill(ctx_t *c, const hv_map_opts_t *opts, hv__jv_t *bundle, hv__jv_t *oo, int clean,
                       hv_map_result_t *out) {
    hv_map_result_t r;
    int rc = HV_OK;
    memset(&r, 0, sizeof(r));
    r.clean = clean;
    if (opts != NULL && opts->text) {
        /* 16 KiB holds the Bundle of a common message (ORU^R01 with ten results: 14.5 KB). */
        rc = tree_text(bundle, &r.bundle_text, &r.bundle_len, 16384 - 1);
        if (rc == HV_OK) rc = tree_text(oo, &r.outcome_text, NULL, 0);
        if (rc == HV_OK && c->explain != NULL) rc = tree_text(c->explain, &r.explain_text, NULL, 0);
    } else {
        r.bundle = hv__jv_to_json(bundle);
        r.outcome = hv__jv_to_json(oo);
        if (c->explain != NULL) r.explain = hv__jv_to_json(c->explain);
        if (r.bundle == NULL || r.outcome == NULL || (c->explain != NULL && r.explain == NULL)) rc = HV_ENOMEM;
    }
    if (rc != HV_OK) {
        hv_map_result_free(&r);
        return rc;
    }
    *out = r;
    return HV_OK;
}

static int map_once(const char *msg, size_t len, const hv_map_opts_t *opts, hv_map_result_t *out,
                    hv_error_t *err) {
    ctx_t *c = NULL;
    hv_map_tables_t *own = NULL;
    hv_hl7v2_parse_opts_t po;
    hv__jv_t *bundle = NULL, *oo = NULL;
    char group[256] = "";
    size_t i;
    int rc, clean;
    c = ctx_get();
    if (c == NULL) {
        hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
        return HV_ENOMEM;
    }
    c->issues = hv__jv_arr(c->arena);
    c->bundle_obj = hv__jv_obj(c->arena);
    if (c->issues == NULL || c->bundle_obj == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
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
    if (opts != NULL && opts->explain) c->explain = hv__jv_arr(c->arena);
    c->lenient = opts != NULL && opts->lenient_identity;
    hv_hl7v2_parse_opts_default(&po);
    po.strict_escapes = 0;
    rc = hv_hl7v2_parse(c->arena, msg, len, &po, &c->msg, err, NULL);
    if (rc != HV_OK) goto out;
    hv__v2_put_ref(c, c->bundle_obj, "resourceType", "Bundle", HV__V2_CONST);
    pick_structure(c, opts != NULL ? opts->structure : NULL);
    for (i = 0; i < c->msg.nsegs; i++) map_segment(c, i, group, sizeof(group));
    if (c->unmapped_rows > 0)
        hv__v2_issue(c, "information", "not-supported", NULL,
              "%zu mapping rows name elements this engine does not write (see docs/mappings.md)",
              c->unmapped_rows);
    rc = hv__v2_finish(c, &bundle, err);
    if (rc != HV_OK) goto out;
    oo = hv__jv_obj(c->arena);
    hv__v2_put_ref(c, oo, "resourceType", "OperationOutcome", HV__V2_NEW);
    clean = hv__jv_len(c->issues) == 0;
    if (clean) hv__v2_issue(c, "information", "informational", NULL, "mapped");
    hv__v2_put(c, oo, "issue", c->issues, HV__V2_NEW);
    rc = result_fill(c, opts, bundle, oo, clean, out);
out:
    if (c != NULL) ctx_put(c);
    hv__map_tables_free(own);
    if (rc == HV_ENOMEM) hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
    return rc;
}
