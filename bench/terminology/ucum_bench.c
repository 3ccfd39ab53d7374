/*
 * ucum_bench.c — UCUM conversions per second (bench/terminology/run.sh runs it side
 * by side with the npm package @lhncbc/ucum-lhc on the same conversions).
 *
 * Two sets of conversions:
 *   parsed  the conversion cases of the official UCUM functional tests
 *           (UcumFunctionalTests.xml <conversion>), units parsed on every call;
 *   common  clinical units that ucum-lhc finds whole in its own table (mg/dL, Cel ...).
 * Each set runs uncached (hv__ucum_parse of both units, then the conversion) and
 * through hv_ucum_convert (the bounded cache), for about half a second each.
 *
 *   ucum_bench [--cases]   --cases prints both sets as JSON (for the ucum-lhc side)
 * The reference data folder is $HV_REFERENCE_DIR, else $HV_SRCDIR/../shared/reference (or
 * ../../shared/reference from a worktree).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "terminology/ucum.h"
#include "terminology/ucum_int.h"

#define MAX_CASES 64

typedef struct conv {
    double value;
    char from[128], to[128];
} conv_t;

static const conv_t common[] = {
    {100, "mg/dL", "g/L"},   {5.4, "mmol/L", "umol/L"}, {37, "Cel", "[degF]"},
    {70, "kg", "[lb_av]"},   {250, "mL", "L"},          {4.5, "10*3/uL", "10*9/L"},
    {68, "[in_i]", "cm"},    {2, "h", "min"},           {120, "mm[Hg]", "kPa"},
    {13.5, "g/dL", "g/L"},
};

static int load_parsed(conv_t *out, size_t *n) {
    char path[4096];
    const char *ref = getenv("HV_REFERENCE_DIR"), *src = getenv("HV_SRCDIR");
    xmlDocPtr doc;
    xmlNodePtr sec, c;
    if (ref != NULL && ref[0] != '\0')
        snprintf(path, sizeof path, "%s/ucum/FHIR-Ucum-java/src/test/resources/UcumFunctionalTests.xml", ref);
    else
        snprintf(path, sizeof path,
                 "%s/../shared/reference/ucum/FHIR-Ucum-java/src/test/resources/UcumFunctionalTests.xml",
                 src != NULL ? src : ".");
    if (access(path, R_OK) != 0 && (ref == NULL || ref[0] == '\0')) /* a worktree: one level up */
        snprintf(path, sizeof path,
                 "%s/../../shared/reference/ucum/FHIR-Ucum-java/src/test/resources/UcumFunctionalTests.xml",
                 src != NULL ? src : ".");
    doc = xmlReadFile(path, NULL, XML_PARSE_NONET);
    if (doc == NULL) {
        fprintf(stderr, "ucum_bench: cannot read %s\n", path);
        return -1;
    }
    *n = 0;
    for (sec = xmlDocGetRootElement(doc)->children; sec != NULL; sec = sec->next) {
        if (sec->type != XML_ELEMENT_NODE || strcmp((const char *)sec->name, "conversion") != 0)
            continue;
        for (c = sec->children; c != NULL && *n < MAX_CASES; c = c->next) {
            xmlChar *v, *f, *t;
            if (c->type != XML_ELEMENT_NODE) continue;
            v = xmlGetProp(c, (const xmlChar *)"value");
            f = xmlGetProp(c, (const xmlChar *)"srcUnit");
            t = xmlGetProp(c, (const xmlChar *)"dstUnit");
            if (v != NULL && f != NULL && t != NULL) {
                out[*n].value = strtod((const char *)v, NULL);
                snprintf(out[*n].from, sizeof out[*n].from, "%s", (const char *)f);
                snprintf(out[*n].to, sizeof out[*n].to, "%s", (const char *)t);
                (*n)++;
            }
            xmlFree(v);
            xmlFree(f);
            xmlFree(t);
        }
    }
    xmlFreeDoc(doc);
    return 0;
}

static void print_json(const char *name, const conv_t *c, size_t n, int last) {
    size_t i;
    printf("  \"%s\": [\n", name);
    for (i = 0; i < n; i++)
        printf("    {\"value\": %.17g, \"from\": \"%s\", \"to\": \"%s\"}%s\n", c[i].value, c[i].from,
               c[i].to, i + 1 < n ? "," : "");
    printf("  ]%s\n", last ? "" : ",");
}

/* Runs the set repeatedly for at least min_ns; returns conversions per second. */
static double run(hv_ucum_t *u, const conv_t *c, size_t n, int cached, uint64_t min_ns,
                  double *checksum) {
    uint64_t start = hv_mono_ns(), elapsed;
    long count = 0;
    double sum = 0;
    do {
        size_t i;
        for (i = 0; i < n; i++) {
            double v = 0;
            if (cached) {
                if (hv_ucum_convert(u, c[i].value, c[i].from, c[i].to, &v, NULL) != HV_OK) abort();
            } else {
                hv_ucum_canon_t a, b;
                if (hv__ucum_parse(u, c[i].from, strlen(c[i].from), &a, NULL, NULL) != HV_OK ||
                    hv__ucum_parse(u, c[i].to, strlen(c[i].to), &b, NULL, NULL) != HV_OK ||
                    hv_ucum_canon_convert(&a, c[i].value, &b, &v, NULL) != HV_OK)
                    abort();
            }
            sum += v;
        }
        count += (long)n;
        elapsed = hv_mono_ns() - start;
    } while (elapsed < min_ns);
    *checksum = sum;
    return (double)count / ((double)elapsed / 1e9);
}

int main(int argc, char **argv) {
    static conv_t parsed[MAX_CASES];
    size_t np = 0;
    hv_ucum_t *u = NULL;
    hv_error_t err;
    double sum;
    if (load_parsed(parsed, &np) != 0) return 1;
    if (argc > 1 && strcmp(argv[1], "--cases") == 0) {
        printf("{\n");
        print_json("parsed", parsed, np, 0);
        print_json("common", common, HV_ARRAY_LEN(common), 1);
        printf("}\n");
        return 0;
    }
    if (hv_ucum_new(NULL, 0, &u, &err) != HV_OK) {
        fprintf(stderr, "ucum_bench: %s\n", err.message);
        return 1;
    }
    printf("holovitals  parsed  uncached  %12.0f conversions/s  (%zu official cases)\n",
           run(u, parsed, np, 0, 500000000ULL, &sum), np);
    printf("holovitals  parsed  cached    %12.0f conversions/s\n",
           run(u, parsed, np, 1, 500000000ULL, &sum));
    printf("holovitals  common  uncached  %12.0f conversions/s  (%zu clinical units)\n",
           run(u, common, HV_ARRAY_LEN(common), 0, 500000000ULL, &sum), HV_ARRAY_LEN(common));
    printf("holovitals  common  cached    %12.0f conversions/s\n",
           run(u, common, HV_ARRAY_LEN(common), 1, 500000000ULL, &sum));
    hv_ucum_free(u);
    return 0;
}
