/*
 * alerts.c — security alerts from rules over the committed audit events (HIPAA
 * §164.308(a)(1)(ii)(D) information system activity review, §164.312(b)):
 *
 *   failed-logins     N failed logins for one account, or from one IP, within a window
 *   patient-volume    one user reads the data of N distinct patients within a window
 *   after-hours       PHI accessed outside the configured hours (UTC), once per user per hour
 *   break-glass       a request used the X-Break-Glass override
 *   new-ip            a user logged in (or got a token) from an address not seen for them before
 *   chain-verification  verification of the audit chain found a problem (api.c)
 *
 * A rule with threshold N fires when the count reaches N — not at N-1 — and again
 * only after the window has let the count drop below N. Windows are kept in fixed
 * tables (keys hashed into slots; a colliding key takes the slot over), so memory is
 * bounded whatever the traffic: at most HV__ALERT_RING events are remembered per key,
 * which is why thresholds are capped at that number. A slot is allocated when a key
 * first lands in it (the tables are pointers, 24 KB), so an engine that sees few
 * users keeps little of the 2.3 MB the full tables take; if that allocation fails
 * the event is not counted (no alert from it), as nothing else can be done then.
 *
 * Alerts are stored (audit_alert), counted in /metrics (hv_audit_alerts_total{rule}),
 * logged at warn level without PHI, and published on the event bus as
 * "security.alert", so that a channel with the `event` source can send them anywhere.
 */
#include "config.h"
#include "destinations/audit/audit_int.h"

#include <json-c/json.h>
#include <stdio.h>
#include <string.h>

#define HV__ALERT_RING 64
#define COUNT_SLOTS 2048
#define USER_SLOTS 1024
#define IP_PER_USER 16

typedef struct count_slot {
    uint64_t key;
    uint64_t t[HV__ALERT_RING];
    int n;
} count_slot_t;

typedef struct user_slot {
    uint64_t key;
    uint64_t pat[HV__ALERT_RING];
    uint64_t pt[HV__ALERT_RING];
    int np;
    uint64_t ip[IP_PER_USER];
    int nip;
} user_slot_t;

struct hv__alert_state {
    count_slot_t *counts[COUNT_SLOTS]; /* NULL until a key lands in the slot */
    user_slot_t *users[USER_SLOTS];
};

hv__alert_state_t *hv__alert_state_new(void) { return hv_calloc(1, sizeof(hv__alert_state_t)); }

void hv__alert_state_free(hv__alert_state_t *s) {
    if (s == NULL) return;
    for (size_t i = 0; i < COUNT_SLOTS; i++) hv_free(s->counts[i]);
    for (size_t i = 0; i < USER_SLOTS; i++) hv_free(s->users[i]);
    hv_free(s);
}

size_t hv__alert_state_slots(const hv__alert_state_t *s) {
    size_t n = 0;
    for (size_t i = 0; i < COUNT_SLOTS; i++) n += s->counts[i] != NULL;
    for (size_t i = 0; i < USER_SLOTS; i++) n += s->users[i] != NULL;
    return n;
}

