/*
 * journal.c — the audit journal: an append-only file in front of the audit store, so
 * that an answer can leave as soon as its AuditEvent is safe from a process crash,
 * without waiting for the store's group commit (audit.synchronous NORMAL and OFF).
 *
 * Why: holding every answer until the storage thread has committed its batch costs
 * two thread hand-offs and a commit per round of requests; on a loaded machine that
 * made audited reads run at a third of unaudited ones. A write(2) to a file in the
 * page cache survives a `kill -9` of the engine (the kernel owns the bytes once the
 * call returns), costs microseconds, and needs no other thread. The storage thread
 * still appends the records to the hash chain in batches; each batch also records
 * the highest journal id it committed (table audit_journal_pos, same transaction),
 * and at start the engine appends every journal record past that id before it
 * serves anything. A power loss may lose the journal's last records (no fsync), as
 * the store itself may with synchronous NORMAL; audit.synchronous FULL keeps the
 * answer until its record's batch is on disk instead.
 *
 * Two files, <data>/audit.journal.0 and .1, of HV__JOURNAL_SIZE bytes each, are mapped
 * into memory (MAP_SHARED): appending a record is a copy into the page cache, no system
 * call — the pages belong to the kernel, so the record outlives a crash of the process.
 * Writing goes to one file until it is full, then to the other once every record of
 * the other has committed (otherwise the record is not journaled and its answer waits
 * for the commit, as with FULL). A file whose records have all committed is reset when a
 * batch commits. Resetting does not clear the file: it raises the file's generation
 * (header), and a frame counts only when its CRC, seeded with the generation, matches.
 *
 * File: "HVJM" | u32 version 1 | u64 generation | zeros to byte 64 | frames.
 * Frame (all integers little-endian):
 *   "HVJ2" | u32 payload length | u32 check of the generation and the payload (frame_check:
 *            a 64-bit multiply-xorshift over the payload's 8-byte words, seeded with the
 *            generation, folded to 32 bits — a torn or stale frame fails it but for a 2^-32
 *            chance, as with a CRC, at a tenth of zlib's CRC-32's cost per record)
 *   "HVJ1" frames (written before session 5) carry the CRC-32 (zlib) of the generation
 *            (8 bytes) then the payload instead; they are still read, so a journal left by
 *            an older binary replays.
 *   payload: u64 jid | i64 recorded (ms) | i32 outcome | then each of action, subtype,
 *            who, role, ip, patients (comma-separated), breakglass, etype, eid, content
 *            as u32 length + bytes.
 *   "HVJ3" (session 6) frames are checked as HVJ2 ones; their payload holds the record's
 *            facts instead of its stored content: u64 jid | i64 recorded | i32 outcome |
 *            then action, subtype, who, role, ip, patients, breakglass, etype, eid, client,
 *            purpose, query, detail, source as u32 length + bytes + a NUL byte
 *            (HV__REC_NSTR strings, the order of hv__arec_src_t; the NUL lets the storage
 *            thread use them where they are). The loop thread writes them straight from the
 *            request (record.c: no event object, no JSON); the storage thread decodes the
 *            frame from the mapped file and builds the stored content (event.c
 *            hv__aev_build_content), so the trail holds the same bytes and hashes as
 *            before.
 * The first frame that is short, zero or fails its CRC ends the file.
 */
#include "config.h"
#include "destinations/audit/audit_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define HV__JOURNAL_SIZE (8u * 1024 * 1024)
#define HV__JOURNAL_HEAD 64u
#define HV__JOURNAL_MAX_FRAME (HV__JOURNAL_SIZE - HV__JOURNAL_HEAD)
#define HV__JOURNAL_NSTR 10
#define HV__JOURNAL_SWITCH (256u * 1024)

struct hv__journal {
    int fd[2];
    unsigned char *map[2];
    int cur;
    uint64_t bytes[2]; /* the end of the frames of each file */
    uint64_t gen[2];
    int64_t maxjid[2]; /* the highest jid written to each file */
    int64_t next_jid;
    int64_t committed;
    char name[40]; /* this journal's key in audit_journal_pos (engines may share a database) */
    hv_buf_t frame; /* scratch */
};

