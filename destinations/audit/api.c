/*
 * api.c — the audit, security and compliance endpoints (the seed plan's HIPAA
 * compliance service). The auth guard lets only the admin and auditor roles in
 * (engine/auth/guard.c); every read here is itself recorded (subtype audit-read).
 *
 *   POST /audit/log            an external system adds an event (who: the caller)
 *   GET  /audit/logs           ?user= &patient= &action= &outcome= &subtype= &from= &to= &_count= &cursor=
 *   GET  /audit/logs/:userId   the same for one user
 *   GET  /audit/access-logs    who saw which patient's data: ?patient= &user= &from= &to= &_count= &cursor=
 *   POST /security/alert       {"rule","severity","detail"}
 *   GET  /security/alerts      ?rule= &from= &to= &_count= &cursor=
 *   GET  /compliance/report    ?from= &to= &format=json|html
 *   PUT, PATCH, DELETE on /audit/... → 405 and an audit-tamper alert.
 *
 * Lists page by keyset: newest first; "next" carries cursor=<the last seq or id>, and
 * the next page holds what is older than it, so pages never shift under new records.
 */
#include "config.h"
#include "destinations/audit/audit_int.h"
#include "engine/auth/auth.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int hv__audit_parse_time(const char *s, int64_t *out);

enum { Q_LOGS = 1, Q_ACCESS, Q_ALERTS, Q_REPORT };

typedef struct qjob {
    hv__audit_t *a;
    hv_http_req_t *req;
    int kind;
    const char *user, *patient, *action, *subtype, *rule;
    int64_t outcome, from, to, cursor, count;
    int html;
    hv_buf_t out;
    int64_t next;
    hv_audit_verify_t verify;
    int verified;
} qjob_t;

static void bad_request(hv_http_req_t *req, const char *fmt, const char *what) {
    hv_http_respond_error(req, 400, "invalid_request", fmt, what);
}

static const char *qp(hv_http_req_t *req, const char *name) {
    const char *v = hv_http_req_query_param(req, name);
    return v ? v : "";
}

/* Reads the common filters; answers 400 itself and returns HV_EINVAL on a bad value. */
static int read_filters(hv__audit_t *a, hv_http_req_t *req, qjob_t *q) {
    const char *v;
    char *end;
    q->user = qp(req, "user");
    q->patient = qp(req, "patient");
    q->action = qp(req, "action");
    q->subtype = qp(req, "subtype");
    q->rule = qp(req, "rule");
    q->outcome = -1;
    q->from = 0;
    q->to = INT64_MAX;
    q->cursor = INT64_MAX;
    q->count = a->max_page < 50 ? a->max_page : 50;
    if (strlen(q->user) > 256 || strlen(q->patient) > 64 || strlen(q->subtype) > 64 || strlen(q->rule) > 48) {
        bad_request(req, "%s", "a filter value is too long");
        return HV_EINVAL;
    }
    if (q->action[0] && (strlen(q->action) != 1 || strchr("CRUDE", q->action[0]) == NULL)) {
        bad_request(req, "%s", "action is one of C, R, U, D, E");
        return HV_EINVAL;
    }
    if ((v = hv_http_req_query_param(req, "outcome")) != NULL) {
        q->outcome = strtoll(v, &end, 10);
        if (*end || (q->outcome != 0 && q->outcome != 4 && q->outcome != 8 && q->outcome != 12)) {
            bad_request(req, "%s", "outcome is 0, 4, 8 or 12");
            return HV_EINVAL;
        }
    }
    if ((v = hv_http_req_query_param(req, "from")) != NULL && hv__audit_parse_time(v, &q->from) != HV_OK) {
        bad_request(req, "%s", "from is a date: 2026-11-25 or 2026-11-25T10:00:00Z");
        return HV_EINVAL;
    }
    if ((v = hv_http_req_query_param(req, "to")) != NULL && hv__audit_parse_time(v, &q->to) != HV_OK) {
        bad_request(req, "%s", "to is a date: 2026-11-25 or 2026-11-25T10:00:00Z");
        return HV_EINVAL;
    }
    if ((v = hv_http_req_query_param(req, "cursor")) != NULL) {
        q->cursor = strtoll(v, &end, 10);
        if (*end || q->cursor < 1) {
            bad_request(req, "%s", "cursor is the value given by the previous page's next link");
            return HV_EINVAL;
        }
    }
    if ((v = hv_http_req_query_param(req, "_count")) != NULL) {
        q->count = strtoll(v, &end, 10);
        if (*end || q->count < 1) {
            bad_request(req, "%s", "_count is a positive number");
            return HV_EINVAL;
        }
        if (q->count > a->max_page) q->count = a->max_page;
    }
    return HV_OK;
}

