/*
 * terminology.h — the terminology module: code systems (LOINC, SNOMED CT,
 * ICD-10-CM, CPT), lab-result standardization, and the medical-standards API.
 *
 * UCUM has its own header, terminology/ucum.h, because it is a leaf library that
 * fhir/ includes directly (DESIGN.md); this header is what modules.c and the rest
 * of the engine see of the module.
 */
#ifndef HV_TERMINOLOGY_H
#define HV_TERMINOLOGY_H

#include <stdio.h>

#include "engine/engine.h"
#include "terminology/ucum.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Code system URIs (FHIR R4 terminologies.html, "Using Codes"). */
#define HV_TERMINOLOGY_LOINC "http://loinc.org"
#define HV_TERMINOLOGY_SNOMED "http://snomed.info/sct"
#define HV_TERMINOLOGY_ICD10CM "http://hl7.org/fhir/sid/icd-10-cm"
#define HV_TERMINOLOGY_CPT "http://www.ama-assn.org/go/cpt"

/* The most results one search returns. */
#define HV_TERMINOLOGY_MAX_RESULTS 200

/*
 * A concept of a loaded code system. Strings live in the arena passed to the call
 * that returned it. props is a JSON object text (LOINC: component, property,
 * timeAspect, system, scale, method, class, shortName, exampleUcumUnits, status;
 * ICD-10-CM: billable) or NULL.
 */
typedef struct hv_terminology_concept {
    const char *system;
    const char *code;
    const char *display;
    int active;
    const char *props;
} hv_terminology_concept_t;

/*
 * The store. Every function takes the module's own connection (hv_db_open(url, data,
 * "terminology", ...)) and must run on the thread that owns it (the storage thread
 * when serving). Reads return HV_ENOTFOUND when nothing matches.
 */
int hv_terminology_store_migrate(hv_db_t *db, hv_error_t *err);
/*
 * Loads a code system from its official files, replacing the loaded version in one
 * transaction (a failed load leaves the previous version in force; loading the same
 * file again gives the same tables). kind: "loinc" (Loinc.csv), "snomed" (an RF2
 * snapshot folder), "icd10cm" (the CMS/CDC order file, plain or .gz), "cpt" (a CSV
 * with code and description columns). version NULL takes it from the file
 * (LOINC VersionLastChanged, RF2 and order file names). progress: where a progress
 * line goes, or NULL.
 */
int hv_terminology_load(hv_db_t *db, const char *kind, const char *path, const char *version,
                        FILE *progress, hv_error_t *err);
int hv_terminology_lookup(hv_db_t *db, const char *system, const char *code, hv_arena_t *a,
                          hv_terminology_concept_t *out);
/*
 * Full-text search of displays and synonyms: every word of q must match the start of
 * a word (prefix search). A q that is itself a code puts that concept first.
 * HV_EINVAL if q has no word. limit is capped at HV_TERMINOLOGY_MAX_RESULTS.
 */
int hv_terminology_search(hv_db_t *db, const char *system, const char *q, size_t limit,
                          size_t offset, hv_arena_t *a, hv_terminology_concept_t **out,
                          size_t *n);
/* The loaded version of a code system and its concept count; HV_ENOTFOUND if not loaded. */
int hv_terminology_version(hv_db_t *db, const char *system, hv_arena_t *a, const char **version,
                           int64_t *concepts);
/* 1 if ancestor subsumes code (is-a, reflexive), 0 if not, HV_EDB on error. */
int hv_terminology_subsumes(hv_db_t *db, const char *system, const char *ancestor,
                            const char *code);
/*
 * Whether (system, code) is in the value set with canonical URL valueset (implicit
 * value sets of the loaded code systems, or ValueSets loaded with `terminology load
 * fhir`); system NULL matches any system. Sets *member; HV_ENOTFOUND when the value set
 * is unknown, HV_ETOOBIG / HV_ENOTSUP / HV_EINVAL when it cannot be expanded.
 */
int hv_terminology_member_of(hv_db_t *db, const char *valueset, const char *system, const char *code,
                             int *member);
/* True if code is a well-formed LOINC code whose check digit (mod 10) is right. */
int hv_terminology_loinc_code_valid(const char *code);

struct json_object;

/*
 * Lab-result standardization (see standardize.c for the matching rules). input is a
 * lab result, either {"sender", "code", "text", "value", "unit", "referenceRange":
 * {"low", "high", "criticalLow", "criticalHigh", "unit", "normal"}} or a FHIR R4
 * Observation. *out (owned by the caller) holds "status" (standardized | review |
 * unmatched), "loinc" {code, display, confidence, method}, "value" {value, unit,
 * original, originalUnit, converted}, "interpretation" (N L H LL HH A),
 * "plausibility" and "warnings". A result below min_confidence, or implausible, is
 * "review" and, if review is set, recorded in the review list. HV_EINVAL (err
 * filled) if the input is not a lab result.
 */
int hv_terminology_standardize(hv_db_t *db, hv_ucum_t *ucum, struct json_object *input,
                               double min_confidence, int review, struct json_object **out,
                               hv_error_t *err);
/* Checks a lab result without changing it: {"valid": bool, "issues": [{severity, code, message}]}. */
int hv_terminology_validate_lab(hv_db_t *db, hv_ucum_t *ucum, struct json_object *input,
                                struct json_object **out, hv_error_t *err);
/* Replaces a sender's local-code -> LOINC mappings with those of a FHIR ConceptMap. */
int hv_terminology_conceptmap_put(hv_db_t *db, const char *sender, struct json_object *conceptmap,
                                  size_t *count, hv_error_t *err);
/* The newest review items (at most limit), as a JSON array. */
int hv_terminology_review_list(hv_db_t *db, size_t limit, struct json_object **out);

/* The module (settings, CLI commands, routes), for modules.c. */
extern const hv_module_t hv_terminology_module;
/* The channel steps loinc-standardize and map-codes (channel.c), for modules.c. */
extern const hv_module_t hv_terminology_channels_module;

/*
 * The `ucum` commands, without the engine: essence is the essence path (NULL for
 * the default), argv the arguments after "ucum convert" / "ucum validate".
 * Results go to out, errors to errf. Returns an HV_EXIT_* code.
 */
int hv_terminology_ucum_convert_cmd(const char *essence, int argc, char **argv, FILE *out,
                                    FILE *errf);
int hv_terminology_ucum_validate_cmd(const char *essence, int argc, char **argv, FILE *out,
                                     FILE *errf);

/*
 * `terminology load KIND PATH [--version V]` and `terminology search KIND QUERY` against
 * the store of db_url/data_dir (as hv_db_open takes them). show_progress writes a
 * progress line to errf while loading.
 */
int hv_terminology_load_cmd(const char *db_url, const char *data_dir, int argc, char **argv,
                            FILE *out, FILE *errf, int show_progress);
int hv_terminology_search_cmd(const char *db_url, const char *data_dir, int argc, char **argv,
                              FILE *out, FILE *errf);

#ifdef __cplusplus
}
#endif
#endif /* HV_TERMINOLOGY_H */
