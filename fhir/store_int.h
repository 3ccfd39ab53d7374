/*
 * store_int.h — internals of the FHIR resource store (fhir/store.c) and of the
 * interactions that run on it (fhir/rest_*.c, fhir/import.c).
 *
 * Every function here that takes an hv_db_t runs on the thread that owns that
 * connection: the storage thread under `serve`, the command's own thread under
 * `import`. None of them begins or commits a transaction: the caller (the storage
 * thread's group commit, or the import loop) does.
 *
 * Storage layout (one row per resource version, FHIR R4 http.html#versioning):
 *
 *   resources  rid           integer primary key, assigned in insertion order, so
 *                            history is ORDER BY rid and inserts append to the tree
 *              type, id      resource type and logical id
 *              version       1, 2, 3… (meta.versionId); unique with (type, id)
 *              last_ms       meta.lastUpdated in ms since the epoch
 *              deleted       1 for the version a DELETE wrote (json is NULL)
 *              json          the resource as stored, element order, meta set
 *   ident      type, id, system, value   Resource.identifier of the current
 *                            version of every live resource (conditional operations)
 *   refs       type, id, patient         the Patients the current version of every
 *                            live resource refers to (the Patient compartment)
 *
 * The current version is the one with the highest version for (type, id): one
 * descending seek on the unique index, never a scan of the history.
 */
#ifndef HV_FHIR_STORE_INT_H
#define HV_FHIR_STORE_INT_H

#include <stdint.h>

#include "engine/auth/auth.h"

struct hv__search_rows;
#include "fhir/fhir.h"

#define HV__FHIR_TYPE_MAX 64  /* longest resource type name, with the NUL */
#define HV__FHIR_ID_MAX 65    /* FHIR id: 64 characters and the NUL */

/* snprintf(dst, cap, "%s%s%s", a, sep, b) without the format machinery (~550 instructions a
 * call, several a resource on an import's workers); sep and b may be NULL (""). The text is
 * cut to cap - 1 bytes as snprintf cuts it; cap > 0. */
void hv__fhir_join(char *dst, size_t cap, const char *a, const char *sep, const char *b);

/* FNV-1a (64 bits) over "type/id": the read cache's buckets (its low half) and the
 * import's set of the ids it wrote (fhir/import.c). */
uint64_t hv__fhir_key_hash(const char *type, const char *id);

/* The read cache's write epochs (fhir/read_cache.c): hv__store_put raises the epoch of
 * the resource's bucket before it writes a version (any thread); a read job takes the
 * epoch before it reads. */
uint32_t hv__rcache_hash(const char *type, const char *id);
void hv__rcache_invalidate(const char *type, const char *id);
uint64_t hv__rcache_epoch(uint32_t hash);

/* The kinds of interaction one operation performs (FHIR R4 http.html). */
typedef enum hv__fop_kind {
    HV__FOP_READ = 1,
    HV__FOP_VREAD,
    HV__FOP_CREATE,
    HV__FOP_UPDATE,
    HV__FOP_DELETE,
    HV__FOP_PATCH
} hv__fop_kind_t;

/* What an operation changed, for change events. */
enum { HV__CHANGE_NONE = 0, HV__CHANGE_CREATED, HV__CHANGE_UPDATED, HV__CHANGE_DELETED };

/* The ids of the Patient compartments a version is in (the refs rows hv__store_put writes):
 * a Patient's own id, then every "Patient/ID" its references name, each once, at most
 * HV__STORE_MAX_PATIENTS. */
#define HV__STORE_MAX_PATIENTS 16
typedef struct hv__store_pats {
    size_t n;
    char ids[HV__STORE_MAX_PATIENTS][HV__FHIR_ID_MAX];
} hv__store_pats_t;

/*
 * One interaction on one resource: the unit the REST handlers, the Bundle
 * processor and the importer hand to hv__fop_run. Inputs are set by the caller;
 * the outputs by hv__fop_run. `resource` and `patch` are owned by the op.
 */
