/*
 * chain.c — the tamper-evident store: the append-only hash chain of AuditEvents,
 * Ed25519-signed checkpoints (RFC 8032, through OpenSSL EVP), verification of the
 * chain in the database and in archives, and the gzip'd NDJSON archive format.
 *
 * Archive format (one JSON object per line, gzip, RFC 1952):
 *   line 1     {"archive":"holovitals-audit","version":1,"first_seq":N,"prev_hash":"…"}
 *   lines 2…   {"seq":…,"prev_hash":…,"hash":…,"recorded":…,"action":…,"subtype":…,
 *               "outcome":…,"who":…,"role":…,"ip":…,"patients":…,"content":"<AuditEvent JSON text>"
 *               [,"hash_format":3]} — hash_format 3: the record's hash is over the binary
 *              input (hv__audit_hash3; records from blocks of format 3), absent: over the
 *              text input (hv__audit_hash; rows and blocks of formats 1 and 2)
 *   last line  {"checkpoint":{"seq":…,"hash":…,"signed_at":…,"sig":"…"}} signed with the
 *              engine's audit key, so an archive is verifiable offline with that key alone.
 */
#include "config.h"
/* The chain's per-record hash uses OpenSSL's SHA256_Init/Update/Final (deprecated in
 * OpenSSL 3, not removed): the same SHA-NI/AVX code as EVP, without EVP's provider dispatch,
 * which on a ~250-byte record cost 0.36 µs against 0.25 µs (bench on this machine's SHA-NI,
 * thread CPU time, 10^6 digests). */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include "destinations/audit/audit_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <json-c/json.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

/* SQLite: append-only enforced by triggers; PostgreSQL: by rules that drop UPDATE and DELETE.
 * (Someone with the database file can remove them: that is what the hash chain is for.) */
static const char *const migrations_sqlite[] = {
    "CREATE TABLE audit_event (seq BIGINT PRIMARY KEY, recorded BIGINT NOT NULL, action TEXT NOT NULL,"
    " subtype TEXT NOT NULL, outcome INTEGER NOT NULL, who TEXT NOT NULL, role TEXT NOT NULL, ip TEXT NOT NULL,"
    " patients TEXT NOT NULL, breakglass INTEGER NOT NULL, content TEXT NOT NULL, prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL);"
    "CREATE INDEX audit_event_who ON audit_event (who, seq);"
    "CREATE INDEX audit_event_recorded ON audit_event (recorded);"
    "CREATE TABLE audit_patient (patient TEXT NOT NULL, seq BIGINT NOT NULL);"
    "CREATE INDEX audit_patient_p ON audit_patient (patient, seq);"
    "CREATE TABLE audit_checkpoint (seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, signed_at BIGINT NOT NULL,"
    " sig TEXT NOT NULL);"
    "CREATE TABLE audit_alert (id BIGINT PRIMARY KEY, created BIGINT NOT NULL, rule TEXT NOT NULL,"
    " severity TEXT NOT NULL, who TEXT NOT NULL, ip TEXT NOT NULL, detail TEXT NOT NULL);"
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event"
    " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;"
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event"
    " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    "CREATE TABLE audit_consent (id TEXT PRIMARY KEY, body TEXT NOT NULL);",
    "CREATE TABLE audit_journal_pos (journal TEXT PRIMARY KEY, jid BIGINT NOT NULL);",
    /* Retention: the purge path (hv__audit_purge) is the only delete the trigger lets
     * through — rows up to the mark its own transaction puts in audit_purge. */
    "CREATE TABLE audit_archive (last_seq BIGINT PRIMARY KEY, first_seq BIGINT NOT NULL, last_hash TEXT NOT NULL,"
    " archived_at BIGINT NOT NULL, file TEXT NOT NULL, file_sha256 TEXT NOT NULL);"
    "CREATE TABLE audit_purge (upto BIGINT NOT NULL);"
    "DROP TRIGGER audit_event_no_delete;"
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event"
    " WHEN OLD.seq > COALESCE((SELECT MAX(upto) FROM audit_purge), 0)"
    " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;"
    "CREATE TRIGGER audit_archive_no_update BEFORE UPDATE ON audit_archive"
    " BEGIN SELECT RAISE(ABORT, 'the archive register is append-only'); END;"
    "CREATE TRIGGER audit_archive_no_delete BEFORE DELETE ON audit_archive"
    " BEGIN SELECT RAISE(ABORT, 'the archive register is append-only'); END;",
    /* Fewer B-trees per record (session 4): seq becomes the table's rowid (INTEGER PRIMARY
     * KEY; a BIGINT PRIMARY KEY is a separate unique index in SQLite), and the access log
     * one WITHOUT ROWID tree keyed (patient, seq) instead of a table and its index. Rows
     * are copied as they are, so the chain verifies unchanged; the queries' plans keep
     * their keys (seq, (who, seq), recorded, (patient, seq)). */
    "DROP TRIGGER audit_event_no_update;"
    "DROP TRIGGER audit_event_no_delete;"
    "CREATE TABLE audit_event_v5 (seq INTEGER PRIMARY KEY, recorded BIGINT NOT NULL, action TEXT NOT NULL,"
    " subtype TEXT NOT NULL, outcome INTEGER NOT NULL, who TEXT NOT NULL, role TEXT NOT NULL, ip TEXT NOT NULL,"
    " patients TEXT NOT NULL, breakglass INTEGER NOT NULL, content TEXT NOT NULL, prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL);"
    "INSERT INTO audit_event_v5 SELECT seq, recorded, action, subtype, outcome, who, role, ip, patients, breakglass,"
    " content, prev_hash, hash FROM audit_event ORDER BY seq;"
    "DROP TABLE audit_event;"
    "ALTER TABLE audit_event_v5 RENAME TO audit_event;"
    "CREATE INDEX audit_event_who ON audit_event (who, seq);"
    "CREATE INDEX audit_event_recorded ON audit_event (recorded);"
    "CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event"
    " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;"
    "CREATE TRIGGER audit_event_no_delete BEFORE DELETE ON audit_event"
    " WHEN OLD.seq > COALESCE((SELECT MAX(upto) FROM audit_purge), 0)"
    " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;"
    "CREATE TABLE audit_patient_v5 (patient TEXT NOT NULL, seq BIGINT NOT NULL, PRIMARY KEY (patient, seq))"
    " WITHOUT ROWID;"
    "INSERT OR IGNORE INTO audit_patient_v5 SELECT patient, seq FROM audit_patient;"
    "DROP TABLE audit_patient;"
    "ALTER TABLE audit_patient_v5 RENAME TO audit_patient;",
    /* Blocks (session 5, block.c): new records are appended one block per batch — one
     * row, one row per (block, who) and per (block, patient) — instead of a row, two index
     * entries and an access-log row per record. The rows written before stay as they are
     * (the chain runs on from the last of them into the first block). */
    "CREATE TABLE audit_block (seq_first INTEGER PRIMARY KEY, seq_last BIGINT NOT NULL, recorded_min BIGINT NOT NULL,"
    " recorded_max BIGINT NOT NULL, n INTEGER NOT NULL, records BLOB NOT NULL, prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL);"
    "CREATE INDEX audit_block_recorded ON audit_block (recorded_max);"
    "CREATE TABLE audit_block_who (who TEXT NOT NULL, seq_first BIGINT NOT NULL, PRIMARY KEY (who, seq_first))"
    " WITHOUT ROWID;"
    "CREATE TABLE audit_block_patient (patient TEXT NOT NULL, seq_first BIGINT NOT NULL,"
    " PRIMARY KEY (patient, seq_first)) WITHOUT ROWID;"
    "CREATE TRIGGER audit_block_no_update BEFORE UPDATE ON audit_block"
    " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;"
    "CREATE TRIGGER audit_block_no_delete BEFORE DELETE ON audit_block"
    " WHEN OLD.seq_last > COALESCE((SELECT MAX(upto) FROM audit_purge), 0)"
    " BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;",
    NULL,
};

