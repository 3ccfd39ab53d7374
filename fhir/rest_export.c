/*
 * rest_export.c — Bulk Data export (FHIR Bulk Data Access IG v2.0.0, export.html;
 * FHIR R4 async.html):
 *
 *   GET    /fhir/$export                      system level: every resource
 *   GET    /fhir/Patient/$export              the resources of every Patient compartment
 *   GET    /fhir/Group/:id/$export            those of the Group's member Patients
 *   GET    /fhir/$export-poll-status/:job     202 + X-Progress while running; 200 + manifest
 *   DELETE /fhir/$export-poll-status/:job     cancel / delete the files (202)
 *   GET    /fhir/$export-file/:job/:file      one NDJSON file (application/fhir+ndjson)
 *
 * Kick-off needs `Prefer: respond-async` and answers 202 with Content-Location once
 * the job is recorded. Parameters: _type (comma-separated resource types), _since
 * (an instant: resources last updated at or after it; a system-level export then
 * lists the resources deleted since under the manifest's "deleted", export_deleted),
 * _outputFormat (application/fhir+ndjson, ndjson or application/ndjson).
 *
 * Jobs are rows of the table export_jobs (fhir/store.c), so their state, manifest
 * and files survive a restart:
 *
 *   id, request           the job id (random hex) and the kick-off URL
 *   level, grp            0 system, 1 Patient, 2 Group (grp: the Group id)
 *   types, since_ms       _type and _since (-1: none)
 *   started_ms            transactionTime
 *   state                 0 running, 1 done, 2 failed, 3 cancelled
 *   error, output         the failure; the manifest's output, [{"type","count"}]
 *   finished_ms           when it ended (expiry is counted from it)
 *
 * An export runs off the store's write path: in the libuv thread pool, on a read
 * connection of its own, in one read transaction (a consistent snapshot; SQLite WAL
 * and PostgreSQL let the storage thread write meanwhile). Files go to
 * <data>/fhir-export/<job>/<Type>.ndjson and are served from the thread pool too.
 * At most fhir.export_max_running exports run at once (more answers 429). A job
 * still running when the engine stops is cancelled and runs again from the start at
 * the next start. Finished jobs and their files are deleted fhir.export_retention
 * after they ended (checked at start and every few minutes).
 *
 * SMART scopes (fhir/rest_authz.c): a kick-off with a token keeps a copy of its
 * principal in the job and filters every exported resource with it; _type naming a
 * type the token may not search is 403; a patient/-only token exports its own
 * patient's compartment whatever the level (level 3). Such a job's id is 32 hex
 * characters, the first 16 those of SHA-256 of its owner (client id or user name):
 * only the owner may poll, download or cancel it (others get 404). Its scopes live
 * in memory only, so an owned job that a restart interrupts is not run again
 * unfiltered: it is recorded as failed ("kick it off again").
 */
#include "config.h"

#include <dirent.h>
#include <openssl/sha.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fhir/rest_int.h"

#define EXPORT_MAX_TYPES 200
#define EXPORT_MAX_PATIENTS 100000
#define EXPORT_SWEEP_MS (5 * 60 * 1000) /* how often expired jobs are looked for */
#define EXPORT_SWEEP_BATCH 100          /* jobs one sweep deletes at most */

enum { XS_RUNNING = 0, XS_DONE, XS_FAILED, XS_CANCELLED };
enum { XC_NONE = 0, XC_DELETE, XC_SHUTDOWN };

typedef struct xfile {
    char type[HV__FHIR_TYPE_MAX];
    FILE *fp;
    uint64_t count;
} xfile_t;

typedef struct xstate xstate_t;

typedef struct xjob {
    xstate_t *xs;
    char id[40];
    char dir[1024];
    char request[1024];
    int level;                  /* 0 system, 1 Patient, 2 Group, 3 the token's own patient */
    char group[HV__FHIR_ID_MAX];
    char *types;                /* _type, or NULL for all */
    int64_t since_ms;
    uint64_t started_ms;
    hv__rreq_t *r;              /* the kick-off, answered once the row is committed */
    uv_work_t work;
    atomic_int cancel;          /* XC_* */
    atomic_ullong exported;
    int rc;                     /* the export's outcome (thread pool) */
    char error[256];
    xfile_t *files;
    size_t nfiles;
    char (*patients)[HV__FHIR_ID_MAX];
    size_t npatients;
    struct xjob *next;          /* the running list */
    hv_auth_principal_t *principal; /* the kick-off's token (a copy), NULL with auth off */
} xjob_t;

struct xstate {
    hv__fhir_t *f;
    xjob_t *running;
    size_t nrunning, max_running;
    uint64_t retention_ms;
    uv_timer_t sweep;
    int closing;
};

static xstate_t *xs_of(hv__fhir_t *f)
{
    return (xstate_t *)f->export_state;
}

static void xjob_free(xjob_t *j)
{
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->nfiles; i++)
        if (j->files[i].fp != NULL)
            fclose(j->files[i].fp);
    hv_free(j->files);
    hv_free(j->types);
    hv_free(j->patients);
    hv_free(j->principal);
    hv_free(j);
}

/* The first 16 hex characters of SHA-256 of p's owner (client id, else user name). */
static void owner_tag(const hv_auth_principal_t *p, char out[17])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    const char *who = p->client_id[0] != '\0' ? p->client_id : p->sub;
    SHA256((const unsigned char *)who, strlen(who), d);
    hv_hex(d, 8, out);
}

