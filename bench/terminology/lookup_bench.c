/*
 * lookup_bench.c — code look-ups, searches and lab-result standardizations per second,
 * in-process on one connection of the terminology store (bench/terminology/run.sh also
 * measures them over HTTP with wrk).
 *
 *   lookup_bench DATA_DIR SRCDIR   loads the shipped ICD-10-CM 2021 file and the LOINC
 *                                  fixture into DATA_DIR/terminology.db, then measures
 */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "terminology/terminology.h"

static const char *const icd_codes[] = {"E11.9", "I10", "J45.909", "A00.0", "E11.00", "Z00.00",
                                         "M54.5", "R05", "N39.0", "K21.9"};
static const char *const icd_queries[] = {"diabetes", "hypertension", "asthma", "cholera",
                                           "fracture femur", "pneumonia"};
static const char *const lab_inputs[] = {
    "{\"code\":\"GLU\",\"text\":\"Glucose, serum\",\"value\":95,\"unit\":\"mg/dl\","
    "\"referenceRange\":{\"low\":70,\"high\":99}}",
    "{\"code\":\"2345-7\",\"value\":120,\"unit\":\"mg/dL\"}",
    "{\"text\":\"Hemoglobin blood\",\"value\":140,\"unit\":\"g/L\"}",
    "{\"text\":\"Sodium serum\",\"value\":140,\"unit\":\"mEq/L\"}",
    "{\"text\":\"WBC\",\"value\":7.2,\"unit\":\"K/uL\"}",
};

static double per_second(long n, uint64_t ns) { return (double)n / ((double)ns / 1e9); }

int main(int argc, char **argv) {
    char path[4096];
    hv_db_t *db = NULL;
    hv_ucum_t *u = NULL;
    hv_error_t err;
    hv_arena_t *a;
    uint64_t t0;
    long n;
    if (argc != 3) {
        fprintf(stderr, "usage: lookup_bench DATA_DIR SRCDIR\n");
        return 2;
    }
    if (hv_db_open(NULL, argv[1], "terminology", &db, &err) != HV_OK) {
        fprintf(stderr, "lookup_bench: %s\n", err.message);
        return 1;
    }
    snprintf(path, sizeof path, "%s/terminology/data/icd10cm-order-2021.txt.gz", argv[2]);
    t0 = hv_mono_ns();
    if (hv_terminology_load(db, "icd10cm", path, NULL, NULL, &err) != HV_OK) {
        fprintf(stderr, "lookup_bench: %s\n", err.message);
        return 1;
    }
    printf("load ICD-10-CM 2021 (95,358 codes)     %8.2f s\n", (double)(hv_mono_ns() - t0) / 1e9);
    snprintf(path, sizeof path, "%s/test/data/terminology/Loinc.csv", argv[2]);
    if (hv_terminology_load(db, "loinc", path, NULL, NULL, &err) != HV_OK ||
        hv_ucum_new(NULL, 0, &u, &err) != HV_OK) {
        fprintf(stderr, "lookup_bench: %s\n", err.message);
        return 1;
    }
    a = hv_arena_new(0);
    for (n = 0, t0 = hv_mono_ns(); hv_mono_ns() - t0 < 500000000ULL; n++) {
        hv_terminology_concept_t c;
        if (hv_terminology_lookup(db, HV_TERMINOLOGY_ICD10CM, icd_codes[n % 10], a, &c) != HV_OK)
            abort();
        if (n % 256 == 0) hv_arena_reset(a);
    }
    printf("ICD-10-CM code look-ups, in-process    %10.0f /s\n", per_second(n, hv_mono_ns() - t0));
    for (n = 0, t0 = hv_mono_ns(); hv_mono_ns() - t0 < 500000000ULL; n++) {
        hv_terminology_concept_t *r;
        size_t k;
        if (hv_terminology_search(db, HV_TERMINOLOGY_ICD10CM, icd_queries[n % 6], 20, 0, a, &r, &k) !=
            HV_OK)
            abort();
        hv_arena_reset(a);
    }
    printf("ICD-10-CM searches (20 results)        %10.0f /s\n", per_second(n, hv_mono_ns() - t0));
    for (n = 0, t0 = hv_mono_ns(); hv_mono_ns() - t0 < 500000000ULL; n++) {
        struct json_object *in = json_tokener_parse(lab_inputs[n % 5]), *out = NULL;
        if (hv_terminology_standardize(db, u, in, 0.8, 0, &out, &err) != HV_OK) abort();
        json_object_put(in);
        json_object_put(out);
    }
    printf("lab-result standardizations            %10.0f /s\n", per_second(n, hv_mono_ns() - t0));
    hv_arena_free(a);
    hv_ucum_free(u);
    hv_db_close(db);
    return 0;
}