static const char *const migrations_pg[] = {
    "CREATE TABLE audit_event (seq BIGINT PRIMARY KEY, recorded BIGINT NOT NULL, action TEXT NOT NULL,"
    " subtype TEXT NOT NULL, outcome INTEGER NOT NULL, who TEXT NOT NULL, role TEXT NOT NULL, ip TEXT NOT NULL,"
    " patients TEXT NOT NULL, breakglass INTEGER NOT NULL, content TEXT NOT NULL, prev_hash TEXT NOT NULL,"
    " hash TEXT NOT NULL);"
    "CREATE INDEX audit_event_who ON audit_event (who, seq);"
    "CREATE INDEX audit_event_recorded ON audit_event (recorded);"
    "CREATE TABLE audit_patient (patient TEXT NOT NULL, seq BIGINT NOT NULL);"
    "CREATE INDEX audit_patient_p ON audit_patient (patient, seq);"
    "CREATE TABLE audit_checkpoint (seq BIGINT PRIMARY KEY, hash TEXT NOT NULL, signed_at BIGINT NOT NULL,"
    " sig TEXT NOT NULL);"
    "CREATE TABLE audit_alert (id BIGINT PRIMARY KEY, created BIGINT NOT NULL, rule TEXT NOT NULL,"
    " severity TEXT NOT NULL, who TEXT NOT NULL, ip TEXT NOT NULL, detail TEXT NOT NULL);"
    "CREATE RULE audit_event_no_update AS ON UPDATE TO audit_event DO INSTEAD NOTHING;"
    "CREATE RULE audit_event_no_delete AS ON DELETE TO audit_event DO INSTEAD NOTHING;",
    "CREATE TABLE audit_consent (id TEXT PRIMARY KEY, body TEXT NOT NULL);",
    "CREATE TABLE audit_journal_pos (journal TEXT PRIMARY KEY, jid BIGINT NOT NULL);",
    /* Retention: deletes go through only in a transaction that set the session flag
     * holovitals.audit_purge (SET LOCAL, hv__audit_purge). */
    "CREATE TABLE audit_archive (last_seq BIGINT PRIMARY KEY, first_seq BIGINT NOT NULL, last_hash TEXT NOT NULL,"
    " archived_at BIGINT NOT NULL, file TEXT NOT NULL, file_sha256 TEXT NOT NULL);"
    "DROP RULE audit_event_no_delete ON audit_event;"
    "CREATE RULE audit_event_no_delete AS ON DELETE TO audit_event"
    " WHERE current_setting('holovitals.audit_purge', true) IS DISTINCT FROM 'on' DO INSTEAD NOTHING;"
    "CREATE RULE audit_archive_no_update AS ON UPDATE TO audit_archive DO INSTEAD NOTHING;"
    "CREATE RULE audit_archive_no_delete AS ON DELETE TO audit_archive DO INSTEAD NOTHING;",
    NULL,
};

static const char *col(hv_db_stmt_t *st, int i);

const char *const *hv__audit_migrations(hv_db_t *db) {
    return hv_db_kind(db) == HV_DB_PG ? migrations_pg : migrations_sqlite;
}

/* SHA-256 fetched once: OpenSSL 3 looks the algorithm up in its providers on every
 * EVP_sha256() init otherwise, which was a tenth of the cost of appending a record. */
static EVP_MD *sha256_md;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

/* The fallback of hv__audit_hash (a record of more than 2 KiB): one EVP context per call. */
static void sha256_fetch(void) { sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL); }

/* Appends n bytes to a bounded buffer; 0 when they do not fit. */
static int put(unsigned char *buf, size_t cap, size_t *len, const void *p, size_t n) {
    if (n > cap - *len) return 0;
    memcpy(buf + *len, p, n);
    *len += n;
    return 1;
}

/* Writes v in decimal (with a '-' when negative) to out; returns the length. */
static size_t put_dec(char *out, int64_t v) {
    char tmp[24];
    size_t n = 0, k = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0) out[k++] = '-';
    while (n > 0) out[k++] = tmp[--n];
    return k;
}

/*
 * The record's hash: SHA-256 over prev "\n" seq "\n" recorded "\n" action "\n" subtype
 * "\n" outcome "\n" who "\n" role "\n" ip "\n" patients "\n" content (integers in
 * decimal). A record that fits in 2 KiB (all compact ones do) is laid out in one buffer
 * and hashed with one update of the thread's digest context, instead of a dozen updates
 * on a fresh context per record (callgrind); larger ones, or when that context cannot
 * be had, stream through a fresh context. Both hash the same bytes.
 */
void hv__audit_hash(const char *prev, int64_t seq, int64_t recorded, const char *action, const char *subtype,
                    int outcome, const char *who, const char *role, const char *ip, const char *patients,
                    const char *content, size_t clen, char out[65]) {
    unsigned char bin[32];
    hv__audit_hash_bin(prev, seq, recorded, action, subtype, outcome, who, role, ip, patients, content, clen, out, bin);
}

void hv__audit_hash_bin(const char *prev, int64_t seq, int64_t recorded, const char *action, const char *subtype,
                        int outcome, const char *who, const char *role, const char *ip, const char *patients,
                        const char *content, size_t clen, char out[65], unsigned char d[32]) {
    EVP_MD_CTX *md;
    unsigned char buf[2048];
    unsigned int dl = 0;
    char head[96];
    size_t len = 0, n;
    const char *fields[] = {action, subtype, NULL, who, role, ip, patients};
    int ok;
    n = 0;
    head[n++] = '\n';
    n += put_dec(head + n, seq);
    head[n++] = '\n';
    n += put_dec(head + n, recorded);
    head[n++] = '\n';
    ok = put(buf, sizeof(buf), &len, prev, strlen(prev)) && put(buf, sizeof(buf), &len, head, n);
    for (size_t i = 0; ok && i < HV_ARRAY_LEN(fields); i++) {
        if (fields[i] == NULL) {
            size_t k = put_dec(head, outcome);
            ok = put(buf, sizeof(buf), &len, head, k);
        } else {
            ok = put(buf, sizeof(buf), &len, fields[i], strlen(fields[i]));
        }
        ok = ok && put(buf, sizeof(buf), &len, "\n", 1);
    }
    ok = ok && put(buf, sizeof(buf), &len, content, clen);
    if (ok) {
        SHA256_CTX c;
        if (SHA256_Init(&c) == 1 && SHA256_Update(&c, buf, len) == 1 && SHA256_Final(d, &c) == 1) {
            hv_hex(d, 32, out);
            return;
        }
    }
    md = EVP_MD_CTX_new();
    pthread_once(&sha256_once, sha256_fetch);
    if (md == NULL || EVP_DigestInit_ex(md, sha256_md ? sha256_md : EVP_sha256(), NULL) != 1) {
        /* Out of memory: a hash that can never match, so the record is reported, never trusted. */
        memset(out, 'x', 64);
        out[64] = '\0';
        memset(d, 0xff, 32);
        EVP_MD_CTX_free(md);
        return;
    }
    n = (size_t)snprintf(head, sizeof(head), "\n%lld\n%lld\n", (long long)seq, (long long)recorded);
    EVP_DigestUpdate(md, prev, strlen(prev));
    EVP_DigestUpdate(md, head, n);
#define FIELD(s)                                                                                                   \
    do {                                                                                                           \
        EVP_DigestUpdate(md, (s), strlen(s));                                                                      \
        EVP_DigestUpdate(md, "\n", 1);                                                                             \
    } while (0)
    FIELD(action);
    FIELD(subtype);
    n = (size_t)snprintf(head, sizeof(head), "%d", outcome);
    EVP_DigestUpdate(md, head, n);
    EVP_DigestUpdate(md, "\n", 1);
    FIELD(who);
    FIELD(role);
    FIELD(ip);
    FIELD(patients);
#undef FIELD
    EVP_DigestUpdate(md, content, clen);
    EVP_DigestFinal_ex(md, d, &dl);
    EVP_MD_CTX_free(md);
    hv_hex(d, 32, out);
}