/* The request's own path and query without cursor, then "cursor=N". */
static void next_link(qjob_t *q, hv_buf_t *b) {
    const char *query = hv_http_req_query(q->req), *p = query;
    hv_buf_puts(b, ",\"link\":[{\"relation\":\"next\",\"url\":");
    {
        hv_buf_t u;
        hv_buf_init(&u, 8192);
        hv_buf_puts(&u, hv_http_req_path(q->req));
        hv_buf_putc(&u, '?');
        while (p && *p) {
            const char *amp = strchr(p, '&');
            size_t n = amp ? (size_t)(amp - p) : strlen(p);
            if (!(n >= 7 && strncmp(p, "cursor=", 7) == 0)) {
                hv_buf_append(&u, p, n);
                hv_buf_putc(&u, '&');
            }
            p = amp ? amp + 1 : NULL;
        }
        hv_buf_printf(&u, "cursor=%lld", (long long)q->next);
        hv_buf_json_str(b, u.data, u.len);
        hv_buf_release(&u);
    }
    hv_buf_puts(b, "}]");
}

static const char *col(hv_db_stmt_t *st, int i);

/* 1 when the comma-separated list csv holds id. */
static int csv_has(const char *csv, const char *id) {
    size_t n = strlen(id);
    for (const char *p = csv; *p;) {
        size_t k = strcspn(p, ",");
        if (k == n && memcmp(p, id, n) == 0) return 1;
        p += k;
        if (*p == ',') p++;
    }
    return 0;
}

/* Appends one AuditEvent entry (the stored content, or the AuditEvent rendered from a
 * compact record) for the record seq. */
static void logs_entry(qjob_t *q, hv_buf_t *rendered, int64_t seq, const char *c, size_t clen, int64_t recorded,
                       const char *action, const char *subtype, int outcome, const char *who, const char *role,
                       const char *ip, const char *patients, int64_t n) {
    hv_buf_t *b = &q->out;
    if (n > 0) hv_buf_putc(b, ',');
    /* The stored content has no id: it is the sequence number. A compact record is
     * rendered to its AuditEvent here (event.c). */
    if (hv__aev_compact(c, clen)) {
        hv__aev_t *ev = hv__aev_new(q->a);
        rendered->len = 0;
        if (ev != NULL &&
            hv__aev_load(ev, recorded, action, subtype, outcome, who, role, ip, patients, c, clen) == HV_OK &&
            hv__aev_render(ev, rendered) == HV_OK) {
            c = rendered->data;
            clen = rendered->len;
        }
        hv__aev_free(ev);
    }
    if (c != NULL && clen > 29 && strncmp(c, "{\"resourceType\":\"AuditEvent\",", 29) == 0) {
        hv_buf_printf(b, "{\"fullUrl\":\"AuditEvent/%lld\",\"resource\":{\"resourceType\":\"AuditEvent\",\"id\":\"%lld\",",
                      (long long)seq, (long long)seq);
        hv_buf_append(b, c + 29, clen - 29);
        hv_buf_putc(b, '}');
    }
    q->next = seq;
}

/* A page over the blocks (newest first) before the rows: what a record must match. */
typedef struct page {
    qjob_t *q;
    hv_buf_t *rendered;
    int64_t n;   /* entries (logs) or events (access) on the page */
    int more;    /* a further match exists: the page is full */
    int64_t last;
} page_t;

static int logs_match(const qjob_t *q, const hv__arec_t *r) {
    return (q->user[0] == '\0' || strcmp(r->who, q->user) == 0) && (q->action[0] == '\0' || r->action[0] == q->action[0]) &&
           (q->outcome < 0 || r->outcome == q->outcome) && (q->subtype[0] == '\0' || strcmp(r->subtype, q->subtype) == 0) &&
           (q->patient[0] == '\0' || csv_has(r->patients, q->patient));
}

static int logs_rec(const hv__arec_t *r, void *ud) {
    page_t *p = ud;
    if (!logs_match(p->q, r)) return 0;
    if (p->n == p->q->count) {
        p->more = 1;
        return 1;
    }
    logs_entry(p->q, p->rendered, r->seq, r->content, r->clen, r->recorded, r->action, r->subtype, r->outcome, r->who,
               r->role, r->ip, r->patients, p->n);
    p->n++;
    return 0;
}

static void scan_filter(const qjob_t *q, hv__ascan_t *f) {
    hv__audit_scan_init(f);
    f->desc = 1;
    f->seq_lt = q->cursor;
    f->from = q->from;
    f->to = q->to;
    f->who = q->user;
    f->patient = q->patient;
}