/* Only the owner of an owned job (32-character id) sees it. */
static int owns(const char *id, const hv_auth_principal_t *p)
{
    char tag[17];
    if (strlen(id) != 32)
        return 1; /* kicked off with authentication off */
    if (p == NULL)
        return 0;
    owner_tag(p, tag);
    return strncmp(id, tag, 16) == 0;
}

/* True when p may search some resource type (an export without _type exports those). */
static int may_export(const hv_auth_principal_t *p)
{
    if (p == NULL || p->role == HV_AUTH_ROLE_ADMIN)
        return 1;
    for (size_t i = 0; i < p->scopes.n; i++)
        if ((p->scopes.s[i].perms & HV_AUTH_SEARCH) &&
            (p->scopes.s[i].context != HV_AUTH_CTX_PATIENT || p->patient[0] != '\0'))
            return 1;
    return 0;
}

static void unlink_running(xjob_t *j)
{
    xstate_t *xs = j->xs;
    for (xjob_t **pp = &xs->running; *pp != NULL; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            xs->nrunning--;
            return;
        }
}

static xjob_t *find_running(xstate_t *xs, const char *id)
{
    for (xjob_t *j = xs != NULL ? xs->running : NULL; j != NULL && id != NULL; j = j->next)
        if (strcmp(j->id, id) == 0)
            return j;
    return NULL;
}

static void bind_str(hv_db_stmt_t *st, int idx, const char *s)
{
    if (s != NULL)
        hv_db_bind_text(st, idx, s, strlen(s));
    else
        hv_db_bind_null(st, idx);
}

static void export_dir(hv__fhir_t *f, const char *id, char *out, size_t cap)
{
    snprintf(out, cap, "%.900s/fhir-export/%.39s", hv_engine_data_dir(f->e), id);
}

/* Deletes the NDJSON files of an export directory and the directory itself. */
static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (d != NULL) {
        while ((de = readdir(d)) != NULL) {
            char path[1400];
            size_t n = strlen(de->d_name);
            if (n < 7 || strcmp(de->d_name + n - 7, ".ndjson") != 0)
                continue;
            snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static int mkdirs(const char *path)
{
    char tmp[1024];
    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p != '\0'; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
                return HV_EIO;
            *p = '/';
        }
    }
    return mkdir(tmp, 0700) != 0 && errno != EEXIST ? HV_EIO : HV_OK;
}

/* ---- the export itself (thread pool, read connection) ---- */

static int type_wanted(const xjob_t *j, const char *type)
{
    const char *p = j->types;
    size_t n = strlen(type);
    if (p == NULL)
        return 1;
    while (*p != '\0') {
        const char *c = strchr(p, ',');
        size_t len = c != NULL ? (size_t)(c - p) : strlen(p);
        if (len == n && strncmp(p, type, n) == 0)
            return 1;
        p += len;
        if (*p == ',')
            p++;
    }
    return 0;
}

static xfile_t *file_for(xjob_t *j, const char *type)
{
    char path[1200];
    xfile_t *nf;
    for (size_t i = 0; i < j->nfiles; i++)
        if (strcmp(j->files[i].type, type) == 0)
            return &j->files[i];
    if (j->nfiles >= EXPORT_MAX_TYPES)
        return NULL;
    nf = hv_realloc(j->files, (j->nfiles + 1) * sizeof(*nf));
    if (nf == NULL)
        return NULL;
    j->files = nf;
    memset(&nf[j->nfiles], 0, sizeof(*nf));
    snprintf(nf[j->nfiles].type, sizeof(nf[j->nfiles].type), "%s", type);
    snprintf(path, sizeof(path), "%s/%s.ndjson", j->dir, type);
    nf[j->nfiles].fp = fopen(path, "wb");
    if (nf[j->nfiles].fp == NULL)
        return NULL;
    return &j->files[j->nfiles++];
}

/* Writes one row as an NDJSON line of its type's file. */
static int write_row(void *ud, const hv__store_row_t *row)
{
    xjob_t *j = ud;
    xfile_t *xf;
    if (atomic_load(&j->cancel) != XC_NONE)
        return HV_ECLOSED;
    if (row->deleted || row->text == NULL || !type_wanted(j, row->type) ||
        (j->since_ms >= 0 && (int64_t)row->last_ms < j->since_ms))
        return HV_OK;
    if (j->principal != NULL &&
        hv__authz_resource(j->principal, HV_AUTH_SEARCH, row->type, row->id, NULL, row->text) != HV_OK)
        return HV_OK; /* outside the kick-off token's scopes */
    xf = file_for(j, row->type);
    if (xf == NULL || fwrite(row->text, 1, row->text_len, xf->fp) != row->text_len || fputc('\n', xf->fp) == EOF)
        return HV_EIO;
    xf->count++;
    atomic_fetch_add(&j->exported, 1);
    return HV_OK;
}

/*
 * The manifest's "deleted" (Bulk Data Access IG 2.0.0, export.html, "deleted"): with
 * _since, every resource whose current version is a deletion made at or after
 * _since, of the wanted types, as one NDJSON line each: a transaction Bundle with one
 * entry whose request is DELETE Type/id. They go to the file DELETED_FILE, listed
 * under "deleted" with type Bundle. System level only: a deleted resource has no
 * compartment rows left to place it in a Patient's or Group's export; with a token,
 * only types its scopes grant whole (no content is left to check narrower scopes on).
 */