typedef struct hv__fop {
    /* in */
    hv__fop_kind_t kind;
    char type[HV__FHIR_TYPE_MAX];
    char id[HV__FHIR_ID_MAX];      /* target id; for CREATE filled with the new id (may be preset) */
    int64_t version;               /* VREAD: the version asked for */
    int64_t if_match;              /* > 0: the current version must be this one (412 otherwise) */
    char *cond;                    /* conditional criteria: If-None-Exist or the URL's query */
    struct json_object *resource;  /* CREATE/UPDATE: the resource (owned) */
    struct json_object *patch;     /* PATCH: the patch document (owned) */
    int patch_fhirpath;            /* PATCH: 1 for FHIRPath Patch (Parameters), 0 for JSON Patch */
    uint64_t now_ms;               /* the lastUpdated to write; 0 takes the clock */
    int64_t rid_pre;               /* PostgreSQL, a write of a first version: its row id, taken ahead
                                    * from resources' sequence (fhir/rest_bundle.c, take_rids), so
                                    * that its INSERT need not wait for RETURNING; 0: it does */
    int absent;                    /* UPDATE: the caller knows the store holds no version of type/id
                                    * (an import into an empty store that has not written it:
                                    * fhir/import.c, ids_seen), so its current version is not read */
    const hv_auth_principal_t *principal; /* whose scopes limit the op (fhir/rest_authz.c); NULL: none
                                           * (import, channels, auth off). Borrowed from the request. */
    const struct hv__search_rows *ix_pre; /* CREATE/UPDATE: the search-index rows of `resource` computed
                                           * ahead (import), or NULL. Borrowed. */
    struct hv__search_rows *ix_own; /* rows computed ahead that the op owns (a REST create or update
                                     * computes them on the loop thread; hv__fop_clear frees them) */
    char *pre_text;                /* CREATE/UPDATE: `resource` as stored if it becomes version 1,
                                    * serialized ahead (hv__fop_ahead: a REST create, a transaction's
                                    * creates, every entry of an import), with a
                                    * placeholder meta.lastUpdated of 24 characters at pre_ts (owned;
                                    * write_version takes it), or NULL */
    size_t pre_len;
    size_t pre_ts;
    hv__store_pats_t *pre_pats;    /* CREATE/UPDATE: hv__store_patients of `resource` computed ahead
                                    * (hv__fop_ahead), or NULL (owned; hv__fop_clear frees it) */
    /* A CREATE/UPDATE may come without its tree (`resource` NULL) when pre_text, ix_pre and
     * pre_pats were all made ahead from it for op->id: a text-only op. On SQLite a first
     * version of it is written from those alone (no Location: its sp_geo row reads the
     * tree). Where the write needs the tree — PostgreSQL's full-text row, a Location, a
     * later version, conditional criteria, a principal's scopes — the store parses pre_text
     * into `resource` first and says so in `parsed`. */
    /* out */
    int parsed;                    /* 1 when the store parsed a text-only op's pre_text into `resource` */
    int status;                    /* the HTTP status of the outcome */
    int64_t out_version;           /* the version read or written */
    uint64_t out_ms;               /* its lastUpdated */
    char *text;                    /* the resource as stored (owned, NUL-terminated), or NULL */
    size_t text_len;
    int change;                    /* HV__CHANGE_* */
    const char *issue_code;        /* OperationOutcome issue code when status >= 400 */
    char msg[512];                 /* diagnostics when status >= 400 */
} hv__fop_t;

void hv__fop_init(hv__fop_t *op, hv__fop_kind_t kind);
/* Releases what the op owns (not the op itself). */
void hv__fop_clear(hv__fop_t *op);
/*
 * Off the storage thread (the loop thread, an import worker), once op's resource is final
 * and op->id is set: computes the op's compartments (op->pre_pats) and, when `text`, its
 * stored text as a first version (op->pre_text, with meta set on the tree). Only worth it
 * for a write that will be a first version — a create with a new id; the writer
 * serializes again otherwise. Leaves what fails to the writer.
 */
void hv__fop_ahead(hv__fop_t *op, int text);
/* Sets status, issue code and a formatted message. Returns HV_EINVAL for chaining. */
int hv__fop_fail(hv__fop_t *op, int status, const char *code, const char *fmt, ...) HV_PRINTF(4, 5);

/*
 * Runs op against db. Returns HV_OK when the interaction produced an answer —
 * success or a client error, told by op->status — and a negative status only when
 * the database failed (op->status is then 500, or 409 for a version race). A
 * caller that needs atomicity (a transaction) treats op->status >= 400 as failure.
 */
int hv__fop_run(hv_db_t *db, hv__fop_t *op);

/*
 * fhir/channel_store.c: while a `fhir` channel source runs in this process, adds
 * the change op made (type, id, version, kind) to the store's hv_outbox in the
 * op's own transaction, so that the change reaches the source exactly once even
 * across a crash right after the commit; and, while the event bus runs in this
 * process (hv__fhir_channel_store_start), the patient.created / patient.updated
 * event of a Patient write. HV_OK and nothing written otherwise.
 */
