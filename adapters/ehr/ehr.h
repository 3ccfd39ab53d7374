/*
 * ehr.h — the public interface of adapters/ehr: the FHIR R4 client that pulls
 * resources from EHRs (Epic, Oracle Health/Cerner, any FHIR R4 server), the
 * connections it pulls from, and their sync runs.
 *
 * The module (`ehr`) serves the /ehr/... API of issue #12 (docs/ehr.md):
 *   POST /ehr/connect          {"vendor", "base_url", "client_id", "private_key_pem" |
 *                               "client_secret", "scopes", "resource_types", "schedule", …}
 *   GET  /ehr/connections      without keys or secrets, ever
 *   POST /ehr/sync/:id         {"mode": "full" | "incremental" | "bulk"[, "incremental": true]} → 202 {"run_id"}
 *   GET  /ehr/sync-history     ?connection=ID, newest first
 *   GET  /ehr/providers        the vendors and what each needs
 *   POST /ehr/disconnect       {"id"}
 * and registers the channel sources `epic`, `cerner` and `fhir-pull` (a channel
 * bound to a connection sees every resource its syncs fetch).
 *
 * Vendor differences are small tables (hv_ehr_vendor_t) defined in
 * adapters/epic/epic.c and adapters/cerner/cerner.c on top of the generic client.
 * The pure functions below (page parsing, schedules, sealing) are public so that
 * unit tests and fuzz targets reach them.
 */
#ifndef HV_EHR_H
#define HV_EHR_H

#include <stddef.h>
#include <stdint.h>
#include "engine/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

struct json_object;

/* ------------------------------------------------------------------------- */
/* Vendors                                                                   */
/* ------------------------------------------------------------------------- */

/*
 * What differs between EHR vendors, as data. Each field is a documented quirk
 * (docs/ehr.md, "Vendors"); the generic FHIR R4 client reads them.
 */
typedef struct hv_ehr_vendor {
    const char *name;          /* the `vendor` value of POST /ehr/connect */
    const char *display;       /* "Epic", "Oracle Health (Cerner)" */
    const char *needs;         /* one sentence for GET /ehr/providers */
    /* Credentials: 1 = a private key is required (private_key_jwt only), 2 = a
     * client secret or a private key, 0 = either or none (open servers). */
    int credentials;
    const char *assertion_alg; /* default JWT alg of the client assertion */
    int default_page_size;     /* _count asked for */
    int max_page_size;         /* the largest _count the vendor honours */
    /* Resource types whose search the vendor refuses without a patient parameter:
     * the client searches them once per Patient already synced from the
     * connection (NULL-terminated; NULL for none). */
    const char *const *patient_scoped;
    /* Bulk export level when the connection names no group: "system" or "patient". */
    const char *bulk_level;
    /* Checks the base URL (tenant-specific URLs); NULL accepts any http(s) URL. */
    int (*check_base_url)(const char *url, hv_error_t *err);
    /* 1: incremental syncs read the deletions from [base]/[type]/_history?_since (FHIR R4
     * http.html#history); 0: the vendor has no type-level history (deletions are found by
     * full syncs only). */
    int history_deletions;
} hv_ehr_vendor_t;

extern const hv_ehr_vendor_t hv_ehr_vendor_fhir;
/* Finds a vendor by name ("epic", "cerner", "fhir"); NULL if unknown. */
const hv_ehr_vendor_t *hv_ehr_vendor_find(const char *name);
/* The vendors, NULL-terminated. */
const hv_ehr_vendor_t *const *hv_ehr_vendors(void);

/* ------------------------------------------------------------------------- */
/* Search pages (FHIR R4 http.html#paging, bundle.html)                      */
/* ------------------------------------------------------------------------- */

#define HV_EHR_PAGE_MAX_ENTRIES 10000 /* entries of one page; more is HV_ETOOBIG */

/*
 * One parsed searchset page. `resources` holds the entries whose search.mode is
 * "match" or "include" (or absent) as json-c objects; `outcomes` the
 * OperationOutcome resources the server put in the page as warnings (search.mode
 * "outcome", as Epic does); `next` the URL of the link with relation "next"
 * (NULL when this is the last page). All owned by the page.
 */
typedef struct hv_ehr_page {
    struct json_object *root;
    struct json_object **resources;
    size_t nresources;
    struct json_object **outcomes;
    size_t noutcomes;
    const char *next;
    int64_t total; /* Bundle.total, -1 when absent */
} hv_ehr_page_t;

/*
 * Parses a search page: the body must be a JSON object with resourceType
 * "Bundle" (an OperationOutcome answers HV_EPROTO with its first diagnostics in
 * err; HTML or any other text HV_EPROTO with what it was). An entry without a
 * resource object, or a resource without a string resourceType, fails with
 * HV_EINVAL and err->location "Bundle.entry[i]": a page is taken whole or not at
 * all. Caps: max_bytes of text (0: 64 MiB), HV_EHR_PAGE_MAX_ENTRIES entries.
 */
int hv_ehr_page_parse(const char *body, size_t len, size_t max_bytes, hv_ehr_page_t *out,
                      hv_error_t *err);
