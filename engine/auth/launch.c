/*
 * launch.c — EHR launch contexts (SMART App Launch 2.0 app-launch.html#launch-app-ehr-launch)
 * and the fhirUser links of users (scopes-and-launch-context.html#fhiruser).
 *
 *   POST /auth/launch  (Bearer; admin, clinician or integrator)  {"patient": "ID"}
 *        → 201 {"launch": "lc.<64 hex>", "patient": "ID", "expires_in": auth.launch_ttl}
 *   holovitals launch create --patient ID      prints the launch value alone
 *
 * The EHR opens the app with ?iss=<FHIR base>&launch=<value>; the app sends `launch`
 * back to /auth/authorize with the scope `launch`. The authorize endpoint resolves it
 * (hv__auth_launch_get) and the patient of the context becomes the token's `patient`
 * without a picker. A launch value is 256-bit random, stored as its SHA-256, lives
 * auth.launch_ttl, and is spent when a code is issued for it (hv__auth_launch_spend).
 *
 * Table launches (migration 2 of engine/auth/users.c):
 *   hash TEXT PK | patient TEXT | created_by TEXT | expires BIGINT (s) | used BIGINT
 */
#include "config.h"
#include "engine/auth/auth_int.h"

#include <ctype.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

/* FHIR R4 datatypes.html#id. */
static int id_ok(const char *s) {
    size_t i, n = s != NULL ? strlen(s) : 0;
    if (n == 0 || n > 64) return 0;
    for (i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '.') return 0;
    return 1;
}

int hv__auth_fhir_user_valid(const char *ref) {
    static const char *const types[] = {"Practitioner/", "Patient/", "RelatedPerson/", "Person/"};
    size_t i;
    if (ref == NULL) return 0;
    for (i = 0; i < HV_ARRAY_LEN(types); i++) {
        size_t n = strlen(types[i]);
        if (strncmp(ref, types[i], n) == 0) return id_ok(ref + n);
    }
    return 0;
}

int hv__auth_launch_create(hv_db_t *db, const char *patient, const char *by, int64_t ttl, char *out, size_t outlen) {
    char rnd[65], hash[65];
    hv_db_stmt_t *st = NULL;
    int rc;
    if (!id_ok(patient) || outlen < 68) return HV_EINVAL;
    hv__auth_random_id(rnd, 32);
    snprintf(out, outlen, "lc.%s", rnd);
    hv__auth_sha256_hex(out, strlen(out), hash);
    rc = hv_db_prepare(db, "INSERT INTO launches (hash, patient, created_by, expires) VALUES ($1, $2, $3, $4)", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, hash, strlen(hash));
    hv_db_bind_text(st, 2, patient, strlen(patient));
    hv_db_bind_text(st, 3, by, strlen(by));
    hv_db_bind_int64(st, 4, (int64_t)(hv_now_ms() / 1000) + ttl);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

int hv__auth_launch_get(hv_db_t *db, const char *launch, char *patient, size_t cap) {
    char hash[65];
    hv_db_stmt_t *st = NULL;
    int rc;
    if (launch == NULL || strncmp(launch, "lc.", 3) != 0 || strlen(launch) != 67) return HV_ENOTFOUND;
    hv__auth_sha256_hex(launch, strlen(launch), hash);
    rc = hv_db_prepare(db, "SELECT patient FROM launches WHERE hash = $1 AND used = 0 AND expires >= $2", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, hash, strlen(hash));
    hv_db_bind_int64(st, 2, (int64_t)(hv_now_ms() / 1000));
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        size_t len = 0;
        const char *p = hv_db_column_text(st, 0, &len);
        if (p != NULL && len < cap) {
            memcpy(patient, p, len);
            patient[len] = '\0';
            rc = HV_OK;
        } else {
            rc = HV_ENOTFOUND;
        }
    } else if (rc >= 0) {
        rc = HV_ENOTFOUND;
    }
    hv_db_done(st);
    return rc;
}

int hv__auth_launch_spend(hv_db_t *db, const char *launch) {
    char hash[65];
    hv_db_stmt_t *st = NULL;
    int rc;
    hv__auth_sha256_hex(launch, strlen(launch), hash);
    rc = hv_db_prepare(db, "UPDATE launches SET used = 1 WHERE hash = $1", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, hash, strlen(hash));
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* ---- POST /auth/launch ---- */

static int job_launch(hv_db_t *db, void *arg) {
    hv__sjob_t *j = arg;
    j->result = hv__auth_launch_create(db, j->patient, j->user, j->a->launch_ttl, j->refresh, sizeof(j->refresh));
    return j->result == HV_EINVAL ? HV_OK : j->result;
}

static void done_launch(int status, void *arg) {
    hv__sjob_t *j = arg;
    if (status != HV_OK || j->result != HV_OK) {
        hv_http_respond_error(j->req, 503, "storage_failed", "the launch could not be stored; retry");
    } else {
        struct json_object *o = json_object_new_object();
        hv_json_set_str(o, "launch", j->refresh);
        hv_json_set_str(o, "patient", j->patient);
        hv_json_set_int(o, "expires_in", j->a->launch_ttl);
        hv_http_header_add(j->req, "Cache-Control", "no-store");
        hv_http_respond_json(j->req, 201, o);
    }
    hv__sjob_free(j);
}

static void h_launch(hv_http_req_t *req, void *ud) {
    hv__auth_t *a = ud;
    const hv_auth_principal_t *p = hv_auth_principal(req);
    const char *patient;
    hv__sjob_t *j;
    int dup = 0;
    if (p == NULL) {
        hv_http_header_add(req, "WWW-Authenticate", "Bearer realm=\"holovitals\"");
        hv_http_respond_error(req, 401, "unauthorized", "a Bearer access token is required");
        return;
    }
    /* An EHR session makes launches: a user whose role works with patient records. */
    if (!(p->role & (HV_AUTH_ROLE_ADMIN | HV_AUTH_ROLE_CLINICIAN | HV_AUTH_ROLE_INTEGRATOR))) {
        hv_http_respond_error(req, 403, "forbidden", "your role may not create launch contexts");
        return;
    }
    patient = hv__auth_param(req, "patient", &dup);
    if (dup || !id_ok(patient)) {
        hv_http_respond_error(req, 400, "invalid_request", "patient must be one FHIR id");
        return;
    }
    if ((j = hv__sjob_new(a, req)) == NULL) return;
    snprintf(j->patient, sizeof(j->patient), "%s", patient);
    snprintf(j->user, sizeof(j->user), "%.64s", p->sub);
    hv__sjob_submit(j, job_launch, done_launch);
}

int hv__auth_launch_routes(hv__auth_t *a) {
    return hv_router_add(hv_engine_router(a->e), HV_HTTP_POST, "/auth/launch", h_launch, a);
}
