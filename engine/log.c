/*
 * log.c — structured logs on standard error.
 *
 * JSON lines (default) or text. A record is built in a per-thread buffer and
 * appended whole to a shared output buffer under a lock, so lines from the loop
 * and storage threads never interleave. Info and debug lines are written when
 * 32 KiB have gathered or when the engine's timer calls hv_log_flush (every
 * 250 ms); warn and error lines are written at once.
 *
 * JSON line: {"ts":"2026-11-25T18:27:48.123Z","level":"info","event":"http.request",...}
 * Text line: 2026-11-25T18:27:48.123Z INFO http.request method=GET status=200
 */
#include "config.h"
#include "engine/engine.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define LOG_FLUSH_BYTES (32 * 1024)
#define LOG_MAX_LINE (16 * 1024)

struct hv_logrec {
    hv_buf_t line;
    int level;
    int active;
};

static int log_level = HV_LOG_INFO;
static int log_format = HV_LOG_JSON;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static hv_buf_t out_buf = {NULL, 0, 0, 0};
static _Thread_local hv_logrec_t rec;

static const char *const level_names[] = {"debug", "info", "warn", "error"};
static const char *const level_upper[] = {"DEBUG", "INFO", "WARN", "ERROR"};

void hv_log_configure(int level, int format) {
    log_level = level;
    log_format = format;
}

int hv_log_level(void) { return log_level; }

int hv_log_parse_level(const char *s) {
    size_t i;
    for (i = 0; i < HV_ARRAY_LEN(level_names); i++)
        if (strcmp(s, level_names[i]) == 0) return (int)i;
    if (strcmp(s, "off") == 0) return HV_LOG_OFF;
    return -1;
}

int hv_log_parse_format(const char *s) {
    if (strcmp(s, "json") == 0) return HV_LOG_JSON;
    if (strcmp(s, "text") == 0) return HV_LOG_TEXT;
    return -1;
}

static void write_all(const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(STDERR_FILENO, p, n);
        if (w <= 0) return; /* nowhere to report a failing stderr */
        p += w;
        n -= (size_t)w;
    }
}

/* Caller holds out_lock. */
static void flush_locked(void) {
    if (out_buf.len > 0) write_all(out_buf.data, out_buf.len);
    hv_buf_reset(&out_buf);
}

void hv_log_flush(void) {
    pthread_mutex_lock(&out_lock);
    flush_locked();
    pthread_mutex_unlock(&out_lock);
}

hv_logrec_t *hv_log_begin(int level, const char *event) {
    char ts[40];
    if (level < log_level || level >= HV_LOG_OFF) return NULL;
    if (rec.active) return NULL; /* a log call while building one: drop the inner */
    rec.active = 1;
    rec.level = level;
    if (rec.line.max == 0) hv_buf_init(&rec.line, LOG_MAX_LINE);
    hv_buf_reset(&rec.line);
    hv_time_rfc3339(hv_now_ms(), ts, sizeof(ts));
    if (log_format == HV_LOG_JSON) {
        hv_buf_printf(&rec.line, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":", ts, level_names[level]);
        hv_buf_json_str(&rec.line, event, strlen(event));
    } else {
        hv_buf_printf(&rec.line, "%s %s %s", ts, level_upper[level], event);
    }
    return &rec;
}

static void put_key(hv_logrec_t *r, const char *key) {
    if (log_format == HV_LOG_JSON) {
        hv_buf_putc(&r->line, ',');
        hv_buf_json_str(&r->line, key, strlen(key));
        hv_buf_putc(&r->line, ':');
    } else {
        hv_buf_printf(&r->line, " %s=", key);
    }
}

void hv_log_strn(hv_logrec_t *r, const char *key, const char *val, size_t n) {
    if (r == NULL) return;
    put_key(r, key);
    if (val == NULL) {
        hv_buf_puts(&r->line, "null");
    } else if (log_format == HV_LOG_JSON) {
        hv_buf_json_str(&r->line, val, n);
    } else if (memchr(val, ' ', n) != NULL || n == 0) {
        hv_buf_json_str(&r->line, val, n);
    } else {
        size_t i;
        for (i = 0; i < n; i++) {
            char c = val[i];
            hv_buf_putc(&r->line, (c < 0x20) ? '?' : c);
        }
    }
}

void hv_log_str(hv_logrec_t *r, const char *key, const char *val) {
    hv_log_strn(r, key, val, val ? strlen(val) : 0);
}

void hv_log_int(hv_logrec_t *r, const char *key, int64_t val) {
    if (r == NULL) return;
    put_key(r, key);
    hv_buf_printf(&r->line, "%lld", (long long)val);
}

void hv_log_dbl(hv_logrec_t *r, const char *key, double val) {
    if (r == NULL) return;
    put_key(r, key);
    hv_buf_printf(&r->line, "%.6g", val);
}

void hv_log_end(hv_logrec_t *r) {
    if (r == NULL) return;
    if (log_format == HV_LOG_JSON) hv_buf_putc(&r->line, '}');
    hv_buf_putc(&r->line, '\n');
    pthread_mutex_lock(&out_lock);
    if (hv_buf_append(&out_buf, r->line.data, r->line.len) != HV_OK) {
        flush_locked();
        write_all(r->line.data, r->line.len);
    }
    if (r->level >= HV_LOG_WARN || out_buf.len >= LOG_FLUSH_BYTES) flush_locked();
    pthread_mutex_unlock(&out_lock);
    r->active = 0;
}

void hv_log_thread_exit(void) { hv_buf_release(&rec.line); }

void hv_log(int level, const char *event, const char *fmt, ...) {
    hv_logrec_t *r = hv_log_begin(level, event);
    char msg[1024];
    va_list ap;
    if (r == NULL) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    hv_log_str(r, "msg", msg);
    hv_log_end(r);
}
