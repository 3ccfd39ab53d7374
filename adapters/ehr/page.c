/*
 * page.c — the pure parsers of the FHIR client: searchset pages (FHIR R4
 * bundle.html, http.html#paging), NDJSON files (Bulk Data Access IG 2.0
 * §Response - Complete Status, FHIR R4 nd-json.html) and Retry-After
 * (RFC 9110 §10.2.3). No I/O: sync.c and bulk.c feed them what curl received,
 * and test/fuzz/fuzz_ehr_page.c feeds them anything.
 */
#include "config.h"
#include "adapters/ehr/ehr.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAGE_DEFAULT_MAX ((size_t)64 << 20)

void hv_ehr_page_release(hv_ehr_page_t *p) {
    if (p == NULL) return;
    hv_free(p->resources);
    hv_free(p->outcomes);
    json_object_put(p->root);
    memset(p, 0, sizeof(*p));
}

/* Describes a body that is not JSON without quoting it (it may hold PHI). */
static void describe_non_json(const char *body, size_t len, hv_error_t *err) {
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n')) i++;
    if (i < len && body[i] == '<')
        hv_error_set(err, HV_EPROTO, NULL, "the page is HTML or XML, not a JSON Bundle (%zu bytes)", len);
    else if (i == len)
        hv_error_set(err, HV_EPROTO, NULL, "the page is empty");
    else
        hv_error_set(err, HV_EPROTO, NULL, "the page is not JSON (%zu bytes)", len);
}

