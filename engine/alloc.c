/*
 * alloc.c — the allocation wrappers and the error object.
 *
 * Every heap allocation in HoloVitals goes through hv_malloc and friends, so
 * that a fault-injection build (--enable-fault-injection) can make the Nth
 * allocation fail and tests can prove each failure path frees what it took,
 * as curl's torture tests and SQLite's fault tests do.
 */
#include "config.h"
#include "engine/engine.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef HV_FAULT_INJECTION
static _Atomic long fail_countdown;

void hv_alloc_fail_after(long nth) { atomic_store(&fail_countdown, nth); }

static int should_fail(void) {
    long n = atomic_load(&fail_countdown);
    if (n <= 0) return 0;
    if (atomic_fetch_sub(&fail_countdown, 1) == 1) return 1;
    return 0;
}
#else
void hv_alloc_fail_after(long nth) { (void)nth; }
#define should_fail() 0
#endif

void *hv_malloc(size_t n) {
    if (should_fail()) return NULL;
    return malloc(n ? n : 1);
}

void *hv_calloc(size_t count, size_t size) {
    if (should_fail()) return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *hv_realloc(void *p, size_t n) {
    if (should_fail()) return NULL;
    return realloc(p, n ? n : 1);
}

void hv_free(void *p) { free(p); }

char *hv_strndup(const char *s, size_t n) {
    char *d = hv_malloc(n + 1);
    if (d == NULL) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *hv_strdup(const char *s) { return hv_strndup(s, strlen(s)); }

static const char *const status_text[] = {
    "ok",
    "out of memory",
    "invalid input",
    "need more input",
    "I/O error",
    "not found",
    "too big",
    "protocol error",
    "invalid configuration",
    "not supported",
    "conflict",
    "busy",
    "timed out",
    "database error",
    "not permitted",
    "closed",
    "bad usage",
};

const char *hv_strerror(int status) {
    size_t i = status <= 0 ? (size_t)-status : HV_ARRAY_LEN(status_text);
    return i < HV_ARRAY_LEN(status_text) ? status_text[i] : "unknown error";
}

void hv_error_clear(hv_error_t *err) {
    if (err != NULL) memset(err, 0, sizeof(*err));
}

void hv_error_set(hv_error_t *err, int code, const char *location, const char *fmt, ...) {
    va_list ap;
    if (err == NULL) return;
    err->code = code;
    if (location != NULL) snprintf(err->location, sizeof(err->location), "%s", location);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
}

void hv_error_format(const hv_error_t *err, char *out, size_t outlen) {
    size_t n = 0;
    if (outlen == 0) return;
    out[0] = '\0';
    if (err->location[0] != '\0') n += (size_t)snprintf(out, outlen, "%s:", err->location);
    if (n < outlen && err->line > 0)
        n += (size_t)snprintf(out + n, outlen - n, "%d:%d:", err->line, err->column);
    if (n < outlen)
        snprintf(out + n, outlen - n, "%s%s", n > 0 ? " " : "",
                 err->message[0] ? err->message : hv_strerror(err->code));
}
