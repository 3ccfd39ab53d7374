/*
 * bench/mappings.c — HL7 v2 → FHIR mappings per second on one core (one thread).
 *
 *   bench/bin/mappings [--json-c] [SECONDS] [FILE...]
 *
 * Maps each message repeatedly for SECONDS (default 2) and prints messages/s and the
 * Bundle size. Without FILEs it uses two built-in messages: an ADT^A01 (MSH, EVN, PID,
 * NK1, PV1, AL1, DG1: 7 segments) and an ORU^R01 (MSH, PID, ORC, OBR, 10 OBX: 14
 * segments). The mapping tables are loaded once before timing.
 *
 * Each message is mapped to the Bundle as JSON text (hv_map_opts_t.text), what the channel
 * step stores and hands on; --json-c maps to json-c objects instead (the CLI's and the tests'
 * form), which costs the conversion of the tree.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "mappings/mappings.h"

static const char *adt =
    "MSH|^~\\&|SENDAPP|SENDFAC|RECAPP|RECFAC|20240101120000+0000||ADT^A01^ADT_A01|MSG001|P|2.5.1\r"
    "EVN|A01|20240101120000\r"
    "PID|1||12345^^^HOSP^MR~987-65-4321^^^SSA^SS||DOE^JANE^Q^^MRS||19800102|F|||1 MAIN ST^^SPRINGFIELD^IL^62701^USA^H||^PRN^PH^^1^217^5551234|||M\r"
    "NK1|1|DOE^JOHN|SPO^Spouse^HL70063|1 MAIN ST^^SPRINGFIELD^IL^62701|^PRN^PH^^1^217^5551235\r"
    "PV1|1|I|WARD^101^A||||1234^SMITH^JOHN^^^DR|||MED|||||||||V100^^^HOSP^VN|||||||||||||||||||||||||20240101110000\r"
    "AL1|1|DA|70618^Penicillin^RXNORM|SV|Hives\r"
    "DG1|1||I10^Essential hypertension^I10|||A\r";

static char oru[8192];

static void build_oru(void) {
    int i;
    size_t n;
    n = (size_t)snprintf(oru, sizeof(oru),
                         "MSH|^~\\&|LAB|LABFAC|EHR|HOSP|20240102080000-0500||ORU^R01^ORU_R01|LAB777|P|2.5.1\r"
                         "PID|1||12345^^^HOSP^MR||DOE^JANE||19800102|F\r"
                         "ORC|RE|PLC100^EHR|FIL200^LAB\r"
                         "OBR|1|PLC100^EHR|FIL200^LAB|24331-1^Lipid panel^LN|||20240102070000-0500|||||||||||||||20240102075900-0500|||F\r");
    for (i = 1; i <= 10; i++)
        n += (size_t)snprintf(oru + n, sizeof(oru) - n,
                              "OBX|%d|NM|2093-%d^Analyte %d^LN||%d.5|mg/dL^mg/dL^UCUM|<200|N|||F|||20240102075000-0500\r",
                              i, i, i, 100 + i);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static hv_map_opts_t opts;

static int run(const char *name, const char *msg, size_t len, double seconds) {
    hv_map_result_t r;
    hv_error_t err;
    double t0, t;
    long n = 0;
    size_t bytes = 0;
    memset(&r, 0, sizeof(r));
    if (hv_map_v2_to_fhir(msg, len, &opts, &r, &err) != HV_OK) {
        fprintf(stderr, "%s: not mapped: %s\n", name, err.message);
        return 1;
    }
    bytes = r.bundle_text != NULL ? r.bundle_len
                                  : strlen(json_object_to_json_string_ext(r.bundle, JSON_C_TO_STRING_PLAIN));
    hv_map_result_free(&r);
    t0 = now();
    do {
        int i;
        for (i = 0; i < 100; i++) {
            if (hv_map_v2_to_fhir(msg, len, &opts, &r, &err) != HV_OK) return 1;
            hv_map_result_free(&r);
        }
        n += 100;
        t = now();
    } while (t - t0 < seconds);
    printf("%-28s %8.0f messages/s  (%ld in %.2f s, %zu-byte message, %zu-byte Bundle)\n", name,
           (double)n / (t - t0), n, t - t0, len, bytes);
    return 0;
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf != NULL) buf[n] = '\0';
    *len = (size_t)n;
    return buf;
}

int main(int argc, char **argv) {
    double seconds;
    int i, rc = 0;
    opts.text = 1;
    if (argc > 1 && strcmp(argv[1], "--json-c") == 0) {
        opts.text = 0;
        argv++;
        argc--;
    }
    seconds = argc > 1 ? atof(argv[1]) : 2.0;
    if (seconds <= 0) seconds = 2.0;
    build_oru();
    printf("HL7 v2 -> FHIR transaction Bundle (%s), one thread, %.1f s per message\n",
           opts.text ? "JSON text" : "json-c objects", seconds);
    if (argc <= 2) {
        rc |= run("ADT^A01 (7 segments)", adt, strlen(adt), seconds);
        rc |= run("ORU^R01 (14 segments)", oru, strlen(oru), seconds);
    }
    for (i = 2; i < argc; i++) {
        size_t len = 0;
        char *text = slurp(argv[i], &len);
        const char *base = strrchr(argv[i], '/');
        if (text == NULL) {
            fprintf(stderr, "%s: cannot read\n", argv[i]);
            return 1;
        }
        rc |= run(base ? base + 1 : argv[i], text, len, seconds);
        free(text);
    }
    return rc;
}
