/*
 * write.c — writing a page of fetched resources (a search page, or a chunk of a
 * Bulk Data NDJSON file) into the engine's FHIR store, in-process.
 *
 *   1. loop thread: each resource is checked (structure against the FHIR R4 model,
 *      id syntax, and fhir.validation as for REST writes), hashed (SHA-256 of its
 *      JSON without meta), given its local id and its source identity, and its
 *      references are rewritten to local ids (below), and its search-index rows,
 *      Patient compartments and stored text as a first version are computed (the
 *      store job only inserts them); a bad one is a failed
 *      resource with its own error, the rest go on. The page's trees are
 *      transformed in place (no copy). After a page that was mostly unchanged
 *      (a re-sync), validation waits for step 2 and is applied only to what is to
 *      be written, and the rows and the text are left to the store. A Bulk chunk
 *      (bulk.c, prepared one resource at a time in the thread pool, text_only)
 *      keeps no trees: once its text and rows are made a resource's tree is freed,
 *      and step 3 writes a first version from that text and those rows on SQLite
 *      (the store parses the text only where the write needs a tree: PostgreSQL, a
 *      Location, a later version); prepared lazily, it is kept as compact JSON and
 *      parsed again after step 2 only if it is to be written;
 *   2. ehr storage thread, one job: the resources table says, per (type, remote
 *      id), the hash last written and the local version that write produced:
 *      same hash → unchanged, not written;
 *   3. fhir storage thread, ONE job for the whole page (one savepoint of the
 *      store's group commit): for each changed resource that was written before,
 *      the current local version is read; one other than the version our last
 *      write produced means the resource was also changed locally → a conflict,
 *      decided by the connection's policy (ehr-wins: overwrite; local-wins: keep
 *      the local version; keep-both: keep it and create the EHR's as a new
 *      resource tagged for review); then each write is an update (create-on-update,
 *      FHIR R4 http.html#update) of the local id through hv__fop_run, the same
 *      store call the `fhir-store` channel destination and the REST API make.
 *      A database failure rolls the page back and fails every write of it; an
 *      entry the store refuses (4xx) is a failed resource, the rest stand;
 *   4. loop thread: counts, conflict records, the store's change listeners (fhir
 *      sources, subscriptions) and the channel bound to the connection (source
 *      type epic / cerner / fhir-pull) receives each stored resource as a message
 *      (application/fhir+json), so its filters, steps and destinations apply;
 *   5. ehr storage thread, one job: hashes and versions, conflicts.
 *
 * Local ids (namespaced per connection). Two EHRs may both have Patient/123: the
 * local id of the EHR's Type/id synced through connection C is
 * hv__fhir_derived_id("ehr:C:Type/id", 0), a version 8 UUID made of two FNV-1a
 * hashes — stable, so a re-sync, a resumed run or a Bulk sync of the same
 * connection lands on the same resource, and a reference can be rewritten without
 * a look-up. Every Reference.reference of the resource (contained ones too) of the
 * form "Type/id", "Type/id/_history/v" or "[base]/Type/id[/_history/v]" (the
 * connection's base) becomes "Type/<local id>" (the version is dropped: local
 * versions differ); other references (urn:uuid:, "#contained", other servers, a
 * type the FHIR R4 model does not know) are left as they are. The remote id stays
 * in meta.source and in the connection's identifier.
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"
#include "fhir/rest_int.h"
#include "fhir/search_int.h"

#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define IDENT_SYSTEM_PREFIX "urn:holovitals:ehr:"
#define CONFLICT_TAG_SYSTEM "urn:holovitals:ehr:conflict"
#define REF_DEPTH_MAX 64 /* nesting walked when rewriting references (FHIR resources are far shallower) */

enum { ITEM_NEW = 0, ITEM_UNCHANGED, ITEM_CHANGED, ITEM_FAILED };
enum { WRITE_NONE = 0, WRITE_PUT, WRITE_COPY };
enum { DECIDE_NONE = 0, DECIDE_EHR, DECIDE_LOCAL, DECIDE_BOTH };

typedef struct item {
    char type[HV__FHIR_TYPE_MAX];
    char id[HV__FHIR_ID_MAX];       /* the EHR's id */
    char local_id[HV__FHIR_ID_MAX]; /* the store's id (derived, above) */
    char hash[65];
    char old_version[32];           /* the local version our last write produced */
    char cur_version[32];           /* the local version found by the conflict check */
    json_object *res;               /* transformed resource (one reference owned here); NULL once
                                     * dropped after a text_only preparation (pre_text holds it) */
    int state;
    int known;                      /* a row exists */
    int seen;                       /* type and id are valid: the EHR has it (reconcile.c) */
    int write;                      /* WRITE_* */
    int decided;                    /* DECIDE_*: a conflict and what the policy did */
    char new_version[32];
    char copy_id[HV__FHIR_ID_MAX];
    int has_op;
    hv__fop_t op;                   /* the store write (fhir storage thread) */
    hv__search_rows_t *ix;          /* its search-index rows computed ahead (step 1), or NULL */
    char *pre_text;                 /* its stored text as a first version, serialized ahead (step 1:
                                     * hv__fop_ahead), or NULL; moved into the op of its WRITE_PUT */
    size_t pre_len, pre_ts;
    hv__store_pats_t *pre_pats;     /* its Patient compartments computed ahead, or NULL; moved likewise */
    int checked;                    /* fhir.validation applied (step 1, or step 2 when lazy) */
    char *lazy_text;                /* text_only and lazy: the transformed resource as compact JSON,
                                     * its tree dropped; parsed again only if it is to be written */
    size_t lazy_len;
} item_t;

