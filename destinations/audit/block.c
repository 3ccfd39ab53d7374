/*
 * block.c — the audit trail stored in blocks (SQLite, migration 6): one row per batch of
 * records instead of one row (with two indexes and an access-log row) per record.
 *
 *   audit_block          seq_first INTEGER PRIMARY KEY, seq_last, recorded_min,
 *                        recorded_max, n, records BLOB, prev_hash, hash
 *   audit_block_who      (who, seq_first): the blocks that hold a record of who
 *   audit_block_patient  (patient, seq_first): the blocks that name the patient (the
 *                        access log's index: one row per block and patient, not per event)
 *
 * Every record keeps its own place in the one hash chain (each record's hash links to
 * the one before, whichever its format), so a trail of old rows followed by blocks is one
 * chain, archives hold the same per-record lines, and a record altered
 * inside a block is found and named by its sequence number. prev_hash is the hash of the
 * record before the block, hash the hash of its last record.
 *
 * records, format 1 (blocks written before session 7; still read): the block's records in
 * sequence order, each (integers little-endian):
 *   u32 length of the rest of the record
 *   i64 seq | i64 recorded | i32 outcome | u8 action | u8 breakglass (0/1)
 *   subtype, who, role, ip, patients ("p1,p2"), content: each u32 length, bytes, NUL
 *   64 bytes: the record's hash (hex)
 *
 * records, format 2 (written from session 7 on): "HVB2", then the records in sequence
 * order, each delta-coded against the record before it in the block (the first against
 * seq 0, recorded 0 and no strings), so that the ~180 bytes of a typical record shrink to
 * ~40 and the storage thread writes (WAL, checkpoint) a quarter of the bytes:
 *   u8 flags: bit i (0-5) set = string i (subtype, who, role, ip, patients, content) is
 *      the same as the record before's (never on the first record); bit 6 breakglass;
 *      bit 7 zero
 *   u8 action (C R U D E)
 *   varint zigzag(seq - previous seq), varint zigzag(recorded - previous recorded),
 *   varint zigzag(outcome) (varint: LEB128, at most 10 bytes)
 *   each string whose bit is clear: varint length, bytes, NUL (only content may hold NULs)
 *   32 bytes: the record's hash (binary)
 * In formats 1 and 2 each record's hash is over the text input (hash format 1,
 * chain.c hv__audit_hash), as a row's is.
 *
 * records, format 3 (written from session 8 on): "HVB3", then the records coded exactly
 * as in format 2; each record's hash is over the binary input (hash format 3, chain.c
 * hv__audit_hash3), chained on the previous digest's bytes. The magic is what tells a
 * reader (and verify) which input a record's hash is over; a store holds blocks of all
 * three formats, and the chain runs through them.
 *
 * PostgreSQL keeps one row per record (chain.c).
 */
#include "config.h"
#include "destinations/audit/audit_int.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define HV__BLOCK_NSTR 6
#define HV__BLOCK_FIXED (8 + 8 + 4 + 1 + 1)

int hv__audit_block_encode(hv_buf_t *out, int64_t seq, const hv__aev_t *ev, const char hash[65]) {
    const char *s[HV__BLOCK_NSTR] = {ev->subtype, ev->who, ev->role, ev->ip, ev->patients_csv,
                                     ev->content.data ? ev->content.data : ""};
    size_t l[HV__BLOCK_NSTR], need = 4 + HV__BLOCK_FIXED + 64, start = out->len;
    unsigned char *p;
    int rc;
    for (int i = 0; i < HV__BLOCK_NSTR; i++) {
        if (s[i] == NULL) s[i] = "";
        l[i] = i == HV__BLOCK_NSTR - 1 ? ev->content.len : strlen(s[i]);
        need += 4 + l[i] + 1;
    }
    if (need > UINT32_MAX / 2) return HV_ETOOBIG;
    if ((rc = hv_buf_reserve(out, need + 1)) != HV_OK) return rc;
    p = (unsigned char *)out->data + start;
    hv__audit_put32(p, (uint32_t)(need - 4));
    hv__audit_put64(p + 4, (uint64_t)seq);
    hv__audit_put64(p + 12, (uint64_t)ev->recorded);
    hv__audit_put32(p + 20, (uint32_t)ev->outcome);
    p[24] = (unsigned char)ev->action[0];
    p[25] = ev->breakglass != NULL && ev->breakglass[0] ? 1 : 0;
    p += 4 + HV__BLOCK_FIXED;
    for (int i = 0; i < HV__BLOCK_NSTR; i++) {
        hv__audit_put32(p, (uint32_t)l[i]);
        if (l[i] > 0) memcpy(p + 4, s[i], l[i]);
        p[4 + l[i]] = '\0';
        p += 4 + l[i] + 1;
    }
    memcpy(p, hash, 64);
    out->len = start + need;
    out->data[out->len] = '\0';
    return HV_OK;
}

