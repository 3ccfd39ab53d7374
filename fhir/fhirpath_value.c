/*
 * fhirpath_value.c — FHIRPath System values (fhirpath.html#literals, #types):
 * exact decimals (a scaled 64-bit integer; FHIRPath decimals are not binary
 * doubles), Date/DateTime/Time with precision and time zone, calendar arithmetic
 * (fhirpath.html#date-time-arithmetic), comparison with precision
 * (fhirpath.html#comparison), and text forms.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhirpath_int.h"

typedef __int128 i128;

static const int64_t pow10_tab[19] = {1LL, 10LL, 100LL, 1000LL, 10000LL, 100000LL, 1000000LL,
                                      10000000LL, 100000000LL, 1000000000LL, 10000000000LL,
                                      100000000000LL, 1000000000000LL, 10000000000000LL,
                                      100000000000000LL, 1000000000000000LL,
                                      10000000000000000LL, 100000000000000000LL,
                                      1000000000000000000LL};

static i128 p10(int n) {
    i128 v = 1;
    while (n-- > 0) v *= 10;
    return v;
}

int hv__fp_dec_parse(const char *s, size_t n, hv__fp_dec_t *out) {
    i128 m = 0;
    int scale = 0, neg = 0, frac = 0, any = 0;
    size_t i = 0;
    if (i < n && (s[i] == '-' || s[i] == '+')) {
        neg = s[i] == '-';
        i++;
    }
    for (; i < n; i++) {
        char ch = s[i];
        if (ch == '.') {
            if (frac) return HV_EINVAL;
            frac = 1;
            continue;
        }
        if (ch == 'e' || ch == 'E') {
            /* JSON exponent notation: scale by the exponent. */
            int e = atoi(s + i + 1);
            if (e > 18 || e < -HV__FP_DEC_MAXSCALE) return HV_EINVAL;
            if (e >= 0) {
                while (e-- > 0) {
                    if (scale > 0) scale--;
                    else m *= 10;
                }
            } else {
                scale -= e;
            }
            break;
        }
        if (ch < '0' || ch > '9') return HV_EINVAL;
        any = 1;
        if (frac) {
            /* Fraction digits beyond the cap or the 64-bit mantissa are dropped. */
            if (scale >= HV__FP_DEC_MAXSCALE || m * 10 + 9 > (i128)INT64_MAX) continue;
            scale++;
        }
        m = m * 10 + (ch - '0');
        if (m > (i128)INT64_MAX) return HV_EINVAL;
    }
    if (!any || scale > HV__FP_DEC_MAXSCALE || m > (i128)INT64_MAX) return HV_EINVAL;
    out->m = (int64_t)(neg ? -m : m);
    out->s = scale;
    return HV_OK;
}

hv__fp_dec_t hv__fp_dec_from_int(int64_t i) {
    hv__fp_dec_t d = {i, 0};
    return d;
}

void hv__fp_dec_norm(hv__fp_dec_t *d) {
    while (d->s > 0 && d->m % 10 == 0) {
        d->m /= 10;
        d->s--;
    }
}

/* Divides by 10^k rounding half away from zero. */
static i128 round_div(i128 v, int k) {
    i128 q, r, div = p10(k);
    if (k <= 0) return v;
    q = v / div;
    r = v % div;
    if (r < 0) r = -r;
    if (r * 2 >= div) q += v < 0 ? -1 : 1;
    return q;
}

/* Fits an int128 mantissa into the int64 form, dropping fraction digits if needed. */
static int fit(i128 m, int s, hv__fp_dec_t *r) {
    while (s > HV__FP_DEC_MAXSCALE || m > (i128)INT64_MAX || m < -(i128)INT64_MAX) {
        if (s == 0) return HV_ETOOBIG;
        m = round_div(m, 1);
        s--;
    }
    r->m = (int64_t)m;
    r->s = s;
    return HV_OK;
}

int hv__fp_dec_cmp(hv__fp_dec_t a, hv__fp_dec_t b) {
    i128 x = a.m, y = b.m;
    if (a.s < b.s) x *= p10(b.s - a.s);
    else if (b.s < a.s) y *= p10(a.s - b.s);
    return x < y ? -1 : x > y ? 1 : 0;
}