const char *hv__journal_name(const hv__journal_t *j) { return j->name; }

/* The journal's name: 32 random hex digits kept in <data>/audit.journal.id, made at first
 * use, so that engines sharing one PostgreSQL database keep apart positions. */
static int journal_name(const char *dir, char out[40], hv_error_t *err) {
    char path[4096];
    unsigned char rnd[16];
    int fd;
    ssize_t n;
    snprintf(path, sizeof(path), "%s/audit.journal.id", dir ? dir : ".");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, out, 32);
        close(fd);
        if (n == 32 && strspn(out, "0123456789abcdef") >= 32) {
            out[32] = '\0';
            return HV_OK;
        }
        hv_error_set(err, HV_ECONFIG, path, "not an audit journal id (32 hex digits)");
        return HV_ECONFIG;
    }
    hv_random_fast(rnd, sizeof(rnd));
    hv_hex(rnd, sizeof(rnd), out);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, out, 32) != 32 || fsync(fd) != 0) {
        if (fd >= 0) close(fd);
        hv_error_set(err, HV_EIO, path, "cannot create the audit journal id: %s", strerror(errno));
        return HV_EIO;
    }
    close(fd);
    return HV_OK;
}

static uint32_t frame_crc(uint64_t gen, const unsigned char *payload, size_t n) {
    unsigned char g[8];
    hv__audit_put64(g, gen);
    return (uint32_t)crc32(crc32(0L, g, 8), payload, (uInt)n);
}

static uint32_t frame_check(uint64_t gen, const unsigned char *payload, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ gen;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        h = (h ^ hv__audit_get64(payload + i)) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    if (i < n) {
        unsigned char last[8] = {0};
        memcpy(last, payload + i, n - i);
        h = (h ^ hv__audit_get64(last)) * 0xFF51AFD7ED558CCDULL;
        h ^= h >> 32;
    }
    h = (h ^ (uint64_t)n) * 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 29;
    return (uint32_t)(h ^ (h >> 32));
}

/* 1 when p (at least 12 bytes, plen payload bytes after them) is a valid frame of gen. */
static int frame_ok(const unsigned char *p, uint32_t plen, uint64_t gen) {
    if (memcmp(p, "HVJ2", 4) == 0 || memcmp(p, "HVJ3", 4) == 0) return frame_check(gen, p + 12, plen) == hv__audit_get32(p + 8);
    if (memcmp(p, "HVJ1", 4) == 0) return frame_crc(gen, p + 12, plen) == hv__audit_get32(p + 8);
    return 0;
}

/* The frame of ev: its strings and lengths, and its size in all (0 when too big). */
typedef struct frame_src {
    const char *s[HV__JOURNAL_NSTR];
    size_t l[HV__JOURNAL_NSTR];
    size_t need;
} frame_src_t;

static size_t frame_prepare(const hv__aev_t *ev, frame_src_t *f) {
    const char *s[HV__JOURNAL_NSTR] = {ev->action, ev->subtype, ev->who, ev->role, ev->ip, ev->patients_csv,
                                       ev->breakglass, ev->etype, ev->eid, ev->content.data};
    f->need = 12 + 20;
    for (int i = 0; i < HV__JOURNAL_NSTR; i++) {
        f->s[i] = s[i] == NULL ? "" : s[i];
        f->l[i] = i == HV__JOURNAL_NSTR - 1 ? (s[i] == NULL ? 0 : ev->content.len) : strlen(f->s[i]);
        f->need += 4 + f->l[i];
    }
    return f->need > HV__JOURNAL_MAX_FRAME ? 0 : f->need;
}

/* A frame's head (magic, payload length, the check left for last) and its payload's fixed
 * part; returns where the strings go. */
static unsigned char *frame_head(unsigned char *p, const char *magic, size_t need, int64_t jid, int64_t recorded,
                                 int outcome) {
    memcpy(p, magic, 4);
    hv__audit_put32(p + 4, (uint32_t)(need - 12));
    hv__audit_put64(p + 12, (uint64_t)jid);
    hv__audit_put64(p + 20, (uint64_t)recorded);
    hv__audit_put32(p + 28, (uint32_t)outcome);
    return p + 32;
}