static int job_logs(hv_db_t *db, qjob_t *q) {
    hv_db_stmt_t *st = NULL;
    hv_buf_t *b = &q->out, rendered;
    hv__ascan_t f;
    page_t pg;
    int rc;
    hv_buf_init(&rendered, 0);
    memset(&pg, 0, sizeof(pg));
    pg.q = q;
    pg.rendered = &rendered;
    hv_buf_puts(b, "{\"resourceType\":\"Bundle\",\"type\":\"searchset\",\"entry\":[");
    /* The blocks hold the newest records, the rows (written before migration 6) the older. */
    scan_filter(q, &f);
    rc = hv__audit_block_scan(db, &f, logs_rec, &pg);
    if (rc == HV_OK && !pg.more) {
        rc = hv_db_prepare(db,
                           "SELECT seq, content, recorded, action, subtype, outcome, who, role, ip, patients"
                           " FROM audit_event WHERE seq < $1 AND ($2 = '' OR who = $2)"
                           " AND ($3 = '' OR action = $3) AND ($4 < 0 OR outcome = $4) AND recorded >= $5"
                           " AND recorded < $6 AND ($7 = '' OR seq IN (SELECT seq FROM audit_patient WHERE patient = $7))"
                           " AND ($8 = '' OR subtype = $8) ORDER BY seq DESC LIMIT $9",
                           &st);
        if (rc == HV_OK) {
            hv_db_bind_int64(st, 1, q->cursor);
            hv_db_bind_text(st, 2, q->user, strlen(q->user));
            hv_db_bind_text(st, 3, q->action, strlen(q->action));
            hv_db_bind_int64(st, 4, q->outcome);
            hv_db_bind_int64(st, 5, q->from);
            hv_db_bind_int64(st, 6, q->to);
            hv_db_bind_text(st, 7, q->patient, strlen(q->patient));
            hv_db_bind_text(st, 8, q->subtype, strlen(q->subtype));
            hv_db_bind_int64(st, 9, q->count - pg.n + 1);
            while ((rc = hv_db_step(st)) == HV_DB_ROW) {
                size_t clen = 0;
                const char *c = hv_db_column_text(st, 1, &clen);
                if (pg.n == q->count) {
                    pg.more = 1; /* the extra row only says that there is a next page */
                    break;
                }
                logs_entry(q, &rendered, hv_db_column_int64(st, 0), c, clen, hv_db_column_int64(st, 2), col(st, 3),
                           col(st, 4), (int)hv_db_column_int64(st, 5), col(st, 6), col(st, 7), col(st, 8), col(st, 9),
                           pg.n);
                pg.n++;
            }
            hv_db_done(st);
            rc = rc < 0 ? rc : HV_OK;
        }
    }
    hv_buf_release(&rendered);
    if (rc != HV_OK) return rc;
    hv_buf_putc(b, ']');
    if (pg.more) next_link(q, b);
    else q->next = 0;
    hv_buf_printf(b, ",\"count\":%lld}", (long long)pg.n);
    return HV_OK;
}

static void put_kv(hv_buf_t *b, const char *k, const char *v, int comma) {
    hv_buf_printf(b, "%s\"%s\":", comma ? "," : "", k);
    hv_buf_json_str(b, v ? v : "", v ? strlen(v) : 0);
}

static const char *col(hv_db_stmt_t *st, int i) {
    size_t n;
    const char *s = hv_db_column_text(st, i, &n);
    return s ? s : "";
}

static void access_entry(hv_buf_t *b, int64_t seq, const char *patient, int64_t recorded, const char *who,
                         const char *role, const char *subtype, const char *action, int64_t outcome, const char *ip) {
    char when[40];
    if (b->len > 10) hv_buf_putc(b, ',');
    hv_time_rfc3339((uint64_t)recorded, when, sizeof(when));
    hv_buf_printf(b, "{\"seq\":%lld", (long long)seq);
    put_kv(b, "patient", patient, 1);
    put_kv(b, "recorded", when, 1);
    put_kv(b, "who", who, 1);
    put_kv(b, "role", role, 1);
    put_kv(b, "subtype", subtype, 1);
    put_kv(b, "action", action, 1);
    hv_buf_printf(b, ",\"outcome\":%lld", (long long)outcome);
    put_kv(b, "ip", ip, 1);
    hv_buf_putc(b, '}');
}

static int cmp_str(const void *x, const void *y) { return strcmp(*(const char *const *)x, *(const char *const *)y); }

/* One record of a block as access-log rows: one per patient, in patient order (as the
 * rows' ORDER BY e.seq DESC, p.patient). */
static int access_rec(const hv__arec_t *r, void *ud) {
    page_t *p = ud;
    qjob_t *q = p->q;
    char buf[HV_AUDIT_MAX_PATIENTS * 8 + 1024];
    const char *ids[HV_AUDIT_MAX_PATIENTS];
    size_t n = 0, len = strlen(r->patients);
    if (len == 0 || (q->user[0] && strcmp(r->who, q->user) != 0)) return 0;
    if (q->patient[0] && !csv_has(r->patients, q->patient)) return 0;
    if (p->n == q->count) {
        p->more = 1;
        return 1;
    }
    p->n++;
    p->last = r->seq;
    if (q->patient[0]) {
        access_entry(&q->out, r->seq, q->patient, r->recorded, r->who, r->role, r->subtype, r->action, r->outcome, r->ip);
        return 0;
    }
    if (len >= sizeof(buf)) len = sizeof(buf) - 1;
    memcpy(buf, r->patients, len);
    buf[len] = '\0';
    for (char *s = buf; *s && n < HV_ARRAY_LEN(ids);) {
        size_t k = strcspn(s, ",");
        if (k > 0) ids[n++] = s;
        if (s[k] == '\0') break;
        s[k] = '\0';
        s += k + 1;
    }
    qsort(ids, n, sizeof(ids[0]), cmp_str);
    for (size_t i = 0; i < n; i++)
        access_entry(&q->out, r->seq, ids[i], r->recorded, r->who, r->role, r->subtype, r->action, r->outcome, r->ip);
    return 0;
}

