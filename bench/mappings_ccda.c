/*
 * mappings_ccda.c — C-CDA documents mapped to FHIR per second on one core
 * (hv_map_ccda_to_fhir: parse, map, build the Bundle; the JSON is also serialized,
 * as a channel step would store it).
 *
 *   bench/bin/mappings_ccda [DIR] [SECONDS]
 *
 * DIR holds the corpus (every *.ccda and *.xml file with a ClinicalDocument root;
 * default ../shared/reference/ccda/fhir-converter); each round maps every document
 * once, rounds repeat for SECONDS (default 3). Prints the corpus, documents/s and MB/s.
 */
#include "config.h"

#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mappings/mappings.h"

#define MAX_DOCS 256

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "../shared/reference/ccda/fhir-converter";
    double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    char *docs[MAX_DOCS];
    size_t lens[MAX_DOCS], n = 0, bytes = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        fprintf(stderr, "cannot open %s\n", dir);
        return 1;
    }
    struct dirent *de;
    while ((de = readdir(d)) != NULL && n < MAX_DOCS) {
        size_t l = strlen(de->d_name);
        if (!(l > 5 && (strcmp(de->d_name + l - 5, ".ccda") == 0 || strcmp(de->d_name + l - 4, ".xml") == 0)))
            continue;
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL) continue;
        fseek(f, 0, SEEK_END);
        long sz = ftell(f);
        fseek(f, 0, SEEK_SET);
        docs[n] = malloc((size_t)sz + 1);
        if (docs[n] == NULL || fread(docs[n], 1, (size_t)sz, f) != (size_t)sz) {
            free(docs[n]);
            fclose(f);
            continue;
        }
        fclose(f);
        docs[n][sz] = '\0';
        if (strstr(docs[n], "<ClinicalDocument") == NULL) {
            free(docs[n]);
            continue;
        }
        lens[n] = (size_t)sz;
        bytes += (size_t)sz;
        n++;
    }
    closedir(d);
    if (n == 0) {
        fprintf(stderr, "no C-CDA documents in %s\n", dir);
        return 1;
    }
    uint64_t t0 = hv_mono_ns(), done = 0, done_bytes = 0, errors = 0;
    while ((double)(hv_mono_ns() - t0) / 1e9 < seconds) {
        for (size_t i = 0; i < n; i++) {
            hv_map_result_t r = {0};
            hv_error_t err;
            if (hv_map_ccda_to_fhir(docs[i], lens[i], NULL, &r, &err) != HV_OK) {
                errors++;
                continue;
            }
            size_t jl = 0;
            json_object_to_json_string_length(r.bundle, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &jl);
            hv_map_result_free(&r);
            done++;
            done_bytes += lens[i];
        }
    }
    double el = (double)(hv_mono_ns() - t0) / 1e9;
    printf("corpus: %s (%zu documents, %zu bytes, mean %zu bytes)\n", dir, n, bytes, bytes / n);
    printf("mapped %llu documents in %.2f s on one core: %.0f documents/s, %.1f MB/s, %llu errors\n",
           (unsigned long long)done, el, (double)done / el, (double)done_bytes / el / 1e6,
           (unsigned long long)errors);
    for (size_t i = 0; i < n; i++) free(docs[i]);
    return errors != 0;
}
