/*
 * audit_int.h — internals shared by the files of destinations/audit.
 *
 * Storage (module-owned tables, SQLite <data>/audit.db or PostgreSQL schema audit):
 *
 *   audit_event       seq (1, 2, 3 … no gaps), recorded (ms), action, subtype, outcome,
 *                     who, role, ip, patients ("p1,p2"), breakglass, content (the
 *                     AuditEvent JSON without its id), prev_hash, hash
 *   audit_patient     (seq, patient): who saw which patient's data, indexed by patient
 *   audit_block       (SQLite, migration 6 on: where new records go) one row per batch:
 *                     seq_first, seq_last, recorded_min/max, n, records (BLOB of records,
 *                     block.c), prev_hash, hash; audit_block_who and audit_block_patient
 *                     index the blocks by user and by patient. audit_event and
 *                     audit_patient keep the records written before (and PostgreSQL's).
 *   audit_checkpoint  seq, hash, signed_at, sig: an Ed25519 signature over
 *                     "holovitals-audit-checkpoint\n<seq>\n<hash>\n<signed_at>"
 *   audit_alert       id, created, rule, severity, who, ip, detail
 *   audit_journal_pos journal, jid: the highest journal id committed, per journal (journal.c)
 *   audit_archive     last_seq, first_seq, last_hash, archived_at, file, file_sha256: the
 *                     archives whose records were purged (append-only); the chain of the
 *                     table goes on from the newest one's last_hash
 *   audit_purge       (SQLite) the mark that lets the purge transaction's deletes through
 *
 * content is the compact record (event.c build_compact: {"v":2,…}); older records hold
 * the AuditEvent JSON itself. The AuditEvent is rendered from the row on read.
 *
 * hash = hex(SHA-256(prev_hash "\n" seq "\n" recorded "\n" action "\n" subtype "\n"
 *        outcome "\n" who "\n" role "\n" ip "\n" patients "\n" content)) — hash format 1
 * (text), for rows and blocks of formats 1 and 2 — or, for records in blocks of format 3
 * (written from session 8 on), SHA-256 over the fixed-width binary fields of
 * chain.c hv__audit_hash3 (hash format 3); the first record's prev_hash is 64 zeros. Altering any hashed column, deleting or inserting
 * a record breaks the chain; deleting the newest records is found by the latest
 * signed checkpoint.
 */
#ifndef HV_AUDIT_INT_H
#define HV_AUDIT_INT_H

#include "destinations/audit/audit.h"

#include <endian.h>
#include <string.h>

#include <openssl/evp.h>

/* Taken by every transaction that appends to the chain on PostgreSQL (module.c job_batch,
 * journal.c replay), so engines sharing a database append one at a time. */
#define HV__AUDIT_PG_LOCK "SELECT pg_advisory_xact_lock(4851537455616839681)"

#define HV__AUDIT_ZERO_HASH "0000000000000000000000000000000000000000000000000000000000000000"

/* The input a record's hash is taken over (hv__arec_t.hfmt): text (format 1; 0 is read as
 * 1) or binary (format 3: chain.c hv__audit_hash3). */
#define HV__HASH_TEXT 1
#define HV__HASH_BIN 3

/* One event on its way to the store. Strings live in arena. */
typedef struct hv__aev {
    struct hv__audit *a;
    hv_arena_t *arena;
    hv_http_req_t *req;  /* held until the record commits, or NULL */
    int64_t recorded;
    char action[2];
    const char *subtype, *who, *role, *ip, *client, *purpose, *breakglass, *etype, *eid, *query, *detail,
        *source;
    const char **patients;
    size_t np;
    hv_buf_t content; /* the AuditEvent JSON (without id) */
    const char *patients_csv;
    int outcome;
    int64_t seq; /* set by the storage job */
    int64_t jid; /* its audit journal id (journal.c), 0 when not journaled */
    struct hv__aev *next; /* in a batch */
    /* Called once the record committed (status HV_OK) or failed, on the loop thread,
     * instead of releasing req; it frees ev. NULL: the default (release req, free). */
    void (*on_done)(struct hv__aev *ev, int status);
    void *done_ud;
    /* A run (record.c, module.c): run_n journal frames (HVJ3) from run_first up to run_end,
     * written by the loop thread with no event of their own (jid is the last one's); the
     * storage job decodes them into events (module.c expand_runs). 0 for an event. */
    const unsigned char *run_first, *run_end;
    size_t run_n;
    /* Decoded from an HVJ3 frame (journal.c decode_src): the frame's bytes from break-glass
     * to source, which the stored content is made of. */
    const unsigned char *cspan;
    size_t cspan_len;
} hv__aev_t;

