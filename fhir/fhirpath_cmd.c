/*
 * fhirpath_cmd.c — the `holovitals fhirpath EXPRESSION [FILE]` command and the
 * FHIRPath settings. The command evaluates EXPRESSION against the resource in FILE
 * (or standard input), JSON or XML (FHIR R4 json.html / xml.html, told apart by the
 * first non-blank byte), and prints the result collection as one JSON array line
 * (hv_fhirpath_result_json). A syntax error prints "column N: message" and exits 1,
 * as does an evaluation error; bad usage exits 2.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir.h"
#include "fhir/fhirpath_int.h"

#define HV_FHIRPATH_MAX_INPUT (64u << 20) /* bytes of resource text the command reads */

const hv_setting_t hv_fhirpath_settings[] = {
    {"fhirpath.max_expression", NULL, HV_SET_SIZE, "64KiB", NULL,
     "Longest FHIRPath expression accepted (search parameters, invariants, the fhirpath command)."},
    {"fhirpath.max_depth", NULL, HV_SET_INT, "200", NULL,
     "Deepest nesting of a FHIRPath expression and of its evaluation."},
    {"fhirpath.max_items", NULL, HV_SET_INT, "1000000", NULL,
     "Most items in one intermediate FHIRPath collection; an evaluation past it fails."},
    {NULL, NULL, 0, NULL, NULL, NULL}};

static int read_all(FILE *f, hv_buf_t *b) {
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        int rc = hv_buf_append(b, chunk, n);
        if (rc != HV_OK) return rc;
    }
    return ferror(f) ? HV_EIO : HV_OK;
}

int hv__fp_cli(const hv_fhirpath_limits_t *lim, int argc, char **argv, FILE *in, FILE *out, FILE *errf) {
    hv_fhirpath_t *fp = NULL;
    hv_fhirpath_result_t *res = NULL;
    struct json_object *resource = NULL;
    hv_arena_t *arena = NULL;
    hv_buf_t text, result;
    hv_error_t err;
    FILE *f = NULL;
    int rc = HV_EXIT_FAILURE;
    const char *p;

    hv_buf_init(&text, HV_FHIRPATH_MAX_INPUT);
    hv_buf_init(&result, 0);
    if (argc < 1 || argc > 2) {
        fprintf(errf, "usage: holovitals fhirpath EXPRESSION [FILE]\n");
        return HV_EXIT_USAGE;
    }
    hv_error_clear(&err);
    if (hv_fhirpath_compile(argv[0], 0, lim, &fp, &err) != HV_OK) {
        if (err.column > 0) fprintf(errf, "holovitals: fhirpath: column %d: %s\n", err.column, err.message);
        else fprintf(errf, "holovitals: fhirpath: %s\n", err.message);
        goto out;
    }
    f = argc == 2 && strcmp(argv[1], "-") != 0 ? fopen(argv[1], "rb") : in;
    if (f == NULL) {
        fprintf(errf, "holovitals: fhirpath: cannot open %s\n", argv[1]);
        goto out;
    }
    if (read_all(f, &text) != HV_OK) {
        fprintf(errf, "holovitals: fhirpath: cannot read the resource (or larger than %u bytes)\n",
                HV_FHIRPATH_MAX_INPUT);
        goto out;
    }
    p = text.data != NULL ? text.data : "";
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    {
        hv_fhir_parse_opts_t opts;
        int prc;
        memset(&opts, 0, sizeof(opts));
        opts.flags = HV_FHIR_PARSE_LENIENT;
        hv_error_clear(&err);
        if (*p == '<') prc = hv_fhir_xml_parse(text.data, text.len, &opts, &resource, &err);
        else prc = hv_fhir_json_parse(text.data != NULL ? text.data : "", text.len, &opts, &resource, &err);
        if (prc != HV_OK) {
            char msg[900];
            hv_error_format(&err, msg, sizeof(msg));
            fprintf(errf, "holovitals: fhirpath: %s: %s\n", argc == 2 ? argv[1] : "stdin", msg);
            goto out;
        }
    }
    arena = hv_arena_new(0);
    if (arena == NULL) goto out;
    hv_error_clear(&err);
    if (hv_fhirpath_eval(fp, resource, NULL, arena, &res, &err) != HV_OK) {
        if (err.column > 0) fprintf(errf, "holovitals: fhirpath: column %d: %s\n", err.column, err.message);
        else fprintf(errf, "holovitals: fhirpath: %s\n", err.message);
        goto out;
    }
    if (hv_fhirpath_result_json(res, &result) != HV_OK) goto out;
    fprintf(out, "%s\n", result.data);
    rc = HV_EXIT_OK;
out:
    if (f != NULL && f != in) fclose(f);
    hv_arena_free(arena);
    if (resource != NULL) json_object_put(resource);
    hv_fhirpath_free(fp);
    hv_buf_release(&text);
    hv_buf_release(&result);
    return rc;
}

static int cmd_fhirpath(hv_engine_t *e, int argc, char **argv) {
    hv_fhirpath_limits_t lim = {0, 0, 0, 0};
    hv_config_t *cfg = e != NULL ? hv_engine_config(e) : NULL;
    if (cfg != NULL && hv_config_find(cfg, "fhirpath.max_expression") != NULL) {
        lim.max_expression = (size_t)hv_config_size(cfg, "fhirpath.max_expression");
        lim.max_depth = (unsigned)hv_config_int(cfg, "fhirpath.max_depth");
        lim.max_items = (size_t)hv_config_int(cfg, "fhirpath.max_items");
    }
    return hv__fp_cli(&lim, argc, argv, stdin, stdout, stderr);
}

const hv_command_t hv_fhirpath_commands[] = {
    {"fhirpath", "fhirpath EXPRESSION [FILE]", "evaluate a FHIRPath expression against a resource",
     "Evaluates EXPRESSION (FHIRPath, FHIR R4) against the resource in FILE, or standard input,\n"
     "in JSON or XML, and prints the result collection as a JSON array: elements as their JSON,\n"
     "booleans and numbers as JSON literals (decimals with their exact digits), dates, times and\n"
     "strings as JSON strings, quantities as {\"value\": .., \"unit\": ..}.\n"
     "A syntax error names its column; exit status 1 on an error, 2 on bad usage.\n",
     cmd_fhirpath},
    {NULL, NULL, NULL, NULL, NULL}};

/* FHIRPath's settings and command, plugged into the engine as a module of their own (it
 * starts nothing: its init, start, stop and free are empty). */
const hv_module_t hv_fhirpath_module = {
    "fhirpath", hv_fhirpath_settings, hv_fhirpath_commands, NULL, NULL, NULL, NULL,
};