int hv__fhir_outbox_change(hv_db_t *db, const hv__fop_t *op);

#define HV__COND_MAX 8 /* conditional operations tell 0, 1 and "several" matches apart */

/*
 * Resolves op->cond (conditional criteria, a raw query string) to the ids of the
 * matching live resources of op->type: fills ids (HV__COND_MAX of them at most)
 * and *n (HV__COND_MAX + 1 meaning "more"). Returns HV_OK, HV_EINVAL with the op
 * failed (unsupported or malformed criteria: 400/501), or a database error.
 */
int hv__fop_resolve(hv_db_t *db, hv__fop_t *op, char (*ids)[HV__FHIR_ID_MAX], size_t *n);

/*
 * SMART scope check of one resource (fhir/rest_authz.c): HV_OK when p may perform
 * interaction (HV_AUTH_*) on the resource given as a tree (res) or as its JSON text
 * (parsed only when p's scopes depend on the compartment or the categories), else
 * HV_EPERM. id is the resource's id (for a Patient, its compartment), or NULL to take
 * it from the resource. Safe on any thread: it only reads p.
 */
int hv__authz_resource(const hv_auth_principal_t *p, int interaction, const char *type, const char *id,
                       struct json_object *res, const char *text);
/* 1 when p's scopes make hv__authz_resource inspect each resource of type (0: all granted). */
int hv__authz_restricted(const hv_auth_principal_t *p, int interaction, const char *type);
/* HV_OK when p may see (interaction) resources of type in Patient/patient's compartment at all:
 * a patient/-only token only its own patient's. */
int hv__authz_compartment(const hv_auth_principal_t *p, int interaction, const char *type, const char *patient);

/* ---- the store (fhir/store.c) ---- */

/*
 * Applies the store's connection settings to a writer connection: fhir.synchronous,
 * and on SQLite fhir.cache_size (PRAGMA cache_size, in KiB). HV_EINVAL on a bad value.
 */
int hv__store_tune(hv_db_t *db, hv_config_t *cfg);

/* Builds the search indexes an import into an empty SQLite store deferred (kept in table
 * import_deferred) and forgets them, in one transaction; HV_OK at once when none are. */
int hv__import_restore_indexes(hv_db_t *db);
/* The same two steps inside a storage job's transaction, for a serving store
 * (adapters/ehr/bulk.c: a first Bulk sync into an empty one): the first drops, as an import
 * does, every index of the search tables, the (type, id, code) ones included, when the
 * store holds no resource and none are deferred, and says in *deferred whether it did; the
 * caller has made the searches leave their hints out first (hv__search_values_deferred).
 * The second builds what import_deferred holds; the third only the writer's (type, id ...)
 * indexes of it, which replacing a stored resource's rows needs (hv__search_index_put_pre).
 * None begins or commits. */
int hv__import_defer_indexes_job(hv_db_t *db, int *deferred);
int hv__import_restore_indexes_job(hv_db_t *db);
int hv__import_restore_writer_indexes_job(hv_db_t *db);

/* The migrations of the fhir module's tables for this backend. */
const char *const *hv__store_migrations(hv_db_t *db);

/* A stored version, as read. text is owned by the row (hv__store_row_clear). */
typedef struct hv__store_row {
    int64_t rid;
    char type[HV__FHIR_TYPE_MAX];
    char id[HV__FHIR_ID_MAX];
    int64_t version;
    uint64_t last_ms;
    int deleted;
    char *text;
    size_t text_len;
    const char *cursor; /* search: the keyset cursor continuing after this row (fhir/search_plan.c) */
} hv__store_row_t;

void hv__store_row_clear(hv__store_row_t *r);
/* Clears r and reads a statement's first five columns into it: rid, type, id, version,
 * last_ms (the type and id cut to their fields' sizes). The caller reads the rest. */
void hv__store_row_head(hv_db_stmt_t *st, hv__store_row_t *r);
/* A row visitor: a status other than HV_OK stops the walk and is returned. The row and
 * its text are valid for the call only (a search's rows point into the statement's
 * column, fhir/search_run.c): a visitor copies what it keeps. */
typedef int (*hv__store_row_cb)(void *ud, const hv__store_row_t *row);
/* The current version (version 0) or a given version of type/id; HV_ENOTFOUND if none. */
int hv__store_get(hv_db_t *db, const char *type, const char *id, int64_t version,
                  hv__store_row_t *out);