/*
 * The record's hash, format 3 (block format 3, written from session 8 on): SHA-256 over
 * fixed-width binary fields, no hex or decimal text (integers little-endian):
 *   "HVH3"                                  4 bytes, so that no format 1 input (which
 *                                           starts with 64 hex digits) is ever the same
 *   prev                                    32 bytes: the previous record's digest
 *   seq u64 | recorded i64 | outcome i32    8 + 8 + 4 bytes, two's complement
 *   action                                  1 byte (C R U D E)
 *   subtype, who, role, ip, patients, content: each u32 length, then its bytes
 * A record that fits in 2 KiB is laid out in one buffer and hashed with one update; a
 * larger one streams the same bytes field by field. prev and d may be the same bytes (prev
 * is read before d is written).
 */
void hv__audit_hash3(const unsigned char prev[32], int64_t seq, int64_t recorded, int outcome, char action,
                     const char *const s[6], const size_t l[6], unsigned char d[32]) {
    unsigned char buf[2048], *p = buf;
    size_t total = 4 + 32 + 8 + 8 + 4 + 1;
    SHA256_CTX c;
    for (int i = 0; i < 6; i++) total += 4 + l[i];
    memcpy(p, "HVH3", 4);
    memcpy(p + 4, prev, 32);
    hv__audit_put64(p + 36, (uint64_t)seq);
    hv__audit_put64(p + 44, (uint64_t)recorded);
    hv__audit_put32(p + 52, (uint32_t)outcome);
    p[56] = (unsigned char)action;
    p += 57;
    if (SHA256_Init(&c) != 1) goto broken;
    if (total <= sizeof(buf)) {
        for (int i = 0; i < 6; i++) {
            hv__audit_put32(p, (uint32_t)l[i]);
            if (l[i] > 0) memcpy(p + 4, s[i], l[i]);
            p += 4 + l[i];
        }
        if (SHA256_Update(&c, buf, (size_t)(p - buf)) != 1) goto broken;
    } else {
        if (SHA256_Update(&c, buf, (size_t)(p - buf)) != 1) goto broken;
        for (int i = 0; i < 6; i++) {
            unsigned char n[4];
            hv__audit_put32(n, (uint32_t)l[i]);
            if (SHA256_Update(&c, n, 4) != 1 || (l[i] > 0 && SHA256_Update(&c, s[i], l[i]) != 1)) goto broken;
        }
    }
    if (SHA256_Final(d, &c) == 1) return;
broken:
    /* A digest that could not be made: one that never matches, so the record is reported,
     * never trusted. */
    memset(d, 0xff, 32);
}

/* 64 lower-case hex digits to 32 bytes; 0 when hex is anything else. */
int hv__audit_unhex32(const char *hex, unsigned char out[32]) {
    for (int i = 0; i < 32; i++) {
        int v = 0;
        for (int k = 0; k < 2; k++) {
            char ch = hex[2 * i + k];
            if (ch >= '0' && ch <= '9') v = v * 16 + (ch - '0');
            else if (ch >= 'a' && ch <= 'f') v = v * 16 + (ch - 'a' + 10);
            else return 0;
        }
        out[i] = (unsigned char)v;
    }
    return hex[64] == '\0';
}

/* The hash of a record in the given hash format (1: text, 3: binary) as hex, prev as hex. */
void hv__audit_hash_fmt(int hfmt, const char *prev, int64_t seq, int64_t recorded, const char *action,
                        const char *subtype, int outcome, const char *who, const char *role, const char *ip,
                        const char *patients, const char *content, size_t clen, char out[65]) {
    unsigned char pb[32], d[32];
    const char *s[6] = {subtype, who, role, ip, patients, content};
    size_t l[6];
    if (hfmt != HV__HASH_BIN) {
        hv__audit_hash(prev, seq, recorded, action, subtype, outcome, who, role, ip, patients, content, clen, out);
        return;
    }
    if (!hv__audit_unhex32(prev, pb) || action[0] == '\0' || action[1] != '\0') {
        memset(out, 'x', 64); /* a link that is not a hash: never matches */
        out[64] = '\0';
        return;
    }
    for (int i = 0; i < 5; i++) l[i] = strlen(s[i]);
    l[5] = clen;
    hv__audit_hash3(pb, seq, recorded, outcome, action[0], s, l, d);
    hv_hex(d, 32, out);
}

/* ---- signing key ---- */

int hv__audit_key_load(const char *data_dir, int create, EVP_PKEY **out, hv_error_t *err) {
    char path[4096];
    FILE *f = NULL;
    EVP_PKEY *k = NULL;
    EVP_PKEY_CTX *kc = NULL;
    int rc = HV_OK;
    snprintf(path, sizeof(path), "%s/audit-signing.pem", data_dir ? data_dir : ".");
    f = fopen(path, "r");
    if (f != NULL) {
        k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        f = NULL;
        if (k == NULL || EVP_PKEY_id(k) != EVP_PKEY_ED25519) {
            hv_error_set(err, HV_ECONFIG, path, "not an Ed25519 private key in PEM");
            rc = HV_ECONFIG;
            goto out;
        }
        *out = k;
        k = NULL;
        goto out;
    }
    if (!create) {
        hv_error_set(err, HV_ENOTFOUND, path, "the audit signing key does not exist");
        rc = HV_ENOTFOUND;
        goto out;
    }
    kc = EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, NULL);
    if (kc == NULL || EVP_PKEY_keygen_init(kc) != 1 || EVP_PKEY_keygen(kc, &k) != 1) {
        hv_error_set(err, HV_EIO, path, "cannot make an Ed25519 key");
        rc = HV_EIO;
        goto out;
    }
    {
        /* The private key is readable by the engine's user only. */
        int fd;
        mkdir(data_dir, 0700);
        fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
        if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
            if (fd >= 0) close(fd);
            hv_error_set(err, HV_EIO, path, "cannot create the audit signing key: %s", strerror(errno));
            rc = HV_EIO;
            goto out;
        }
        if (PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL) != 1 || fflush(f) != 0 || fsync(fileno(f)) != 0) {
            hv_error_set(err, HV_EIO, path, "cannot write the audit signing key");
            rc = HV_EIO;
            goto out;
        }
    }
    *out = k;
    k = NULL;
out:
    if (f != NULL) fclose(f);
    EVP_PKEY_CTX_free(kc);
    EVP_PKEY_free(k);
    return rc;
}

static int checkpoint_text(int64_t seq, const char *hash, int64_t signed_at, char *buf, size_t n) {
    return snprintf(buf, n, "holovitals-audit-checkpoint\n%lld\n%s\n%lld", (long long)seq, hash,
                    (long long)signed_at);
}

int hv__audit_sign(EVP_PKEY *key, int64_t seq, const char *hash, int64_t signed_at, char *sig_hex, size_t siglen) {
    char msg[160];
    unsigned char sig[64];
    size_t sl = sizeof(sig);
    int n = checkpoint_text(seq, hash, signed_at, msg, sizeof(msg)), rc = HV_EIO;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (siglen < 129) goto out;
    if (md == NULL || EVP_DigestSignInit(md, NULL, NULL, NULL, key) != 1 ||
        EVP_DigestSign(md, sig, &sl, (const unsigned char *)msg, (size_t)n) != 1)
        goto out;
    hv_hex(sig, sl, sig_hex);
    rc = HV_OK;
out:
    EVP_MD_CTX_free(md);
    return rc;
}

static int unhex(const char *s, unsigned char *out, size_t max, size_t *n) {
    size_t l = strlen(s);
    if (l % 2 || l / 2 > max) return HV_EINVAL;
    for (size_t i = 0; i < l / 2; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char c = s[2 * i + (size_t)k];
            v <<= 4;
            if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
            else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
            else return HV_EINVAL;
        }
        out[i] = (unsigned char)v;
    }
    *n = l / 2;
    return HV_OK;
}

int hv__audit_sig_ok(EVP_PKEY *key, int64_t seq, const char *hash, int64_t signed_at, const char *sig_hex) {
    char msg[160];
    unsigned char sig[64];
    size_t sl = 0;
    int n = checkpoint_text(seq, hash, signed_at, msg, sizeof(msg)), ok = 0;
    EVP_MD_CTX *md;
    if (unhex(sig_hex, sig, sizeof(sig), &sl) != HV_OK) return 0;
    md = EVP_MD_CTX_new();
    if (md != NULL && EVP_DigestVerifyInit(md, NULL, NULL, NULL, key) == 1 &&
        EVP_DigestVerify(md, sig, sl, (const unsigned char *)msg, (size_t)n) == 1)
        ok = 1;
    EVP_MD_CTX_free(md);
    ERR_clear_error();
    return ok;
}