/* Writes the frame (f->need bytes) at p. */
static void frame_write(unsigned char *p, const hv__aev_t *ev, const frame_src_t *f, uint64_t gen) {
    unsigned char *start = p;
    p = frame_head(p, "HVJ2", f->need, ev->jid, ev->recorded, ev->outcome);
    for (int i = 0; i < HV__JOURNAL_NSTR; i++) {
        hv__audit_put32(p, (uint32_t)f->l[i]);
        if (f->l[i] > 0) memcpy(p + 4, f->s[i], f->l[i]);
        p += 4 + f->l[i];
    }
    hv__audit_put32(start + 8, frame_check(gen, start + 12, f->need - 12));
}

int hv__journal_encode(const hv__aev_t *ev, uint64_t gen, hv_buf_t *out) {
    frame_src_t f;
    int rc;
    if (frame_prepare(ev, &f) == 0) return HV_ETOOBIG;
    if ((rc = hv_buf_reserve(out, f.need + 1)) != HV_OK) return rc;
    frame_write((unsigned char *)out->data + out->len, ev, &f, gen);
    out->len += f.need;
    out->data[out->len] = '\0';
    return HV_OK;
}

/* Splits "p1,p2" into ev->patients (arena), at most HV_AUDIT_MAX_PATIENTS. */
static int split_patients(hv__aev_t *ev) {
    const char *p = ev->patients_csv;
    size_t n = 0;
    ev->np = 0;
    size_t cap = 1;
    if (p[0] == '\0') return HV_OK;
    if (strchr(p, ',') == NULL) {
        /* One patient (most records): the list itself, which lives as long as ev. */
        if ((ev->patients = hv_arena_alloc(ev->arena, sizeof(*ev->patients))) == NULL) return HV_ENOMEM;
        ev->patients[0] = p;
        ev->np = 1;
        return HV_OK;
    }
    for (const char *q = p; (q = strchr(q, ',')) != NULL; q++) cap++;
    if (cap > HV_AUDIT_MAX_PATIENTS) cap = HV_AUDIT_MAX_PATIENTS;
    ev->patients = hv_arena_alloc(ev->arena, cap * sizeof(*ev->patients));
    if (ev->patients == NULL) return HV_ENOMEM;
    while (*p && n < cap) {
        size_t k = strcspn(p, ",");
        if (k > 0 && (ev->patients[n++] = hv_arena_strndup(ev->arena, p, k)) == NULL) return HV_ENOMEM;
        p += k;
        if (*p == ',') p++;
    }
    ev->np = n;
    return HV_OK;
}

/* Reads the facts of an HVJ3 payload (after jid, recorded, outcome: p to end) into ev. */
/* like (borrow only): the record decoded just before from the same copy of frames, or NULL.
 * A record's stored content is a function of its frame fields from break-glass to source
 * (one contiguous span of the frame) and its patient list of its patients field: when those
 * bytes are the previous record's, its content and list are shared instead of built again
 * (a run of repeated reads builds one). */
static int decode_src(const unsigned char *p, const unsigned char *end, hv__aev_t *ev, int borrow,
                      const hv__aev_t *like) {
    const char **dst[HV__REC_NSTR] = {NULL,        &ev->subtype, &ev->who,   &ev->role,   &ev->ip,
                                      &ev->patients_csv, &ev->breakglass, &ev->etype, &ev->eid, &ev->client,
                                      &ev->purpose, &ev->query,  &ev->detail, &ev->source};
    size_t plen = 0;
    for (int i = 0; i < HV__REC_NSTR; i++) {
        uint32_t l;
        if (i == HV__REC_BREAKGLASS) ev->cspan = p;
        if (end - p < 4) return HV_EPROTO;
        l = hv__audit_get32(p);
        p += 4;
        if ((size_t)(end - p) <= l || p[l] != '\0') return HV_EPROTO;
        if (i == HV__REC_PATIENTS) plen = l;
        if (i == 0) {
            if (l != 1 || strchr("CRUDE", p[0]) == NULL || p[0] == 0) return HV_EPROTO;
            ev->action[0] = (char)p[0];
            ev->action[1] = '\0';
        } else if (l == 0) {
            *dst[i] = "";
        } else if (borrow) {
            *dst[i] = (const char *)p; /* a frame this process wrote: no NUL inside */
        } else {
            if (memchr(p, '\0', l) != NULL) return HV_EPROTO;
            if ((*dst[i] = hv_arena_strndup(ev->arena, (const char *)p, l)) == NULL) return HV_ENOMEM;
        }
        p += l + 1;
    }
    if (p != end) return HV_EPROTO;
    ev->cspan_len = (size_t)(end - ev->cspan);
    if (borrow && like != NULL && like->np > 0 && plen == strlen(like->patients_csv) &&
        memcmp(ev->patients_csv, like->patients_csv, plen) == 0) {
        ev->patients = like->patients;
        ev->np = like->np;
    } else if (split_patients(ev) != HV_OK) {
        return HV_ENOMEM;
    }
    if (borrow && like != NULL && like->cspan_len == ev->cspan_len && like->content.data != NULL &&
        memcmp(like->cspan, ev->cspan, ev->cspan_len) == 0) {
        memset(&ev->content, 0, sizeof(ev->content));
        ev->content.data = like->content.data;
        ev->content.len = like->content.len;
        return HV_OK;
    }
    return borrow ? hv__aev_content_arena(ev) : hv__aev_build_content(ev);
}

