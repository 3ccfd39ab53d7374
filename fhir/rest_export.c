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
 * Kick-off needs `Prefer: respond-async` and answers 202 with Content-Location.
 * Parameters: _type (comma-separated resource types), _since (an instant: resources
 * last updated at or after it), _outputFormat (application/fhir+ndjson, ndjson or
 * application/ndjson). The export runs as one job on the FHIR store's storage thread
 * (the thread that owns the connection), which writes one file per type under
 * <data>/fhir-export/<job>/<Type>.ndjson; other store jobs wait meanwhile, so large
 * exports delay writes (a dedicated read connection is future work). The job table
 * lives in memory: a restart forgets running and finished exports (their files stay).
 * At most HV__EXPORT_MAX jobs are kept; the oldest finished one is dropped first.
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fhir/rest_int.h"

#define HV__EXPORT_MAX 16
#define EXPORT_MAX_TYPES 200
#define EXPORT_MAX_PATIENTS 100000

typedef struct xfile {
    char type[HV__FHIR_TYPE_MAX];
    FILE *fp;
    uint64_t count;
} xfile_t;

typedef struct xjob {
    hv__fhir_t *f;
    char id[40];
    char dir[1024];
    char request[1024];
    int level;                  /* 0 system, 1 Patient, 2 Group, 3 the token's own patient */
    char group[HV__FHIR_ID_MAX];
    char *types;                /* _type, or NULL for all */
    int64_t since_ms;
    uint64_t started_ms;
    int state;                  /* 0 running, 1 done, 2 failed, 3 cancelled */
    char error[256];
    xfile_t *files;
    size_t nfiles;
    uint64_t exported;
    /* Patient and Group level: the patients whose compartments are exported */
    char (*patients)[HV__FHIR_ID_MAX];
    size_t npatients;
    /* SMART scopes (fhir/rest_authz.c): a copy of the kick-off's principal (NULL: auth
     * off) whose scopes filter every exported resource, and the owner ("client id" or
     * user name) who alone may poll, download or cancel the job. */
    hv_auth_principal_t *principal;
    int check;
    char owner[HV_AUTH_MAX_ID];
} xjob_t;

typedef struct xstate {
    xjob_t *jobs[HV__EXPORT_MAX];
} xstate_t;

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

void hv__export_free(hv__fhir_t *f)
{
    xstate_t *xs = xs_of(f);
    if (xs == NULL)
        return;
    for (size_t i = 0; i < HV__EXPORT_MAX; i++)
        xjob_free(xs->jobs[i]);
    hv_free(xs);
    f->export_state = NULL;
}

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

static FILE *file_for(xjob_t *j, const char *type)
{
    char path[1200];
    xfile_t *nf;
    for (size_t i = 0; i < j->nfiles; i++)
        if (strcmp(j->files[i].type, type) == 0)
            return j->files[i].fp;
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
    j->nfiles++;
    return nf[j->nfiles - 1].fp;
}