/* ---- the append job (storage thread) ---- */

int hv__audit_read_tail(hv_db_t *db, const char *sql, char prev[65], int64_t *next_seq) {
    hv_db_stmt_t *st = NULL;
    size_t len = 0;
    int rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK) return rc;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        const char *h = hv_db_column_text(st, 1, &len);
        *next_seq = hv_db_column_int64(st, 0) + 1;
        if (h != NULL && len == 64) memcpy(prev, h, 65);
        rc = HV_OK;
    } else if (rc >= 0) {
        rc = HV_ENOTFOUND;
    }
    hv_db_done(st);
    return rc;
}

int hv__audit_tail(hv_db_t *db, char prev[65], int64_t *next_seq) {
    int rc;
    memcpy(prev, HV__AUDIT_ZERO_HASH, 65);
    *next_seq = 1;
    /* Blocks follow the rows: the newest block, when there is one, is the tail. */
    rc = hv__audit_block_tail(db, prev, next_seq);
    if (rc != HV_ENOTFOUND) return rc;
    memcpy(prev, HV__AUDIT_ZERO_HASH, 65);
    *next_seq = 1;
    /* The tail is read in the transaction that appends, so a failed batch never leaves the
     * chain's idea of its end out of step with the table. */
    rc = hv__audit_read_tail(db, "SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1", prev, next_seq);
    if (rc == HV_ENOTFOUND) rc = HV_OK;
    if (rc == HV_OK && *next_seq == 1) {
        /* Empty: every record so far was archived and purged; the chain goes on from the
         * last archived one. */
        int64_t upto = 0;
        rc = hv__audit_archived_tail(db, &upto, prev);
        *next_seq = upto + 1;
    }
    return rc;
}

int hv__audit_append_job(hv_db_t *db, void *arg) {
    char prev[65];
    int64_t seq;
    int rc = hv__audit_tail(db, prev, &seq);
    if (rc != HV_OK) return rc;
    return hv__audit_append(db, arg, prev, &seq);
}

#define EVENT_COLS                                                                                                 \
    "INSERT INTO audit_event (seq, recorded, action, subtype, outcome, who, role, ip, patients, breakglass, content," \
    " prev_hash, hash) VALUES "

/* Binds ev's 13 columns from parameter base+1 on. Static binds: the event's strings and
 * prev/hash outlive the step, so SQLite need not copy each of them. */
static void bind_event(hv_db_stmt_t *st, int base, const hv__aev_t *ev, int64_t seq, const char *prev,
                       const char *hash) {
    hv_db_bind_int64(st, base + 1, seq);
    hv_db_bind_int64(st, base + 2, ev->recorded);
    hv_db_bind_text_static(st, base + 3, ev->action, 1);
    hv_db_bind_text_static(st, base + 4, ev->subtype, strlen(ev->subtype));
    hv_db_bind_int64(st, base + 5, ev->outcome);
    hv_db_bind_text_static(st, base + 6, ev->who, strlen(ev->who));
    hv_db_bind_text_static(st, base + 7, ev->role, strlen(ev->role));
    hv_db_bind_text_static(st, base + 8, ev->ip, strlen(ev->ip));
    hv_db_bind_text_static(st, base + 9, ev->patients_csv, strlen(ev->patients_csv));
    hv_db_bind_int64(st, base + 10, ev->breakglass[0] ? 1 : 0);
    hv_db_bind_text_static(st, base + 11, ev->content.data ? ev->content.data : "", ev->content.len);
    hv_db_bind_text_static(st, base + 12, prev, 64);
    hv_db_bind_text_static(st, base + 13, hash, 64);
}

static void hash_event(const hv__aev_t *ev, const char *prev, int64_t seq, char hash[65]) {
    hv__audit_hash(prev, seq, ev->recorded, ev->action, ev->subtype, ev->outcome, ev->who, ev->role, ev->ip,
                   ev->patients_csv, ev->content.data, ev->content.len, hash);
}

/* The access-log rows of a record written as seq, and the signed checkpoint when one is due. */
static int append_extras(hv_db_t *db, hv__aev_t *ev, int64_t seq, const char *hash) {
    hv__audit_t *a = ev->a;
    hv_db_stmt_t *st = NULL;
    int rc;
    for (size_t i = 0; i < ev->np; i++) {
        rc = hv_db_prepare(db, "INSERT INTO audit_patient (patient, seq) VALUES ($1, $2)", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_text_static(st, 1, ev->patients[i], strlen(ev->patients[i]));
        hv_db_bind_int64(st, 2, seq);
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc != HV_OK) return rc;
    }
    if (a->key != NULL && a->checkpoint_every > 0 && seq % a->checkpoint_every == 0) {
        char sig[160];
        int64_t now = (int64_t)hv_now_ms();
        rc = hv__audit_sign(a->key, seq, hash, now, sig, sizeof(sig));
        if (rc != HV_OK) return rc;
        rc = hv_db_prepare(db, "INSERT INTO audit_checkpoint (seq, hash, signed_at, sig) VALUES ($1, $2, $3, $4)", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_int64(st, 1, seq);
        hv_db_bind_text(st, 2, hash, 64);
        hv_db_bind_int64(st, 3, now);
        hv_db_bind_text(st, 4, sig, strlen(sig));
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc != HV_OK) return rc;
    }
    ev->seq = seq;
    return HV_OK;
}

int hv__audit_append(hv_db_t *db, hv__aev_t *ev, char prev[65], int64_t *next_seq) {
    hv_db_stmt_t *st = NULL;
    char hash[65];
    int64_t seq = *next_seq;
    int rc;
    hash_event(ev, prev, seq, hash);
    rc = hv_db_prepare(db, EVENT_COLS "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)", &st);
    if (rc != HV_OK) return rc;
    bind_event(st, 0, ev, seq, prev, hash);
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc != HV_OK) return rc;
    rc = append_extras(db, ev, seq, hash);
    if (rc != HV_OK) return rc;
    memcpy(prev, hash, 65);
    *next_seq = seq + 1;
    return HV_OK;
}

/* One INSERT of HV__AUDIT_ROWS rows: "EVENT_COLS ($1, …, $13), ($14, …), …", made once. */
#define HV__AUDIT_ROWS 16
static char rows_sql[sizeof(EVENT_COLS) + HV__AUDIT_ROWS * 13 * 8 + 16]; /* "$208" and ", (" at most per parameter */
static pthread_once_t rows_once = PTHREAD_ONCE_INIT;

static void rows_make(void) {
    size_t n = strlen(EVENT_COLS);
    memcpy(rows_sql, EVENT_COLS, n);
    for (int r = 0; r < HV__AUDIT_ROWS; r++) {
        for (int c = 0; c < 13; c++) {
            n += (size_t)snprintf(rows_sql + n, sizeof(rows_sql) - n, "%s$%d%s", c == 0 ? (r == 0 ? "(" : ", (") : ", ",
                                  r * 13 + c + 1, c == 12 ? ")" : "");
        }
    }
}

/*
 * Appends a batch's records (the list from head, by ->next) in order: whole runs of
 * HV__AUDIT_ROWS as one multi-row INSERT each — a statement's fixed cost (prepare lookup,
 * reset, halt, bindings cleared) was about half of SQLite's share of an audited read
 * (callgrind) — the rest one by one. Same rows, same hashes as hv__audit_append.
 */