static int job_access(hv_db_t *db, qjob_t *q) {
    hv_db_stmt_t *st = NULL;
    hv_buf_t *b = &q->out;
    hv__ascan_t f;
    page_t pg;
    int rc;
    memset(&pg, 0, sizeof(pg));
    pg.q = q;
    hv_buf_puts(b, "{\"entry\":[");
    scan_filter(q, &f);
    rc = hv__audit_block_scan(db, &f, access_rec, &pg);
    if (rc != HV_OK) return rc;
    if (!pg.more) {
        int64_t last = 0;
        /* One event may name up to HV_AUDIT_MAX_PATIENTS patients: a page ends on an event boundary. */
        rc = hv_db_prepare(db,
                           "SELECT e.seq, p.patient, e.recorded, e.who, e.role, e.subtype, e.action, e.outcome, e.ip"
                           " FROM audit_patient p JOIN audit_event e ON e.seq = p.seq WHERE e.seq < $1"
                           " AND ($2 = '' OR p.patient = $2) AND ($3 = '' OR e.who = $3) AND e.recorded >= $4"
                           " AND e.recorded < $5 ORDER BY e.seq DESC, p.patient LIMIT $6",
                           &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_int64(st, 1, q->cursor);
        hv_db_bind_text(st, 2, q->patient, strlen(q->patient));
        hv_db_bind_text(st, 3, q->user, strlen(q->user));
        hv_db_bind_int64(st, 4, q->from);
        hv_db_bind_int64(st, 5, q->to);
        hv_db_bind_int64(st, 6, (q->count - pg.n) * HV_AUDIT_MAX_PATIENTS + 1);
        while ((rc = hv_db_step(st)) == HV_DB_ROW) {
            int64_t seq = hv_db_column_int64(st, 0);
            if (seq != last) {
                if (pg.n == q->count) {
                    pg.more = 1;
                    break;
                }
                pg.n++;
                last = seq;
                pg.last = seq;
            }
            access_entry(b, seq, col(st, 1), hv_db_column_int64(st, 2), col(st, 3), col(st, 4), col(st, 5), col(st, 6),
                         hv_db_column_int64(st, 7), col(st, 8));
        }
        hv_db_done(st);
        if (rc < 0) return rc;
    }
    hv_buf_putc(b, ']');
    if (pg.more) {
        q->next = pg.last;
        next_link(q, b);
    }
    hv_buf_printf(b, ",\"count\":%lld}", (long long)pg.n);
    return HV_OK;
}

static int job_alerts(hv_db_t *db, qjob_t *q) {
    hv_db_stmt_t *st = NULL;
    hv_buf_t *b = &q->out;
    int64_t n = 0;
    int rc = hv_db_prepare(db,
                           "SELECT id, created, rule, severity, who, ip, detail FROM audit_alert WHERE id < $1"
                           " AND ($2 = '' OR rule = $2) AND created >= $3 AND created < $4 ORDER BY id DESC LIMIT $5",
                           &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, q->cursor);
    hv_db_bind_text(st, 2, q->rule, strlen(q->rule));
    hv_db_bind_int64(st, 3, q->from);
    hv_db_bind_int64(st, 4, q->to);
    hv_db_bind_int64(st, 5, q->count + 1);
    hv_buf_puts(b, "{\"alerts\":[");
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        char when[40];
        if (n == q->count) break;
        if (n > 0) hv_buf_putc(b, ',');
        q->next = hv_db_column_int64(st, 0);
        hv_time_rfc3339((uint64_t)hv_db_column_int64(st, 1), when, sizeof(when));
        hv_buf_printf(b, "{\"id\":%lld", (long long)q->next);
        put_kv(b, "created", when, 1);
        put_kv(b, "rule", col(st, 2), 1);
        put_kv(b, "severity", col(st, 3), 1);
        put_kv(b, "who", col(st, 4), 1);
        put_kv(b, "ip", col(st, 5), 1);
        put_kv(b, "detail", col(st, 6), 1);
        hv_buf_putc(b, '}');
        n++;
    }
    hv_db_done(st);
    if (rc < 0) return rc;
    hv_buf_putc(b, ']');
    if (rc == HV_DB_ROW) next_link(q, b);
    hv_buf_printf(b, ",\"count\":%lld}", (long long)n);
    return HV_OK;
}

/* Runs "SELECT key, COUNT(*) …" and writes {"key": n, …} under name. */
static int group_counts(hv_db_t *db, qjob_t *q, const char *name, const char *sql) {
    hv_db_stmt_t *st = NULL;
    hv_buf_t *b = &q->out;
    int rc = hv_db_prepare(db, sql, &st), first = 1;
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, q->from);
    hv_db_bind_int64(st, 2, q->to);
    hv_buf_printf(b, ",\"%s\":{", name);
    while ((rc = hv_db_step(st)) == HV_DB_ROW) {
        const char *k = col(st, 0);
        if (!first) hv_buf_putc(b, ',');
        first = 0;
        hv_buf_json_str(b, k[0] ? k : "(none)", k[0] ? strlen(k) : 6);
        hv_buf_printf(b, ":%lld", (long long)hv_db_column_int64(st, 1));
    }
    hv_db_done(st);
    hv_buf_putc(b, '}');
    return rc < 0 ? rc : HV_OK;
}

