/*
 * fuzz_config.c — fuzzes the configuration loader: JSON with comments, the
 * position map, nested keys and typed values.
 *
 * Invariants: loading never crashes; a failure always carries a message and,
 * for a syntax error, a line/column inside the input; a success leaves every
 * setting valid for its type (re-setting each value to itself succeeds).
 */
#include "config.h"
#include "engine/engine.h"

#include <stdlib.h>
#include <string.h>

static const hv_setting_t settings[] = {
    {"data", "data", HV_SET_STRING, "./var", NULL, "data"},
    {"http.listen", "http", HV_SET_HOSTPORT, "0.0.0.0:8080", NULL, "listen"},
    {"http.max_body", NULL, HV_SET_SIZE, "64MiB", NULL, "body"},
    {"http.idle_timeout", NULL, HV_SET_DURATION, "75s", NULL, "idle"},
    {"http.max_connections", NULL, HV_SET_INT, "10000", NULL, "conns"},
    {"http.access_log", NULL, HV_SET_BOOL, "on", NULL, "log"},
    {"log.format", "log-format", HV_SET_ENUM, "json", "json|text", "format"},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hv_config_t *c = hv_config_new();
    hv_error_t err;
    int rc, line = 0, col = 0, i;
    hv_json_pos_t *pos;
    if (c == NULL) return 0;
    hv_config_declare(c, settings);
    hv_error_clear(&err);
    rc = hv_config_load_text(c, (const char *)data, size, "fuzz.json", &err);
    if (rc != HV_OK) {
        if (err.message[0] == '\0') abort();
        if (rc == HV_EPROTO && (err.line < 1 || err.column < 1)) abort();
    } else {
        for (i = 0; settings[i].key != NULL; i++) {
            char *v = strdup(hv_config_str(c, settings[i].key));
            if (hv_config_set(c, settings[i].key, v, "again", &err) != HV_OK) abort();
            free(v);
        }
    }
    /* the position map stands on its own for any input */
    pos = hv_json_pos_new((const char *)data, size);
    hv_json_pos_get(pos, "/http/listen", &line, &col);
    hv_json_pos_free(pos);
    hv_config_free(c);
    return 0;
}
