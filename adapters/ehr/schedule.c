/*
 * schedule.c — sync schedules: "manual", "daily", "hourly" and a subset of the
 * five-field cron syntax (POSIX crontab, "minute hour day-of-month month
 * day-of-week", with Vixie cron's steps and its rule that two restricted day
 * fields match when either does), and "every <duration>" intervals (a
 * duration as settings take it, "90s", "15m", at least 1s: the only way to
 * schedule below a minute, which tests use). Times are UTC. See ehr.h.
 */
#include "config.h"
#include "adapters/ehr/ehr.h"

#include <string.h>
#include <time.h>

#define MAX_SCAN_MINUTES (5ULL * 366 * 24 * 60)

/* Parses one number; returns the characters used, 0 if none or too large. */
static size_t num(const char *s, size_t n, int *out) {
    size_t i = 0;
    int v = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (s[i] - '0');
        if (v > 1000) return 0;
        i++;
    }
    if (i == 0) return 0;
    *out = v;
    return i;
}

/*
 * One field: a comma list of `*`, `a`, `a-b`, each with an optional `/step`.
 * Sets bits lo..hi of *bits; *star when the field is exactly "*" (or "*\/1").
 */
static int field(const char *s, size_t n, int lo, int hi, uint64_t *bits, int *star, hv_error_t *err,
                 const char *name) {
    size_t i = 0;
    *bits = 0;
    *star = 0;
    if (n == 0) goto bad;
    while (i < n) {
        size_t end = i, k;
        int a, b, step = 1, v;
        while (end < n && s[end] != ',') end++;
        if (end == i) goto bad;
        if (s[i] == '*') {
            a = lo;
            b = hi;
            k = i + 1;
            if (end - i == 1 && i == 0 && end == n) *star = 1;
        } else {
            size_t u = num(s + i, end - i, &a);
            if (u == 0) goto bad;
            k = i + u;
            b = a;
            if (k < end && s[k] == '-') {
                u = num(s + k + 1, end - k - 1, &b);
                if (u == 0) goto bad;
                k += 1 + u;
            }
        }
        if (k < end && s[k] == '/') {
            size_t u = num(s + k + 1, end - k - 1, &step);
            if (u == 0 || step < 1) goto bad;
            k += 1 + u;
            if (s[i] == '*' && step == 1 && i == 0 && end == n) *star = 1;
            else if (s[i] == '*') *star = 0;
        }
        if (k != end || a < lo || b > hi || a > b) goto bad;
        for (v = a; v <= b; v += step) *bits |= (uint64_t)1 << v;
        i = end + (end < n ? 1 : 0);
        if (end < n && i == n) goto bad; /* trailing comma */
    }
    return HV_OK;
bad:
    hv_error_set(err, HV_EINVAL, name, "bad cron %s field \"%.*s\" (allowed: * a a-b and /step, %d-%d)",
                 name, (int)n, s, lo, hi);
    return HV_EINVAL;
}