struct hv__ehr_batch {
    hv__ehr_run_t *r;
    hv__ehr_written_cb cb;
    hv__fhir_t *f;
    item_t *items;
    size_t n, cap;                  /* items prepared, items allocated */
    int policy;                     /* DECIDE_* the connection's policy maps to */
    char conn[HV__EHR_ID_MAX];
    char run_id[HV__EHR_ID_MAX];
    char policy_name[16];
    uint64_t t0, t_prep, t_write, t_lookup, t_store; /* hv_now_ms at each step, for the debug log (t_write:
                                                      * the write began; a page prepared ahead waits before) */
    int64_t fetched, failed;        /* counted by the preparation, added to the run when written */
    int64_t trees_parsed;           /* store job: trees parsed from text (text_only: by the store where a
                                     * write needs one, keep-both, a rerun), for the debug log */
    int64_t lazy_texts;             /* preparation: resources kept as text, not trees (text_only, lazy) */
    json_object *errs;              /* the preparation's errors, recorded when written */
};
typedef struct hv__ehr_batch wctx_t;

/* ---- pure helpers ---- */

static void sha256_hex(const char *s, size_t n, char out[65]) {
    unsigned char md[32];
    unsigned int len = 0;
    EVP_Digest(s, n, md, &len, EVP_sha256(), NULL);
    hv_hex(md, 32, out);
}

void hv__ehr_local_id(const char *conn, const char *type, const char *id, char out[HV__EHR_LOCAL_ID_MAX]) {
    char seed[HV__EHR_ID_MAX + HV__FHIR_TYPE_MAX + HV__FHIR_ID_MAX + 8];
    snprintf(seed, sizeof(seed), "ehr:%s:%s/%s", conn, type, id);
    hv__fhir_derived_id(seed, 0, out);
}

/* Rewrites one reference string; returns the new value in out, or 0 when it stays. */
static int rewrite_ref(const char *conn, const char *base, const char *ref, char *out, size_t outlen) {
    size_t blen = strlen(base), tlen;
    const char *p = ref, *slash, *end;
    char type[HV__FHIR_TYPE_MAX], id[HV__FHIR_ID_MAX], local[HV__EHR_LOCAL_ID_MAX];
    if (blen > 0 && strncmp(ref, base, blen) == 0 && ref[blen] == '/') p = ref + blen + 1;
    slash = strchr(p, '/');
    if (slash == NULL) return 0;
    tlen = (size_t)(slash - p);
    if (tlen == 0 || tlen >= sizeof(type)) return 0;
    memcpy(type, p, tlen);
    type[tlen] = '\0';
    if (hv_fhir_resource_type(type) == NULL) return 0;
    end = strchr(slash + 1, '/');
    if (end == NULL) end = slash + 1 + strlen(slash + 1);
    else if (strncmp(end, "/_history/", 10) != 0) return 0;
    if ((size_t)(end - slash - 1) >= sizeof(id)) return 0;
    memcpy(id, slash + 1, (size_t)(end - slash - 1));
    id[end - slash - 1] = '\0';
    if (!hv__fhir_id_valid(id)) return 0;
    hv__ehr_local_id(conn, type, id, local);
    snprintf(out, outlen, "%s/%s", type, local);
    return 1;
}

static int rewrite_walk(json_object *o, const char *conn, const char *base, int depth) {
    char buf[HV__FHIR_TYPE_MAX + HV__EHR_LOCAL_ID_MAX + 2];
    int rc = HV_OK;
    if (depth > REF_DEPTH_MAX) return HV_EINVAL;
    if (json_object_is_type(o, json_type_array)) {
        size_t i, n = json_object_array_length(o);
        for (i = 0; i < n && rc == HV_OK; i++) rc = rewrite_walk(json_object_array_get_idx(o, i), conn, base, depth + 1);
        return rc;
    }
    if (!json_object_is_type(o, json_type_object)) return HV_OK;
    {
        json_object_object_foreach(o, k, v) {
            if (rc != HV_OK) break;
            if (strcmp(k, "reference") == 0 && json_object_is_type(v, json_type_string)) {
                if (rewrite_ref(conn, base, json_object_get_string(v), buf, sizeof(buf)) &&
                    json_object_set_string(v, buf) != 1)
                    rc = HV_ENOMEM;
            } else if (json_object_is_type(v, json_type_object) || json_object_is_type(v, json_type_array)) {
                rc = rewrite_walk(v, conn, base, depth + 1);
            }
        }
    }
    return rc;
}

int hv__ehr_rewrite_refs(json_object *res, const char *conn, const char *base) {
    return rewrite_walk(res, conn, base, 0);
}

/* Adds the source identity: meta.source and the connection's identifier. */
static int add_identity(const hv__ehr_prep_t *p, json_object *res, const char *type, const char *id) {
    json_object *meta = NULL, *idents = NULL, *ident;
    const hv_fhir_type_t *t = hv_fhir_resource_type(type);
    const hv_fhir_elem_t *root = t ? hv_fhir_type_root(t) : NULL;
    char sys[128], src[2048];
    size_t i;
    snprintf(sys, sizeof(sys), IDENT_SYSTEM_PREFIX "%s", p->conn);
    snprintf(src, sizeof(src), "%s/%s/%s", p->base_url, type, id);
    if (!json_object_object_get_ex(res, "meta", &meta) || !json_object_is_type(meta, json_type_object)) {
        meta = json_object_new_object();
        if (meta == NULL || hv_json_set(res, "meta", meta) != HV_OK) return HV_ENOMEM;
    }
    json_object_object_del(meta, "versionId");
    json_object_object_del(meta, "lastUpdated");
    if (hv_json_set_str(meta, "source", src) != HV_OK) return HV_ENOMEM;
    if (root == NULL || hv_fhir_elem_child(root, "identifier", 10, NULL) == NULL) return HV_OK;
    if (!json_object_object_get_ex(res, "identifier", &idents)) {
        idents = json_object_new_array();
        if (idents == NULL || hv_json_set(res, "identifier", idents) != HV_OK) return HV_ENOMEM;
    }
    if (!json_object_is_type(idents, json_type_array)) return HV_OK; /* single identifier (rare): leave it */
    for (i = 0; i < json_object_array_length(idents); i++) {
        const char *s = hv_json_get_str(json_object_array_get_idx(idents, i), "system");
        if (s != NULL && strcmp(s, sys) == 0) return HV_OK;
    }
    ident = json_object_new_object();
    if (ident == NULL) return HV_ENOMEM;
    hv_json_set_str(ident, "use", "secondary");
    hv_json_set_str(ident, "system", sys);
    hv_json_set_str(ident, "value", id);
    return json_object_array_add(idents, ident) == 0 ? HV_OK : HV_ENOMEM;
}