int hv__audit_append_list(hv_db_t *db, hv__aev_t *head, char prev[65], int64_t *next_seq) {
    hv__aev_t *run[HV__AUDIT_ROWS];
    char hashes[HV__AUDIT_ROWS][65], prevs[HV__AUDIT_ROWS][65];
    hv__aev_t *ev = head;
    int rc = HV_OK;
    pthread_once(&rows_once, rows_make);
    while (ev != NULL && rc == HV_OK) {
        hv_db_stmt_t *st = NULL;
        int64_t seq = *next_seq;
        size_t n = 0;
        for (hv__aev_t *e = ev; e != NULL && n < HV__AUDIT_ROWS; e = e->next) run[n++] = e;
        if (n < HV__AUDIT_ROWS) {
            for (; ev != NULL && rc == HV_OK; ev = ev->next) rc = hv__audit_append(db, ev, prev, next_seq);
            break;
        }
        for (size_t i = 0; i < n; i++) {
            memcpy(prevs[i], i == 0 ? prev : hashes[i - 1], 65);
            hash_event(run[i], prevs[i], seq + (int64_t)i, hashes[i]);
        }
        rc = hv_db_prepare(db, rows_sql, &st);
        if (rc != HV_OK) return rc;
        for (size_t i = 0; i < n; i++) bind_event(st, (int)i * 13, run[i], seq + (int64_t)i, prevs[i], hashes[i]);
        rc = hv_db_step(st);
        hv_db_done(st);
        for (size_t i = 0; rc == HV_OK && i < n; i++) rc = append_extras(db, run[i], seq + (int64_t)i, hashes[i]);
        if (rc != HV_OK) return rc;
        memcpy(prev, hashes[n - 1], 65);
        *next_seq = seq + (int64_t)n;
        ev = run[n - 1]->next;
    }
    return rc;
}

/* ---- verification ---- */

/* The walker shared by the database and the archive: feed records in order. */
typedef struct walker {
    hv_audit_verify_t *out;
    int64_t expect; /* the next seq, 0 before the first */
    char prev[65];
    int done;
} walker_t;

static void fail(walker_t *w, int64_t seq, const char *problem, const char *fmt, ...) HV_PRINTF(4, 5);
static void fail(walker_t *w, int64_t seq, const char *problem, const char *fmt, ...) {
    va_list ap;
    if (w->done) return;
    w->done = 1;
    w->out->first_bad = seq;
    snprintf(w->out->problem, sizeof(w->out->problem), "%s", problem);
    va_start(ap, fmt);
    vsnprintf(w->out->detail, sizeof(w->out->detail), fmt, ap);
    va_end(ap);
}

static void walk(walker_t *w, int hfmt, int64_t seq, const char *prev_hash, const char *hash, int64_t recorded,
                 const char *action, const char *subtype, int outcome, const char *who, const char *role,
                 const char *ip, const char *patients, const char *content, size_t clen) {
    char h[65];
    if (w->done) return;
    if (w->expect != 0 && seq != w->expect) {
        if (seq > w->expect)
            fail(w, w->expect, "deleted", "records %lld to %lld are missing", (long long)w->expect,
                 (long long)seq - 1);
        else
            fail(w, seq, "inserted", "record %lld appears twice or out of order", (long long)seq);
        return;
    }
    if (w->expect != 0 && strcmp(prev_hash, w->prev) != 0) {
        fail(w, seq, "inserted", "record %lld does not link to record %lld (a record was replaced or inserted)",
             (long long)seq, (long long)seq - 1);
        return;
    }
    hv__audit_hash_fmt(hfmt, prev_hash, seq, recorded, action, subtype, outcome, who, role, ip, patients, content,
                       clen, h);
    if (strcmp(h, hash) != 0) {
        fail(w, seq, "altered", "record %lld was altered (its content no longer matches its hash)", (long long)seq);
        return;
    }
    w->out->checked++;
    w->expect = seq + 1;
    memcpy(w->prev, hash, 65);
}

static const char *col(hv_db_stmt_t *st, int i) {
    size_t n;
    const char *s = hv_db_column_text(st, i, &n);
    return s ? s : "";
}

int hv__audit_archived_tail(hv_db_t *db, int64_t *upto, char hash[65]) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT last_seq, last_hash FROM audit_archive ORDER BY last_seq DESC LIMIT 1", &st);
    *upto = 0;
    memcpy(hash, HV__AUDIT_ZERO_HASH, 65);
    if (rc != HV_OK) return rc;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        *upto = hv_db_column_int64(st, 0);
        snprintf(hash, 65, "%s", col(st, 1));
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* The hash of record seq, rows or blocks; "" when neither holds it. */
static int record_hash(hv_db_t *db, int64_t seq, char out[65]) {
    hv_db_stmt_t *st = NULL;
    hv__arec_t r;
    int rc = hv_db_prepare(db, "SELECT hash FROM audit_event WHERE seq = $1", &st);
    out[0] = '\0';
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, seq);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) snprintf(out, 65, "%s", col(st, 0));
    hv_db_done(st);
    if (rc < 0) return rc;
    if (rc == HV_DB_ROW) return HV_OK;
    rc = hv__audit_block_record(db, seq, &r);
    if (rc == HV_OK) memcpy(out, r.hash, 65);
    return rc == HV_ENOTFOUND ? HV_OK : rc;
}

typedef struct vwalk {
    walker_t *w;
    int64_t last;
} vwalk_t;

static int verify_rec(const hv__arec_t *r, void *ud) {
    vwalk_t *v = ud;
    walker_t *w = v->w;
    if (w->expect == 1 && r->seq == 1 && strcmp(r->prev, HV__AUDIT_ZERO_HASH) != 0) {
        fail(w, 1, "inserted", "the first record does not start the chain");
        return 1;
    }
    walk(w, r->hfmt, r->seq, r->prev, r->hash, r->recorded, r->action, r->subtype, r->outcome, r->who, r->role, r->ip,
         r->patients, r->content, r->clen);
    /* The block's last record must be the one its row names, with the hash it names. */
    if (!w->done && r->last_in_block && r->seq < r->block_last)
        fail(w, r->seq + 1, "deleted", "records %lld to %lld are missing (cut from the end of their block)",
             (long long)r->seq + 1, (long long)r->block_last);
    else if (!w->done && r->last_in_block && (r->seq != r->block_last || strcmp(r->block_hash, r->hash) != 0))
        fail(w, r->seq, "altered", "the block of records %lld to %lld was altered (its end does not match its records)",
             (long long)r->block_first, (long long)r->block_last);
    v->last = r->seq;
    return w->done;
}

static int verify_damaged(int64_t block_first, size_t ngood, void *ud) {
    vwalk_t *v = ud;
    int64_t at = v->w->expect > 0 ? v->w->expect : block_first + (int64_t)ngood;
    fail(v->w, at, "altered", "record %lld cannot be read: the block from record %lld was altered", (long long)at,
         (long long)block_first);
    return 1;
}

