/*
 * map_driver.c — a test-only driver (no CLI, no engine) for the C-CDA → FHIR and
 * FHIR → HL7 v2 mappings, used by test_ccda.py until `holovitals map` lands:
 *
 *   map_driver ccda-to-fhir FILE         prints {"bundle": …, "outcome": …} as JSON
 *   map_driver fhir-to-v2 TYPE FILE      prints the ER7 message (CR-separated)
 *
 * Exit status: 0 on success, 1 when the mapping failed (the error on stderr), 2 on usage.
 */
#include "config.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mappings/mappings.h"

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *b = NULL;
    long n;
    if (f == NULL) return NULL;
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) goto out;
    b = malloc((size_t)n + 1);
    if (b == NULL || fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
        goto out;
    }
    b[n] = '\0';
    *len = (size_t)n;
out:
    fclose(f);
    return b;
}

int main(int argc, char **argv) {
    hv_map_result_t r = {0};
    hv_error_t err;
    hv_buf_t msg;
    size_t len = 0;
    char *text = NULL, fmt[1024];
    int rc, status = 1;
    hv_error_clear(&err);
    hv_buf_init(&msg, 0);
    if (argc == 3 && strcmp(argv[1], "ccda-to-fhir") == 0) {
        text = slurp(argv[2], &len);
        if (text == NULL) goto usage;
        rc = hv_map_ccda_to_fhir(text, len, NULL, &r, &err);
        if (rc == HV_OK) {
            struct json_object *o = json_object_new_object();
            hv_json_set(o, "bundle", json_object_get(r.bundle));
            hv_json_set(o, "outcome", json_object_get(r.outcome));
            puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
            json_object_put(o);
            status = 0;
        }
    } else if (argc == 4 && strcmp(argv[1], "fhir-to-v2") == 0) {
        text = slurp(argv[3], &len);
        if (text == NULL) goto usage;
        rc = hv_map_fhir_to_v2(text, len, argv[2], NULL, &msg, &r, &err);
        if (rc == HV_OK) {
            fwrite(msg.data, 1, msg.len, stdout);
            status = 0;
        }
    } else {
        goto usage;
    }
    if (status != 0) {
        hv_error_format(&err, fmt, sizeof(fmt));
        fprintf(stderr, "%s\n", fmt);
    }
    free(text);
    hv_buf_release(&msg);
    hv_map_result_free(&r);
    return status;
usage:
    fprintf(stderr, "usage: map_driver ccda-to-fhir FILE | fhir-to-v2 TYPE FILE\n");
    free(text);
    return 2;
}