/*
 * Appends a version. text is NULL for a deletion. Keeps the identifier index and the
 * patient compartment index in step with the current version: resource (the tree
 * text was written from, or NULL) gives Resource.identifier and the Patient
 * references. HV_ECONFLICT when (type, id, version) exists already (a concurrent writer).
 */
int hv__store_put(hv_db_t *db, const char *type, const char *id, int64_t version, uint64_t ms,
                  const char *text, size_t len, struct json_object *resource);
/* Fills out from resource (a tree walk; needs no database, any thread). */
void hv__store_patients(const char *type, const char *id, struct json_object *resource, hv__store_pats_t *out);
/* hv__store_put with the search-index rows of resource computed ahead
 * (hv__search_index_rows; NULL computes them here) and its compartments (hv__store_patients
 * of the same tree; NULL walks resource here). With both given, a first version on SQLite
 * of a type other than Location needs no tree (resource NULL; hv__search_index_put_pre).
 * rid_pre > 0 (PostgreSQL): the version's row id, taken from the sequence ahead; its INSERT
 * is then queued (hv_db_step_later) like its index rows. */
int hv__store_put_pre(hv_db_t *db, const char *type, const char *id, int64_t version, uint64_t ms,
                      const char *text, size_t len, struct json_object *resource,
                      const struct hv__search_rows *ix_pre, const hv__store_pats_t *pats_pre, int64_t rid_pre);
/*
 * Calls cb for the live current resources in the compartment of Patient `patient`
 * (of `type` only, unless NULL), oldest first. Membership: the Patient itself and
 * every resource whose current version references Patient/patient (outside
 * contained resources) — a superset of the CompartmentDefinition's parameters.
 */
int hv__store_compartment(hv_db_t *db, const char *patient, const char *type, hv__store_row_cb cb, void *ud);

/*
 * The live resources of `type` whose Resource.identifier matches: system NULL
 * means any system, "" means no system. Fills up to max ids (each
 * HV__FHIR_ID_MAX bytes) and sets *n to how many matched (capped at max + 1, so a
 * caller can tell "more than max").
 */
int hv__store_find_identifier(hv_db_t *db, const char *type, const char *system,
                              const char *value, char (*ids)[HV__FHIR_ID_MAX], size_t max,
                              size_t *n);

/* History (FHIR R4 http.html#history): newest first. */
typedef struct hv__store_hist_q {
    const char *type;     /* NULL: system level */
    const char *id;       /* NULL: type or system level */
    int64_t since_ms;     /* -1: none; versions with lastUpdated >= since */
    int64_t at_ms;        /* -1: none; the versions current at that instant */
    int64_t before_rid;   /* paging cursor: only rows with rid < before_rid; 0: none */
    int64_t count;        /* page size */
} hv__store_hist_q_t;
/* Calls cb for up to q->count + 1 rows (the extra one tells that a next page exists). */
int hv__store_history(hv_db_t *db, const hv__store_hist_q_t *q, hv__store_row_cb cb, void *ud);
/* Calls cb for every live current resource of type (NULL: all types), oldest first. */
int hv__store_each_current(hv_db_t *db, const char *type, hv__store_row_cb cb, void *ud);

/* ---- helpers (fhir/store.c) ---- */

/* A new server-assigned id: a time-ordered UUID (RFC 9562 version 7), 36 characters. */
void hv__fhir_new_id(char out[HV__FHIR_ID_MAX]);
/* True when s is a valid FHIR id, [A-Za-z0-9\-\.]{1,64} (FHIR R4 datatypes.html#id). */
int hv__fhir_id_valid(const char *s);
/* Sets meta.versionId and meta.lastUpdated (and id) of a resource tree. */
int hv__fhir_set_meta(struct json_object *res, const char *id, int64_t version, uint64_t ms);
/* An instant as FHIR writes it: "2026-11-25T18:27:48.123Z". */
void hv__fhir_instant(uint64_t ms, char *out, size_t outlen);
/* Parses a FHIR date, dateTime or instant into ms since the epoch (UTC, missing parts low). */
int hv__fhir_parse_time(const char *s, int64_t *out_ms);

/* ---- patches (fhir/rest_patch.c) ---- */

/* Applies a JSON Patch (RFC 6902) document to res in place. HV_EINVAL with msg on failure;
 * *test_failed is set when a "test" operation did not hold. */
int hv__json_patch_apply(struct json_object *res, struct json_object *patch, int *test_failed,
                         char *msg, size_t msglen);
