/*
 * reconcile.c — deletions in the EHR, found by reconciling a full sync.
 *
 * A FHIR search answers only what exists now (FHIR R4 http.html#search): a
 * resource deleted in the EHR simply stops appearing. Every resource a run sees
 * (written, unchanged, or refused but with a valid type and id) gets the run's id
 * in resources.seen_run (write.c). When a full search sync ends with every page
 * fetched (a failed page could hide resources: then nothing is reconciled), the
 * resources rows of the connection, of the run's resource types, not seen by
 * the run are resources the EHR no longer has. ehr.deletions decides:
 *
 *   delete (default)  the local copy is deleted (FHIR R4 http.html#delete, a new
 *                     deleted version: history keeps it) through the store's
 *                     hv__fop_run on the fhir storage thread, in one job; the
 *                     store's change listeners are told; the row is removed;
 *                     the run's `deleted` count says how many
 *   keep              nothing is deleted; the run records one warning with the
 *                     count (the rows stay, so every full sync says it again)
 *
 * A Bulk sync of a whole system-level export (no Group, no _since) reconciles the
 * same way (it sees every resource of its types). A Group or Patient-level export
 * (no _since) holds the compartments of its Patients only: hv__ehr_reconcile_scoped
 * takes as gone only the unseen resources (not Patients: one missing may just have
 * left the Group) whose local copy is in the compartment of a Patient the run saw
 * (the store's refs rows); the rest are kept with their rows. Incremental syncs see only
 * changes: their deletions come from the EHR's history (history.c), whose ids
 * are handed to hv__ehr_reconcile_gone and deleted here the same way (only
 * those the connection synced). A run resumed after a crash reconciles again: deleting what is gone
 * already writes nothing. At most HV__EHR_MAX_GONE deletions per run; more are
 * left to the next full sync (an error says so).
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"
#include "fhir/rest_int.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#define HV__EHR_MAX_GONE 100000

typedef struct gone {
    char type[HV__FHIR_TYPE_MAX];
    char id[HV__FHIR_ID_MAX];
    int skip; /* scoped: not in the compartment of a Patient the export held (kept, row too) */
    hv__fop_t op;
} gone_t;

typedef struct rctx {
    hv__ehr_run_t *r;
    hv__fhir_t *f;
    char conn[HV__EHR_ID_MAX];
    char run_id[HV__EHR_ID_MAX];
    char (*types)[HV__FHIR_TYPE_MAX]; /* the run's resource types */
    size_t ntypes;
    gone_t *g;
    size_t n, cap;
    int more; /* over HV__EHR_MAX_GONE */
    int listed; /* g holds candidates (history.c): keep those the connection synced */
    int scoped; /* a Group or Patient-level export: only its Patients' compartments (hv__ehr_reconcile_scoped) */
    char (*pats)[HV__FHIR_ID_MAX]; /* scoped: the local ids of the Patients the run saw, sorted */
    size_t npats, cappats;
} rctx_t;

static void rctx_end(rctx_t *x) {
    hv__ehr_run_t *r = x->r;
    size_t i;
    for (i = 0; i < x->n; i++) hv__fop_clear(&x->g[i].op);
    hv_free(x->g);
    hv_free(x->types);
    hv_free(x->pats);
    hv_free(x);
    hv__ehr_run_finish(r);
}

static int of_run_types(const rctx_t *x, const char *type, size_t len) {
    size_t i;
    for (i = 0; i < x->ntypes; i++)
        if (strlen(x->types[i]) == len && memcmp(x->types[i], type, len) == 0) return 1;
    return 0;
}

/* ehr storage thread: of the listed candidates, those the connection has a row for. */
static int known_job(hv_db_t *db, void *arg) {
    rctx_t *x = arg;
    hv_db_stmt_t *st = NULL;
    size_t i, k = 0;
    int rc = HV_OK;
    for (i = 0; i < x->n; i++) {
        rc = hv_db_prepare(db, "SELECT 1 FROM resources WHERE connection = $1 AND rtype = $2 AND rid = $3", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, x->conn, strlen(x->conn));
        hv_db_bind_text(st, 2, x->g[i].type, strlen(x->g[i].type));
        hv_db_bind_text(st, 3, x->g[i].id, strlen(x->g[i].id));
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
        if (rc == HV_DB_ROW) {
            if (k != i) x->g[k] = x->g[i];
            k++;
        }
    }
    x->n = k;
    return HV_OK;
}