/* The first issue's diagnostics of an OperationOutcome, or its code. */
static const char *outcome_text(json_object *oo) {
    json_object *issues = NULL, *first, *v = NULL;
    if (!json_object_object_get_ex(oo, "issue", &issues) || !json_object_is_type(issues, json_type_array) ||
        json_object_array_length(issues) == 0)
        return "no issue";
    first = json_object_array_get_idx(issues, 0);
    if (json_object_object_get_ex(first, "diagnostics", &v) && json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    if (json_object_object_get_ex(first, "code", &v) && json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    return "no diagnostics";
}

/* Parses a search or history page (at most max_bytes, 0: the default) into *root: an
 * HTML or other non-JSON answer is described as such, a JSON error gives its line and
 * column. HV_ETOOBIG or HV_EPROTO, *root untouched, on failure. */
static int parse_page_json(const char *body, size_t len, size_t max_bytes, json_object **root,
                           hv_error_t *err) {
    hv_error_t perr;
    if (max_bytes == 0) max_bytes = PAGE_DEFAULT_MAX;
    if (len > max_bytes) {
        hv_error_set(err, HV_ETOOBIG, NULL, "the page is larger than %zu bytes", max_bytes);
        return HV_ETOOBIG;
    }
    if (body == NULL || len == 0) {
        describe_non_json("", 0, err);
        return HV_EPROTO;
    }
    hv_error_clear(&perr);
    if (hv_json_parse(body, len, "page", root, &perr) != HV_OK) {
        if (memchr(body, '<', len < 64 ? len : 64) != NULL) describe_non_json(body, len, err);
        else hv_error_set(err, HV_EPROTO, NULL, "the page is not valid JSON (line %d, column %d)",
                          perr.line, perr.column);
        return HV_EPROTO;
    }
    return HV_OK;
}

/* HV_OK when root is a Bundle; an OperationOutcome answered instead is quoted in err. */
static int check_bundle(json_object *root, hv_error_t *err) {
    const char *rt = json_object_is_type(root, json_type_object) ? hv_json_get_str(root, "resourceType") : NULL;
    if (rt != NULL && strcmp(rt, "OperationOutcome") == 0) {
        hv_error_set(err, HV_EPROTO, NULL, "the server answered an OperationOutcome: %.200s", outcome_text(root));
        return HV_EPROTO;
    }
    if (rt == NULL || strcmp(rt, "Bundle") != 0) {
        hv_error_set(err, HV_EPROTO, NULL, "the page is not a Bundle (resourceType %.64s)", rt ? rt : "absent");
        return HV_EPROTO;
    }
    return HV_OK;
}

int hv_ehr_page_parse(const char *body, size_t len, size_t max_bytes, hv_ehr_page_t *out,
                      hv_error_t *err) {
    hv_ehr_page_t p;
    json_object *entries = NULL, *links = NULL, *v = NULL;
    size_t i, n = 0;
    int rc = HV_EPROTO;
    memset(&p, 0, sizeof(p));
    p.total = -1;
    rc = parse_page_json(body, len, max_bytes, &p.root, err);
    if (rc != HV_OK) return rc;
    rc = HV_EPROTO;
    if (!json_object_is_type(p.root, json_type_object)) {
        hv_error_set(err, HV_EPROTO, NULL, "the page is JSON but not an object");
        goto out;
    }
    if (check_bundle(p.root, err) != HV_OK) goto out;
    if (json_object_object_get_ex(p.root, "total", &v) && json_object_is_type(v, json_type_int))
        p.total = json_object_get_int64(v);
    if (json_object_object_get_ex(p.root, "entry", &entries)) {
        if (!json_object_is_type(entries, json_type_array)) {
            hv_error_set(err, HV_EINVAL, "Bundle.entry", "Bundle.entry is not an array");
            rc = HV_EINVAL;
            goto out;
        }
        n = json_object_array_length(entries);
    }
    if (n > HV_EHR_PAGE_MAX_ENTRIES) {
        hv_error_set(err, HV_ETOOBIG, "Bundle.entry", "the page has %zu entries (at most %d)", n,
                     HV_EHR_PAGE_MAX_ENTRIES);
        rc = HV_ETOOBIG;
        goto out;
    }
    if (n > 0) {
        p.resources = hv_calloc(n, sizeof(*p.resources));
        p.outcomes = hv_calloc(n, sizeof(*p.outcomes));
        if (p.resources == NULL || p.outcomes == NULL) {
            rc = HV_ENOMEM;
            goto out;
        }
    }
    for (i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(entries, i), *res = NULL, *search = NULL;
        const char *mode = NULL, *ert;
        char loc[48];
        snprintf(loc, sizeof(loc), "Bundle.entry[%zu]", i);
        if (!json_object_is_type(e, json_type_object) || !json_object_object_get_ex(e, "resource", &res) ||
            !json_object_is_type(res, json_type_object)) {
            hv_error_set(err, HV_EINVAL, loc, "entry %zu has no resource object", i);
            rc = HV_EINVAL;
            goto out;
        }
        ert = hv_json_get_str(res, "resourceType");
        if (ert == NULL || ert[0] == '\0') {
            hv_error_set(err, HV_EINVAL, loc, "entry %zu: the resource has no resourceType", i);
            rc = HV_EINVAL;
            goto out;
        }
        if (json_object_object_get_ex(e, "search", &search) && json_object_is_type(search, json_type_object))
            mode = hv_json_get_str(search, "mode");
        /* FHIR R4 bundle.html#searchset: mode "outcome" carries warnings, not results. */
        if ((mode != NULL && strcmp(mode, "outcome") == 0) || strcmp(ert, "OperationOutcome") == 0)
            p.outcomes[p.noutcomes++] = res;
        else
            p.resources[p.nresources++] = res;
    }
    if (json_object_object_get_ex(p.root, "link", &links) && json_object_is_type(links, json_type_array)) {
        for (i = 0; i < json_object_array_length(links); i++) {
            json_object *l = json_object_array_get_idx(links, i);
            const char *rel = json_object_is_type(l, json_type_object) ? hv_json_get_str(l, "relation") : NULL;
            const char *url = rel ? hv_json_get_str(l, "url") : NULL;
            if (rel != NULL && url != NULL && strcmp(rel, "next") == 0 && url[0] != '\0') {
                p.next = url;
                break;
            }
        }
    }
    *out = p;
    memset(&p, 0, sizeof(p));
    rc = HV_OK;
out:
    hv_ehr_page_release(&p);
    return rc;
}

/* Splits "[base/]Type/id[/_history/v][?query]" into its type and id; 0 when it is not that shape. */
static int type_id_of_url(const char *url, char type[HV_EHR_HIST_TYPE_MAX], char id[HV_EHR_HIST_ID_MAX]) {
    char tmp[2048];
    char *cut, *slash, *t;
    size_t len;
    if (url == NULL || (len = strlen(url)) == 0 || len >= sizeof(tmp)) return 0;
    memcpy(tmp, url, len + 1);
    if ((cut = strchr(tmp, '?')) != NULL) *cut = '\0';
    if ((cut = strstr(tmp, "/_history")) != NULL) *cut = '\0';
    if ((slash = strrchr(tmp, '/')) == NULL || slash[1] == '\0') return 0;
    *slash = '\0';
    t = strrchr(tmp, '/');
    t = t ? t + 1 : tmp;
    if (t[0] == '\0' || strlen(t) >= HV_EHR_HIST_TYPE_MAX || strlen(slash + 1) >= HV_EHR_HIST_ID_MAX) return 0;
    snprintf(type, HV_EHR_HIST_TYPE_MAX, "%s", t);
    snprintf(id, HV_EHR_HIST_ID_MAX, "%s", slash + 1);
    return 1;
}

int hv_ehr_history_parse(const char *body, size_t len, size_t max_bytes, hv_ehr_hist_cb fn, void *ud,
                         char **next, hv_error_t *err) {
    json_object *root = NULL, *entries = NULL, *links = NULL;
    char *nx = NULL;
    size_t i, n = 0;
    int rc = HV_EPROTO;
    rc = parse_page_json(body, len, max_bytes, &root, err);
    if (rc != HV_OK) return rc;
    rc = HV_EPROTO;
    if (check_bundle(root, err) != HV_OK) goto out;
    if (json_object_object_get_ex(root, "entry", &entries)) {
        if (!json_object_is_type(entries, json_type_array)) {
            hv_error_set(err, HV_EINVAL, "Bundle.entry", "Bundle.entry is not an array");
            rc = HV_EINVAL;
            goto out;
        }
        n = json_object_array_length(entries);
    }
    if (n > HV_EHR_PAGE_MAX_ENTRIES) {
        hv_error_set(err, HV_ETOOBIG, "Bundle.entry", "the page has %zu entries (at most %d)", n,
                     HV_EHR_PAGE_MAX_ENTRIES);
        rc = HV_ETOOBIG;
        goto out;
    }
    if (json_object_object_get_ex(root, "link", &links) && json_object_is_type(links, json_type_array)) {
        for (i = 0; i < json_object_array_length(links); i++) {
            json_object *l = json_object_array_get_idx(links, i);
            const char *rel = json_object_is_type(l, json_type_object) ? hv_json_get_str(l, "relation") : NULL;
            const char *url = rel ? hv_json_get_str(l, "url") : NULL;
            if (rel != NULL && url != NULL && strcmp(rel, "next") == 0 && url[0] != '\0') {
                if ((nx = hv_strdup(url)) == NULL) {
                    rc = HV_ENOMEM;
                    goto out;
                }
                break;
            }
        }
    }
    for (i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(entries, i), *req = NULL, *res = NULL;
        const char *method = NULL, *url = NULL;
        char type[HV_EHR_HIST_TYPE_MAX], id[HV_EHR_HIST_ID_MAX], loc[48];
        int deleted, ok = 0;
        snprintf(loc, sizeof(loc), "Bundle.entry[%zu]", i);
        if (!json_object_is_type(e, json_type_object)) {
            hv_error_set(err, HV_EINVAL, loc, "entry %zu is not an object", i);
            rc = HV_EINVAL;
            goto out;
        }
        if (json_object_object_get_ex(e, "request", &req) && json_object_is_type(req, json_type_object)) {
            method = hv_json_get_str(req, "method");
            url = hv_json_get_str(req, "url");
        }
        deleted = method != NULL && strcmp(method, "DELETE") == 0;
        /* FHIR R4 http.html#history: a deletion has no resource; its request.url names it. */
        if (!deleted && json_object_object_get_ex(e, "resource", &res) && json_object_is_type(res, json_type_object)) {
            const char *t = hv_json_get_str(res, "resourceType"), *d = hv_json_get_str(res, "id");
            if (t != NULL && d != NULL && strlen(t) < sizeof(type) && strlen(d) < sizeof(id)) {
                snprintf(type, sizeof(type), "%s", t);
                snprintf(id, sizeof(id), "%s", d);
                ok = 1;
            }
        }
        if (!ok && deleted) ok = type_id_of_url(url, type, id);
        if (!ok) ok = type_id_of_url(hv_json_get_str(e, "fullUrl"), type, id);
        if (!ok) {
            hv_error_set(err, HV_EINVAL, loc, "entry %zu names no resource (no resource, request.url or fullUrl)", i);
            rc = HV_EINVAL;
            goto out;
        }
        if ((rc = fn(ud, type, id, deleted)) != HV_OK) goto out;
    }
    if (next != NULL) {
        *next = nx;
        nx = NULL;
    }
    rc = HV_OK;
out:
    hv_free(nx);
    json_object_put(root);
    return rc;
}

int hv_ehr_ndjson_each(const char *text, size_t len, int64_t first_lineno, hv_ehr_line_cb fn,
                       void *ud) {
    size_t i = 0;
    int64_t lineno = first_lineno;
    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len, n = end - i;
        int rc;
        if (n > 0 && text[i + n - 1] == '\r') n--;
        if (n > 0) {
            rc = fn(ud, text + i, n, lineno);
            if (rc != HV_OK) return rc;
        }
        lineno++;
        i = end + 1;
    }
    return HV_OK;
}

static int month_of(const char *s) {
    static const char *const m[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    int i;
    for (i = 0; i < 12; i++)
        if (strncmp(s, m[i], 3) == 0) return i;
    return -1;
}

int64_t hv_ehr_retry_after_ms(const char *value, uint64_t now_ms) {
    const char *p = value;
    char mon[4] = "";
    int day = 0, year = 0, hh = 0, mm = 0, ss = 0, mi;
    struct tm tm;
    time_t t;
    if (value == NULL) return -1;
    while (*p == ' ' || *p == '\t') p++;
    if (*p >= '0' && *p <= '9') {
        int64_t secs = 0;
        while (*p >= '0' && *p <= '9') {
            if (secs > 100000000) return -1;
            secs = secs * 10 + (*p++ - '0');
        }
        while (*p == ' ' || *p == '\t') p++;
        return *p == '\0' ? secs * 1000 : -1;
    }
    /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" (the only form senders must use). */
    if (strlen(p) < 29 || p[3] != ',' ||
        sscanf(p + 4, " %2d %3s %4d %2d:%2d:%2d GMT", &day, mon, &year, &hh, &mm, &ss) != 6)
        return -1;
    mi = month_of(mon);
    if (mi < 0 || day < 1 || day > 31 || year < 1970 || hh > 23 || mm > 59 || ss > 60) return -1;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mi;
    tm.tm_mday = day;
    tm.tm_hour = hh;
    tm.tm_min = mm;
    tm.tm_sec = ss;
    t = timegm(&tm);
    if (t == (time_t)-1) return -1;
    if ((uint64_t)t * 1000 <= now_ms) return 0;
    return (int64_t)((uint64_t)t * 1000 - now_ms);
}