#define DELETED_FILE "_deleted"

static int export_deleted(hv_db_t *db, xjob_t *j)
{
    hv_db_stmt_t *st = NULL;
    xfile_t *xf = NULL;
    int rc = hv_db_prepare(db,
                           "SELECT type, id FROM resources r WHERE deleted = 1 AND last_ms >= $1 AND NOT EXISTS"
                           " (SELECT 1 FROM resources n WHERE n.type = r.type AND n.id = r.id AND"
                           " n.version > r.version) ORDER BY rid",
                           &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_int64(st, 1, j->since_ms);
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t tn = 0, in = 0;
        const char *type = hv_db_column_text(st, 0, &tn), *id = hv_db_column_text(st, 1, &in);
        char tb[HV__FHIR_TYPE_MAX], ib[HV__FHIR_ID_MAX];
        if (atomic_load(&j->cancel) != XC_NONE) {
            rc = HV_ECLOSED;
            break;
        }
        if (type == NULL || id == NULL || tn >= sizeof(tb) || in >= sizeof(ib))
            continue;
        memcpy(tb, type, tn);
        tb[tn] = '\0';
        memcpy(ib, id, in);
        ib[in] = '\0';
        if (!type_wanted(j, tb) || !hv__fhir_id_valid(ib) ||
            (j->principal != NULL && !hv_auth_allow_all(j->principal, HV_AUTH_SEARCH, tb)))
            continue;
        if (xf == NULL && (xf = file_for(j, DELETED_FILE)) == NULL) {
            rc = HV_EIO;
            break;
        }
        if (fprintf(xf->fp,
                    "{\"resourceType\":\"Bundle\",\"type\":\"transaction\",\"entry\":[{\"request\":"
                    "{\"method\":\"DELETE\",\"url\":\"%s/%s\"}}]}\n",
                    tb, ib) < 0) {
            rc = HV_EIO;
            break;
        }
        xf->count++;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Group level: the Patients the Group lists as members (Group.member.entity). */
static int group_patients(hv_db_t *db, xjob_t *j)
{
    hv__store_row_t row;
    struct json_object *g = NULL, *members = NULL;
    int rc = hv__store_get(db, "Group", j->group, 0, &row);
    if (rc == HV_ENOTFOUND || (rc == HV_OK && row.deleted)) {
        hv__store_row_clear(&row);
        snprintf(j->error, sizeof(j->error), "Group/%s is not known", j->group);
        return HV_ENOTFOUND;
    }
    if (rc != HV_OK)
        return rc;
    g = json_tokener_parse(row.text);
    hv__store_row_clear(&row);
    if (g == NULL)
        return HV_EDB;
    if (json_object_object_get_ex(g, "member", &members)) {
        size_t n = json_object_array_length(members);
        j->patients = hv_calloc(n > 0 ? n : 1, sizeof(*j->patients));
        if (j->patients == NULL) {
            json_object_put(g);
            return HV_ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
            struct json_object *ent = NULL;
            const char *ref;
            json_object_object_get_ex(json_object_array_get_idx(members, i), "entity", &ent);
            ref = hv_json_get_str(ent, "reference");
            if (ref != NULL && strncmp(ref, "Patient/", 8) == 0 && hv__fhir_id_valid(ref + 8))
                snprintf(j->patients[j->npatients++], HV__FHIR_ID_MAX, "%s", ref + 8);
        }
    }
    json_object_put(g);
    return HV_OK;
}

static int add_patient(void *ud, const hv__store_row_t *row)
{
    xjob_t *j = ud;
    char (*np)[HV__FHIR_ID_MAX];
    if (j->npatients >= EXPORT_MAX_PATIENTS)
        return HV_ETOOBIG;
    np = hv_realloc(j->patients, (j->npatients + 1) * sizeof(*np));
    if (np == NULL)
        return HV_ENOMEM;
    j->patients = np;
    snprintf(j->patients[j->npatients++], HV__FHIR_ID_MAX, "%s", row->id);
    return HV_OK;
}

static void work_export(uv_work_t *w)
{
    xjob_t *j = w->data;
    hv__fhir_t *f = j->xs->f;
    hv_db_t *db = NULL;
    hv_error_t err;
    int rc, pg;
    hv_error_clear(&err);
    /* A restarted job begins again from an empty directory. */
    remove_dir(j->dir);
    rc = mkdirs(j->dir);
    if (rc == HV_OK)
        rc = hv_db_open(hv_engine_db_url(f->e), hv_engine_data_dir(f->e), "fhir", &db, &err);
    if (rc != HV_OK)
        goto out;
    pg = hv_db_kind(db) == HV_DB_PG;
    /* One read transaction: the whole export sees one snapshot (SQLite: a deferred
     * BEGIN takes no write lock; PostgreSQL: repeatable read, read only). */
    rc = hv_db_exec(db, pg ? "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" : "BEGIN");
    if (rc == HV_OK) {
        if (j->level == 0) {
            rc = hv__store_each_current(db, NULL, write_row, j);
            if (rc == HV_OK && j->since_ms >= 0)
                rc = export_deleted(db, j);
        } else if (j->level == 3) {
            rc = j->principal != NULL ? hv__store_compartment(db, j->principal->patient, NULL, write_row, j) : HV_EPERM;
        } else {
            rc = j->level == 2 ? group_patients(db, j) : hv__store_each_current(db, "Patient", add_patient, j);
            for (size_t i = 0; rc == HV_OK && i < j->npatients; i++)
                rc = hv__store_compartment(db, j->patients[i], NULL, write_row, j);
        }
        hv_db_exec(db, "ROLLBACK");
    }
out:
    for (size_t i = 0; i < j->nfiles; i++) {
        if (j->files[i].fp != NULL && fclose(j->files[i].fp) != 0 && rc == HV_OK)
            rc = HV_EIO;
        j->files[i].fp = NULL;
    }
    if (rc != HV_OK && j->error[0] == '\0')
        snprintf(j->error, sizeof(j->error), "the export failed: %s", hv_strerror(rc));
    hv_db_close(db);
    j->rc = rc;
}

/* ---- job rows (storage thread) ---- */

static int job_insert(hv_db_t *db, void *arg)
{
    xjob_t *j = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "INSERT INTO export_jobs (id, request, level, grp, types, since_ms, started_ms, state)"
                           " VALUES ($1, $2, $3, $4, $5, $6, $7, 0)",
                           &st);
    if (rc != HV_OK)
        return rc;
    bind_str(st, 1, j->id);
    bind_str(st, 2, j->request);
    hv_db_bind_int64(st, 3, j->level);
    bind_str(st, 4, j->level == 2 ? j->group : NULL);
    bind_str(st, 5, j->types);
    hv_db_bind_int64(st, 6, j->since_ms);
    hv_db_bind_int64(st, 7, (int64_t)j->started_ms);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* Records how a job ended: its state, the manifest's output or the error. */
static int job_finish(hv_db_t *db, void *arg)
{
    xjob_t *j = arg;
    hv_db_stmt_t *st = NULL;
    hv_buf_t out;
    int state = atomic_load(&j->cancel) == XC_DELETE ? XS_CANCELLED : j->rc == HV_OK ? XS_DONE : XS_FAILED;
    int rc;
    if (state == XS_CANCELLED)
        remove_dir(j->dir);
    hv_buf_init(&out, 0);
    hv_buf_putc(&out, '[');
    for (size_t i = 0; i < j->nfiles; i++)
        hv_buf_printf(&out, "%s{\"type\":\"%s\",\"count\":%llu}", i ? "," : "", j->files[i].type,
                      (unsigned long long)j->files[i].count);
    rc = hv_buf_putc(&out, ']');
    if (rc == HV_OK)
        rc = hv_db_prepare(db,
                           "UPDATE export_jobs SET state = $1, error = $2, output = $3, finished_ms = $4"
                           " WHERE id = $5",
                           &st);
    if (rc == HV_OK) {
        hv_db_bind_int64(st, 1, state);
        bind_str(st, 2, state == XS_FAILED ? j->error : NULL);
        hv_db_bind_text(st, 3, out.data, out.len);
        hv_db_bind_int64(st, 4, (int64_t)hv_now_ms());
        bind_str(st, 5, j->id);
        rc = hv_db_step(st);
        hv_db_done(st);
    }
    hv_buf_release(&out);
    return rc < 0 ? rc : HV_OK;
}

static void done_finish(int status, void *arg)
{
    xjob_t *j = arg;
    if (status != HV_OK) {
        hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "fhir.export.record");
        hv_log_str(r, "job", j->id);
        hv_log_str(r, "error", hv_strerror(status));
        hv_log_end(r);
    }
    xjob_free(j);
}

static void after_export(uv_work_t *w, int status)
{
    xjob_t *j = w->data;
    xstate_t *xs = j->xs;
    (void)status;
    unlink_running(j);
    /* Stopped by the engine's shutdown: the row stays "running" and the job runs
     * again at the next start. */
    if (atomic_load(&j->cancel) == XC_SHUTDOWN || xs->closing ||
        hv_storage_submit(xs->f->storage, job_finish, done_finish, j) != HV_OK)
        xjob_free(j);
}

static int start_job(xstate_t *xs, xjob_t *j)
{
    int rc;
    j->work.data = j;
    rc = uv_queue_work(hv_engine_loop(xs->f->e), &j->work, work_export, after_export);
    if (rc != 0)
        return HV_EIO;
    j->next = xs->running;
    xs->running = j;
    xs->nrunning++;
    return HV_OK;
}

/* ---- kick-off ---- */

static void done_insert(int status, void *arg)
{
    xjob_t *j = arg;
    xstate_t *xs = j->xs;
    hv__rreq_t *r = j->r;
    char *loc;
    j->r = NULL;
    if (status != HV_OK || xs->closing || start_job(xs, j) != HV_OK) {
        hv_http_header_add(r->req, "Retry-After", "1");
        hv__rest_outcome(r, 503, "error", "transient", "the export could not be started; retry later");
        xjob_free(j);
        hv__rreq_free(r);
        return;
    }
    loc = hv_arena_sprintf(hv_http_req_arena(r->req), "%s/$export-poll-status/%s", hv__rest_base(r), j->id);
    hv_http_header_add(r->req, "Content-Location", loc != NULL ? loc : "");
    hv_http_respond(r->req, 202, NULL, NULL, 0);
    hv__rreq_free(r);
}

static void h_kickoff(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    const char *prefer = hv_http_req_header(req, "Prefer"), *types = hv_http_req_query_param(req, "_type");
    const char *since = hv_http_req_query_param(req, "_since"), *fmt = hv_http_req_query_param(req, "_outputFormat");
    const char *path = hv_http_req_path(req), *gid = hv_http_req_param(req, "id");
    xstate_t *xs = xs_of(f);
    xjob_t *j = NULL;
    unsigned char rnd[8];
    char hex[17];
    if (r == NULL)
        return;
    if (prefer == NULL || strstr(prefer, "respond-async") == NULL) {
        hv__rest_outcome(r, 400, "error", "invalid", "$export is asynchronous: send Prefer: respond-async");
        goto out;
    }
    if (fmt != NULL && strcmp(fmt, "application/fhir+ndjson") != 0 && strcmp(fmt, "application/ndjson") != 0 &&
        strcmp(fmt, "ndjson") != 0) {
        hv__rest_outcome(r, 400, "error", "not-supported", "_outputFormat must be application/fhir+ndjson");
        goto out;
    }
    if (gid != NULL && !hv__fhir_id_valid(gid)) {
        hv__rest_outcome(r, 400, "error", "invalid", "not a valid Group id");
        goto out;
    }
    if (types != NULL) {
        char *copy = hv_strdup(types), *save = NULL;
        int ok = copy != NULL;
        int allowed = 1;
        for (char *t = copy ? strtok_r(copy, ",", &save) : NULL; t != NULL && ok; t = strtok_r(NULL, ",", &save)) {
            ok = hv_fhir_resource_type(t) != NULL;
            if (ok && hv_auth_allow_type(r->principal, HV_AUTH_SEARCH, t) != HV_OK)
                allowed = 0;
        }
        hv_free(copy);
        if (!ok) {
            hv__rest_outcome(r, 400, "error", "invalid", "_type lists an unknown resource type");
            goto out;
        }
        if (!allowed) {
            hv__rest_outcome(r, 403, "error", "forbidden",
                             "the access token's scopes do not allow exporting every type _type lists");
            goto out;
        }
    } else if (!may_export(r->principal)) {
        hv__rest_outcome(r, 403, "error", "forbidden", "the access token's scopes allow no search to export");
        goto out;
    }
    if (xs == NULL || xs->closing) {
        hv__rest_outcome(r, 503, "error", "transient", "exports are not available");
        goto out;
    }
    if (xs->nrunning >= xs->max_running) {
        hv_http_header_add(req, "Retry-After", "10");
        hv__rest_outcome(r, 429, "error", "throttled", "too many exports are running (fhir.export_max_running)");
        goto out;
    }
    j = hv_calloc(1, sizeof(*j));
    if (j == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto out;
    }
    j->xs = xs;
    j->since_ms = -1;
    if (since != NULL && hv__fhir_parse_time(since, &j->since_ms) != HV_OK) {
        hv__rest_outcome(r, 400, "error", "invalid", "_since must be a FHIR instant");
        goto out;
    }
    j->types = types != NULL ? hv_strdup(types) : NULL;
    j->level = gid != NULL ? 2 : strncmp(path, "/fhir/Patient/", 14) == 0 ? 1 : 0;
    if (gid != NULL)
        snprintf(j->group, sizeof(j->group), "%s", gid);
    hv_random_fast(rnd, sizeof(rnd));
    hv_hex(rnd, sizeof(rnd), hex);
    snprintf(j->id, sizeof(j->id), "%s", hex);
    if (r->principal != NULL) {
        /* Owned by the token's client or user; its scopes filter what is exported. */
        int patient_only = r->principal->role != HV_AUTH_ROLE_ADMIN && r->principal->patient[0] != '\0';
        char tag[17];
        for (size_t i = 0; i < r->principal->scopes.n; i++)
            if ((r->principal->scopes.s[i].perms & HV_AUTH_SEARCH) &&
                r->principal->scopes.s[i].context != HV_AUTH_CTX_PATIENT)
                patient_only = 0;
        j->principal = hv_malloc(sizeof(*j->principal));
        if (j->principal == NULL) {
            hv__rest_outcome(r, 503, "error", "transient", "out of memory");
            goto out;
        }
        memcpy(j->principal, r->principal, sizeof(*j->principal));
        if (patient_only)
            j->level = 3; /* its own patient's compartment, whatever the level asked */
        owner_tag(r->principal, tag);
        snprintf(j->id, sizeof(j->id), "%s%s", tag, hex);
    }
    export_dir(f, j->id, j->dir, sizeof(j->dir));
    snprintf(j->request, sizeof(j->request), "%s%s", hv__rest_base(r), hv_http_req_target(req) + 5);
    j->started_ms = hv_now_ms();
    j->r = r;
    if (hv_storage_submit(f->storage, job_insert, done_insert, j) != HV_OK) {
        j->r = NULL;
        hv_http_header_add(req, "Retry-After", "1");
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; retry later");
        goto out;
    }
    return;
out:
    xjob_free(j);
    hv__rreq_free(r);
}

/* ---- status, cancel, files ---- */

typedef struct xq {
    hv__rreq_t *r;
    char id[40];
    char file[HV__FHIR_TYPE_MAX + 8];
    int found, state;
    uint64_t started_ms;
    char request[1024];
    char error[256];
    char *output;
    char dir[1024];
    int deleting;
    /* a file being read (thread pool) */
    uv_work_t work;
    hv_buf_t data;
    int rc;
} xq_t;

static void xq_free(xq_t *q)
{
    if (q == NULL)
        return;
    hv_free(q->output);
    hv_buf_release(&q->data);
    hv_free(q);
}

static void copy_col(hv_db_stmt_t *st, int col, char *out, size_t cap)
{
    size_t n = 0;
    const char *s = hv_db_column_text(st, col, &n);
    if (s == NULL)
        n = 0;
    if (n >= cap)
        n = cap - 1;
    if (n > 0)
        memcpy(out, s, n);
    out[n] = '\0';
}

static int job_select(hv_db_t *db, void *arg)
{
    xq_t *q = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT state, started_ms, request, error, output FROM export_jobs WHERE id = $1", &st);
    if (rc != HV_OK)
        return rc;
    bind_str(st, 1, q->id);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        size_t n = 0;
        const char *s;
        q->found = 1;
        q->state = (int)hv_db_column_int64(st, 0);
        q->started_ms = (uint64_t)hv_db_column_int64(st, 1);
        copy_col(st, 2, q->request, sizeof(q->request));
        copy_col(st, 3, q->error, sizeof(q->error));
        s = hv_db_column_text(st, 4, &n);
        if (s != NULL && (q->output = hv_strndup(s, n)) == NULL)
            rc = HV_ENOMEM;
    }
    hv_db_done(st);
    if (rc >= 0 && q->found && q->deleting && q->state != XS_CANCELLED && q->state != XS_RUNNING) {
        /* Bulk Data §Delete of a finished export: its files go, the row says cancelled. */
        remove_dir(q->dir);
        rc = hv_db_prepare(db, "UPDATE export_jobs SET state = 3, output = NULL WHERE id = $1", &st);
        if (rc == HV_OK) {
            bind_str(st, 1, q->id);
            rc = hv_db_step(st);
            hv_db_done(st);
        }
    }
    return rc < 0 ? rc : HV_OK;
}

