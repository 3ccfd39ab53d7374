/*
 * ccda_int.h — internals shared by the files of the C-CDA reader (adapters/ccda):
 * the mapping context, the CDA R2 data-type converters (datatypes.c), the header
 * mapping (header.c), the section and entry mappings (sections.c, entries.c) and
 * the Bundle assembly (ccda_to_fhir.c).
 *
 * Every function that builds JSON returns a new json-c object owned by the caller,
 * or NULL when the source has nothing to map (absent element, nullFlavor, a value
 * that would not be valid FHIR — the last one is reported as an issue).
 */
#ifndef HV_CCDA_INT_H
#define HV_CCDA_INT_H

#include <libxml/tree.h>
#include <stddef.h>

#include "adapters/ccda/ccda.h"
#include "engine/engine.h"

struct json_object;

#define HV__CCDA_NS "urn:hl7-org:v3"
#define HV__CCDA_SDTC_NS "urn:hl7-org:sdtc"
#define HV__CCDA_XSI_NS "http://www.w3.org/2001/XMLSchema-instance"

/* One resource already in the Bundle that later entries may point at again. */
typedef struct hv__ccda_known {
    char *key;     /* "Practitioner|system|value" */
    char *full_url; /* "urn:uuid:…" */
} hv__ccda_known_t;

typedef struct hv__ccda_ctx {
    hv_arena_t *arena;            /* strings that live until the mapping returns */
    xmlDocPtr doc;
    struct json_object *entries;  /* Bundle.entry, in order */
    struct json_object *issues;   /* OperationOutcome.issue */
    uint64_t seed;                /* hash of the document id: makes ids stable per document */
    unsigned seq;                 /* resources created so far */
    const char *patient_url;      /* fullUrl of the Patient */
    const char *encounter_url;    /* fullUrl of the header's encounter, or NULL */
    hv__ccda_known_t known[HV_CCDA_MAX_KNOWN];
    size_t nknown;
    size_t max_entries;
    struct json_object *cond_urls; /* conditional request URLs used so far (a set) */
    int too_many;                 /* the entry cap was reached: later resources are dropped */
    int oom;
} hv__ccda_ctx_t;

/* ---- XML navigation (datatypes.c) -------------------------------------------------- */

/* The first child element in the CDA namespace named `name` (NULL if none). */
xmlNodePtr hv__ccda_child(xmlNodePtr n, const char *name);
/* The next sibling element after `prev` with that name. */
xmlNodePtr hv__ccda_next(xmlNodePtr prev, const char *name);
/* The first child element named `name` in namespace ns (any namespace when ns is NULL). */
xmlNodePtr hv__ccda_child_ns(xmlNodePtr n, const char *ns, const char *name);
/* An unqualified attribute's value, borrowed from the tree; NULL when absent. */
const char *hv__ccda_attr(xmlNodePtr n, const char *name);
/* The local part of xsi:type ("PQ" for "PQ" or "v3:PQ"); NULL when absent. */
const char *hv__ccda_xsi_type(xmlNodePtr n);
/* True when n has a templateId child whose root is oid. */
int hv__ccda_has_template(xmlNodePtr n, const char *oid);
/* True when the element carries a nullFlavor (its value is unknown). */
int hv__ccda_is_null(xmlNodePtr n);
/* The element's text content, whitespace trimmed, from the arena; NULL if empty. */
char *hv__ccda_text(hv__ccda_ctx_t *c, xmlNodePtr n);
/* True when element name equals `name` in the CDA namespace. */
int hv__ccda_is(xmlNodePtr n, const char *name);

/* ---- data types (CDA R2 datatypes → FHIR R4) -------------------------------------- */

/* The FHIR system URI for a code-system or identifier OID (FHIR R4
 * terminologies-systems.html); "urn:oid:<oid>" when no canonical URI is known. */
