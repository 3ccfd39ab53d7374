/*
 * fuzz_channel.c — fuzzes the channel-file loader (engine/channel_conf.c): JSON
 * with comments, every key's validation, filters, queues, the position map.
 *
 * Invariants: loading never crashes; a refusal always carries a message and a
 * position inside the input (line within the number of lines, column >= 1) or
 * none at all; loading is deterministic (the same input gives the same outcome,
 * message and hash); an accepted channel has a valid id, unique destination
 * names within the caps, and a filter tree within the depth cap.
 */
#include "config.h"
#include "engine/channel_int.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t depth_of(const hv__filter_t *f) {
    size_t i, d = 0;
    if (f == NULL) return 0;
    for (i = 0; i < f->nkids; i++) {
        size_t k = depth_of(f->kids[i]);
        if (k > d) d = k;
    }
    return d + 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hv__chan_conf_t *a = NULL, *b = NULL;
    hv_error_t e1, e2;
    const char *t = (const char *)data;
    int r1, r2;
    size_t i, j, lines = 1;
    for (i = 0; i < size; i++)
        if (data[i] == '\n') lines++;
    hv_error_clear(&e1);
    hv_error_clear(&e2);
    r1 = hv__chan_conf_parse(t, size, "fuzz.json", NULL, &a, &e1);
    r2 = hv__chan_conf_parse(t, size, "fuzz.json", NULL, &b, &e2);
    if (r1 != r2) abort();
    if (r1 != HV_OK) {
        if (a != NULL || e1.message[0] == '\0') abort();
        if (e1.line < 0 || (size_t)e1.line > lines || (e1.line > 0 && e1.column < 1)) abort();
        if (strcmp(e1.message, e2.message) != 0 || e1.line != e2.line || e1.column != e2.column)
            abort();
        return 0;
    }
    if (strcmp(a->text_hash, b->text_hash) != 0 || strcmp(a->id, b->id) != 0) abort();
    if (strlen(a->id) == 0 || strlen(a->id) > HV__CHAN_ID_MAX) abort();
    if (a->ndests > HV__CHAN_MAX_DESTS || a->nsteps > HV__CHAN_MAX_STEPS) abort();
    for (i = 0; i < a->ndests; i++) {
        for (j = 0; j < i; j++)
            if (strcmp(a->dests[i].name, a->dests[j].name) == 0) abort();
        if (a->dests[i].queue.max_attempts < 1) abort();
        if (depth_of(a->dests[i].when) > HV__CHAN_MAX_FILTER_DEPTH + 1) abort();
    }
    if (depth_of(a->filter) > HV__CHAN_MAX_FILTER_DEPTH + 1) abort();
    hv__chan_conf_free(a);
    hv__chan_conf_free(b);
    return 0;
}
