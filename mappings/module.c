/*
 * module.c — the mapping module: the `map` commands and the channel steps.
 *
 *   holovitals map v2-to-fhir [--override FILE] [--explain] [--lenient] FILE...
 *   holovitals map ccda-to-fhir [--explain] FILE...
 *   holovitals map fhir-to-v2 --type ADT_A08|ORU_R01 [--explain] FILE
 *
 * print the transaction Bundle (or the HL7 v2 message) on standard output and the
 * OperationOutcome of what could not be mapped on standard error (with --explain,
 * {"bundle","outcome","explain"} on standard output, each element with the mapping
 * row that wrote it). A message that cannot be mapped exits 1 with the reason. With several
 * files, each result is one line (NDJSON, the files' order) and each outcome one line of
 * standard error after the file's name; a file that fails prints no line, the rest go on.
 *
 * Steps (registered by hv_mappings_channels_module, engine.h "Channels"):
 *   hl7v2-to-fhir  content HL7 v2 → transaction Bundle (keys "override": a mapping file
 *                  whose rows replace or add rows; "structure": the message structure to
 *                  use when MSH-9 does not say, e.g. "ORU_R01")
 *   ccda-to-fhir   C-CDA document → transaction Bundle
 *   fhir-to-hl7v2  FHIR resource or Bundle → HL7 v2 message (key "structure", required)
 * The step's output replaces the message content; a message that cannot be mapped
 * fails the step (the message is stored as errored with the reason).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "mappings/mappings_int.h"

#define MAX_FILE (64u << 20)

/* Pretty, or compact on one line (flat: one result a line when several files are mapped). */
static void print_json(FILE *f, json_object *o, int flat) {
    fprintf(f, "%s\n", json_object_to_json_string_ext(o, (flat ? JSON_C_TO_STRING_PLAIN : JSON_C_TO_STRING_PRETTY) |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE));
}

enum { DIR_V2, DIR_CCDA, DIR_FHIR };

/* Maps one file and prints its result (flat: on one line, its OperationOutcome on standard
 * error after the file's name). 0 when it was mapped, -1 when it could not be read or mapped
 * (the reason is on standard error, after the file's name). */
static int map_one(int dir, const char *file, const char *type, const hv_map_opts_t *opts, int flat) {
    hv_map_result_t res;
    hv_error_t err;
    hv_buf_t msg;
    char *text = NULL;
    size_t len = 0;
    int rc, ok = -1;
    memset(&res, 0, sizeof(res));
    hv_error_clear(&err);
    hv_buf_init(&msg, 0);
    if (hv_file_read(file, MAX_FILE, &text, &len, &err) != HV_OK) {
        char line[900];
        hv_error_format(&err, line, sizeof(line));
        fprintf(stderr, "%s\n", line);
        goto out;
    }
    if (dir == DIR_V2) rc = hv_map_v2_to_fhir(text, len, opts, &res, &err);
    else if (dir == DIR_CCDA) rc = hv_map_ccda_to_fhir(text, len, opts, &res, &err);
    else rc = hv_map_fhir_to_v2(text, len, type, opts, &msg, &res, &err);
    if (rc != HV_OK) {
        char line[900];
        hv_error_format(&err, line, sizeof(line));
        fprintf(stderr, "%s: %s\n", file, line[0] ? line : hv_strerror(rc));
        goto out;
    }
    if (opts->explain) {
        json_object *o = json_object_new_object();
        if (res.bundle) hv_json_set(o, "bundle", json_object_get(res.bundle));
        if (dir == DIR_FHIR) hv_json_set(o, "message", json_object_new_string_len(msg.data ? msg.data : "", (int)msg.len));
        if (res.outcome) hv_json_set(o, "outcome", json_object_get(res.outcome));
        if (res.explain) hv_json_set(o, "explain", json_object_get(res.explain));
        print_json(stdout, o, flat);
        json_object_put(o);
    } else {
        if (dir == DIR_FHIR) fwrite(msg.data ? msg.data : "", 1, msg.len, stdout), fputc('\n', stdout);
        else print_json(stdout, res.bundle, flat);
        if (res.outcome != NULL) {
            if (flat) fprintf(stderr, "%s: ", file);
            print_json(stderr, res.outcome, flat);
        }
    }
    ok = 0;
out:
    hv_map_result_free(&res);
    hv_buf_release(&msg);
    hv_free(text);
    return ok;
}