const char *hv__ccda_system(hv__ccda_ctx_t *c, const char *oid);
/* HL7 TS ("20130801050000-0800") → FHIR dateTime at the same precision, into out.
 * date_only truncates to the date (FHIR date). A time without a zone is cut to
 * its date (FHIR requires a zone with a time). HV_EINVAL when it is not a TS. */
int hv__ccda_ts(const char *ts, int date_only, char *out, size_t outlen);
/* A TS element's value as a JSON string, NULL when absent or invalid (then an issue). */
struct json_object *hv__ccda_ts_json(hv__ccda_ctx_t *c, xmlNodePtr ts, int date_only);
/* CD/CE/CV → CodeableConcept (codings: the code and its translations; text:
 * originalText or displayName); NULL when nothing is coded or written. */
struct json_object *hv__ccda_concept(hv__ccda_ctx_t *c, xmlNodePtr cd);
/* CD → one Coding (no translations); NULL when it has no code. */
struct json_object *hv__ccda_coding(hv__ccda_ctx_t *c, xmlNodePtr cd);
/* II → Identifier: root+extension → system+value; root alone → urn:oid/urn:uuid value. */
struct json_object *hv__ccda_identifier(hv__ccda_ctx_t *c, xmlNodePtr ii);
/* Every `id` child of n as an Identifier array; NULL when none maps. */
struct json_object *hv__ccda_identifiers(hv__ccda_ctx_t *c, xmlNodePtr n);
/* PN/EN → HumanName; ON → its text (use hv__ccda_text). */
struct json_object *hv__ccda_name(hv__ccda_ctx_t *c, xmlNodePtr pn);
struct json_object *hv__ccda_address(hv__ccda_ctx_t *c, xmlNodePtr ad);
struct json_object *hv__ccda_telecom(hv__ccda_ctx_t *c, xmlNodePtr tel);
/* Every child `name` of n mapped with fn into an array; NULL when empty. */
struct json_object *hv__ccda_all(hv__ccda_ctx_t *c, xmlNodePtr n, const char *name,
                                 struct json_object *(*fn)(hv__ccda_ctx_t *, xmlNodePtr));
/* PQ → Quantity (value, unit, UCUM system and code); NULL when no valid value. */
struct json_object *hv__ccda_quantity(hv__ccda_ctx_t *c, xmlNodePtr pq);
/* A decimal literal normalized to FHIR's decimal syntax, as a JSON number keeping
 * its text; NULL when s is not a number. */
struct json_object *hv__ccda_decimal(const char *s);
/* effectiveTime (TS or IVL_TS) → <prefix>DateTime or <prefix>Period on obj. */
void hv__ccda_set_effective(hv__ccda_ctx_t *c, struct json_object *obj, const char *prefix,
                            xmlNodePtr et);
/* IVL_TS → Period; NULL when neither bound maps. */
struct json_object *hv__ccda_period(hv__ccda_ctx_t *c, xmlNodePtr ivl);
/* The section narrative (CDA R2 §4.3.5) → an XHTML div string (FHIR narrative.html). */
char *hv__ccda_narrative(hv__ccda_ctx_t *c, xmlNodePtr text, const char *fallback);
/* An observation value (ANY with xsi:type) → value[x] on obj. */
void hv__ccda_set_value(hv__ccda_ctx_t *c, struct json_object *obj, xmlNodePtr value);

/* ---- Bundle (ccda_to_fhir.c) ------------------------------------------------------ */

/* Records an OperationOutcome issue (severity "error"/"warning"/"information"). */
void hv__ccda_issue(hv__ccda_ctx_t *c, const char *severity, const char *code,
                    const char *where, const char *fmt, ...) HV_PRINTF(5, 6);
/*
 * Adds a resource (taking it) as a transaction entry and returns its fullUrl.
 * With an identifier (the resource's first one, system and value) the request is
 * a conditional update PUT Type?identifier=system|value, else a POST. dedup_key
 * (may be NULL) returns the earlier entry's fullUrl for the same key without
 * adding a second one. NULL when the entry cap is reached or on ENOMEM.
 */