int hv__audit_verify_db(hv_db_t *db, EVP_PKEY *key, int64_t since_ms, hv_audit_verify_t *out) {
    hv_db_stmt_t *st = NULL;
    walker_t w;
    vwalk_t vw;
    hv__ascan_t f;
    int64_t start = 1, last = 0, upto = 0;
    char upto_hash[65];
    int rc;
    memset(out, 0, sizeof(*out));
    memset(&w, 0, sizeof(w));
    w.out = out;
    memcpy(w.prev, HV__AUDIT_ZERO_HASH, 65);
    /* Records archived and purged (hv__audit_purge): the hot table continues the chain
     * from the last archived record's hash. */
    if ((rc = hv__audit_archived_tail(db, &upto, upto_hash)) != HV_OK) return rc;
    if (upto > 0) {
        start = upto + 1;
        memcpy(w.prev, upto_hash, 65);
    }
    if (since_ms > 0) {
        /* The first record at or after since_ms: among the rows, else the first block
         * that reaches it (the blocks follow the rows). */
        int64_t first = -1;
        rc = hv_db_prepare(db, "SELECT MIN(seq) FROM audit_event WHERE recorded >= $1", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_int64(st, 1, since_ms);
        rc = hv_db_step(st);
        if (rc == HV_DB_ROW && !hv_db_column_is_null(st, 0)) first = hv_db_column_int64(st, 0);
        hv_db_done(st);
        if (rc < 0) return rc;
        if (first == -1 && hv__audit_has_blocks(db)) {
            rc = hv_db_prepare(db, "SELECT MIN(seq_first) FROM audit_block WHERE recorded_max >= $1", &st);
            if (rc != HV_OK) return rc;
            hv_db_bind_int64(st, 1, since_ms);
            rc = hv_db_step(st);
            if (rc == HV_DB_ROW && !hv_db_column_is_null(st, 0)) first = hv_db_column_int64(st, 0);
            hv_db_done(st);
            if (rc < 0) return rc;
        }
        start = first;
        if (start == -1) goto checkpoints;
        if (start <= upto) {
            start = upto + 1; /* the rest is in the archives */
        } else if (start == upto + 1) {
            memcpy(w.prev, upto_hash, 65);
        } else if (start > 1) {
            /* Start from the record before, whose own hash the walk then trusts. */
            if ((rc = record_hash(db, start - 1, w.prev)) != HV_OK) return rc;
        }
    }
    w.expect = start;
    rc = hv_db_prepare(db,
                       "SELECT seq, prev_hash, hash, recorded, action, subtype, outcome, who, role, ip, patients, content"
                       " FROM audit_event WHERE seq >= $1 ORDER BY seq",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, start);
    while ((rc = hv_db_step(st)) == HV_DB_ROW && !w.done) {
        size_t clen = 0;
        const char *content = hv_db_column_text(st, 11, &clen);
        int64_t seq = hv_db_column_int64(st, 0);
        if (w.expect == 1 && seq == 1 && strcmp(col(st, 1), HV__AUDIT_ZERO_HASH) != 0) {
            fail(&w, 1, "inserted", "the first record does not start the chain");
            break;
        }
        walk(&w, HV__HASH_TEXT, seq, col(st, 1), col(st, 2), hv_db_column_int64(st, 3), col(st, 4), col(st, 5),
             (int)hv_db_column_int64(st, 6), col(st, 7), col(st, 8), col(st, 9), col(st, 10), content ? content : "",
             clen);
        last = seq;
    }
    hv_db_done(st);
    if (rc < 0) return rc;
    /* Then the blocks, record by record, on the same walk. */
    if (!w.done) {
        hv__audit_scan_init(&f);
        f.seq_ge = start;
        f.on_damaged = verify_damaged;
        vw.w = &w;
        vw.last = last;
        if ((rc = hv__audit_block_scan(db, &f, verify_rec, &vw)) != HV_OK) return rc;
        last = vw.last;
    }
checkpoints:
    /* Checkpoints: each signature must hold and match the record it names; the newest
     * checkpoint past the last record means the newest records were deleted. */
    rc = hv_db_prepare(db, "SELECT seq, hash, signed_at, sig FROM audit_checkpoint ORDER BY seq", &st);
    if (rc != HV_OK) return rc;
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        int64_t seq = hv_db_column_int64(st, 0);
        out->checkpoints++;
        if (key != NULL && !hv__audit_sig_ok(key, seq, col(st, 1), hv_db_column_int64(st, 2), col(st, 3))) {
            fail(&w, seq, "checkpoint", "the signature of checkpoint %lld does not verify", (long long)seq);
            break;
        }
        if (seq > last && last > 0 && !w.done) {
            fail(&w, last + 1, "truncated", "records from %lld on were deleted (checkpoint %lld names them)",
                 (long long)last + 1, (long long)seq);
            break;
        }
    }
    hv_db_done(st);
    if (rc < 0) return rc;
    if (!w.done) {
        /* Each checkpoint hash must be the hash of the record it names (a row, or a
         * record in a block). */
        int64_t bad = 0;
        rc = hv_db_prepare(db,
                           "SELECT c.seq, c.hash, e.hash FROM audit_checkpoint c LEFT JOIN audit_event e ON e.seq = c.seq"
                           " WHERE c.seq > $1 ORDER BY c.seq",
                           &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_int64(st, 1, upto);
        while (bad == 0 && (rc = hv_db_step(st)) == HV_DB_ROW) {
            int64_t seq = hv_db_column_int64(st, 0);
            if (since_ms != 0 && seq < start) continue;
            if (!hv_db_column_is_null(st, 2)) {
                if (strcmp(col(st, 1), col(st, 2)) != 0) bad = seq;
            } else if (hv__audit_has_blocks(db)) {
                hv__arec_t r;
                int k = hv__audit_block_record(db, seq, &r);
                if (k != HV_OK && k != HV_ENOTFOUND) {
                    rc = k;
                    break;
                }
                if (k == HV_ENOTFOUND || strcmp(r.hash, col(st, 1)) != 0) bad = seq;
            } else {
                bad = seq;
            }
        }
        hv_db_done(st);
        if (rc < 0) return rc;
        if (bad > 0)
            fail(&w, bad, "checkpoint", "record %lld differs from its signed checkpoint", (long long)bad);
    }
    return HV_OK;
}

/* ---- archives ---- */

static int gz_line(gzFile gz, struct json_object *o) {
    size_t n = 0;
    const char *s = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
    if (s == NULL || gzwrite(gz, s, (unsigned)n) != (int)n || gzwrite(gz, "\n", 1) != 1) return HV_EIO;
    return HV_OK;
}

/* The archive being written: its header goes before the first record. */
typedef struct arch {
    gzFile gz;
    int64_t before, n, first_seq, last_seq;
    char last_hash[65];
    int stop, rc;
} arch_t;

static int arch_record(arch_t *x, int hfmt, int64_t seq, const char *prev, const char *hash, int64_t recorded,
                       const char *action, const char *subtype, int64_t outcome, const char *who, const char *role,
                       const char *ip, const char *patients, const char *content, size_t clen) {
    struct json_object *o;
    if (x->n == 0) {
        x->first_seq = seq;
        o = json_object_new_object();
        hv_json_set_str(o, "archive", "holovitals-audit");
        hv_json_set_int(o, "version", 1);
        hv_json_set_int(o, "first_seq", seq);
        hv_json_set_str(o, "prev_hash", prev);
        x->rc = gz_line(x->gz, o);
        json_object_put(o);
        if (x->rc != HV_OK) return x->rc;
    }
    o = json_object_new_object();
    hv_json_set_int(o, "seq", seq);
    hv_json_set_str(o, "prev_hash", prev);
    hv_json_set_str(o, "hash", hash);
    hv_json_set_int(o, "recorded", recorded);
    hv_json_set_str(o, "action", action);
    hv_json_set_str(o, "subtype", subtype);
    hv_json_set_int(o, "outcome", outcome);
    hv_json_set_str(o, "who", who);
    hv_json_set_str(o, "role", role);
    hv_json_set_str(o, "ip", ip);
    hv_json_set_str(o, "patients", patients);
    hv_json_set(o, "content", json_object_new_string_len(content ? content : "", (int)clen));
    if (hfmt == HV__HASH_BIN) hv_json_set_int(o, "hash_format", HV__HASH_BIN);
    x->last_seq = seq;
    snprintf(x->last_hash, sizeof(x->last_hash), "%s", hash);
    x->rc = gz_line(x->gz, o);
    json_object_put(o);
    if (x->rc == HV_OK) x->n++;
    return x->rc;
}

/* Blocks go into an archive whole: it ends before the first block that holds a record
 * recorded at or after the cut (a purge removes whole blocks). */
static int arch_block_rec(const hv__arec_t *r, void *ud) {
    arch_t *x = ud;
    if (r->seq == r->block_first && r->block_recorded_max >= x->before) {
        x->stop = 1;
        return 1;
    }
    return arch_record(x, r->hfmt, r->seq, r->prev, r->hash, r->recorded, r->action, r->subtype, r->outcome, r->who,
                       r->role, r->ip, r->patients, r->content, r->clen) != HV_OK;
}

int hv__audit_archive(hv_db_t *db, EVP_PKEY *key, int64_t before_ms, const char *path, hv__audit_archived_t *res,
                      hv_error_t *err) {
    hv_db_stmt_t *st = NULL;
    struct json_object *o = NULL;
    char sig[160];
    int64_t now = (int64_t)hv_now_ms();
    arch_t x;
    int rc;
    memset(&x, 0, sizeof(x));
    x.before = before_ms;
    x.gz = gzopen(path, "wb");
    if (x.gz == NULL) {
        hv_error_set(err, HV_EIO, path, "cannot create the archive: %s", strerror(errno));
        return HV_EIO;
    }
    /* The oldest records, in chain order, up to the first one recorded at or after
     * before_ms: an archive is a contiguous piece of the chain (engines sharing a database
     * may append slightly out of clock order). Rows first, then blocks. */
    rc = hv_db_prepare(db,
                       "SELECT seq, prev_hash, hash, recorded, action, subtype, outcome, who, role, ip, patients, content"
                       " FROM audit_event ORDER BY seq",
                       &st);
    if (rc != HV_OK) goto out;
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t clen = 0;
        const char *content = hv_db_column_text(st, 11, &clen);
        if (hv_db_column_int64(st, 3) >= before_ms) {
            x.stop = 1;
            break;
        }
        if (arch_record(&x, HV__HASH_TEXT, hv_db_column_int64(st, 0), col(st, 1), col(st, 2),
                        hv_db_column_int64(st, 3), col(st, 4), col(st, 5), hv_db_column_int64(st, 6), col(st, 7),
                        col(st, 8), col(st, 9), col(st, 10), content, clen) != HV_OK)
            break;
    }
    hv_db_done(st);
    if (rc < 0) goto out;
    rc = x.rc;
    if (rc == HV_OK && !x.stop) {
        hv__ascan_t f;
        hv__audit_scan_init(&f);
        rc = hv__audit_block_scan(db, &f, arch_block_rec, &x);
        if (rc == HV_OK) rc = x.rc;
    }
    if (rc != HV_OK) goto out;
    if (x.n > 0) {
        struct json_object *cp = json_object_new_object();
        rc = hv__audit_sign(key, x.last_seq, x.last_hash, now, sig, sizeof(sig));
        if (rc != HV_OK) {
            json_object_put(cp);
            goto out;
        }
        hv_json_set_int(cp, "seq", x.last_seq);
        hv_json_set_str(cp, "hash", x.last_hash);
        hv_json_set_int(cp, "signed_at", now);
        hv_json_set_str(cp, "sig", sig);
        o = json_object_new_object();
        hv_json_set(o, "checkpoint", cp);
        rc = gz_line(x.gz, o);
    }
out:
    json_object_put(o);
    if (x.gz != NULL && gzclose(x.gz) != Z_OK && rc == HV_OK) rc = HV_EIO;
    if (rc != HV_OK) {
        if (err && err->message[0] == '\0') hv_error_set(err, rc, path, "cannot write the archive: %s", hv_strerror(rc));
        remove(path);
        return rc;
    }
    res->n = x.n;
    res->first_seq = x.first_seq;
    res->last_seq = x.last_seq;
    memcpy(res->last_hash, x.last_hash, sizeof(res->last_hash));
    return HV_OK;
}

