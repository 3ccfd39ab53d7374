/*
 * module.c — the terminology module: its settings, its CLI commands and (later)
 * its routes, as the hv_module_t that modules.c lists.
 *
 * Settings:
 *   terminology.ucum_essence  path of ucum-essence.xml; "" finds the installed copy
 *                             ($(pkgdatadir)/ucum-essence.xml) or the source tree's
 *   terminology.ucum_cache    parsed units kept in the UCUM cache
 *   terminology.cache_size    look-up answers kept in memory; terminology.cache_ttl their life
 *   terminology.min_confidence  percent a LOINC match needs to be applied (else review)
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fhir/fhirpath.h"
#include "terminology/terminology_int.h"

static const hv_setting_t settings[] = {
    {"terminology.ucum_essence", NULL, HV_SET_STRING, "", NULL,
     "Path of the UCUM essence file (ucum-essence.xml); empty finds the installed copy or the "
     "source tree's."},
    {"terminology.ucum_cache", NULL, HV_SET_INT, "4096", NULL,
     "Parsed UCUM units kept in memory (a bounded cache)."},
    {"terminology.cache_size", NULL, HV_SET_INT, "10000", NULL,
     "Answers of the look-up and search endpoints kept in memory (0 disables the cache)."},
    {"terminology.cache_ttl", NULL, HV_SET_DURATION, "5m", NULL,
     "How long a cached look-up answer is served; a code system load empties the cache sooner."},
    {"terminology.min_confidence", NULL, HV_SET_INT, "80", NULL,
     "Lab-result standardization applies a LOINC match only at this confidence (percent) or more; "
     "weaker matches go to the review list."},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

static const char *essence_path(hv_engine_t *e) {
    const char *p = hv_config_str(hv_engine_config(e), "terminology.ucum_essence");
    return p != NULL && p[0] != '\0' ? p : NULL;
}

static int run_convert(hv_engine_t *e, int argc, char **argv) {
    return hv_terminology_ucum_convert_cmd(essence_path(e), argc, argv, stdout, stderr);
}

static int run_validate(hv_engine_t *e, int argc, char **argv) {
    return hv_terminology_ucum_validate_cmd(essence_path(e), argc, argv, stdout, stderr);
}

static int run_load(hv_engine_t *e, int argc, char **argv) {
    return hv_terminology_load_cmd(hv_engine_db_url(e), hv_engine_data_dir(e), argc, argv, stdout,
                                   stderr, isatty(2));
}

static int run_search(hv_engine_t *e, int argc, char **argv) {
    return hv_terminology_search_cmd(hv_engine_db_url(e), hv_engine_data_dir(e), argc, argv, stdout,
                                     stderr);
}

static const hv_command_t commands[] = {
    {"terminology load", "terminology load loinc|snomed|icd10cm|cpt PATH [--version V]",
     "load a code system into the terminology store",
     "Loads a code system from its official files, replacing the loaded version in one\n"
     "transaction (a failed load leaves the previous version in force):\n"
     "  loinc    Loinc.csv of the LOINC table (loinc.org)\n"
     "  snomed   a folder holding an RF2 snapshot (sct2_Concept_Snapshot..., Description, Relationship)\n"
     "  icd10cm  the CMS/CDC order file icd10cm-order-<year>.txt (plain or .gz); the project ships\n"
     "           the 2021 file as terminology/data/icd10cm-order-2021.txt.gz\n"
     "  cpt      a CSV with a code column and a description column (CPT is licensed by the AMA)\n"
     "--version sets the version recorded (else it is read from the file or its name).",
     run_load},
    {"terminology search", "terminology search loinc|snomed|icd10cm|cpt QUERY",
     "search a loaded code system", "Prints the first 20 matches, code and display.", run_search},
    {"ucum convert", "ucum convert VALUE FROM TO", "convert a value between UCUM units",
     "Prints VALUE converted from the UCUM unit FROM to the unit TO, e.g.\n"
     "  holovitals ucum convert 37 Cel [degF]   -> 98.6\n"
     "Fails (exit 1) with the position and reason if a unit is invalid, or if the units are not\n"
     "commensurable.",
     run_convert},
    {"ucum validate", "ucum validate UNIT", "check a UCUM unit expression",
     "Prints the canonical form of UNIT, or exits 1 with the column and reason it is invalid.",
     run_validate},
    {NULL, NULL, NULL, NULL, NULL},
};

/* The FHIRPath memberOf() provider: answers from the store through the module's
 * memberOf connection; callers on any thread take turns on it. */
