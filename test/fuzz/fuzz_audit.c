/*
 * fuzz_audit.c — libFuzzer target for the audit module's parsers
 * (destinations/audit/event.c): the POST /audit/log body, the patient scanner that
 * reads response and request bodies, and the FHIR request classifier.
 *
 * Invariants checked on every input:
 *   - an accepted POST body has action C/R/U/D/E, a 1-64 character subtype of
 *     [a-z0-9-_.], outcome 0/4/8/12, at most HV_AUDIT_MAX_PATIENTS valid FHIR ids; the
 *     AuditEvent built from it is JSON whose action and subtype code are those values,
 *     and a refused body leaves an error message;
 *   - the scanner returns distinct valid FHIR ids, no more than asked, never more than it
 *     counted, and the same ids when run twice;
 *   - the classifier, when it audits a path, names an action of C/R/U/D/E and a subtype;
 *   - the audit journal's frame decoder (journal.c; generation 0) accepts only frames that
 *     encode back to exactly the bytes it consumed (HVJ2; an older HVJ1 frame encodes to
 *     an HVJ2 frame of the same length that decodes to the same record), with action
 *     C/R/U/D/E, and never reads past the input; an HVJ3 frame (the request's facts)
 *     encodes back from the decoded members to exactly its bytes, and its stored content
 *     is the one hv__aev_build_content makes of them;
 *   - the block reader (block.c; formats 1, 2 and 3) never reads past the input, and the
 *     records it accepts, written again as a block (format 3 for records of a format 3
 *     block, format 2 for the others), read back to the same members (seq, recorded,
 *     outcome, action, break-glass, the six strings, the hash and its hash format).
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "destinations/audit/audit_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_id(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return 0;
    return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.") == n;
}

static void check_post(const char *s, size_t n) {
    hv_arena_t *a = hv_arena_new(0);
    hv_audit_event_t ev;
    hv_error_t err;
    const char *source = NULL;
    hv_error_clear(&err);
    if (hv__audit_parse_post(s, n, a, &ev, &source, &err) == HV_OK) {
        hv__audit_t st;
        hv__aev_t *e;
        struct json_object *o, *v;
        if (strchr("CRUDE", ev.action) == NULL || ev.action == 0) abort();
        if (ev.subtype == NULL || ev.subtype[0] == '\0' || strlen(ev.subtype) > 64) abort();
        if (strspn(ev.subtype, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != strlen(ev.subtype)) abort();
        if (ev.outcome != 0 && ev.outcome != 4 && ev.outcome != 8 && ev.outcome != 12) abort();
        if (ev.npatients > HV_AUDIT_MAX_PATIENTS) abort();
        for (size_t i = 0; i < ev.npatients; i++)
            if (!valid_id(ev.patients[i])) abort();
        memset(&st, 0, sizeof(st));
        e = hv__aev_new(&st);
        if (e == NULL) abort();
        e->source = source ? source : "";
        if (hv__aev_fill(e, &ev) != HV_OK) abort();
        {
            /* The stored compact record renders to the same AuditEvent as the filled event
             * once loaded back from its columns (what GET /audit/logs does). */
            hv_buf_t r1, r2;
            hv__aev_t *back = hv__aev_new(&st);
            hv_buf_init(&r1, 0);
            hv_buf_init(&r2, 0);
            if (back == NULL || !hv__aev_compact(e->content.data, e->content.len) || hv__aev_render(e, &r1) != HV_OK ||
                hv__aev_load(back, e->recorded, e->action, e->subtype, e->outcome, e->who, e->role, e->ip,
                             e->patients_csv, e->content.data, e->content.len) != HV_OK ||
                hv__aev_render(back, &r2) != HV_OK || strcmp(r1.data, r2.data) != 0)
                abort();
            hv__aev_free(back);
            o = json_tokener_parse(r1.data);
            hv_buf_release(&r1);
            hv_buf_release(&r2);
        }
        if (o == NULL) abort();
        if (!json_object_object_get_ex(o, "action", &v) || json_object_get_string(v)[0] != ev.action) abort();
        if (!json_object_object_get_ex(o, "subtype", &v) ||
            strcmp(hv_json_get_str(json_object_array_get_idx(v, 0), "code"), ev.subtype) != 0)
            abort();
        json_object_put(o);
        hv__aev_free(e);
    } else if (err.message[0] == '\0') {
        abort();
    }
    hv_arena_free(a);
}

static void check_scan(const char *s, size_t n) {
    hv_arena_t *a = hv_arena_new(0);
    const char *ids[8], *again[8];
    size_t k = 0, k2 = 0, found, found2;
    found = hv__audit_scan_patients(s, n, a, ids, &k, HV_ARRAY_LEN(ids));
    found2 = hv__audit_scan_patients(s, n, a, again, &k2, HV_ARRAY_LEN(again));
    if (k > HV_ARRAY_LEN(ids) || found < k || k != k2 || found != found2) abort();
    for (size_t i = 0; i < k; i++) {
        if (!valid_id(ids[i]) || strcmp(ids[i], again[i]) != 0) abort();
        for (size_t j = 0; j < i; j++)
            if (strcmp(ids[i], ids[j]) == 0) abort();
    }
    hv_arena_free(a);
}