/* The facts of one record as the loop thread has them (record.c), in the order of an
 * HVJ3 journal frame: s[i] points at l[i] bytes, valid during the call that writes them. */
#define HV__REC_NSTR 14
enum { HV__REC_ACTION, HV__REC_SUBTYPE, HV__REC_WHO, HV__REC_ROLE, HV__REC_IP, HV__REC_PATIENTS,
       HV__REC_BREAKGLASS, HV__REC_ETYPE, HV__REC_EID, HV__REC_CLIENT, HV__REC_PURPOSE, HV__REC_QUERY,
       HV__REC_DETAIL, HV__REC_SOURCE };
typedef struct hv__arec_src {
    const char *s[HV__REC_NSTR];
    size_t l[HV__REC_NSTR];
    int64_t recorded;
    int outcome;
} hv__arec_src_t;

/* Alert rule settings and their sliding-window state (alerts.c). */
typedef struct hv__alert_cfg {
    int64_t failed_logins;       /* N failures per account or per IP … */
    uint64_t failed_window_ms;   /* … within this window; 0 N disables */
    int64_t patients;            /* N distinct patients read by one user … */
    uint64_t patients_window_ms; /* … within this window */
    int hours_from, hours_to;    /* allowed access hours, minutes of the UTC day; -1 off */
    int new_ip;                  /* alert when a user logs in from an address not seen before */
} hv__alert_cfg_t;

typedef struct hv__alert_state hv__alert_state_t;

#define HV__CONSENT_STR 64
#define HV__CONSENT_LIST 8   /* actors, purposes, classes kept per provision */
#define HV__CONSENT_NESTED 8 /* nested provisions kept per Consent */

/* One provision (R4 Consent.provision): lists empty = any. */
typedef struct hv__consent_rule {
    int deny;
    int nactors, npurposes, nclasses;
    char actors[HV__CONSENT_LIST][HV__CONSENT_STR];
    char purposes[HV__CONSENT_LIST][HV__CONSENT_STR];
    char classes[HV__CONSENT_LIST][HV__CONSENT_STR];
    int64_t start, end; /* 0 / INT64_MAX when open */
} hv__consent_rule_t;

struct hv__consent {
    char id[65];
    char patient[65];
    hv__consent_rule_t top;
    hv__consent_rule_t nested[HV__CONSENT_NESTED];
    int nnested;
};
typedef struct hv__consent hv__consent_t;

typedef struct hv__journal hv__journal_t;

typedef struct hv__audit {
    hv_engine_t *e;
    hv_storage_t *storage;
    EVP_PKEY *key;
    int64_t checkpoint_every;
    int64_t max_page;
    size_t dest_max;
    hv__alert_cfg_t alert_cfg;
    hv__alert_state_t *alerts;
    int64_t retention_audit_days, retention_access_days, retention_alert_days, hot_days;
    hv_counter_t *m_events, *m_failed, *m_busy;
    hv_metrics_t *metrics;
    int64_t alert_seq; /* the last alert id handed out (loop thread) */
    int verify_failed;  /* the last verification found a problem */
    /* Module-level group commit: events wait in pending while one batch is being written. */
    hv__aev_t *pending, *pending_tail;
    size_t npending, queue_max, batch_max;
    /* audit.synchronous NORMAL/OFF: answers leave once their record is in the journal
     * (journal.c); FULL: once their record's batch has committed (journal NULL). */
    hv__journal_t *journal;
    /* Write requests admitted with a reserved queue slot whose event is not yet
     * submitted (module.c admit hook): a write never runs when its record could be
     * refused afterwards. */
    size_t reserved;
    /* Journaled events need no prompt commit: they wait up to audit.flush_interval (or
     * until a batch is full) so that one transaction takes many; held ones (nheld) go at
     * once. */
    uv_timer_t flush_timer;
    uint64_t flush_ms;
    size_t nheld;
    int flush_timer_on, handles_closing;
    int inflight;
    /* Periodic verification (module.c): a timer walks the chain since the last good check. */
    uv_timer_t verify_timer;
    uint64_t verify_interval_ms;
    int timer_on, timer_closing, free_on_close, verifying;
    int64_t verified_since; /* records before this time were found intact */
    hv__consent_t **consents; /* the active Consents (consent.c), loop thread */
    size_t nconsents, max_consents;
    /* The FHIR store as the source of Consents (consent.c): the fhir module's storage
     * (NULL once stopping), the newest Consent version installed, the refresh timer. */
    hv_storage_t *fhir_storage;
    int64_t consent_rid;
    uint64_t consent_refresh_ms;
    uv_timer_t consent_timer;
    int consent_timer_on, consent_reloading, consent_again;
    /* Answers to writes that changed a Consent, held until the registry has it (so the
     * next request of the client is judged by it). */
    hv_http_req_t *consent_waiters[64];
    size_t nconsent_waiters;
    /* Events kept for reuse (event.c hv__aev_give), loop thread. */
    struct hv__aev *spare;
    size_t nspare;
    /* The patient scan's cache per read path (record.c), loop thread. */
    struct hv__scan_cache *scan_cache;
} hv__audit_t;