const char *hv__ccda_add(hv__ccda_ctx_t *c, const char *type, struct json_object *res,
                         const char *dedup_key);
/* {"reference": url} */
struct json_object *hv__ccda_ref(const char *url);

/* Small builders shared by the section mappers (defined in entries.c): a reference to url
 * appended to refs when url is not NULL; a CodeableConcept of one coding (display may be
 * NULL); the statusCode/@code of n; string equality that is false for a NULL a; o.key = v
 * when v is not NULL. */
void hv__ccda_add_ref(struct json_object *refs, const char *url);
struct json_object *hv__ccda_cc1(const char *system, const char *code, const char *display);
const char *hv__ccda_status_code(xmlNodePtr n);
int hv__ccda_eq(const char *a, const char *b);
void hv__ccda_set_if(struct json_object *o, const char *key, struct json_object *v);

/* ---- header and body ------------------------------------------------------------- */

/* Maps the header: Patient (required), authors, custodian, legal authenticator,
 * encounter; fills comp (the Composition being built). HV_EINVAL (err set) when the
 * patient's identity cannot be mapped. */
int hv__ccda_header(hv__ccda_ctx_t *c, xmlNodePtr root, struct json_object *comp,
                    hv_error_t *err);
/* assignedAuthor/assignedEntity (with an assignedPerson) → a Practitioner, added once per
 * identifier (or name); returns its fullUrl, NULL when there is nothing to map. */
const char *hv__ccda_practitioner(hv__ccda_ctx_t *c, xmlNodePtr assigned);
/* representedOrganization / providerOrganization / custodian organization → Organization,
 * added once per identifier (or name); NULL when it has neither (FHIR org-1). */
const char *hv__ccda_organization(hv__ccda_ctx_t *c, xmlNodePtr org);
/* The Practitioner of an entry's performer (else its author), as a reference; NULL if none. */
struct json_object *hv__ccda_entry_actor(hv__ccda_ctx_t *c, xmlNodePtr entry);

/* Maps the body: each section to a Composition.section with its entries. */
void hv__ccda_body(hv__ccda_ctx_t *c, xmlNodePtr root, struct json_object *comp);
/* Maps one section's entries by the section's template; the references of the
 * resources made go to refs (an array). Returns 0 when the template is known. */
int hv__ccda_section_entries(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);

/* Calls fn(c, element, refs, ud) for every descendant element of n carrying one of the
 * templates in oids (NULL-terminated), not descending into a match nor into narrative
 * or nested sections (entries.c). */
void hv__ccda_walk(hv__ccda_ctx_t *c, xmlNodePtr n, const char *const *oids,
                   void (*fn)(hv__ccda_ctx_t *c, xmlNodePtr n, struct json_object *refs, void *ud),
                   struct json_object *refs, void *ud);

/* ---- entries (entries.c): one function per section kind; each appends the
 * references of the resources it made to refs. ---------------------------------------- */
void hv__ccda_problems(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_health_concerns(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_diagnoses(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_allergies(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_medications(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_results(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_vital_signs(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_immunizations(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_procedures(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_encounters(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_social_history(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_anesthesia(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_assessments(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_family_history(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_medical_equipment(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_nutrition(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
void hv__ccda_plan_of_care(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);

/* ---- administrative sections (admin.c) ------------------------------------------------ */
/* Advance Directives (2.21/2.21.1): Advance Directive Organizer (.4.108) / Observation
 * (.4.48) → Consent (scope adr), the referenced document → DocumentReference, the author
 * → Provenance. */
void hv__ccda_advance_directives(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);
/* Payers (2.18): Coverage Activity (.4.60) / Policy Activity (.4.61) → Coverage. */
void hv__ccda_payers(hv__ccda_ctx_t *c, xmlNodePtr section, struct json_object *refs);

#endif
