/*
 * metrics.c — the metrics registry and its Prometheus text exposition
 * (format 0.0.4: "# HELP", "# TYPE", then one line per series).
 *
 * A family is a metric name with its help and type; a series is a family plus
 * a label string. Modules ask for series once (at init, or the first time a
 * label combination appears) and keep the pointer; updating a counter or gauge
 * is then one atomic operation, safe from any thread. Histograms are updated
 * on the loop thread only.
 */
#include "config.h"
#include "engine/engine_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM, K_GAUGE_FN };

#define HIST_MAX_BUCKETS 24

struct hv_counter {
    _Atomic uint64_t v;
};
struct hv_gauge {
    _Atomic double v;
};
struct hv_histogram {
    int nb;
    double bounds[HIST_MAX_BUCKETS];
    uint64_t counts[HIST_MAX_BUCKETS + 1]; /* last: +Inf */
    double sum;
    uint64_t count;
};

typedef struct series {
    struct series *next;
    char *labels; /* "" for none */
    union {
        struct hv_counter c;
        struct hv_gauge g;
        struct hv_histogram h;
    } u;
    hv_gauge_cb fn;
    void *ud;
} series_t;

typedef struct family {
    struct family *next;
    char *name;
    char *help;
    enum kind kind;
    series_t *series, **tail;
} family_t;

struct hv_metrics {
    pthread_mutex_t lock;
    family_t *families, **tail;
};

static const double default_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10, 0};

hv_metrics_t *hv__metrics_new(void) {
    hv_metrics_t *m = hv_calloc(1, sizeof(*m));
    if (m == NULL) return NULL;
    pthread_mutex_init(&m->lock, NULL);
    m->tail = &m->families;
    return m;
}

void hv__metrics_free(hv_metrics_t *m) {
    family_t *f;
    if (m == NULL) return;
    f = m->families;
    while (f != NULL) {
        family_t *fn = f->next;
        series_t *s = f->series;
        while (s != NULL) {
            series_t *sn = s->next;
            hv_free(s->labels);
            hv_free(s);
            s = sn;
        }
        hv_free(f->name);
        hv_free(f->help);
        hv_free(f);
        f = fn;
    }
    pthread_mutex_destroy(&m->lock);
    hv_free(m);
}

/* Finds or creates a series; NULL on ENOMEM or when the name exists with another kind. */
static series_t *get_series(hv_metrics_t *m, const char *name, const char *help, enum kind kind,
                            const char *labels) {
    family_t *f;
    series_t *s = NULL;
    if (labels == NULL) labels = "";
    pthread_mutex_lock(&m->lock);
    for (f = m->families; f != NULL; f = f->next)
        if (strcmp(f->name, name) == 0) break;
    if (f == NULL) {
        f = hv_calloc(1, sizeof(*f));
        if (f == NULL) goto out;
        f->name = hv_strdup(name);
        f->help = hv_strdup(help ? help : "");
        if (f->name == NULL || f->help == NULL) {
            hv_free(f->name);
            hv_free(f->help);
            hv_free(f);
            f = NULL;
            goto out;
        }
        f->kind = kind;
        f->tail = &f->series;
        *m->tail = f;
        m->tail = &f->next;
    }
    if (f->kind != kind && !(f->kind == K_GAUGE && kind == K_GAUGE_FN) &&
        !(f->kind == K_GAUGE_FN && kind == K_GAUGE))
        goto out;
    for (s = f->series; s != NULL; s = s->next)
        if (strcmp(s->labels, labels) == 0) goto out;
    s = hv_calloc(1, sizeof(*s));
    if (s == NULL) goto out;
    s->labels = hv_strdup(labels);
    if (s->labels == NULL) {
        hv_free(s);
        s = NULL;
        goto out;
    }
    *f->tail = s;
    f->tail = &s->next;
out:
    pthread_mutex_unlock(&m->lock);
    return s;
}

hv_counter_t *hv_metrics_counter(hv_metrics_t *m, const char *name, const char *help,
                                 const char *labels) {
    series_t *s = get_series(m, name, help, K_COUNTER, labels);
    return s ? &s->u.c : NULL;
}

hv_gauge_t *hv_metrics_gauge(hv_metrics_t *m, const char *name, const char *help,
                             const char *labels) {
    series_t *s = get_series(m, name, help, K_GAUGE, labels);
    return s ? &s->u.g : NULL;
}