/* event.c: the AuditEvent, the FHIR request classifier, the patient scanner, POST /audit/log */
hv__aev_t *hv__aev_new(hv__audit_t *a);
void hv__aev_free(hv__aev_t *ev);
/* Loop thread only: an event from the module's spares (or a new one), and back to them. */
hv__aev_t *hv__aev_take(hv__audit_t *a);
void hv__aev_give(hv__aev_t *ev);
void hv__aev_spare_free(hv__audit_t *a);
/* Fills ev from an engine event (who from the request's principal when there is one) and
 * builds its stored content (the compact form, event.c build_compact). */
int hv__aev_fill(hv__aev_t *ev, const hv_audit_event_t *in);
/* Builds ev's stored content (the compact form) from its members. */
int hv__aev_build_content(hv__aev_t *ev);
/* The same bytes, written into ev's arena: ev->content points there (cap 0: never
 * released or appended to). */
int hv__aev_content_arena(hv__aev_t *ev);
/* 1 when a stored content is the compact form ({"v":2…}), 0 for the AuditEvent JSON of
 * older records. */
int hv__aev_compact(const char *content, size_t len);
/* Fills ev from a stored row whose content is compact (strings copied into its arena). */
int hv__aev_load(hv__aev_t *ev, int64_t recorded, const char *action, const char *subtype, int outcome,
                 const char *who, const char *role, const char *ip, const char *patients_csv, const char *content,
                 size_t clen);
/* Appends the FHIR R4 AuditEvent (BALP) of ev, without id, to out. */
int hv__aev_render(const hv__aev_t *ev, hv_buf_t *out);
/* The REST interaction of a FHIR request: action, subtype, resource type and id ("" when
 * none). Returns 0 when the request is not audited (capability statement, OPTIONS). */
int hv__audit_classify(int method, const char *path, char *action, const char **subtype, char *type,
                       size_t typelen, char *id, size_t idlen);
/* Appends to ids (deduplicated, at most max) the patient ids that text refers to:
 * "reference": "…Patient/ID" (JSON), reference value="…Patient/ID" (XML), and the id of
 * every resource whose resourceType is Patient. Returns how many it found in all
 * (possibly more than max). ids are allocated in arena. */
size_t hv__audit_scan_patients(const char *text, size_t len, hv_arena_t *arena, const char **ids, size_t *n,
                               size_t max);
/* record.c: hv__audit_scan_patients through a cache of the last body answered per request
 * path (a copy, compared whole): the same ids, order and cap as scanning text after what
 * ids holds. The ids it adds are not copied: they stay valid as long as arena and until
 * the next call (a cache entry's ids are replaced only by a later scan). Loop thread. */
int hv__audit_scan_cached(hv__audit_t *a, const char *path, const char *text, size_t len, hv_arena_t *arena,
                          const char **ids, size_t *n, size_t max);
void hv__audit_scan_cache_free(hv__audit_t *a);
/* The facts hv__aev_fill would give ev for in (same members, caps and patients), as
 * pointers into in and its request, without copies (csv of the patients in arena). */