int hv__audit_block_decode(const unsigned char *data, size_t len, size_t *used, hv__arec_t *r) {
    const unsigned char *p = data, *end;
    const char **dst[HV__BLOCK_NSTR] = {&r->subtype, &r->who, &r->role, &r->ip, &r->patients, &r->content};
    uint32_t rl;
    if (len < 4) return HV_EPROTO;
    rl = hv__audit_get32(p);
    if (rl < HV__BLOCK_FIXED + 64 + HV__BLOCK_NSTR * 5 || rl > len - 4) return HV_EPROTO;
    end = p + 4 + rl;
    r->seq = (int64_t)hv__audit_get64(p + 4);
    r->recorded = (int64_t)hv__audit_get64(p + 12);
    r->outcome = (int32_t)hv__audit_get32(p + 20);
    r->action[0] = (char)p[24];
    r->action[1] = '\0';
    r->breakglass = p[25];
    if (r->action[0] == 0 || strchr("CRUDE", r->action[0]) == NULL || p[25] > 1) return HV_EPROTO;
    p += 4 + HV__BLOCK_FIXED;
    for (int i = 0; i < HV__BLOCK_NSTR; i++) {
        uint32_t l;
        if (end - p < 5) return HV_EPROTO;
        l = hv__audit_get32(p);
        if ((size_t)(end - p) < 4 + (size_t)l + 1 || p[4 + l] != '\0') return HV_EPROTO;
        if (i < HV__BLOCK_NSTR - 1 && memchr(p + 4, '\0', l) != NULL) return HV_EPROTO;
        *dst[i] = (const char *)p + 4;
        if (i == HV__BLOCK_NSTR - 1) r->clen = l;
        p += 4 + l + 1;
    }
    if (end - p != 64) return HV_EPROTO;
    memcpy(r->hash, p, 64);
    r->hash[64] = '\0';
    if (strspn(r->hash, "0123456789abcdef") != 64) return HV_EPROTO;
    *used = 4 + (size_t)rl;
    return HV_OK;
}

/* ---- format 2 ---- */

static const char hexd[] = "0123456789abcdef";

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

static unsigned char *put_varint(unsigned char *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

static uint64_t zigzag(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }

static int64_t unzigzag(uint64_t u) { return (int64_t)((u >> 1) ^ (0 - (u & 1))); }

/* Reads one LEB128 varint: at most 10 bytes, no value past 64 bits and no needless
 * trailing zero byte (one value, one encoding). */
static int get_varint(const unsigned char **pp, const unsigned char *end, uint64_t *out) {
    const unsigned char *p = *pp;
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        unsigned char b;
        if (p >= end) return HV_EPROTO;
        b = *p++;
        if (shift == 63 && (b & 0xfe) != 0) return HV_EPROTO;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            if (b == 0 && shift > 0) return HV_EPROTO;
            *pp = p;
            *out = v;
            return HV_OK;
        }
    }
    return HV_EPROTO;
}

void hv__audit_block_wr_init(hv__ablock_wr_t *w) { memset(w, 0, sizeof(*w)); }