/* fhir.validation = reject refuses what the REST API would refuse: the reason (in why,
 * element paths only), or NULL when it is accepted; v NULL accepts everything. The REST API
 * validates against no profile, so any validator without profiles (the fhir module's, or a
 * feed's own: hv__ehr_prep_init) gives the same answer. */
static const char *refused_by(hv_fhir_validator_t *v, json_object *res, char why[160]) {
    json_object *oo = NULL, *issues = NULL;
    int errors = 0;
    const char *loc = "?";
    if (v == NULL) return NULL;
    /* An accepted resource's outcome (its warnings) is not read: only a refused one's is made,
     * by a second walk listing every issue as a walk without the flag does. */
    if (hv_fhir_validate(v, res, NULL, HV_FHIR_VALIDATE_OUTCOME_ON_ERROR, &oo, &errors) != HV_OK || errors == 0) {
        json_object_put(oo);
        return NULL;
    }
    if (json_object_object_get_ex(oo, "issue", &issues) && json_object_array_length(issues) > 0) {
        json_object *ex = NULL, *i0 = json_object_array_get_idx(issues, 0);
        if (json_object_object_get_ex(i0, "expression", &ex) && json_object_array_length(ex) > 0)
            loc = json_object_get_string(json_object_array_get_idx(ex, 0));
    }
    snprintf(why, 160, "%d validation error%s, first at %.80s", errors, errors == 1 ? "" : "s", loc);
    json_object_put(oo);
    return why;
}

/* The fhir module's validator when fhir.validation = reject (loop thread only), else NULL. */
static hv_fhir_validator_t *loop_validator(hv__fhir_t *f) {
    return f != NULL && f->validation == HV__VALIDATE_REJECT ? f->validator : NULL;
}

static void wctx_free(wctx_t *w) {
    size_t i;
    if (w == NULL) return;
    for (i = 0; i < w->n; i++) {
        json_object_put(w->items[i].res);
        if (w->items[i].has_op) hv__fop_clear(&w->items[i].op);
        hv__search_rows_free(w->items[i].ix);
        hv_free(w->items[i].pre_text);
        hv_free(w->items[i].pre_pats);
        hv_free(w->items[i].lazy_text);
    }
    hv_free(w->items);
    json_object_put(w->errs);
    hv_free(w);
}

static void w_end(wctx_t *w, int status) {
    hv__ehr_run_t *r = w->r;
    hv__ehr_written_cb cb = w->cb;
    wctx_free(w);
    cb(r, status);
}

/* ---- step 5: the rows (ehr storage thread) ---- */