int hv__audit_rec_gather(const hv_audit_event_t *in, hv_arena_t *arena, hv__arec_src_t *out);
/* Records in (a FHIR REST interaction with its request) straight into the journal as an
 * HVJ3 frame, with no event object: HV_OK once it is journaled and queued; HV_ENOTSUP
 * when it must take the event path (no journal, queue full, journal full, too big). */
int hv__audit_record_fast(hv__audit_t *a, const hv_audit_event_t *in, int reserved);
void hv__audit_scan_cache_stats(const hv__audit_t *a, uint64_t *hits, uint64_t *misses);
/* Parses and validates a POST /audit/log body into an engine event (strings in arena). */
int hv__audit_parse_post(const char *body, size_t len, hv_arena_t *arena, hv_audit_event_t *out,
                         const char **source, hv_error_t *err);
/* hex(base64) helpers */
int hv__audit_b64(const char *s, size_t n, hv_buf_t *out);

/* chain.c: hashing, the append job, checkpoints, verification, archives */
void hv__audit_hash(const char *prev, int64_t seq, int64_t recorded, const char *action, const char *subtype,
                    int outcome, const char *who, const char *role, const char *ip, const char *patients,
                    const char *content, size_t clen, char out[65]);
/* The same, with the digest's 32 bytes also in bin. */
void hv__audit_hash_bin(const char *prev, int64_t seq, int64_t recorded, const char *action, const char *subtype,
                        int outcome, const char *who, const char *role, const char *ip, const char *patients,
                        const char *content, size_t clen, char out[65], unsigned char bin[32]);
/* Hash format 3: SHA-256 of the binary input (see chain.c) of a record whose strings are
 * s[0..5] = subtype, who, role, ip, patients, content with lengths l, after prev (32 bytes). */
void hv__audit_hash3(const unsigned char prev[32], int64_t seq, int64_t recorded, int outcome, char action,
                     const char *const s[6], const size_t l[6], unsigned char out[32]);
/* The hash (hex) of a record in hash format hfmt (HV__HASH_TEXT or HV__HASH_BIN), prev as
 * hex; for HV__HASH_BIN a prev that is not 64 hex digits or an action that is not one
 * letter gives a hash that matches nothing. */
void hv__audit_hash_fmt(int hfmt, const char *prev, int64_t seq, int64_t recorded, const char *action,
                        const char *subtype, int outcome, const char *who, const char *role, const char *ip,
                        const char *patients, const char *content, size_t clen, char out[65]);
/* 64 lower-case hex digits (then NUL) to 32 bytes: 1, or 0 for anything else. */
int hv__audit_unhex32(const char *hex, unsigned char out[32]);
const char *const *hv__audit_migrations(hv_db_t *db);
/* Storage job: appends ev (arg) to the chain (reads the tail, then appends). */
int hv__audit_append_job(hv_db_t *db, void *arg);
/* The chain's tail: the last hash (zeros when empty) and the next sequence number. */
int hv__audit_tail(hv_db_t *db, char prev[65], int64_t *next_seq);
/* Appends ev after prev/next_seq and advances them. Storage thread. */
int hv__audit_append(hv_db_t *db, hv__aev_t *ev, char prev[65], int64_t *next_seq);
/* Appends the records of a list (by ->next) in order, as hv__audit_append does one by one,
 * in multi-row INSERTs where the list is long enough. */
int hv__audit_append_list(hv_db_t *db, hv__aev_t *head, char prev[65], int64_t *next_seq);
/* Loads (or creates, when create is set) the Ed25519 key under the data directory. */
int hv__audit_key_load(const char *data_dir, int create, EVP_PKEY **out, hv_error_t *err);
/* Signs or checks a checkpoint. */
int hv__audit_sign(EVP_PKEY *key, int64_t seq, const char *hash, int64_t signed_at, char *sig_hex, size_t siglen);
int hv__audit_sig_ok(EVP_PKEY *key, int64_t seq, const char *hash, int64_t signed_at, const char *sig_hex);
/* Walks the chain of db from the first record recorded at or after since_ms (0: all). */
int hv__audit_verify_db(hv_db_t *db, EVP_PKEY *key, int64_t since_ms, hv_audit_verify_t *out);
/* What an archive holds. */
typedef struct hv__audit_archived {
    int64_t n, first_seq, last_seq;
    char last_hash[65];
} hv__audit_archived_t;
/* Writes the oldest records of the store, in chain order up to the first one recorded at
 * or after before_ms, to a gzip'd NDJSON archive at path. */