int hv__fp_dec_add(hv__fp_dec_t a, hv__fp_dec_t b, hv__fp_dec_t *r) {
    int s = a.s > b.s ? a.s : b.s;
    i128 x = (i128)a.m * p10(s - a.s), y = (i128)b.m * p10(s - b.s);
    return fit(x + y, s, r);
}

int hv__fp_dec_mul(hv__fp_dec_t a, hv__fp_dec_t b, hv__fp_dec_t *r) {
    return fit((i128)a.m * b.m, a.s + b.s, r);
}

/* Division to 8 fraction digits beyond the operands' (FHIRPath leaves the precision of a
 * quotient to the implementation), with trailing zeros removed. */
int hv__fp_dec_div(hv__fp_dec_t a, hv__fp_dec_t b, hv__fp_dec_t *r) {
    int target = 8;
    i128 num, q;
    int rc;
    int k = target + 1 + b.s, scale;
    i128 mag = a.m < 0 ? -(i128)a.m : (i128)a.m;
    if (b.m == 0) return HV_EINVAL;
    /* a/b = (a.m × 10^k / b.m) × 10^-(a.s + k - b.s): compute with one guard digit, then
     * round. A dividend too large for 10^k digits more (found by fuzzing: an i128
     * overflow) gives up fraction digits instead of overflowing. */
    while (k > b.s && mag > (((i128)1 << 126) / p10(k))) k--;
    num = (i128)a.m * p10(k);
    q = num / b.m;
    scale = a.s + k - b.s;
    if (k - b.s >= 1) {
        q = round_div(q, 1);
        scale--;
    }
    rc = fit(q, scale, r);
    if (rc == HV_OK) {
        /* scale is target + a.s: normalize it down */
        hv__fp_dec_norm(r);
    }
    return rc;
}

double hv__fp_dec_to_double(hv__fp_dec_t d) {
    return (double)d.m / (double)pow10_tab[d.s > 18 ? 18 : d.s];
}

int hv__fp_dec_from_double(double v, hv__fp_dec_t *out) {
    char buf[64];
    if (!isfinite(v)) return HV_EINVAL;
    snprintf(buf, sizeof(buf), "%.8f", v);
    if (hv__fp_dec_parse(buf, strlen(buf), out) != HV_OK) return HV_EINVAL;
    hv__fp_dec_norm(out);
    return HV_OK;
}

hv__fp_dec_t hv__fp_dec_round(hv__fp_dec_t d, int digits) {
    hv__fp_dec_t r = d;
    if (digits >= d.s) return d;
    r.m = (int64_t)round_div(d.m, d.s - digits);
    r.s = digits;
    return r;
}

int hv__fp_dec_str(hv__fp_dec_t d, char *out, size_t outlen) {
    char digs[48];
    uint64_t a = d.m < 0 ? (uint64_t)(-(d.m + 1)) + 1 : (uint64_t)d.m;
    int n = snprintf(digs, sizeof(digs), "%llu", (unsigned long long)a);
    const char *sign = d.m < 0 ? "-" : "";
    if (d.s == 0) return snprintf(out, outlen, "%s%s", sign, digs);
    if (n <= d.s) {
        char zeros[48];
        memset(zeros, '0', (size_t)(d.s - n));
        zeros[d.s - n] = '\0';
        return snprintf(out, outlen, "%s0.%s%s", sign, zeros, digs) > 0 ? 0 : -1;
    }
    return snprintf(out, outlen, "%s%.*s.%s", sign, n - d.s, digs, digs + n - d.s);
}

/* ------------------------------------------------------------------------- */
/* Dates and times                                                           */
/* ------------------------------------------------------------------------- */

