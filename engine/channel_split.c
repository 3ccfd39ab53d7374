/*
 * channel_split.c — the split-bundle step: one FHIR R4 Bundle in, one message
 * per entry (or one Bundle per resource type) out.
 *
 * FHIR R4 Bundle (http://hl7.org/fhir/R4/bundle.html): Bundle.entry[] holds
 * entries whose `resource` is the resource carried. With "by": "entry" (the
 * default) each entry's resource becomes a part of its own; entries without a
 * resource (e.g. the response-only entries of a batch-response) are skipped.
 * With "by": "resource-type" the entries are grouped by resource.resourceType,
 * in order of first appearance, and each group becomes a Bundle of type
 * "collection" (Bundle.type, R4 bundle-type) holding the original entry objects
 * (fullUrl included) in their original order.
 *
 * The runtime (channel_ingest.c) calls hv__split_run: the message is stored as
 * received with status "split", each part as its own message (parent_id = the
 * message's id) that runs the steps after this one and has its own queue rows,
 * all in one transaction. The step's own run (the generic step interface) is
 * what `channel test` shows: it leaves the message unchanged.
 *
 * An entry whose resource is not a JSON object is skipped like one without a resource.
 *
 * Keys: by ("entry" | "resource-type"), max_parts (1–1,000,000, default 10,000:
 * a Bundle with more parts is an error, so that one message cannot make an
 * unbounded transaction), content_type of the parts (default
 * "application/fhir+json").
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <stdio.h>
#include <string.h>

#define SPLIT_MAX_PARTS_DEFAULT 10000
#define SPLIT_MAX_PARTS_LIMIT 1000000

typedef struct split_step {
    int by_type;
    size_t max_parts;
    char *content_type;
} split_step_t;

static int split_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        if (strcmp(k, "by") == 0) {
            const char *s = json_object_get_string(v);
            if (json_object_is_type(v, json_type_string) &&
                (strcmp(s, "entry") == 0 || strcmp(s, "resource-type") == 0))
                continue;
            hv_error_set(err, HV_ECONFIG, k, "\"by\" is entry or resource-type");
        } else if (strcmp(k, "max_parts") == 0) {
            if (json_object_is_type(v, json_type_int) && json_object_get_int64(v) >= 1 &&
                json_object_get_int64(v) <= SPLIT_MAX_PARTS_LIMIT)
                continue;
            hv_error_set(err, HV_ECONFIG, k, "\"max_parts\" is an integer from 1 to %d",
                         SPLIT_MAX_PARTS_LIMIT);
        } else if (strcmp(k, "content_type") == 0) {
            if (json_object_is_type(v, json_type_string) && json_object_get_string_len(v) > 0)
                continue;
            hv_error_set(err, HV_ECONFIG, k, "\"content_type\" must be a non-empty string");
        } else {
            hv_error_set(err, HV_ECONFIG, k,
                         "unknown key \"%s\" in a split-bundle step (known: by, max_parts, "
                         "content_type)",
                         k);
        }
        return HV_ECONFIG;
    }
    return HV_OK;
}

static void split_free(void *state) {
    split_step_t *s = state;
    if (s == NULL) return;
    hv_free(s->content_type);
    hv_free(s);
}

static int split_init(hv_engine_t *e, struct json_object *conf, void **state, hv_error_t *err) {
    split_step_t *s = hv_calloc(1, sizeof(*s));
    json_object *v = NULL;
    const char *by = hv_json_get_str(conf, "by");
    const char *ct = hv_json_get_str(conf, "content_type");
    (void)e;
    (void)err;
    if (s == NULL) return HV_ENOMEM;
    s->by_type = by != NULL && strcmp(by, "resource-type") == 0;
    s->max_parts = SPLIT_MAX_PARTS_DEFAULT;
    if (json_object_object_get_ex(conf, "max_parts", &v)) s->max_parts = (size_t)json_object_get_int64(v);
    s->content_type = hv_strdup(ct ? ct : "application/fhir+json");
    if (s->content_type == NULL) {
        split_free(s);
        return HV_ENOMEM;
    }
    *state = s;
    return HV_OK;
}

/* The generic run (channel test): the message is left as it is. */
static int split_run_generic(void *state, hv_channel_msg_t *m, hv_error_t *err) {
    (void)state;
    (void)m;
    (void)err;
    return HV_OK;
}

const hv_channel_step_t hv__step_split_bundle = {"split-bundle", split_check, split_init,
                                                 split_run_generic, split_free};

