/*
 * event.c — turns engine audit events into FHIR R4 AuditEvent resources shaped
 * after IHE Basic Audit Log Patterns (BALP, IHE ITI Supplement, §3.57.2 and the
 * AuditEvent profiles), classifies FHIR REST requests (FHIR R4 http.html) into
 * interactions, finds the patients a response or request body refers to, and
 * parses the body of POST /audit/log.
 *
 * The AuditEvent written (content) has no id: the store's sequence number is its
 * id. Member order is fixed, so the bytes are the canonical form that is hashed.
 */
#include "config.h"
#include "destinations/audit/audit_int.h"
#include "engine/auth/auth.h"

#include <json-c/json.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

hv__aev_t *hv__aev_new(hv__audit_t *a) {
    hv__aev_t *ev = hv_calloc(1, sizeof(*ev));
    if (ev == NULL) return NULL;
    ev->arena = hv_arena_new(512);
    if (ev->arena == NULL) {
        hv_free(ev);
        return NULL;
    }
    ev->a = a;
    hv_buf_init(&ev->content, 0);
    return ev;
}

void hv__aev_free(hv__aev_t *ev) {
    if (ev == NULL) return;
    if (ev->content.cap > 0) hv_buf_release(&ev->content); /* cap 0: in the arena (hv__aev_content_arena) */
    hv_arena_free(ev->arena);
    hv_free(ev);
}

/* Events of the loop thread are kept for reuse (a->spare, at most HV__AEV_SPARE): an
 * allocation, an arena and a content buffer per request were a fifth of the audit's cost
 * on the loop thread (callgrind). */
#define HV__AEV_SPARE 4096

hv__aev_t *hv__aev_take(hv__audit_t *a) {
    hv__aev_t *ev = a->spare;
    if (ev == NULL) return hv__aev_new(a);
    a->spare = ev->next;
    a->nspare--;
    ev->next = NULL;
    return ev;
}

void hv__aev_give(hv__aev_t *ev) {
    hv__audit_t *a;
    hv_arena_t *ar;
    hv_buf_t content;
    if (ev == NULL) return;
    a = ev->a;
    if (a == NULL || a->nspare >= HV__AEV_SPARE || ev->content.cap > 4096) {
        hv__aev_free(ev);
        return;
    }
    ar = ev->arena;
    content = ev->content;
    if (content.cap == 0) hv_buf_init(&content, 0); /* it was in the arena */
    hv_arena_reset(ar);
    memset(ev, 0, sizeof(*ev));
    ev->a = a;
    ev->arena = ar;
    ev->content = content;
    hv_buf_reset(&ev->content);
    ev->next = a->spare;
    a->spare = ev;
    a->nspare++;
}

void hv__aev_spare_free(hv__audit_t *a) {
    while (a->spare != NULL) {
        hv__aev_t *ev = a->spare;
        a->spare = ev->next;
        hv__aev_free(ev);
    }
    a->nspare = 0;
}

int hv__audit_b64(const char *s, size_t n, hv_buf_t *out) {
    size_t need = 4 * ((n + 2) / 3) + 1;
    int rc = hv_buf_reserve(out, need);
    if (rc != HV_OK) return rc;
    out->len += (size_t)EVP_EncodeBlock((unsigned char *)out->data + out->len, (const unsigned char *)s, (int)n);
    out->data[out->len] = '\0';
    return HV_OK;
}

static const char *dup0(hv_arena_t *ar, const char *s) { return hv_arena_strdup(ar, s ? s : ""); }

/* The client address without the port ("127.0.0.1:5555" → "127.0.0.1", "[::1]:80" → "::1"). */
static const char *peer_ip(hv_arena_t *ar, const char *peer) {
    const char *colon;
    if (peer == NULL) return "";
    if (peer[0] == '[') {
        const char *end = strchr(peer, ']');
        return end ? hv_arena_strndup(ar, peer + 1, (size_t)(end - peer - 1)) : dup0(ar, peer);
    }
    colon = strrchr(peer, ':');
    return colon ? hv_arena_strndup(ar, peer, (size_t)(colon - peer)) : dup0(ar, peer);
}

static int put_coding(hv_buf_t *b, const char *system, const char *code, const char *display) {
    int rc = hv_buf_puts(b, "{\"system\":");
    if (rc == HV_OK) rc = hv_buf_json_str(b, system, strlen(system));
    if (rc == HV_OK) rc = hv_buf_puts(b, ",\"code\":");
    if (rc == HV_OK) rc = hv_buf_json_str(b, code, strlen(code));
    if (rc == HV_OK && display) {
        rc = hv_buf_puts(b, ",\"display\":");
        if (rc == HV_OK) rc = hv_buf_json_str(b, display, strlen(display));
    }
    if (rc == HV_OK) rc = hv_buf_putc(b, '}');
    return rc;
}

static int put_str(hv_buf_t *b, const char *key, const char *v) {
    int rc = hv_buf_printf(b, ",\"%s\":", key);
    if (rc == HV_OK) rc = hv_buf_json_str(b, v, strlen(v));
    return rc;
}