/* The report's counts over rows and blocks together. Keys (roles, actions) are few; past
 * HV__REPORT_KEYS distinct roles the rest count under "(other)". */
#define HV__REPORT_KEYS 32
typedef struct kcount {
    char key[48];
    int64_t n;
} kcount_t;

typedef struct counts {
    int64_t events, failed, breakglass, consent;
    kcount_t roles[HV__REPORT_KEYS + 1], actions[HV__REPORT_KEYS + 1];
    size_t nroles, nactions;
} counts_t;

static void kadd(kcount_t *k, size_t *n, const char *key, int64_t v) {
    size_t i;
    for (i = 0; i < *n; i++)
        if (strcmp(k[i].key, key) == 0) break;
    if (i == *n) {
        if (*n == HV__REPORT_KEYS) key = "(other)";
        for (i = 0; i < *n; i++)
            if (strcmp(k[i].key, key) == 0) break;
        if (i == *n) {
            snprintf(k[i].key, sizeof(k[i].key), "%s", key);
            k[i].n = 0;
            (*n)++;
        }
    }
    k[i].n += v;
}

static void count_one(counts_t *c, const char *role, const char *action, const char *subtype, int bg, int has_patients,
                      int64_t v) {
    c->events += v;
    if (has_patients) kadd(c->roles, &c->nroles, role, v);
    kadd(c->actions, &c->nactions, action, v);
    if (strcmp(subtype, "login-failure") == 0) c->failed += v;
    if (bg) c->breakglass += v;
    if (bg && has_patients) c->consent += v;
}

static int count_rec(const hv__arec_t *r, void *ud) {
    count_one(ud, r->role, r->action, r->subtype, r->breakglass, r->patients[0] != '\0', 1);
    return 0;
}

static int cmp_key(const void *x, const void *y) {
    return strcmp(((const kcount_t *)x)->key, ((const kcount_t *)y)->key);
}

static void put_keys(hv_buf_t *b, const char *name, kcount_t *k, size_t n) {
    qsort(k, n, sizeof(*k), cmp_key);
    hv_buf_printf(b, ",\"%s\":{", name);
    for (size_t i = 0; i < n; i++) {
        if (i > 0) hv_buf_putc(b, ',');
        hv_buf_json_str(b, k[i].key[0] ? k[i].key : "(none)", k[i].key[0] ? strlen(k[i].key) : 6);
        hv_buf_printf(b, ":%lld", (long long)k[i].n);
    }
    hv_buf_putc(b, '}');
}

typedef struct oldest {
    int64_t min, n, past, hot;
} oldest_t;

static int oldest_rec(const hv__arec_t *r, void *ud) {
    oldest_t *o = ud;
    if (r->recorded < o->min) o->min = r->recorded;
    o->n++;
    if (r->recorded < o->hot) o->past++;
    return 0;
}