static int run_map(int dir, int argc, char **argv) {
    hv_map_opts_t opts;
    const char *type = NULL;
    int i, nfiles = 0, first = -1, bad = 0, failed = 0;
    memset(&opts, 0, sizeof(opts));
    for (i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--explain") == 0) opts.explain = 1;
        else if (strcmp(argv[i], "--lenient") == 0) opts.lenient_identity = 1;
        else if (strcmp(argv[i], "--override") == 0 && i + 1 < argc) opts.override_file = argv[++i];
        else if (strcmp(argv[i], "--type") == 0 && i + 1 < argc) type = argv[++i];
        else if (argv[i][0] == '-' || (first >= 0 && first + nfiles != i)) bad = 1;
        else {
            if (first < 0) first = i;
            nfiles++;
        }
    }
    /* The files are given together; fhir-to-v2 maps one (a v2 message has no one-line form). */
    if (bad || nfiles == 0 || (dir == DIR_FHIR && (type == NULL || nfiles > 1))) {
        fprintf(stderr, "usage: holovitals map %s\n",
                dir == DIR_V2     ? "v2-to-fhir [--override FILE] [--explain] [--lenient] FILE..."
                : dir == DIR_CCDA ? "ccda-to-fhir [--explain] FILE..."
                                  : "fhir-to-v2 --type ADT_A08|ORU_R01 [--explain] FILE");
        return HV_EXIT_USAGE;
    }
    for (i = first; i < first + nfiles; i++)
        failed += map_one(dir, argv[i], type, &opts, nfiles > 1) != 0;
    return failed ? HV_EXIT_FAILURE : HV_EXIT_OK;
}

static int cmd_v2(hv_engine_t *e, int argc, char **argv) {
    (void)e;
    return run_map(DIR_V2, argc, argv);
}
static int cmd_ccda(hv_engine_t *e, int argc, char **argv) {
    (void)e;
    return run_map(DIR_CCDA, argc, argv);
}
static int cmd_fhir(hv_engine_t *e, int argc, char **argv) {
    (void)e;
    return run_map(DIR_FHIR, argc, argv);
}

static const hv_command_t commands[] = {
    {"map v2-to-fhir", "map v2-to-fhir [--override FILE] [--explain] [--lenient] FILE...",
     "map HL7 v2 messages to FHIR transaction Bundles",
     "Maps FHIR from the HL7 v2 message in FILE with the tables generated from the HL7\n"
     "v2-to-FHIR IG (docs/mappings.md) and prints the transaction Bundle; what could not be\n"
     "mapped is printed as an OperationOutcome on standard error. --override FILE adds or\n"
     "replaces mapping rows. --explain prints {bundle, outcome, explain}, where explain lists\n"
     "each element written with the mapping rows that wrote it. Exit code 1 when the\n"
     "message cannot be mapped (e.g. no patient identifier in PID-3); --lenient maps such a\n"
     "message anyway, for testing single mapping rules. With several FILEs, each result is\n"
     "printed on one line, in the files' order, and each OperationOutcome on one line of\n"
     "standard error after its file's name; a file that cannot be read or mapped prints no\n"
     "line, its reason goes to standard error, the others are mapped, and the exit code is 1.\n",
     cmd_v2},
    {"map ccda-to-fhir", "map ccda-to-fhir [--explain] FILE...",
     "map C-CDA R2.1 documents to FHIR transaction Bundles",
     "Maps the C-CDA document in FILE and prints the transaction Bundle (adapters/ccda).\n"
     "With several FILEs, one result a line, as map v2-to-fhir does.\n", cmd_ccda},
    {"map fhir-to-v2", "map fhir-to-v2 --type ADT_A08|ORU_R01 [--explain] FILE",
     "map a FHIR resource or Bundle to an HL7 v2 message",
     "Maps the FHIR JSON in FILE to one HL7 v2 message of the given structure and prints it.\n",
     cmd_fhir},
    {NULL, NULL, NULL, NULL, NULL},
};