/* The payload of a frame whose check passed (or that this process wrote): kind is
 * p[3] ('1', '2': stored content; '3': facts). */
static int decode_payload(const unsigned char *p, uint32_t plen, hv__aev_t *ev, int borrow, const hv__aev_t *like) {
    const unsigned char *end = p + 12 + plen;
    const char **dst[HV__JOURNAL_NSTR] = {NULL, &ev->subtype, &ev->who, &ev->role, &ev->ip, &ev->patients_csv,
                                          &ev->breakglass, &ev->etype, &ev->eid, NULL};
    int kind = p[3];
    ev->jid = (int64_t)hv__audit_get64(p + 12);
    ev->recorded = (int64_t)hv__audit_get64(p + 20);
    ev->outcome = (int32_t)hv__audit_get32(p + 28);
    p += 32;
    if (kind == '3') return decode_src(p, end, ev, borrow, like);
    for (int i = 0; i < HV__JOURNAL_NSTR; i++) {
        uint32_t l;
        if (end - p < 4) return HV_EPROTO;
        l = hv__audit_get32(p);
        p += 4;
        if ((size_t)(end - p) < l) return HV_EPROTO;
        if (i == 0) {
            if (l != 1 || strchr("CRUDE", p[0]) == NULL || p[0] == 0) return HV_EPROTO;
            ev->action[0] = (char)p[0];
            ev->action[1] = '\0';
        } else if (i == HV__JOURNAL_NSTR - 1) {
            hv_buf_reset(&ev->content);
            if (hv_buf_append(&ev->content, (const char *)p, l) != HV_OK) return HV_ENOMEM;
        } else {
            if (memchr(p, '\0', l) != NULL) return HV_EPROTO;
            if ((*dst[i] = hv_arena_strndup(ev->arena, (const char *)p, l)) == NULL) return HV_ENOMEM;
        }
        p += l;
    }
    if (p != end) return HV_EPROTO;
    ev->client = ev->purpose = ev->query = ev->detail = ev->source = "";
    return split_patients(ev);
}

int hv__journal_decode(const char *data, size_t len, uint64_t gen, size_t *used, hv__aev_t *ev) {
    const unsigned char *p = (const unsigned char *)data;
    uint32_t plen;
    int rc;
    if (len < 12 || (memcmp(p, "HVJ3", 4) != 0 && memcmp(p, "HVJ2", 4) != 0 && memcmp(p, "HVJ1", 4) != 0))
        return HV_EPROTO;
    plen = hv__audit_get32(p + 4);
    if (plen < 20 || plen > HV__JOURNAL_MAX_FRAME || len - 12 < plen) return HV_EPROTO;
    if (!frame_ok(p, plen, gen)) return HV_EPROTO;
    if ((rc = decode_payload(p, plen, ev, 0, NULL)) != HV_OK) return rc;
    *used = 12 + (size_t)plen;
    return HV_OK;
}