int hv__audit_archive(hv_db_t *db, EVP_PKEY *key, int64_t before_ms, const char *path, hv__audit_archived_t *res,
                      hv_error_t *err);
/* The last record archived and purged (0 and zeros when none). */
int hv__audit_archived_tail(hv_db_t *db, int64_t *upto, char hash[65]);
/* Verifies the archive at path and removes its records from the store (see chain.c). */
int hv__audit_purge(hv_db_t *db, EVP_PKEY *key, const char *path, const hv__audit_archived_t *ar, int64_t cutoff_ms,
                    int64_t *purged, hv_error_t *err);
int hv__audit_verify_archive(const char *path, EVP_PKEY *key, hv_audit_verify_t *out, hv_error_t *err);

/* journal.c: the crash-safe journal in front of the store */
int hv__journal_open(const char *data_dir, hv__journal_t **out, hv_error_t *err);
void hv__journal_close(hv__journal_t *j);
/* Appends ev's record (assigns ev->jid); once it returns HV_OK the record survives a crash
 * of the process. Loop thread. */
int hv__journal_write(hv__journal_t *j, hv__aev_t *ev);
/* A batch committed every record up to jid: drops journal files that hold nothing newer. */
void hv__journal_committed(hv__journal_t *j, int64_t jid);
/* At start, before the storage thread: appends to the chain every journal record the
 * store has not committed (one transaction), then empties the journal. */
int hv__journal_replay(hv__journal_t *j, hv__audit_t *a, hv_db_t *db, int64_t *replayed);
/* The highest journal id committed (table audit_journal_pos), and raising it (in the
 * batch's transaction). */
int hv__journal_pos(hv_db_t *db, const char *name, int64_t *jid);
int hv__journal_set_pos(hv_db_t *db, const char *name, int64_t jid);
const char *hv__journal_name(const hv__journal_t *j);
/* One frame: encode appends to out; decode reads one frame of data into ev (strings in
 * its arena) and sets *used, or returns HV_EPROTO for a short or corrupt frame. */
int hv__journal_encode(const hv__aev_t *ev, uint64_t gen, hv_buf_t *out);
int hv__journal_decode(const char *data, size_t len, uint64_t gen, size_t *used, hv__aev_t *ev);
/* Appends an HVJ3 frame of r (assigns *jid; *frame, *flen: where it is in the mapped file,
 * valid until its jid has committed). Loop thread. */
int hv__journal_write_src(hv__journal_t *j, const hv__arec_src_t *r, int64_t *jid, const unsigned char **frame,
                          size_t *flen);
/* The HVJ3 frame of r (jid, generation gen) appended to out (tests, the fuzz target). */
int hv__journal_encode_src(const hv__arec_src_t *r, int64_t jid, uint64_t gen, hv_buf_t *out);
/* Decodes an HVJ3 frame this process wrote (hv__journal_write_src) into ev with its
 * stored content: ev's strings point into the frame, which must outlive ev (a copy in
 * ev's arena: module.c expand_runs), and its content is in ev's arena (not to be
 * released). like, when not NULL, is the record decoded just before from the same copy
 * (same arena): a content and a patient list equal to its are shared, not built again.
 * Storage thread. */
int hv__journal_decode_own(const unsigned char *frame, size_t *used, hv__aev_t *ev, const hv__aev_t *like);


/* block.c: the trail in blocks (SQLite, migration 6); see block.c for the format. */
#define HV__BLOCK_MAX_RECORDS 1024
#define HV__BLOCK_MAX_BYTES (1024u * 1024)

/* One record of a block as read back: strings point into the block (NUL-terminated),
 * valid until the reader's callback returns. */
typedef struct hv__arec {
    int64_t seq, recorded;
    int outcome, breakglass;
    int hfmt; /* HV__HASH_TEXT or HV__HASH_BIN: the input of its hash (block format 3: binary) */
    char action[2];
    const char *subtype, *who, *role, *ip, *patients, *content;
    size_t clen;
    char prev[65], hash[65]; /* the hash of the record before it, its own */
    /* the block that holds it */
    int64_t block_first, block_last, block_recorded_max;
    char block_hash[65];
    int last_in_block;
} hv__arec_t;