const hv_module_t hv_mappings_module = {
    "mappings", NULL, commands, NULL, NULL, NULL, NULL,
};

/* ------------------------------------------------------------------------- */
/* Channel steps                                                             */
/* ------------------------------------------------------------------------- */

typedef struct step {
    int dir;
    hv_map_tables_t *tables; /* loaded once with the override file */
    char *structure;
} step_t;

static int check_keys(struct json_object *conf, int dir, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        if (!json_object_is_type(v, json_type_string) ||
            (strcmp(k, "override") != 0 && strcmp(k, "structure") != 0) ||
            (strcmp(k, "override") == 0 && dir != DIR_V2)) {
            hv_error_set(err, HV_ECONFIG, k,
                         "unknown or mistyped key \"%s\" in a mapping step (known: %s)", k,
                         dir == DIR_V2 ? "override, structure (strings)" : "structure (string)");
            return HV_ECONFIG;
        }
    }
    if (dir == DIR_FHIR && hv_json_get_str(conf, "structure") == NULL) {
        hv_error_set(err, HV_ECONFIG, "structure",
                     "a fhir-to-hl7v2 step needs \"structure\" (ADT_A08 or ORU_R01)");
        return HV_ECONFIG;
    }
    return HV_OK;
}

static int check_v2(struct json_object *conf, hv_error_t *err) { return check_keys(conf, DIR_V2, err); }
static int check_ccda(struct json_object *conf, hv_error_t *err) { return check_keys(conf, DIR_CCDA, err); }
static int check_fhir(struct json_object *conf, hv_error_t *err) { return check_keys(conf, DIR_FHIR, err); }

static void step_free(void *state) {
    step_t *s = state;
    if (s == NULL) return;
    hv__map_tables_free(s->tables);
    hv_free(s->structure);
    hv_free(s);
}

static int step_init(int dir, struct json_object *conf, void **state, hv_error_t *err) {
    step_t *s = hv_calloc(1, sizeof(*s));
    const char *ov = hv_json_get_str(conf, "override"), *st = hv_json_get_str(conf, "structure");
    int rc;
    if (s == NULL) return HV_ENOMEM;
    s->dir = dir;
    if (st != NULL) s->structure = hv_strdup(st);
    if (ov != NULL) {
        rc = hv__map_tables_load(ov, &s->tables, err);
        if (rc != HV_OK) {
            step_free(s);
            return rc;
        }
    }
    *state = s;
    return HV_OK;
}

static int init_v2(hv_engine_t *e, struct json_object *conf, void **state, hv_error_t *err) {
    (void)e;
    return step_init(DIR_V2, conf, state, err);
}
static int init_ccda(hv_engine_t *e, struct json_object *conf, void **state, hv_error_t *err) {
    (void)e;
    return step_init(DIR_CCDA, conf, state, err);
}
static int init_fhir(hv_engine_t *e, struct json_object *conf, void **state, hv_error_t *err) {
    (void)e;
    return step_init(DIR_FHIR, conf, state, err);
}

/* The mapping's OperationOutcome goes with the message (hv_channel_msg_t.outcome, stored by
 * the channel runtime) unless its only issue is the "mapped" note of a clean mapping. The
 * outcome is JSON text (HL7 v2, res->outcome_text) or a json-c object (the other directions). */