int hv__journal_decode_own(const unsigned char *frame, size_t *used, hv__aev_t *ev, const hv__aev_t *like) {
    uint32_t plen = hv__audit_get32(frame + 4);
    int rc;
    if (memcmp(frame, "HVJ3", 4) != 0 || plen < 20 || plen > HV__JOURNAL_MAX_FRAME) return HV_EPROTO;
    if ((rc = decode_payload(frame, plen, ev, 1, like)) != HV_OK) return rc;
    *used = 12 + (size_t)plen;
    return HV_OK;
}

static void jpath(const char *dir, int i, char *out, size_t n) {
    snprintf(out, n, "%s/audit.journal.%d", dir ? dir : ".", i);
}

/* Starts file i over: a new generation (above both files'), no frames. */
static void reset_file(hv__journal_t *j, int i) {
    uint64_t g = (j->gen[0] > j->gen[1] ? j->gen[0] : j->gen[1]) + 1;
    hv__audit_put64(j->map[i] + 8, g);
    j->gen[i] = g;
    j->bytes[i] = HV__JOURNAL_HEAD;
    j->maxjid[i] = 0;
}

int hv__journal_open(const char *data_dir, hv__journal_t **out, hv_error_t *err) {
    hv__journal_t *j = hv_calloc(1, sizeof(*j));
    char path[4096];
    if (j == NULL) return HV_ENOMEM;
    j->fd[0] = j->fd[1] = -1;
    hv_buf_init(&j->frame, HV__JOURNAL_MAX_FRAME);
    for (int i = 0; i < 2; i++) {
        struct stat st;
        void *m;
        jpath(data_dir, i, path, sizeof(path));
        j->fd[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (j->fd[i] < 0 || fstat(j->fd[i], &st) != 0 ||
            (st.st_size != (off_t)HV__JOURNAL_SIZE && ftruncate(j->fd[i], (off_t)HV__JOURNAL_SIZE) != 0)) {
            hv_error_set(err, HV_EIO, path, "cannot open the audit journal: %s", strerror(errno));
            hv__journal_close(j);
            return HV_EIO;
        }
        m = mmap(NULL, HV__JOURNAL_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, j->fd[i], 0);
        if (m == MAP_FAILED) {
            hv_error_set(err, HV_EIO, path, "cannot map the audit journal: %s", strerror(errno));
            hv__journal_close(j);
            return HV_EIO;
        }
        j->map[i] = m;
        if (memcmp(j->map[i], "HVJM", 4) != 0) {
            /* New (or not ours): an empty journal of generation 1. */
            memset(j->map[i], 0, HV__JOURNAL_HEAD);
            memcpy(j->map[i], "HVJM", 4);
            hv__audit_put32(j->map[i] + 4, 1);
            hv__audit_put64(j->map[i] + 8, 1);
        }
        j->gen[i] = hv__audit_get64(j->map[i] + 8);
        j->bytes[i] = HV__JOURNAL_HEAD;
    }
    if (journal_name(data_dir, j->name, err) != HV_OK) {
        hv__journal_close(j);
        return HV_EIO;
    }
    j->next_jid = 1;
    *out = j;
    return HV_OK;
}

void hv__journal_close(hv__journal_t *j) {
    if (j == NULL) return;
    for (int i = 0; i < 2; i++) {
        if (j->map[i] != NULL) munmap(j->map[i], HV__JOURNAL_SIZE);
        if (j->fd[i] >= 0) close(j->fd[i]);
    }
    hv_buf_release(&j->frame);
    hv_free(j);
}

int hv__journal_pos(hv_db_t *db, const char *name, int64_t *jid) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT jid FROM audit_journal_pos WHERE journal = $1", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, name, strlen(name));
    *jid = 0;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) *jid = hv_db_column_int64(st, 0);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

int hv__journal_set_pos(hv_db_t *db, const char *name, int64_t jid) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "INSERT INTO audit_journal_pos (journal, jid) VALUES ($1, $2) ON CONFLICT (journal)"
                           " DO UPDATE SET jid = excluded.jid WHERE excluded.jid > audit_journal_pos.jid",
                           &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, name, strlen(name));
    hv_db_bind_int64(st, 2, jid);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc;
}

