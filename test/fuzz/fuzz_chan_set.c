/*
 * fuzz_chan_set.c — fuzzes the set step (engine/channel_set.c) on arbitrary content.
 *
 * The first byte picks a JSON Pointer (RFC 6901) and a value from small tables; the
 * rest is the message content. Invariants: never crashes; the in-place edit of
 * canonical text (fast = 1) and json-c's parse/set/serialize (fast = 0) agree on
 * the status and, on success, on every byte; a success is JSON again, and the member
 * at the pointer is equal (json_object_equal) to the value; an error has a message.
 */
#include "config.h"
#include "engine/channel_int.h"

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const pointers[] = {"/a", "/meta/source", "/a/b", "/x~1y", "/m~0n/o", "/resourceType",
                                       "/meta", "/a/b/c/d"};
static const char *const values[] = {"1", "\"bench\"", "{\"k\":[1,2.50,null]}", "[]"};

/* The member of root at pointer (borrowed), or NULL. */
static json_object *at(json_object *root, const char *pointer) {
    char tok[256];
    const char *p = pointer;
    while (root != NULL && *p == '/') {
        size_t n = 0;
        json_object *next = NULL;
        p++;
        while (*p && *p != '/' && n + 1 < sizeof(tok)) {
            if (p[0] == '~' && (p[1] == '0' || p[1] == '1')) {
                tok[n++] = p[1] == '0' ? '~' : '/';
                p += 2;
            } else {
                tok[n++] = *p++;
            }
        }
        tok[n] = '\0';
        if (!json_object_object_get_ex(root, tok, &next)) return NULL;
        root = next;
    }
    return root;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *pointer, *text;
    json_object *value, *back = NULL;
    const char *vt;
    char *fast = NULL, *slow = NULL;
    size_t fn = 0, sn = 0, len;
    hv_arena_t *a;
    hv_error_t e1, e2;
    int r1, r2;
    if (size < 1) return 0;
    pointer = pointers[data[0] % (sizeof(pointers) / sizeof(pointers[0]))];
    value = json_tokener_parse(values[(data[0] >> 3) % (sizeof(values) / sizeof(values[0]))]);
    if (value == NULL) abort();
    vt = json_object_to_json_string_ext(value, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    text = (const char *)data + 1;
    len = size - 1;
    a = hv_arena_new(0);
    if (a == NULL) abort();
    hv_error_clear(&e1);
    hv_error_clear(&e2);
    r1 = hv__set_apply(text, len, pointer, value, vt, 1, a, &fast, &fn, &e1);
    r2 = hv__set_apply(text, len, pointer, value, vt, 0, a, &slow, &sn, &e2);
    if (r1 != r2) abort();
    if (r1 == HV_OK) {
        hv_error_t e3;
        if (fn != sn || memcmp(fast, slow, fn) != 0 || strlen(fast) != fn) abort();
        hv_error_clear(&e3);
        if (hv_json_parse(fast, fn, "fuzz", &back, &e3) != HV_OK) abort();
        if (!json_object_equal(at(back, pointer), value)) abort();
        json_object_put(back);
    } else if (r1 != HV_ENOMEM && (e1.message[0] == '\0' || strcmp(e1.message, e2.message) != 0)) {
        abort();
    }
    json_object_put(value);
    hv_arena_free(a);
    return 0;
}
