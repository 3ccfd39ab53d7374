/*
 * fuzz_split_bundle.c — fuzzes the split-bundle step (engine/channel_split.c) on
 * arbitrary content: FHIR R4 Bundles (http://hl7.org/fhir/R4/bundle.html) and
 * anything else.
 *
 * The first byte picks the mode (even: by entry, odd: by resource type) and a
 * small max_parts (1–16, or the default); the rest is the message content.
 * Invariants: never crashes; an error always has a message and no parts; the
 * outcome is deterministic; content that is not a JSON object with resourceType
 * "Bundle" is refused. By entry: one part per entry whose resource is an object,
 * in order, each equal (json_object_equal) to that resource. By resource type:
 * the parts are collection Bundles whose entries, taken together, are exactly
 * the entries with a resource, each part holding one resource type and no two
 * parts the same type. No more parts than max_parts.
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static json_object *parse(const char *p, size_t n) {
    json_object *o = NULL;
    hv_error_t e;
    hv_error_clear(&e);
    if (hv_json_parse(p, n, "fuzz", &o, &e) != HV_OK) return NULL;
    return o;
}

static int run(void *state, const char *text, size_t len, hv_arena_t *a, hv__part_t **parts,
               size_t *n, hv_error_t *err) {
    hv_channel_msg_t m;
    memset(&m, 0, sizeof(m));
    m.content = text;
    m.len = len;
    m.content_type = "application/fhir+json";
    m.arena = a;
    hv_error_clear(err);
    *parts = NULL;
    *n = 0;
    return hv__split_run(state, &m, parts, n, err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_object *conf = NULL, *root = NULL, *entries = NULL;
    hv_arena_t *a1 = NULL, *a2 = NULL;
    hv__part_t *p1 = NULL, *p2 = NULL;
    hv_error_t e1, e2;
    void *state = NULL;
    size_t n1 = 0, n2 = 0, i, k, want = 0, max_parts = 10000;
    const char *text = (const char *)data + 1;
    int by_type, r1, r2;
    if (size < 1 || size > (1u << 20)) return 0;
    by_type = data[0] & 1;
    conf = json_object_new_object();
    json_object_object_add(conf, "by", json_object_new_string(by_type ? "resource-type" : "entry"));
    if ((data[0] >> 1) & 0x10) {
        max_parts = (size_t)((data[0] >> 1) & 0x0f) + 1;
        json_object_object_add(conf, "max_parts", json_object_new_int64((int64_t)max_parts));
    }
    if (hv__step_split_bundle.check(conf, &e1) != HV_OK ||
        hv__step_split_bundle.init(NULL, conf, &state, &e1) != HV_OK)
        abort();
    a1 = hv_arena_new(0);
    a2 = hv_arena_new(0);
    if (a1 == NULL || a2 == NULL) abort();
    r1 = run(state, text, size - 1, a1, &p1, &n1, &e1);
    r2 = run(state, text, size - 1, a2, &p2, &n2, &e2);
    if (r1 != r2 || n1 != n2) abort();
    if (r1 != HV_OK) {
        if (e1.message[0] == '\0' || n1 != 0 || strcmp(e1.message, e2.message) != 0) abort();
        goto out;
    }
    for (i = 0; i < n1; i++)
        if (p1[i].len != p2[i].len || memcmp(p1[i].content, p2[i].content, p1[i].len) != 0) abort();
    if (n1 > max_parts) abort();
    root = parse(text, size - 1);
    if (root == NULL || !json_object_is_type(root, json_type_object)) abort();
    {
        json_object *rt = NULL;
        if (!json_object_object_get_ex(root, "resourceType", &rt) ||
            !json_object_is_type(rt, json_type_string) ||
            strcmp(json_object_get_string(rt), "Bundle") != 0)
            abort();
    }
    if (json_object_object_get_ex(root, "entry", &entries))
        for (i = 0; i < json_object_array_length(entries); i++) {
            json_object *r = NULL;
            if (json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource", &r) &&
                json_object_is_type(r, json_type_object))
                want++;
        }
    if (!by_type) {
        if (n1 != want) abort();
        for (i = 0, k = 0; entries != NULL && i < json_object_array_length(entries); i++) {
            json_object *r = NULL, *part;
            int eq;
            if (!json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource", &r) ||
                !json_object_is_type(r, json_type_object))
                continue;
            part = parse(p1[k].content, p1[k].len);
            eq = part != NULL && json_object_equal(part, r);
            json_object_put(part);
            if (!eq) abort();
            k++;
        }
    } else {
        size_t total = 0, j;
        const char **types = calloc(n1 ? n1 : 1, sizeof(*types));
        json_object **parsed = calloc(n1 ? n1 : 1, sizeof(*parsed));
        if (types == NULL || parsed == NULL) abort();
        for (i = 0; i < n1; i++) {
            json_object *es = NULL;
            parsed[i] = parse(p1[i].content, p1[i].len);
            if (parsed[i] == NULL || !json_object_object_get_ex(parsed[i], "entry", &es) ||
                json_object_array_length(es) == 0)
                abort();
            for (j = 0; j < json_object_array_length(es); j++) {
                json_object *r = NULL, *t = NULL;
                const char *tn;
                json_object_object_get_ex(json_object_array_get_idx(es, j), "resource", &r);
                tn = json_object_object_get_ex(r, "resourceType", &t) &&
                             json_object_is_type(t, json_type_string)
                         ? json_object_get_string(t)
                         : "";
                if (j == 0) types[i] = tn;
                else if (strcmp(types[i], tn) != 0) abort();
                total++;
            }
            for (k = 0; k < i; k++)
                if (strcmp(types[k], types[i]) == 0) abort();
        }
        if (total != want) abort();
        for (i = 0; i < n1; i++) json_object_put(parsed[i]);
        free(parsed);
        free(types);
    }
out:
    json_object_put(root);
    hv__step_split_bundle.free(state);
    hv_arena_free(a1);
    hv_arena_free(a2);
    json_object_put(conf);
    return 0;
}