/* The first jid of file i, 0 when it holds no frame. */
static int64_t first_jid(const hv__journal_t *j, int i) {
    const unsigned char *p = j->map[i] + HV__JOURNAL_HEAD;
    uint32_t plen = hv__audit_get32(p + 4);
    if (plen < 20 || plen > HV__JOURNAL_MAX_FRAME - 12 || !frame_ok(p, plen, j->gen[i])) return 0;
    return (int64_t)hv__audit_get64(p + 12);
}

/* Appends the records of a list (blocks on SQLite, rows on PostgreSQL) and frees them. */
static int replay_flush(hv_db_t *db, hv__aev_t **head, hv__aev_t **tail, size_t *n, char prev[65], int64_t *seq) {
    int rc = hv__audit_has_blocks(db) ? hv__audit_append_blocks(db, *head, prev, seq)
                                      : hv__audit_append_list(db, *head, prev, seq);
    for (hv__aev_t *ev = *head, *next; ev != NULL; ev = next) {
        next = ev->next;
        hv__aev_free(ev);
    }
    *head = *tail = NULL;
    *n = 0;
    return rc;
}

int hv__journal_replay(hv__journal_t *j, hv__audit_t *a, hv_db_t *db, int64_t *replayed) {
    int order[2] = {0, 1}, rc = HV_OK, began = 0;
    int64_t n = 0, top = 0, seq = 0;
    char prev[65];
    hv__aev_t *head = NULL, *tail = NULL;
    size_t nlist = 0;
    if ((rc = hv__journal_pos(db, j->name, &j->committed)) != HV_OK) return rc;
    top = j->committed;
    if (first_jid(j, 1) != 0 && (first_jid(j, 0) == 0 || first_jid(j, 1) < first_jid(j, 0))) {
        order[0] = 1;
        order[1] = 0;
    }
    for (int k = 0; k < 2 && rc == HV_OK; k++) {
        int i = order[k];
        size_t off = HV__JOURNAL_HEAD, used = 0;
        while (rc == HV_OK && off < HV__JOURNAL_SIZE) {
            hv__aev_t *ev = hv__aev_new(a);
            if (ev == NULL) {
                rc = HV_ENOMEM;
                break;
            }
            if (hv__journal_decode((const char *)j->map[i] + off, HV__JOURNAL_SIZE - off, j->gen[i], &used, ev) !=
                HV_OK) {
                hv__aev_free(ev);
                break; /* the end of this generation's frames */
            }
            off += used;
            if (ev->jid <= top) {
                hv__aev_free(ev);
                continue;
            }
            if (!began) {
                if ((rc = hv_db_begin(db)) == HV_OK) began = 1;
                if (rc == HV_OK && hv_db_kind(db) == HV_DB_PG) rc = hv_db_exec(db, HV__AUDIT_PG_LOCK);
                if (rc == HV_OK) rc = hv__audit_tail(db, prev, &seq);
            }
            top = ev->jid;
            n++;
            ev->next = NULL;
            if (tail) tail->next = ev;
            else head = ev;
            tail = ev;
            /* In batches of at most 512 records, as the storage thread writes them. */
            if (++nlist >= 512 && rc == HV_OK) rc = replay_flush(db, &head, &tail, &nlist, prev, &seq);
        }
    }
    if (head != NULL) {
        if (rc == HV_OK) rc = replay_flush(db, &head, &tail, &nlist, prev, &seq);
        for (hv__aev_t *ev = head, *next; ev != NULL; ev = next) {
            next = ev->next;
            hv__aev_free(ev);
        }
    }
    if (rc == HV_OK && began) rc = hv__journal_set_pos(db, j->name, top);
    if (began) {
        if (rc == HV_OK) rc = hv_db_commit(db);
        else hv_db_rollback(db);
    }
    if (rc != HV_OK) return rc;
    /* Everything in the files has committed: both start over. */
    reset_file(j, 0);
    reset_file(j, 1);
    j->committed = top;
    j->next_jid = top + 1;
    j->cur = 0;
    *replayed = n;
    return HV_OK;
}

/* Room for need bytes at the end of the current file (switching files as described
 * below); HV_OK with the place to write at *at. */
