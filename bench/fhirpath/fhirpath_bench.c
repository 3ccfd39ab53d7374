/*
 * fhirpath_bench.c — FHIRPath evaluations per second on the search-parameter
 * expressions of Patient, Observation and Encounter (the official R4 search
 * parameters, fhir/fhir.h) over the official R4 examples of those types.
 *
 * Each expression is compiled once; an "evaluation" is one expression on one
 * resource, with the arena reset after each. `--cases` writes the same workload as
 * JSON (expressions and example files per type) for fhirpath_js_bench.js, so that
 * both engines evaluate identical pairs. Run through bench/fhirpath/run.sh.
 *
 * Time is the process's CPU time (CLOCK_PROCESS_CPUTIME_ID), not wall time: on a shared
 * machine the wall clock counts the time other processes hold the cores. The
 * JavaScript side measures the same way (process.cpuUsage).
 */
#include "config.h"

#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fhir/fhir.h"
#include "fhir/fhirpath.h"

#define MAX_RES 256
#define MAX_EXPR 128
#define SYNTHEA_MAX 200
#define MAX_BUNDLES 32

static const char *types[] = {"Patient", "Observation", "Encounter"};

typedef struct work {
    const char *type;
    const char *set; /* "examples" or "synthea" */
    char *files[MAX_RES];
    struct json_object *res[MAX_RES];
    size_t nres;
    const char *expr[MAX_EXPR];
    hv_fhirpath_t *fp[MAX_EXPR];
    size_t nexpr;
} work_t;

static char refdir[1024];
static char synthdir[1100];
static char *bundle_files[MAX_BUNDLES];
static struct json_object *bundles[MAX_BUNDLES];
static size_t nbundles;

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The Synthea bundles, in name order. */
static void load_bundles(void) {
    DIR *d;
    struct dirent *de;
    snprintf(synthdir, sizeof(synthdir), "%s/../synthea", refdir);
    d = opendir(synthdir);
    if (d == NULL) return;
    while ((de = readdir(d)) != NULL && nbundles < MAX_BUNDLES) {
        char path[1400];
        if (strstr(de->d_name, ".json") == NULL) continue;
        snprintf(path, sizeof(path), "%s/%s", synthdir, de->d_name);
        bundle_files[nbundles++] = strdup(path);
    }
    closedir(d);
    qsort(bundle_files, nbundles, sizeof(*bundle_files), cmp_str);
    for (size_t i = 0; i < nbundles; i++) bundles[i] = json_object_from_file(bundle_files[i]);
}

/* The same expressions as w, on the first SYNTHEA_MAX Synthea resources of its type. */
static void synthea_work(const work_t *w, work_t *s) {
    *s = *w;
    s->set = "synthea";
    s->nres = 0;
    for (size_t b = 0; b < nbundles && s->nres < SYNTHEA_MAX; b++) {
        struct json_object *entries = NULL;
        if (bundles[b] == NULL || !json_object_object_get_ex(bundles[b], "entry", &entries)) continue;
        for (size_t i = 0; i < json_object_array_length(entries) && s->nres < SYNTHEA_MAX; i++) {
            struct json_object *r = NULL;
            const char *rt;
            if (!json_object_object_get_ex(json_object_array_get_idx(entries, i), "resource", &r)) continue;
            rt = hv_json_get_str(r, "resourceType");
            if (rt != NULL && strcmp(rt, w->type) == 0) {
                s->res[s->nres] = r;
                s->files[s->nres++] = NULL;
            }
        }
    }
}

static uint64_t cpu_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int find_refdir(void) {
    const char *src = getenv("HV_SRCDIR");
    for (int up = 1; up <= 2; up++) {
        char probe[1200];
        FILE *f;
        snprintf(refdir, sizeof(refdir), "%s/%sshared/reference/fhir/examples", src != NULL ? src : ".",
                 up == 1 ? "../" : "../../");
        snprintf(probe, sizeof(probe), "%s/Patient-example.json", refdir);
        f = fopen(probe, "r");
        if (f != NULL) {
            fclose(f);
            return 0;
        }
    }
    fprintf(stderr, "fhirpath_bench: cannot find shared/reference/fhir/examples (set HV_SRCDIR)\n");
    return -1;
}