static int member_of(void *ud, const char *valueset, const char *system, const char *code, int *member) {
    hv__term_t *t = ud;
    int rc;
    if (code == NULL) {
        *member = 0;
        return HV_OK;
    }
    uv_mutex_lock(&t->member_lock);
    rc = hv_terminology_member_of(t->member_db, valueset, system, code, member);
    uv_mutex_unlock(&t->member_lock);
    return rc;
}

static int module_init(hv_engine_t *e, void **state) {
    const char *p = essence_path(e);
    hv__term_t *t = NULL;
    hv_db_t *db = NULL;
    hv_error_t err;
    char msg[1024];
    int rc;
    *state = NULL;
    /* The shared table loads lazily; point it at the configured file first. */
    {
        int64_t cache = hv_config_int(hv_engine_config(e), "terminology.ucum_cache");
        rc = hv_ucum_shared_configure(p, cache > 0 ? (size_t)cache : 0);
    }
    if (rc != HV_OK && rc != HV_EBUSY) return rc;
    t = hv_calloc(1, sizeof *t);
    if (t == NULL) return HV_ENOMEM;
    t->e = e;
    t->min_confidence = (double)hv_config_int(hv_engine_config(e), "terminology.min_confidence") / 100.0;
    hv_error_clear(&err);
    t->ucum = hv_ucum_shared(&err);
    if (t->ucum == NULL) {
        hv_error_format(&err, msg, sizeof msg);
        hv_log(HV_LOG_WARN, "terminology.ucum_unavailable", "%s", msg);
    }
    rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "terminology", &db, &err);
    if (rc == HV_OK) rc = hv_terminology_store_migrate(db, &err);
    if (rc != HV_OK) {
        hv_error_format(&err, msg, sizeof msg);
        hv_log(HV_LOG_ERROR, "terminology.store_failed", "%s", msg);
        goto out;
    }
    rc = hv_storage_new(hv_engine_loop(e), db, 1024, 64, &t->storage);
    if (rc != HV_OK) goto out;
    db = NULL; /* owned by the storage thread now */
    {
        int64_t size = hv_config_int(hv_engine_config(e), "terminology.cache_size");
        uint64_t ttl = hv_config_duration_ms(hv_engine_config(e), "terminology.cache_ttl");
        if (size > 0 && ttl > 0) {
            rc = hv__cache_new(t, (size_t)size, ttl, &t->cache);
            if (rc != HV_OK) goto out;
        }
    }
    /* memberOf() in FHIRPath (channel filters, invariants) asks this store. */
    rc = hv_db_open(hv_engine_db_url(e), hv_engine_data_dir(e), "terminology", &t->member_db, &err);
    if (rc != HV_OK) goto out;
    if (uv_mutex_init(&t->member_lock) != 0) {
        rc = HV_ENOMEM;
        goto out;
    }
    t->member_lock_init = 1;
    hv_fhirpath_set_member_provider(member_of, t);
    rc = hv__api_register(t);
    if (rc == HV_OK) rc = hv__standardize_register(t);
    if (rc == HV_OK) rc = hv__fhir_ops_register(t);
    if (rc != HV_OK) goto out;
    *state = t;
    t = NULL;
out:
    hv_db_close(db);
    if (t != NULL) {
        if (t->member_lock_init) {
            hv_fhirpath_set_member_provider(NULL, NULL);
            uv_mutex_destroy(&t->member_lock);
        }
        hv_db_close(t->member_db);
        if (t->storage != NULL) hv_storage_free(t->storage);
        hv__cache_free(t->cache);
        hv_free(t);
    }
    return rc;
}

static void module_stop(hv_engine_t *e, void *state) {
    hv__term_t *t = state;
    (void)e;
    if (t != NULL) hv__cache_stop(t->cache);
}

static void module_free(hv_engine_t *e, void *state) {
    hv__term_t *t = state;
    (void)e;
    if (t == NULL) return;
    /* The storage thread first: its last done callbacks may still touch the cache. */
    hv_storage_free(t->storage);
    if (t->member_lock_init) {
        hv_fhirpath_set_member_provider(NULL, NULL);
        uv_mutex_destroy(&t->member_lock);
    }
    hv_db_close(t->member_db);
    hv__cache_free(t->cache);
    hv_free(t);
}

const hv_module_t hv_terminology_module = {
    "terminology", settings, commands, module_init, NULL, module_stop, module_free,
};