static int room(hv__journal_t *j, size_t need, unsigned char **at) {
    int other = 1 - j->cur;
    if (j->bytes[j->cur] + need > HV__JOURNAL_SIZE ||
        (j->bytes[j->cur] >= HV__JOURNAL_SWITCH && j->maxjid[other] <= j->committed)) {
        /* Full — or past HV__JOURNAL_SWITCH while the other file holds nothing uncommitted:
         * on to the other file once all its records have committed. Switching early keeps
         * the pages written few and hot: a page the kernel has written back is
         * write-protected again, and the next record on it takes a page fault (ext4
         * page_mkwrite); cycling through all 8 MiB under load cost a fault per ~4 records. */
        if (j->bytes[other] > HV__JOURNAL_HEAD && j->maxjid[other] > j->committed) return HV_EBUSY;
        reset_file(j, other);
        j->cur = other;
        if (j->bytes[j->cur] + need > HV__JOURNAL_SIZE) return HV_ETOOBIG;
    }
    *at = j->map[j->cur] + j->bytes[j->cur];
    return HV_OK;
}

int hv__journal_write(hv__journal_t *j, hv__aev_t *ev) {
    frame_src_t f;
    unsigned char *at = NULL;
    ev->jid = j->next_jid;
    /* Encoded straight into the mapped file: no copy of the frame. */
    if (frame_prepare(ev, &f) == 0 || room(j, f.need, &at) != HV_OK) {
        ev->jid = 0;
        return f.need == 0 ? HV_ETOOBIG : HV_EBUSY;
    }
    frame_write(at, ev, &f, j->gen[j->cur]);
    j->bytes[j->cur] += f.need;
    j->maxjid[j->cur] = ev->jid;
    j->next_jid++;
    return HV_OK;
}

/* The size of r's HVJ3 frame. */
static size_t src_size(const hv__arec_src_t *r) {
    size_t need = 12 + 20;
    for (int i = 0; i < HV__REC_NSTR; i++) need += 4 + r->l[i] + 1;
    return need;
}

/* Writes r's HVJ3 frame (src_size bytes) at at. */
static void src_write(unsigned char *at, const hv__arec_src_t *r, int64_t jid, uint64_t gen, size_t need) {
    unsigned char *p = frame_head(at, "HVJ3", need, jid, r->recorded, r->outcome);
    for (int i = 0; i < HV__REC_NSTR; i++) {
        hv__audit_put32(p, (uint32_t)r->l[i]);
        if (r->l[i] > 0) memcpy(p + 4, r->s[i], r->l[i]);
        p[4 + r->l[i]] = '\0';
        p += 4 + r->l[i] + 1;
    }
    hv__audit_put32(at + 8, frame_check(gen, at + 12, need - 12));
}

int hv__journal_encode_src(const hv__arec_src_t *r, int64_t jid, uint64_t gen, hv_buf_t *out) {
    size_t need = src_size(r);
    int rc;
    if (need > HV__JOURNAL_MAX_FRAME) return HV_ETOOBIG;
    if ((rc = hv_buf_reserve(out, need + 1)) != HV_OK) return rc;
    src_write((unsigned char *)out->data + out->len, r, jid, gen, need);
    out->len += need;
    out->data[out->len] = '\0';
    return HV_OK;
}

int hv__journal_write_src(hv__journal_t *j, const hv__arec_src_t *r, int64_t *jid, const unsigned char **frame,
                          size_t *flen) {
    size_t need = src_size(r);
    unsigned char *at = NULL;
    int rc;
    if (need > HV__JOURNAL_MAX_FRAME) return HV_ETOOBIG;
    if ((rc = room(j, need, &at)) != HV_OK) return rc;
    src_write(at, r, j->next_jid, j->gen[j->cur], need);
    j->bytes[j->cur] += need;
    j->maxjid[j->cur] = j->next_jid;
    *jid = j->next_jid++;
    *frame = at;
    *flen = need;
    return HV_OK;
}

void hv__journal_committed(hv__journal_t *j, int64_t jid) {
    if (jid > j->committed) j->committed = jid;
    for (int i = 0; i < 2; i++)
        if (j->bytes[i] > HV__JOURNAL_HEAD && j->maxjid[i] <= j->committed) reset_file(j, i);
}
