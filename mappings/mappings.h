/*
 * mappings.h — the public interface of the mapping module: HL7 v2 → FHIR (driven
 * by mapping files derived from the official HL7 v2-to-FHIR tables), C-CDA → FHIR
 * (adapters/ccda) and FHIR → HL7 v2 (outbound ADT^A08 and ORU^R01).
 *
 * Every direction reports what it could not map in an OperationOutcome instead of
 * stopping at the first problem; it fails (and produces nothing) only when the
 * result would be unsafe to store, e.g. when the patient's identity cannot be
 * mapped.
 */
#ifndef HV_MAPPINGS_H
#define HV_MAPPINGS_H

#include <stddef.h>

#include "engine/engine.h"

struct json_object;
struct hv_map_tables;

typedef struct hv_map_opts {
    const char *override_file; /* a mapping file whose rows replace or add rows; NULL: none */
    int explain;               /* non-zero: fill hv_map_result_t.explain */
    /* HL7 v2 → FHIR: tables already loaded with their override (the channel step loads
     * them once); when set, override_file is not read again. NULL: load as needed. */
    const struct hv_map_tables *tables;
    /* HL7 v2 → FHIR: the message structure to map with ("ORU_R01") instead of the one
     * MSH-9 names; NULL: from MSH-9. */
    const char *structure;
    /* HL7 v2 → FHIR: map a message without a patient identifier anyway (the Patient, if
     * any, then gets an id hashed from its content, and a warning says so) instead of
     * failing with HV_EPROTO. For conformance tests of single rules; 0 for real feeds. */
    int lenient_identity;
    /* HL7 v2 → FHIR: non-zero gives the result as JSON text (hv_map_result_t.bundle_text,
     * outcome_text, explain_text) instead of json-c objects — what a caller that stores or
     * sends the Bundle wants; it costs no json-c tree. Other directions ignore it. */
    int text;
} hv_map_opts_t;

typedef struct hv_map_result {
    struct json_object *bundle;  /* FHIR R4 transaction Bundle (to FHIR), else NULL */
    struct json_object *outcome; /* OperationOutcome listing every problem; never NULL on HV_OK
                                  * (unless the result is text: then outcome_text is set) */
    struct json_object *explain; /* array of {"element", "rule"} when opts->explain, else NULL */
    /* With hv_map_opts_t.text (HL7 v2 → FHIR), the same three as JSON text instead (the three
     * above stay NULL): hv_malloc'd, NUL-terminated, plain (no whitespace, member order as
     * built, '/' not escaped), the bytes json-c writes for the same objects with
     * JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE. explain_text NULL unless asked. */
    char *bundle_text;
    size_t bundle_len;
    char *outcome_text;
    char *explain_text;
    /* HL7 v2 → FHIR: non-zero when the outcome's only issue is the "mapped" note (nothing to
     * report). */
    int clean;
} hv_map_result_t;

/* Releases what a mapping produced; the result may be zeroed or partly filled. */
void hv_map_result_free(hv_map_result_t *r);

/* HL7 v2 (ER7) message → transaction Bundle. HV_EPROTO (err set) when the
 * message cannot be mapped safely; out is filled only on HV_OK. */
int hv_map_v2_to_fhir(const char *msg, size_t len, const hv_map_opts_t *opts, hv_map_result_t *out,
                      hv_error_t *err);

/* C-CDA R2.1 document (XML) → transaction Bundle; implemented in adapters/ccda. */
int hv_map_ccda_to_fhir(const char *xml, size_t len, const hv_map_opts_t *opts,
                        hv_map_result_t *out, hv_error_t *err);

/* FHIR resource or Bundle (JSON) → one HL7 v2 message of the given structure
 * ("ADT_A08" from Patient/Encounter, "ORU_R01" from DiagnosticReport/Observation).
 * The ER7 text goes to msg; problems to out->outcome (out->bundle stays NULL). */
int hv_map_fhir_to_v2(const char *json, size_t len, const char *structure,
                      const hv_map_opts_t *opts, hv_buf_t *msg, hv_map_result_t *out,
                      hv_error_t *err);

/* The module (mappings/module.c): the `map` commands. */
extern const hv_module_t hv_mappings_module;
/* Registers the hl7v2-to-fhir, ccda-to-fhir and fhir-to-hl7v2 steps with the channel
 * runtime; listed in modules.c before hv_channels_module. */
extern const hv_module_t hv_mappings_channels_module;

#endif