void hv_ehr_page_release(hv_ehr_page_t *p);

/*
 * Reads a history page (FHIR R4 http.html#history, a Bundle of type history,
 * newest version first): fn is called for each entry, in order, with the
 * resource's type and id and deleted = 1 for a deletion (request.method DELETE:
 * no resource; the type and id come from request.url or fullUrl, "[base/]Type/id"
 * with an optional "/_history/v"). next (when not NULL) receives the "next" link
 * (hv_free; NULL on the last page). The same non-Bundle errors as a search page;
 * an entry that names no resource fails the page with HV_EINVAL ("Bundle.entry[i]");
 * fn's status other than HV_OK stops and is returned.
 */
#define HV_EHR_HIST_TYPE_MAX 64
#define HV_EHR_HIST_ID_MAX 65
typedef int (*hv_ehr_hist_cb)(void *ud, const char *type, const char *id, int deleted);
int hv_ehr_history_parse(const char *body, size_t len, size_t max_bytes, hv_ehr_hist_cb fn, void *ud,
                         char **next, hv_error_t *err);

/*
 * Splits NDJSON (Bulk Data Access IG: one resource per line, "\n" or "\r\n")
 * into lines, calling fn for each non-empty line with its 1-based number; a
 * last line without a newline is passed too (truncated files show up as a
 * line that does not parse). Stops and returns fn's status when it is not HV_OK.
 */
typedef int (*hv_ehr_line_cb)(void *ud, const char *line, size_t len, int64_t lineno);
int hv_ehr_ndjson_each(const char *text, size_t len, int64_t first_lineno, hv_ehr_line_cb fn,
                       void *ud);

/*
 * Parses an HTTP Retry-After value (RFC 9110 §10.2.3): delay-seconds or an
 * HTTP-date, relative to now_ms. Returns the delay in ms, or -1 when unparsable.
 */
int64_t hv_ehr_retry_after_ms(const char *value, uint64_t now_ms);

/* ------------------------------------------------------------------------- */
/* Schedules                                                                 */
/* ------------------------------------------------------------------------- */

/*
 * A sync schedule: "manual" (never on its own), "daily" (24 h after the last
 * scheduled start; the first 24 h after connecting), "hourly", "every <duration>"
 * (an interval from 1s, e.g. "every 15m": after connecting, then after each
 * scheduled start), or a five-field
 * cron expression "minute hour day-of-month month day-of-week" in UTC with the
 * subset `*`, numbers, lists `a,b`, ranges `a-b` and steps `*\/n`, `a-b/n`
 * (day-of-week 0-7, 0 and 7 are Sunday; when both day fields are restricted,
 * either matching is enough, as in Vixie cron). No names (MON, JAN), no `L`,
 * `W`, `#` or `@` macros other than the words above.
 */
typedef struct hv_ehr_schedule {
    int kind; /* HV_EHR_SCHED_* */
    uint64_t minute; /* bit per value */
    uint32_t hour, dom, month;
    uint8_t dow;
    int dom_star, dow_star;
    uint64_t every_ms; /* HV_EHR_SCHED_EVERY: the interval */
} hv_ehr_schedule_t;

enum { HV_EHR_SCHED_MANUAL = 0, HV_EHR_SCHED_DAILY = 1, HV_EHR_SCHED_HOURLY = 2, HV_EHR_SCHED_CRON = 3,
       HV_EHR_SCHED_EVERY = 4 };

int hv_ehr_schedule_parse(const char *text, hv_ehr_schedule_t *out, hv_error_t *err);
/*
 * The next start strictly after after_ms (ms since the epoch, UTC): for cron the
 * next matching minute within 5 years, for daily/hourly after_ms + the period.
 * Returns 0 for manual, and for a cron expression that never matches (Feb 30).
 */
uint64_t hv_ehr_schedule_next(const hv_ehr_schedule_t *s, uint64_t after_ms);

/* ------------------------------------------------------------------------- */
/* Sealed secrets (AES-256-GCM)                                              */
/* ------------------------------------------------------------------------- */

#define HV_EHR_SEAL_OVERHEAD (1 + 12 + 16) /* version byte, nonce, tag */

/*
 * Encrypts plain with AES-256-GCM (NIST SP 800-38D) under key (32 bytes), a fresh
 * random 96-bit nonce, and aad (the connection id) as additional data. The
 * output is version(1) || nonce(12) || ciphertext || tag(16), owned by the caller.
 */
int hv_ehr_seal(const unsigned char key[32], const char *aad, const void *plain, size_t n,
                unsigned char **out, size_t *outlen);
/* Decrypts what hv_ehr_seal made; HV_EPERM when the tag, key or aad do not match.
 * The output is NUL-terminated (not counted) and should be wiped after use. */
int hv_ehr_unseal(const unsigned char key[32], const char *aad, const unsigned char *in, size_t n,
                  unsigned char **out, size_t *outlen);

/* The module: settings ehr.*, the /ehr API, the channel sources, the scheduler. */
extern const hv_module_t hv_ehr_module;

#ifdef __cplusplus
}
#endif
#endif /* HV_EHR_H */