static int is_login_subtype(const char *s) {
    return strcmp(s, "login") == 0 || strcmp(s, "logout") == 0 || strcmp(s, "login-failure") == 0 ||
           strcmp(s, "token") == 0;
}

static int is_rest_subtype(const char *s) {
    static const char *const rest[] = {"read",   "vread",  "update",         "patch",         "delete",
                                       "history", "history-instance", "history-type", "history-system",
                                       "create", "search", "search-type",    "search-system", "batch",
                                       "transaction", "operation", "capabilities"};
    for (size_t i = 0; i < HV_ARRAY_LEN(rest); i++)
        if (strcmp(s, rest[i]) == 0) return 1;
    return 0;
}

/*
 * Builds ev->content. BALP: type is rest (restful interaction) for FHIR REST, DICOM
 * 110114 "User Authentication" for logins, 110100 "Application Activity" otherwise;
 * agent[0] is the requestor (who), the source is this engine, entity[] are the
 * patients (role 1 patient) and the resource or query that was the subject.
 */
int hv__aev_render(const hv__aev_t *ev, hv_buf_t *b) {
    char when[40];
    int rc = HV_OK;
    hv_time_rfc3339((uint64_t)ev->recorded, when, sizeof(when));
    rc = hv_buf_puts(b, "{\"resourceType\":\"AuditEvent\",\"type\":");
    if (rc != HV_OK) return rc;
    if (is_rest_subtype(ev->subtype))
        rc = put_coding(b, "http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "RESTful Operation");
    else if (is_login_subtype(ev->subtype))
        rc = put_coding(b, "http://dicom.nema.org/resources/ontology/DCM", "110114", "User Authentication");
    else
        rc = put_coding(b, "http://dicom.nema.org/resources/ontology/DCM", "110100", "Application Activity");
    if (rc == HV_OK) rc = hv_buf_puts(b, ",\"subtype\":[");
    if (rc == HV_OK)
        rc = put_coding(b,
                        is_rest_subtype(ev->subtype) ? "http://hl7.org/fhir/restful-interaction"
                                                      : "https://holovitals.dev/CodeSystem/audit-subtype",
                        ev->subtype, NULL);
    if (rc == HV_OK) rc = hv_buf_putc(b, ']');
    if (rc == HV_OK) rc = put_str(b, "action", ev->action);
    if (rc == HV_OK) rc = put_str(b, "recorded", when);
    if (rc == HV_OK) rc = hv_buf_printf(b, ",\"outcome\":\"%d\"", ev->outcome);
    if (rc == HV_OK && ev->detail[0]) rc = put_str(b, "outcomeDesc", ev->detail);
    if (rc == HV_OK && (ev->purpose[0] || ev->breakglass[0])) {
        rc = hv_buf_puts(b, ",\"purposeOfEvent\":[{\"coding\":[");
        if (rc == HV_OK)
            rc = put_coding(b, "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                            ev->breakglass[0] ? "ETREAT" : ev->purpose, NULL);
        if (rc == HV_OK) rc = hv_buf_puts(b, "]");
        if (rc == HV_OK && ev->breakglass[0]) rc = put_str(b, "text", ev->breakglass);
        if (rc == HV_OK) rc = hv_buf_puts(b, "}]");
    }
    /* agent: the requestor */
    if (rc == HV_OK) rc = hv_buf_puts(b, ",\"agent\":[{\"type\":{\"coding\":[");
    if (rc == HV_OK)
        rc = put_coding(b, "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "IRCP", "information recipient");
    if (rc == HV_OK) rc = hv_buf_puts(b, "]},\"who\":{\"identifier\":{\"value\":");
    if (rc == HV_OK) rc = hv_buf_json_str(b, ev->who[0] ? ev->who : "anonymous", strlen(ev->who[0] ? ev->who : "anonymous"));
    if (rc == HV_OK) rc = hv_buf_puts(b, "}}");
    if (rc == HV_OK && ev->role[0]) {
        rc = hv_buf_puts(b, ",\"role\":[{\"text\":");
        if (rc == HV_OK) rc = hv_buf_json_str(b, ev->role, strlen(ev->role));
        if (rc == HV_OK) rc = hv_buf_puts(b, "}]");
    }
    if (rc == HV_OK) rc = hv_buf_puts(b, ",\"requestor\":true");
    if (rc == HV_OK && ev->ip[0]) {
        rc = hv_buf_puts(b, ",\"network\":{\"address\":");
        if (rc == HV_OK) rc = hv_buf_json_str(b, ev->ip, strlen(ev->ip));
        if (rc == HV_OK) rc = hv_buf_puts(b, ",\"type\":\"2\"}");
    }
    if (rc == HV_OK) rc = hv_buf_putc(b, '}');
    if (rc == HV_OK && ev->client[0]) {
        rc = hv_buf_puts(b, ",{\"type\":{\"coding\":[");
        if (rc == HV_OK)
            rc = put_coding(b, "http://dicom.nema.org/resources/ontology/DCM", "110150", "Application");
        if (rc == HV_OK) rc = hv_buf_puts(b, "]},\"who\":{\"identifier\":{\"value\":");
        if (rc == HV_OK) rc = hv_buf_json_str(b, ev->client, strlen(ev->client));
        if (rc == HV_OK) rc = hv_buf_puts(b, "}},\"requestor\":false}");
    }
    if (rc == HV_OK) rc = hv_buf_puts(b, "],\"source\":{\"observer\":{\"display\":");
    if (rc == HV_OK) rc = hv_buf_json_str(b, ev->source[0] ? ev->source : "holovitals", strlen(ev->source[0] ? ev->source : "holovitals"));
    if (rc == HV_OK) rc = hv_buf_puts(b, "},\"type\":[");
    if (rc == HV_OK)
        rc = put_coding(b, "http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server");
    if (rc == HV_OK) rc = hv_buf_puts(b, "]}");
    /* entities: patients, then the resource or query */
    if (rc == HV_OK && (ev->np > 0 || ev->etype[0] || ev->query[0])) {
        int first = 1;
        rc = hv_buf_puts(b, ",\"entity\":[");
        for (size_t i = 0; rc == HV_OK && i < ev->np; i++) {
            rc = hv_buf_puts(b, first ? "{\"what\":{\"reference\":" : ",{\"what\":{\"reference\":");
            first = 0;
            if (rc == HV_OK) rc = hv_buf_printf(b, "\"Patient/%s\"},\"type\":", ev->patients[i]);
            if (rc == HV_OK)
                rc = put_coding(b, "http://terminology.hl7.org/CodeSystem/audit-entity-type", "1", "Person");
            if (rc == HV_OK) rc = hv_buf_puts(b, ",\"role\":");
            if (rc == HV_OK) rc = put_coding(b, "http://terminology.hl7.org/CodeSystem/object-role", "1", "Patient");
            if (rc == HV_OK) rc = hv_buf_putc(b, '}');
        }
        if (rc == HV_OK && (ev->etype[0] || ev->query[0])) {
            rc = hv_buf_puts(b, first ? "{" : ",{");
            if (rc == HV_OK && ev->etype[0]) {
                hv_buf_t ref;
                hv_buf_init(&ref, 0);
                rc = hv_buf_printf(&ref, "%s%s%s", ev->etype, ev->eid[0] ? "/" : "", ev->eid);
                if (rc == HV_OK) rc = hv_buf_puts(b, "\"what\":{\"reference\":");
                if (rc == HV_OK) rc = hv_buf_json_str(b, ref.data, ref.len);
                if (rc == HV_OK) rc = hv_buf_puts(b, "},");
                hv_buf_release(&ref);
            }
            if (rc == HV_OK) rc = hv_buf_puts(b, "\"type\":");
            if (rc == HV_OK)
                rc = put_coding(b, "http://terminology.hl7.org/CodeSystem/audit-entity-type", "2", "System Object");
            if (rc == HV_OK && ev->query[0]) {
                /* FHIR R4 AuditEvent.entity.query is base64Binary. */
                rc = hv_buf_puts(b, ",\"query\":\"");
                if (rc == HV_OK) rc = hv__audit_b64(ev->query, strlen(ev->query), b);
                if (rc == HV_OK) rc = hv_buf_putc(b, '"');
            }
            if (rc == HV_OK) rc = hv_buf_putc(b, '}');
        }
        if (rc == HV_OK) rc = hv_buf_putc(b, ']');
    }
    if (rc == HV_OK) rc = hv_buf_putc(b, '}');
    return rc;
}

int hv__aev_compact(const char *content, size_t len) {
    return content != NULL && len >= 6 && memcmp(content, "{\"v\":2", 6) == 0;
}

/*
 * The stored record (column content, hashed with the other columns): only what the
 * columns do not hold, as a small JSON object with short keys, empty members left out —
 * {"v":2,"c":client,"p":purpose,"b":break-glass reason,"t":entity type,"i":entity id,
 * "q":query,"d":outcome detail,"s":source}. The AuditEvent is rendered from the row when
 * it is read (hv__aev_render); building it per request cost more than the rest of the
 * record. Records written before this format hold the AuditEvent JSON itself.
 */
int hv__aev_build_content(hv__aev_t *ev) {
    hv_buf_t *b = &ev->content;
    const char *keys = "cpbtiqds";
    const char *vals[] = {ev->client, ev->purpose, ev->breakglass, ev->etype, ev->eid, ev->query, ev->detail, ev->source};
    int rc;
    hv_buf_reset(b);
    rc = hv_buf_append(b, "{\"v\":2", 6);
    for (size_t i = 0; rc == HV_OK && i < HV_ARRAY_LEN(vals); i++) {
        char k[6] = {',', '"', keys[i], '"', ':', 0};
        if (vals[i] == NULL || vals[i][0] == '\0') continue;
        rc = hv_buf_append(b, k, 5);
        if (rc == HV_OK) rc = hv_buf_json_str(b, vals[i], strlen(vals[i]));
    }
    if (rc == HV_OK) rc = hv_buf_putc(b, '}');
    return rc;
}

/* hv_buf_json_str's bytes for s (n bytes) at out, which has room for 6 * n + 2: quotes,
 * and \" \\ \n \r \t or \u00XX for '"', '\\' and the control characters. */
static size_t json_str_at(char *out, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i = 0;
    out[o++] = '"';
    while (i < n) {
        size_t run = i;
        while (run < n && (unsigned char)s[run] >= 0x20 && s[run] != '"' && s[run] != '\\') run++;
        memcpy(out + o, s + i, run - i);
        o += run - i;
        if ((i = run) >= n) break;
        out[o++] = '\\';
        switch (s[i]) {
        case '"': out[o++] = '"'; break;
        case '\\': out[o++] = '\\'; break;
        case '\n': out[o++] = 'n'; break;
        case '\r': out[o++] = 'r'; break;
        case '\t': out[o++] = 't'; break;
        default:
            memcpy(out + o, "u00", 3);
            out[o + 3] = hex[(unsigned char)s[i] >> 4];
            out[o + 4] = hex[(unsigned char)s[i] & 15];
            o += 5;
        }
        i++;
    }
    out[o++] = '"';
    return o;
}

int hv__aev_content_arena(hv__aev_t *ev) {
    static const char keys[] = "cpbtiqds";
    const char *vals[] = {ev->client, ev->purpose, ev->breakglass, ev->etype, ev->eid, ev->query, ev->detail, ev->source};
    size_t lens[HV_ARRAY_LEN(vals)], need = 8, o = 0;
    char *out;
    for (size_t i = 0; i < HV_ARRAY_LEN(vals); i++) {
        lens[i] = vals[i] ? strlen(vals[i]) : 0;
        if (lens[i] > 0) need += 5 + 6 * lens[i] + 2;
    }
    if ((out = hv_arena_alloc(ev->arena, need)) == NULL) return HV_ENOMEM;
    memcpy(out, "{\"v\":2", 6);
    o = 6;
    for (size_t i = 0; i < HV_ARRAY_LEN(vals); i++) {
        if (lens[i] == 0) continue;
        out[o] = ',';
        out[o + 1] = '"';
        out[o + 2] = keys[i];
        out[o + 3] = '"';
        out[o + 4] = ':';
        o += 5;
        o += json_str_at(out + o, vals[i], lens[i]);
    }
    out[o++] = '}';
    out[o] = '\0';
    memset(&ev->content, 0, sizeof(ev->content));
    ev->content.data = out;
    ev->content.len = o;
    return HV_OK;
}

/* At most max bytes of s, copied into the arena; NULL and "" are the literal "" (most of
 * an event's members are empty, and a copy of each cost more than the rest of the fill). */
static const char *copy_max(hv_arena_t *ar, const char *s, size_t max) {
    if (s == NULL || s[0] == '\0') return "";
    return hv_arena_strndup(ar, s, max == SIZE_MAX ? strlen(s) : strnlen(s, max));
}

int hv__aev_fill(hv__aev_t *ev, const hv_audit_event_t *in) {
    hv_arena_t *ar = ev->arena;
    const hv_auth_principal_t *p = in->req ? hv_auth_principal(in->req) : NULL;
    const char *user = in->user, *role = in->role, *client = in->client_id, *ip = in->ip, *purpose = in->purpose;
    const char *bg = NULL;
    if (in->subtype == NULL || in->subtype[0] == '\0' || strchr("CRUDE", in->action) == NULL || in->action == 0)
        return HV_EINVAL;
    ev->req = in->req;
    ev->recorded = (int64_t)hv_now_ms();
    ev->action[0] = in->action;
    ev->action[1] = '\0';
    ev->outcome = in->outcome;
    if (p != NULL) {
        user = p->sub;
        role = hv_auth_role_name(p->role);
        client = p->client_id;
    }
    if (in->req != NULL) {
        if (ip == NULL) ip = peer_ip(ar, hv_http_req_peer(in->req));
        if (purpose == NULL) purpose = hv_http_req_header(in->req, "X-Purpose-Of-Use");
        bg = hv_http_req_header(in->req, "X-Break-Glass");
    }
    ev->subtype = copy_max(ar, in->subtype, 64);
    ev->who = copy_max(ar, user, 256);
    ev->role = copy_max(ar, role, 32);
    ev->client = copy_max(ar, client, 256);
    ev->ip = copy_max(ar, ip, 64);
    ev->purpose = copy_max(ar, purpose, 32);
    ev->breakglass = copy_max(ar, bg, 256);
    ev->etype = copy_max(ar, in->entity_type, SIZE_MAX);
    ev->eid = copy_max(ar, in->entity_id, SIZE_MAX);
    ev->query = copy_max(ar, in->query, 4096);
    ev->detail = copy_max(ar, in->detail, 512);
    if (ev->source == NULL) ev->source = "";
    if (!ev->subtype || !ev->who || !ev->role || !ev->client || !ev->ip || !ev->purpose || !ev->breakglass ||
        !ev->etype || !ev->eid || !ev->query || !ev->detail)
        return HV_ENOMEM;
    ev->np = 0;
    if (in->npatients > 0) {
        size_t n = in->npatients < HV_AUDIT_MAX_PATIENTS ? in->npatients : HV_AUDIT_MAX_PATIENTS;
        ev->patients = hv_arena_alloc(ar, n * sizeof(*ev->patients));
        if (ev->patients == NULL) return HV_ENOMEM;
        for (size_t i = 0; i < n; i++) {
            const char *pid = in->patients[i];
            size_t k;
            if (pid == NULL || pid[0] == '\0') continue;
            for (k = 0; k < ev->np; k++)
                if (strcmp(ev->patients[k], pid) == 0) break;
            if (k < ev->np) continue;
            if ((ev->patients[ev->np] = hv_arena_strndup(ar, pid, strnlen(pid, HV_AUTH_MAX_ID - 1))) == NULL)
                return HV_ENOMEM;
            ev->np++;
        }
    }
    {
        /* "p1,p2", straight into the arena. */
        size_t total = 1, off = 0;
        char *csv;
        for (size_t i = 0; i < ev->np; i++) total += strlen(ev->patients[i]) + 1;
        if ((csv = hv_arena_alloc(ar, total)) == NULL) return HV_ENOMEM;
        for (size_t i = 0; i < ev->np; i++) {
            size_t k = strlen(ev->patients[i]);
            if (i > 0) csv[off++] = ',';
            memcpy(csv + off, ev->patients[i], k);
            off += k;
        }
        csv[off] = '\0';
        ev->patients_csv = csv;
    }
    return hv__aev_build_content(ev);
}

int hv__aev_load(hv__aev_t *ev, int64_t recorded, const char *action, const char *subtype, int outcome,
                 const char *who, const char *role, const char *ip, const char *patients_csv, const char *content,
                 size_t clen) {
    hv_arena_t *ar = ev->arena;
    struct json_object *o = NULL, *v;
    static const char *const keys[] = {"c", "p", "b", "t", "i", "q", "d", "s"};
    const char **dst[] = {&ev->client, &ev->purpose, &ev->breakglass, &ev->etype,
                          &ev->eid,    &ev->query,   &ev->detail,     &ev->source};
    int rc = HV_OK;
    if (!hv__aev_compact(content, clen) || action == NULL || strlen(action) != 1) return HV_EINVAL;
    ev->recorded = recorded;
    ev->action[0] = action[0];
    ev->action[1] = '\0';
    ev->outcome = outcome;
    ev->subtype = dup0(ar, subtype);
    ev->who = dup0(ar, who);
    ev->role = dup0(ar, role);
    ev->ip = dup0(ar, ip);
    ev->patients_csv = dup0(ar, patients_csv);
    o = json_tokener_parse(content);
    if (o == NULL || !json_object_is_type(o, json_type_object)) {
        rc = HV_EPROTO;
        goto out;
    }
    for (size_t i = 0; i < HV_ARRAY_LEN(keys); i++) {
        const char *s = "";
        if (json_object_object_get_ex(o, keys[i], &v) && json_object_is_type(v, json_type_string))
            s = json_object_get_string(v);
        *dst[i] = dup0(ar, s);
    }
    if (!ev->subtype || !ev->who || !ev->role || !ev->ip || !ev->patients_csv) {
        rc = HV_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < HV_ARRAY_LEN(dst); i++)
        if (*dst[i] == NULL) rc = HV_ENOMEM;
    if (rc != HV_OK) goto out;
    /* The patients, from the comma-separated list (FHIR ids hold no comma). */
    {
        const char *p = ev->patients_csv;
        ev->np = 0;
        ev->patients = hv_arena_alloc(ar, HV_AUDIT_MAX_PATIENTS * sizeof(*ev->patients));
        if (ev->patients == NULL) {
            rc = HV_ENOMEM;
            goto out;
        }
        while (*p && ev->np < HV_AUDIT_MAX_PATIENTS) {
            size_t k = strcspn(p, ",");
            if (k > 0 && (ev->patients[ev->np++] = hv_arena_strndup(ar, p, k)) == NULL) {
                rc = HV_ENOMEM;
                goto out;
            }
            p += k;
            if (*p == ',') p++;
        }
    }
out:
    json_object_put(o);
    return rc;
}

/* ---- FHIR REST classification (FHIR R4 http.html §3.1.0) ---- */

/* Copies n bytes of s into out (cap outlen, truncating) as a string: snprintf("%.*s") cost
 * more than the classification itself. */
static void cpy(char *out, size_t outlen, const char *s, size_t n) {
    if (outlen == 0) return;
    if (n >= outlen) n = outlen - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

static int is_type_name(const char *s, size_t n) {
    if (n == 0 || n >= 64 || s[0] < 'A' || s[0] > 'Z') return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z'))) return 0;
    return 1;
}

int hv__audit_classify(int method, const char *path, char *action, const char **subtype, char *type,
                       size_t typelen, char *id, size_t idlen) {
    const char *seg[6];
    size_t len[6], n = 0;
    const char *p;
    int patients_view = 0;
    type[0] = id[0] = '\0';
    if (method == HV_HTTP_OPTIONS) return 0;
    if (strncmp(path, "/fhir", 5) == 0 && (path[5] == '\0' || path[5] == '/')) {
        p = path + 5;
    } else if (strncmp(path, "/patients", 9) == 0 && (path[9] == '\0' || path[9] == '/')) {
        p = path + 9;
        patients_view = 1;
    } else {
        return 0;
    }
    while (*p && n < HV_ARRAY_LEN(seg)) {
        const char *q;
        while (*p == '/') p++;
        if (!*p) break;
        q = strchr(p, '/');
        seg[n] = p;
        len[n] = q ? (size_t)(q - p) : strlen(p);
        n++;
        p += len[n - 1];
    }
    if (patients_view) {
        /* The /patients convenience views read patient data. */
        *action = 'R';
        *subtype = n >= 1 ? "read" : "search-type";
        cpy(type, typelen, "Patient", 7);
        if (n >= 1) cpy(id, idlen, seg[0], len[0]);
        return 1;
    }
    if (n >= 1 && ((len[0] == 8 && memcmp(seg[0], "metadata", 8) == 0) ||
                   (len[0] == 11 && memcmp(seg[0], ".well-known", 11) == 0)))
        return 0;
    /* An operation anywhere ($export, $everything, $validate …) is an execute. */
    for (size_t i = 0; i < n; i++) {
        if (seg[i][0] == '$') {
            *action = 'E';
            if (len[i] == 7 && memcmp(seg[i], "$export", 7) == 0) *subtype = "export";
            else if (len[i] == 11 && memcmp(seg[i], "$everything", 11) == 0) *subtype = "everything";
            else *subtype = "operation";
            if (i >= 1 && is_type_name(seg[0], len[0])) cpy(type, typelen, seg[0], len[0]);
            if (i >= 2) cpy(id, idlen, seg[1], len[1]);
            return 1;
        }
    }
    if (n == 0) {
        *action = 'E';
        *subtype = method == HV_HTTP_POST ? "batch" : "search-system";
        return 1;
    }
    if (len[0] == 8 && memcmp(seg[0], "_history", 8) == 0) {
        *action = 'R';
        *subtype = "history-system";
        return 1;
    }
    if (!is_type_name(seg[0], len[0])) {
        /* Bulk-data status and file URLs: reads of exported data. */
        *action = 'R';
        *subtype = "export";
        return 1;
    }
    cpy(type, typelen, seg[0], len[0]);
    if (n == 1) {
        if (method == HV_HTTP_POST) {
            *action = 'C';
            *subtype = "create";
        } else if (method == HV_HTTP_PUT || method == HV_HTTP_PATCH || method == HV_HTTP_DELETE) {
            /* conditional update/patch/delete */
            *action = method == HV_HTTP_DELETE ? 'D' : 'U';
            *subtype = method == HV_HTTP_DELETE ? "delete" : method == HV_HTTP_PUT ? "update" : "patch";
        } else {
            *action = 'E';
            *subtype = "search-type";
        }
        return 1;
    }
    if (len[1] == 7 && memcmp(seg[1], "_search", 7) == 0) {
        *action = 'E';
        *subtype = "search-type";
        return 1;
    }
    if (len[1] == 8 && memcmp(seg[1], "_history", 8) == 0) {
        *action = 'R';
        *subtype = "history-type";
        return 1;
    }
    cpy(id, idlen, seg[1], len[1]);
    if (n == 2) {
        switch (method) {
        case HV_HTTP_PUT: *action = 'U'; *subtype = "update"; break;
        case HV_HTTP_PATCH: *action = 'U'; *subtype = "patch"; break;
        case HV_HTTP_DELETE: *action = 'D'; *subtype = "delete"; break;
        case HV_HTTP_POST: *action = 'C'; *subtype = "create"; break;
        default: *action = 'R'; *subtype = "read"; break;
        }
        return 1;
    }
    if (len[2] == 8 && memcmp(seg[2], "_history", 8) == 0) {
        *action = 'R';
        *subtype = n >= 4 ? "vread" : "history-instance";
        return 1;
    }
    /* A compartment search: /fhir/Patient/1/Observation. */
    *action = 'E';
    *subtype = "search-type";
    return 1;
}

/* ---- the patient scanner ---- */

static int add_id(const char *s, size_t n, hv_arena_t *arena, const char **ids, size_t *nids, size_t max,
                  size_t *found) {
    /* FHIR R4 datatypes.html#id: [A-Za-z0-9\-\.]{1,64} */
    if (n == 0 || n > 64) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return 0;
    }
    for (size_t i = 0; i < *nids; i++)
        if (strlen(ids[i]) == n && memcmp(ids[i], s, n) == 0) return 0;
    (*found)++;
    if (*nids >= max) return 0;
    ids[*nids] = hv_arena_strndup(arena, s, n);
    if (ids[*nids] == NULL) return HV_ENOMEM;
    (*nids)++;
    return 0;
}

/* The first needle in [h, end). The needles start with '"' or '<', which a scan for the
 * first byte meets at every other byte of a body: the scan is for the second byte (memchr),
 * each hit then compared whole — half the CPU time of memmem's two-way search on a resource
 * (its table set-up per call dominated on bodies of a few hundred bytes). */
static const char *find(const char *h, const char *end, const char *needle) {
    size_t n = strlen(needle), k = n > 1 && (needle[0] == '"' || needle[0] == '<') ? 1 : 0;
    const char *p;
    if (h >= end || (size_t)(end - h) < n) return NULL;
    for (p = h + k; p < end && (p = memchr(p, needle[k], (size_t)(end - p))) != NULL; p++) {
        const char *s = p - k;
        if ((size_t)(end - s) < n) return NULL;
        if (memcmp(s, needle, n) == 0) return s;
    }
    return NULL;
}

/* A reference value: take the id after the last "Patient/" that starts the value or follows a '/'. */
static void scan_ref(const char *v, const char *end, char quote, hv_arena_t *arena, const char **ids, size_t *n,
                     size_t max, size_t *found) {
    const char *close = memchr(v, quote, (size_t)(end - v)), *best = NULL, *q = v;
    if (close == NULL) return;
    while ((q = find(q, close, "Patient/")) != NULL) {
        if (q == v || q[-1] == '/') best = q + 8;
        q += 8;
    }
    if (best != NULL) {
        const char *e = best;
        while (e < close && *e != '/' && *e != '"' && *e != '\'') e++;
        add_id(best, (size_t)(e - best), arena, ids, n, max, found);
    }
}

size_t hv__audit_scan_patients(const char *text, size_t len, hv_arena_t *arena, const char **ids, size_t *n,
                               size_t max) {
    const char *end = text + len, *p;
    size_t found = 0;
    int xml;
    if (text == NULL) return 0;
    /* A body is JSON or XML (FHIR R4 http.html#mime-type): only its own format's patterns
     * are looked for, which halves the passes over it. */
    for (p = text; p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'); p++) {
    }
    xml = p < end && *p == '<';
    for (p = text; !xml && (p = find(p, end, "\"reference\"")) != NULL;) {
        p += 11;
        while (p < end && (*p == ' ' || *p == ':' || *p == '\n' || *p == '\t')) p++;
        if (p < end && *p == '"') scan_ref(p + 1, end, '"', arena, ids, n, max, &found);
    }
    for (p = text; xml && (p = find(p, end, "<reference value=")) != NULL;) {
        p += 17;
        if (p < end && (*p == '"' || *p == '\'')) scan_ref(p + 1, end, *p, arena, ids, n, max, &found);
    }
    /* The id of every Patient resource: "resourceType":"Patient" and the "id" member of the
     * same object, which comes before any nested object or array member. */
    for (p = text; !xml && (p = find(p, end, "\"resourceType\":\"Patient\"")) != NULL;) {
        const char *start = p, *q, *stop;
        while (start > text && *start != '{') start--;
        stop = p + 24;
        while (stop < end && *stop != '{' && *stop != '[') stop++;
        q = find(start, stop, "\"id\":\"");
        if (q != NULL) {
            const char *v = q + 6, *e = v;
            while (e < stop && *e != '"') e++;
            add_id(v, (size_t)(e - v), arena, ids, n, max, &found);
        }
        p += 24;
    }
    /* XML: <Patient xmlns="http://hl7.org/fhir"><id value="…"/> */
    for (p = text; xml && (p = find(p, end, "<Patient xmlns=\"http://hl7.org/fhir\">")) != NULL;) {
        const char *q;
        p += 37;
        while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) p++;
        if ((size_t)(end - p) > 11 && memcmp(p, "<id value=\"", 11) == 0) {
            const char *v = p + 11;
            q = memchr(v, '"', (size_t)(end - v));
            if (q) add_id(v, (size_t)(q - v), arena, ids, n, max, &found);
        }
    }
    return found;
}

/* ---- POST /audit/log ---- */

static const char *opt_str(struct json_object *o, const char *key, size_t max, hv_arena_t *ar, int *bad) {
    struct json_object *v;
    const char *s;
    if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null)) return NULL;
    if (!json_object_is_type(v, json_type_string)) {
        *bad = 1;
        return NULL;
    }
    s = json_object_get_string(v);
    if (strlen(s) > max) {
        *bad = 1;
        return NULL;
    }
    return hv_arena_strdup(ar, s);
}