/* Serializes j into a part in the arena. */
static int make_part(hv_arena_t *a, json_object *j, const char *ct, hv__part_t *p) {
    const char *text = json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t n = text ? strlen(text) : 0;
    memset(p, 0, sizeof(*p));
    p->content = hv_arena_strndup(a, text ? text : "", n);
    if (p->content == NULL) return HV_ENOMEM;
    p->len = n;
    p->content_type = ct;
    return HV_OK;
}

/* The resourceType of an entry's resource, or NULL when the entry has none. */
static const char *entry_type(json_object *entry, json_object **res) {
    json_object *r = NULL;
    *res = NULL;
    if (!json_object_is_type(entry, json_type_object) ||
        !json_object_object_get_ex(entry, "resource", &r) || !json_object_is_type(r, json_type_object))
        return NULL;
    *res = r;
    return hv_json_get_str(r, "resourceType");
}

int hv__split_run(void *state, const hv_channel_msg_t *m, hv__part_t **parts, size_t *nparts,
                  hv_error_t *err) {
    split_step_t *s = state;
    json_object *root = NULL, *entries = NULL, *group = NULL;
    hv__part_t *out = NULL;
    const char *ct = NULL;
    const char **types = NULL;
    size_t n = 0, i, k, ntypes = 0;
    hv_error_t perr;
    int rc = HV_OK;
    hv_error_clear(&perr);
    if (hv_json_parse(m->content, m->len, "message", &root, &perr) != HV_OK ||
        !json_object_is_type(root, json_type_object)) {
        hv_error_set(err, HV_EINVAL, NULL, "split-bundle: the content is not a JSON object");
        rc = HV_EINVAL;
        goto out;
    }
    if (hv_json_get_str(root, "resourceType") == NULL ||
        strcmp(hv_json_get_str(root, "resourceType"), "Bundle") != 0) {
        hv_error_set(err, HV_EINVAL, NULL, "split-bundle: the content is not a FHIR Bundle");
        rc = HV_EINVAL;
        goto out;
    }
    if (json_object_object_get_ex(root, "entry", &entries) &&
        !json_object_is_type(entries, json_type_array)) {
        hv_error_set(err, HV_EINVAL, "entry", "split-bundle: Bundle.entry is not an array");
        rc = HV_EINVAL;
        goto out;
    }
    n = entries ? json_object_array_length(entries) : 0;
    ct = hv_arena_strdup(m->arena, s->content_type);
    out = hv_arena_alloc(m->arena, (n ? n : 1) * sizeof(*out));
    types = hv_arena_alloc(m->arena, (n ? n : 1) * sizeof(*types));
    if (ct == NULL || out == NULL || types == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    /* The parts (by entry) or the distinct types in order of first appearance. */
    for (i = 0; i < n; i++) {
        json_object *res = NULL;
        const char *t = entry_type(json_object_array_get_idx(entries, i), &res);
        if (res == NULL) continue;
        if (!s->by_type) {
            if (ntypes >= s->max_parts) goto too_many;
            if ((rc = make_part(m->arena, res, ct, &out[ntypes])) != HV_OK) goto out;
            ntypes++;
            continue;
        }
        if (t == NULL) t = "";
        for (k = 0; k < ntypes; k++)
            if (strcmp(types[k], t) == 0) break;
        if (k == ntypes) {
            if (ntypes >= s->max_parts) goto too_many;
            types[ntypes++] = t;
        }
    }
    if (s->by_type) {
        for (k = 0; k < ntypes; k++) {
            json_object *arr = NULL;
            group = json_object_new_object();
            arr = json_object_new_array();
            if (group == NULL || arr == NULL || hv_json_set_str(group, "resourceType", "Bundle") != HV_OK ||
                hv_json_set_str(group, "type", "collection") != HV_OK ||
                hv_json_set(group, "entry", arr) != HV_OK) {
                if (arr != NULL && group == NULL) json_object_put(arr);
                rc = HV_ENOMEM;
                goto out;
            }
            for (i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(entries, i), *res = NULL;
                const char *t = entry_type(e, &res);
                if (res == NULL || strcmp(t ? t : "", types[k]) != 0) continue;
                if (json_object_array_add(arr, json_object_get(e)) != 0) {
                    json_object_put(e);
                    rc = HV_ENOMEM;
                    goto out;
                }
            }
            if ((rc = make_part(m->arena, group, ct, &out[k])) != HV_OK) goto out;
            json_object_put(group);
            group = NULL;
        }
    }
    *parts = out;
    *nparts = ntypes;
    goto out;
too_many:
    hv_error_set(err, HV_ETOOBIG, NULL, "split-bundle: more than %zu parts (max_parts)",
                 s->max_parts);
    rc = HV_ETOOBIG;
out:
    json_object_put(group);
    json_object_put(root);
    return rc;
}
