/*
 * load_fhir.c — loads the FHIR specification's own terminology from a Bundle of
 * CodeSystem and ValueSet resources (valuesets.json, v3-codesystems.json,
 * v2-tables.json of the FHIR R4 definitions; FHIR R4 codesystem.html, valueset.html).
 *
 *   CodeSystem with concepts  -> a code system of the store (system = its url), each
 *                                nested concept's parent recorded for is-a; one
 *                                transaction per code system
 *   ValueSet                  -> the value_set table (url, version, name, the resource
 *                                as JSON), all in one transaction; ValueSet/$expand and
 *                                $validate-code evaluate its compose (fhir_ops.c)
 *
 * The Bundle is read whole (capped at 64 MiB) with json-c.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "terminology/terminology_int.h"

#define MAX_BUNDLE (64L * 1024 * 1024)
#define MAX_NESTING 32

static struct json_object *member(struct json_object *o, const char *k) {
    struct json_object *v = NULL;
    return o != NULL && json_object_object_get_ex(o, k, &v) ? v : NULL;
}

/* Adds the concepts of one level (and, recursively, their children). */
static int add_concepts(hv__load_t *l, struct json_object *concepts, const char *parent,
                        int depth, hv_error_t *err) {
    size_t i;
    int rc = HV_OK;
    if (concepts == NULL || !json_object_is_type(concepts, json_type_array)) return HV_OK;
    if (depth > MAX_NESTING) {
        hv_error_set(err, HV_ETOOBIG, l->path, "%s nests concepts deeper than %d", l->system,
                     MAX_NESTING);
        return HV_ETOOBIG;
    }
    for (i = 0; rc == HV_OK && i < json_object_array_length(concepts); i++) {
        struct json_object *c = json_object_array_get_idx(concepts, i);
        const char *code = hv_json_get_str(c, "code"), *display = hv_json_get_str(c, "display");
        if (code == NULL || code[0] == '\0') continue;
        rc = hv__load_concept(l, code, display != NULL ? display : code, 1, NULL,
                              hv_json_get_str(c, "definition"), err);
        if (rc == HV_OK && parent != NULL) rc = hv__load_parent(l, code, parent, err);
        if (rc == HV_OK) rc = add_concepts(l, member(c, "concept"), code, depth + 1, err);
    }
    return rc;
}

static int load_code_system(hv_db_t *db, const char *path, struct json_object *cs,
                            const char *version, FILE *progress, hv_error_t *err) {
    hv__load_t l;
    const char *url = hv_json_get_str(cs, "url");
    int rc;
    if (url == NULL || member(cs, "concept") == NULL) return HV_OK; /* content not present */
    rc = hv__load_begin(&l, db, url, path, NULL, err);
    if (rc != HV_OK) return rc;
    rc = add_concepts(&l, member(cs, "concept"), NULL, 0, err);
    if (rc == HV_OK && l.concepts > 0) {
        const char *v = version != NULL ? version : hv_json_get_str(cs, "version");
        return hv__load_commit(&l, "fhir", v, err);
    }
    hv__load_abort(&l);
    (void)progress;
    return rc;
}

static int store_value_sets(hv_db_t *db, struct json_object *entries, size_t *count,
                            hv_error_t *err) {
    size_t i, n = 0;
    int rc = hv_db_begin(db) == HV_OK ? HV_OK : HV_EDB;
    for (i = 0; rc == HV_OK && i < json_object_array_length(entries); i++) {
        struct json_object *r = member(json_object_array_get_idx(entries, i), "resource");
        const char *type = hv_json_get_str(r, "resourceType"), *url = hv_json_get_str(r, "url");
        const char *text, *v, *name;
        hv_db_stmt_t *st = NULL;
        if (type == NULL || strcmp(type, "ValueSet") != 0 || url == NULL) continue;
        text = json_object_to_json_string_ext(r, JSON_C_TO_STRING_PLAIN);
        v = hv_json_get_str(r, "version");
        name = hv_json_get_str(r, "name");
        rc = hv_db_prepare(db,
                           "INSERT INTO value_set (url, version, name, resource) VALUES ($1, $2, $3, $4)"
                           " ON CONFLICT (url) DO UPDATE SET version = excluded.version,"
                           " name = excluded.name, resource = excluded.resource",
                           &st);
        if (rc == HV_OK) rc = hv_db_bind_text(st, 1, url, strlen(url));
        if (rc == HV_OK) rc = v != NULL ? hv_db_bind_text(st, 2, v, strlen(v)) : hv_db_bind_null(st, 2);
        if (rc == HV_OK)
            rc = name != NULL ? hv_db_bind_text(st, 3, name, strlen(name)) : hv_db_bind_null(st, 3);
        if (rc == HV_OK) rc = hv_db_bind_text(st, 4, text, strlen(text));
        if (rc == HV_OK) rc = hv_db_step(st);
        if (st != NULL) hv_db_done(st);
        n++;
    }
    if (rc != HV_OK) {
        hv_error_set(err, HV_EDB, NULL, "cannot store the value sets: %s", hv_db_errmsg(db));
        (void)hv_db_rollback(db);
        return HV_EDB;
    }
    if (hv_db_commit(db) != HV_OK) {
        hv_error_set(err, HV_EDB, NULL, "commit: %s", hv_db_errmsg(db));
        (void)hv_db_rollback(db);
        return HV_EDB;
    }
    *count = n;
    return HV_OK;
}