static int load(work_t *w, const char *type) {
    DIR *d = opendir(refdir);
    struct dirent *de;
    const hv_fhir_type_t *t = hv_fhir_type_find(type, strlen(type));
    size_t tl = strlen(type);
    hv_error_t err;
    memset(w, 0, sizeof(*w));
    w->type = type;
    w->set = "examples";
    if (d == NULL || t == NULL) return -1;
    while ((de = readdir(d)) != NULL && w->nres < MAX_RES) {
        char path[1400];
        if (strncmp(de->d_name, type, tl) != 0 || de->d_name[tl] != '-') continue;
        snprintf(path, sizeof(path), "%s/%s", refdir, de->d_name);
        w->res[w->nres] = json_object_from_file(path);
        if (w->res[w->nres] == NULL) continue;
        w->files[w->nres++] = strdup(path);
    }
    closedir(d);
    for (size_t i = 0; i < hv_fhir_search_own_count(t) && w->nexpr < MAX_EXPR; i++) {
        const char *x = hv_fhir_search_expression(hv_fhir_search_own_at(t, i));
        if (x == NULL) continue;
        if (hv_fhirpath_compile(x, 0, NULL, &w->fp[w->nexpr], &err) != HV_OK) {
            fprintf(stderr, "fhirpath_bench: %s: cannot compile %s: %s\n", type, x, err.message);
            continue;
        }
        w->expr[w->nexpr++] = x;
    }
    return 0;
}

static void print_cases(work_t *ws, size_t n) {
    struct json_object *top = json_object_new_object(), *o = json_object_new_array(), *bl = json_object_new_array();
    for (size_t i = 0; i < nbundles; i++) json_object_array_add(bl, json_object_new_string(bundle_files[i]));
    for (size_t k = 0; k < n; k++) {
        struct json_object *t = json_object_new_object(), *f = json_object_new_array(), *e = json_object_new_array();
        for (size_t i = 0; i < ws[k].nres; i++) json_object_array_add(f, json_object_new_string(ws[k].files[i]));
        for (size_t i = 0; i < ws[k].nexpr; i++) json_object_array_add(e, json_object_new_string(ws[k].expr[i]));
        json_object_object_add(t, "type", json_object_new_string(ws[k].type));
        json_object_object_add(t, "files", f);
        json_object_object_add(t, "expressions", e);
        json_object_array_add(o, t);
    }
    json_object_object_add(top, "types", o);
    json_object_object_add(top, "bundles", bl);
    json_object_object_add(top, "synthea_max", json_object_new_int(SYNTHEA_MAX));
    printf("%s\n", json_object_to_json_string_ext(top, JSON_C_TO_STRING_PLAIN));
    json_object_put(top);
}

int main(int argc, char **argv) {
    static work_t ws[6];
    double total_evals = 0, total_s = 0;
    if (find_refdir() != 0) return 1;
    for (size_t k = 0; k < 3; k++)
        if (load(&ws[k], types[k]) != 0) return 1;
    load_bundles();
    for (size_t k = 0; k < 3; k++) synthea_work(&ws[k], &ws[3 + k]);
    if (argc > 1 && strcmp(argv[1], "--cases") == 0) {
        print_cases(ws, 3);
        return 0;
    }
    printf("FHIRPath evaluations/s (one expression on one resource; ~1 s of CPU time per type, one thread)\n");
    for (size_t k = 0; k < 6; k++) {
        work_t *w = &ws[k];
        hv_arena_t *a = hv_arena_new(64 * 1024);
        uint64_t start = cpu_ns(), el = 0;
        double evals = 0;
        size_t errors = 0, items = 0;
        do {
            for (size_t i = 0; i < w->nres; i++) {
                for (size_t x = 0; x < w->nexpr; x++) {
                    hv_fhirpath_result_t *r = NULL;
                    hv_error_t err;
                    err.code = 0;
                    if (hv_fhirpath_eval(w->fp[x], w->res[i], NULL, a, &r, &err) != HV_OK) errors++;
                    else items += hv_fhirpath_result_count(r);
                    hv_arena_reset(a);
                }
            }
            evals += (double)(w->nres * w->nexpr);
            el = cpu_ns() - start;
        } while (el < 1000000000ULL);
        if (w->nres == 0) continue;
        printf("holovitals  %-12s %-8s %12.0f evaluations/s  (%zu expressions x %zu resources; %zu items, %zu errors per pass)\n",
               w->type, w->set, evals / (el / 1e9), w->nexpr, w->nres, items / (size_t)(evals / (double)(w->nres * w->nexpr)),
               errors / (size_t)(evals / (double)(w->nres * w->nexpr)));
        total_evals += evals;
        total_s += el / 1e9;
        hv_arena_free(a);
    }
    printf("holovitals  %-12s %-8s %12.0f evaluations/s\n", "all", "", total_evals / total_s);
    return 0;
}