int hv_metrics_gauge_fn(hv_metrics_t *m, const char *name, const char *help, const char *labels,
                        hv_gauge_cb fn, void *ud) {
    series_t *s = get_series(m, name, help, K_GAUGE_FN, labels);
    if (s == NULL) return HV_ENOMEM;
    s->fn = fn;
    s->ud = ud;
    return HV_OK;
}

hv_histogram_t *hv_metrics_histogram(hv_metrics_t *m, const char *name, const char *help,
                                     const char *labels, const double *buckets) {
    series_t *s = get_series(m, name, help, K_HISTOGRAM, labels);
    int i;
    if (s == NULL) return NULL;
    if (s->u.h.nb == 0) {
        if (buckets == NULL) buckets = default_buckets;
        for (i = 0; i < HIST_MAX_BUCKETS && buckets[i] > 0; i++) s->u.h.bounds[i] = buckets[i];
        s->u.h.nb = i;
    }
    return &s->u.h;
}

void hv_counter_add(hv_counter_t *c, uint64_t n) {
    if (c != NULL) atomic_fetch_add_explicit(&c->v, n, memory_order_relaxed);
}

void hv_gauge_set(hv_gauge_t *g, double v) {
    if (g != NULL) atomic_store_explicit(&g->v, v, memory_order_relaxed);
}

void hv_gauge_add(hv_gauge_t *g, double v) {
    double old;
    if (g == NULL) return;
    old = atomic_load_explicit(&g->v, memory_order_relaxed);
    while (!atomic_compare_exchange_weak(&g->v, &old, old + v)) {
    }
}

void hv_histogram_observe(hv_histogram_t *h, double v) {
    int i;
    if (h == NULL) return;
    for (i = 0; i < h->nb && v > h->bounds[i]; i++) {
    }
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

static int put_series_name(hv_buf_t *out, const char *name, const char *suffix, const char *labels,
                           const char *extra) {
    int has = labels[0] != '\0', hasx = extra != NULL;
    hv_buf_puts(out, name);
    hv_buf_puts(out, suffix);
    if (has || hasx) {
        hv_buf_putc(out, '{');
        if (has) hv_buf_puts(out, labels);
        if (has && hasx) hv_buf_putc(out, ',');
        if (hasx) hv_buf_puts(out, extra);
        hv_buf_putc(out, '}');
    }
    return hv_buf_putc(out, ' ');
}

int hv_metrics_render(hv_metrics_t *m, hv_buf_t *out) {
    family_t *f;
    static const char *const types[] = {"counter", "gauge", "histogram", "gauge"};
    pthread_mutex_lock(&m->lock);
    for (f = m->families; f != NULL; f = f->next) {
        series_t *s;
        hv_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name, types[f->kind]);
        for (s = f->series; s != NULL; s = s->next) {
            if (f->kind == K_COUNTER) {
                put_series_name(out, f->name, "", s->labels, NULL);
                hv_buf_printf(out, "%llu\n", (unsigned long long)atomic_load(&s->u.c.v));
            } else if (f->kind == K_GAUGE || f->kind == K_GAUGE_FN) {
                double v = s->fn ? s->fn(s->ud) : atomic_load(&s->u.g.v);
                put_series_name(out, f->name, "", s->labels, NULL);
                hv_buf_printf(out, "%.17g\n", v);
            } else {
                const hv_histogram_t *h = &s->u.h;
                uint64_t cum = 0;
                int i;
                char le[48];
                for (i = 0; i <= h->nb; i++) {
                    cum += h->counts[i];
                    if (i < h->nb) snprintf(le, sizeof(le), "le=\"%g\"", h->bounds[i]);
                    else snprintf(le, sizeof(le), "le=\"+Inf\"");
                    put_series_name(out, f->name, "_bucket", s->labels, le);
                    hv_buf_printf(out, "%llu\n", (unsigned long long)cum);
                }
                put_series_name(out, f->name, "_sum", s->labels, NULL);
                hv_buf_printf(out, "%.9g\n", h->sum);
                put_series_name(out, f->name, "_count", s->labels, NULL);
                hv_buf_printf(out, "%llu\n", (unsigned long long)h->count);
            }
        }
    }
    pthread_mutex_unlock(&m->lock);
    return HV_OK;
}