static int job_report(hv_db_t *db, qjob_t *q) {
    hv_buf_t *b = &q->out;
    hv_db_stmt_t *st = NULL;
    hv__ascan_t f;
    counts_t *c = hv_calloc(1, sizeof(*c));
    char fr[40], t[40];
    int rc;
    if (c == NULL) return HV_ENOMEM;
    hv_time_rfc3339((uint64_t)q->from, fr, sizeof(fr));
    hv_time_rfc3339((uint64_t)(q->to == INT64_MAX ? (int64_t)hv_now_ms() : q->to), t, sizeof(t));
    hv_buf_puts(b, "{\"period\":{");
    put_kv(b, "from", fr, 0);
    put_kv(b, "to", t, 1);
    hv_buf_putc(b, '}');
    /* Rows (grouped by the database), then the blocks' records of the period. */
    rc = hv_db_prepare(db,
                       "SELECT role, action, subtype, breakglass, patients <> '', COUNT(*) FROM audit_event"
                       " WHERE recorded >= $1 AND recorded < $2 GROUP BY 1, 2, 3, 4, 5",
                       &st);
    if (rc == HV_OK) {
        hv_db_bind_int64(st, 1, q->from);
        hv_db_bind_int64(st, 2, q->to);
        while ((rc = hv_db_step(st)) == HV_DB_ROW)
            count_one(c, col(st, 0), col(st, 1), col(st, 2), hv_db_column_int64(st, 3) != 0,
                      hv_db_column_int64(st, 4) != 0, hv_db_column_int64(st, 5));
        hv_db_done(st);
        rc = rc < 0 ? rc : HV_OK;
    }
    if (rc == HV_OK) {
        hv__audit_scan_init(&f);
        f.from = q->from;
        f.to = q->to;
        rc = hv__audit_block_scan(db, &f, count_rec, c);
    }
    if (rc == HV_OK) {
        hv_buf_printf(b, ",\"events\":%lld", (long long)c->events);
        put_keys(b, "access_by_role", c->roles, c->nroles);
        put_keys(b, "events_by_action", c->actions, c->nactions);
        hv_buf_printf(b, ",\"failed_logins\":%lld", (long long)c->failed);
        rc = group_counts(db, q, "alerts",
                          "SELECT rule, COUNT(*) FROM audit_alert WHERE created >= $1 AND created < $2"
                          " GROUP BY rule ORDER BY rule");
    }
    if (rc == HV_OK)
        hv_buf_printf(b, ",\"break_glass\":%lld,\"consent_overrides\":%lld", (long long)c->breakglass,
                      (long long)c->consent);
    hv_free(c);
    if (rc != HV_OK) return rc;
    {
        oldest_t o = {INT64_MAX, 0, 0, (int64_t)hv_now_ms() - q->a->hot_days * 86400000LL};
        rc = hv_db_prepare(db, "SELECT MIN(recorded), COUNT(*), SUM(CASE WHEN recorded < $1 THEN 1 ELSE 0 END)"
                               " FROM audit_event", &st);
        if (rc != HV_OK) return rc;
        hv_db_bind_int64(st, 1, o.hot);
        rc = hv_db_step(st);
        if (rc == HV_DB_ROW) {
            if (!hv_db_column_is_null(st, 0)) o.min = hv_db_column_int64(st, 0);
            o.n = hv_db_column_int64(st, 1);
            o.past = hv_db_column_int64(st, 2);
        }
        hv_db_done(st);
        if (rc < 0) return rc;
        if (hv__audit_has_blocks(db)) {
            /* The blocks' counts from their columns; records past the hot window one by one
             * (only the blocks that reach back that far are read). */
            rc = hv_db_prepare(db, "SELECT MIN(recorded_min), COALESCE(SUM(n), 0) FROM audit_block", &st);
            if (rc != HV_OK) return rc;
            rc = hv_db_step(st);
            if (rc == HV_DB_ROW && !hv_db_column_is_null(st, 0)) {
                if (hv_db_column_int64(st, 0) < o.min) o.min = hv_db_column_int64(st, 0);
                o.n += hv_db_column_int64(st, 1);
            }
            hv_db_done(st);
            if (rc < 0) return rc;
            {
                oldest_t p = {INT64_MAX, 0, 0, o.hot};
                hv__audit_scan_init(&f);
                f.to = o.hot;
                if ((rc = hv__audit_block_scan(db, &f, oldest_rec, &p)) != HV_OK) return rc;
                o.past += p.past;
            }
        }
        hv_buf_printf(b, ",\"retention\":{\"audit_days\":%lld,\"access_days\":%lld,\"alert_days\":%lld,\"hot_days\":%lld",
                      (long long)q->a->retention_audit_days, (long long)q->a->retention_access_days,
                      (long long)q->a->retention_alert_days, (long long)q->a->hot_days);
        {
            char od[40] = "";
            if (o.min != INT64_MAX) hv_time_rfc3339((uint64_t)o.min, od, sizeof(od));
            put_kv(b, "oldest_record", od, 1);
            hv_buf_printf(b, ",\"records\":%lld,\"past_hot_window\":%lld,\"deleted\":0", (long long)o.n,
                          (long long)o.past);
        }
        hv_buf_putc(b, '}');
    }
    hv_buf_puts(b, ",\"consent_enforcement\":\"not supported yet\"");
    rc = hv__audit_verify_db(db, q->a->key, q->from, &q->verify);
    if (rc != HV_OK) return rc;
    q->verified = 1;
    hv_buf_printf(b, ",\"chain\":{\"ok\":%s,\"records_checked\":%lld,\"checkpoints\":%lld",
                  q->verify.problem[0] ? "false" : "true", (long long)q->verify.checked,
                  (long long)q->verify.checkpoints);
    if (q->verify.problem[0]) {
        hv_buf_printf(b, ",\"first_bad\":%lld", (long long)q->verify.first_bad);
        put_kv(b, "problem", q->verify.problem, 1);
        put_kv(b, "detail", q->verify.detail, 1);
    }
    hv_buf_puts(b, "}}");
    return HV_OK;
}

static int job_query(hv_db_t *db, void *arg) {
    qjob_t *q = arg;
    switch (q->kind) {
    case Q_LOGS: return job_logs(db, q);
    case Q_ACCESS: return job_access(db, q);
    case Q_ALERTS: return job_alerts(db, q);
    default: return job_report(db, q);
    }
}

static void html_escape(hv_buf_t *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': hv_buf_puts(b, "&lt;"); break;
        case '>': hv_buf_puts(b, "&gt;"); break;
        case '&': hv_buf_puts(b, "&amp;"); break;
        case '"': hv_buf_puts(b, "&quot;"); break;
        default: hv_buf_putc(b, *s);
        }
    }
}