/* SHA-256 of a file, hex. */
static int file_sha256(const char *path, char out[65]) {
    FILE *f = fopen(path, "rb");
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char buf[65536], d[32];
    unsigned int dl = 0;
    size_t got;
    int rc = HV_EIO;
    if (f == NULL || md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) goto out;
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0) EVP_DigestUpdate(md, buf, got);
    if (ferror(f) || EVP_DigestFinal_ex(md, d, &dl) != 1) goto out;
    hv_hex(d, 32, out);
    rc = HV_OK;
out:
    if (f != NULL) fclose(f);
    EVP_MD_CTX_free(md);
    return rc;
}

static int exec_del(hv_db_t *db, const char *sql, int64_t upto, int64_t *changed) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, upto);
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc == HV_OK && changed != NULL) *changed = hv_db_changes(db);
    return rc;
}

/*
 * Retention: removes from the hot table the records an archive holds — only after the
 * archive has been read back and verified with the key, only when it continues the chain
 * exactly where the last purge ended (its first record's prev_hash is the last archived
 * hash), and only records recorded before `cutoff_ms` (the end of the hot window). The
 * delete passes the append-only guard only inside this transaction: SQLite's trigger lets
 * through rows up to the mark this transaction puts in audit_purge (and takes out again);
 * PostgreSQL's rule only when the transaction SET LOCAL holovitals.audit_purge = 'on'.
 * The register audit_archive (append-only) keeps each archive's range, last hash, file
 * name and SHA-256, so verification of the hot table starts where the archives end.
 */
int hv__audit_purge(hv_db_t *db, EVP_PKEY *key, const char *path, const hv__audit_archived_t *ar, int64_t cutoff_ms,
                    int64_t *purged, hv_error_t *err) {
    hv_audit_verify_t v;
    hv_db_stmt_t *st = NULL;
    char upto_hash[65], sha[65];
    int64_t upto = 0, n = 0, newest = 0;
    int rc, began = 0;
    if (ar->n == 0) {
        *purged = 0;
        return HV_OK;
    }
    rc = hv__audit_verify_archive(path, key, &v, err);
    if (rc != HV_OK) return rc;
    if (v.problem[0] || v.checked != ar->n) {
        hv_error_set(err, HV_EPROTO, path, "the archive does not verify (%s): nothing purged", v.problem);
        return HV_EPROTO;
    }
    if ((rc = file_sha256(path, sha)) != HV_OK) {
        hv_error_set(err, rc, path, "cannot read the archive back: nothing purged");
        return rc;
    }
    if ((rc = hv_db_begin(db)) != HV_OK) goto out;
    began = 1;
    if (hv_db_kind(db) == HV_DB_PG && (rc = hv_db_exec(db, HV__AUDIT_PG_LOCK)) != HV_OK) goto out;
    if ((rc = hv__audit_archived_tail(db, &upto, upto_hash)) != HV_OK) goto out;
    rc = hv_db_prepare(db, "SELECT prev_hash, recorded FROM audit_event WHERE seq = $1", &st);
    if (rc != HV_OK) goto out;
    hv_db_bind_int64(st, 1, ar->first_seq);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW && (ar->first_seq != upto + 1 || strcmp(col(st, 0), upto_hash) != 0)) rc = HV_ECONFLICT;
    hv_db_done(st);
    if (rc == HV_OK && hv__audit_has_blocks(db)) {
        /* No row: the first archived record may be in a block. */
        hv__arec_t r;
        int k = hv__audit_block_record(db, ar->first_seq, &r);
        if (k == HV_OK) rc = ar->first_seq == upto + 1 && strcmp(r.prev, upto_hash) == 0 ? HV_DB_ROW : HV_ECONFLICT;
        else if (k != HV_ENOTFOUND) rc = k;
    }
    if (rc != HV_DB_ROW) {
        hv_error_set(err, HV_ECONFLICT, path,
                     "the archive does not continue the chain where the last purge ended (record %lld): nothing purged",
                     (long long)upto);
        rc = HV_ECONFLICT;
        goto out;
    }
    rc = hv_db_prepare(db, "SELECT MAX(recorded) FROM audit_event WHERE seq <= $1", &st);
    if (rc != HV_OK) goto out;
    hv_db_bind_int64(st, 1, ar->last_seq);
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) newest = hv_db_column_int64(st, 0);
    hv_db_done(st);
    if (rc < 0) goto out;
    if (hv__audit_has_blocks(db)) {
        rc = hv_db_prepare(db, "SELECT MAX(recorded_max) FROM audit_block WHERE seq_first <= $1", &st);
        if (rc != HV_OK) goto out;
        hv_db_bind_int64(st, 1, ar->last_seq);
        rc = hv_db_step(st);
        if (rc == HV_DB_ROW && !hv_db_column_is_null(st, 0) && hv_db_column_int64(st, 0) > newest)
            newest = hv_db_column_int64(st, 0);
        hv_db_done(st);
        if (rc < 0) goto out;
    }
    if (newest >= cutoff_ms) {
        hv_error_set(err, HV_EINVAL, path, "the archive holds records of the hot window (audit.hot_days): nothing purged");
        rc = HV_EINVAL;
        goto out;
    }
    if (hv_db_kind(db) == HV_DB_PG) rc = hv_db_exec(db, "SET LOCAL holovitals.audit_purge = 'on'");
    else rc = exec_del(db, "INSERT INTO audit_purge (upto) VALUES ($1)", ar->last_seq, NULL);
    if (rc == HV_OK) rc = exec_del(db, "DELETE FROM audit_patient WHERE seq <= $1", ar->last_seq, NULL);
    if (rc == HV_OK) rc = exec_del(db, "DELETE FROM audit_event WHERE seq <= $1", ar->last_seq, &n);
    if (rc == HV_OK && hv__audit_has_blocks(db)) {
        /* Whole blocks only (an archive ends at a block's end); their records count. */
        int64_t nb = 0;
        rc = hv_db_prepare(db, "SELECT COALESCE(SUM(seq_last - seq_first + 1), 0) FROM audit_block WHERE seq_last <= $1",
                           &st);
        if (rc == HV_OK) {
            hv_db_bind_int64(st, 1, ar->last_seq);
            rc = hv_db_step(st);
            if (rc == HV_DB_ROW) nb = hv_db_column_int64(st, 0);
            hv_db_done(st);
            rc = rc < 0 ? rc : HV_OK;
        }
        if (rc == HV_OK)
            rc = exec_del(db,
                          "DELETE FROM audit_block_who WHERE seq_first IN (SELECT seq_first FROM audit_block"
                          " WHERE seq_last <= $1)",
                          ar->last_seq, NULL);
        if (rc == HV_OK)
            rc = exec_del(db,
                          "DELETE FROM audit_block_patient WHERE seq_first IN (SELECT seq_first FROM audit_block"
                          " WHERE seq_last <= $1)",
                          ar->last_seq, NULL);
        if (rc == HV_OK) rc = exec_del(db, "DELETE FROM audit_block WHERE seq_last <= $1", ar->last_seq, NULL);
        n += nb;
    }
    if (rc == HV_OK && hv_db_kind(db) != HV_DB_PG) rc = hv_db_exec(db, "DELETE FROM audit_purge");
    if (rc != HV_OK) goto out;
    if (n != ar->n) {
        hv_error_set(err, HV_ECONFLICT, path, "%lld records in the table, %lld in the archive: nothing purged",
                     (long long)n, (long long)ar->n);
        rc = HV_ECONFLICT;
        goto out;
    }
    rc = hv_db_prepare(db,
                       "INSERT INTO audit_archive (last_seq, first_seq, last_hash, archived_at, file, file_sha256)"
                       " VALUES ($1, $2, $3, $4, $5, $6)",
                       &st);
    if (rc != HV_OK) goto out;
    hv_db_bind_int64(st, 1, ar->last_seq);
    hv_db_bind_int64(st, 2, ar->first_seq);
    hv_db_bind_text(st, 3, ar->last_hash, strlen(ar->last_hash));
    hv_db_bind_int64(st, 4, (int64_t)hv_now_ms());
    hv_db_bind_text(st, 5, path, strlen(path));
    hv_db_bind_text(st, 6, sha, 64);
    rc = hv_db_step(st);
    hv_db_done(st);
    if (rc != HV_OK) goto out;
    rc = hv_db_commit(db);
    began = 0;
    if (rc == HV_OK) *purged = n;