/* hv__audit_block_put with the six strings and their lengths already taken (s[i] not NULL). */
static int block_put_l(hv_buf_t *out, hv__ablock_wr_t *w, const hv__arec_t *r, const char *const s[HV__BLOCK_NSTR],
                       const size_t l[HV__BLOCK_NSTR], const unsigned char *bin) {
    size_t need = 4 + 2 + 3 * 10 + 32 + 1;
    unsigned char flags = r->breakglass ? 0x40 : 0, *p, *start;
    int hfmt = r->hfmt == HV__HASH_BIN ? HV__HASH_BIN : HV__HASH_TEXT;
    int rc;
    if (r->action[0] == 0 || strchr("CRUDE", r->action[0]) == NULL) return HV_EINVAL;
    if (w->n > 0 && hfmt != w->hfmt) return HV_EINVAL;
    for (int i = 0; i < HV__BLOCK_NSTR; i++) {
        if (w->n > 0 && l[i] == w->l[i] && memcmp(s[i], w->s[i], l[i]) == 0) flags |= (unsigned char)(1u << i);
        else need += 10 + l[i] + 1;
    }
    if (need > HV__BLOCK_MAX_BYTES * 4u) return HV_ETOOBIG;
    if ((rc = hv_buf_reserve(out, need)) != HV_OK) return rc;
    p = start = (unsigned char *)out->data + out->len;
    if (w->n == 0) {
        memcpy(p, hfmt == HV__HASH_BIN ? "HVB3" : "HVB2", 4);
        w->hfmt = hfmt;
        p += 4;
    }
    *p++ = flags;
    *p++ = (unsigned char)r->action[0];
    p = put_varint(p, zigzag((int64_t)((uint64_t)r->seq - (uint64_t)w->seq)));
    p = put_varint(p, zigzag((int64_t)((uint64_t)r->recorded - (uint64_t)w->recorded)));
    p = put_varint(p, zigzag(r->outcome));
    for (int i = 0; i < HV__BLOCK_NSTR; i++) {
        if (flags & (1u << i)) continue;
        p = put_varint(p, l[i]);
        if (l[i] > 0) memcpy(p, s[i], l[i]);
        p[l[i]] = '\0';
        p += l[i] + 1;
    }
    if (bin != NULL) {
        memcpy(p, bin, 32);
        p += 32;
    } else {
        for (int i = 0; i < 32; i++) {
            int hi = hexval(r->hash[2 * i]), lo = hexval(r->hash[2 * i + 1]);
            if (hi < 0 || lo < 0) return HV_EINVAL; /* out->len not advanced: nothing written */
            *p++ = (unsigned char)(hi << 4 | lo);
        }
    }
    out->len += (size_t)(p - start);
    out->data[out->len] = '\0';
    w->n++;
    w->seq = r->seq;
    w->recorded = r->recorded;
    for (int i = 0; i < HV__BLOCK_NSTR; i++) {
        w->s[i] = s[i];
        w->l[i] = l[i];
    }
    return HV_OK;
}

int hv__audit_block_put(hv_buf_t *out, hv__ablock_wr_t *w, const hv__arec_t *r, const unsigned char *bin) {
    const char *s[HV__BLOCK_NSTR] = {r->subtype, r->who, r->role, r->ip, r->patients, r->content};
    size_t l[HV__BLOCK_NSTR];
    for (int i = 0; i < HV__BLOCK_NSTR; i++) {
        if (s[i] == NULL) s[i] = "";
        l[i] = i == HV__BLOCK_NSTR - 1 ? r->clen : strlen(s[i]);
    }
    return block_put_l(out, w, r, s, l, bin);
}

void hv__audit_block_rd_init(hv__ablock_rd_t *rd, const void *data, size_t len) {
    memset(rd, 0, sizeof(*rd));
    rd->p = data;
    rd->end = rd->p + len;
    rd->fmt = 1;
    if (len >= 4 && (memcmp(data, "HVB2", 4) == 0 || memcmp(data, "HVB3", 4) == 0)) {
        rd->fmt = ((const char *)data)[3] - '0';
        rd->p += 4;
    }
}