int hv_ehr_schedule_parse(const char *text, hv_ehr_schedule_t *out, hv_error_t *err) {
    static const char *const names[5] = {"minute", "hour", "day-of-month", "month", "day-of-week"};
    static const int lo[5] = {0, 0, 1, 1, 0}, hi[5] = {59, 23, 31, 12, 7};
    hv_ehr_schedule_t s;
    const char *p = text, *start[5];
    size_t len[5];
    uint64_t bits[5];
    int star[5], nf = 0, i;
    memset(&s, 0, sizeof(s));
    if (text == NULL || strcmp(text, "manual") == 0) {
        s.kind = HV_EHR_SCHED_MANUAL;
        goto ok;
    }
    if (strcmp(text, "daily") == 0 || strcmp(text, "@daily") == 0) {
        s.kind = HV_EHR_SCHED_DAILY;
        goto ok;
    }
    if (strcmp(text, "hourly") == 0 || strcmp(text, "@hourly") == 0) {
        s.kind = HV_EHR_SCHED_HOURLY;
        goto ok;
    }
    if (strncmp(text, "every ", 6) == 0) {
        uint64_t ms = 0;
        if (hv_parse_duration_ms(text + 6, &ms) != HV_OK || ms < 1000 || ms > 366ULL * 86400 * 1000) {
            hv_error_set(err, HV_EINVAL, "schedule", "\"every\" takes a duration from 1s to a year (\"every 15m\", \"every 6h\")");
            return HV_EINVAL;
        }
        s.kind = HV_EHR_SCHED_EVERY;
        s.every_ms = ms;
        goto ok;
    }
    if (strlen(text) > 200) {
        hv_error_set(err, HV_EINVAL, "schedule", "the schedule is longer than 200 characters");
        return HV_EINVAL;
    }
    while (*p) {
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '\0') break;
        if (nf == 5) {
            hv_error_set(err, HV_EINVAL, "schedule",
                         "a cron schedule has five fields (minute hour day-of-month month day-of-week)");
            return HV_EINVAL;
        }
        start[nf] = p;
        while (*p && *p != ' ' && *p != '\t') p++;
        len[nf] = (size_t)(p - start[nf]);
        nf++;
    }
    if (nf != 5) {
        hv_error_set(err, HV_EINVAL, "schedule",
                     "the schedule is \"manual\", \"daily\", \"hourly\", \"every <duration>\" or a five-field cron expression");
        return HV_EINVAL;
    }
    for (i = 0; i < 5; i++)
        if (field(start[i], len[i], lo[i], hi[i], &bits[i], &star[i], err, names[i]) != HV_OK) return HV_EINVAL;
    s.kind = HV_EHR_SCHED_CRON;
    s.minute = bits[0];
    s.hour = (uint32_t)bits[1];
    s.dom = (uint32_t)bits[2];
    s.month = (uint32_t)bits[3];
    s.dow = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f); /* 7 is Sunday too */
    s.dom_star = star[2];
    s.dow_star = star[4];
ok:
    *out = s;
    return HV_OK;
}

static int day_matches(const hv_ehr_schedule_t *s, const struct tm *tm) {
    int dom = (s->dom >> tm->tm_mday) & 1, dow = (s->dow >> tm->tm_wday) & 1;
    if (s->dom_star || s->dow_star) return dom && dow;
    return dom || dow;
}

uint64_t hv_ehr_schedule_next(const hv_ehr_schedule_t *s, uint64_t after_ms) {
    time_t t;
    uint64_t i;
    switch (s->kind) {
    case HV_EHR_SCHED_DAILY: return after_ms + 24ULL * 3600 * 1000;
    case HV_EHR_SCHED_HOURLY: return after_ms + 3600ULL * 1000;
    case HV_EHR_SCHED_EVERY: return after_ms + s->every_ms;
    case HV_EHR_SCHED_CRON: break;
    default: return 0;
    }
    t = (time_t)(after_ms / 1000);
    t = t - t % 60 + 60; /* the next whole minute */
    for (i = 0; i < MAX_SCAN_MINUTES;) {
        struct tm tm;
        gmtime_r(&t, &tm);
        if (!((s->month >> (tm.tm_mon + 1)) & 1) || !day_matches(s, &tm)) {
            /* Skip to the next day's midnight. */
            uint64_t skip = (uint64_t)(24 * 60 - tm.tm_hour * 60 - tm.tm_min);
            t += (time_t)skip * 60;
            i += skip;
            continue;
        }
        if (!((s->hour >> tm.tm_hour) & 1)) {
            uint64_t skip = (uint64_t)(60 - tm.tm_min);
            t += (time_t)skip * 60;
            i += skip;
            continue;
        }
        if ((s->minute >> tm.tm_min) & 1) return (uint64_t)t * 1000;
        t += 60;
        i++;
    }
    return 0;
}
