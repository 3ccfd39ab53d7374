/*
 * fuzz_ehr_page.c — the parsers of the EHR client (adapters/ehr/page.c) on any
 * input: searchset pages, NDJSON lines, Retry-After, cron schedules.
 * Invariants: a page that parses has every resource and outcome an object with
 * a string resourceType; re-serializing the page and parsing it again gives the
 * same counts and the same next link; NDJSON lines never contain '\n' and cover
 * no more bytes than the input; a schedule that parses has a next time after
 * `now` or none; Retry-After is -1 or non-negative. The references of each
 * resource rewritten to local ids (adapters/ehr/write.c): the serialized length
 * changes only by the rewritten references, each of which reads Type/<uuid>.
 * History pages (hv_ehr_history_parse): every entry named has a non-empty type
 * and id, a deletion's id holds no '/' or '?', and a page that parses calls back
 * once per Bundle.entry, the same sequence when read twice.
 */
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adapters/ehr/ehr_int.h"

/* Checks every "reference" string after hv__ehr_rewrite_refs: unchanged, or Type/<36-char id>. */
static void check_refs(json_object *before, json_object *after, int depth) {
    if (depth > 80) return;
    if (json_object_is_type(after, json_type_array)) {
        size_t i;
        if (json_object_array_length(before) != json_object_array_length(after)) abort();
        for (i = 0; i < json_object_array_length(after); i++)
            check_refs(json_object_array_get_idx(before, i), json_object_array_get_idx(after, i), depth + 1);
        return;
    }
    if (!json_object_is_type(after, json_type_object)) return;
    json_object_object_foreach(after, k, v) {
        json_object *b = NULL;
        if (!json_object_object_get_ex(before, k, &b)) abort();
        if (strcmp(k, "reference") == 0 && json_object_is_type(v, json_type_string)) {
            const char *s = json_object_get_string(v), *slash = strrchr(s, '/');
            if (strcmp(s, json_object_get_string(b)) != 0 && (slash == NULL || strlen(slash + 1) != 36)) abort();
        } else {
            check_refs(b, v, depth + 1);
        }
    }
}

typedef struct hseen {
    uint64_t sum; /* FNV-1a over the sequence of (type, id, deleted) */
    size_t n;
} hseen_t;

static int hist_entry(void *ud, const char *type, const char *id, int deleted) {
    hseen_t *h = ud;
    const char *p;
    if (type[0] == '\0' || id[0] == '\0') abort();
    if (deleted && (strchr(id, '/') != NULL || strchr(id, '?') != NULL)) abort();
    for (p = type; *p; p++) h->sum = (h->sum ^ (unsigned char)*p) * 0x100000001b3ULL;
    h->sum = (h->sum ^ '/') * 0x100000001b3ULL;
    for (p = id; *p; p++) h->sum = (h->sum ^ (unsigned char)*p) * 0x100000001b3ULL;
    h->sum = (h->sum ^ (unsigned)deleted) * 0x100000001b3ULL;
    h->n++;
    return HV_OK;
}

static void check_history(const char *text, size_t size) {
    hseen_t a = {0xcbf29ce484222325ULL, 0}, b = {0xcbf29ce484222325ULL, 0};
    hv_error_t err;
    char *next = NULL, *next2 = NULL;
    json_object *root = NULL, *entries = NULL;
    hv_error_clear(&err);
    if (hv_ehr_history_parse(text, size, 1 << 20, hist_entry, &a, &next, &err) != HV_OK) {
        if (next != NULL) abort();
        return;
    }
    if (hv_ehr_history_parse(text, size, 1 << 20, hist_entry, &b, &next2, &err) != HV_OK) abort();
    if (a.n != b.n || a.sum != b.sum || (next == NULL) != (next2 == NULL) || (next && strcmp(next, next2) != 0)) abort();
    if (hv_json_parse(text, size, "fuzz", &root, NULL) != HV_OK) abort();
    if (json_object_object_get_ex(root, "entry", &entries) && json_object_array_length(entries) != a.n) abort();
    if (entries == NULL && a.n != 0) abort();
    json_object_put(root);
    hv_free(next);
    hv_free(next2);
}

static int count_line(void *ud, const char *line, size_t len, int64_t no) {
    size_t *total = ud;
    (void)no;
    if (memchr(line, '\n', len) != NULL) abort();
    *total += len;
    return HV_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    hv_ehr_page_t p, q;
    hv_error_t err;
    size_t i, total = 0;
    char small[256];
    hv_error_clear(&err);
    if (hv_ehr_page_parse(text, size, 1 << 20, &p, &err) == HV_OK) {
        const char *again;
        char *next = p.next ? strdup(p.next) : NULL;
        for (i = 0; i < p.nresources; i++)
            if (!json_object_is_type(p.resources[i], json_type_object) || hv_json_get_str(p.resources[i], "resourceType") == NULL)
                abort();
        for (i = 0; i < p.nresources; i++) {
            json_object *copy = NULL;
            if (json_object_deep_copy(p.resources[i], &copy, NULL) != 0) continue;
            if (hv__ehr_rewrite_refs(copy, "fuzz", "https://ehr.example/fhir") == HV_OK) check_refs(p.resources[i], copy, 0);
            json_object_put(copy);
        }
        for (i = 0; i < p.noutcomes; i++)
            if (!json_object_is_type(p.outcomes[i], json_type_object)) abort();
        again = json_object_to_json_string_ext(p.root, JSON_C_TO_STRING_PLAIN);
        if (hv_ehr_page_parse(again, strlen(again), 0, &q, &err) != HV_OK) abort();
        if (q.nresources != p.nresources || q.noutcomes != p.noutcomes || q.total != p.total) abort();
        if ((next == NULL) != (q.next == NULL) || (next != NULL && strcmp(next, q.next) != 0)) abort();
        free(next);
        hv_ehr_page_release(&q);
        hv_ehr_page_release(&p);
    }
    check_history(text, size);
    if (hv_ehr_ndjson_each(text, size, 1, count_line, &total) != HV_OK || total > size) abort();
    if (size < sizeof(small)) {
        hv_ehr_schedule_t s;
        uint64_t now = 1795631268ULL * 1000, next;
        memcpy(small, text, size);
        small[size] = '\0';
        if (hv_ehr_retry_after_ms(small, now) < -1) abort();
        if (hv_ehr_schedule_parse(small, &s, &err) == HV_OK) {
            next = hv_ehr_schedule_next(&s, now);
            if (next != 0 && next <= now) abort();
        }
    }
    return 0;
}