int hv__audit_block_next(hv__ablock_rd_t *rd, hv__arec_t *r) {
    const char **dst[HV__BLOCK_NSTR] = {&r->subtype, &r->who, &r->role, &r->ip, &r->patients, &r->content};
    const unsigned char *p = rd->p;
    uint64_t dseq, drec, outcome;
    unsigned char flags;
    size_t l[HV__BLOCK_NSTR];
    if (p == rd->end) return HV_ENOTFOUND;
    if (rd->fmt == 1) {
        size_t used = 0;
        if (hv__audit_block_decode(p, (size_t)(rd->end - p), &used, r) != HV_OK) return HV_EPROTO;
        r->hfmt = HV__HASH_TEXT;
        rd->p += used;
        rd->n++;
        return HV_OK;
    }
    if (rd->end - p < 2) return HV_EPROTO;
    flags = p[0];
    if ((flags & 0x80) != 0 || (rd->n == 0 && (flags & 0x3f) != 0)) return HV_EPROTO;
    if (p[1] == 0 || strchr("CRUDE", p[1]) == NULL) return HV_EPROTO;
    r->action[0] = (char)p[1];
    r->action[1] = '\0';
    r->breakglass = (flags >> 6) & 1;
    r->hfmt = rd->fmt == 3 ? HV__HASH_BIN : HV__HASH_TEXT;
    p += 2;
    if (get_varint(&p, rd->end, &dseq) != HV_OK || get_varint(&p, rd->end, &drec) != HV_OK ||
        get_varint(&p, rd->end, &outcome) != HV_OK)
        return HV_EPROTO;
    if (unzigzag(outcome) < INT32_MIN || unzigzag(outcome) > INT32_MAX) return HV_EPROTO;
    r->seq = (int64_t)((uint64_t)rd->seq + (uint64_t)unzigzag(dseq));
    r->recorded = (int64_t)((uint64_t)rd->recorded + (uint64_t)unzigzag(drec));
    r->outcome = (int)unzigzag(outcome);
    for (int i = 0; i < HV__BLOCK_NSTR; i++) {
        uint64_t n;
        if (flags & (1u << i)) {
            *dst[i] = rd->s[i];
            l[i] = rd->l[i];
            continue;
        }
        if (get_varint(&p, rd->end, &n) != HV_OK || n >= (uint64_t)(rd->end - p) || p[n] != '\0') return HV_EPROTO;
        if (i < HV__BLOCK_NSTR - 1 && memchr(p, '\0', (size_t)n) != NULL) return HV_EPROTO;
        *dst[i] = (const char *)p;
        l[i] = (size_t)n;
        p += n + 1;
    }
    if (rd->end - p < 32) return HV_EPROTO;
    for (int i = 0; i < 32; i++) {
        r->hash[2 * i] = hexd[p[i] >> 4];
        r->hash[2 * i + 1] = hexd[p[i] & 15];
    }
    r->hash[64] = '\0';
    r->clen = l[HV__BLOCK_NSTR - 1];
    rd->p = p + 32;
    rd->n++;
    rd->seq = r->seq;
    rd->recorded = r->recorded;
    for (int i = 0; i < HV__BLOCK_NSTR; i++) {
        rd->s[i] = *dst[i];
        rd->l[i] = l[i];
    }
    return HV_OK;
}

/* ---- appending ---- */

/* A small set of strings (open addressing), to write each who and patient once per block. */
typedef struct strset {
    const char **slot;
    size_t cap, n;
} strset_t;