static int cmp_pat(const void *a, const void *b) { return strcmp((const char *)a, (const char *)b); }

/* ehr storage thread, scoped: the local ids of the Patients the run saw (the export's
 * population); Patients it did not see are no candidates (they may have left the Group). */
static int scoped_patients(hv_db_t *db, rctx_t *x) {
    hv_db_stmt_t *st = NULL;
    size_t i, k = 0;
    int rc;
    for (i = 0; i < x->n; i++) {
        if (strcmp(x->g[i].type, "Patient") == 0) continue;
        if (k != i) x->g[k] = x->g[i];
        k++;
    }
    x->n = k;
    rc = hv_db_prepare(db, "SELECT rid FROM resources WHERE connection = $1 AND rtype = 'Patient' AND seen_run = $2", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, x->conn, strlen(x->conn));
    hv_db_bind_text(st, 2, x->run_id, strlen(x->run_id));
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t il = 0;
        const char *id = hv_db_column_text(st, 0, &il);
        char rid[HV__FHIR_ID_MAX];
        if (id == NULL || il >= sizeof(rid)) continue;
        if (x->npats == x->cappats) {
            size_t nc = x->cappats ? x->cappats * 2 : 64;
            char(*np)[HV__FHIR_ID_MAX] = nc > HV__EHR_MAX_GONE ? NULL : hv_realloc(x->pats, nc * sizeof(*np));
            if (np == NULL) {
                rc = HV_ENOMEM;
                break;
            }
            x->pats = np;
            x->cappats = nc;
        }
        memcpy(rid, id, il);
        rid[il] = '\0';
        hv__ehr_local_id(x->conn, "Patient", rid, x->pats[x->npats++]);
    }
    hv_db_done(st);
    if (rc >= 0 && x->npats > 0) qsort(x->pats, x->npats, sizeof(*x->pats), cmp_pat);
    return rc < 0 ? rc : HV_OK;
}

/* fhir storage thread, scoped: whether the local copy of g is in the compartment of a Patient
 * the run saw (the store's refs rows, fhir/store.c). */
