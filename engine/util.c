/*
 * util.c — clocks, random numbers, and the parsers for sizes, durations,
 * host:port pairs and percent-encoding that configuration and HTTP share.
 */
#include "config.h"
#include "engine/engine.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <openssl/rand.h>

uint64_t hv_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t hv_mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void hv_time_rfc3339(uint64_t ms, char *out, size_t outlen) {
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03uZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (unsigned)(ms % 1000));
}

/* xoshiro256** (Blackman and Vigna), one state per thread, seeded by getrandom(2). */
static _Thread_local uint64_t rng[4];
static _Thread_local int rng_seeded;

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t rng_next(void) {
    uint64_t result, t;
    if (!rng_seeded) {
        if (getrandom(rng, sizeof(rng), 0) != (ssize_t)sizeof(rng)) {
            rng[0] = hv_mono_ns();
            rng[1] = (uint64_t)(uintptr_t)&rng;
            rng[2] = hv_now_ms();
            rng[3] = 0x9e3779b97f4a7c15ull;
        }
        rng_seeded = 1;
    }
    result = rotl(rng[1] * 5, 7) * 9;
    t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return result;
}

void hv_random_fast(void *p, size_t n) {
    unsigned char *o = p;
    while (n > 0) {
        uint64_t v = rng_next();
        size_t k = n < 8 ? n : 8;
        memcpy(o, &v, k);
        o += k;
        n -= k;
    }
}

int hv_random_secure(void *p, size_t n) {
    return RAND_bytes(p, (int)n) == 1 ? HV_OK : HV_EIO;
}

void hv_hex(const void *p, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    const unsigned char *s = p;
    size_t i;
    for (i = 0; i < n; i++) {
        out[2 * i] = digits[s[i] >> 4];
        out[2 * i + 1] = digits[s[i] & 15];
    }
    out[2 * n] = '\0';
}

/* Parses a decimal number followed by an optional unit from `units`; multiplies. */
typedef struct unit {
    const char *name;
    uint64_t mult;
} unit_t;

static int parse_with_units(const char *s, const unit_t *units, uint64_t *out) {
    char *end;
    unsigned long long v;
    const unit_t *u;
    if (s == NULL || !isdigit((unsigned char)*s)) return HV_EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0) return HV_EINVAL;
    while (*end == ' ') end++;
    if (*end == '\0') {
        *out = (uint64_t)v * units[0].mult;
        return HV_OK;
    }
    for (u = units; u->name != NULL; u++) {
        if (strcasecmp(end, u->name) == 0) {
            if (u->mult != 0 && v > UINT64_MAX / u->mult) return HV_EINVAL;
            *out = (uint64_t)v * u->mult;
            return HV_OK;
        }
    }
    return HV_EINVAL;
}

int hv_parse_size(const char *s, uint64_t *out) {
    static const unit_t units[] = {
        {"", 1},          {"b", 1},           {"k", 1024},         {"kb", 1024},
        {"kib", 1024},    {"m", 1024 * 1024}, {"mb", 1024 * 1024}, {"mib", 1024 * 1024},
        {"g", 1u << 30},  {"gb", 1u << 30},   {"gib", 1u << 30},   {NULL, 0},
    };
    return parse_with_units(s, units, out);
}

int hv_parse_duration_ms(const char *s, uint64_t *out) {
    static const unit_t units[] = {
        {"", 1},        {"ms", 1},           {"s", 1000},          {"sec", 1000},
        {"m", 60000},   {"min", 60000},      {"h", 3600000},       {"d", 86400000},
        {NULL, 0},
    };
    return parse_with_units(s, units, out);
}