/* The output array of a manifest from the stored [{"type","count"}] (deleted: its
 * "deleted" array instead, the DELETED_FILE entry). */
static struct json_object *manifest_output(xq_t *q, int deleted)
{
    struct json_object *out = json_object_new_array(), *stored = q->output ? json_tokener_parse(q->output) : NULL;
    for (size_t i = 0; stored != NULL && i < json_object_array_length(stored); i++) {
        struct json_object *s = json_object_array_get_idx(stored, i), *o, *c = NULL;
        const char *type = hv_json_get_str(s, "type");
        char *url;
        if ((type != NULL && strcmp(type, DELETED_FILE) == 0) != deleted)
            continue;
        o = json_object_new_object();
        url = hv_arena_sprintf(hv_http_req_arena(q->r->req), "%s/$export-file/%s/%s.ndjson",
                               hv__rest_base(q->r), q->id, type ? type : "");
        hv_json_set_str(o, "type", deleted ? "Bundle" : type ? type : "");
        hv_json_set_str(o, "url", url ? url : "");
        json_object_object_get_ex(s, "count", &c);
        hv_json_set_int(o, "count", json_object_get_int64(c));
        json_object_array_add(out, o);
    }
    json_object_put(stored);
    return out;
}

static void done_status(int status, void *arg)
{
    xq_t *q = arg;
    hv__rreq_t *r = q->r;
    hv_http_req_t *req = r->req;
    xjob_t *running = find_running(xs_of(r->f), q->id);
    if (status != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "the export's state cannot be read: %s", hv_strerror(status));
    } else if (!q->found || q->state == XS_CANCELLED) {
        hv__rest_outcome(r, 404, "error", "not-found", "no such export");
    } else if (q->deleting) {
        if (running != NULL)
            atomic_store(&running->cancel, XC_DELETE); /* its end deletes the files */
        hv_http_respond(req, 202, NULL, NULL, 0);
    } else if (q->state == XS_RUNNING) {
        char progress[64];
        snprintf(progress, sizeof(progress), "%llu resources exported",
                 running != NULL ? (unsigned long long)atomic_load(&running->exported) : 0ull);
        hv_http_header_add(req, "X-Progress", progress);
        hv_http_header_add(req, "Retry-After", "1");
        hv_http_respond(req, 202, NULL, NULL, 0);
    } else if (q->state == XS_FAILED) {
        hv__rest_outcome(r, 500, "error", "exception", "%s", q->error[0] ? q->error : "the export failed");
    } else {
        struct json_object *m = json_object_new_object();
        char ts[40];
        hv__fhir_instant(q->started_ms, ts, sizeof(ts));
        hv_json_set_str(m, "transactionTime", ts);
        hv_json_set_str(m, "request", q->request);
        hv_json_set(m, "requiresAccessToken", json_object_new_boolean(0));
        hv_json_set(m, "output", manifest_output(q, 0));
        hv_json_set(m, "error", json_object_new_array());
        {
            struct json_object *del = manifest_output(q, 1);
            if (json_object_array_length(del) > 0)
                hv_json_set(m, "deleted", del);
            else
                json_object_put(del);
        }
        hv_http_respond_json(req, 200, m);
    }
    hv__rreq_free(r);
    xq_free(q);
}