static int rows_job(hv_db_t *db, void *arg) {
    wctx_t *w = arg;
    hv_db_stmt_t *st = NULL;
    int64_t now = (int64_t)hv_now_ms();
    size_t i;
    int rc;
    for (i = 0; i < w->n; i++) {
        item_t *it = &w->items[i];
        const char *ver;
        if (it->state == ITEM_FAILED || it->state == ITEM_UNCHANGED) continue;
        ver = it->write == WRITE_PUT ? it->new_version : it->cur_version;
        rc = hv_db_prepare(db,
                           "INSERT INTO resources (connection, rtype, rid, hash, local_version, synced_at, seen_run) VALUES"
                           " ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (connection, rtype, rid) DO UPDATE SET"
                           " hash = excluded.hash, local_version = excluded.local_version, synced_at = excluded.synced_at,"
                           " seen_run = excluded.seen_run",
                           &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, w->conn, strlen(w->conn));
        hv_db_bind_text(st, 2, it->type, strlen(it->type));
        hv_db_bind_text(st, 3, it->id, strlen(it->id));
        hv_db_bind_text(st, 4, it->hash, strlen(it->hash));
        hv_db_bind_text(st, 5, ver, strlen(ver));
        hv_db_bind_int64(st, 6, now);
        hv_db_bind_text(st, 7, w->run_id, strlen(w->run_id));
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
        if (it->decided != DECIDE_NONE) {
            unsigned char rnd[8];
            char cid[40];
            const char *decision = it->decided == DECIDE_LOCAL ? "local-wins: the EHR's change was not applied"
                                   : it->decided == DECIDE_BOTH
                                       ? "keep-both: the EHR's version was stored as a new resource tagged needs-review"
                                       : "ehr-wins: the local change was overwritten";
            hv_random_secure(rnd, sizeof(rnd));
            hv_hex(rnd, sizeof(rnd), cid);
            rc = hv_db_prepare(db,
                               "INSERT INTO conflicts (id, connection, run_id, rtype, rid, policy, decision,"
                               " local_version, copy_id, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                               &st);
            if (rc != HV_OK) return rc;
            hv_db_bind_text(st, 1, cid, strlen(cid));
            hv_db_bind_text(st, 2, w->conn, strlen(w->conn));
            hv_db_bind_text(st, 3, w->run_id, strlen(w->run_id));
            hv_db_bind_text(st, 4, it->type, strlen(it->type));
            hv_db_bind_text(st, 5, it->id, strlen(it->id));
            hv_db_bind_text(st, 6, w->policy_name, strlen(w->policy_name));
            hv_db_bind_text(st, 7, decision, strlen(decision));
            hv_db_bind_text(st, 8, it->cur_version, strlen(it->cur_version));
            hv_db_bind_text(st, 9, it->copy_id, strlen(it->copy_id));
            hv_db_bind_int64(st, 10, now);
            rc = hv_db_step(st);
            hv_db_done(st);
            if (rc < 0) return rc;
        }
    }
    return HV_OK;
}

static void rows_done(int status, void *arg) {
    wctx_t *w = arg;
    hv_logrec_t *lr = hv_log_begin(HV_LOG_DEBUG, "ehr.sync.page");
    if (lr) {
        uint64_t now = hv_now_ms();
        hv_log_str(lr, "run", w->r->id);
        hv_log_int(lr, "resources", (int64_t)w->n);
        hv_log_int(lr, "fetch_ms", (int64_t)w->r->fetch_ms);
        hv_log_int(lr, "fetched_ahead", w->r->page_ahead);
        hv_log_int(lr, "prepare_ms", (int64_t)(w->t_prep - w->t0));
        hv_log_int(lr, "lookup_ms", (int64_t)(w->t_lookup - w->t_write));
        hv_log_int(lr, "store_ms", (int64_t)(w->t_store - w->t_lookup));
        hv_log_int(lr, "rows_ms", (int64_t)(now - w->t_store));
        hv_log_int(lr, "trees_parsed", w->trees_parsed);
        hv_log_int(lr, "lazy_texts", w->lazy_texts);
        hv_log_end(lr);
    }
    if (status != HV_OK) hv__ehr_run_error(w->r, "store", "recording the synced resources failed: %s", hv_strerror(status));
    w_end(w, status);
}

static void commit_rows(wctx_t *w) {
    if (hv_storage_submit(w->r->m->storage, rows_job, rows_done, w) != HV_OK) {
        hv__ehr_run_error(w->r, "store", "the ehr store is busy");
        w_end(w, HV_EBUSY);
    }
}

/* ---- step 3: the page into the store (fhir storage thread) ---- */

/* The copy keep-both stores: the EHR's version under a new id, tagged for review. */
static json_object *review_copy(json_object *res) {
    json_object *copy = NULL, *meta = NULL, *tags, *tag;
    if (json_object_deep_copy(res, &copy, NULL) != 0) return NULL;
    json_object_object_del(copy, "id");
    if (!json_object_object_get_ex(copy, "meta", &meta)) {
        meta = json_object_new_object();
        hv_json_set(copy, "meta", meta);
    }
    tags = json_object_new_array();
    tag = json_object_new_object();
    hv_json_set_str(tag, "system", CONFLICT_TAG_SYSTEM);
    hv_json_set_str(tag, "code", "needs-review");
    hv_json_set_str(tag, "display", "EHR version kept beside a locally changed resource");
    json_object_array_add(tags, tag);
    hv_json_set(meta, "tag", tags);
    return copy;
}

/* The tree of an item whose tree a text_only preparation dropped, from text, where the
 * store job needs it (keep-both's copy, a run after a rollback): its stored text as a
 * first version (pre_text), or the text a run of the store job before a rollback wrote.
 * Either is hv_fhir_json_write of the tree the preparation made, meta.versionId and
 * meta.lastUpdated aside, which the store sets again for the version it writes; the index
 * rows and compartments made from that tree serve it unchanged. NULL when out of memory
 * (or, which cannot happen with the engine's own writer, when the text is not JSON). */
static json_object *item_tree(const char *text, size_t len) {
    json_object *res = NULL;
    if (text == NULL || hv_json_parse(text, len, "prepared resource", &res, NULL) != HV_OK) return NULL;
    return res;
}

/* Submitted re-runnable (hv_storage_submit_rerun): the page runs without a savepoint of its
 * own — SQLite would copy every page of the b-trees a 1,000-resource job changes into the
 * sub-journal — and when a database failure rolls its batch back it runs again from the
 * start. Each run therefore starts every item from its inputs (the conflict check's
 * outputs and the op of a run before are cleared), and writes nothing outside the
 * database: hv__fop_run may run twice (fhir/rest_crud.c), and the notifications, counts
 * and channel messages wait for store_done, after the commit. */
static int store_job(hv_db_t *db, void *arg) {
    wctx_t *w = arg;
    size_t i;
    int rc;
    w->trees_parsed = 0;
    for (i = 0; i < w->n; i++) {
        item_t *it = &w->items[i];
        if (it->state != ITEM_NEW && it->state != ITEM_CHANGED) continue;
        if (it->has_op) {
            /* A run after a rollback. A dropped tree comes back from the op, which keeps it
             * when its write failed (a text-only write keeps its text instead). A first
             * version written gives back its text: the writer's output of the same tree as
             * the item's text, hence the same bytes but for the instant at pre_ts, which the
             * store overwrites again. Else the tree comes from the text the write produced.
             * When the op never took the item's text, that text is still the item's. */
            if (it->res == NULL && it->op.resource != NULL) {
                it->res = it->op.resource;
                it->op.resource = NULL;
            } else if (it->res == NULL && it->pre_text == NULL) {
                if (it->op.pre_text != NULL) {
                    it->pre_text = it->op.pre_text;
                    it->op.pre_text = NULL;
                } else if (it->op.text != NULL && it->op.out_version == 1 && it->op.text_len == it->pre_len) {
                    it->pre_text = it->op.text;
                    it->op.text = NULL;
                } else {
                    if ((it->res = item_tree(it->op.text, it->op.text_len)) == NULL) return HV_ENOMEM;
                    w->trees_parsed++;
                }
            }
            if (it->pre_text != NULL && it->pre_pats == NULL) {
                it->pre_pats = it->op.pre_pats;
                it->op.pre_pats = NULL;
            }
            hv__fop_clear(&it->op);
            it->has_op = 0;
        }
        it->cur_version[0] = '\0';
        it->decided = DECIDE_NONE;
        it->write = WRITE_PUT;
        if (it->known && it->old_version[0]) {
            hv__store_row_t row;
            rc = hv__store_get(db, it->type, it->local_id, 0, &row);
            if (rc == HV_OK) {
                if (!row.deleted) snprintf(it->cur_version, sizeof(it->cur_version), "%lld", (long long)row.version);
                hv__store_row_clear(&row);
            } else if (rc != HV_ENOTFOUND) {
                return rc;
            }
            if (it->cur_version[0] && strcmp(it->cur_version, it->old_version) != 0) {
                it->decided = w->policy;
                it->write = w->policy == DECIDE_LOCAL ? WRITE_NONE : w->policy == DECIDE_BOTH ? WRITE_COPY : WRITE_PUT;
            }
        }
        if (it->write == WRITE_NONE) continue;
        /* keep-both's copy is made from the tree, kept with the item (a conflict is rare). */
        if (it->write == WRITE_COPY && it->res == NULL) {
            if ((it->res = item_tree(it->pre_text, it->pre_len)) == NULL) return HV_ENOMEM;
            w->trees_parsed++;
        }
        hv__fop_init(&it->op, it->write == WRITE_PUT ? HV__FOP_UPDATE : HV__FOP_CREATE);
        it->has_op = 1;
        snprintf(it->op.type, sizeof(it->op.type), "%s", it->type);
        if (it->write == WRITE_PUT) {
            snprintf(it->op.id, sizeof(it->op.id), "%s", it->local_id);
            /* A dropped tree stays dropped: the op is text-only (fhir/store_int.h), and the
             * store parses the text only where the write needs the tree (PostgreSQL, a
             * Location, a later version), saying so in op.parsed. */
            if (it->res != NULL) it->op.resource = json_object_get(it->res);
            it->op.ix_pre = it->ix; /* borrowed: freed with the batch, after the job */
            /* Moved, not copied: a run after a rollback serializes in the store instead. The
             * text is of this id as version 1; the store discards it for any other version. */
            it->op.pre_text = it->pre_text;
            it->op.pre_len = it->pre_len;
            it->op.pre_ts = it->pre_ts;
            it->op.pre_pats = it->pre_pats;
            it->pre_text = NULL;
            it->pre_pats = NULL;
        } else {
            hv__fhir_new_id(it->op.id);
            it->op.resource = review_copy(it->res);
            if (it->op.resource == NULL) return HV_ENOMEM;
        }
        rc = hv__fop_run(db, &it->op);
        w->trees_parsed += it->op.parsed;
        if (rc != HV_OK) return rc; /* the database failed: the page rolls back */
        if (it->res == NULL && it->op.text != NULL) {
            /* Written: a tree parsed for this write goes at once, so that the page holds one
             * tree at a time (a run after a rollback parses op.text again). */
            json_object_put(it->op.resource);
            it->op.resource = NULL;
        }
    }
    return HV_OK;
}

static void store_done(int status, void *arg) {
    wctx_t *w = arg;
    hv__ehr_run_t *r = w->r;
    hv_channel_t *ch = hv__ehr_channel_for(r->m, r->c->id);
    size_t i;
    w->t_store = hv_now_ms();
    if (status != HV_OK) {
        hv__ehr_run_error(r, "store", "the FHIR store failed writing the page (rolled back): %s", hv_strerror(status));
        for (i = 0; i < w->n; i++)
            if (w->items[i].state == ITEM_NEW || w->items[i].state == ITEM_CHANGED) {
                w->items[i].state = ITEM_FAILED;
                r->failed++;
            }
        r->page_failed = 1;
        w_end(w, status);
        return;
    }
    for (i = 0; i < w->n; i++) {
        item_t *it = &w->items[i];
        if (it->state != ITEM_NEW && it->state != ITEM_CHANGED) continue;
        if (it->decided != DECIDE_NONE) {
            r->conflicts++;
            if (it->decided != DECIDE_EHR) r->unchanged++;
            hv__ehr_run_error(r, "conflict", "%s/%s changed locally (version %s, we wrote %s) and in the EHR: %s",
                              it->type, it->id, it->cur_version, it->old_version,
                              it->decided == DECIDE_LOCAL ? "local-wins: the EHR's change was not applied"
                              : it->decided == DECIDE_BOTH
                                  ? "keep-both: the EHR's version was stored as a new resource tagged needs-review"
                                  : "ehr-wins: the local change was overwritten");
        }
        if (!it->has_op) continue;
        if (it->op.status != 200 && it->op.status != 201) {
            hv__ehr_run_error(r, it->type, "%s/%s was not stored: %d %.300s", it->type, it->id, it->op.status,
                              it->op.msg);
            it->state = ITEM_FAILED;
            r->failed++;
            continue;
        }
        hv__fhir_notify(w->f, &it->op);
        if (it->write == WRITE_COPY) {
            snprintf(it->copy_id, sizeof(it->copy_id), "%s", it->op.id);
            continue;
        }
        snprintf(it->new_version, sizeof(it->new_version), "%lld", (long long)it->op.out_version);
        if (it->op.status == 201) r->created++;
        else r->updated++;
        /* The bound channel sees every resource written, as stored (filters, steps, destinations, audit). */
        if (ch != NULL && it->op.text != NULL)
            (void)hv_channel_receive(ch, it->op.text, it->op.text_len, "application/fhir+json", NULL, NULL);
    }
    commit_rows(w);
}

/* ---- step 2: hashes and versions of earlier writes (ehr storage thread) ---- */

static int lookup_job(hv_db_t *db, void *arg) {
    wctx_t *w = arg;
    hv_db_stmt_t *st = NULL;
    size_t i;
    int rc;
    for (i = 0; i < w->n; i++) {
        item_t *it = &w->items[i];
        if (!it->seen) continue;
        /* Seen by this run: a full sync's reconciliation keeps it (a failed one too). */
        rc = hv_db_prepare(db, "UPDATE resources SET seen_run = $1 WHERE connection = $2 AND rtype = $3 AND rid = $4", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, w->run_id, strlen(w->run_id));
        hv_db_bind_text(st, 2, w->conn, strlen(w->conn));
        hv_db_bind_text(st, 3, it->type, strlen(it->type));
        hv_db_bind_text(st, 4, it->id, strlen(it->id));
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
        if (it->state == ITEM_FAILED) continue;
        rc = hv_db_prepare(db, "SELECT hash, local_version FROM resources WHERE connection = $1 AND rtype = $2 AND rid = $3",
                           &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, w->conn, strlen(w->conn));
        hv_db_bind_text(st, 2, it->type, strlen(it->type));
        hv_db_bind_text(st, 3, it->id, strlen(it->id));
        rc = hv_db_step(st);
        if (rc == HV_DB_ROW) {
            size_t n = 0;
            const char *h = hv_db_column_text(st, 0, &n);
            it->known = 1;
            it->state = (h != NULL && n == 64 && memcmp(h, it->hash, 64) == 0) ? ITEM_UNCHANGED : ITEM_CHANGED;
            h = hv_db_column_text(st, 1, &n);
            snprintf(it->old_version, sizeof(it->old_version), "%.*s", (int)n, h ? h : "");
        }
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    return HV_OK;
}

static void lookup_done(int status, void *arg) {
    wctx_t *w = arg;
    hv__ehr_run_t *r = w->r;
    size_t i, nwrite = 0;
    char whybuf[160];
    w->t_lookup = hv_now_ms();
    if (status != HV_OK) {
        hv__ehr_run_error(r, "store", "reading the synced resources failed: %s", hv_strerror(status));
        r->page_failed = 1;
        w_end(w, status);
        return;
    }
    for (i = 0; i < w->n; i++) {
        item_t *it = &w->items[i];
        const char *why;
        if (it->state == ITEM_UNCHANGED) {
            r->unchanged++;
            continue;
        }
        if (it->state == ITEM_FAILED) continue;
        /* Prepared lazily with text_only: the tree again, only for what is to be written. */
        if (it->res == NULL && it->lazy_text != NULL) {
            it->res = item_tree(it->lazy_text, it->lazy_len);
            hv_free(it->lazy_text);
            it->lazy_text = NULL;
            if (it->res == NULL) {
                hv__ehr_run_error(r, it->type, "%s/%s was not stored: out of memory", it->type, it->id);
                it->state = ITEM_FAILED;
                r->failed++;
                continue;
            }
        }
        /* Prepared lazily: validated now, only what is to be written. */
        if (!it->checked && (why = refused_by(loop_validator(w->f), it->res, whybuf)) != NULL) {
            hv__ehr_run_error(r, it->type, "%s/%s was not stored: %s", it->type, it->id, why);
            it->state = ITEM_FAILED;
            r->failed++;
            continue;
        }
        nwrite++;
    }
    /* A page mostly unchanged (a re-sync) says the next is likely so too: validating it and
     * computing its rows ahead would be done for nothing. */
    r->rows_lazy = nwrite * 2 < w->n;
    if (nwrite == 0) {
        w_end(w, HV_OK);
        return;
    }
    if (hv_storage_submit_rerun(w->f->storage, store_job, store_done, w) != HV_OK) {
        hv__ehr_run_error(r, "store", "the FHIR store's queue is full");
        for (i = 0; i < w->n; i++)
            if (w->items[i].state == ITEM_NEW || w->items[i].state == ITEM_CHANGED) r->failed++;
        r->page_failed = 1;
        w_end(w, HV_EBUSY);
    }
}

/* ---- step 1 ---- */

/* What the store would otherwise compute on the fhir storage thread, here instead (the
 * loop thread, or a Bulk chunk's pool thread), as the import's readers do: the resource's
 * Patient compartments and its stored text as a first version (hv__fop_ahead, which also
 * sets meta.versionId and a placeholder meta.lastUpdated on the tree; the store sets both
 * again). Only the item's own write (WRITE_PUT of local_id) may use them: keep-both's copy
 * has another id. Anything that fails is left to the store. */
static void item_ahead(item_t *it) {
    hv__fop_t op;
    hv__fop_init(&op, HV__FOP_UPDATE);
    snprintf(op.type, sizeof(op.type), "%s", it->type);
    snprintf(op.id, sizeof(op.id), "%s", it->local_id);
    op.resource = it->res; /* borrowed for the call */
    hv__fop_ahead(&op, 1);
    it->pre_text = op.pre_text;
    it->pre_len = op.pre_len;
    it->pre_ts = op.pre_ts;
    it->pre_pats = op.pre_pats;
    op.pre_text = NULL;
    op.pre_pats = NULL;
    op.resource = NULL;
    hv__fop_clear(&op);
}

static int id_ok(const char *id) {
    size_t n = strlen(id);
    return n >= 1 && n <= 64 && hv__fhir_id_valid(id);
}

/* A preparation error, kept in the batch until it is written (a prepared-ahead page may be dropped). */
static void berr(wctx_t *w, const char *where, const char *fmt, ...) HV_PRINTF(3, 4);
static void berr(wctx_t *w, const char *where, const char *fmt, ...) {
    char msg[512];
    json_object *e;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (w->errs == NULL && (w->errs = json_object_new_array()) == NULL) return;
    if ((e = json_object_new_object()) == NULL) return;
    hv_json_set_str(e, "where", where);
    hv_json_set_str(e, "message", msg);
    json_object_array_add(w->errs, e);
}

int hv__ehr_prep_init(hv__ehr_prep_t *p, hv__ehr_run_t *r, int own_validator) {
    hv__fhir_t *f = hv_engine_module_state(r->m->e, "fhir");
    memset(p, 0, sizeof(*p));
    snprintf(p->conn, sizeof(p->conn), "%s", r->c->id);
    snprintf(p->run_id, sizeof(p->run_id), "%s", r->id);
    snprintf(p->policy_name, sizeof(p->policy_name), "%s", r->c->conflict ? r->c->conflict : "ehr-wins");
    p->rows_lazy = r->rows_lazy;
    p->f = f != NULL && f->storage != NULL ? f : NULL;
    if ((p->base_url = hv_strdup(r->c->base_url ? r->c->base_url : "")) == NULL) return HV_ENOMEM;
    if (p->f != NULL && loop_validator(f) != NULL) {
        p->own_validator = own_validator;
        p->validator = own_validator ? hv_fhir_validator_new() : f->validator;
        if (p->validator == NULL) {
            hv__ehr_prep_clear(p);
            return HV_ENOMEM;
        }
    }
    return HV_OK;
}

void hv__ehr_prep_clear(hv__ehr_prep_t *p) {
    if (p->own_validator) hv_fhir_validator_free(p->validator);
    hv_free(p->base_url);
    p->base_url = NULL;
    p->validator = NULL;
    p->own_validator = 0;
}

hv__ehr_batch_t *hv__ehr_batch_prepare(hv__ehr_run_t *r, json_object *resources) {
    hv__ehr_prep_t p;
    hv__ehr_batch_t *b;
    if (hv__ehr_prep_init(&p, r, 0) != HV_OK) return NULL;
    b = hv__ehr_batch_prepare_with(&p, resources);
    hv__ehr_prep_clear(&p);
    return b;
}

hv__ehr_batch_t *hv__ehr_batch_new(const hv__ehr_prep_t *p, size_t cap) {
    wctx_t *w = hv_calloc(1, sizeof(*w));
    if (w == NULL || (cap > 0 && (w->items = hv_calloc(cap, sizeof(item_t))) == NULL)) {
        hv_free(w);
        return NULL;
    }
    w->cap = cap;
    w->f = p->f;
    w->t0 = hv_now_ms();
    w->t_prep = w->t0;
    snprintf(w->conn, sizeof(w->conn), "%s", p->conn);
    snprintf(w->run_id, sizeof(w->run_id), "%s", p->run_id);
    snprintf(w->policy_name, sizeof(w->policy_name), "%s", p->policy_name);
    w->policy = strcmp(w->policy_name, "local-wins") == 0  ? DECIDE_LOCAL
                : strcmp(w->policy_name, "keep-both") == 0 ? DECIDE_BOTH
                                                           : DECIDE_EHR;
    return w;
}

void hv__ehr_batch_add(const hv__ehr_prep_t *p, hv__ehr_batch_t *w, json_object *res) {
    item_t *it;
    json_object *copy = NULL, *bare = NULL;
    const char *type, *id;
    hv_error_t err;
    char whybuf[160];
    /* Validated below (fhir.validation = reject, not lazy): the validator's walk checks the
     * structure as hv_fhir_check_structure does and more (fhir/validate.c: structure_only
     * only leaves checks out), so the model check is not walked a second time. It walks
     * the prepared tree, in which the EHR's meta.versionId and meta.lastUpdated are
     * dropped and a meta that is not an object is replaced: those alone are not refused. */
    int validate_ahead = p->validator != NULL && !p->rows_lazy;
    if (w->n == w->cap) {
        /* Past the capacity the caller asked for: counted, not prepared. */
        json_object_put(res);
        hv__ehr_batch_fail(w, "resource", "more resources than the batch holds (%zu)", w->cap);
        return;
    }
    it = &w->items[w->n++];
    w->fetched++;
    if (w->f == NULL) {
        json_object_put(res); /* nothing is prepared: the write fails the batch (no fhir service) */
        return;
    }
    type = hv_json_get_str(res, "resourceType");
    id = hv_json_get_str(res, "id");
    snprintf(it->type, sizeof(it->type), "%s", type ? type : "?");
    snprintf(it->id, sizeof(it->id), "%s", id ? id : "");
    hv_error_clear(&err);
    it->state = ITEM_FAILED;
    if (type == NULL || hv_fhir_resource_type(type) == NULL) {
        berr(w, "resource", "entry with unknown resourceType %.64s", type ? type : "(none)");
    } else if (id == NULL || !id_ok(id)) {
        berr(w, type, "a %s without a valid id", type);
    } else if ((it->seen = 1) && !validate_ahead && hv_fhir_check_structure(res, 0, &err) != HV_OK) {
        berr(w, type, "%s/%s is not valid FHIR R4: %s: %s", type, id, err.location, err.message);
    } else {
        /* The hash is of the EHR's content: meta left out, before anything is added. */
        json_object *meta = NULL;
        const char *why = NULL;
        /* The tree is the batch's own (the caller gave its reference): it is
         * transformed in place, no copy — so type and id are read from the item from
         * here on (setting the local id frees the tree's id string). */
        copy = res;
        res = NULL;
        type = it->type;
        id = it->id;
        if (json_object_object_get_ex(copy, "meta", &meta)) {
            json_object_get(meta);
            json_object_object_del(copy, "meta");
        }
        bare = copy;
        {
            const char *t = json_object_to_json_string_ext(bare, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
            sha256_hex(t, strlen(t), it->hash);
        }
        if (meta != NULL) hv_json_set(copy, "meta", meta);
        hv__ehr_local_id(p->conn, type, id, it->local_id);
        if (add_identity(p, copy, type, id) != HV_OK || hv_json_set_str(copy, "id", it->local_id) != HV_OK ||
            hv__ehr_rewrite_refs(copy, p->conn, p->base_url) != HV_OK) {
            berr(w, type, "%s/%s could not be prepared (out of memory or nested too deep)", type, id);
        } else if (!p->rows_lazy && (why = refused_by(p->validator, copy, whybuf)) != NULL) {
            berr(w, type, "%s/%s was not stored: %s", type, id, why);
        } else {
            /* The index rows depend on the tree only (not on meta.versionId or
             * meta.lastUpdated, which the store sets): computed here, the store
             * job only binds and inserts them (fhir/search_int.h). A failure
             * leaves them to the store. Lazy (after a mostly unchanged page):
             * validation waits for the look-up (step 2) and the rows for the store. */
            it->checked = !p->rows_lazy;
            if (!p->rows_lazy && hv__search_index_rows(type, copy, &it->ix) != HV_OK) it->ix = NULL;
            it->res = copy;
            copy = NULL;
            it->state = ITEM_NEW;
            if (!p->rows_lazy) item_ahead(it);
            if (p->text_only && it->pre_text != NULL) {
                /* Everything the store needs ahead is made: the tree is ~15x its text
                 * and is parsed again from the text in the store job (item_tree). */
                json_object_put(it->res);
                it->res = NULL;
            } else if (p->text_only && p->rows_lazy) {
                /* A re-sync's chunk, mostly unchanged: nothing is made ahead, and most
                 * trees would be dropped unread after the look-up. Kept as compact text
                 * instead, parsed again after the look-up for what is to be written. */
                const char *t = json_object_to_json_string_ext(it->res, JSON_C_TO_STRING_PLAIN |
                                                                            JSON_C_TO_STRING_NOSLASHESCAPE);
                size_t tlen = t != NULL ? strlen(t) : 0;
                if (t != NULL && (it->lazy_text = hv_strndup(t, tlen)) != NULL) {
                    it->lazy_len = tlen;
                    w->lazy_texts++;
                    json_object_put(it->res);
                    it->res = NULL;
                }
            }
        }
        json_object_put(copy);
    }
    json_object_put(res); /* a resource that failed before the else above */
    if (it->state == ITEM_FAILED) w->failed++;
    w->t_prep = hv_now_ms();
}

hv__ehr_batch_t *hv__ehr_batch_prepare_with(const hv__ehr_prep_t *p, json_object *resources) {
    size_t n = json_object_array_length(resources), i;
    hv__ehr_batch_t *w = hv__ehr_batch_new(p, n);
    if (w == NULL) return NULL;
    /* The page's trees become the batch's (transformed in place, no copy): the page only
     * keeps its references, which it drops after (the trees then live until the write). */
    for (i = 0; i < n; i++) hv__ehr_batch_add(p, w, json_object_get(json_object_array_get_idx(resources, i)));
    return w;
}

void hv__ehr_batch_free(hv__ehr_batch_t *b) { wctx_free(b); }

void hv__ehr_batch_fail(hv__ehr_batch_t *b, const char *where, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    b->fetched++;
    b->failed++;
    berr(b, where, "%s", msg);
}

void hv__ehr_batch_write(hv__ehr_run_t *r, hv__ehr_batch_t *w, hv__ehr_written_cb cb) {
    size_t i;
    w->r = r;
    w->cb = cb;
    w->t_write = hv_now_ms();
    r->fetched += w->fetched;
    r->failed += w->failed;
    for (i = 0; w->errs != NULL && i < json_object_array_length(w->errs); i++) {
        json_object *e = json_object_array_get_idx(w->errs, i);
        hv__ehr_run_error(r, hv_json_get_str(e, "where"), "%s", hv_json_get_str(e, "message"));
    }
    if (w->f == NULL) {
        hv__ehr_run_error(r, "store", "the ehr module needs the fhir service in this process (--services)");
        r->page_failed = 1;
        r->failed += (int64_t)w->n;
        w_end(w, HV_ECONFIG);
        return;
    }
    if (hv_storage_submit(r->m->storage, lookup_job, lookup_done, w) != HV_OK) {
        hv__ehr_run_error(r, "store", "the ehr store is busy");
        r->page_failed = 1;
        w_end(w, HV_EBUSY);
    }
}

/* ---- an id listing (sync.c's id pass): seen_run only ---- */

typedef struct seen_job {
    hv__ehr_run_t *r;
    hv__ehr_written_cb cb;
    char conn[HV__EHR_ID_MAX];
    char run_id[HV__EHR_ID_MAX];
    size_t n;
    struct {
        char type[HV__FHIR_TYPE_MAX];
        char id[HV__FHIR_ID_MAX];
    } *ids;
} seen_job_t;

static int seen_job(hv_db_t *db, void *arg) {
    seen_job_t *s = arg;
    hv_db_stmt_t *st = NULL;
    size_t i;
    int rc;
    for (i = 0; i < s->n; i++) {
        rc = hv_db_prepare(db, "UPDATE resources SET seen_run = $1 WHERE connection = $2 AND rtype = $3 AND rid = $4", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, s->run_id, strlen(s->run_id));
        hv_db_bind_text(st, 2, s->conn, strlen(s->conn));
        hv_db_bind_text(st, 3, s->ids[i].type, strlen(s->ids[i].type));
        hv_db_bind_text(st, 4, s->ids[i].id, strlen(s->ids[i].id));
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    return HV_OK;
}

static void seen_done(int status, void *arg) {
    seen_job_t *s = arg;
    hv__ehr_run_t *r = s->r;
    hv__ehr_written_cb cb = s->cb;
    if (status != HV_OK) {
        /* Some ids not marked could be deleted wrongly: no reconciliation for this run. */
        hv__ehr_run_error(r, "store", "recording the EHR's ids failed: %s", hv_strerror(status));
        r->page_failed = 1;
    }
    hv_free(s->ids);
    hv_free(s);
    cb(r, status);
}

void hv__ehr_mark_seen(hv__ehr_run_t *r, json_object *resources, hv__ehr_written_cb cb) {
    size_t n = json_object_array_length(resources), i;
    seen_job_t *s = hv_calloc(1, sizeof(*s));
    if (s == NULL || (n > 0 && (s->ids = hv_calloc(n, sizeof(*s->ids))) == NULL)) {
        hv_free(s);
        r->page_failed = 1;
        cb(r, HV_ENOMEM);
        return;
    }
    s->r = r;
    s->cb = cb;
    snprintf(s->conn, sizeof(s->conn), "%s", r->c->id);
    snprintf(s->run_id, sizeof(s->run_id), "%s", r->id);
    for (i = 0; i < n; i++) {
        json_object *res = json_object_array_get_idx(resources, i);
        const char *type = hv_json_get_str(res, "resourceType"), *id = hv_json_get_str(res, "id");
        if (type == NULL || id == NULL || !id_ok(id) || strlen(type) >= sizeof(s->ids[0].type)) continue;
        snprintf(s->ids[s->n].type, sizeof(s->ids[s->n].type), "%s", type);
        snprintf(s->ids[s->n].id, sizeof(s->ids[s->n].id), "%s", id);
        s->n++;
    }
    if (hv_storage_submit(r->m->storage, seen_job, seen_done, s) != HV_OK) {
        hv_free(s->ids);
        hv_free(s);
        r->page_failed = 1;
        cb(r, HV_EBUSY);
    }
}

void hv__ehr_write_resources(hv__ehr_run_t *r, json_object *resources, hv__ehr_written_cb cb) {
    hv__ehr_batch_t *b = hv__ehr_batch_prepare(r, resources);
    if (b == NULL) {
        cb(r, HV_ENOMEM);
        return;
    }
    hv__ehr_batch_write(r, b, cb);
}