static int keep_outcome(hv_channel_msg_t *m, const hv_map_result_t *res) {
    json_object *oo = res->outcome, *issues = NULL;
    char *copy;
    if (res->outcome_text != NULL) {
        if (res->clean) return HV_OK;
        copy = hv_arena_strdup(m->arena, res->outcome_text);
        if (copy == NULL) return HV_ENOMEM;
        m->outcome = copy;
        return HV_OK;
    }
    if (oo == NULL || !json_object_object_get_ex(oo, "issue", &issues) ||
        !json_object_is_type(issues, json_type_array) || json_object_array_length(issues) == 0)
        return HV_OK;
    if (json_object_array_length(issues) == 1) {
        const char *code = hv_json_get_str(json_object_array_get_idx(issues, 0), "code");
        if (code != NULL && strcmp(code, "informational") == 0) return HV_OK;
    }
    copy = hv_arena_strdup(m->arena, json_object_to_json_string_ext(oo, JSON_C_TO_STRING_PLAIN |
                                                                           JSON_C_TO_STRING_NOSLASHESCAPE));
    if (copy == NULL) return HV_ENOMEM;
    m->outcome = copy;
    return HV_OK;
}

/*
 * Runs a mapping step on a message. HL7 v2 maps straight to JSON text (hv_map_opts_t.text):
 * the Bundle goes on as the message content without a json-c tree in between, and the FHIR
 * store's delivery parses it once (fhir/channel_store.c).
 */
static int step_run(void *state, hv_channel_msg_t *m, hv_error_t *err) {
    step_t *s = state;
    hv_map_opts_t opts;
    hv_map_result_t res;
    hv_buf_t out;
    int rc;
    memset(&opts, 0, sizeof(opts));
    memset(&res, 0, sizeof(res));
    hv_buf_init(&out, 0);
    opts.tables = s->tables;
    opts.structure = s->structure;
    opts.text = 1;
    if (s->dir == DIR_V2) rc = hv_map_v2_to_fhir(m->content, m->len, &opts, &res, err);
    else if (s->dir == DIR_CCDA) rc = hv_map_ccda_to_fhir(m->content, m->len, &opts, &res, err);
    else rc = hv_map_fhir_to_v2(m->content, m->len, s->structure, &opts, &out, &res, err);
    if (rc == HV_OK && s->dir != DIR_FHIR) {
        const char *js = res.bundle_text;
        size_t jl = res.bundle_len;
        char *copy;
        if (js == NULL) {
            js = json_object_to_json_string_ext(res.bundle, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
            jl = strlen(js);
        }
        copy = hv_arena_strndup(m->arena, js, jl);
        if (copy == NULL) {
            rc = HV_ENOMEM;
        } else {
            m->content = copy;
            m->len = jl;
            m->content_type = "application/fhir+json";
        }
    } else if (rc == HV_OK) {
        char *copy = hv_arena_strndup(m->arena, out.data ? out.data : "", out.len);
        if (copy == NULL) {
            rc = HV_ENOMEM;
        } else {
            m->content = copy;
            m->len = out.len;
            m->content_type = "x-application/hl7-v2+er7";
        }
    }
    if (rc == HV_OK) rc = keep_outcome(m, &res);
    if (rc == HV_ENOMEM) hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
    hv_map_result_free(&res);
    hv_buf_release(&out);
    return rc;
}

static const hv_channel_step_t step_v2 = {"hl7v2-to-fhir", check_v2, init_v2, step_run, step_free};
static const hv_channel_step_t step_ccda = {"ccda-to-fhir", check_ccda, init_ccda, step_run, step_free};
static const hv_channel_step_t step_fhir = {"fhir-to-hl7v2", check_fhir, init_fhir, step_run, step_free};

static int channels_init(hv_engine_t *e, void **state) {
    int rc = hv_channel_register_step(e, &step_v2);
    if (rc == HV_OK) rc = hv_channel_register_step(e, &step_ccda);
    if (rc == HV_OK) rc = hv_channel_register_step(e, &step_fhir);
    *state = NULL;
    return rc;
}

const hv_module_t hv_mappings_channels_module = {
    "mappings-channels", NULL, NULL, channels_init, NULL, NULL, NULL,
};
