/*
 * channel.c — FHIR for the channel runtime (engine.h "Channels"): the "fhirpath"
 * syntax of filter rules (FHIR R4 fhirpath.html, evaluated by fhir/fhirpath.h) and
 * the `validate` step (FHIR R4 validation.html, by the validator of fhir/validate.c),
 * registered by the small module hv_fhir_channels_module.
 *
 * A fhirpath rule passes when the expression, evaluated with the message (a FHIR
 * resource in JSON) as %resource, gives the single boolean true. Content that is
 * not JSON makes the rule fail (the message is filtered by it).
 *
 * The validate step parses the content as a FHIR resource and validates it; any
 * error or fatal issue fails the step (the message is stored as errored with the
 * count and the first issue's diagnostics and location). Keys: "profile" (a
 * canonical URL of a profile the validator knows; default none), "bindings",
 * "invariants" (booleans, default true).
 *
 * The fhir-store destination and the fhir source live in fhir/channel_store.c.
 *
 * It also attaches the FHIR store's changes to the engine's event bus: a Patient
 * created or updated publishes patient.created / patient.updated (the seed's event
 * types) with {"resourceType", "id", "version"} — ids only, no PHI. The event is
 * written in the write's own transaction (the store's outbox, fhir/channel_store.c
 * hv__fhir_channel_store_start) and drained onto the bus after the commit, so that
 * an answered write's event survives a crash right after the answer.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "fhir/fhir.h"
#include "fhir/fhirpath.h"
#include "fhir/rest_int.h"

static void put_json(void *p) { json_object_put(p); }

static int fp_check(const char *path, hv_error_t *err) {
    hv_fhirpath_t *fp = NULL;
    hv_error_t e;
    hv_error_clear(&e);
    if (hv_fhirpath_compile(path, 0, NULL, &fp, &e) != HV_OK) {
        hv_error_set(err, HV_ECONFIG, NULL, "FHIRPath: %s (column %d)",
                     e.message[0] ? e.message : "syntax error", e.column);
        return HV_ECONFIG;
    }
    hv_fhirpath_free(fp);
    return HV_OK;
}

static int fp_get(const hv_channel_msg_t *m, const char *path, char **out) {
    json_object *res = NULL;
    hv_fhirpath_t *fp = NULL;
    hv_fhirpath_result_t *r = NULL;
    hv_fhirpath_item_t it;
    hv_error_t err;
    int rc;
    if (m->arena == NULL) return HV_EINVAL;
    if (hv_json_parse(m->content, m->len, "message", &res, &err) != HV_OK) return HV_EPROTO;
    if (hv_arena_cleanup_add(m->arena, put_json, res) != HV_OK) {
        json_object_put(res);
        return HV_ENOMEM;
    }
    rc = hv_fhirpath_compile(path, 0, NULL, &fp, &err);
    if (rc != HV_OK) return rc;
    rc = hv_fhirpath_eval(fp, res, NULL, m->arena, &r, &err);
    if (rc == HV_OK && hv_fhirpath_result_count(r) == 1 &&
        hv_fhirpath_result_item(r, 0, &it) == HV_OK && it.kind != HV_FHIRPATH_NODE &&
        it.text != NULL) {
        *out = hv_arena_strdup(m->arena, it.text);
        rc = *out ? HV_OK : HV_ENOMEM;
    } else if (rc == HV_OK) {
        rc = HV_ENOTFOUND;
    }
    hv_fhirpath_free(fp);
    return rc;
}

static const hv_channel_path_provider_t fhirpath_paths = {"fhirpath", fp_check, fp_get};

/* ------------------------------------------------------------------------- */
/* validate step                                                             */
/* ------------------------------------------------------------------------- */

typedef struct vstep {
    hv_fhir_validator_t *v;
    char *profile;
    unsigned flags;
} vstep_t;

