/*
 * validate.c — validation throughput against the FHIR R4 base specification.
 *
 * Loads the official R4 examples and the Synthea bundles of the reference data
 * (parsed once, outside the timing), then validates them repeatedly with all
 * checks (structure, cardinality, formats, required bindings, invariants through
 * FHIRPath) for about --seconds each, and prints resources validated per second.
 * For Synthea, where one file is a Bundle of hundreds of resources, it prints both
 * bundles/s and the contained resources/s. Parsing throughput (JSON text to tree,
 * strict) is printed too.
 *
 *   bench/bin/validate [--reference DIR] [--seconds S] [--no-invariants]
 *
 * DIR defaults to $HV_SRCDIR/../shared/reference (or ../../shared/reference).
 */
#include "config.h"

#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fhir/fhir.h"

/* CPU time of this process in seconds: on a shared machine a steadier measure than the wall clock. */
static double cpu_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct doc {
    char *text;
    size_t len;
    struct json_object *json;
    size_t resources; /* the resource itself plus Bundle entries */
} doc_t;

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (f == NULL)
        return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n) {
            buf[n] = '\0';
            *len = (size_t)n;
        } else {
            free(buf);
            buf = NULL;
        }
    }
    fclose(f);
    return buf;
}

static size_t load_dir(const char *dir, doc_t **docs) {
    DIR *d = opendir(dir);
    struct dirent *de;
    size_t n = 0, cap = 0;
    if (d == NULL) {
        fprintf(stderr, "cannot open %s\n", dir);
        exit(1);
    }
    while ((de = readdir(d)) != NULL) {
        size_t nl = strlen(de->d_name);
        if (nl < 6 || strcmp(de->d_name + nl - 5, ".json") != 0 ||
            strcmp(de->d_name, "package.json") == 0)
            continue;
        char path[2048];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        doc_t doc;
        memset(&doc, 0, sizeof(doc));
        doc.text = slurp(path, &doc.len);
        if (doc.text == NULL ||
            hv_fhir_json_parse(doc.text, doc.len, NULL, &doc.json, NULL) != HV_OK) {
            free(doc.text);
            continue;
        }
        struct json_object *entries = json_object_object_get(doc.json, "entry");
        doc.resources =
            1 +
            (json_object_is_type(entries, json_type_array) ? json_object_array_length(entries) : 0);
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            *docs = realloc(*docs, cap * sizeof(**docs));
        }
        (*docs)[n++] = doc;
    }
    closedir(d);
    return n;
}

static void run(const char *label, doc_t *docs, size_t n, double seconds, unsigned flags) {
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    double cpu0 = cpu_seconds();
    uint64_t start = hv_mono_ns(), now;
    size_t files = 0, resources = 0, bytes = 0;
    long errors = 0;
    do {
        for (size_t i = 0; i < n; i++) {
            struct json_object *oo = NULL;
            int e = 0;
            if (hv_fhir_validate(v, docs[i].json, NULL, flags, &oo, &e) == HV_OK)
                json_object_put(oo);
            errors += e;
            files++;
            resources += docs[i].resources;
            bytes += docs[i].len;
        }
        now = hv_mono_ns();
    } while ((double)(now - start) / 1e9 < seconds);
    double s = (double)(now - start) / 1e9, cpu = cpu_seconds() - cpu0;
    printf("%-16s validate: %8.0f resources/s wall, %8.0f per CPU-second, %6.1f MB/s wall "
           "(%zu files, %zu resources, %.2f s wall, %.2f s CPU)\n",
           label, (double)resources / s, (double)resources / cpu, (double)bytes / s / 1e6, files,
           resources, s, cpu);
    hv_fhir_validator_free(v);
    (void)errors;
}

static void parse_rate(const char *label, doc_t *docs, size_t n, double seconds)
{
    double cpu0 = cpu_seconds();
    uint64_t start = hv_mono_ns(), now;
    size_t files = 0, bytes = 0;
    do {
        for (size_t i = 0; i < n; i++) {
            struct json_object *o = NULL;
            if (hv_fhir_json_parse(docs[i].text, docs[i].len, NULL, &o, NULL) == HV_OK)
                json_object_put(o);
            files++;
            bytes += docs[i].len;
        }
        now = hv_mono_ns();
    } while ((double)(now - start) / 1e9 < seconds);
    double s = (double)(now - start) / 1e9, cpu = cpu_seconds() - cpu0;
    printf("%-16s parse:    %8.1f MB/s wall, %8.1f MB per CPU-second (strict JSON parse with the "
           "structural check)\n",
           label, (double)bytes / s / 1e6, (double)bytes / cpu / 1e6);
}

int main(int argc, char **argv) {
    const char *ref = NULL;
    double seconds = 3;
    unsigned flags = 0;
    static char buf[2048];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reference") == 0 && i + 1 < argc)
            ref = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--no-invariants") == 0)
            flags |= HV_FHIR_VALIDATE_NO_INVARIANTS;
        else {
            fprintf(stderr, "usage: validate [--reference DIR] [--seconds S] [--no-invariants]\n");
            return 2;
        }
    }
    if (ref == NULL) {
        const char *src = getenv("HV_SRCDIR") ? getenv("HV_SRCDIR") : ".";
        struct stat st;
        snprintf(buf, sizeof(buf), "%s/../shared/reference", src);
        if (stat(buf, &st) != 0)
            snprintf(buf, sizeof(buf), "%s/../../shared/reference", src);
        ref = buf;
    }
    char dir[2200];
    doc_t *ex = NULL, *sy = NULL;
    snprintf(dir, sizeof(dir), "%s/fhir/examples", ref);
    size_t nex = load_dir(dir, &ex);
    snprintf(dir, sizeof(dir), "%s/fhir/synthea", ref);
    size_t nsy = load_dir(dir, &sy);
    printf("bench/validate: %zu official examples, %zu Synthea bundles; %s\n", nex, nsy,
           flags ? "invariants off" : "all checks incl. FHIRPath invariants");
    run("R4 examples", ex, nex, seconds, flags);
    run("Synthea bundles", sy, nsy, seconds, flags);
    parse_rate("R4 examples", ex, nex, seconds / 2);
    parse_rate("Synthea bundles", sy, nsy, seconds / 2);
    return 0;
}