/*
 * The body: {"action": "C|R|U|D|E", "subtype": "…", "outcome": 0|4|8|12,
 *            "source": "the reporting system", "entity": {"type", "id", "query"},
 *            "patients": ["id", …], "purpose": "TREAT", "detail": "…"}
 * Who is never taken from the body: it is the authenticated caller.
 */
int hv__audit_parse_post(const char *body, size_t len, hv_arena_t *arena, hv_audit_event_t *out,
                         const char **source, hv_error_t *err) {
    struct json_object *root = NULL, *v, *ent;
    hv_audit_event_t ev = {0};
    const char *s;
    int bad = 0, rc = HV_EINVAL;
    static const char *const allowed[] = {"action", "subtype", "outcome", "source", "entity",
                                          "patients", "purpose", "detail"};
    if (hv_json_parse(body, len, "body", &root, err) != HV_OK) return HV_EPROTO;
    if (!json_object_is_type(root, json_type_object)) {
        hv_error_set(err, HV_EINVAL, "", "the body must be a JSON object");
        goto out;
    }
    json_object_object_foreach(root, key, val) {
        size_t i;
        (void)val;
        for (i = 0; i < HV_ARRAY_LEN(allowed); i++)
            if (strcmp(key, allowed[i]) == 0) break;
        if (i == HV_ARRAY_LEN(allowed)) {
            hv_error_set(err, HV_EINVAL, key, "unknown member (who is the authenticated caller, not a field)");
            goto out;
        }
    }
    s = opt_str(root, "action", 1, arena, &bad);
    if (bad || s == NULL || s[0] == '\0' || strchr("CRUDE", s[0]) == NULL) {
        hv_error_set(err, HV_EINVAL, "action", "action must be one of C, R, U, D, E");
        goto out;
    }
    ev.action = s[0];
    ev.subtype = opt_str(root, "subtype", 64, arena, &bad);
    if (bad || ev.subtype == NULL || ev.subtype[0] == '\0') {
        hv_error_set(err, HV_EINVAL, "subtype", "subtype is a string of 1-64 characters");
        goto out;
    }
    for (const char *c = ev.subtype; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.')) {
            hv_error_set(err, HV_EINVAL, "subtype", "subtype holds only a-z 0-9 - _ .");
            goto out;
        }
    if (json_object_object_get_ex(root, "outcome", &v)) {
        int64_t o;
        if (!json_object_is_type(v, json_type_int)) {
            hv_error_set(err, HV_EINVAL, "outcome", "outcome must be 0, 4, 8 or 12");
            goto out;
        }
        o = json_object_get_int64(v);
        if (o != 0 && o != 4 && o != 8 && o != 12) {
            hv_error_set(err, HV_EINVAL, "outcome", "outcome must be 0, 4, 8 or 12");
            goto out;
        }
        ev.outcome = (int)o;
    }
    *source = opt_str(root, "source", 128, arena, &bad);
    if (bad) {
        hv_error_set(err, HV_EINVAL, "source", "source is a string of at most 128 characters");
        goto out;
    }
    ev.purpose = opt_str(root, "purpose", 32, arena, &bad);
    if (bad) {
        hv_error_set(err, HV_EINVAL, "purpose", "purpose is a code of at most 32 characters");
        goto out;
    }
    ev.detail = opt_str(root, "detail", 512, arena, &bad);
    if (bad) {
        hv_error_set(err, HV_EINVAL, "detail", "detail is a string of at most 512 characters");
        goto out;
    }
    if (json_object_object_get_ex(root, "entity", &ent) && !json_object_is_type(ent, json_type_null)) {
        if (!json_object_is_type(ent, json_type_object)) {
            hv_error_set(err, HV_EINVAL, "entity", "entity must be an object");
            goto out;
        }
        ev.entity_type = opt_str(ent, "type", 64, arena, &bad);
        if (!bad) ev.entity_id = opt_str(ent, "id", 128, arena, &bad);
        if (!bad) ev.query = opt_str(ent, "query", 4096, arena, &bad);
        if (bad) {
            hv_error_set(err, HV_EINVAL, "entity", "entity.type (64), entity.id (128) and entity.query (4096) are strings");
            goto out;
        }
    }
    if (json_object_object_get_ex(root, "patients", &v) && !json_object_is_type(v, json_type_null)) {
        size_t n;
        const char **ids;
        if (!json_object_is_type(v, json_type_array) || (n = json_object_array_length(v)) > HV_AUDIT_MAX_PATIENTS) {
            hv_error_set(err, HV_EINVAL, "patients", "patients is an array of at most %d ids", HV_AUDIT_MAX_PATIENTS);
            goto out;
        }
        ids = hv_arena_alloc(arena, (n ? n : 1) * sizeof(*ids));
        if (ids == NULL) {
            rc = HV_ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            struct json_object *x = json_object_array_get_idx(v, i);
            size_t found = 0, k = 0;
            const char *one[1];
            const char *sv;
            if (!json_object_is_type(x, json_type_string)) {
                hv_error_set(err, HV_EINVAL, "patients", "patient ids are strings");
                goto out;
            }
            sv = json_object_get_string(x);
            /* Reuse the id check of the scanner: a FHIR id, 1-64 of [A-Za-z0-9-.]. */
            if (add_id(sv, strlen(sv), arena, one, &k, 1, &found) != 0 || k != 1) {
                hv_error_set(err, HV_EINVAL, "patients", "a patient id is 1-64 of A-Z a-z 0-9 - .");
                goto out;
            }
            ids[i] = one[0];
        }
        ev.patients = ids;
        ev.npatients = n;
    }
    *out = ev;
    rc = HV_OK;
out:
    json_object_put(root);
    return rc;
}