/* Which records a block scan hands out: seq in [seq_ge, seq_lt) and recorded in [from, to);
 * who and patient ("" or NULL: any) select blocks through their indexes only — the
 * callback checks each record. desc: newest first. on_damaged (verify): called with the
 * first sequence number of a block that does not decode and how many of its records did
 * (they were handed out first); without it such blocks are skipped. Callbacks return 1 to
 * stop. */
typedef struct hv__ascan {
    int64_t seq_ge, seq_lt, from, to;
    const char *who, *patient;
    int desc;
    int (*on_damaged)(int64_t block_first, size_t ngood, void *ud);
} hv__ascan_t;

void hv__audit_scan_init(hv__ascan_t *f);
/* Reading a block's records in order, either format (block.c): strings of the record the
 * last hv__audit_block_next gave point into the block (NUL-terminated) and stay valid as
 * long as the block does. */
typedef struct hv__ablock_rd {
    const unsigned char *p, *end;
    int fmt; /* 1, 2 or 3 */
    size_t n; /* records read */
    int64_t seq, recorded;
    const char *s[6];
    size_t l[6];
} hv__ablock_rd_t;
void hv__audit_block_rd_init(hv__ablock_rd_t *rd, const void *data, size_t len);
/* The next record into r (its hash as hex; prev and the block members untouched): HV_OK,
 * HV_ENOTFOUND after the last one, HV_EPROTO when the block does not decode from here. */
int hv__audit_block_next(hv__ablock_rd_t *rd, hv__arec_t *r);
/* Writing a block (format 2): the records in sequence order, each coded against the one
 * before, so the strings of the record put last must stay valid until the next put. */
typedef struct hv__ablock_wr {
    size_t n;
    int hfmt; /* the hash format of its records (the first put's): format 2 or 3 */
    int64_t seq, recorded;
    const char *s[6];
    size_t l[6];
} hv__ablock_wr_t;
void hv__audit_block_wr_init(hv__ablock_wr_t *w);
/* Appends r (seq, recorded, outcome, action, breakglass, the six strings with clen, hash
 * as 64 hex digits) to the block being built in out; the first put writes the format's
 * magic: "HVB3" when r->hfmt is HV__HASH_BIN, else "HVB2" (the record format is the same,
 * the magic says which input the hashes are over); bin, when not NULL, is the hash's 32
 * bytes (then r->hash is not read). HV_EINVAL (nothing written) for a bad action or hash,
 * or a record whose hash format differs from the block's. */
int hv__audit_block_put(hv_buf_t *out, hv__ablock_wr_t *w, const hv__arec_t *r, const unsigned char *bin);
/* 1 when db stores new records in blocks (SQLite), 0 for rows (PostgreSQL). */
int hv__audit_has_blocks(hv_db_t *db);
/* One record in format 1 (blocks written before session 7; new blocks are format 2). */
int hv__audit_block_encode(hv_buf_t *out, int64_t seq, const hv__aev_t *ev, const char hash[65]);
int hv__audit_block_decode(const unsigned char *data, size_t len, size_t *used, hv__arec_t *r);
/* Appends the records of a list (by ->next) in order as blocks, with their who/patient
 * index rows and the signed checkpoints due; sets each ev->seq and advances prev/next_seq. */
int hv__audit_append_blocks(hv_db_t *db, hv__aev_t *head, char prev[65], int64_t *next_seq);
int hv__audit_block_scan(hv_db_t *db, const hv__ascan_t *f, int (*cb)(const hv__arec_t *r, void *ud), void *ud);
/* The record seq of the blocks (HV_ENOTFOUND when no block holds it). */
int hv__audit_block_record(hv_db_t *db, int64_t seq, hv__arec_t *out);
/* The newest block's last hash and the next sequence number (HV_ENOTFOUND: no blocks). */
/* Reads the chain's end from sql's one row (last seq, its hash): prev and *next_seq set;
 * HV_ENOTFOUND when the statement has no row (chain.c). */
int hv__audit_read_tail(hv_db_t *db, const char *sql, char prev[65], int64_t *next_seq);
int hv__audit_block_tail(hv_db_t *db, char prev[65], int64_t *next_seq);