/* Writes one row as an NDJSON line of its type's file. */
static int write_row(void *ud, const hv__store_row_t *row)
{
    xjob_t *j = ud;
    FILE *fp;
    if (row->deleted || row->text == NULL || !type_wanted(j, row->type) ||
        (j->since_ms >= 0 && (int64_t)row->last_ms < j->since_ms))
        return HV_OK;
    if (j->check && hv__authz_resource(j->principal, HV_AUTH_SEARCH, row->type, row->id, NULL, row->text) != HV_OK)
        return HV_OK; /* outside the kick-off token's scopes */
    fp = file_for(j, row->type);
    if (fp == NULL || fwrite(row->text, 1, row->text_len, fp) != row->text_len || fputc('\n', fp) == EOF)
        return HV_EIO;
    for (size_t i = 0; i < j->nfiles; i++)
        if (strcmp(j->files[i].type, row->type) == 0)
            j->files[i].count++;
    j->exported++;
    return HV_OK;
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

static int job_export(hv_db_t *db, void *arg)
{
    xjob_t *j = arg;
    int rc;
    if (j->level == 0)
        return hv__store_each_current(db, NULL, write_row, j);
    if (j->level == 3) /* a patient/-only token: its patient's compartment, whatever it asked */
        return hv__store_compartment(db, j->principal->patient, NULL, write_row, j);
    rc = j->level == 2 ? group_patients(db, j) : hv__store_each_current(db, "Patient", add_patient, j);
    for (size_t i = 0; rc == HV_OK && i < j->npatients; i++)
        rc = hv__store_compartment(db, j->patients[i], NULL, write_row, j);
    return rc;
}

static void done_export(int status, void *arg)
{
    xjob_t *j = arg;
    for (size_t i = 0; i < j->nfiles; i++)
        if (j->files[i].fp != NULL && fclose(j->files[i].fp) != 0 && status == HV_OK)
            status = HV_EIO;
    for (size_t i = 0; i < j->nfiles; i++)
        j->files[i].fp = NULL;
    if (j->state == 0) {
        j->state = status == HV_OK ? 1 : 2;
        if (status != HV_OK && j->error[0] == '\0')
            snprintf(j->error, sizeof(j->error), "the export failed: %s", hv_strerror(status));
    }
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

static xjob_t *find_job(hv__fhir_t *f, const char *id)
{
    xstate_t *xs = xs_of(f);
    for (size_t i = 0; xs != NULL && id != NULL && i < HV__EXPORT_MAX; i++)
        if (xs->jobs[i] != NULL && strcmp(xs->jobs[i]->id, id) == 0)
            return xs->jobs[i];
    return NULL;
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

/* Only the kick-off's owner sees a job: another token is told it does not exist. */
static int owns(const xjob_t *j, const hv_auth_principal_t *p)
{
    const char *who;
    if (j->principal == NULL)
        return 1;
    if (p == NULL)
        return 0;
    who = p->client_id[0] != '\0' ? p->client_id : p->sub;
    return strcmp(who, j->owner) == 0;
}

static void h_kickoff(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    const char *prefer = hv_http_req_header(req, "Prefer"), *types = hv_http_req_query_param(req, "_type");
    const char *since = hv_http_req_query_param(req, "_since"), *fmt = hv_http_req_query_param(req, "_outputFormat");
    const char *path = hv_http_req_path(req), *gid = hv_http_req_param(req, "id");
    xstate_t *xs;
    xjob_t *j = NULL;
    size_t slot = HV__EXPORT_MAX;
    unsigned char rnd[8];
    char hex[17], *loc;
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
        int ok = copy != NULL, allowed = 1;
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
            hv__rest_outcome(r, 403, "error", "forbidden", "the access token's scopes do not allow exporting "
                                                           "every type _type lists");
            goto out;
        }
    } else if (!may_export(r->principal)) {
        hv__rest_outcome(r, 403, "error", "forbidden", "the access token's scopes allow no search to export");
        goto out;
    }
    if (f->export_state == NULL) {
        f->export_state = hv_calloc(1, sizeof(xstate_t));
        if (f->export_state == NULL) {
            hv__rest_outcome(r, 503, "error", "transient", "out of memory");
            goto out;
        }
    }
    xs = xs_of(f);
    for (size_t i = 0; i < HV__EXPORT_MAX && slot == HV__EXPORT_MAX; i++)
        if (xs->jobs[i] == NULL)
            slot = i;
    for (size_t i = 0; i < HV__EXPORT_MAX && slot == HV__EXPORT_MAX; i++)
        if (xs->jobs[i]->state != 0) {
            xjob_free(xs->jobs[i]);
            xs->jobs[i] = NULL;
            slot = i;
        }
    if (slot == HV__EXPORT_MAX) {
        hv_http_header_add(req, "Retry-After", "10");
        hv__rest_outcome(r, 429, "error", "throttled", "too many exports are running");
        goto out;
    }
    j = hv_calloc(1, sizeof(*j));
    if (j == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto out;
    }
    j->f = f;
    j->since_ms = -1;
    if (since != NULL && hv__fhir_parse_time(since, &j->since_ms) != HV_OK) {
        hv__rest_outcome(r, 400, "error", "invalid", "_since must be a FHIR instant");
        goto out;
    }
    j->types = types != NULL ? hv_strdup(types) : NULL;
    j->level = gid != NULL ? 2 : strncmp(path, "/fhir/Patient/", 14) == 0 ? 1 : 0;
    if (r->principal != NULL) {
        /* Bulk Data with SMART scopes: the job keeps the token's scopes and filters every
         * resource with them; a patient/-only token exports its own patient's compartment. */
        int patient_only = r->principal->role != HV_AUTH_ROLE_ADMIN && r->principal->patient[0] != '\0';
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
        j->check = 1;
        snprintf(j->owner, sizeof(j->owner), "%s",
                 r->principal->client_id[0] != '\0' ? r->principal->client_id : r->principal->sub);
        if (patient_only)
            j->level = 3;
    }
    if (gid != NULL)
        snprintf(j->group, sizeof(j->group), "%s", gid);
    hv_random_fast(rnd, sizeof(rnd));
    hv_hex(rnd, sizeof(rnd), hex);
    snprintf(j->id, sizeof(j->id), "%s", hex);
    snprintf(j->dir, sizeof(j->dir), "%s/fhir-export/%s", hv_engine_data_dir(f->e), j->id);
    snprintf(j->request, sizeof(j->request), "%s%s", hv__rest_base(r), hv_http_req_target(req) + 5);
    j->started_ms = hv_now_ms();
    if (mkdirs(j->dir) != HV_OK) {
        hv__rest_outcome(r, 500, "error", "exception", "the export directory cannot be created");
        goto out;
    }
    if (hv_storage_submit(f->storage, job_export, done_export, j) != HV_OK) {
        hv_http_header_add(req, "Retry-After", "1");
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; retry later");
        goto out;
    }
    xs->jobs[slot] = j;
    loc = hv_arena_sprintf(hv_http_req_arena(req), "%s/$export-poll-status/%s", hv__rest_base(r), j->id);
    j = NULL;
    hv_http_header_add(req, "Content-Location", loc != NULL ? loc : "");
    hv_http_respond(req, 202, NULL, NULL, 0);
out:
    xjob_free(j);
    hv__rreq_free(r);
}

static void h_status(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    xjob_t *j;
    if (r == NULL)
        return;
    j = find_job(f, hv_http_req_param(req, "job"));
    if (j != NULL && !owns(j, r->principal))
        j = NULL;
    if (j == NULL || j->state == 3) {
        hv__rest_outcome(r, 404, "error", "not-found", "no such export");
    } else if (hv_http_req_method(req) == HV_HTTP_DELETE) {
        /* Bulk Data §Delete: cancel; the running job finishes, its result is dropped. */
        for (size_t i = 0; i < j->nfiles && j->state != 0; i++) {
            char path[1200];
            snprintf(path, sizeof(path), "%s/%s.ndjson", j->dir, j->files[i].type);
            unlink(path);
        }
        if (j->state != 0)
            rmdir(j->dir);
        j->state = 3;
        hv_http_respond(req, 202, NULL, NULL, 0);
    } else if (j->state == 0) {
        hv_http_header_add(req, "X-Progress", "in progress");
        hv_http_header_add(req, "Retry-After", "1");
        hv_http_respond(req, 202, NULL, NULL, 0);
    } else if (j->state == 2) {
        hv__rest_outcome(r, 500, "error", "exception", "%s", j->error);
    } else {
        struct json_object *m = json_object_new_object(), *out = json_object_new_array();
        char ts[40];
        hv__fhir_instant(j->started_ms, ts, sizeof(ts));
        hv_json_set_str(m, "transactionTime", ts);
        hv_json_set_str(m, "request", j->request);
        hv_json_set(m, "requiresAccessToken", json_object_new_boolean(0));
        for (size_t i = 0; i < j->nfiles; i++) {
            struct json_object *o = json_object_new_object();
            char *url = hv_arena_sprintf(hv_http_req_arena(req), "%s/$export-file/%s/%s.ndjson", hv__rest_base(r),
                                         j->id, j->files[i].type);
            hv_json_set_str(o, "type", j->files[i].type);
            hv_json_set_str(o, "url", url);
            hv_json_set_int(o, "count", (int64_t)j->files[i].count);
            json_object_array_add(out, o);
        }
        hv_json_set(m, "output", out);
        hv_json_set(m, "error", json_object_new_array());
        hv_http_respond_json(req, 200, m);
    }
    hv__rreq_free(r);
}

typedef struct xread {
    hv__rreq_t *r;
    char path[1200];
    hv_buf_t data;
    int rc;
} xread_t;

/* Reads a file on the storage thread, so that the loop never blocks on the disk. */
static int job_read(hv_db_t *db, void *arg)
{
    xread_t *x = arg;
    FILE *fp = fopen(x->path, "rb");
    char chunk[65536];
    size_t n;
    (void)db;
    x->rc = HV_OK;
    if (fp == NULL) {
        x->rc = HV_ENOTFOUND;
        return HV_OK;
    }
    while (x->rc == HV_OK && (n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
        x->rc = hv_buf_append(&x->data, chunk, n);
    fclose(fp);
    return HV_OK;
}

static void done_read(int status, void *arg)
{
    xread_t *x = arg;
    if (status != HV_OK || x->rc == HV_ENOTFOUND)
        hv__rest_outcome(x->r, 404, "error", "not-found", "no such export file");
    else if (x->rc != HV_OK)
        hv__rest_outcome(x->r, 413, "error", "too-costly", "the file is larger than this server sends at once");
    else if (x->data.len == 0)
        hv_http_respond(x->r->req, 200, "application/fhir+ndjson", "", 0);
    else
        hv_http_respond_buf(x->r->req, 200, "application/fhir+ndjson", &x->data);
    hv_buf_release(&x->data);
    hv__rreq_free(x->r);
    hv_free(x);
}

static void h_file(hv_http_req_t *req, void *ud)
{
    hv__fhir_t *f = ud;
    hv__rreq_t *r = hv__rreq_new(f, req);
    const char *file = hv_http_req_param(req, "file");
    xjob_t *j;
    xread_t *x;
    size_t n;
    if (r == NULL)
        return;
    j = find_job(f, hv_http_req_param(req, "job"));
    if (j != NULL && !owns(j, r->principal))
        j = NULL;
    n = file != NULL ? strlen(file) : 0;
    /* The name must be one of the job's files: Type.ndjson, nothing else. */
    if (j == NULL || j->state != 1 || n < 8 || strcmp(file + n - 7, ".ndjson") != 0) {
        hv__rest_outcome(r, 404, "error", "not-found", "no such export file");
        goto fail;
    }
    {
        int known = 0;
        for (size_t i = 0; i < j->nfiles; i++)
            if (strlen(j->files[i].type) == n - 7 && strncmp(j->files[i].type, file, n - 7) == 0)
                known = 1;
        if (!known) {
            hv__rest_outcome(r, 404, "error", "not-found", "no such export file");
            goto fail;
        }
    }
    x = hv_calloc(1, sizeof(*x));
    if (x == NULL) {
        hv__rest_outcome(r, 503, "error", "transient", "out of memory");
        goto fail;
    }
    x->r = r;
    snprintf(x->path, sizeof(x->path), "%s/%s", j->dir, file);
    hv_buf_init(&x->data, f->parse.max_bytes > 0 ? f->parse.max_bytes * 16 : 0);
    if (hv_storage_submit(f->storage, job_read, done_read, x) != HV_OK) {
        hv_free(x);
        hv__rest_outcome(r, 503, "error", "transient", "the store is busy; retry later");
        goto fail;
    }
    return;
fail:
    hv__rreq_free(r);
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
    return rc;
}