/* A printable page from the JSON report: one table per section. */
static void report_html(const char *json, hv_buf_t *out) {
    struct json_object *r = json_tokener_parse(json);
    hv_buf_puts(out, "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>HoloVitals compliance "
                     "report</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;"
                     "margin-bottom:1.5em}td,th{border:1px solid #999;padding:.3em .8em;text-align:left}"
                     "@media print{body{margin:0}}</style></head><body><h1>Compliance report</h1>");
    if (r == NULL) {
        hv_buf_puts(out, "<p>The report could not be read.</p></body></html>");
        return;
    }
    json_object_object_foreach(r, key, val) {
        hv_buf_puts(out, "<h2>");
        html_escape(out, key);
        hv_buf_puts(out, "</h2><table>");
        if (json_object_is_type(val, json_type_object)) {
            json_object_object_foreach(val, k2, v2) {
                hv_buf_puts(out, "<tr><th>");
                html_escape(out, k2);
                hv_buf_puts(out, "</th><td>");
                html_escape(out, json_object_get_string(v2));
                hv_buf_puts(out, "</td></tr>");
            }
        } else {
            hv_buf_puts(out, "<tr><td>");
            html_escape(out, json_object_get_string(val));
            hv_buf_puts(out, "</td></tr>");
        }
        hv_buf_puts(out, "</table>");
    }
    hv_buf_puts(out, "</body></html>");
    json_object_put(r);
}

static void done_query(int status, void *arg) {
    qjob_t *q = arg;
    if (status != HV_OK) {
        hv_http_header_add(q->req, "Retry-After", "1");
        hv_http_respond_error(q->req, 503, "storage_failed", "the audit store could not answer: %s", hv_strerror(status));
    } else if (q->kind == Q_REPORT && q->html) {
        hv_buf_t h;
        hv_buf_init(&h, 0);
        report_html(q->out.data, &h);
        hv_http_respond_buf(q->req, 200, "text/html; charset=utf-8", &h);
    } else {
        hv_http_respond_buf(q->req, 200, "application/json", &q->out);
    }
    if (q->verified && q->verify.problem[0]) {
        q->a->verify_failed = 1;
        hv__alert_raise(q->a, "chain-verification", "critical", "", "", q->verify.detail);
    }
    hv_buf_release(&q->out);
    hv_free(q);
}

/* Records the read of the audit trail itself, then runs the query. */
static void run_query(hv__audit_t *a, hv_http_req_t *req, int kind, const char *user) {
    qjob_t *q = hv_calloc(1, sizeof(*q));
    hv_audit_event_t ev = {0};
    int rc;
    if (q == NULL) {
        hv_http_respond_error(req, 503, "out_of_memory", "try again");
        return;
    }
    q->a = a;
    q->req = req;
    q->kind = kind;
    hv_buf_init(&q->out, 0);
    if (read_filters(a, req, q) != HV_OK) {
        hv_free(q);
        return;
    }
    if (user != NULL) q->user = user;
    if (kind == Q_REPORT) {
        const char *fmt = qp(req, "format"), *acc = hv_http_req_header(req, "Accept");
        q->html = strcmp(fmt, "html") == 0 || (fmt[0] == '\0' && acc && strstr(acc, "text/html"));
        if (hv_http_req_query_param(req, "from") == NULL) q->from = (int64_t)hv_now_ms() - 30LL * 86400000;
    }
    ev.action = 'R';
    ev.subtype = kind == Q_REPORT ? "compliance-report" : kind == Q_ALERTS ? "alerts-read" : "audit-read";
    ev.req = req;
    ev.entity_type = kind == Q_ALERTS ? "SecurityAlert" : "AuditEvent";
    ev.query = hv_http_req_query(req);
    if (user != NULL) ev.entity_id = user;
    if (hv_audit_record(a->e, &ev) != HV_OK) {
        /* The hold was released with the refusal: the answer below becomes 503. */
    }
    hv__audit_sync(a);
    rc = hv_storage_submit(a->storage, job_query, done_query, q);
    if (rc != HV_OK) {
        hv_http_header_add(req, "Retry-After", "1");
        hv_http_respond_error(req, 503, "busy", "the audit store is busy; retry later");
        hv_buf_release(&q->out);
        hv_free(q);
    }
}

static void h_logs(hv_http_req_t *req, void *ud) { run_query(ud, req, Q_LOGS, NULL); }
static void h_logs_user(hv_http_req_t *req, void *ud) { run_query(ud, req, Q_LOGS, hv_http_req_param(req, "userId")); }
static void h_access(hv_http_req_t *req, void *ud) { run_query(ud, req, Q_ACCESS, NULL); }
static void h_alerts(hv_http_req_t *req, void *ud) { run_query(ud, req, Q_ALERTS, NULL); }
static void h_report(hv_http_req_t *req, void *ud) { run_query(ud, req, Q_REPORT, NULL); }