int hv_parse_hostport(const char *s, char *host, size_t hostlen, int *port) {
    const char *colon;
    size_t hlen;
    char *end;
    long p;
    if (s == NULL || *s == '\0') return HV_EINVAL;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':') return HV_EINVAL;
        hlen = (size_t)(close - s - 1);
        if (hlen == 0 || hlen >= hostlen) return HV_EINVAL;
        memcpy(host, s + 1, hlen);
        host[hlen] = '\0';
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL) return HV_EINVAL;
        hlen = (size_t)(colon - s);
        if (hlen >= hostlen) return HV_EINVAL;
        if (hlen == 0) {
            snprintf(host, hostlen, "0.0.0.0");
        } else {
            memcpy(host, s, hlen);
            host[hlen] = '\0';
        }
    }
    errno = 0;
    p = strtol(colon + 1, &end, 10);
    if (errno != 0 || end == colon + 1 || *end != '\0' || p < 0 || p > 65535) return HV_EINVAL;
    *port = (int)p;
    return HV_OK;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* s must have room for a NUL at s[n]. */
long hv_url_decode(char *s, size_t n, int plus_is_space) {
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi, lo;
            if (i + 2 >= n) return -1;
            hi = hexval((unsigned char)s[i + 1]);
            lo = hexval((unsigned char)s[i + 2]);
            if (hi < 0 || lo < 0) return -1;
            s[o++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            s[o++] = ' ';
        } else {
            s[o++] = c;
        }
    }
    s[o] = '\0';
    return (long)o;
}

/* regcomp's trees, in nodes, that hv_regex_too_costly lets through: a pattern's length times
 * the product of its repetitions (~70 bytes a node in glibc: ~18 MB at most). */
#define REGEX_MAX_NODES (1u << 18)

/* Reads the decimal digits at *p (the value capped past 100,000); whether there was one. */
static int regex_num(const char **p, const char *end, uint64_t *v) {
    const char *start = *p;
    *v = 0;
    for (; *p < end && **p >= '0' && **p <= '9'; (*p)++)
        if (*v < 100000) *v = *v * 10 + (uint64_t)(**p - '0');
    return *p > start;
}

/* Reads "{m}", "{m,}" or "{m,n}" at p (up to end); *top the largest copy count it asks for.
 * Returns the length read, 0 if it is not a count (regcomp then treats or refuses it). */
static size_t regex_count(const char *p, const char *end, uint64_t *top) {
    const char *q = p + 1;
    uint64_t m, k = 0;
    int has_m = regex_num(&q, end, &m), has_k = 0, comma = q < end && *q == ',';
    if (comma) {
        q++;
        has_k = regex_num(&q, end, &k);
    }
    if (q >= end || *q != '}' || (!has_m && !comma)) return 0;
    *top = !comma ? m : has_k ? k : m + 1;
    if (*top < 1) *top = 1;
    return (size_t)(q - p) + 1;
}

const char *hv_regex_too_costly(const char *pat, size_t n) {
    const char *p = pat, *end = pat + n;
    uint64_t product = 1, limit = REGEX_MAX_NODES / ((uint64_t)n + 1);
    int after_quant = 0;
    while (p < end) {
        uint64_t f = 0;
        size_t len = 1;
        if (*p == '\\') {
            /* glibc takes "\1".."\9" as back-references, whose matching may backtrack
             * exponentially; FHIRPath's regular expressions need none ($1 is replaceMatches'). */
            if (p + 1 < end && p[1] >= '1' && p[1] <= '9') return "back-references are not supported";
            len = p + 1 < end ? 2 : 1;
        } else if (*p == '[') {
            /* A bracket expression is one atom: "]" first (after "^") is a member. */
            const char *q = p + 1;
            if (q < end && *q == '^') q++;
            if (q < end && *q == ']') q++;
            while (q < end && *q != ']') q++;
            len = (size_t)(q - p) + (q < end);
        } else if (*p == '+') {
            f = 2;
        } else if (*p == '*' || *p == '?') {
            f = 1;
        } else if (*p == '{') {
            len = regex_count(p, end, &f);
            if (len == 0) len = 1;
        }
        if (f > 0) {
            if (after_quant) return "a quantifier follows another";
            product *= f;
            if (product > limit) return "its repetitions are too many for its length";
        }
        after_quant = f > 0;
        p += len;
    }
    return NULL;
}