static uint64_t fnv(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* 1 when s was added, 0 when already there, -1 out of memory. */
static int strset_add(strset_t *set, const char *s) {
    size_t i;
    if (2 * (set->n + 1) > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        const char **slot = hv_calloc(cap, sizeof(*slot));
        if (slot == NULL) return -1;
        for (size_t k = 0; k < set->cap; k++) {
            if (set->slot[k] == NULL) continue;
            for (i = fnv(set->slot[k]) & (cap - 1); slot[i] != NULL; i = (i + 1) & (cap - 1)) {}
            slot[i] = set->slot[k];
        }
        hv_free(set->slot);
        set->slot = slot;
        set->cap = cap;
    }
    for (i = fnv(s) & (set->cap - 1); set->slot[i] != NULL; i = (i + 1) & (set->cap - 1))
        if (strcmp(set->slot[i], s) == 0) return 0;
    set->slot[i] = s;
    set->n++;
    return 1;
}

static int insert_keys(hv_db_t *db, const char *sql, const strset_t *set, int64_t seq_first) {
    for (size_t i = 0; i < set->cap; i++) {
        hv_db_stmt_t *st = NULL;
        int rc;
        if (set->slot[i] == NULL) continue;
        if ((rc = hv_db_prepare(db, sql, &st)) != HV_OK) return rc;
        hv_db_bind_text_static(st, 1, set->slot[i], strlen(set->slot[i]));
        hv_db_bind_int64(st, 2, seq_first);
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc != HV_OK) return rc;
    }
    return HV_OK;
}

/* Writes one block of the records from head up to (not including) stop, in format 3: each
 * record's hash over the binary input (chain.c hv__audit_hash3), chained on the previous
 * digest's 32 bytes, so that no hash is turned into hex except those stored as text (a
 * checkpoint's, the block's last). */