/* POST /audit/log: answered once the event has committed (the hold does that). */
static void h_post_log(hv_http_req_t *req, void *ud) {
    hv__audit_t *a = ud;
    size_t len = 0;
    const char *body = hv_http_req_body(req, &len), *source = NULL;
    hv_arena_t *ar = hv_http_req_arena(req);
    hv_audit_event_t in;
    hv__aev_t *ev;
    hv_error_t err;
    int rc;
    hv_error_clear(&err);
    rc = hv__audit_parse_post(body ? body : "", len, ar, &in, &source, &err);
    if (rc != HV_OK) {
        hv_http_respond_error(req, 400, "invalid_event", "%s%s%s", err.location, err.location[0] ? ": " : "",
                              err.message);
        return;
    }
    in.req = req;
    ev = hv__aev_new(a);
    if (ev == NULL) {
        hv_http_respond_error(req, 503, "out_of_memory", "try again");
        return;
    }
    ev->source = source ? hv_arena_strdup(ev->arena, source) : "";
    hv_http_req_mark_audited(req);
    rc = hv__aev_fill(ev, &in);
    if (rc != HV_OK) {
        hv__aev_free(ev);
        hv_http_respond_error(req, 400, "invalid_event", "the event cannot be recorded: %s", hv_strerror(rc));
        return;
    }
    if (hv__audit_submit(a, ev, 0) == HV_OK) {
        struct json_object *o = json_object_new_object();
        hv_json_set_str(o, "status", "recorded");
        hv_http_respond_json(req, 201, o); /* once journaled (NORMAL) or committed (FULL) */
    } else {
        hv_http_respond_error(req, 503, "busy", "the audit queue is full; retry later");
    }
}

static void h_post_alert(hv_http_req_t *req, void *ud) {
    hv__audit_t *a = ud;
    size_t len = 0;
    const char *body = hv_http_req_body(req, &len), *rule, *sev, *detail;
    const hv_auth_principal_t *p = hv_auth_principal(req);
    struct json_object *o = NULL;
    hv_error_t err;
    char r[64];
    hv_error_clear(&err);
    if (hv_json_parse(body ? body : "", len, "body", &o, &err) != HV_OK || !json_object_is_type(o, json_type_object)) {
        json_object_put(o);
        hv_http_respond_error(req, 400, "invalid_alert", "the body must be a JSON object");
        return;
    }
    rule = hv_json_get_str(o, "rule");
    sev = hv_json_get_str(o, "severity");
    detail = hv_json_get_str(o, "detail");
    if (rule == NULL || rule[0] == '\0' || strlen(rule) > 40 || strspn(rule, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(rule) ||
        sev == NULL || (strcmp(sev, "low") && strcmp(sev, "medium") && strcmp(sev, "high") && strcmp(sev, "critical")) ||
        (detail != NULL && strlen(detail) > 500)) {
        json_object_put(o);
        hv_http_respond_error(req, 400, "invalid_alert",
                              "rule is 1-40 of a-z 0-9 -, severity one of low, medium, high, critical, detail <= 500");
        return;
    }
    snprintf(r, sizeof(r), "external-%s", rule);
    hv__alert_raise(a, r, sev, p ? p->sub : "", "", detail ? detail : "");
    hv_audit_note(req, 'C', "security-alert", 0, NULL, r);
    json_object_put(o);
    o = json_object_new_object();
    hv_json_set_str(o, "status", "raised");
    hv_json_set_str(o, "rule", r);
    hv_http_respond_json(req, 202, o);
}

/* Any attempt to change or remove audit records: refused, recorded and alerted. */
static void h_tamper(hv_http_req_t *req, void *ud) {
    hv__audit_t *a = ud;
    const hv_auth_principal_t *p = hv_auth_principal(req);
    char ip[64];
    const char *peer = hv_http_req_peer(req), *colon = strrchr(peer, ':');
    snprintf(ip, sizeof(ip), "%.*s", colon ? (int)(colon - peer) : (int)strlen(peer), peer);
    hv__alert_raise(a, "audit-tamper", "critical", p ? p->sub : "", ip, "an attempt to change or delete audit records");
    hv_audit_note(req, hv_http_req_method(req) == HV_HTTP_DELETE ? 'D' : 'U', "audit-tamper", 8, NULL,
                  "refused: the audit trail is append-only");
    hv_http_header_add(req, "Allow", "GET, HEAD, POST");
    hv_http_respond_error(req, 405, "method_not_allowed", "the audit trail is append-only");
}

int hv__audit_routes(hv__audit_t *a, hv_router_t *r) {
    unsigned w = HV_HTTP_PUT | HV_HTTP_PATCH | HV_HTTP_DELETE;
    int rc = hv_router_add(r, HV_HTTP_POST, "/audit/log", h_post_log, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/audit/logs", h_logs, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/audit/logs/:userId", h_logs_user, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/audit/access-logs", h_access, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/security/alert", h_post_alert, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/security/alerts", h_alerts, a);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_GET, "/compliance/report", h_report, a);
    if (rc == HV_OK) rc = hv_router_add(r, w, "/audit/log", h_tamper, a);
    if (rc == HV_OK) rc = hv_router_add(r, w, "/audit/logs", h_tamper, a);
    if (rc == HV_OK) rc = hv_router_add(r, w, "/audit/logs/:userId", h_tamper, a);
    if (rc == HV_OK) rc = hv_router_add(r, w, "/audit/access-logs", h_tamper, a);
    return rc;
}