static int is_leap(int y) {
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int mdays(int y, int m) {
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : d[m - 1];
}

/* Days since 1970-01-01 of a civil date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    int64_t era, yoe, doy, doe;
    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int32_t *y, int8_t *m, int8_t *d) {
    int64_t era, doe, yoe, doy, mp;
    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (int8_t)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int8_t)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int32_t)(yoe + era * 400 + (*m <= 2));
}

/* Milliseconds since the epoch of the fields (missing fields at their minimum). */
static int64_t dt_ms(const hv__fp_dt_t *d, int kind) {
    int64_t days = kind == HV__FP_TIME ? 0
                                       : days_from_civil(d->year, d->month ? d->month : 1, d->day ? d->day : 1);
    return ((days * 24 + d->hour) * 60 + d->minute) * 60000LL + d->second * 1000LL + d->ms;
}

static void dt_from_ms(hv__fp_dt_t *d, int kind, int64_t ms) {
    int64_t days = ms >= 0 ? ms / 86400000LL : -((-ms + 86399999LL) / 86400000LL);
    int64_t rem = ms - days * 86400000LL;
    if (kind != HV__FP_TIME) civil_from_days(days, &d->year, &d->month, &d->day);
    d->hour = (int8_t)(rem / 3600000);
    d->minute = (int8_t)(rem / 60000 % 60);
    d->second = (int8_t)(rem / 1000 % 60);
    d->ms = (int16_t)(rem % 1000);
}

int hv__fp_dt_add(hv__fp_dt_t *d, int kind, int unit, int64_t amount) {
    if (unit == 1 || unit == 2) {
        int64_t months = unit == 1 ? amount * 12 : amount;
        int64_t total;
        if (kind == HV__FP_TIME) return HV_EINVAL;
        if (d->prec < HV__FP_P_MONTH) {
            d->year = (int32_t)(d->year + months / 12);
            return HV_OK;
        }
        total = (int64_t)d->year * 12 + (d->month - 1) + months;
        d->year = (int32_t)(total >= 0 ? total / 12 : (total - 11) / 12);
        d->month = (int8_t)(total - (int64_t)d->year * 12 + 1);
        if (d->prec >= HV__FP_P_DAY && d->day > mdays(d->year, d->month)) d->day = (int8_t)mdays(d->year, d->month);
        return HV_OK;
    }
    {
        static const int64_t unit_ms[] = {0, 0, 0, 86400000LL, 3600000LL, 60000LL, 1000LL, 1LL, 7 * 86400000LL};
        int64_t ms;
        if (unit < 3 || unit > 8) return HV_EINVAL;
        if (kind == HV__FP_TIME && (unit == 3 || unit == 8)) return HV_EINVAL;
        if (kind != HV__FP_TIME && d->prec < HV__FP_P_DAY) {
            /* Coarser than days: convert to whole years/months of the precision. */
            int64_t days = amount * unit_ms[unit] / 86400000LL;
            if (d->prec == HV__FP_P_MONTH) return hv__fp_dt_add(d, kind, 2, days / 30);
            return hv__fp_dt_add(d, kind, 1, days / 365);
        }
        ms = dt_ms(d, kind) + amount * unit_ms[unit];
        if (kind == HV__FP_TIME) ms = ((ms % 86400000LL) + 86400000LL) % 86400000LL;
        dt_from_ms(d, kind, ms);
        return HV_OK;
    }
}

int hv__fp_cal_unit(const char *u, int *ucum) {
    static const struct {
        const char *name;
        int unit, ucum;
    } t[] = {
        {"year", 1, 0}, {"years", 1, 0}, {"month", 2, 0}, {"months", 2, 0}, {"week", 8, 0},
        {"weeks", 8, 0}, {"day", 3, 0}, {"days", 3, 0}, {"hour", 4, 0}, {"hours", 4, 0},
        {"minute", 5, 0}, {"minutes", 5, 0}, {"second", 6, 0}, {"seconds", 6, 0},
        {"millisecond", 7, 0}, {"milliseconds", 7, 0}, {"a", 1, 1}, {"mo", 2, 1},
        {"wk", 8, 1}, {"d", 3, 1}, {"h", 4, 1}, {"min", 5, 1}, {"s", 6, 1}, {"ms", 7, 1},
    };
    *ucum = 0;
    if (u == NULL) return 0;
    for (size_t i = 0; i < HV_ARRAY_LEN(t); i++) {
        if (strcmp(u, t[i].name) == 0) {
            *ucum = t[i].ucum;
            return t[i].unit;
        }
    }
    return 0;
}

int hv__fp_dt_str(const hv__fp_dt_t *d, int kind, char *out, size_t outlen) {
    char b[64];
    size_t n = 0;
    int prec = d->prec;
    if (kind != HV__FP_TIME) {
        n += (size_t)snprintf(b + n, sizeof(b) - n, "%04d", (int)d->year);
        if (prec >= HV__FP_P_MONTH) n += (size_t)snprintf(b + n, sizeof(b) - n, "-%02d", d->month);
        if (prec >= HV__FP_P_DAY) n += (size_t)snprintf(b + n, sizeof(b) - n, "-%02d", d->day);
        if (kind == HV__FP_DATETIME && prec >= HV__FP_P_HOUR) b[n++] = 'T';
    }
    if (prec >= HV__FP_P_HOUR) n += (size_t)snprintf(b + n, sizeof(b) - n, "%02d", d->hour);
    if (prec >= HV__FP_P_MINUTE) n += (size_t)snprintf(b + n, sizeof(b) - n, ":%02d", d->minute);
    if (prec >= HV__FP_P_SECOND) n += (size_t)snprintf(b + n, sizeof(b) - n, ":%02d", d->second);
    if (prec >= HV__FP_P_MS) n += (size_t)snprintf(b + n, sizeof(b) - n, ".%03d", d->ms);
    if (kind == HV__FP_DATETIME && prec >= HV__FP_P_HOUR && d->has_tz) {
        if (d->tz == 0) {
            b[n++] = 'Z';
        } else {
            int a = d->tz < 0 ? -d->tz : d->tz;
            n += (size_t)snprintf(b + n, sizeof(b) - n, "%c%02d:%02d", d->tz < 0 ? '-' : '+', a / 60, a % 60);
        }
    }
    /* A DateTime below hour precision keeps its 'T' so that it reads back as a DateTime. */
    b[n] = '\0';
    return snprintf(out, outlen, "%s", b) < (int)outlen ? HV_OK : HV_ETOOBIG;
}

int hv__fp_dt_cmp(const hv__fp_dt_t *a0, const hv__fp_dt_t *b0, int kind, int *r) {
    hv__fp_dt_t a = *a0, b = *b0;
    int pa = a.prec == HV__FP_P_MS ? HV__FP_P_SECOND : a.prec;
    int pb = b.prec == HV__FP_P_MS ? HV__FP_P_SECOND : b.prec;
    int p = pa < pb ? pa : pb;
    int64_t va[6], vb[6];
    /* Normalize to UTC when both carry a time zone and have a time. */
    /* One with and one without a time zone cannot be ordered for sure (fhirpath.html#comparison). */
    if (kind == HV__FP_DATETIME && a.prec >= HV__FP_P_HOUR && b.prec >= HV__FP_P_HOUR && a.has_tz != b.has_tz) return 0;
    if (kind == HV__FP_DATETIME && a.prec >= HV__FP_P_HOUR && b.prec >= HV__FP_P_HOUR && (a.has_tz || b.has_tz)) {
        if (a.has_tz && a.tz != 0) {
            int pr = a.prec;
            hv__fp_dt_add(&a, kind, 5, -a.tz);
            a.prec = (uint8_t)pr;
        }
        if (b.has_tz && b.tz != 0) {
            int pr = b.prec;
            hv__fp_dt_add(&b, kind, 5, -b.tz);
            b.prec = (uint8_t)pr;
        }
    }
    va[0] = a.year; va[1] = a.month; va[2] = a.day; va[3] = a.hour; va[4] = a.minute;
    va[5] = a.second * 1000LL + a.ms;
    vb[0] = b.year; vb[1] = b.month; vb[2] = b.day; vb[3] = b.hour; vb[4] = b.minute;
    vb[5] = b.second * 1000LL + b.ms;
    for (int i = kind == HV__FP_TIME ? 3 : 0; i < 6; i++) {
        if (i + 1 > p) break;
        if (va[i] != vb[i]) {
            *r = va[i] < vb[i] ? -1 : 1;
            return 1;
        }
    }
    if (pa != pb) return 0;
    *r = 0;
    return 1;
}