int hv__load_fhir(hv_db_t *db, const char *path, const char *version, FILE *progress,
                  hv_error_t *err) {
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    long len;
    struct json_object *bundle = NULL, *entries;
    size_t i, systems = 0, sets = 0;
    int rc = HV_OK;
    if (f == NULL) {
        hv_error_set(err, HV_EIO, path, "cannot open the file");
        return HV_EIO;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        hv_error_set(err, HV_EIO, path, "cannot read the file");
        return HV_EIO;
    }
    if (len > MAX_BUNDLE) {
        fclose(f);
        hv_error_set(err, HV_ETOOBIG, path, "the Bundle is larger than %ld bytes", MAX_BUNDLE);
        return HV_ETOOBIG;
    }
    text = hv_malloc((size_t)len + 1);
    if (text == NULL || fread(text, 1, (size_t)len, f) != (size_t)len) {
        fclose(f);
        hv_free(text);
        hv_error_set(err, text == NULL ? HV_ENOMEM : HV_EIO, path, "cannot read the file");
        return text == NULL ? HV_ENOMEM : HV_EIO;
    }
    fclose(f);
    text[len] = '\0';
    rc = hv_json_parse(text, (size_t)len, path, &bundle, err);
    hv_free(text);
    if (rc != HV_OK) return rc;
    entries = member(bundle, "entry");
    if (hv_json_get_str(bundle, "resourceType") == NULL ||
        strcmp(hv_json_get_str(bundle, "resourceType"), "Bundle") != 0 || entries == NULL ||
        !json_object_is_type(entries, json_type_array)) {
        json_object_put(bundle);
        hv_error_set(err, HV_EPROTO, path, "not a FHIR Bundle of CodeSystem and ValueSet resources");
        return HV_EPROTO;
    }
    for (i = 0; rc == HV_OK && i < json_object_array_length(entries); i++) {
        struct json_object *r = member(json_object_array_get_idx(entries, i), "resource");
        const char *type = hv_json_get_str(r, "resourceType");
        if (type == NULL || strcmp(type, "CodeSystem") != 0) continue;
        rc = load_code_system(db, path, r, version, NULL, err);
        if (rc == HV_OK && member(r, "concept") != NULL) systems++;
        if (progress != NULL && systems % 20 == 0) {
            fprintf(progress, "\rloading FHIR code systems: %zu", systems);
            fflush(progress);
        }
    }
    if (rc == HV_OK) rc = store_value_sets(db, entries, &sets, err);
    if (rc == HV_OK) {
        /* A summary row, so `terminology load` can report what it read. */
        char when[32], count[32], ver[64];
        hv_db_stmt_t *st = NULL;
        hv_time_rfc3339(hv_now_ms(), when, sizeof when);
        snprintf(count, sizeof count, "%zu", systems);
        snprintf(ver, sizeof ver, "%zu code systems, %zu value sets", systems, sets);
        rc = hv_db_prepare(db,
                           "INSERT INTO code_system_version (system, kind, version, loaded_at,"
                           " concepts, source) VALUES ('urn:holovitals:fhir', 'fhir', $1, $2,"
                           " CAST($3 AS INTEGER), $4) ON CONFLICT (system) DO UPDATE SET"
                           " version = excluded.version, loaded_at = excluded.loaded_at,"
                           " concepts = excluded.concepts, source = excluded.source",
                           &st);
        if (rc == HV_OK) rc = hv_db_bind_text(st, 1, ver, strlen(ver));
        if (rc == HV_OK) rc = hv_db_bind_text(st, 2, when, strlen(when));
        if (rc == HV_OK) rc = hv_db_bind_text(st, 3, count, strlen(count));
        if (rc == HV_OK) rc = hv_db_bind_text(st, 4, path, strlen(path));
        if (rc == HV_OK) rc = hv_db_step(st);
        if (st != NULL) hv_db_done(st);
        if (rc != HV_OK) {
            hv_error_set(err, HV_EDB, path, "%s", hv_db_errmsg(db));
            rc = HV_EDB;
        }
    }
    if (progress != NULL) {
        fprintf(progress, "\n");
        fflush(progress);
    }
    json_object_put(bundle);
    return rc;
}
