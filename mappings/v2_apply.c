/*
 * v2_apply.c — the rows of the HL7 v2 → FHIR mapping tables applied to a value: resources
 * and their slots, element paths typed by the FHIR model ("name[idx](Type[n].path)"), data-type
 * maps applied recursively to components and subcomponents, concept maps, resource families
 * (PL[Location]) and resources made inside a reference (HL7 v2-to-FHIR IG segment and
 * data-type maps; docs/mappings.md).
 */
#include "config.h"

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mappings/v2_int.h"

/* ------------------------------------------------------------------------- */
/* Resources and element paths                                               */
/* ------------------------------------------------------------------------- */

/* strtoul(s, end, 10), read here when s starts with a digit (an index in a target path:
 * "[2]", "[1-6]"), with strtoul's saturation at ULONG_MAX; anything else (blanks, a sign)
 * goes to strtoul. */
static unsigned long path_number(const char *s, char **end) {
    unsigned long v = 0;
    int over = 0;
    if (*s < '0' || *s > '9') return strtoul(s, end, 10);
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (ULONG_MAX - d) / 10) over = 1;
        else v = v * 10 + d;
    }
    *end = (char *)s;
    return over ? ULONG_MAX : v;
}

res_t *hv__v2_res_new(ctx_t *c, const char *type, const char *slot) {
    res_t *r;
    const hv_fhir_type_t *t = hv_fhir_resource_type(type);
    if (t == NULL || c->nres >= MAX_RESOURCES) return NULL;
    r = &c->res[c->nres];
    memset(r, 0, sizeof(*r));
    r->type = hv_fhir_type_name(t);
    r->ftype = t;
    r->root = hv_fhir_type_root(t);
    if (slot != NULL) {
        size_t sl = strnlen(slot, sizeof(r->slot) - 1);
        memcpy(r->slot, slot, sl);
        r->slot[sl] = '\0';
    }
    r->obj = hv__jv_obj(c->arena);
    hv__v2_put_ref(c, r->obj, "resourceType", r->type, HV__V2_NEW);
    memcpy(r->seg, c->msg.segs[c->cur_seg].id, 3);
    r->seg[3] = '\0';
    r->hdr = !strcmp(r->seg, "MSH") || !strcmp(r->seg, "SFT") || !strcmp(r->seg, "EVN");
    r->prov = strcmp(r->type, "Provenance") == 0;
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
 * was handed out lets hv__v2_finish() skip looking for dangling references when no resource
 * that anything refers to was left out. */
const char *hv__v2_ref_to(res_t *r) {
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

/* The resource whose JSON object is o, NULL when none. */
static res_t *res_of(ctx_t *c, hv__jv_t *o) {
    size_t i;
    for (i = c->nres; i-- > 0;)
        if (c->res[i].obj == o) return &c->res[i];
    return NULL;
}

/*
 * The occurrence part of an element's slot key. A later segment that maps into a resource
 * another segment made (NK1 → the Patient of PID, NTE → the Observation of OBX) gets its own
 * element of a repeating top-level element the rows name without an index ("contact.name",
 * "note.text"), so two NK1s make two Patient.contact and two NTEs two notes instead of
 * mixing their values into one. The segment that made the resource, an indexed step
 * ("identifier[2]", shared by every segment as the tables' indexes mean) and the steps
 * inside an element keep the shared slot. 0: no occurrence part.
 */
static unsigned slot_occurrence(ctx_t *c, const target_t *tg, hv__jv_t *owner, int is_array,
                                size_t nlen, size_t seglen) {
    res_t *r;
    if (!is_array || nlen != seglen || owner != tg->owner) return 0;
    r = res_of(c, owner);
    return r != NULL && r->seg_index != c->cur_seg ? (unsigned)c->cur_seg + 1 : 0;
}

/* nh: hv__v2_fnv(FNV0, name, nlen), found once per compiled step;
 * ckey: the element's name as a constant key (hv__v2_model_key), NULL when it is not one;
 * occ: slot_occurrence; el, ty: the element's model element and chosen type (hv__v2_put_el),
 * NULL when not known. */
static hv__jv_t *slot_get(ctx_t *c, hv__jv_t *owner, const char *name, size_t nlen, uint64_t nh,
                          const char *ckey, unsigned idx, unsigned rep, int is_array, unsigned occ,
                          const hv_fhir_elem_t *el, const hv_fhir_type_t *ty) {
    uint64_t k = nh;
    size_t i;
    int found;
    hv__jv_t *arr = NULL, *e;
    char key[64];
    const char *jk;
    unsigned fl;
    if (occ != 0) k = hv__v2_fnv(k, &occ, sizeof(occ));
    k = hv__v2_key(owner, k, idx, rep);
    if (k == 0) k = 1;
    i = slot_place(c, k, &found);
    if (found) return c->slots[i].elem;
    if (i == SIZE_MAX) return NULL;
    if (nlen >= sizeof(key)) return NULL;
    memcpy(key, name, nlen);
    key[nlen] = '\0';
    jk = ckey != NULL ? ckey : key;
    fl = ckey != NULL ? HV__V2_CONST : 0;
    if (is_array) {
        e = hv__jv_obj(c->arena);
        if (!hv__jv_get_ex(owner, key, &arr)) {
            arr = hv__jv_arr(c->arena);
            hv__v2_put_el(c, owner, jk, arr, fl | HV__JV_KNEW, el, ty);
        } else if (!hv__jv_is(arr, HV__JV_ARR)) {
            arr = hv__jv_arr(c->arena);
            hv__v2_put_el(c, owner, jk, arr, fl, el, ty);
        }
        hv__jv_push(c->arena, arr, e);
    } else {
        hv__jv_t *old = NULL;
        int had = hv__jv_get_ex(owner, key, &old);
        if (had && hv__jv_is(old, HV__JV_OBJ)) {
            e = old;
        } else {
            e = hv__jv_obj(c->arena);
            hv__v2_put_el(c, owner, jk, e, fl | (had ? 0 : HV__JV_KNEW), el, ty);
        }
    }
    c->slots[i].key = k;
    c->slots[i].elem = e;
    c->nslots++;
    return e;
}

static void explain_add(ctx_t *c, const char *owner_path, const char *path) {
    hv__jv_t *o;
    if (c->explain == NULL) return;
    o = hv__jv_obj(c->arena);
    hv__jv_put_str(c->arena, o, "element", hv_arena_sprintf(c->arena, "%s.%s", owner_path, path), HV__JV_KCONST);
    hv__jv_put_str(c->arena, o, "rule", hv__v2_rule_text(c), HV__JV_KCONST);
    hv__jv_push(c->arena, c->explain, o);
}



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
            v = hv__v2_seg_field(c, seg, f);
            if (hv_hl7v2_span_piece(v, c->msg.delims.rep, 0, &r0) != HV_OK) r0.p = NULL, r0.len = 0;
            if (comp) r0 = hv__v2_piece(c, r0, 1, comp);
            t = hv__v2_span_text(c, r0);
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

/* True when the row's concept map is one the tables have (its entries found at load). */
static int row_vocab_known(ctx_t *c, const hv__map_row_t *row) {
    if (row->vocab[0] == '\0') return 0;
    return row->vocab_resolved ? row->vocab_rows != NULL : hv__vocab_known(c->t, row->vocab);
}

/* The entry of the row's concept map for a code, NULL when it has none. */
static const hv__vocab_row_t *row_vocab_find(ctx_t *c, const hv__map_row_t *row, const char *code) {
    size_t lo = 0, hi = row->vocab_n;
    if (!row->vocab_resolved) return hv__vocab_find(c->t, row->vocab, code);
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int r = strcmp(row->vocab_rows[mid].code, code);
        if (r == 0) return &row->vocab_rows[mid];
        if (r < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/*
 * The concept map of a row whose target is a Coding or CodeableConcept (PV1-2 → Encounter.class
 * through PatientClass[EncounterClass]: "O" → v3-ActCode AMB): the code the data-type map wrote
 * is looked up; a Coding takes the mapped code, system and display, a CodeableConcept gets the
 * mapped coding first and keeps the one sent. A code the map does not have stays as sent, with
 * a warning unless it came with a coding system of its own.
 */
static void vocab_complex(ctx_t *c, hv__jv_t *o, const char *tname, const hv__map_row_t *row) {
    const char *vocab = row->vocab;
    hv__jv_t *codings = NULL, *first, *mapped;
    const hv__vocab_row_t *vr;
    const char *code;
    if (strcmp(tname, "Coding") == 0) {
        first = o;
    } else if (strcmp(tname, "CodeableConcept") == 0) {
        if (!hv__jv_get_ex(o, "coding", &codings) || !hv__jv_is(codings, HV__JV_ARR) ||
            hv__jv_len(codings) == 0)
            return;
        first = hv__jv_at(codings, 0);
    } else {
        return;
    }
    code = hv__jv_get_str(first, "code");
    if (code == NULL) return;
    vr = row_vocab_find(c, row, code);
    /* A code sent with its own coding system (SPM-4 in SNOMED CT) is not a code of the v2
     * table the concept map reads: it is kept, without a warning. */
    if (vr == NULL && hv__jv_get_str(first, "system") != NULL) return;
    if (vr == NULL) {
        hv__v2_issue(c, "warning", "code-invalid", hv__v2_rule_text(c), "code '%.40s' has no mapping in %s (kept as sent)", code,
              vocab);
        return;
    }
    mapped = first;
    if (codings != NULL) {
        hv__jv_t *arr = hv__jv_arr(c->arena);
        size_t i;
        mapped = hv__jv_obj(c->arena);
        hv__jv_push(c->arena, arr, mapped);
        for (i = 0; i < hv__jv_len(codings); i++)
            hv__jv_push(c->arena, arr, hv__jv_at(codings, i));
        hv__jv_put(c->arena, o, "coding", arr, HV__JV_KCONST);
    }
    hv__jv_put_str(c->arena, mapped, "code", vr->fcode, HV__JV_KCONST);
    if (vr->system[0]) hv__jv_put_str(c->arena, mapped, "system", vr->system, HV__JV_KCONST);
    else hv__jv_del(mapped, "system");
    if (vr->display[0]) hv__jv_put_str(c->arena, mapped, "display", vr->display, HV__JV_KCONST);
    else hv__jv_del(mapped, "display");
}

/* Repetition n (> 1) of the element tg->owner is one repetition of: a new object appended to
 * tg->arr at the first row that names it, found again by the rows after. */
static hv__jv_t *sibling(ctx_t *c, const target_t *tg, unsigned n) {
    uint64_t k = FNV0;
    size_t i;
    int found;
    hv__jv_t *e;
    /* "#sibling" cannot be an element's name: these keys stay apart from slot_get's. */
    k = hv__v2_key(tg->owner, hv__v2_fnv(k, "#sibling", 8), n, 0);
    if (k == 0) k = 1;
    i = slot_place(c, k, &found);
    if (found) return c->slots[i].elem;
    if (i == SIZE_MAX) return NULL;
    e = hv__jv_obj(c->arena);
    hv__jv_push(c->arena, tg->arr, e);
    c->slots[i].key = k;
    c->slots[i].elem = e;
    c->nslots++;
    return e;
}

/*
 * Repetition rep (0-based) of a repeating field whose target is a single (0..1) complex
 * element that an earlier repetition already filled: a second Identifier, Period or
 * Quantity written into the first would mix the two values, so the first repetition is kept
 * and this one reported. A CodeableConcept gathers the codings of all repetitions (each
 * repetition gets a coding of its own).
 */
static int single_taken(ctx_t *c, hv__jv_t *owner, const char *name, size_t nlen,
                        const hv_fhir_elem_t *e, const hv_fhir_type_t *t, unsigned rep) {
    char key[64];
    hv__jv_t *old = NULL;
    if (rep == 0 || hv_fhir_elem_is_array(e) || nlen >= sizeof(key) ||
        strcmp(hv_fhir_type_name(t), "CodeableConcept") == 0)
        return 0;
    memcpy(key, name, nlen);
    key[nlen] = '\0';
    if (!hv__jv_get_ex(owner, key, &old) || !hv__jv_is(old, HV__JV_OBJ) ||
        hv__jv_len(old) == 0)
        return 0;
    hv__v2_issue(c, "information", "multiplicity", hv__v2_rule_text(c),
                 "repetition %u left out: %s holds one value (the first repetition is kept)",
                 rep + 1, key);
    return 1;
}

/* True when a data-type map has a row for the value itself ("$value"/"$this"), i.e. it
 * converts a value to one primitive; an unknown map counts as such (the value as sent). */
static int map_has_value_rows(ctx_t *c, const hv__map_row_t *row) {
    size_t n = 0, i;
    const hv__map_row_t *rows;
    /* The rows of a loaded row's data-type map were found at load. */
    if (row->dt_resolved) {
        rows = row->dt_rows;
        n = row->dt_n;
    } else {
        rows = hv__map_rows(c->t, row->dtmap, &n);
    }
    if (rows == NULL) return 1;
    for (i = 0; i < n; i++)
        if (!strcmp(rows[i].target, "$value") || !strcmp(rows[i].target, "$this")) return 1;
    return 0;
}



/* Member n (2..MAX_FAMILY) of the family of resource base; made when make is set. */
static res_t *family_member(ctx_t *c, res_t *base, unsigned n, int make) {
    size_t i, bi = (size_t)(base - c->res);
    res_t *m;
    for (i = 0; i < c->nfam; i++)
        if (c->fam[i].base == bi && c->fam[i].n == n && !c->res[c->fam[i].member].dropped)
            return &c->res[c->fam[i].member];
    if (!make || c->nfam >= HV_ARRAY_LEN(c->fam)) return NULL;
    m = hv__v2_res_new(c, base->type, NULL);
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
 * applies to the members that exist (the base too only once it has a value). "partOf.reference(Location[m])" rows are set by
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
            /* The base exists once a row of its own gave it a value: a range (PL.11's
             * "[1-6]") does not make it from nothing. */
            if (a != b && hv__jv_len(base->obj) <= 1) continue;
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
        sub.owner_e = m->root;
        sub.res_type = m->type;
        sub.path = m->type;
        r2.target = rest;
        hv__v2_apply_row(c, &r2, v, level, seg, &sub, rep, depth);
        if (made && hv__jv_len(m->obj) <= 1) m->dropped = 1;
    }
}

static void set_ref(ctx_t *c, hv__jv_t *o, const char *name, res_t *to) {
    hv__jv_t *ref = hv__jv_obj(c->arena);
    hv__v2_put_ref(c, ref, "reference", hv__v2_ref_to(to), HV__V2_NEW);
    hv__v2_put(c, o, name, ref, HV__V2_CONST);
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
    if (hv__jv_len(base->obj) > 1) {
        who[1] = bi;
    } else {
        for (k = 2; k <= MAX_FAMILY; k++) {
            if (who[k] != SIZE_MAX) {
                hv__jv_t *tmp = base->obj;
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
        if (!hv__jv_get_ex(c->res[who[from]].obj, "partOf", NULL))
            set_ref(c, c->res[who[from]].obj, "partOf", &c->res[who[to]]);
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
                              hv__jv_t *owner, const char *name, size_t nlen, unsigned idx,
                              unsigned rep, int is_array, const char *inner, int depth) {
    char type[40];
    size_t tl = 0;
    const char *rest, *ref;
    hv__jv_t *slot;
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
    slot = slot_get(c, owner, name, nlen, hv__v2_fnv(FNV0, name, nlen), NULL, idx, rep, is_array, 0, NULL, NULL);
    if (slot == NULL) return;
    ref = hv__jv_get_str(slot, "reference");
    if (ref != NULL && strncmp(ref, "#hvtmp-", 7) == 0) {
        size_t k = hv__v2_tmp_index(ref + 7);
        if (k < c->nres && !c->res[k].dropped && strcmp(c->res[k].type, type) == 0) nr = &c->res[k];
        else goto unmapped;
    }
    if (nr == NULL) {
        nr = hv__v2_res_new(c, type, NULL);
        if (nr == NULL) goto unmapped;
        hv__v2_put_ref(c, slot, "reference", hv__v2_ref_to(nr), HV__V2_CONST);
        made = 1;
    }
    sub.owner = nr->obj;
    sub.owner_e = nr->root;
    sub.res_type = nr->type;
    sub.path = nr->type;
    if (*rest == '\0') {
        USE_DT_ROWS(c, row);
        hv__v2_apply_map(c, row->dtmap, v, level, seg, &sub, nr->ftype, rep, depth + 1, NULL);
        if (made) family_link(c, nr, row->dtmap);
    } else {
        hv__map_row_t inner_row = *row;
        inner_row.target = rest; /* in the caller's buffer, which outlives this call */
        hv__v2_apply_row(c, &inner_row, v, level, seg, &sub, rep, depth + 1);
    }
    if (made && hv__jv_len(nr->obj) <= 1) {
        /* Nothing mapped: the resource is left out (its slot entries stay unique). */
        nr->dropped = 1;
        hv__jv_del(slot, "reference");
    }
    return;
unmapped:
    c->unmapped_rows++;
}

/*
 * The compiled form of target path `path` under owner element oe (see struct hv__v2_plan):
 * found in the context's cache, or compiled now by the same rules apply_row's parse follows —
 * steps "name" or "name[idx]" ("[each]", "[1-3]" and "[0]" count as 1), each typed by the
 * model from the owner the previous step leads to. NULL when the path is not one the plan
 * covers (a step with "(Type…)", a step past a primitive, an element the model does not
 * have, a path longer than a slot): apply_row then parses it itself.
 */
#define PLAN_WAYS 4
static const struct hv__v2_plan *plan_find(ctx_t *c, const hv_fhir_elem_t *oe, const char *path) {
    struct hv__v2_plan *pl;
    size_t len = strlen(path), n = 0, w;
    uint64_t h;
    const char *p;
    if (len == 0 || len >= sizeof(pl->path)) return NULL;
    /* PLAN_WAYS ways per set, the set chosen by the owner element and the path's address: a
     * table row's target (or the part of it after "[n]."), the same text at the same address
     * in every message, spreads over the sets. An entry is found by its text (an address may
     * hold other text in another message: a row made by hand, an arena after a reset); a path
     * at another address with the same text is found when it lands in the same set,
     * otherwise it is compiled again. */
    h = ((uint64_t)(uintptr_t)oe >> 3) * 0x9e3779b97f4a7c15ULL;
    h ^= ((uint64_t)(uintptr_t)path) * 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 29;
    pl = &c->plan[PLAN_WAYS * ((h >> 40) & (HV_ARRAY_LEN(c->plan) / PLAN_WAYS - 1))];
    for (w = 0; w < PLAN_WAYS; w++)
        if (pl[w].oe == oe && pl[w].len == len && memcmp(pl[w].path, path, len) == 0)
            return pl[w].ok ? &pl[w] : NULL;
    /* A miss: the entries move down one way (the oldest goes), the new one takes way 0. No
     * caller keeps an entry across a call that may compile another (apply_row copies what it
     * needs of the last step before it recurses). */
    for (w = PLAN_WAYS - 1; w > 0; w--)
        if (pl[w - 1].oe != NULL) pl[w] = pl[w - 1];
    pl->oe = oe;
    pl->len = (unsigned char)len;
    memcpy(pl->path, path, len);
    pl->ok = 0;
    pl->nsteps = 0;
    if (strchr(path, '(') != NULL) return NULL;
    p = path;
    while (*p) {
        struct hv__v2_step *st;
        const char *dot = strchr(p, '.'), *br;
        size_t seglen = dot ? (size_t)(dot - p) : strlen(p), nlen = seglen;
        unsigned idx = 1;
        const hv_fhir_elem_t *e;
        const hv_fhir_type_t *chosen = NULL;
        if (n >= HV_ARRAY_LEN(pl->steps)) return NULL;
        br = memchr(p, '[', seglen);
        if (br != NULL) {
            char *end;
            idx = (unsigned)path_number(br + 1, &end);
            if (*end != ']' || idx == 0) idx = 1;
            nlen = (size_t)(br - p);
        }
        e = hv__v2_elem_child(c, oe, p, nlen, &chosen);
        if (e == NULL || chosen == NULL) return NULL;
        st = &pl->steps[n++];
        st->off = (unsigned char)(p - path);
        st->seglen = (unsigned char)seglen;
        st->nlen = (unsigned char)nlen;
        st->last = dot == NULL;
        st->idx = idx;
        st->e = e;
        st->chosen = chosen;
        st->ckey = hv__v2_model_key(e, p, nlen);
        st->arr = (unsigned char)(hv_fhir_elem_is_array(e) != 0);
        st->prim = hv_fhir_type_kind(chosen) == HV_FHIR_KIND_PRIMITIVE;
        st->tname = hv_fhir_type_name(chosen);
        st->sub = st->prim ? NULL : hv_fhir_elem_owner(e, chosen);
        st->nh = hv__v2_fnv(FNV0, p, nlen);
        if (dot == NULL) break;
        if (st->prim) return NULL;
        oe = st->sub;
        if (oe == NULL) return NULL;
        p = dot + 1;
    }
    pl->nsteps = (unsigned char)n;
    pl->ok = 1;
    return pl;
}

/*
 * Writes one row's value at a target path under tg. The path is a dotted list of
 * steps "name[idx](Type)"; the FHIR model types each step. The last step gets a
 * primitive (converted from text, or from a primitive data-type map) or, for a
 * complex type, the object the data-type map fills; "(Type)" makes a new resource
 * of that type filled by the data-type map and puts a reference to it there.
 */
void hv__v2_apply_row(ctx_t *c, const hv__map_row_t *row, span_t v, int level, span_t seg,
               target_t *tg, unsigned rep, int depth) {
    const char *path = row->target;
    hv__jv_t *owner = tg->owner;
    const hv_fhir_elem_t *oe = tg->owner_e;
    char pbuf[160];
    const char *p;
    const struct hv__v2_plan *plan;
    unsigned si = 0;
    int first_step = 1;
    if (row->prim || (path[0] == '$' && (!strcmp(path, "$value") || !strcmp(path, "$this")))) {
        /* "$this" with a data-type map: that map writes into the same object (SPS into Specimen). */
        if (row->dtmap[0] && depth < MAX_DEPTH) {
            USE_DT_ROWS(c, row);
            hv__v2_apply_map(c, row->dtmap, v, level, seg, tg, NULL, rep, depth + 1, NULL);
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
        unsigned a = (unsigned)path_number(path + 1, &end), b = a;
        if (*end == '-') b = (unsigned)path_number(end + 1, &end);
        if (*end != ']' || end[1] != '.' || a == 0 || b < a || b > MAX_FAMILY) return;
        if (a != 1 || b != 1 || strncmp(end + 2, "partOf.reference(", 17) == 0) {
            const hv_fhir_type_t *rt = hv_fhir_elem_parent(oe) == NULL ? hv_fhir_resource_type(tg->res_type) : NULL;
            if (rt != NULL && tg->owner_e == hv_fhir_type_root(rt))
                apply_family(c, row, v, level, seg, tg, a, b, end + 2, rep, depth);
            return;
        }
        path = end + 2;
    }
    /* A FHIR type name starts with a capital (the complex types owners belong to): a path
     * starting otherwise (nearly all) has no prefix to take off. */
    if ((path[0] >= 'A' && path[0] <= 'Z') || path[0] == '.') {
        const char *tn = hv_fhir_type_name(hv_fhir_elem_owner_type(oe));
        size_t tl = strlen(tn);
        if (hv_fhir_elem_parent(oe) == NULL && strncmp(path, tn, tl) == 0 && path[tl] == '.')
            path += tl + 1;
    }
    plan = plan_find(c, oe, path);
    if (plan != NULL) {
        p = path;
    } else {
        size_t pl = strlen(path);
        if (pl >= sizeof(pbuf)) return;
        memcpy(pbuf, path, pl + 1);
        p = pbuf;
    }
    for (;;) {
        const char *dot, *br, *par;
        size_t seglen, nlen;
        unsigned idx = 1;
        const hv_fhir_elem_t *e;
        const hv_fhir_type_t *chosen = NULL;
        const char *step_ckey = NULL, *tname;
        const hv_fhir_elem_t *sub_oe;
        char rtype[160];
        int last, is_arr, is_prim;
        uint64_t nh;
        rtype[0] = '\0';
        if (plan != NULL) {
            /* The compiled step: what the parse below would find, found once. */
            const struct hv__v2_step *st;
            if (si >= plan->nsteps) break;
            st = &plan->steps[si++];
            p = path + st->off;
            seglen = st->seglen;
            nlen = st->nlen;
            idx = st->idx;
            e = st->e;
            chosen = st->chosen;
            last = st->last;
            step_ckey = st->ckey;
            is_arr = st->arr;
            is_prim = st->prim;
            tname = st->tname;
            sub_oe = st->sub;
            nh = st->nh;
            dot = last ? NULL : p + seglen;
            goto step;
        }
        if (*p == '\0') break;
        dot = strchr(p, '.');
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
            idx = (unsigned)path_number(br + 1, &end);
            if (*end != ']' || idx == 0) idx = 1; /* "[each]", "[1-3]": the first */
            nlen = (size_t)(br - p);
        }
        e = hv__v2_elem_child(c, oe, p, nlen, &chosen);
        if (e == NULL || chosen == NULL) goto unmapped;
        step_ckey = hv__v2_model_key(e, p, nlen);
        is_arr = hv_fhir_elem_is_array(e) != 0;
        is_prim = hv_fhir_type_kind(chosen) == HV_FHIR_KIND_PRIMITIVE;
        tname = hv_fhir_type_name(chosen);
        sub_oe = is_prim ? NULL : hv_fhir_elem_owner(e, chosen);
        nh = hv__v2_fnv(FNV0, p, nlen);
    step:
        if (first_step && idx > 1 && !is_arr && tg->arr != NULL) {
            /* "value[2]" in HD[Identifier]: the element of the owner's repetition n (HD.1 →
             * identifier[1].value, HD.2 → identifier[2].value), a sibling in the same array. */
            owner = sibling(c, tg, idx);
            if (owner == NULL) return;
            idx = 1;
        }
        if (rtype[0]) {
            if (!last || strcmp(tname, "Reference") != 0 || depth >= MAX_DEPTH)
                goto unmapped;
            apply_in_resource(c, row, v, level, seg, owner, p, nlen, idx, rep, is_arr,
                              rtype, depth);
            return;
        }
        if (is_prim) {
            char key[64];
            const char *text = NULL, *ckey;
            hv__jv_t *val;
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
            } else if (row->dtmap[0] && depth < MAX_DEPTH && !map_has_value_rows(c, row)) {
                /* A map of the parts of one repeating primitive (XAD.1 SAD → line[1-3]: SAD.1,
                 * .2, .3 → line[1], line[2], line[3]) writes them into the owner itself. */
                target_t same = {owner, oe, tg->res_type, tg->path, NULL};
                hv__v2_apply_map(c, row->dtmap, v, level, seg, &same, NULL, rep, depth + 1, NULL);
                return;
            } else if (row->dtmap[0] && depth < MAX_DEPTH) {
                USE_DT_ROWS(c, row);
                hv__v2_apply_map(c, row->dtmap, v, level, seg, tg, chosen, rep, depth + 1, &text);
            } else {
                span_t first = hv__v2_piece(c, v, level, 1);
                if (level == 1) {
                    /* A primitive from a whole field repetition: its first component. */
                    text = hv__v2_span_text(c, first);
                } else {
                    text = hv__v2_span_text(c, level >= 3 ? v : first);
                }
            }
            if (text == NULL || text[0] == '\0') return;
            /* A concept map the IG names but does not publish (PrimaryLanguage): the code as sent. */
            if (row_vocab_known(c, row)) {
                const hv__vocab_row_t *vr = row_vocab_find(c, row, text);
                if (vr == NULL) {
                    hv__v2_issue(c, "warning", "code-invalid", hv__v2_rule_text(c), "code '%.40s' has no mapping in %s",
                          text, row->vocab);
                    return;
                }
                text = vr->fcode;
            }
            if (key[0] == 's' && !strcmp(key, "system") && !row->assign[0] &&
                !strcmp(hv_fhir_type_name(hv_fhir_elem_owner_type(oe)), "Coding"))
                text = hv__v2_coding_system_uri(c, text);
            if (tname[0] == 'c' && !strcmp(tname, "code") && hv_fhir_elem_binding(e) != NULL &&
                hv_fhir_binding_strength(hv_fhir_elem_binding(e)) == HV_FHIR_BIND_REQUIRED &&
                hv_fhir_binding_has(hv_fhir_elem_binding(e), NULL, text) == 0) {
                hv__v2_issue(c, "warning", "code-invalid", hv__v2_rule_text(c),
                      "code '%.40s' is not in the value set FHIR requires for %s", text, key);
                return;
            }
            val = hv__v2_primitive(c, tname, text);
            if (val == NULL) {
                hv__v2_issue(c, "warning", "value", hv__v2_rule_text(c), "value not valid as FHIR %s", tname);
                return;
            }
            ckey = step_ckey;
            if (is_arr) {
                hv__jv_t *arr = NULL;
                if (!hv__jv_get_ex(owner, key, &arr) ||
                    !hv__jv_is(arr, HV__JV_ARR)) {
                    arr = hv__jv_arr(c->arena);
                    hv__v2_put_el(c, owner, ckey ? ckey : key, arr, ckey ? HV__V2_CONST : 0, e, chosen);
                }
                /* given[1], given[2]: positions; a repeated value is not added twice. */
                {
                    size_t k, nn = hv__jv_len(arr);
                    for (k = 0; k < nn; k++)
                        if (hv__jv_equal(hv__jv_at(arr, k), val, 0)) return;
                }
                hv__jv_push(c->arena, arr, val);
            } else {
                hv__v2_put_el(c, owner, ckey ? ckey : key, val, ckey ? HV__V2_CONST : 0, e, chosen);
            }
            explain_add(c, tg->path, path);
            return;
        }
        /* A complex element: step into it. */
        {
            hv__jv_t *o;
            if (last && single_taken(c, owner, p, nlen, e, chosen, rep)) return;
            o = slot_get(c, owner, p, nlen, nh, step_ckey, idx, rep, is_arr,
                         first_step ? slot_occurrence(c, tg, owner, is_arr, nlen, seglen) : 0, e, chosen);
            hv__jv_t *parent = owner;
            if (o == NULL) return;
            owner = o;
            oe = sub_oe;
            if (oe == NULL) goto unmapped;
            if (last) {
                if (row->dtmap[0] && depth < MAX_DEPTH) {
                    target_t sub = {owner, oe, tg->res_type, NULL, NULL};
                    hv__jv_t *holder = NULL;
                    char hk[64];
                    if (is_arr && nlen < sizeof(hk)) {
                        memcpy(hk, p, nlen);
                        hk[nlen] = '\0';
                        if (hv__jv_get_ex(parent, hk, &holder))
                            sub.arr = holder;
                    }
                    sub.path = c->explain ? hv_arena_sprintf(c->arena, "%s.%s", tg->path, path) : tg->path;
                    USE_DT_ROWS(c, row);
                    hv__v2_apply_map(c, row->dtmap, v, level, seg, &sub, chosen, rep, depth + 1, NULL);
                    if (row_vocab_known(c, row)) vocab_complex(c, owner, tname, row);
                } else if (row->assign[0] || row->dtmap[0] == '\0') {
                    goto unmapped;
                }
                return;
            }
        }
        p = dot + 1;
        first_step = 0;
    }
    return;
unmapped:
    c->unmapped_rows++;
}

/* A row's condition holds; a row without one (the most) costs no call. */
#define COND_TRUE(c, row, seg, v, level) \
    (((row)->cc == NULL && (row)->cond[0] == '\0') || hv__v2_cond_eval(c, (row)->cc, (row)->cond, seg, v, level))

/* The guard switch last read in one hv__v2_apply_map call and the literals its operand
 * matched (a FIELD operand: the same for every value the call maps of its segment). */
struct gsw_state {
    const hv__guard_sw_t *sw;
    uint32_t m;
};

/* A row's condition holds: for a member of its run's guard switch, the switch decides the
 * guard (its operand read and compared once per run, not once per row) and only a condition
 * longer than its guard is evaluated further; others as COND_TRUE. */
static inline int row_cond(ctx_t *c, const hv__map_row_t *row, span_t seg, span_t v, int level,
                           struct gsw_state *gs) {
    if (row->gsw != NULL) {
        if (row->gsw != gs->sw) {
            gs->sw = row->gsw;
            gs->m = hv__v2_guard_match(c, row->gsw, seg, v, level);
        }
        if ((row->gmask & gs->m) == 0) return 0;
        return row->cc->guard_all || hv__v2_cond_rest(c, row->cc, seg, v, level);
    }
    return COND_TRUE(c, row, seg, v, level);
}

/* The components of a value, split once for the rows of one data-type map (n -1: not yet). */
struct comps {
    int n;
    span_t p[32];
};

/* Piece i (1-based) of v at a level, as hv__v2_piece gives it, from cs (v split at the first
 * call); a piece past what cs holds is found by hv__v2_piece. */
static span_t comp_at(ctx_t *c, struct comps *cs, span_t v, int level, unsigned i) {
    char sep = level == 1 ? c->msg.delims.comp : level == 2 ? c->msg.delims.sub : 0;
    span_t none = {NULL, 0};
    if (sep == 0 || v.p == NULL) return hv__v2_piece(c, v, level, i);
    if (cs->n < 0) {
        const char *p = v.p, *end = v.p + v.len;
        cs->n = 0;
        for (;;) {
            const char *q = memchr(p, sep, (size_t)(end - p));
            if (cs->n == (int)HV_ARRAY_LEN(cs->p)) {
                cs->n = -2; /* more than fit: hv__v2_piece for every piece */
                break;
            }
            cs->p[cs->n].p = p;
            cs->p[cs->n].len = (size_t)((q ? q : end) - p);
            cs->n++;
            if (q == NULL) break;
            p = q + 1;
        }
    }
    if (cs->n == -2) return hv__v2_piece(c, v, level, i);
    if (i == 0 || i > (unsigned)cs->n) return none;
    return cs->p[i - 1];
}

/*
 * Applies the rows of a map to value v (a segment at level 0, a field repetition at
 * level 1, a component at level 2). For a primitive target (ttype primitive) only
 * the "$value" rows count: the first that gives text sets *prim_out.
 */
int hv__v2_apply_map(ctx_t *c, const char *map, span_t v, int level, span_t seg, target_t *tg,
              const hv_fhir_type_t *ttype, unsigned rep, int depth, const char **prim_out) {
    size_t n, k, np;
    const hv__map_plan_t *pl;
    const unsigned *pos = NULL, *skip = NULL;
    int fr = c->nframes, run_ok = 0, run_one = 0;
    unsigned run_f = 0;
    span_t run_v = {NULL, 0};
    const span_t none = {NULL, 0};
    const int is_msh = level == 0 && seg.len >= 3 && memcmp(seg.p, "MSH", 3) == 0;
    struct comps cs;
    struct gsw_state gs = {NULL, 0};
    const hv__map_row_t *rows;
    cs.n = -1;
    /* The rows were found at load when the map is a loaded row's data-type or segment map. */
    if (c->map_rows_resolved) {
        rows = c->map_rows;
        n = c->map_rows_n;
        c->map_rows_resolved = 0;
    } else {
        rows = hv__map_rows(c->t, map, &n);
    }
    (void)ttype;
    np = n;
    if (rows == NULL || depth > MAX_DEPTH) {
        if (prim_out != NULL) *prim_out = hv__v2_span_text(c, hv__v2_piece(c, v, level, 1));
        return HV_ENOTFOUND;
    }
    /* The map's plan (v2_load.c plan_list) visits only the rows this call can apply and
     * passes over a run in one step; rows without one (made by hand) are all visited. */
    pl = n > 0 && rows[0].plan != NULL && rows[0].plan->rows == rows ? rows[0].plan : NULL;
    if (pl != NULL) {
        pos = prim_out != NULL ? pl->val : pl->all;
        skip = prim_out != NULL ? pl->val_skip : pl->all_skip;
        np = prim_out != NULL ? pl->nval : pl->nall;
    }
    for (k = 0; k < np; k++) {
        const hv__map_row_t *row = &rows[pos != NULL ? pos[k] : k];
        span_t f = {NULL, 0};
        int is_prim_row = row->prim;
        if (pos == NULL) {
            if (prim_out != NULL && !is_prim_row) continue;
            if (prim_out == NULL && is_prim_row && row->dtmap[0] == '\0') continue;
        }
        if (level == 0) {
            if (row->src_f == 0) {
                if (!row->assign[0] || !row_cond(c, row, seg, v, level, &gs)) continue;
                if (fr < (int)HV_ARRAY_LEN(c->frames)) c->frames[c->nframes++] = row;
                hv__v2_apply_row(c, row, v, level, seg, tg, 0, depth);
                c->nframes = fr;
                continue;
            }
            /* The field is read once for the run of rows that map it; an empty field skips
             * the run (every row of it would find the field not valued). */
            if (row->src_f != run_f) {
                run_f = row->src_f;
                /* The fields of this segment as hv__v2_seg_field split them (a row applied
                 * before may have split another segment's since: then it splits again). */
                if (!is_msh && seg.p != NULL && c->fc_seg == seg.p && c->fc_len == seg.len)
                    run_v = run_f < c->fc_n ? c->fc[run_f] : none;
                else
                    run_v = hv__v2_seg_field(c, seg, row->src_f);
                run_ok = hv__v2_span_valued(run_v);
                /* One repetition (no repetition separator): each row of the run takes the
                 * field as it is instead of counting and splitting it again. */
                run_one = run_ok && memchr(run_v.p, c->msg.delims.rep, run_v.len) == NULL;
            }
            if (!run_ok) {
                if (pos != NULL) k = skip[k] - 1;
                else if (row->run > 1) k += row->run - 1;
                continue;
            }
            f = run_v;
            if (!row_cond(c, row, seg, v, level, &gs)) continue;
            if (fr < (int)HV_ARRAY_LEN(c->frames)) c->frames[c->nframes++] = row;
            if (is_msh && row->src_f <= 2) {
                hv__v2_apply_row(c, row, f, 3, seg, tg, 0, depth);
            } else if (run_one && c->msg.delims.rep != 0) {
                /* As the loop below does for its one repetition, which is f and valued. */
                span_t rv = f;
                if (row->src_c) {
                    rv = hv__v2_piece(c, rv, 1, row->src_c);
                    if (hv__v2_span_valued(rv)) hv__v2_apply_row(c, row, rv, 2, seg, tg, 0, depth);
                } else {
                    hv__v2_apply_row(c, row, rv, 1, seg, tg, 0, depth);
                }
            } else {
                size_t r, nr = hv_hl7v2_span_count(f, c->msg.delims.rep);
                if (nr > MAX_REPS) nr = MAX_REPS;
                for (r = 0; r < nr; r++) {
                    span_t rv;
                    if (hv_hl7v2_span_piece(f, c->msg.delims.rep, r, &rv) != HV_OK || !hv__v2_span_valued(rv))
                        continue;
                    if (row->src_c) {
                        rv = hv__v2_piece(c, rv, 1, row->src_c);
                        if (!hv__v2_span_valued(rv)) continue;
                        hv__v2_apply_row(c, row, rv, 2, seg, tg, (unsigned)r, depth);
                    } else {
                        hv__v2_apply_row(c, row, rv, 1, seg, tg, (unsigned)r, depth);
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
            /* The component is found once for the run of rows that map it (v split into its
             * components at the first); an empty one skips the run: its subcomponents are
             * not valued either. */
            if (row->src_f != run_f) {
                run_f = row->src_f;
                run_v = comp_at(c, &cs, v, level, row->src_f);
                run_ok = hv__v2_span_valued(run_v);
            }
            if (!run_ok) {
                if (pos != NULL) k = skip[k] - 1;
                else if (row->run > 1) k += row->run - 1;
                continue;
            }
            f = run_v;
            if (row->src_c) f = hv__v2_piece(c, f, level + 1, row->src_c);
        }
        if (!hv__v2_span_valued(f)) continue;
        if (!row_cond(c, row, seg, v, level, &gs)) continue;
        if (is_prim_row && prim_out != NULL) {
            char *text;
            if (row->assign[0] == '=') {
                /* "urn:oid:"+HD.2 style: the two expressions the tables use for HD. */
                if (strstr(row->assign, "urn:oid:") != NULL)
                    text = hv_arena_sprintf(c->arena, "urn:oid:%s", hv__v2_span_text(c, f));
                else if (strstr(row->assign, "urn:uuid:") != NULL)
                    text = hv_arena_sprintf(c->arena, "urn:uuid:%s", hv__v2_span_text(c, f));
                else
                    text = hv__v2_span_text(c, level + (row->src_f ? 1 : 0) >= 3 ? f : hv__v2_piece(c, f, level + (row->src_f ? 1 : 0), 1));
            } else if (row->assign[0]) {
                text = hv_arena_strdup(c->arena, row->assign);
            } else {
                int fl = level + (row->src_f ? 1 : 0);
                text = hv__v2_span_text(c, fl >= 3 ? f : hv__v2_piece(c, f, fl, 1));
            }
            if (text != NULL && text[0]) {
                *prim_out = text;
                return HV_OK;
            }
            continue;
        }
        if (fr < (int)HV_ARRAY_LEN(c->frames)) c->frames[c->nframes++] = row;
        hv__v2_apply_row(c, row, f, row->src_f ? level + 1 : level, seg, tg, rep, depth);
        c->nframes = fr;
    }
    if (prim_out != NULL && *prim_out == NULL) *prim_out = hv__v2_span_text(c, hv__v2_piece(c, v, level, 1));
    return HV_OK;
}