/* Applies a FHIRPath Patch (FHIR R4 fhirpatch.html, a Parameters resource) to res in place. */
int hv__fhirpath_patch_apply(struct json_object *res, struct json_object *params, char *msg,
                             size_t msglen);

/* ---- Bundles (fhir/rest_bundle.c) ---- */

typedef struct hv__bundle_job hv__bundle_job_t;
/*
 * Prepares a batch or transaction Bundle (owned by the job from here on). import
 * mode keeps the ids of POSTed resources that carry one (a Synthea bundle reads
 * back with its own ids). Client errors fill status, code and msg.
 */
int hv__bundle_prepare(struct json_object *bundle, int import, const char *prefer,
                       hv__bundle_job_t **out, int *status, char *msg, size_t msglen);
/* Runs it on db (inside the caller's transaction). Returns HV_OK or a negative status;
 * for a transaction, a failed entry makes it return HV_EINVAL (roll back). */
/*
 * On any thread, before hv__bundle_run (the import's reader thread, the REST
 * handler of POST /fhir on the loop thread; not the channel destination, whose
 * creates get derived ids): for a transaction whose
 * entries are all unconditional creates and updates and whose references need no
 * store lookup, fixes the ids, rewrites the references and computes every entry's
 * search-index rows (hv__search_index_rows), so that the writer only binds and
 * inserts them. Any other Bundle is left as it is (hv__bundle_run does all).
 */
int hv__bundle_precompute(hv__bundle_job_t *bj);
/* True when hv__bundle_precompute did the ids, references and index rows of bj. */
int hv__bundle_is_precomputed(const hv__bundle_job_t *bj);
int hv__bundle_run(hv_db_t *db, hv__bundle_job_t *bj);
/* The response: a Bundle (transaction-response/batch-response) or, for a failed
 * transaction, the OperationOutcome of the failing entry with its status. The tree is owned
 * by the caller. base is the server's base URL for fullUrl. */
struct json_object *hv__bundle_response(hv__bundle_job_t *bj, const char *base, int *status);
/* The same answer as JSON text in out (compact, as hv_fhir_json_write writes the tree) when
 * every entry succeeded and none carries a resource; HV_ENOTSUP otherwise (use the tree). */
int hv__bundle_response_text(hv__bundle_job_t *bj, const char *base, hv_buf_t *out);
/* The server's base URL for the fullUrls of search entries' results (default ""). */
void hv__bundle_set_base(hv__bundle_job_t *bj, const char *base);
/* How many entries the job wrote; the change events to emit. */
size_t hv__bundle_op_count(const hv__bundle_job_t *bj);
const hv__fop_t *hv__bundle_op_at(const hv__bundle_job_t *bj, size_t i);
/* Marks bj's unconditional updates absent (hv__fop_t): the caller knows none is stored. */
void hv__bundle_mark_absent(hv__bundle_job_t *bj);
void hv__bundle_job_free(hv__bundle_job_t *bj);

/*
 * Idempotent redelivery (fhir/channel_store.c). hv__fhir_derived_id makes a stable
 * id (a UUID, version 8) from a seed such as "channel:message-id" and an index.
 * hv__bundle_seed_ids gives every plain create of a transaction (POST without
 * ifNoneExist) the derived id of its entry index, so that the same message run
 * twice would create the same resources; hv__bundle_applied tells, before running,
 * whether the first of them exists already (a transaction is all or nothing, so
 * then it was applied). Batches are not seeded (returns 0, *applied 0).
 */
void hv__fhir_derived_id(const char *seed, size_t index, char out[HV__FHIR_ID_MAX]);
size_t hv__bundle_seed_ids(hv__bundle_job_t *bj, const char *seed);
int hv__bundle_applied(hv_db_t *db, const hv__bundle_job_t *bj, const char *seed, int *applied);
/* Entries that failed (a failed transaction counts 1) and the first one's status. */
size_t hv__bundle_failed_count(const hv__bundle_job_t *bj, int *first_status);
int hv__bundle_is_transaction(const hv__bundle_job_t *bj);
/* Merges (fhir/channel_store.c, for HL7 v2 A40): when on, a transaction that writes a Patient
 * with link.type "replaced-by" also re-points, in the same database transaction, every
 * current non-Patient resource that refers to it to the surviving Patient (a new version
 * each). hv__bundle_moved: how many the last run re-pointed. */
void hv__bundle_set_move_merged(hv__bundle_job_t *bj, int on);
size_t hv__bundle_moved(const hv__bundle_job_t *bj);

#endif /* HV_FHIR_STORE_INT_H */