static int v_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, val) {
        if (strcmp(k, "profile") == 0 && json_object_is_type(val, json_type_string)) continue;
        if ((strcmp(k, "bindings") == 0 || strcmp(k, "invariants") == 0) &&
            json_object_is_type(val, json_type_boolean))
            continue;
        hv_error_set(err, HV_ECONFIG, k,
                     "unknown or mistyped key \"%s\" in a validate step (known: profile (string), "
                     "bindings, invariants (booleans))",
                     k);
        return HV_ECONFIG;
    }
    return HV_OK;
}

static void v_free(void *state) {
    vstep_t *s = state;
    if (s == NULL) return;
    hv_fhir_validator_free(s->v);
    hv_free(s->profile);
    hv_free(s);
}

static int v_init(hv_engine_t *e, struct json_object *conf, void **state, hv_error_t *err) {
    vstep_t *s = hv_calloc(1, sizeof(*s));
    json_object *b = NULL;
    (void)e;
    if (s == NULL) return HV_ENOMEM;
    s->v = hv_fhir_validator_new();
    if (hv_json_get_str(conf, "profile")) s->profile = hv_strdup(hv_json_get_str(conf, "profile"));
    if (json_object_object_get_ex(conf, "bindings", &b) && !json_object_get_boolean(b))
        s->flags |= HV_FHIR_VALIDATE_NO_BINDINGS;
    if (json_object_object_get_ex(conf, "invariants", &b) && !json_object_get_boolean(b))
        s->flags |= HV_FHIR_VALIDATE_NO_INVARIANTS;
    if (s->v == NULL) {
        v_free(s);
        hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
        return HV_ENOMEM;
    }
    *state = s;
    return HV_OK;
}

static int v_run(void *state, hv_channel_msg_t *m, hv_error_t *err) {
    vstep_t *s = state;
    json_object *res = NULL, *oo = NULL, *issues = NULL;
    int errors = 0, rc;
    if (hv_json_parse(m->content, m->len, "message", &res, err) != HV_OK) {
        hv_error_set(err, HV_EINVAL, NULL, "not JSON: %s", err->message);
        return HV_EINVAL;
    }
    rc = hv_fhir_validate(s->v, res, s->profile, s->flags, &oo, &errors);
    if (rc != HV_OK) {
        hv_error_set(err, rc, NULL, "validation could not run: %s", hv_strerror(rc));
    } else if (errors > 0) {
        const char *diag = "", *where = "";
        if (json_object_object_get_ex(oo, "issue", &issues) && json_object_array_length(issues)) {
            json_object *i0 = json_object_array_get_idx(issues, 0), *ex = NULL;
            if (hv_json_get_str(i0, "diagnostics")) diag = hv_json_get_str(i0, "diagnostics");
            if (json_object_object_get_ex(i0, "expression", &ex) &&
                json_object_array_length(ex) > 0)
                where = json_object_get_string(json_object_array_get_idx(ex, 0));
        }
        hv_error_set(err, HV_EINVAL, where, "%d validation error%s; first: %s%s%s", errors,
                     errors == 1 ? "" : "s", diag, where[0] ? " at " : "", where);
        rc = HV_EINVAL;
    }
    json_object_put(oo);
    json_object_put(res);
    return rc;
}

static const hv_channel_step_t validate_step = {"validate", v_check, v_init, v_run, v_free};

static int channels_init(hv_engine_t *e, void **state) {
    hv__fhir_sources_t *sources = NULL;
    int rc = hv_channel_register_paths(e, &fhirpath_paths);
    if (rc == HV_OK) rc = hv_channel_register_step(e, &validate_step);
    /* The fhir-store destination and the fhir source (fhir/channel_store.c). */
    if (rc == HV_OK) rc = hv__fhir_channel_store_init(e, &sources);
    *state = sources;
    return rc;
}

static int channels_start(hv_engine_t *e, void *state) {
    return hv__fhir_channel_store_start(e, state);
}

static void channels_free(hv_engine_t *e, void *state) {
    hv__fhir_channel_store_free(e, state);
}

const hv_module_t hv_fhir_channels_module = {
    "fhir-channels", NULL, NULL, channels_init, channels_start, NULL, channels_free,
};