static int write_block(hv_db_t *db, hv__aev_t *head, hv__aev_t *stop, char prev[65], int64_t *next_seq,
                       hv_buf_t *buf) {
    hv__audit_t *a = head->a;
    strset_t who = {0}, pat = {0};
    hv_db_stmt_t *st = NULL;
    hv__ablock_wr_t w;
    hv__arec_t r;
    char block_prev[65], *hash = r.hash;
    unsigned char bin[32];
    int64_t first = *next_seq, seq = first, rmin = INT64_MAX, rmax = INT64_MIN, n = 0;
    const char **last_pats = NULL;
    int rc = HV_OK;
    memcpy(block_prev, prev, 65);
    /* The chain's tail is a hash; one that is not (a digest that could not be made, see
     * chain.c) is linked as 32 0xff bytes so that auditing goes on and verify reports the
     * chain at that record, as it would anyway. */
    if (!hv__audit_unhex32(prev, bin)) memset(bin, 0xff, sizeof(bin));
    hv_buf_reset(buf);
    hv__audit_block_wr_init(&w);
    memset(&r, 0, sizeof(r));
    r.hfmt = HV__HASH_BIN;
    for (hv__aev_t *ev = head; ev != stop && rc == HV_OK; ev = ev->next, seq++, n++) {
        const char *s[HV__BLOCK_NSTR] = {ev->subtype, ev->who, ev->role, ev->ip, ev->patients_csv,
                                         ev->content.data ? ev->content.data : ""};
        size_t l[HV__BLOCK_NSTR];
        for (int i = 0; i < HV__BLOCK_NSTR - 1; i++) {
            if (s[i] == NULL) s[i] = "";
            l[i] = strlen(s[i]);
        }
        l[HV__BLOCK_NSTR - 1] = ev->content.data ? ev->content.len : 0;
        r.seq = seq;
        r.recorded = ev->recorded;
        r.outcome = ev->outcome;
        r.breakglass = ev->breakglass != NULL && ev->breakglass[0] ? 1 : 0;
        r.action[0] = ev->action[0];
        /* bin holds the previous record's digest on entry and this record's after. */
        hv__audit_hash3(bin, seq, ev->recorded, ev->outcome, ev->action[0], s, l, bin);
        /* A user or patient list the record before had is in the sets already (a run of
         * one user's reads shares its patient list: journal.c decode_src). */
        int same_who = w.n > 0 && l[1] == w.l[1] && memcmp(s[1], w.s[1], l[1]) == 0;
        rc = block_put_l(buf, &w, &r, s, l, bin);
        if (rc == HV_OK && !same_who && strset_add(&who, s[1]) < 0) rc = HV_ENOMEM;
        for (size_t i = 0; rc == HV_OK && ev->patients != last_pats && i < ev->np; i++)
            if (strset_add(&pat, ev->patients[i]) < 0) rc = HV_ENOMEM;
        last_pats = ev->patients;
        if (rc == HV_OK && a != NULL && a->key != NULL && a->checkpoint_every > 0 && seq % a->checkpoint_every == 0) {
            char sig[160];
            int64_t now = (int64_t)hv_now_ms();
            hv_hex(bin, 32, hash);
            rc = hv__audit_sign(a->key, seq, hash, now, sig, sizeof(sig));
            if (rc == HV_OK)
                rc = hv_db_prepare(db, "INSERT INTO audit_checkpoint (seq, hash, signed_at, sig) VALUES ($1, $2, $3, $4)",
                                   &st);
            if (rc == HV_OK) {
                hv_db_bind_int64(st, 1, seq);
                hv_db_bind_text(st, 2, hash, 64);
                hv_db_bind_int64(st, 3, now);
                hv_db_bind_text(st, 4, sig, strlen(sig));
                rc = hv_db_step(st);
                hv_db_done(st);
            }
        }
        if (ev->recorded < rmin) rmin = ev->recorded;
        if (ev->recorded > rmax) rmax = ev->recorded;
        ev->seq = seq;
    }
    if (rc == HV_OK) hv_hex(bin, 32, prev);
    if (rc == HV_OK)
        rc = hv_db_prepare(db,
                           "INSERT INTO audit_block (seq_first, seq_last, recorded_min, recorded_max, n, records,"
                           " prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                           &st);
    if (rc == HV_OK) {
        hv_db_bind_int64(st, 1, first);
        hv_db_bind_int64(st, 2, seq - 1);
        hv_db_bind_int64(st, 3, rmin);
        hv_db_bind_int64(st, 4, rmax);
        hv_db_bind_int64(st, 5, n);
        hv_db_bind_blob(st, 6, buf->data, buf->len);
        hv_db_bind_text_static(st, 7, block_prev, 64);
        hv_db_bind_text_static(st, 8, prev, 64);
        rc = hv_db_step(st);
        hv_db_done(st);
    }
    if (rc == HV_OK)
        rc = insert_keys(db, "INSERT OR IGNORE INTO audit_block_who (who, seq_first) VALUES ($1, $2)", &who, first);
    if (rc == HV_OK)
        rc = insert_keys(db, "INSERT OR IGNORE INTO audit_block_patient (patient, seq_first) VALUES ($1, $2)", &pat,
                         first);
    hv_free(who.slot);
    hv_free(pat.slot);
    if (rc == HV_OK) *next_seq = seq;
    return rc;
}

int hv__audit_append_blocks(hv_db_t *db, hv__aev_t *head, char prev[65], int64_t *next_seq) {
    hv_buf_t buf;
    int rc = HV_OK;
    hv_buf_init(&buf, 0);
    while (head != NULL && rc == HV_OK) {
        /* A block ends after HV__BLOCK_MAX_RECORDS records or once it passes
         * HV__BLOCK_MAX_BYTES (a record's content is bounded on its own). */
        hv__aev_t *stop = head;
        size_t n = 0, bytes = 0;
        while (stop != NULL && n < HV__BLOCK_MAX_RECORDS && bytes < HV__BLOCK_MAX_BYTES) {
            bytes += 128 + stop->content.len + strlen(stop->patients_csv ? stop->patients_csv : "");
            stop = stop->next;
            n++;
        }
        rc = write_block(db, head, stop, prev, next_seq, &buf);
        head = stop;
    }
    hv_buf_release(&buf);
    return rc;
}

/* ---- reading ---- */

/* SQLite from migration 6 on (a store opened under an older schema, as the migration
 * tests do, has rows only). */
int hv__audit_has_blocks(hv_db_t *db) {
    hv_db_stmt_t *st = NULL;
    int rc;
    if (hv_db_kind(db) == HV_DB_PG) return 0;
    if (hv_db_prepare(db, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_block'", &st) != HV_OK)
        return 0;
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc == HV_DB_ROW;
}

/* One decoded record of a block being scanned: the members of hv__arec_t before prev (seq
 * through clen; strings point into the block's BLOB) and its hash — what a scan keeps of
 * each record between decoding the block and handing the records out. */
#define HV__AREC_HEAD offsetof(hv__arec_t, prev)
typedef struct brec {
    unsigned char head[HV__AREC_HEAD];
    char hash[65];
} brec_t;

static void brec_set(brec_t *b, const hv__arec_t *r) {
    memcpy(b->head, r, HV__AREC_HEAD);
    memcpy(b->hash, r->hash, 65);
}

/* r's record members from b, with prev (hex, or NULL for "") as the hash before it. */
static void brec_get(const brec_t *b, const char *prev, hv__arec_t *r) {
    size_t pl = prev ? strnlen(prev, 64) : 0;
    memcpy(r, b->head, HV__AREC_HEAD);
    memcpy(r->hash, b->hash, 65);
    if (pl > 0) memcpy(r->prev, prev, pl);
    r->prev[pl] = '\0';
}

int hv__audit_block_scan(hv_db_t *db, const hv__ascan_t *f, int (*cb)(const hv__arec_t *r, void *ud), void *ud) {
    static const char *const sql[2] = {
        "SELECT seq_first, seq_last, recorded_max, records, prev_hash, hash FROM audit_block"
        " WHERE seq_last >= $1 AND seq_first < $2 AND recorded_max >= $3 AND recorded_min < $4"
        " AND ($5 = '' OR seq_first IN (SELECT seq_first FROM audit_block_who WHERE who = $5))"
        " AND ($6 = '' OR seq_first IN (SELECT seq_first FROM audit_block_patient WHERE patient = $6))"
        " AND seq_first >= $7 ORDER BY seq_first",
        "SELECT seq_first, seq_last, recorded_max, records, prev_hash, hash FROM audit_block"
        " WHERE seq_last >= $1 AND seq_first < $2 AND recorded_max >= $3 AND recorded_min < $4"
        " AND ($5 = '' OR seq_first IN (SELECT seq_first FROM audit_block_who WHERE who = $5))"
        " AND ($6 = '' OR seq_first IN (SELECT seq_first FROM audit_block_patient WHERE patient = $6))"
        " AND seq_first >= $7 ORDER BY seq_first DESC",
    };
    hv_db_stmt_t *st = NULL;
    brec_t *recs = NULL;
    size_t ncap;
    int rc, stop = 0;
    int64_t lo = INT64_MIN;
    if (!hv__audit_has_blocks(db)) return HV_OK;
    if (f->seq_ge > INT64_MIN) {
        /* The block that holds seq_ge (its seq_first, the table's key) bounds the walk:
         * seq_last is not indexed. */
        rc = hv_db_prepare(db, "SELECT seq_first FROM audit_block WHERE seq_first <= $1 ORDER BY seq_first DESC LIMIT 1",
                           &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_int64(st, 1, f->seq_ge);
        rc = hv_db_step(st);
        if (rc == HV_DB_ROW) lo = hv_db_column_int64(st, 0);
        hv_db_done(st);
        if (rc < 0) return rc;
        if (rc != HV_DB_ROW) lo = f->seq_ge;
        st = NULL;
    }
    rc = hv_db_prepare(db, sql[f->desc ? 1 : 0], &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, f->seq_ge);
    hv_db_bind_int64(st, 2, f->seq_lt);
    hv_db_bind_int64(st, 3, f->from);
    hv_db_bind_int64(st, 4, f->to);
    hv_db_bind_text(st, 5, f->who ? f->who : "", f->who ? strlen(f->who) : 0);
    hv_db_bind_text(st, 6, f->patient ? f->patient : "", f->patient ? strlen(f->patient) : 0);
    hv_db_bind_int64(st, 7, lo);
    /* Room for the records of one block, grown to the largest block met (at most
     * HV__BLOCK_MAX_RECORDS): most stores' blocks are far smaller than the cap. */
    ncap = 64;
    recs = hv_malloc(ncap * sizeof(*recs));
    if (recs == NULL) {
        hv_db_done(st);
        return HV_ENOMEM;
    }
    while (!stop && (rc = hv_db_step(st)) == HV_DB_ROW) {
        size_t len = 0, n = 0;
        const unsigned char *data = hv_db_column_blob(st, 3, &len);
        const char *bprev = hv_db_column_text(st, 4, NULL);
        const char *bhash = hv_db_column_text(st, 5, NULL);
        hv__ablock_rd_t rd;
        hv__arec_t r;
        int bad = 0, k;
        memset(&r, 0, sizeof(r));
        r.block_first = hv_db_column_int64(st, 0);
        r.block_last = hv_db_column_int64(st, 1);
        r.block_recorded_max = hv_db_column_int64(st, 2);
        snprintf(r.block_hash, sizeof(r.block_hash), "%s", bhash ? bhash : "");
        /* The whole block is decoded first (format 2 records are coded against the one
         * before them), so that a block that does not decode is known before any of it
         * is handed out, and a newest-first walk can go backwards. */
        hv__audit_block_rd_init(&rd, data, len);
        while ((k = hv__audit_block_next(&rd, &r)) == HV_OK) {
            if (n == HV__BLOCK_MAX_RECORDS) {
                bad = 1;
                break;
            }
            if (n == ncap) {
                brec_t *more = hv_realloc(recs, 2 * ncap * sizeof(*recs));
                if (more == NULL) {
                    rc = HV_ENOMEM;
                    stop = 1;
                    break;
                }
                recs = more;
                ncap *= 2;
            }
            brec_set(&recs[n++], &r);
        }
        if (rc == HV_ENOMEM) break;
        if (k == HV_EPROTO) bad = 1;
        if (bad && f->on_damaged != NULL) {
            /* Readers that check the chain are told where the block stops making sense:
             * the records before are handed out first (in order). */
            for (size_t i = 0; i < n && !stop; i++) {
                brec_get(&recs[i], i == 0 ? bprev : recs[i - 1].hash, &r);
                r.last_in_block = 0;
                if (r.seq >= f->seq_ge && r.seq < f->seq_lt) stop = cb(&r, ud);
            }
            if (!stop) stop = f->on_damaged(r.block_first, n, ud);
            continue;
        }
        if (bad) continue; /* listings skip what cannot be read; verify reports it */
        for (size_t j = 0; j < n && !stop; j++) {
            size_t i = f->desc ? n - 1 - j : j;
            brec_get(&recs[i], i == 0 ? bprev : recs[i - 1].hash, &r);
            if (r.seq < f->seq_ge || r.seq >= f->seq_lt || r.recorded < f->from || r.recorded >= f->to) continue;
            r.last_in_block = i == n - 1;
            stop = cb(&r, ud);
        }
    }
    hv_free(recs);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

void hv__audit_scan_init(hv__ascan_t *f) {
    memset(f, 0, sizeof(*f));
    f->seq_ge = INT64_MIN;
    f->seq_lt = INT64_MAX;
    f->from = INT64_MIN;
    f->to = INT64_MAX;
}

typedef struct find {
    int64_t seq;
    hv__arec_t *out;
    int found;
} find_t;

static int find_cb(const hv__arec_t *r, void *ud) {
    find_t *f = ud;
    if (r->seq != f->seq) return 0;
    *f->out = *r;
    f->found = 1;
    return 1;
}

int hv__audit_block_record(hv_db_t *db, int64_t seq, hv__arec_t *out) {
    hv__ascan_t f;
    find_t x = {seq, out, 0};
    int rc;
    hv__audit_scan_init(&f);
    f.seq_ge = seq;
    f.seq_lt = seq + 1;
    rc = hv__audit_block_scan(db, &f, find_cb, &x);
    if (rc != HV_OK) return rc;
    return x.found ? HV_OK : HV_ENOTFOUND;
}

int hv__audit_block_tail(hv_db_t *db, char prev[65], int64_t *next_seq) {
    if (!hv__audit_has_blocks(db)) return HV_ENOTFOUND;
    return hv__audit_read_tail(db, "SELECT seq_last, hash FROM audit_block ORDER BY seq_first DESC LIMIT 1",
                               prev, next_seq);
}