/* FNV-1a, 64 bit; 0 is kept for "empty". */
static uint64_t h64(const char *prefix, const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = prefix; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    for (const char *p = s; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    return h ? h : 1;
}

/* Adds one event at now to key's window; returns the count within the window, or 0
 * (the event not counted) if the slot cannot be allocated. */
static int count_add(hv__alert_state_t *st, uint64_t key, uint64_t now, uint64_t window) {
    count_slot_t **slot = &st->counts[key % COUNT_SLOTS], *s;
    int k = 0;
    if (*slot == NULL) *slot = hv_calloc(1, sizeof(count_slot_t));
    s = *slot;
    if (s == NULL) return 0;
    if (s->key != key) {
        memset(s, 0, sizeof(*s));
        s->key = key;
    }
    for (int i = 0; i < s->n; i++)
        if (now - s->t[i] < window) s->t[k++] = s->t[i];
    s->n = k;
    if (s->n == HV__ALERT_RING) {
        memmove(s->t, s->t + 1, (HV__ALERT_RING - 1) * sizeof(s->t[0]));
        s->n--;
    }
    s->t[s->n++] = now;
    return s->n;
}

/* Returns who's slot, or NULL if it cannot be allocated. */
static user_slot_t *user_slot(hv__alert_state_t *st, const char *who) {
    uint64_t key = h64("u:", who);
    user_slot_t **slot = &st->users[key % USER_SLOTS], *s;
    if (*slot == NULL) *slot = hv_calloc(1, sizeof(user_slot_t));
    s = *slot;
    if (s == NULL) return NULL;
    if (s->key != key) {
        memset(s, 0, sizeof(*s));
        s->key = key;
    }
    return s;
}

int hv__alert_parse_hours(const char *s, int *from, int *to) {
    int h1, m1, h2, m2;
    char end;
    if (s == NULL || s[0] == '\0') {
        *from = *to = -1;
        return HV_OK;
    }
    if (sscanf(s, "%d:%d-%d:%d%c", &h1, &m1, &h2, &m2, &end) != 4 || h1 < 0 || h1 > 24 || h2 < 0 || h2 > 24 ||
        m1 < 0 || m1 > 59 || m2 < 0 || m2 > 59)
        return HV_EINVAL;
    *from = h1 * 60 + m1;
    *to = h2 * 60 + m2;
    return HV_OK;
}

static int outside_hours(const hv__alert_cfg_t *c, uint64_t ms) {
    int minute = (int)((ms / 60000) % 1440);
    if (c->hours_from < 0) return 0;
    if (c->hours_from <= c->hours_to) return minute < c->hours_from || minute >= c->hours_to;
    return minute < c->hours_from && minute >= c->hours_to; /* a window across midnight */
}

void hv__alerts_observe(hv__audit_t *a, const hv__aev_t *ev) {
    const hv__alert_cfg_t *c = &a->alert_cfg;
    hv__alert_state_t *st = a->alerts;
    uint64_t now = (uint64_t)ev->recorded;
    char detail[256];
    if (st == NULL) return;
    if (strcmp(ev->subtype, "login-failure") == 0 && c->failed_logins > 0) {
        if (ev->who[0] &&
            count_add(st, h64("acct:", ev->who), now, c->failed_window_ms) == (int)c->failed_logins) {
            snprintf(detail, sizeof(detail), "%lld failed logins for one account within %llu s",
                     (long long)c->failed_logins, (unsigned long long)(c->failed_window_ms / 1000));
            hv__alert_raise(a, "failed-logins", "high", ev->who, ev->ip, detail);
        }
        if (ev->ip[0] && count_add(st, h64("ip:", ev->ip), now, c->failed_window_ms) == (int)c->failed_logins) {
            snprintf(detail, sizeof(detail), "%lld failed logins from one address within %llu s",
                     (long long)c->failed_logins, (unsigned long long)(c->failed_window_ms / 1000));
            hv__alert_raise(a, "failed-logins", "high", "", ev->ip, detail);
        }
    }
    if (ev->breakglass[0]) {
        snprintf(detail, sizeof(detail), "break-glass override on %s %s%s%s", ev->subtype, ev->etype,
                 ev->eid[0] ? "/" : "", ev->eid);
        hv__alert_raise(a, "break-glass", "high", ev->who, ev->ip, detail);
    }
    if (ev->np > 0 && ev->outcome == 0 && (ev->action[0] == 'R' || ev->action[0] == 'E') && ev->who[0]) {
        user_slot_t *u = c->patients > 0 ? user_slot(st, ev->who) : NULL;
        if (u != NULL) {
            int before, k = 0;
            for (int i = 0; i < u->np; i++)
                if (now - u->pt[i] < c->patients_window_ms) {
                    u->pat[k] = u->pat[i];
                    u->pt[k++] = u->pt[i];
                }
            u->np = k;
            before = u->np;
            for (size_t p = 0; p < ev->np; p++) {
                uint64_t ph = h64("p:", ev->patients[p]);
                int i;
                for (i = 0; i < u->np; i++)
                    if (u->pat[i] == ph) break;
                if (i < u->np) {
                    u->pt[i] = now;
                    continue;
                }
                if (u->np == HV__ALERT_RING) continue;
                u->pat[u->np] = ph;
                u->pt[u->np++] = now;
            }
            if (before < c->patients && u->np >= c->patients) {
                snprintf(detail, sizeof(detail), "one user read the data of %lld distinct patients within %llu s",
                         (long long)c->patients, (unsigned long long)(c->patients_window_ms / 1000));
                hv__alert_raise(a, "patient-volume", "medium", ev->who, ev->ip, detail);
            }
        }
        if (outside_hours(c, now) && count_add(st, h64("hours:", ev->who), now, 3600000) == 1) {
            snprintf(detail, sizeof(detail), "patient data accessed outside the permitted hours");
            hv__alert_raise(a, "after-hours", "medium", ev->who, ev->ip, detail);
        }
    }
    if (c->new_ip && ev->outcome == 0 && ev->who[0] && ev->ip[0] &&
        (strcmp(ev->subtype, "login") == 0 || strcmp(ev->subtype, "token") == 0)) {
        user_slot_t *u = user_slot(st, ev->who);
        uint64_t ih = h64("ip:", ev->ip);
        int i;
        if (u == NULL) return;
        for (i = 0; i < u->nip; i++)
            if (u->ip[i] == ih) break;
        if (i == u->nip) {
            if (u->nip > 0) hv__alert_raise(a, "new-ip", "low", ev->who, ev->ip, "a login from an address not seen for this user");
            if (u->nip == IP_PER_USER) {
                memmove(u->ip, u->ip + 1, (IP_PER_USER - 1) * sizeof(u->ip[0]));
                u->nip--;
            }
            u->ip[u->nip++] = ih;
        }
    }
}

/* ---- raising ---- */

typedef struct alert_job {
    hv__audit_t *a;
    int64_t created;
    char rule[48], severity[16], who[256], ip[64], detail[512];
    int64_t id;
} alert_job_t;

static int job_alert(hv_db_t *db, void *arg) {
    alert_job_t *j = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT COALESCE(MAX(id), 0) + 1 FROM audit_alert", &st);
    if (rc != HV_OK) return rc;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) j->id = hv_db_column_int64(st, 0);
    hv_db_done(st);
    if (rc < 0) return rc;
    rc = hv_db_prepare(db,
                       "INSERT INTO audit_alert (id, created, rule, severity, who, ip, detail)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                       &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_int64(st, 1, j->id);
    hv_db_bind_int64(st, 2, j->created);
    hv_db_bind_text(st, 3, j->rule, strlen(j->rule));
    hv_db_bind_text(st, 4, j->severity, strlen(j->severity));
    hv_db_bind_text(st, 5, j->who, strlen(j->who));
    hv_db_bind_text(st, 6, j->ip, strlen(j->ip));
    hv_db_bind_text(st, 7, j->detail, strlen(j->detail));
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc;
}

static void done_alert(int status, void *arg) {
    alert_job_t *j = arg;
    if (status == HV_OK) {
        struct json_object *o = json_object_new_object();
        char when[40];
        size_t n = 0;
        const char *text;
        hv_time_rfc3339((uint64_t)j->created, when, sizeof(when));
        hv_json_set_int(o, "id", j->id);
        hv_json_set_str(o, "rule", j->rule);
        hv_json_set_str(o, "severity", j->severity);
        hv_json_set_str(o, "who", j->who);
        hv_json_set_str(o, "ip", j->ip);
        hv_json_set_str(o, "detail", j->detail);
        hv_json_set_str(o, "created", when);
        text = json_object_to_json_string_length(o, JSON_C_TO_STRING_PLAIN, &n);
        /* HV_ENOTSUP when the bus is not running here: the alert is stored all the same. */
        if (text != NULL) (void)hv_event_publish(j->a->e, "security.alert", text, n, NULL, NULL);
        json_object_put(o);
    } else {
        hv_log(HV_LOG_ERROR, "audit.alert_not_stored", "an alert (%s) could not be stored: %s", j->rule,
               hv_strerror(status));
    }
    hv_free(j);
}

void hv__alert_raise(hv__audit_t *a, const char *rule, const char *severity, const char *who, const char *ip,
                     const char *detail) {
    alert_job_t *j;
    char labels[96];
    hv_logrec_t *r;
    snprintf(labels, sizeof(labels), "rule=\"%s\"", rule);
    hv_counter_add(hv_metrics_counter(a->metrics, "hv_audit_alerts_total", "Security alerts raised, by rule.", labels),
                   1);
    r = hv_log_begin(HV_LOG_WARN, "audit.alert");
    if (r) {
        hv_log_str(r, "rule", rule);
        hv_log_str(r, "severity", severity);
        hv_log_end(r);
    }
    j = hv_calloc(1, sizeof(*j));
    if (j == NULL) return;
    j->a = a;
    j->created = (int64_t)hv_now_ms();
    snprintf(j->rule, sizeof(j->rule), "%s", rule);
    snprintf(j->severity, sizeof(j->severity), "%s", severity);
    snprintf(j->who, sizeof(j->who), "%s", who ? who : "");
    snprintf(j->ip, sizeof(j->ip), "%s", ip ? ip : "");
    snprintf(j->detail, sizeof(j->detail), "%s", detail ? detail : "");
    if (a->storage == NULL || hv_storage_submit(a->storage, job_alert, done_alert, j) != HV_OK) {
        hv_log(HV_LOG_ERROR, "audit.alert_not_stored", "the audit store is busy: alert %s not stored", rule);
        hv_free(j);
    }
}