out:
    if (began) hv_db_rollback(db);
    if (rc != HV_OK && err && err->message[0] == '\0')
        hv_error_set(err, rc, path, "the purge failed (%s): nothing purged", hv_strerror(rc));
    return rc;
}

static const char *jstr(struct json_object *o, const char *k) {
    const char *s = hv_json_get_str(o, k);
    return s ? s : "";
}

static int64_t jint(struct json_object *o, const char *k) {
    struct json_object *v;
    return json_object_object_get_ex(o, k, &v) ? json_object_get_int64(v) : 0;
}

#define HV__ARCHIVE_MAX_LINE (16u * 1024 * 1024)

int hv__audit_verify_archive(const char *path, EVP_PKEY *key, hv_audit_verify_t *out, hv_error_t *err) {
    gzFile gz = gzopen(path, "rb");
    hv_buf_t line;
    walker_t w;
    int rc = HV_OK, header = 0, trailer = 0;
    int64_t lineno = 0;
    memset(out, 0, sizeof(*out));
    memset(&w, 0, sizeof(w));
    w.out = out;
    hv_buf_init(&line, HV__ARCHIVE_MAX_LINE);
    if (gz == NULL) {
        hv_error_set(err, HV_EIO, path, "cannot open the archive: %s", strerror(errno));
        return HV_EIO;
    }
    for (;;) {
        char chunk[8192];
        int got = gzread(gz, chunk, sizeof(chunk));
        size_t start = 0;
        if (got < 0) {
            hv_error_set(err, HV_EIO, path, "the archive is not valid gzip");
            rc = HV_EIO;
            break;
        }
        if (got == 0 && line.len == 0) break;
        if (got == 0) {
            chunk[0] = '\n';
            got = 1;
        }
        for (int i = 0; i < got && rc == HV_OK; i++) {
            struct json_object *o;
            if (chunk[i] != '\n') continue;
            rc = hv_buf_append(&line, chunk + start, (size_t)i - start);
            start = (size_t)i + 1;
            if (rc != HV_OK) break;
            lineno++;
            o = line.len ? json_tokener_parse(line.data) : NULL;
            hv_buf_reset(&line);
            if (o == NULL) {
                fail(&w, 0, "altered", "line %lld of the archive is not JSON", (long long)lineno);
                continue;
            }
            if (!header) {
                if (strcmp(jstr(o, "archive"), "holovitals-audit") != 0) {
                    hv_error_set(err, HV_EPROTO, path, "not a holovitals audit archive");
                    rc = HV_EPROTO;
                } else {
                    header = 1;
                    w.expect = jint(o, "first_seq");
                    snprintf(w.prev, sizeof(w.prev), "%s", jstr(o, "prev_hash"));
                }
            } else if (json_object_object_get_ex(o, "checkpoint", NULL)) {
                struct json_object *cp = NULL;
                json_object_object_get_ex(o, "checkpoint", &cp);
                trailer = 1;
                out->checkpoints++;
                if (key != NULL && !hv__audit_sig_ok(key, jint(cp, "seq"), jstr(cp, "hash"), jint(cp, "signed_at"),
                                                     jstr(cp, "sig")))
                    fail(&w, jint(cp, "seq"), "checkpoint", "the archive's signature does not verify");
                else if (jint(cp, "seq") != w.expect - 1 || strcmp(jstr(cp, "hash"), w.prev) != 0)
                    fail(&w, w.expect, "truncated", "the archive's signed end is record %lld, its last record is %lld",
                         (long long)jint(cp, "seq"), (long long)w.expect - 1);
            } else if (trailer) {
                fail(&w, jint(o, "seq"), "inserted", "a record follows the archive's signed end");
            } else {
                struct json_object *c = NULL;
                const char *cs = "";
                size_t cl = 0;
                if (json_object_object_get_ex(o, "content", &c) && json_object_is_type(c, json_type_string)) {
                    cs = json_object_get_string(c);
                    cl = (size_t)json_object_get_string_len(c);
                }
                walk(&w, jint(o, "hash_format") == HV__HASH_BIN ? HV__HASH_BIN : HV__HASH_TEXT, jint(o, "seq"),
                     jstr(o, "prev_hash"), jstr(o, "hash"), jint(o, "recorded"), jstr(o, "action"),
                     jstr(o, "subtype"), (int)jint(o, "outcome"), jstr(o, "who"), jstr(o, "role"), jstr(o, "ip"),
                     jstr(o, "patients"), cs, cl);
            }
            json_object_put(o);
        }
        if (rc != HV_OK) break;
        if ((size_t)got > start) {
            rc = hv_buf_append(&line, chunk + start, (size_t)got - start);
            if (rc != HV_OK) {
                hv_error_set(err, HV_ETOOBIG, path, "a line of the archive is longer than %u bytes",
                             HV__ARCHIVE_MAX_LINE);
                break;
            }
        }
    }
    gzclose(gz);
    hv_buf_release(&line);
    if (rc == HV_OK && !header) {
        hv_error_set(err, HV_EPROTO, path, "the archive is empty");
        rc = HV_EPROTO;
    }
    if (rc == HV_OK && !trailer) fail(&w, w.expect, "truncated", "the archive has no signed end (it was cut short)");
    return rc;
}