static void check_classify(const char *s) {
    static const int methods[] = {HV_HTTP_GET, HV_HTTP_POST, HV_HTTP_PUT, HV_HTTP_PATCH, HV_HTTP_DELETE};
    for (size_t i = 0; i < HV_ARRAY_LEN(methods); i++) {
        char action = 0, type[64], id[80];
        const char *sub = NULL;
        if (hv__audit_classify(methods[i], s, &action, &sub, type, sizeof(type), id, sizeof(id))) {
            if (action == 0 || strchr("CRUDE", action) == NULL || sub == NULL || sub[0] == '\0') abort();
            if (strlen(type) >= sizeof(type) || strlen(id) >= sizeof(id)) abort();
        }
    }
}

static void check_journal(const char *s, size_t n) {
    hv__audit_t st;
    hv__aev_t *ev;
    size_t used = 0;
    memset(&st, 0, sizeof(st));
    ev = hv__aev_new(&st);
    if (ev == NULL) return;
    if (hv__journal_decode(s, n, 0, &used, ev) == HV_OK) {
        hv_buf_t out;
        hv_buf_init(&out, 0);
        if (used == 0 || used > n || strchr("CRUDE", ev->action[0]) == NULL || ev->action[0] == 0) abort();
        if (ev->np > HV_AUDIT_MAX_PATIENTS) abort();
        if (memcmp(s, "HVJ3", 4) == 0) {
            /* The facts back into a frame: the same bytes. */
            const char *m[HV__REC_NSTR] = {ev->action,  ev->subtype, ev->who,    ev->role,   ev->ip,
                                           ev->patients_csv, ev->breakglass, ev->etype, ev->eid, ev->client,
                                           ev->purpose, ev->query,   ev->detail, ev->source};
            hv__arec_src_t r;
            memset(&r, 0, sizeof(r));
            r.recorded = ev->recorded;
            r.outcome = ev->outcome;
            for (int i = 0; i < HV__REC_NSTR; i++) {
                r.s[i] = m[i];
                r.l[i] = strlen(m[i]);
            }
            if (hv__journal_encode_src(&r, ev->jid, 0, &out) != HV_OK || out.len != used ||
                memcmp(out.data, s, used) != 0)
                abort();
            if (ev->content.len < 7 || memcmp(ev->content.data, "{\"v\":2", 6) != 0) abort();
            hv_buf_release(&out);
            hv__aev_free(ev);
            return;
        }
        if (hv__journal_encode(ev, 0, &out) != HV_OK || out.len != used) abort();
        if (memcmp(s, "HVJ2", 4) == 0 && memcmp(out.data, s, used) != 0) abort();
        if (memcmp(s, "HVJ1", 4) == 0) {
            /* The same record, re-encoded as HVJ2: only the magic and the check differ. */
            hv__aev_t *ev2 = hv__aev_new(&st);
            size_t used2 = 0;
            if (ev2 == NULL) abort();
            if (hv__journal_decode(out.data, out.len, 0, &used2, ev2) != HV_OK || used2 != used) abort();
            if (memcmp(out.data + 12, s + 12, used - 12) != 0) abort();
            hv__aev_free(ev2);
        }
        hv_buf_release(&out);
    }
    hv__aev_free(ev);
}

static int same_rec(const hv__arec_t *a, const hv__arec_t *b) {
    return a->seq == b->seq && a->recorded == b->recorded && a->outcome == b->outcome &&
           a->breakglass == b->breakglass && a->action[0] == b->action[0] && strcmp(a->subtype, b->subtype) == 0 &&
           strcmp(a->who, b->who) == 0 && strcmp(a->role, b->role) == 0 && strcmp(a->ip, b->ip) == 0 &&
           strcmp(a->patients, b->patients) == 0 && a->clen == b->clen && memcmp(a->content, b->content, a->clen) == 0 &&
           strcmp(a->hash, b->hash) == 0 && a->hfmt == b->hfmt;
}

static void check_block(const uint8_t *data, size_t size) {
    enum { MAXR = 64 };
    hv__arec_t *recs = calloc(MAXR, sizeof(*recs)), r;
    hv__ablock_rd_t rd;
    hv__ablock_wr_t w;
    hv_buf_t b;
    size_t n = 0;
    int rc;
    if (recs == NULL) return;
    /* the reader sees exactly size bytes (a copy: ASan finds any read past them) */
    hv__audit_block_rd_init(&rd, data, size);
    while (n < MAXR && (rc = hv__audit_block_next(&rd, &recs[n])) == HV_OK) {
        if (rd.p > (const unsigned char *)data + size || strchr("CRUDE", recs[n].action[0]) == NULL ||
            recs[n].action[0] == 0 || strlen(recs[n].hash) != 64)
            abort();
        n++;
    }
    hv_buf_init(&b, 0);
    hv__audit_block_wr_init(&w);
    for (size_t i = 0; i < n; i++)
        if (hv__audit_block_put(&b, &w, &recs[i], NULL) != HV_OK) abort();
    hv__audit_block_rd_init(&rd, b.data ? b.data : "", b.len);
    for (size_t i = 0; i < n; i++)
        if (hv__audit_block_next(&rd, &r) != HV_OK || !same_rec(&r, &recs[i])) abort();
    if (hv__audit_block_next(&rd, &r) != HV_ENOTFOUND) abort();
    hv_buf_release(&b);
    free(recs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s;
    if (size > 65536) return 0;
    s = malloc(size + 1);
    if (s == NULL) return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    check_post(s, size);
    check_scan(s, size);
    if (strlen(s) < 2048) check_classify(s);
    check_journal(s, size);
    check_block(data, size);
    free(s);
    return 0;
}