static int in_scope(hv_db_t *db, const rctx_t *x, const gone_t *g, const char *local, int *yes) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT patient FROM refs WHERE type = $1 AND id = $2", &st);
    *yes = 0;
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, g->type, strlen(g->type));
    hv_db_bind_text(st, 2, local, strlen(local));
    while (!*yes && (rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t pl = 0;
        const char *p = hv_db_column_text(st, 0, &pl);
        char key[HV__FHIR_ID_MAX];
        if (p == NULL || pl >= sizeof(key)) continue;
        memcpy(key, p, pl);
        key[pl] = '\0';
        if (bsearch(key, x->pats, x->npats, sizeof(*x->pats), cmp_pat) != NULL) *yes = 1;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* ehr storage thread: the rows the run did not see. */
static int list_job(hv_db_t *db, void *arg) {
    rctx_t *x = arg;
    hv_db_stmt_t *st = NULL;
    int rc;
    if (x->listed) return known_job(db, arg);
    rc = hv_db_prepare(db,
                           "SELECT rtype, rid FROM resources WHERE connection = $1 AND (seen_run IS NULL OR seen_run <> $2)"
                           " ORDER BY rtype, rid",
                           &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, x->conn, strlen(x->conn));
    hv_db_bind_text(st, 2, x->run_id, strlen(x->run_id));
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t tl = 0, il = 0;
        const char *t = hv_db_column_text(st, 0, &tl), *id = hv_db_column_text(st, 1, &il);
        gone_t *g;
        if (t == NULL || id == NULL || tl >= HV__FHIR_TYPE_MAX || il >= HV__FHIR_ID_MAX || !of_run_types(x, t, tl))
            continue;
        if (x->n == HV__EHR_MAX_GONE) {
            x->more = 1;
            break;
        }
        if (x->n == x->cap) {
            size_t nc = x->cap ? x->cap * 2 : 64;
            gone_t *ng = hv_realloc(x->g, nc * sizeof(*ng));
            if (ng == NULL) {
                rc = HV_ENOMEM;
                break;
            }
            x->g = ng;
            x->cap = nc;
        }
        g = &x->g[x->n++];
        memset(g, 0, sizeof(*g));
        memcpy(g->type, t, tl);
        memcpy(g->id, id, il);
    }
    hv_db_done(st);
    if (rc >= 0 && x->scoped) rc = scoped_patients(db, x);
    return rc < 0 ? rc : HV_OK;
}

/* ehr storage thread: the rows of what was deleted. */
static int unrow_job(hv_db_t *db, void *arg) {
    rctx_t *x = arg;
    hv_db_stmt_t *st = NULL;
    size_t i;
    int rc;
    for (i = 0; i < x->n; i++) {
        if (x->g[i].op.status >= 400 || x->g[i].skip) continue;
        rc = hv_db_prepare(db, "DELETE FROM resources WHERE connection = $1 AND rtype = $2 AND rid = $3", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text(st, 1, x->conn, strlen(x->conn));
        hv_db_bind_text(st, 2, x->g[i].type, strlen(x->g[i].type));
        hv_db_bind_text(st, 3, x->g[i].id, strlen(x->g[i].id));
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    return HV_OK;
}

static void unrow_done(int status, void *arg) {
    rctx_t *x = arg;
    if (status != HV_OK)
        hv__ehr_run_error(x->r, "deletions", "forgetting the deleted resources failed: %s", hv_strerror(status));
    rctx_end(x);
}

/* fhir storage thread: the local deletions, one job. */
static int delete_job(hv_db_t *db, void *arg) {
    rctx_t *x = arg;
    size_t i;
    int rc;
    for (i = 0; i < x->n; i++) {
        gone_t *g = &x->g[i];
        hv__fop_init(&g->op, HV__FOP_DELETE);
        snprintf(g->op.type, sizeof(g->op.type), "%s", g->type);
        hv__ehr_local_id(x->conn, g->type, g->id, g->op.id);
        if (x->scoped) {
            int yes = 0;
            rc = in_scope(db, x, g, g->op.id, &yes);
            if (rc != HV_OK) return rc;
            if (!yes) {
                g->skip = 1;
                continue;
            }
        }
        rc = hv__fop_run(db, &g->op);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

static void delete_done(int status, void *arg) {
    rctx_t *x = arg;
    hv__ehr_run_t *r = x->r;
    size_t i;
    if (status != HV_OK) {
        hv__ehr_run_error(r, "deletions", "the FHIR store failed deleting %zu resources the EHR no longer has: %s",
                          x->n, hv_strerror(status));
        r->page_failed = 1;
        rctx_end(x);
        return;
    }
    for (i = 0; i < x->n; i++) {
        gone_t *g = &x->g[i];
        if (g->skip) continue;
        if (g->op.status >= 400) {
            hv__ehr_run_error(r, g->type, "%s/%s is gone from the EHR but was not deleted: %d %.200s", g->type, g->id,
                              g->op.status, g->op.msg);
            r->failed++;
            continue;
        }
        if (g->op.change != 0) {
            hv__fhir_notify(x->f, &g->op);
            r->deleted++;
        }
    }
    if (hv_storage_submit(r->m->storage, unrow_job, unrow_done, x) != HV_OK) {
        hv__ehr_run_error(r, "deletions", "the ehr store is busy");
        rctx_end(x);
    }
}

static void list_done(int status, void *arg) {
    rctx_t *x = arg;
    hv__ehr_run_t *r = x->r;
    const char *policy = hv_config_str(hv_engine_config(r->m->e), "ehr.deletions");
    if (status != HV_OK) {
        hv__ehr_run_error(r, "deletions", "reading the synced resources failed: %s", hv_strerror(status));
        rctx_end(x);
        return;
    }
    if (x->more)
        hv__ehr_run_error(r, "deletions", "more than %d resources are gone from the EHR; the rest are deleted by the "
                                          "next full sync", HV__EHR_MAX_GONE);
    if (x->n == 0) {
        rctx_end(x);
        return;
    }
    if (policy != NULL && strcmp(policy, "keep") == 0) {
        hv__ehr_run_error(r, "deletions", "%zu resources are gone from the EHR and were kept (ehr.deletions = keep)",
                          x->n);
        rctx_end(x);
        return;
    }
    if (x->f == NULL || x->f->storage == NULL || hv_storage_submit(x->f->storage, delete_job, delete_done, x) != HV_OK) {
        hv__ehr_run_error(r, "deletions", "the FHIR store is not available for the deletions");
        r->page_failed = 1;
        rctx_end(x);
    }
}

static void reconcile(hv__ehr_run_t *r, int scoped);

void hv__ehr_reconcile(hv__ehr_run_t *r) { reconcile(r, 0); }

void hv__ehr_reconcile_scoped(hv__ehr_run_t *r) { reconcile(r, 1); }

static void reconcile(hv__ehr_run_t *r, int scoped) {
    rctx_t *x = hv_calloc(1, sizeof(*x));
    size_t i, n = json_object_array_length(r->c->types);
    r->reconciled = 1;
    if (x == NULL || (n > 0 && (x->types = hv_calloc(n, sizeof(*x->types))) == NULL)) {
        hv_free(x);
        hv__ehr_run_error(r, "deletions", "out of memory");
        hv__ehr_run_finish(r);
        return;
    }
    x->r = r;
    x->f = hv_engine_module_state(r->m->e, "fhir");
    x->scoped = scoped;
    snprintf(x->conn, sizeof(x->conn), "%s", r->c->id);
    snprintf(x->run_id, sizeof(x->run_id), "%s", r->id);
    for (i = 0; i < n; i++) {
        const char *t = json_object_get_string(json_object_array_get_idx(r->c->types, i));
        snprintf(x->types[i], sizeof(x->types[i]), "%s", t ? t : "");
    }
    x->ntypes = n;
    if (hv_storage_submit(r->m->storage, list_job, list_done, x) != HV_OK) {
        hv__ehr_run_error(r, "deletions", "the ehr store is busy");
        x->r = r;
        rctx_end(x);
    }
}

void hv__ehr_reconcile_gone(hv__ehr_run_t *r, hv__ehr_gone_t *gone, size_t n) {
    rctx_t *x = hv_calloc(1, sizeof(*x));
    size_t i;
    r->reconciled = 1;
    if (n == 0) {
        hv_free(x);
        hv_free(gone);
        hv__ehr_run_finish(r);
        return;
    }
    if (x == NULL || (x->g = hv_calloc(n, sizeof(*x->g))) == NULL) {
        hv_free(x);
        hv_free(gone);
        hv__ehr_run_error(r, "deletions", "out of memory");
        hv__ehr_run_finish(r);
        return;
    }
    x->r = r;
    x->f = hv_engine_module_state(r->m->e, "fhir");
    x->listed = 1;
    snprintf(x->conn, sizeof(x->conn), "%s", r->c->id);
    snprintf(x->run_id, sizeof(x->run_id), "%s", r->id);
    for (i = 0; i < n; i++) {
        snprintf(x->g[i].type, sizeof(x->g[i].type), "%s", gone[i].type);
        snprintf(x->g[i].id, sizeof(x->g[i].id), "%s", gone[i].id);
    }
    x->n = x->cap = n;
    hv_free(gone);
    if (hv_storage_submit(r->m->storage, list_job, list_done, x) != HV_OK) {
        hv__ehr_run_error(r, "deletions", "the ehr store is busy");
        rctx_end(x);
    }
}