static int job_id_valid(const char *id)
{
    size_t n = id != NULL ? strlen(id) : 0;
    if (n == 0 || n >= 40)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
            return 0;
    return 1;
}

static void h_status(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    const char *id = hv_http_req_param(req, "job");
    xq_t *q;
    if (r == NULL)
        return;
    if (!job_id_valid(id) || !owns(id, r->principal)) {
        hv__rest_outcome(r, 404, "error", "not-found", "no such export");
        goto fail;
    }
    q = hv_calloc(1, sizeof(*q));
    if (q == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    q->r = r;
    snprintf(q->id, sizeof(q->id), "%s", id);
    export_dir(f, q->id, q->dir, sizeof(q->dir));
    q->deleting = hv_http_req_method(req) == HV_HTTP_DELETE;
    if (hv_storage_submit(f->storage, job_select, done_status, q) != HV_OK) {
        xq_free(q);
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; retry later");
        goto fail;
    }
    return;
fail:
    hv__rreq_free(r);
}

/* Reads a file in the thread pool, so that neither the loop nor the storage thread waits on the disk. */
static void work_read(uv_work_t *w)
{
    xq_t *q = w->data;
    char path[1400];
    FILE *fp;
    char chunk[65536];
    size_t n;
    snprintf(path, sizeof(path), "%s/%s", q->dir, q->file);
    fp = fopen(path, "rb");
    q->rc = HV_OK;
    if (fp == NULL) {
        q->rc = HV_ENOTFOUND;
        return;
    }
    while (q->rc == HV_OK && (n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        q->rc = hv_buf_append(&q->data, chunk, n);
    fclose(fp);
}

static void after_read(uv_work_t *w, int status)
{
    xq_t *q = w->data;
    hv__rreq_t *r = q->r;
    if (status != 0 || q->rc == HV_ENOTFOUND)
        hv__rest_outcome(r, 404, "error", "not-found", "no such export file");
    else if (q->rc != HV_OK)
        hv__rest_outcome(r, 413, "error", "too-costly", "the file is larger than this server sends at once");
    else if (q->data.len == 0)
        hv_http_respond(r->req, 200, "application/fhir+ndjson", "", 0);
    else
        hv_http_respond_buf(r->req, 200, "application/fhir+ndjson", &q->data);
    hv__rreq_free(r);
    xq_free(q);
}

static void done_file_row(int status, void *arg)
{
    xq_t *q = arg;
    hv__rreq_t *r = q->r;
    int known = 0;
    if (status == HV_OK && q->found && q->state == XS_DONE && q->output != NULL) {
        /* The name must be one of the job's files: Type.ndjson, nothing else. */
        struct json_object *stored = json_tokener_parse(q->output);
        size_t n = strlen(q->file);
        for (size_t i = 0; stored != NULL && i < json_object_array_length(stored); i++) {
            const char *t = hv_json_get_str(json_object_array_get_idx(stored, i), "type");
            if (t != NULL && strlen(t) == n - 7 && strncmp(t, q->file, n - 7) == 0)
                known = 1;
        }
        json_object_put(stored);
    }
    if (!known) {
        hv__rest_outcome(r, 404, "error", "not-found", "no such export file");
        goto fail;
    }
    q->work.data = q;
    if (uv_queue_work(hv_engine_loop(r->f->e), &q->work, work_read, after_read) != 0) {
        hv__rest_outcome(r, 503, "error", "transient", "the server is busy; retry later");
        goto fail;
    }
    return;
fail:
    hv__rreq_free(r);
    xq_free(q);
}

static void h_file(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    const char *file = hv_http_req_param(req, "file"), *id = hv_http_req_param(req, "job");
    size_t n = file != NULL ? strlen(file) : 0;
    xq_t *q;
    if (r == NULL)
        return;
    if (!job_id_valid(id) || !owns(id, r->principal) || n < 8 || n >= sizeof(q->file) ||
        strcmp(file + n - 7, ".ndjson") != 0 ||
        strchr(file, '/') != NULL) {
        hv__rest_outcome(r, 404, "error", "not-found", "no such export file");
        goto fail;
    }
    q = hv_calloc(1, sizeof(*q));
    if (q == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    q->r = r;
    snprintf(q->id, sizeof(q->id), "%s", id);
    snprintf(q->file, sizeof(q->file), "%s", file);
    export_dir(f, q->id, q->dir, sizeof(q->dir));
    hv_buf_init(&q->data, f->parse.max_bytes > 0 ? f->parse.max_bytes * 16 : 0);
    if (hv_storage_submit(f->storage, job_select, done_file_row, q) != HV_OK) {
        xq_free(q);
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; retry later");
        goto fail;
    }
    return;
fail:
    hv__rreq_free(r);
}

/* ---- start, expiry, stop ---- */

typedef struct resume {
    xstate_t *xs;
    xjob_t *jobs;  /* the rows still running, as jobs (linked by next) */
} resume_t;

static int job_resume(hv_db_t *db, void *arg)
{
    resume_t *rs = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "SELECT id, request, level, grp, types, since_ms, started_ms FROM export_jobs"
                           " WHERE state = 0 ORDER BY started_ms",
                           &st);
    if (rc != HV_OK)
        return rc;
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        xjob_t *j = hv_calloc(1, sizeof(*j));
        size_t n = 0;
        const char *types;
        if (j == NULL) {
            rc = HV_ENOMEM;
            break;
        }
        j->xs = rs->xs;
        copy_col(st, 0, j->id, sizeof(j->id));
        copy_col(st, 1, j->request, sizeof(j->request));
        j->level = (int)hv_db_column_int64(st, 2);
        copy_col(st, 3, j->group, sizeof(j->group));
        types = hv_db_column_text(st, 4, &n);
        j->types = types != NULL ? hv_strndup(types, n) : NULL;
        j->since_ms = hv_db_column_int64(st, 5);
        j->started_ms = (uint64_t)hv_db_column_int64(st, 6);
        export_dir(rs->xs->f, j->id, j->dir, sizeof(j->dir));
        j->next = rs->jobs;
        rs->jobs = j;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void done_resume(int status, void *arg)
{
    resume_t *rs = arg;
    while (rs->jobs != NULL) {
        xjob_t *j = rs->jobs;
        rs->jobs = j->next;
        j->next = NULL;
        if (status == HV_OK && !rs->xs->closing && strlen(j->id) == 32) {
            /* An owned job's scopes were in memory only: never run it again unfiltered. */
            j->rc = HV_EPERM;
            snprintf(j->error, sizeof(j->error),
                     "the export was interrupted by a restart and its access token's scopes are not kept: "
                     "kick it off again");
            if (hv_storage_submit(rs->xs->f->storage, job_finish, done_finish, j) != HV_OK)
                xjob_free(j);
            continue;
        }
        if (status != HV_OK || rs->xs->closing || start_job(rs->xs, j) != HV_OK)
            xjob_free(j);
    }
    hv_free(rs);
}

static int job_sweep(hv_db_t *db, void *arg)
{
    xstate_t *xs = arg;
    hv_db_stmt_t *st = NULL;
    char ids[EXPORT_SWEEP_BATCH][40];
    size_t n = 0;
    int rc = hv_db_prepare(db, "SELECT id FROM export_jobs WHERE state <> 0 AND finished_ms < $1", &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_int64(st, 1, (int64_t)(hv_now_ms() - xs->retention_ms));
    while (n < EXPORT_SWEEP_BATCH && (rc = hv_db_step(st)) == HV_DB_ROW)
        copy_col(st, 0, ids[n++], sizeof(ids[0]));
    hv_db_done(st);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < n; i++) {
        char dir[1024];
        if (!job_id_valid(ids[i]))
            continue;
        export_dir(xs->f, ids[i], dir, sizeof(dir));
        remove_dir(dir);
        rc = hv_db_prepare(db, "DELETE FROM export_jobs WHERE id = $1", &st);
        if (rc != HV_OK)
            return rc;
        bind_str(st, 1, ids[i]);
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0)
            return rc;
    }
    return HV_OK;
}

static void done_sweep(int status, void *arg)
{
    (void)status;
    (void)arg;
}

static void on_sweep(uv_timer_t *t)
{
    xstate_t *xs = t->data;
    if (!xs->closing)
        (void)hv_storage_submit(xs->f->storage, job_sweep, done_sweep, xs);
}

static int export_start(hv__fhir_t *f)
{
    hv_config_t *cfg = hv_engine_config(f->e);
    xstate_t *xs = hv_calloc(1, sizeof(*xs));
    resume_t *rs = NULL;
    uint64_t every;
    if (xs == NULL)
        return HV_ENOMEM;
    xs->f = f;
    xs->max_running = (size_t)hv_config_int(cfg, "fhir.export_max_running");
    xs->retention_ms = hv_config_duration_ms(cfg, "fhir.export_retention");
    if (xs->max_running < 1)
        xs->max_running = 1;
    f->export_state = xs;
    /* Expired exports are looked for now and every few minutes; the timer does not
     * keep the loop alive. */
    uv_timer_init(hv_engine_loop(f->e), &xs->sweep);
    xs->sweep.data = xs;
    every = xs->retention_ms < EXPORT_SWEEP_MS ? (xs->retention_ms > 1000 ? xs->retention_ms : 1000) : EXPORT_SWEEP_MS;
    uv_timer_start(&xs->sweep, on_sweep, 0, every);
    uv_unref((uv_handle_t *)&xs->sweep);
    /* Jobs that were running when the engine last stopped run again. */
    rs = hv_calloc(1, sizeof(*rs));
    if (rs == NULL)
        return HV_ENOMEM;
    rs->xs = xs;
    if (hv_storage_submit(f->storage, job_resume, done_resume, rs) != HV_OK)
        hv_free(rs);
    return HV_OK;
}

void hv__export_stop(hv__fhir_t *f)
{
    xstate_t *xs = xs_of(f);
    if (xs == NULL)
        return;
    xs->closing = 1;
    uv_timer_stop(&xs->sweep);
    for (xjob_t *j = xs->running; j != NULL; j = j->next)
        atomic_store(&j->cancel, XC_SHUTDOWN);
}

static void on_sweep_closed(uv_handle_t *h)
{
    hv_free(h->data);
}

void hv__export_free(hv__fhir_t *f)
{
    xstate_t *xs = xs_of(f);
    if (xs == NULL)
        return;
    xs->closing = 1;
    f->export_state = NULL;
    /* Work in the pool holds the loop open, so none is left when the loop has
     * returned; the timer frees the state once closed. */
    uv_close((uv_handle_t *)&xs->sweep, on_sweep_closed);
}

int hv__rest_export_routes(hv__fhir_t *f, hv_router_t *r)
{
    int rc = hv_router_add(r, HV_HTTP_GET, "/fhir/$export", h_kickoff, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/Patient/$export", h_kickoff, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/Group/:id/$export", h_kickoff, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET | HV_HTTP_DELETE, "/fhir/$export-poll-status/:job", h_status, f);
    if (rc == HV_OK)
        rc = hv_router_add(r, HV_HTTP_GET, "/fhir/$export-file/:job/:file", h_file, f);
    if (rc == HV_OK)
        rc = export_start(f);
    return rc;
}