/* alerts.c */
hv__alert_state_t *hv__alert_state_new(void);
void hv__alert_state_free(hv__alert_state_t *s);
/* The window slots allocated so far (for tests: slots are allocated at first use). */
size_t hv__alert_state_slots(const hv__alert_state_t *s);
/* Runs the rules over one committed event (loop thread). */
void hv__alerts_observe(hv__audit_t *a, const hv__aev_t *ev);
/* Stores, counts and publishes one alert (loop thread). */
void hv__alert_raise(hv__audit_t *a, const char *rule, const char *severity, const char *who, const char *ip,
                     const char *detail);
/* Parses "07:00-19:00" into minutes; "" gives -1/-1. */
int hv__alert_parse_hours(const char *s, int *from, int *to);

/* consent.c */
/* Parses a Consent: HV_OK for an active one, HV_ENOTFOUND (id and patient set) for one that
 * is not active, HV_EINVAL/HV_EPROTO when it cannot be read. */
int hv__consent_parse(const char *text, size_t len, hv__consent_t *out);
/* 1 when c denies user (purpose, resource type) at now. */
int hv__consent_denies(const hv__consent_t *c, const char *user, const char *purpose, const char *type, int64_t now);
int hv__consent_load(hv__audit_t *a, hv_db_t *db);
void hv__consent_free(hv__audit_t *a);
/* A FHIR write of a Consent was answered: update the registry. */
void hv__consent_observe(hv__audit_t *a, int method, const char *id, int status, const char *resp, size_t rlen,
                         const char *reqbody, size_t qlen);
/* The engine's consent filter for channel destinations with a purpose (hv_consent_set_filter). */
int hv__consent_filter(void *ud, const char *purpose, const char *content, size_t len, const char *content_type);
int hv__consent_has(const hv__audit_t *a, const char *patient);
/* Reads the active Consents from the FHIR store when it runs in this process (start), and
 * keeps following it (every write path, other processes). */
int hv__consent_store_start(hv__audit_t *a);
/* Rebuilds the registry from the store (force), or when the newest Consent changed. */
void hv__consent_reload(hv__audit_t *a, int force);
/* From the respond hook: a write is answered while a Consent reload it caused runs; its
 * answer waits for it. */
void hv__consent_hold_answer(hv__audit_t *a, hv_http_req_t *req);
/*
 * Enforces consent on a read or search answer about to leave (respond hook): returns 0
 * when it goes as it is (nothing denied, or break-glass — then with an alert), 1 when
 * it was replaced by 403, 2 when a searchset was replaced without the denied entries,
 * -1 when the replacement could not be made. detail is set for the AuditEvent.
 */
int hv__consent_enforce(hv__audit_t *a, hv_http_req_t *req, const char *user, const char *type, const char *body,
                        size_t len, const char **ids, size_t *n, const char **detail);
int hv__consent_patient_denied(const hv__audit_t *a, const char *patient, const char *user, const char *purpose,
                               const char *type, int64_t now);

/* api.c */
int hv__audit_routes(hv__audit_t *a, hv_router_t *r);

/* module.c: submits one event (loop thread); takes ev. reserved: its queue slot was
 * reserved at admission (a write), so it is never refused. */
int hv__audit_submit(hv__audit_t *a, hv__aev_t *ev, int reserved);
/* Queues a journaled HVJ3 frame (record.c); HV_ENOMEM when no run could be started. */
int hv__audit_submit_frame(hv__audit_t *a, int64_t jid, const unsigned char *frame, size_t flen);
/* Submits every pending record now, ahead of a query of the store (loop thread). */
void hv__audit_sync(hv__audit_t *a);

/* Little-endian integers of the journal frames and the block records (journal.c, block.c),
 * each one load or store (memcpy) whatever the host's byte order. */
static inline void hv__audit_put32(unsigned char *p, uint32_t v) {
    v = htole32(v);
    memcpy(p, &v, 4);
}

static inline void hv__audit_put64(unsigned char *p, uint64_t v) {
    v = htole64(v);
    memcpy(p, &v, 8);
}

static inline uint32_t hv__audit_get32(const unsigned char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return le32toh(v);
}

static inline uint64_t hv__audit_get64(const unsigned char *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return le64toh(v);
}

#endif /* HV_AUDIT_INT_H */
